//! Audit rows written on the hot path of signing (`core::sign`): committed to the WAL before
//! the caller gets its signature, so a daemon crash keeps every row, but without an fsync per
//! row (`synchronous=NORMAL` for these commits). The next fsync'd commit or checkpoint makes
//! them durable against a power loss too. An fsync per signature would hold the agent to the
//! disk's flush rate (≈ 1,000/s here) instead of the token's.
//!
//! Group commit: a signer queues its row, then takes the store's connection; whoever holds it
//! writes every queued row in one transaction and tells each row's signer how it went. A signer
//! whose row someone else committed returns at once; none returns before its row is in the WAL
//! (a failed commit fails every signer in it: no signature is answered with its audit unwritten).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use super::{AuditEntry, Store, StoreError};

/// How one queued row's commit went: `Err` carries SQLite's code and message.
type Outcome = Result<(), (rusqlite::ffi::Error, String)>;

#[derive(Debug, Default)]
pub(super) struct AuditQueue {
    rows: Mutex<VecDeque<(AuditEntry, Arc<OnceLock<Outcome>>)>>,
}

impl Store {
    pub fn audit_unsynced(&self, e: &AuditEntry) -> Result<(), StoreError> {
        super::records::log_audit(e);
        let mine = Arc::new(OnceLock::new());
        self.audit_queue.rows.lock().expect("poisoned").push_back((e.clone(), mine.clone()));
        let conn = self.conn();
        if let Some(done) = mine.get() {
            return outcome(done);
        }
        // Not written yet, so still queued (rows leave the queue only under this lock).
        let batch: Vec<_> = self.audit_queue.rows.lock().expect("poisoned").drain(..).collect();
        let r = write_batch(&conn, &batch);
        drop(conn);
        let shared: Outcome = match &r {
            Ok(()) => Ok(()),
            Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(code, msg))) => {
                Err((*code, msg.clone().unwrap_or_else(|| "audit write failed".into())))
            }
            Err(other) => Err((rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR), other.to_string())),
        };
        for (_, slot) in &batch {
            let _ = slot.set(shared.clone());
        }
        r
    }
}

fn outcome(o: &Outcome) -> Result<(), StoreError> {
    o.clone().map_err(|(code, msg)| StoreError::Sqlite(rusqlite::Error::SqliteFailure(code, Some(msg))))
}

/// The rows in one transaction at `synchronous=NORMAL`, then back to FULL whatever happened.
fn write_batch(conn: &rusqlite::Connection, batch: &[(AuditEntry, Arc<OnceLock<Outcome>>)]) -> Result<(), StoreError> {
    conn.prepare_cached("PRAGMA synchronous=NORMAL")?.execute([])?;
    let r = (|| -> Result<(), StoreError> {
        let tx = conn.unchecked_transaction()?;
        {
            // records::insert_audit's statement, kept prepared: this runs for every signature.
            let mut st = tx.prepare_cached(
                "INSERT INTO audit(at, principal, action, namespace, key_id, outcome, detail) VALUES (?1,?2,?3,?4,?5,?6,?7)",
            )?;
            for (e, _) in batch {
                st.execute(rusqlite::params![e.at, e.principal, e.action, e.namespace, e.key_id, e.outcome, e.detail])?;
            }
        }
        tx.commit()?;
        Ok(())
    })();
    // Always back to FULL for every other write.
    conn.prepare_cached("PRAGMA synchronous=FULL")?.execute([])?;
    r
}

#[cfg(test)]
mod tests {
    use super::super::{test_rows, Store};

    #[test]
    fn the_row_is_written_and_every_other_write_stays_synced() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("k.db")).unwrap();
        s.audit_unsynced(&test_rows::audit()).unwrap();
        assert_eq!(s.recent_audit(10).unwrap().len(), 1);
        let sync: i64 = s.conn().query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(sync, 2, "back to FULL");
        // Rows queued by other signers while one commits are written by it, each acknowledged.
        let s = std::sync::Arc::new(s);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || (0..50).for_each(|_| s.audit_unsynced(&test_rows::audit()).unwrap()))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(s.recent_audit(1000).unwrap().len(), 401);
        // Readable by another connection at once (it is in the WAL).
        let other = rusqlite::Connection::open(d.path().join("k.db")).unwrap();
        let n: i64 = other.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 401);
    }
}
