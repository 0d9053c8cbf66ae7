//! Delete intents and key status: a delete is recorded before the first token object goes and
//! finished (row, certificate rows, outbox, audit) in one transaction once they are gone.

use rusqlite::{params, OptionalExtension};

use super::records::{DeleteIntent, KeyStatus};
use super::{AuditEntry, Store, StoreError};

/// What `Store::apply_reconciliation` changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub marked_missing: usize,
    /// Missing rows whose objects are back: active again.
    pub back: usize,
    pub certificate_rows_removed: usize,
}

/// How a caller's key delete could start (`Store::begin_key_delete`).
#[derive(Debug)]
pub enum BeginKeyDelete {
    Started(DeleteIntent),
    /// No such key, or its delete is recorded already.
    Gone,
    /// The key is a keyset's active or pending version: the keyset decides over it.
    KeysetVersion {
        namespace: String,
        keyset: String,
        version: i64,
        state: String,
    },
}

/// Records the intent and marks the row `deleting`, inside `tx`; `None` when there is no such
/// key or its delete is recorded already.
pub(super) fn begin_delete_in(tx: &rusqlite::Connection, id: &str, principal: &str) -> Result<Option<DeleteIntent>, StoreError> {
    let row = tx
        .query_row("SELECT token, cka_id, namespace, name FROM keys WHERE id=?1 AND status<>'deleting'", [id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?))
        })
        .optional()?;
    let Some((token, cka_id, namespace, name)) = row else { return Ok(None) };
    let intent =
        DeleteIntent { key_id: id.into(), token, cka_id, namespace, name, principal: principal.into(), created_at: super::records::now() };
    tx.execute(
        &format!("INSERT INTO delete_intents({}) VALUES (?1,?2,?3,?4,?5,?6,?7)", DeleteIntent::COLUMNS),
        params![intent.key_id, intent.token, intent.cka_id, intent.namespace, intent.name, intent.principal, intent.created_at],
    )?;
    tx.execute("UPDATE keys SET status='deleting' WHERE id=?1", [id])?;
    Ok(Some(intent))
}

/// The recorded delete intents of these keys, inside `tx`.
pub(super) fn intents_in(tx: &rusqlite::Connection, keys: &[String]) -> Result<Vec<DeleteIntent>, StoreError> {
    let mut st = tx.prepare(&format!("SELECT {} FROM delete_intents WHERE key_id=?1", DeleteIntent::COLUMNS))?;
    let mut out = Vec::new();
    for k in keys {
        if let Some(i) = st.query_row([k], DeleteIntent::from_row).optional()? {
            out.push(i);
        }
    }
    Ok(out)
}

