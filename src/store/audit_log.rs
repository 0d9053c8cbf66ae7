//! Audit rows written on the hot path of signing (`core::sign`): committed to the WAL before
//! the caller gets its signature, so a daemon crash keeps every row, but without an fsync per
//! row (`synchronous=NORMAL` for this one commit). The next fsync'd commit or checkpoint makes
//! them durable against a power loss too. An fsync per signature would hold the agent to the
//! disk's flush rate (≈ 1,000/s here) instead of the token's.

use super::{AuditEntry, Store, StoreError};

impl Store {
    pub fn audit_unsynced(&self, e: &AuditEntry) -> Result<(), StoreError> {
        super::records::log_audit(e);
        let conn = self.conn();
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // records::insert_audit's statement, kept prepared: this runs for every signature.
        let r = conn
            .prepare_cached("INSERT INTO audit(at, principal, action, namespace, key_id, outcome, detail) VALUES (?1,?2,?3,?4,?5,?6,?7)")
            .and_then(|mut st| st.execute(rusqlite::params![e.at, e.principal, e.action, e.namespace, e.key_id, e.outcome, e.detail]));
        // Always back to FULL for every other write, whatever the insert did.
        conn.pragma_update(None, "synchronous", "FULL")?;
        r?;
        Ok(())
    }
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
        // Readable by another connection at once (it is in the WAL).
        let other = rusqlite::Connection::open(d.path().join("k.db")).unwrap();
        let n: i64 = other.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1);
    }
}
