//! The sync outbox: every change that must reach the remote vault is a row here, written in the
//! same transaction as the change (`on_commit`, `on_certificate`, `on_delete`, called from
//! `Store::commit_key`, `Store::commit_certificate` and `Store::delete_key`). The sync worker (`crate::sync::worker`) takes rows in order per key and
//! deletes a row only after the vault confirmed it; what the vault holds per key is `sync_state`.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use super::records::{now, CertificateRecord, KeyRecord};
use super::{Store, StoreError};

pub const OP_KEY: &str = "key";
pub const OP_CERTIFICATE: &str = "certificate";
pub const OP_DELETE: &str = "delete";

/// One pending change.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OutboxRow {
    pub seq: i64,
    pub key_id: String,
    pub namespace: String,
    pub name: String,
    pub op: String,
    pub cert_sha256: Option<String>,
    pub created_at: crate::clock::Timestamp,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub permanent: bool,
    pub next_attempt_at: Option<crate::clock::Timestamp>,
}

impl OutboxRow {
    const COLUMNS: &'static str =
        "seq, key_id, namespace, name, op, cert_sha256, created_at, attempts, last_error, permanent, next_attempt_at";

    fn from_row(r: &Row) -> rusqlite::Result<OutboxRow> {
        Ok(OutboxRow {
            seq: r.get(0)?,
            key_id: r.get(1)?,
            namespace: r.get(2)?,
            name: r.get(3)?,
            op: r.get(4)?,
            cert_sha256: r.get(5)?,
            created_at: r.get(6)?,
            attempts: r.get(7)?,
            last_error: r.get(8)?,
            permanent: r.get(9)?,
            next_attempt_at: r.get(10)?,
        })
    }
}

/// What the vault confirmed for one key.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SyncState {
    pub key_id: String,
    pub namespace: String,
    pub name: String,
    pub vault_name: Option<String>,
    pub status: super::records::SyncStatus,
    pub pushed_version: Option<i64>,
    pub pushed_at: Option<crate::clock::Timestamp>,
    pub detail: Option<String>,
}

impl SyncState {
    const COLUMNS: &'static str = "key_id, namespace, name, vault_name, status, pushed_version, pushed_at, detail";

    fn from_row(r: &Row) -> rusqlite::Result<SyncState> {
        Ok(SyncState {
            key_id: r.get(0)?,
            namespace: r.get(1)?,
            name: r.get(2)?,
            vault_name: r.get(3)?,
            status: r.get(4)?,
            pushed_version: r.get(5)?,
            pushed_at: r.get(6)?,
            detail: r.get(7)?,
        })
    }
}

/// Which namespaces sync: `None` = sync is off (nothing is enqueued); `"*"` = every namespace.
#[derive(Debug, Clone, Default)]
pub struct SyncScope(pub Option<Vec<String>>);

impl SyncScope {
    pub fn includes(&self, namespace: &str) -> bool {
        self.0.as_ref().is_some_and(|l| l.iter().any(|n| n == "*" || n == namespace))
    }
}

fn insert(conn: &Connection, key_id: &str, namespace: &str, name: &str, op: &str, cert: Option<&str>) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO sync_outbox(key_id, namespace, name, op, cert_sha256, created_at) VALUES (?1,?2,?3,?4,?5,?6)")?
        .execute(params![key_id, namespace, name, op, cert, now()])?;
    Ok(())
}

/// Hook of `Store::commit_key` (inside its transaction): the new key and its certificate.
pub(super) fn on_commit(conn: &Connection, scope: &SyncScope, k: &KeyRecord, certs: &[CertificateRecord]) -> rusqlite::Result<()> {
    if !scope.includes(&k.namespace) {
        return Ok(());
    }
    insert(conn, &k.id, &k.namespace, &k.name, OP_KEY, None)?;
    for c in certs.iter().filter(|c| c.key_id.as_deref() == Some(k.id.as_str())) {
        insert(conn, &k.id, &k.namespace, &k.name, OP_CERTIFICATE, Some(&c.sha256))?;
    }
    Ok(())
}