impl Store {
    /// Starts the delete of key `id` on behalf of `principal`: records the intent and marks the
    /// row `deleting` (from now on it is not listed or usable), in one transaction. `None` when
    /// there is no such key or a delete of it is already recorded: of concurrent deletes of
    /// one key exactly one gets the intent.
    pub fn begin_delete(&self, id: &str, principal: &str) -> Result<Option<DeleteIntent>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let intent = begin_delete_in(&tx, id, principal)?;
        tx.commit()?;
        Ok(intent)
    }

    /// [`Store::begin_delete`] of a key a caller asked to delete: refused (nothing changed)
    /// while the key is a keyset's active or pending version, checked in the same transaction
    /// so a rotation cannot make it one in between.
    pub fn begin_key_delete(&self, id: &str, principal: &str) -> Result<BeginKeyDelete, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: Option<(String, String, i64, String)> = tx
            .query_row(
                "SELECT k.namespace, k.name, v.version, v.state FROM keyset_versions v JOIN keysets k ON k.id=v.keyset_id
                 WHERE v.key_id=?1 AND v.state IN ('active','pending')",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        if let Some((namespace, keyset, version, state)) = version {
            return Ok(BeginKeyDelete::KeysetVersion { namespace, keyset, version, state });
        }
        let intent = begin_delete_in(&tx, id, principal)?;
        tx.commit()?;
        Ok(match intent {
            Some(i) => BeginKeyDelete::Started(i),
            None => BeginKeyDelete::Gone,
        })
    }

    /// Finishes a delete whose token objects are gone: the row (with its certificate rows and
    /// outbox entry), the intent and the audit entry, in one transaction.
    pub fn finish_delete(&self, key_id: &str, audit: &AuditEntry) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = self.delete_key_in(&tx, key_id, audit)?;
        tx.execute("DELETE FROM delete_intents WHERE key_id=?1", [key_id])?;
        tx.commit()?;
        Ok(n)
    }

    /// Deletes recorded and not finished, oldest first.
    pub fn delete_intents(&self) -> Result<Vec<DeleteIntent>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!("SELECT {} FROM delete_intents ORDER BY created_at", DeleteIntent::COLUMNS))?;
        let rows = st.query_map([], DeleteIntent::from_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Sets the status of the rows `ids` (never of a row being deleted) and audits each change
    /// in the same transaction; returns how many rows changed.
    pub fn set_key_status(&self, ids: &[String], status: KeyStatus, audit: impl Fn(&str) -> AuditEntry) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut n = 0;
        for id in ids {
            let changed =
                tx.execute("UPDATE keys SET status=?2 WHERE id=?1 AND status<>'deleting' AND status<>?2", params![id, status.as_str()])?;
            if changed > 0 {
                super::records::insert_audit(&tx, &audit(id))?;
                n += changed;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// Start-up reconciliation's row changes, in one transaction: each key's new status and each
    /// certificate row to remove, with an audit entry per row that changes. Linear in the rows
    /// (statements prepared once); the audit lines go to the log at debug level only, since the
    /// caller logs one line with the counts (100,000 rows must not mean 100,000 log lines).
    /// Returns what changed (a row a concurrent delete took is not counted).
    pub fn apply_reconciliation(
        &self,
        statuses: &[(String, KeyStatus, AuditEntry)],
        certificates: &[(String, AuditEntry)],
    ) -> Result<Reconciled, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut done = Reconciled::default();
        {
            let mut update = tx.prepare_cached("UPDATE keys SET status=?2 WHERE id=?1 AND status<>'deleting' AND status<>?2")?;
            let mut remove = tx.prepare_cached("DELETE FROM certificates WHERE sha256=?1")?;
            let mut audit = tx.prepare_cached(super::records::INSERT_AUDIT)?;
            let mut audited = |e: &AuditEntry| {
                tracing::debug!(target: "keyport::audit", principal = ?e.principal, action = ?e.action, key_id = ?e.key_id.as_deref().unwrap_or("-"), detail = ?e.detail.as_deref().unwrap_or(""), "audit");
                audit.execute(params![e.at, e.principal, e.action, e.namespace, e.key_id, e.outcome, e.detail]).map(|_| ())
            };
            for (id, status, entry) in statuses {
                let changed = update.execute(params![id, status.as_str()])?;
                if changed > 0 {
                    audited(entry)?;
                    match status {
                        KeyStatus::Missing => done.marked_missing += 1,
                        _ => done.back += 1,
                    }
                }
            }
            for (sha, entry) in certificates {
                if remove.execute([sha])? > 0 {
                    audited(entry)?;
                    done.certificate_rows_removed += 1;
                }
            }
        }
        tx.commit()?;
        Ok(done)
    }

    /// How many keys are marked missing, per token.
    pub fn missing_keys(&self) -> Result<Vec<(String, usize)>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT token, COUNT(*) FROM keys WHERE status='missing' GROUP BY token ORDER BY token")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as usize)))?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Drops the row of a missing key named `name` so a restore can put the key back (audited).
    pub fn forget_missing(&self, namespace: &str, name: &str, audit: &AuditEntry) -> Result<bool, StoreError> {
        let id: Option<String> = self
            .conn()
            .query_row("SELECT id FROM keys WHERE namespace=?1 AND name=?2 AND status='missing'", [namespace, name], |r| r.get(0))
            .optional()?;
        match id {
            Some(id) => self.delete_key(&id, audit),
            None => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use crate::store::test_rows::{audit, key};

    #[test]
    fn one_delete_wins_and_the_row_is_hidden_until_it_finishes() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("k.db")).unwrap();
        s.commit_key(&key("aa", "default", "web", false), &[], &audit(), None).unwrap();
        let first = s.begin_delete("aa", "root").unwrap().expect("the first delete gets the intent");
        assert_eq!(first.name, "web");
        assert!(s.begin_delete("aa", "root").unwrap().is_none(), "a second delete finds nothing");
        assert!(s.key("aa").unwrap().is_none() && s.list_keys(None, None).unwrap().is_empty(), "hidden while deleting");
        assert_eq!(s.delete_intents().unwrap(), vec![first]);
        assert!(s.finish_delete("aa", &audit()).unwrap());
        assert!(s.delete_intents().unwrap().is_empty());
        assert!(s.keys_in_token("soft").unwrap().is_empty());
        assert!(s.begin_delete("nope", "root").unwrap().is_none());
    }

    #[test]
    fn reconciliation_changes_rows_in_one_call_and_audits_only_what_changed() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("k.db")).unwrap();
        for id in ["aa", "bb", "cc"] {
            s.commit_key(&key(id, "default", id, false), &[], &audit(), None).unwrap();
        }
        s.set_key_status(&["cc".into()], KeyStatus::Missing, |_| audit()).unwrap();
        let audits = |s: &Store| s.conn().query_row("SELECT COUNT(*) FROM audit", [], |r| r.get::<_, i64>(0)).unwrap();
        let before = audits(&s);
        let changes = vec![
            ("aa".to_string(), KeyStatus::Missing, audit()),
            ("bb".to_string(), KeyStatus::Active, audit()), // already active: no change, no audit
            ("cc".to_string(), KeyStatus::Active, audit()),
            ("zz".to_string(), KeyStatus::Missing, audit()), // no such row
        ];
        let done = s.apply_reconciliation(&changes, &[("nosuch".into(), audit())]).unwrap();
        assert_eq!(done, Reconciled { marked_missing: 1, back: 1, certificate_rows_removed: 0 });
        assert_eq!(audits(&s) - before, 2, "one audit entry per row that changed");
        assert_eq!(s.missing_keys().unwrap(), vec![("soft".to_string(), 1)]);
        assert_eq!(s.apply_reconciliation(&changes, &[]).unwrap(), Reconciled::default(), "a second run changes nothing");
    }

    #[test]
    fn missing_keys_stay_listed_and_come_back() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("k.db")).unwrap();
        s.commit_key(&key("aa", "default", "web", false), &[], &audit(), None).unwrap();
        assert_eq!(s.set_key_status(&["aa".into()], KeyStatus::Missing, |_| audit()).unwrap(), 1);
        assert_eq!(s.set_key_status(&["aa".into()], KeyStatus::Missing, |_| audit()).unwrap(), 0, "no change, no audit");
        assert_eq!(s.list_keys(None, None).unwrap()[0].status, KeyStatus::Missing);
        assert!(s.key_by_name("default", "web").unwrap().is_none(), "not usable by name");
        assert_eq!(s.missing_keys().unwrap(), vec![("soft".to_string(), 1)]);
        s.set_key_status(&["aa".into()], KeyStatus::Active, |_| audit()).unwrap();
        assert!(s.key_by_name("default", "web").unwrap().is_some());
        s.set_key_status(&["aa".into()], KeyStatus::Missing, |_| audit()).unwrap();
        assert!(s.forget_missing("default", "web", &audit()).unwrap());
        assert!(s.list_keys(None, None).unwrap().is_empty());
    }
}
