//! The SQLite store (WAL): inventory, creation intents, jobs, audit log. Never key material.
//!
//! Every statement is short (microseconds on a local file), so callers use it directly under
//! one mutex; the token work that is slow happens elsewhere. The schema is versioned with
//! `PRAGMA user_version` and migrated forward at open (`migrations.rs`).

mod apiops;
mod audit_log;
pub mod audit_query;
mod certs;
mod create;
mod deletes;
#[cfg(feature = "test-hooks")]
pub mod fixtures;
mod group;
mod key_pages;
pub mod keysets;
pub mod kps;
mod migrations;
pub mod outbox;
pub mod records;
pub mod remote_jobs;
mod ssh_certs;
#[cfg(test)]
pub(crate) mod test_rows;
mod tokens;
mod tpp;

pub use apiops::{ApiOpsDeployment, ApiOpsKey};
pub use create::{FaceRows, KeyCommit};

use rusqlite::{params, Connection, OptionalExtension};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

pub use certs::{CertView, StoredCertificate};
pub use deletes::{BeginKeyDelete, Reconciled};
pub use key_pages::{After, Visibility};
pub use kps::KpsKeypair;
pub use records::{
    AuditEntry, CertificateRecord, DeleteIntent, Intent, ItemStatus, JobItem, JobRecord, JobStatus, KeyRecord, KeyStatus, SyncStatus,
};
pub use ssh_certs::SshCertificateRow;
pub use tokens::TokenIdentity;
pub use tpp::TppSession;

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
    /// The store's file system cannot take writes (full, read-only); found by [`Store::probe`].
    #[error("store: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// A fault of the disk or the database file that may pass (full, read-only, locked, I/O
    /// error), as opposed to a bug or a constraint: callers answer 503 with Retry-After.
    pub fn is_unavailable(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                C::DatabaseBusy
                    | C::DatabaseLocked
                    | C::OutOfMemory
                    | C::ReadOnly
                    | C::SystemIoFailure
                    | C::DiskFull
                    | C::CannotOpen
                    | C::FileLockingProtocolFailed
                    | C::PermissionDenied
            ),
            StoreError::Open { .. } | StoreError::Unavailable(_) => true,
            _ => false,
        }
    }
}

/// Below this much free space a key's commit may not fit: the store counts as full.
const MIN_FREE_BYTES: u64 = 1 << 20;
/// How long a write waits for another writer's lock before SQLITE_BUSY.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// The probe waits far less: it holds the store's mutex, and a locked store is what it reports.
const PROBE_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(200);

/// The edge instance's data-encryption key: public half in the clear, private half sealed.
#[derive(Debug, Clone)]
pub struct DekRecord {
    pub id: String,
    pub edge_instance_id: String,
    pub public_key: Vec<u8>,
    pub sealed_secret: Vec<u8>,
    pub token: String,
    pub created_at: crate::clock::Timestamp,
}

pub struct Store {
    conn: Mutex<Connection>,
    /// Namespaces whose changes go to the sync outbox (`outbox.rs`); empty until sync starts.
    sync_scope: std::sync::RwLock<outbox::SyncScope>,
    /// Set when the store could only be opened in the fallback mode (`Store::open`).
    open_problem: Option<String>,
    /// Signing audit rows waiting for the next group commit (`audit_log.rs`).
    audit_queue: audit_log::AuditQueue,
    /// Creation writes waiting for the next group commit (`group.rs`).
    group: group::GroupQueue,
    /// Bumped by every change to the `keys` table (an SQLite update hook), so in-memory views
    /// of the inventory (`core::sign`'s key cache) know when to read it again.
    keys_generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Rows read by id (`Store::key`), valid while `keys_generation` is unchanged: the hot
    /// `GET keys/{id}` then costs no SQLite read transaction (and its file locks).
    key_cache: Mutex<KeyCache>,
}

/// A key row as [`Store::keys_in_token`] reads it.
#[derive(Debug)]
pub struct TokenKeyRow {
    pub id: String,
    pub cka_id: Vec<u8>,
    pub status: KeyStatus,
    pub name: String,
    pub namespace: String,
}

