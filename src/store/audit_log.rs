//! Audit rows written on the hot path of signing (`core::sign`): committed to the WAL before
//! the caller gets its signature, so a daemon crash keeps every row, but without an fsync per
//! row (`synchronous=NORMAL` for this one commit). The next fsync'd commit or checkpoint makes
//! them durable against a power loss too. An fsync per signature would hold the agent to the
//! disk's flush rate (≈ 1,000/s here) instead of the token's.

use super::{records, AuditEntry, Store, StoreError};

impl Store {
    pub fn audit_unsynced(&self, e: &AuditEntry) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let r = records::insert_audit(&conn, e);
        // Always back to FULL for every other write, whatever the insert did.
        conn.pragma_update(None, "synchronous", "FULL")?;
        r?;
        Ok(())
    }
}
