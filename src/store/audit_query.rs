//! Reading the audit log (`GET /keyport/v1/audit`, `keyport audit`): newest first, filtered,
//! one page at a time by the row's sequence number (stable while rows are added).

use super::{AuditEntry, Store, StoreError};

/// What to read. `since` is a stored-format time (`records::now`'s shape), so it compares as
/// text; `before` is a sequence number from the previous page.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub since: Option<String>,
    pub key_id: Option<String>,
    pub principal: Option<String>,
    pub before: Option<i64>,
    pub limit: u32,
}

impl Store {
    /// Up to `limit` entries with their sequence numbers, newest first.
    pub fn audit_page(&self, f: &AuditFilter) -> Result<Vec<(i64, AuditEntry)>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT at, principal, action, namespace, key_id, outcome, detail, seq FROM audit
             WHERE (?1 IS NULL OR at >= ?1) AND (?2 IS NULL OR key_id = ?2) AND (?3 IS NULL OR principal = ?3)
               AND (?4 IS NULL OR seq < ?4)
             ORDER BY seq DESC LIMIT ?5",
        )?;
        let rows = st
            .query_map(rusqlite::params![f.since, f.key_id, f.principal, f.before, f.limit], |r| {
                Ok((r.get::<_, i64>(7)?, AuditEntry::from_row(r)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{test_rows, Store};
    use super::AuditFilter;

    #[test]
    fn filters_and_pages() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("k.db")).unwrap();
        for i in 0..5 {
            let mut e = test_rows::audit();
            e.principal = if i % 2 == 0 { "alice".into() } else { "bob".into() };
            e.key_id = Some(format!("k{i}"));
            s.audit(&e).unwrap();
        }
        let all = s.audit_page(&AuditFilter { limit: 2, ..Default::default() }).unwrap();
        assert_eq!(all.iter().map(|(_, e)| e.key_id.clone().unwrap()).collect::<Vec<_>>(), ["k4", "k3"]);
        let next = s.audit_page(&AuditFilter { limit: 2, before: Some(all[1].0), ..Default::default() }).unwrap();
        assert_eq!(next.iter().map(|(_, e)| e.key_id.clone().unwrap()).collect::<Vec<_>>(), ["k2", "k1"]);
        let alice = s.audit_page(&AuditFilter { limit: 10, principal: Some("alice".into()), ..Default::default() }).unwrap();
        assert_eq!(alice.len(), 3);
        let k1 = s.audit_page(&AuditFilter { limit: 10, key_id: Some("k1".into()), ..Default::default() }).unwrap();
        assert_eq!(k1.len(), 1);
        let future =
            s.audit_page(&AuditFilter { limit: 10, since: Some("2999-01-01T00:00:00.000000Z".into()), ..Default::default() }).unwrap();
        assert!(future.is_empty());
    }
}