/// Hook of `Store::commit_certificate` (inside its transaction): a certificate added later to
/// a key of a synced namespace (certificate import).
pub(super) fn on_certificate(conn: &Connection, scope: &SyncScope, key_id: &str, sha256: &str) -> rusqlite::Result<()> {
    let row: Option<(String, String)> =
        conn.query_row("SELECT namespace, name FROM keys WHERE id=?1", [key_id], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
    if let Some((ns, name)) = row.filter(|(ns, _)| scope.includes(ns)) {
        insert(conn, key_id, &ns, &name, OP_CERTIFICATE, Some(sha256))?;
    }
    Ok(())
}

/// Hook of `Store::delete_key` (inside its transaction, before the row goes).
pub(super) fn on_delete(conn: &Connection, scope: &SyncScope, key_id: &str) -> rusqlite::Result<()> {
    let row: Option<(String, String)> =
        conn.query_row("SELECT namespace, name FROM keys WHERE id=?1", [key_id], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
    if let Some((ns, name)) = row.filter(|(ns, _)| scope.includes(ns)) {
        insert(conn, key_id, &ns, &name, OP_DELETE, None)?;
    }
    Ok(())
}

/// Hook of `Store::rotation_step` (inside its transaction): a keyset version changed state
/// (retired, active), so the key's vault record, which names its keyset version and state, is
/// written again. A version whose key is gone (abandoned, deleted) has nothing to push.
pub(super) fn on_keyset_version(conn: &Connection, scope: &SyncScope, keyset_id: &str, version: i64) -> rusqlite::Result<()> {
    let row: Option<(String, String, String)> = conn
        .query_row(
            "SELECT k.id, k.namespace, k.name FROM keyset_versions v JOIN keys k ON k.id=v.key_id
             WHERE v.keyset_id=?1 AND v.version=?2 AND k.status<>'deleting'",
            params![keyset_id, version],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    if let Some((id, ns, name)) = row.filter(|(_, ns, _)| scope.includes(ns)) {
        insert(conn, &id, &ns, &name, OP_KEY, None)?;
    }
    Ok(())
}

impl Store {
    /// Turns enqueueing on for these namespaces (the daemon calls this at start when `[sync]`
    /// is configured).
    pub fn set_sync_scope(&self, scope: SyncScope) {
        *self.sync_scope.write().expect("poisoned") = scope;
    }

    pub(super) fn sync_scope(&self) -> SyncScope {
        self.sync_scope.read().expect("poisoned").clone()
    }

    /// Enqueues keys of synced namespaces the vault has never confirmed and nothing is pending
    /// for: keys made before sync was turned on, or before their namespace opted in.
    pub fn sync_enqueue_missing(&self) -> Result<usize, StoreError> {
        let scope = self.sync_scope();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let keys: Vec<KeyRecord> = {
            let mut st = tx.prepare(&format!(
                "SELECT {} FROM keys k WHERE NOT EXISTS(SELECT 1 FROM sync_state s WHERE s.key_id=k.id)
                   AND NOT EXISTS(SELECT 1 FROM sync_outbox o WHERE o.key_id=k.id) ORDER BY created_at, id",
                KeyRecord::COLUMNS.split(", ").map(|c| format!("k.{c}")).collect::<Vec<_>>().join(", ")
            ))?;
            let rows = st.query_map([], KeyRecord::from_row)?.collect::<Result<Vec<_>, _>>()?;
            rows
        };
        let mut n = 0;
        for k in keys.iter().filter(|k| scope.includes(&k.namespace)) {
            let certs: Vec<String> = {
                let mut st = tx.prepare("SELECT sha256 FROM certificates WHERE key_id=?1 ORDER BY created_at")?;
                let rows = st.query_map([&k.id], |r| r.get(0))?.collect::<Result<Vec<_>, _>>()?;
                rows
            };
            insert(&tx, &k.id, &k.namespace, &k.name, OP_KEY, None)?;
            for c in &certs {
                insert(&tx, &k.id, &k.namespace, &k.name, OP_CERTIFICATE, Some(c))?;
            }
            n += 1;
        }
        tx.commit()?;
        Ok(n)
    }

    /// The vault lost key `key_id` (or its certificates): enqueue the key and its certificates
    /// again, unless rows for it are already pending, and say why in its state. Returns whether
    /// rows were added.
    pub fn sync_requeue(&self, key_id: &str, why: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let pending: bool = tx.query_row("SELECT EXISTS(SELECT 1 FROM sync_outbox WHERE key_id=?1)", [key_id], |r| r.get(0))?;
        let key: Option<(String, String)> =
            tx.query_row("SELECT namespace, name FROM keys WHERE id=?1", [key_id], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
        let scope = self.sync_scope();
        let Some((ns, name)) = key.filter(|(ns, _)| !pending && scope.includes(ns)) else { return Ok(false) };
        let certs: Vec<String> = {
            let mut st = tx.prepare("SELECT sha256 FROM certificates WHERE key_id=?1 ORDER BY created_at")?;
            let rows = st.query_map([key_id], |r| r.get(0))?.collect::<Result<Vec<_>, _>>()?;
            rows
        };
        insert(&tx, key_id, &ns, &name, OP_KEY, None)?;
        for c in &certs {
            insert(&tx, key_id, &ns, &name, OP_CERTIFICATE, Some(c))?;
        }
        tx.execute("UPDATE sync_state SET detail=?2 WHERE key_id=?1", params![key_id, why])?;
        tx.commit()?;
        Ok(true)
    }

    /// The lost-data check found the vault holding everything of a key whose state still said
    /// otherwise (a KV record write whose answer was lost, though the write landed): the note goes.
    pub fn sync_clear_detail(&self, key_id: &str) -> Result<(), StoreError> {
        self.conn().execute("UPDATE sync_state SET detail=NULL WHERE key_id=?1 AND status='synced'", [key_id])?;
        Ok(())
    }

    /// Every pending row, oldest first.
    pub fn sync_rows(&self) -> Result<Vec<OutboxRow>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!("SELECT {} FROM sync_outbox ORDER BY seq", OutboxRow::COLUMNS))?;
        let rows = st.query_map([], OutboxRow::from_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The vault confirmed row `seq`: the row goes and the key's state is recorded, together.
    ///
    /// Committed at `synchronous=NORMAL`: the change is in the WAL before this returns (a
    /// crash of keyport keeps it) but not fsync'd per row; a power loss may take back the last
    /// ones, and those rows are pushed again by the next pass, which reads before it writes, so
    /// the vault gets nothing twice. An fsync per row was half of a 1,000-key pass's time.
    pub fn sync_done(&self, seq: i64, state: Option<&SyncState>) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.prepare_cached("PRAGMA synchronous=NORMAL")?.execute([])?;
        let r = Self::sync_done_in(&conn, seq, state);
        // Always back to FULL for every other write.
        conn.prepare_cached("PRAGMA synchronous=FULL")?.execute([])?;
        r
    }

    fn sync_done_in(conn: &rusqlite::Connection, seq: i64, state: Option<&SyncState>) -> Result<(), StoreError> {
        // Cached statements: a pass records two confirmations per key, and parsing these
        // was most of their cost (BENCHMARKS.md, sync, 2026-12-05).
        let tx = conn.unchecked_transaction()?;
        tx.prepare_cached("DELETE FROM sync_outbox WHERE seq=?1")?.execute([seq])?;
        if let Some(s) = state {
            tx.prepare_cached(
                "INSERT INTO sync_state(key_id, namespace, name, vault_name, status, pushed_version, pushed_at, detail)
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8)
                 ON CONFLICT(key_id) DO UPDATE SET namespace=excluded.namespace, name=excluded.name, vault_name=excluded.vault_name,
                   status=excluded.status, pushed_version=excluded.pushed_version, pushed_at=excluded.pushed_at, detail=excluded.detail",
            )?
            .execute(params![
                s.key_id,
                s.namespace,
                s.name,
                s.vault_name,
                s.status,
                s.pushed_version,
                s.pushed_at,
                s.detail
            ])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Row `seq` failed: counted, its error kept, and retried at `next_attempt_at` (a permanent
    /// failure waits for `sync now`).
    pub fn sync_failed(
        &self,
        seq: i64,
        error: &str,
        permanent: bool,
        next_attempt_at: Option<crate::clock::Timestamp>,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE sync_outbox SET attempts=attempts+1, last_error=?2, permanent=?3, next_attempt_at=?4 WHERE seq=?1",
            params![seq, error, permanent, next_attempt_at],
        )?;
        Ok(())
    }

    pub fn sync_states(&self) -> Result<Vec<SyncState>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!("SELECT {} FROM sync_state ORDER BY namespace, name", SyncState::COLUMNS))?;
        let rows = st.query_map([], SyncState::from_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn sync_state(&self, key_id: &str) -> Result<Option<SyncState>, StoreError> {
        static SQL: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| format!("SELECT {} FROM sync_state WHERE key_id=?1", SyncState::COLUMNS));
        let conn = self.conn();
        let row = conn.prepare_cached(&SQL)?.query_row([key_id], SyncState::from_row).optional()?;
        Ok(row)
    }

    pub fn certificate_by_sha256(&self, sha256: &str) -> Result<Option<CertificateRecord>, StoreError> {
        let conn = self.conn();
        let row = conn
            .prepare_cached(
                "SELECT sha256, key_id, namespace, subject, issuer, serial, not_before, not_after, sha1, der, created_at FROM certificates WHERE sha256=?1",
            )?
            .query_row([sha256], CertificateRecord::from_row)
            .optional()?;
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_rows::audit;

    fn rec(id: &str, ns: &str) -> KeyRecord {
        crate::store::test_rows::key(id, ns, &format!("n{id}"), true)
    }

    #[test]
    fn rows_follow_commits_and_deletes_in_scope_only() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("k.db")).unwrap();
        s.commit_key(&rec("01", "web"), &[], &audit(), None).unwrap();
        assert!(s.sync_rows().unwrap().is_empty(), "sync off: nothing enqueued");
        s.set_sync_scope(SyncScope(Some(vec!["web".into()])));
        s.commit_key(&rec("02", "web"), &[], &audit(), None).unwrap();
        s.commit_key(&rec("03", "ssh"), &[], &audit(), None).unwrap();
        s.delete_key("02", &audit()).unwrap();
        let ops: Vec<(String, String)> = s.sync_rows().unwrap().into_iter().map(|r| (r.key_id, r.op)).collect();
        assert_eq!(ops, vec![("02".into(), OP_KEY.into()), ("02".into(), OP_DELETE.into())]);
        assert_eq!(s.sync_enqueue_missing().unwrap(), 1, "key 01 predates the scope");
        let first = s.sync_rows().unwrap()[0].clone();
        s.sync_failed(first.seq, "down", false, Some("2000-01-01T00:00:00Z".parse().unwrap())).unwrap();
        assert_eq!(s.sync_rows().unwrap()[0].attempts, 1);
        s.sync_done(first.seq, None).unwrap();
        assert_eq!(s.sync_rows().unwrap().len(), 2);
        assert!(!s.sync_requeue("01", "lost").unwrap(), "01 still has a pending row");
        for r in s.sync_rows().unwrap() {
            s.sync_done(r.seq, None).unwrap();
        }
        assert!(s.sync_requeue("01", "lost").unwrap(), "a key the vault lost goes back in the outbox");
        assert!(!s.sync_requeue("01", "lost").unwrap(), "once");
        assert!(!s.sync_requeue("02", "lost").unwrap(), "a deleted key is not pushed again");
        assert!(!s.sync_requeue("03", "lost").unwrap(), "a namespace that does not sync");
        assert_eq!(s.sync_rows().unwrap().iter().map(|r| (r.key_id.as_str(), r.op.as_str())).collect::<Vec<_>>(), [("01", OP_KEY)]);
    }

    #[test]
    fn a_certificate_imported_later_for_a_synced_key_is_queued() {
        use crate::store::{JobItem, StoredCertificate};
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("k.db")).unwrap();
        s.set_sync_scope(SyncScope(Some(vec!["web".into()])));
        s.commit_key(&rec("01", "web"), &[], &audit(), None).unwrap();
        for r in s.sync_rows().unwrap() {
            s.sync_done(r.seq, None).unwrap();
        }
        let item = crate::store::test_rows::import_job(&s, "j", "web");
        let cert = StoredCertificate {
            record: crate::store::test_rows::cert("c1", Some("01"), "web"),
            token: Some("soft".into()),
            cka_id: Some(vec![1; 16]),
            job_id: Some("j".into()),
        };
        assert!(s.commit_certificate(&cert, &audit(), &item).unwrap());
        let rows = s.sync_rows().unwrap();
        assert_eq!(rows.iter().map(|r| (r.op.as_str(), r.cert_sha256.as_deref())).collect::<Vec<_>>(), [(OP_CERTIFICATE, Some("c1"))]);
        assert!(!s.commit_certificate(&cert, &audit(), &JobItem { seq: 1, ..item }).unwrap(), "a duplicate queues nothing");
        assert_eq!(s.sync_rows().unwrap().len(), 1);
    }
}
