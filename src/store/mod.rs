//! The SQLite store (WAL): inventory, creation intents, jobs, audit log. Never key material.
//!
//! Every statement is short (microseconds on a local file), so callers use it directly under
//! one mutex; the token work that is slow happens elsewhere. The schema is versioned with
//! `PRAGMA user_version` and migrated forward at open (`migrations.rs`).

mod migrations;
pub mod records;

use rusqlite::{params, Connection, OptionalExtension};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

pub use records::{AuditEntry, Intent, KeyRecord};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store: cannot open {path}: {detail}")]
    Open { path: String, detail: String },
    #[error("a key named '{name}' already exists in namespace '{namespace}'")]
    NameTaken { namespace: String, name: String },
    #[error("store schema version {found} is newer than this keyport ({supported}); upgrade keyport")]
    TooNew { found: i64, supported: i64 },
}

pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating with mode 0600) and migrates the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |e: std::io::Error| StoreError::Open { path: path.display().to_string(), detail: e.to_string() };
        // Create the file ourselves so it is 0600 from its first byte; SQLite gives the -wal
        // and -shm files the database file's mode.
        std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(open_err)?;
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrations::migrate(&conn)?;
        Ok(Store { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().expect("store mutex poisoned")
    }

    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self.conn().query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    pub fn healthy(&self) -> bool {
        self.conn().query_row("SELECT 1", [], |r| r.get::<_, i64>(0)).is_ok()
    }

    /// Records the intent to create objects under `intent.cka_id`, reserving the name.
    /// A crash after this and before `commit_key` is undone at the next start.
    pub fn add_intent(&self, intent: &Intent) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let taken: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM keys WHERE namespace=?1 AND name=?2) OR EXISTS(SELECT 1 FROM intents WHERE namespace=?1 AND name=?2)",
            params![intent.namespace, intent.name],
            |r| r.get(0),
        )?;
        if taken {
            return Err(StoreError::NameTaken { namespace: intent.namespace.clone(), name: intent.name.clone() });
        }
        tx.execute(
            "INSERT INTO intents(key_id, token, cka_id, namespace, name, op, created_at) VALUES (?1,?2,?3,?4,?5,?6,?7)",
            params![intent.key_id, intent.token, intent.cka_id, intent.namespace, intent.name, intent.op, intent.created_at],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn drop_intent(&self, key_id: &str) -> Result<(), StoreError> {
        self.conn().execute("DELETE FROM intents WHERE key_id=?1", [key_id])?;
        Ok(())
    }

    pub fn intents(&self) -> Result<Vec<Intent>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT key_id, token, cka_id, namespace, name, op, created_at FROM intents ORDER BY created_at")?;
        let rows = st.query_map([], Intent::from_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Turns an intent into an inventory row and audits it, in one transaction.
    pub fn commit_key(&self, k: &KeyRecord, audit: &AuditEntry) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM intents WHERE key_id=?1", [&k.id])?;
        tx.execute(
            "INSERT INTO keys(id, name, namespace, owner, token, cka_id, algorithm, fingerprint, exportable, origin, created_at)
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
            params![k.id, k.name, k.namespace, k.owner, k.token, k.cka_id, k.algorithm, k.fingerprint, k.exportable, k.origin, k.created_at],
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                StoreError::NameTaken { namespace: k.namespace.clone(), name: k.name.clone() }
            }
            e => e.into(),
        })?;
        records::insert_audit(&tx, audit)?;
        tx.commit()?;
        Ok(())
    }

    pub fn key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(&format!("SELECT {} FROM keys WHERE id=?1", KeyRecord::COLUMNS), [id], KeyRecord::from_row)
            .optional()?)
    }

    pub fn key_by_name(&self, namespace: &str, name: &str) -> Result<Option<KeyRecord>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                &format!("SELECT {} FROM keys WHERE namespace=?1 AND name=?2", KeyRecord::COLUMNS),
                [namespace, name],
                KeyRecord::from_row,
            )
            .optional()?)
    }

    pub fn keys_by_fingerprint(&self, fingerprint: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!("SELECT {} FROM keys WHERE fingerprint=?1", KeyRecord::COLUMNS))?;
        let rows = st.query_map([fingerprint], KeyRecord::from_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Keys filtered by namespace and name (both optional), oldest first.
    pub fn list_keys(&self, namespace: Option<&str>, name: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!(
            "SELECT {} FROM keys WHERE (?1 IS NULL OR namespace=?1) AND (?2 IS NULL OR name=?2) ORDER BY created_at, id",
            KeyRecord::COLUMNS
        ))?;
        let rows = st.query_map(params![namespace, name], KeyRecord::from_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn keys_in_token(&self, token: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!("SELECT {} FROM keys WHERE token=?1", KeyRecord::COLUMNS))?;
        let rows = st.query_map([token], KeyRecord::from_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Removes an inventory row and audits it, in one transaction.
    pub fn delete_key(&self, id: &str, audit: &AuditEntry) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute("DELETE FROM keys WHERE id=?1", [id])?;
        records::insert_audit(&tx, audit)?;
        tx.commit()?;
        Ok(n > 0)
    }

    pub fn audit(&self, e: &AuditEntry) -> Result<(), StoreError> {
        let conn = self.conn();
        records::insert_audit(&conn, e)?;
        Ok(())
    }

    pub fn recent_audit(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT at, principal, action, namespace, key_id, outcome, detail FROM audit ORDER BY seq DESC LIMIT ?1")?;
        let rows = st.query_map([limit], AuditEntry::from_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}
