//! The KPS face's rows: key pair metadata per project. The key itself (when the key pair holds
//! a private key) is the inventory row `keys.id = key_id`; nothing here is secret.

use rusqlite::{params, OptionalExtension, Row};

use super::{records, AuditEntry, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KpsKeypair {
    pub id: i64,
    pub project_id: String,
    pub name: String,
    pub key_id: Option<String>,
    pub public_key: String,
    pub fingerprint: String,
    pub algorithm: String,
    pub kind: String,
    pub scope: String,
    pub user_id: Option<String>,
    pub description: String,
    pub protection: Option<String>,
    pub kms_key_name: Option<String>,
    pub kms_key_id: Option<String>,
    pub private_key_cleared: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
}

const COLUMNS: &str = "id, project_id, name, key_id, public_key, fingerprint, algorithm, type, scope, user_id, description, protection, kms_key_name, kms_key_id, private_key_cleared, created_ms, updated_ms";

impl KpsKeypair {
    fn from_row(r: &Row) -> rusqlite::Result<KpsKeypair> {
        Ok(KpsKeypair {
            id: r.get(0)?,
            project_id: r.get(1)?,
            name: r.get(2)?,
            key_id: r.get(3)?,
            public_key: r.get(4)?,
            fingerprint: r.get(5)?,
            algorithm: r.get(6)?,
            kind: r.get(7)?,
            scope: r.get(8)?,
            user_id: r.get(9)?,
            description: r.get(10)?,
            protection: r.get(11)?,
            kms_key_name: r.get(12)?,
            kms_key_id: r.get(13)?,
            private_key_cleared: r.get(14)?,
            created_ms: r.get(15)?,
            updated_ms: r.get(16)?,
        })
    }
}

/// Milliseconds since the epoch (the vendor's timestamps).
pub fn now_ms() -> i64 {
    crate::clock::Timestamp::now().unix_millis()
}

/// Inserts a key pair inside the caller's transaction; `NameTaken` when the project already
/// has one by that name. Returns the row id.
pub(super) fn insert_keypair(tx: &rusqlite::Connection, k: &KpsKeypair) -> Result<i64, StoreError> {
    tx.execute(
        "INSERT INTO kps_keypairs(project_id, name, key_id, public_key, fingerprint, algorithm, type, scope, user_id, description,
            protection, kms_key_name, kms_key_id, private_key_cleared, created_ms, updated_ms)
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)",
        params![
            k.project_id,
            k.name,
            k.key_id,
            k.public_key,
            k.fingerprint,
            k.algorithm,
            k.kind,
            k.scope,
            k.user_id,
            k.description,
            k.protection,
            k.kms_key_name,
            k.kms_key_id,
            k.private_key_cleared,
            k.created_ms,
            k.updated_ms
        ],
    )
    .map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            StoreError::NameTaken { namespace: format!("project {}", k.project_id), name: k.name.clone() }
        }
        e => e.into(),
    })?;
    Ok(tx.last_insert_rowid())
}

/// Links a key pair to an inventory key (a private key imported into it), inside the caller's
/// transaction.
pub(super) fn link_key(
    tx: &rusqlite::Connection,
    id: i64,
    key_id: &str,
    protection: &str,
    kms_key_name: Option<&str>,
    kms_key_id: Option<&str>,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE kps_keypairs SET key_id=?2, protection=?3, kms_key_name=?4, kms_key_id=?5, private_key_cleared=0, updated_ms=?6 WHERE id=?1",
        params![id, key_id, protection, kms_key_name, kms_key_id, now_ms()],
    )?;
    Ok(())
}

impl Store {
    /// Inserts a key pair (with its audit entry); `NameTaken` when the project already has
    /// one by that name. Returns the row id.
    pub fn kps_insert(&self, k: &KpsKeypair, audit: &AuditEntry) -> Result<i64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let id = insert_keypair(&tx, k)?;
        records::insert_audit(&tx, audit)?;
        tx.commit()?;
        Ok(id)
    }

    pub fn kps_get(&self, project_id: &str, name: &str) -> Result<Option<KpsKeypair>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM kps_keypairs WHERE project_id=?1 AND name=?2"),
                [project_id, name],
                KpsKeypair::from_row,
            )
            .optional()?)
    }

    /// Up to `limit` key pairs of a project ordered by name, starting after `marker`.
    pub fn kps_list(&self, project_id: &str, marker: Option<&str>, limit: u32) -> Result<Vec<KpsKeypair>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM kps_keypairs WHERE project_id=?1 AND (?2 IS NULL OR name > ?2) ORDER BY name LIMIT ?3"
        ))?;
        let rows = st.query_map(params![project_id, marker, limit], KpsKeypair::from_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The name before `name` in the project's order, `limit` entries back (for `previous_marker`).
    pub fn kps_previous_marker(&self, project_id: &str, first: &str, limit: u32) -> Result<Option<String>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT name FROM kps_keypairs WHERE project_id=?1 AND name < ?2 ORDER BY name DESC LIMIT ?3")?;
        let names = st.query_map(params![project_id, first, limit + 1], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
        // The page before starts after the (limit+1)-th name back; with fewer, at the start.
        Ok(if names.len() as u32 > limit {
            names.last().cloned()
        } else if names.is_empty() {
            None
        } else {
            Some(String::new())
        })
    }

    pub fn kps_set_description(&self, id: i64, description: &str, audit: &AuditEntry) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("UPDATE kps_keypairs SET description=?2, updated_ms=?3 WHERE id=?1", params![id, description, now_ms()])?;
        records::insert_audit(&tx, audit)?;
        tx.commit()?;
        Ok(())
    }

    /// The private key is gone from the token: the key pair keeps its public key.
    pub fn kps_clear_key(&self, id: i64) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE kps_keypairs SET key_id=NULL, protection=NULL, kms_key_name=NULL, kms_key_id=NULL, private_key_cleared=1, updated_ms=?2 WHERE id=?1",
            params![id, now_ms()],
        )?;
        Ok(())
    }

    pub fn kps_delete(&self, id: i64, audit: &AuditEntry) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM kps_keypairs WHERE id=?1", [id])?;
        records::insert_audit(&tx, audit)?;
        tx.commit()?;
        Ok(())
    }
}