/// What [`Store::key`] read, and at which `keys_generation`.
#[derive(Default)]
struct KeyCache {
    generation: u64,
    rows: std::collections::HashMap<String, std::sync::Arc<KeyRecord>>,
}

/// Rows [`Store::key`] keeps; past it the cache starts again (a bound on memory, not an LRU).
const KEY_CACHE_ROWS: usize = 4096;

/// SQLITE_FULL, SQLITE_IOERR (and its extended codes) and SQLITE_READONLY: the file system, not
/// the request.
pub fn is_io_or_full(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DiskFull | rusqlite::ErrorCode::SystemIoFailure | rusqlite::ErrorCode::ReadOnly)
    )
}

impl Store {
    /// Opens (creating with mode 0600) and migrates the store at `path`. When the file system is
    /// full, SQLite cannot create the WAL index (`-shm`) a normal open needs; the store is then
    /// opened in exclusive locking mode (WAL index in memory, which this daemon may do: it
    /// holds the state folder's lock), so reads still work — see [`Store::open_problem`].
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        match Store::open_mode(path, false) {
            Ok(s) => Ok(s),
            Err(StoreError::Sqlite(e)) if is_io_or_full(&e) => {
                tracing::error!(error = %e, path = %path.display(), "the store cannot be opened normally; opening it with the WAL index in memory");
                let mut s = Store::open_mode(path, true)?;
                s.open_problem = Some(e.to_string());
                Ok(s)
            }
            Err(e) => Err(e),
        }
    }

    fn open_mode(path: &Path, exclusive: bool) -> Result<Store, StoreError> {
        let open_err = |e: std::io::Error| StoreError::Open { path: path.display().to_string(), detail: e.to_string() };
        // Create the file ourselves so it is 0600 from its first byte; SQLite gives the -wal
        // and -shm files the database file's mode.
        std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(open_err)?;
        let conn = Connection::open(path)?;
        if exclusive {
            conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Room for every statement the hot paths cache (`prepare_cached`; rusqlite keeps 16),
        // so a sync pass and the request path do not evict each other's.
        conn.set_prepared_statement_cache_capacity(64);
        migrations::migrate(&conn)?;
        let keys_generation = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let generation = keys_generation.clone();
        // Fires inside the writing statement, before its commit: a reader that saw the old
        // generation re-reads later, never keeps a row the change made stale.
        conn.update_hook(Some(move |_: rusqlite::hooks::Action, _: &str, table: &str, _: i64| {
            if table == "keys" {
                generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }));
        Ok(Store {
            conn: Mutex::new(conn),
            sync_scope: Default::default(),
            open_problem: None,
            audit_queue: Default::default(),
            group: Default::default(),
            keys_generation,
            key_cache: Default::default(),
        })
    }

    /// Changes whenever a row of `keys` is inserted, updated or deleted (read it before reading
    /// the rows a cache keeps).
    pub fn keys_generation(&self) -> u64 {
        self.keys_generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Why the store had to be opened in the fallback mode (a full disk), if it was.
    pub fn open_problem(&self) -> Option<&str> {
        self.open_problem.as_deref()
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().expect("store mutex poisoned")
    }

    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self.conn().query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// Health's store probe: what a request's commit needs. A write transaction (the write
    /// lock, the schema, the pages it reads) that is rolled back, so it changes nothing; and, as
    /// a rolled-back transaction never reaches the disk in WAL mode, the file system itself:
    /// writable and with [`MIN_FREE_BYTES`] free.
    pub fn probe(&self) -> Result<(), StoreError> {
        let mut conn = self.conn();
        conn.busy_timeout(PROBE_BUSY_TIMEOUT)?;
        let written = (|| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let probe = AuditEntry {
                at: records::now(),
                principal: "keyport".into(),
                action: "health.probe".into(),
                namespace: None,
                key_id: None,
                outcome: "ok".into(),
                detail: None,
            };
            records::insert_audit_unlogged(&tx, &probe)?;
            tx.rollback()
        })();
        conn.busy_timeout(BUSY_TIMEOUT)?;
        written?;
        let Some(path) = conn.path().filter(|p| !p.is_empty()).map(std::path::PathBuf::from) else { return Ok(()) };
        drop(conn);
        let dir = path.parent().unwrap_or(Path::new("/"));
        let fs = nix::sys::statvfs::statvfs(dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot check the file system of {}: {e}", dir.display())))?;
        if fs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
            return Err(StoreError::Unavailable(format!(
                "the file system of {} is read-only; writes fail until it is remounted read-write",
                dir.display()
            )));
        }
        let free = fs.blocks_available() as u64 * fs.fragment_size() as u64;
        if free < MIN_FREE_BYTES {
            return Err(StoreError::Unavailable(format!(
                "the file system of {} is full ({free} bytes free); free space there — writes fail until then",
                dir.display()
            )));
        }
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

    pub fn certificates_of(&self, key_id: &str) -> Result<Vec<CertificateRecord>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT sha256, key_id, namespace, subject, issuer, serial, not_before, not_after, sha1, der, created_at FROM certificates WHERE key_id=?1 ORDER BY created_at",
        )?;
        let rows = st.query_map([key_id], CertificateRecord::from_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The oldest certificate of each key job `job_id` imported, by key id: what its status
    /// shows (TLS Protect Cloud's `certificateBytes`), in one query however many items it has —
    /// a client polls the status while the job runs.
    pub fn job_certificates(&self, job_id: &str) -> Result<std::collections::HashMap<String, CertificateRecord>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT c.sha256, c.key_id, c.namespace, c.subject, c.issuer, c.serial, c.not_before, c.not_after, c.sha1, c.der, c.created_at
             FROM job_items i JOIN certificates c ON c.key_id = i.key_id
             WHERE i.job_id=?1 AND i.status='IMPORTED' ORDER BY c.created_at",
        )?;
        let mut first = std::collections::HashMap::new();
        for c in st.query_map([job_id], CertificateRecord::from_row)? {
            let c = c?;
            if let Some(k) = c.key_id.clone() {
                first.entry(k).or_insert(c);
            }
        }
        Ok(first)
    }

    // --- jobs ---

    /// Records an accepted job with its still-encrypted input, so it survives a restart.
    pub fn create_job(&self, j: &JobRecord, input: &[u8]) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO jobs(id, kind, namespace, principal, status, created_at, total, failed, input) VALUES (?1,?2,?3,?4,?5,?6,?7,0,?8)",
            params![j.id, j.kind, j.namespace, j.principal, j.status, j.created_at, j.total, input],
        )?;
        Ok(())
    }

    pub fn job(&self, id: &str) -> Result<Option<(JobRecord, Vec<JobItem>)>, StoreError> {
        let conn = self.conn();
        let Some(job) =
            conn.query_row(&format!("SELECT {} FROM jobs WHERE id=?1", JobRecord::COLUMNS), [id], JobRecord::from_row).optional()?
        else {
            return Ok(None);
        };
        let mut st = conn.prepare("SELECT job_id, seq, status, key_id, fingerprint, reason FROM job_items WHERE job_id=?1 ORDER BY seq")?;
        let items = st.query_map([id], JobItem::from_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(Some((job, items)))
    }

    /// Jobs accepted but not finished (oldest first), with their input and the items done.
    pub fn unfinished_jobs(&self, kind: &str) -> Result<Vec<(JobRecord, Vec<u8>)>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!(
            "SELECT {}, input FROM jobs WHERE kind=?1 AND finished_at IS NULL AND input IS NOT NULL ORDER BY created_at",
            JobRecord::COLUMNS
        ))?;
        let rows = st.query_map([kind], |r| Ok((JobRecord::from_row(r)?, r.get::<_, Vec<u8>>(9)?)))?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn set_job_status(&self, id: &str, status: JobStatus) -> Result<(), StoreError> {
        self.conn().execute("UPDATE jobs SET status=?2 WHERE id=?1", params![id, status])?;
        Ok(())
    }

    pub fn record_job_item(&self, item: &JobItem) -> Result<(), StoreError> {
        records::insert_job_item(&self.conn(), item)?;
        Ok(())
    }

    /// Marks a job finished and drops its input.
    pub fn finish_job(&self, id: &str, status: JobStatus) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE jobs SET status=?2, finished_at=?3, input=NULL,
               failed=(SELECT COUNT(*) FROM job_items WHERE job_id=?1 AND status='FAILED')
             WHERE id=?1",
            params![id, status, records::now()],
        )?;
        Ok(())
    }

    // --- DEK ---

    pub fn dek(&self) -> Result<Option<DekRecord>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT id, edge_instance_id, public_key, sealed_secret, token, created_at FROM dek ORDER BY created_at LIMIT 1",
                [],
                |r| {
                    Ok(DekRecord {
                        id: r.get(0)?,
                        edge_instance_id: r.get(1)?,
                        public_key: r.get(2)?,
                        sealed_secret: r.get(3)?,
                        token: r.get(4)?,
                        created_at: r.get(5)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn insert_dek(&self, d: &DekRecord) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO dek(id, edge_instance_id, public_key, sealed_secret, token, created_at) VALUES (?1,?2,?3,?4,?5,?6)",
            params![d.id, d.edge_instance_id, d.public_key, d.sealed_secret, d.token, d.created_at],
        )?;
        Ok(())
    }

    /// The key with `id`, unless a delete of it is under way (then it is gone for callers).
    /// The hot read of `GET keys/{id}` and of sync: a statement prepared once per connection.
    pub fn key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.key_shared(id)?.map(|r| KeyRecord::clone(&r)))
    }

    /// [`Store::key`] without copying the row: the cache's own (`GET keys/{id}` answers it as
    /// it is).
    pub fn key_shared(&self, id: &str) -> Result<Option<std::sync::Arc<KeyRecord>>, StoreError> {
        static SQL: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| format!("SELECT {} FROM keys WHERE id=?1 AND status<>'deleting'", KeyRecord::COLUMNS));
        // A row cached at the current generation: no statement has changed `keys` since it
        // was read, so it is answered without the connection's lock (which a commit may hold
        // for milliseconds).
        {
            let cache = self.key_cache.lock().expect("poisoned");
            if cache.generation == self.keys_generation() {
                if let Some(row) = cache.rows.get(id) {
                    return Ok(Some(row.clone()));
                }
            }
        }
        // Under the connection's lock no write is under way, so the generation read here is
        // the one of the rows the query sees.
        let conn = self.conn();
        let generation = self.keys_generation();
        {
            let mut cache = self.key_cache.lock().expect("poisoned");
            if cache.generation != generation {
                cache.rows.clear();
                cache.generation = generation;
            }
            if let Some(row) = cache.rows.get(id) {
                return Ok(Some(row.clone()));
            }
        }
        let row = conn.prepare_cached(&SQL)?.query_row([id], KeyRecord::from_row).optional()?.map(std::sync::Arc::new);
        if let Some(r) = &row {
            let mut cache = self.key_cache.lock().expect("poisoned");
            if cache.generation == generation {
                if cache.rows.len() >= KEY_CACHE_ROWS {
                    cache.rows.clear();
                }
                cache.rows.insert(id.to_string(), r.clone());
            }
        }
        Ok(row)
    }

    pub fn key_by_name(&self, namespace: &str, name: &str) -> Result<Option<KeyRecord>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                &format!("SELECT {} FROM keys WHERE namespace=?1 AND name=?2 AND status='active'", KeyRecord::COLUMNS),
                [namespace, name],
                KeyRecord::from_row,
            )
            .optional()?)
    }

    /// Usable keys (status active) with this public key.
    pub fn keys_by_fingerprint(&self, fingerprint: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let conn = self.conn();
        // Cached: the ssh-agent runs this for every signature.
        let mut st = conn.prepare_cached(&format!("SELECT {} FROM keys WHERE fingerprint=?1 AND status='active'", KeyRecord::COLUMNS))?;
        let rows = st.query_map([fingerprint], KeyRecord::from_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Keys filtered by namespace and name (both optional), oldest first; missing keys are
    /// listed (with their status), keys being deleted are not.
    pub fn list_keys(&self, namespace: Option<&str>, name: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!(
            "SELECT {} FROM keys WHERE (?1 IS NULL OR namespace=?1) AND (?2 IS NULL OR name=?2) AND status<>'deleting' ORDER BY created_at, id",
            KeyRecord::COLUMNS
        ))?;
        let rows = st.query_map(params![namespace, name], KeyRecord::from_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Every row of `token`, whatever its status (reconciliation).
    /// The rows of `token`'s keys that are not being deleted, as reconciliation compares them
    /// with the token's index: five columns, not the whole record (at start-up with 10,000
    /// keys the whole records were megabytes of heap that stay resident once freed).
    pub fn keys_in_token(&self, token: &str) -> Result<Vec<TokenKeyRow>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT id, cka_id, status, name, namespace FROM keys WHERE token=?1 AND status<>'deleting'")?;
        let rows = st
            .query_map([token], |r| {
                Ok(TokenKeyRow { id: r.get(0)?, cka_id: r.get(1)?, status: r.get(2)?, name: r.get(3)?, namespace: r.get(4)? })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Removes an inventory row and audits it, in one transaction.
    pub fn delete_key(&self, id: &str, audit: &AuditEntry) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = self.delete_key_in(&tx, id, audit)?;
        tx.commit()?;
        Ok(n)
    }

    /// The row, its certificate rows and outbox hook, and the audit entry, inside `tx`.
    fn delete_key_in(&self, tx: &rusqlite::Transaction, id: &str, audit: &AuditEntry) -> Result<bool, StoreError> {
        outbox::on_delete(tx, &self.sync_scope(), id)?;
        // A certificate row is one per SHA-256: if the same key is also in another namespace,
        // the row moves to that key (its token objects hold the certificate too).
        tx.execute(
            "UPDATE certificates SET key_id=(SELECT o.id FROM keys o JOIN keys k ON o.fingerprint=k.fingerprint
                 WHERE k.id=?1 AND o.id<>?1 ORDER BY o.created_at LIMIT 1)
             WHERE key_id=?1 AND cka_id IS NULL
               AND EXISTS(SELECT 1 FROM keys o JOIN keys k ON o.fingerprint=k.fingerprint WHERE k.id=?1 AND o.id<>?1)",
            [id],
        )?;
        // The key's certificate objects share its CKA_ID and went with it; one stored under a
        // CKA_ID of its own stays in the token and only loses the link.
        tx.execute("DELETE FROM certificates WHERE key_id=?1 AND (cka_id IS NULL OR cka_id=(SELECT cka_id FROM keys WHERE id=?1))", [id])?;
        tx.execute("UPDATE certificates SET key_id=NULL WHERE key_id=?1", [id])?;
        let n = tx.execute("DELETE FROM keys WHERE id=?1", [id])?;
        records::insert_audit(tx, audit)?;
        Ok(n > 0)
    }

    pub fn audit(&self, e: &AuditEntry) -> Result<(), StoreError> {
        let conn = self.conn();
        records::insert_audit(&conn, e)?;
        Ok(())
    }

    pub fn recent_audit(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let conn = self.conn();
        let mut st =
            conn.prepare("SELECT at, principal, action, namespace, key_id, outcome, detail FROM audit ORDER BY seq DESC LIMIT ?1")?;
        let rows = st.query_map([limit], AuditEntry::from_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

/// Aggregates for `GET /keyport/v1/metrics`: one small query each, no rows loaded.
impl Store {
    /// Keys per namespace, by namespace.
    pub fn keys_per_namespace(&self) -> Result<Vec<(String, usize)>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT namespace, COUNT(*) FROM keys GROUP BY namespace ORDER BY namespace")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as usize)))?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The sync outbox's row count and the `created_at` of its oldest row.
    pub fn sync_backlog(&self) -> Result<(usize, Option<crate::clock::Timestamp>), StoreError> {
        Ok(self.conn().query_row("SELECT COUNT(*), MIN(created_at) FROM sync_outbox", [], |r| {
            Ok((r.get::<_, i64>(0)? as usize, r.get::<_, Option<crate::clock::Timestamp>>(1)?))
        })?)
    }
}

#[cfg(test)]
mod metric_aggregate_tests {
    #[test]
    fn an_empty_store_has_no_keys_and_no_backlog() {
        let d = tempfile::tempdir().unwrap();
        let s = super::Store::open(&d.path().join("k.db")).unwrap();
        assert!(s.keys_per_namespace().unwrap().is_empty());
        assert_eq!(s.sync_backlog().unwrap(), (0, None));
    }
}
