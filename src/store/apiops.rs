//! The project-key face's rows (seed 004): a vendor key per (project, name), and its
//! deployments, each pointing at one inventory row (`keys`) in the environment's token.
//!
//! Why one inventory row per environment: `keys` is UNIQUE(namespace, name) and one row names
//! one token object set, while a vendor key lives in several tokens. So each deployment is its
//! own inventory row named `<name>@<environment>` (its token objects carry CKA_LABEL = name),
//! and `apiops_deployments` maps (project, name, environment) → key id. Deleting an inventory
//! row (native API, reconciliation) cascades to its deployment.

use rusqlite::{params, OptionalExtension, Row};

use super::records::{insert_audit, AuditEntry};
use super::{Store, StoreError};

/// A vendor key (its metadata; material lives only in tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiOpsKey {
    pub project: String,
    pub name: String,
    pub namespace: String,
    pub description: Option<String>,
    pub key_type: String,
    pub algorithm: String,
    pub owner: String,
    pub created_at: crate::clock::Timestamp,
}

/// One environment a key is deployed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiOpsDeployment {
    pub project: String,
    pub name: String,
    pub environment: String,
    pub key_id: String,
    pub alias: Option<String>,
    pub source: String,
    pub created_at: crate::clock::Timestamp,
}

const KEY_COLUMNS: &str = "project, name, namespace, description, key_type, algorithm, owner, created_at";
const DEPLOYMENT_COLUMNS: &str = "project, name, environment, key_id, alias, source, created_at";

fn key_row(r: &Row) -> rusqlite::Result<ApiOpsKey> {
    Ok(ApiOpsKey {
        project: r.get(0)?,
        name: r.get(1)?,
        namespace: r.get(2)?,
        description: r.get(3)?,
        key_type: r.get(4)?,
        algorithm: r.get(5)?,
        owner: r.get(6)?,
        created_at: r.get(7)?,
    })
}

fn deployment_row(r: &Row) -> rusqlite::Result<ApiOpsDeployment> {
    Ok(ApiOpsDeployment {
        project: r.get(0)?,
        name: r.get(1)?,
        environment: r.get(2)?,
        key_id: r.get(3)?,
        alias: r.get(4)?,
        source: r.get(5)?,
        created_at: r.get(6)?,
    })
}

/// Inserts a vendor key inside the caller's transaction; `NameTaken` on a duplicate name.
pub(super) fn insert_vendor_key(tx: &rusqlite::Connection, k: &ApiOpsKey) -> Result<(), StoreError> {
    tx.execute(
        &format!("INSERT INTO apiops_keys({KEY_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)"),
        params![k.project, k.name, k.namespace, k.description, k.key_type, k.algorithm, k.owner, k.created_at],
    )
    .map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            StoreError::NameTaken { namespace: k.namespace.clone(), name: k.name.clone() }
        }
        e => e.into(),
    })?;
    Ok(())
}

/// Inserts a deployment inside the caller's transaction (its inventory row is already in).
pub(super) fn insert_deployment(tx: &rusqlite::Connection, d: &ApiOpsDeployment) -> Result<(), StoreError> {
    tx.execute(
        &format!("INSERT INTO apiops_deployments({DEPLOYMENT_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7)"),
        params![d.project, d.name, d.environment, d.key_id, d.alias, d.source, d.created_at],
    )?;
    Ok(())
}

impl Store {
    pub fn apiops_key(&self, project: &str, name: &str) -> Result<Option<ApiOpsKey>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(&format!("SELECT {KEY_COLUMNS} FROM apiops_keys WHERE project=?1 AND name=?2"), [project, name], key_row)
            .optional()?)
    }

    pub fn apiops_keys(&self, project: &str) -> Result<Vec<ApiOpsKey>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!("SELECT {KEY_COLUMNS} FROM apiops_keys WHERE project=?1 ORDER BY created_at, name"))?;
        let rows = st.query_map([project], key_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn apiops_deployments(&self, project: &str, name: &str) -> Result<Vec<ApiOpsDeployment>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM apiops_deployments WHERE project=?1 AND name=?2 ORDER BY created_at, environment"
        ))?;
        let rows = st.query_map([project, name], deployment_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Updates a vendor key's description and alias(es); nothing about material.
    pub fn apiops_update(
        &self,
        project: &str,
        name: &str,
        description: Option<&str>,
        aliases: &[(String, Option<String>)],
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if let Some(d) = description {
            tx.execute("UPDATE apiops_keys SET description=?3 WHERE project=?1 AND name=?2", params![project, name, d])?;
        }
        for (env, alias) in aliases {
            tx.execute(
                "UPDATE apiops_deployments SET alias=?4 WHERE project=?1 AND name=?2 AND environment=?3",
                params![project, name, env, alias],
            )?;
        }
        insert_audit(&tx, audit)?;
        tx.commit()?;
        Ok(())
    }

    /// Removes inventory rows (their deployments cascade) and, when `drop_key`, the vendor key;
    /// with their audit entries, in one transaction.
    pub fn apiops_remove(
        &self,
        project: &str,
        name: &str,
        key_ids: &[String],
        drop_key: bool,
        audit: &[AuditEntry],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for id in key_ids {
            tx.execute("DELETE FROM keys WHERE id=?1", [id])?;
        }
        if drop_key {
            tx.execute("DELETE FROM apiops_keys WHERE project=?1 AND name=?2", [project, name])?;
        }
        for a in audit {
            insert_audit(&tx, a)?;
        }
        tx.commit()?;
        Ok(())
    }
}
