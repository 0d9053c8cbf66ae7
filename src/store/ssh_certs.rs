//! SSH certificates attached to keys (issue 14): the OpenSSH line as `ssh-keygen -s` wrote it,
//! one per key, removed with the key (ON DELETE CASCADE). The ssh-agent lists a key that has
//! one also as its `*-cert-v01@openssh.com` identity. The certificate is public: no material.

use rusqlite::{params, OptionalExtension};

use super::records::insert_audit;
use super::{AuditEntry, Store, StoreError};

/// An attached certificate row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshCertificateRow {
    pub key_id: String,
    /// `<type> <base64> [comment]`.
    pub certificate: String,
    pub attached_by: String,
    pub attached_at: crate::clock::Timestamp,
}

impl Store {
    /// Attaches (or replaces) `key_id`'s certificate with its audit entry, in one transaction;
    /// `false` (nothing written) when the key is gone or being deleted.
    pub fn set_ssh_certificate(&self, row: &SshCertificateRow, audit: &AuditEntry) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let live: Option<String> =
            tx.query_row("SELECT id FROM keys WHERE id=?1 AND status<>'deleting'", [&row.key_id], |r| r.get(0)).optional()?;
        if live.is_none() {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO ssh_certificates(key_id, certificate, attached_by, attached_at) VALUES (?1,?2,?3,?4)
             ON CONFLICT(key_id) DO UPDATE SET certificate=excluded.certificate, attached_by=excluded.attached_by, attached_at=excluded.attached_at",
            params![row.key_id, row.certificate, row.attached_by, row.attached_at],
        )?;
        insert_audit(&tx, audit)?;
        tx.commit()?;
        Ok(true)
    }

    pub fn ssh_certificate(&self, key_id: &str) -> Result<Option<SshCertificateRow>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row("SELECT key_id, certificate, attached_by, attached_at FROM ssh_certificates WHERE key_id=?1", [key_id], |r| {
                Ok(SshCertificateRow { key_id: r.get(0)?, certificate: r.get(1)?, attached_by: r.get(2)?, attached_at: r.get(3)? })
            })
            .optional()?)
    }

    /// Every attached certificate: (key id, OpenSSH line).
    pub fn ssh_certificates(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached("SELECT key_id, certificate FROM ssh_certificates")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Detaches `key_id`'s certificate with its audit entry; `false` when it had none.
    pub fn remove_ssh_certificate(&self, key_id: &str, audit: &AuditEntry) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute("DELETE FROM ssh_certificates WHERE key_id=?1", [key_id])?;
        if n == 0 {
            return Ok(false);
        }
        insert_audit(&tx, audit)?;
        tx.commit()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{test_rows, Store};
    use super::SshCertificateRow;

    #[test]
    fn attached_replaced_and_gone_with_the_key() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("k.db")).unwrap();
        let row = |c: &str| SshCertificateRow {
            key_id: "aa".into(),
            certificate: c.into(),
            attached_by: "root".into(),
            attached_at: crate::store::records::now(),
        };
        assert!(!s.set_ssh_certificate(&row("one"), &test_rows::audit()).unwrap(), "no key, nothing attached");
        let generation = s.keys_generation();
        s.commit_key(&test_rows::key("aa", "ns", "k", false), &[], &test_rows::audit(), None).unwrap();
        assert!(s.keys_generation() > generation, "a new key changes the inventory's generation");
        let generation = s.keys_generation();
        s.audit_unsynced(&test_rows::audit()).unwrap();
        assert_eq!(s.keys_generation(), generation, "an audit row does not");
        assert!(s.set_ssh_certificate(&row("one"), &test_rows::audit()).unwrap());
        assert!(s.set_ssh_certificate(&row("two"), &test_rows::audit()).unwrap());
        assert_eq!(s.ssh_certificate("aa").unwrap().unwrap().certificate, "two");
        assert_eq!(s.ssh_certificates().unwrap(), vec![("aa".to_string(), "two".to_string())]);
        let generation = s.keys_generation();
        s.delete_key("aa", &test_rows::audit()).unwrap();
        assert!(s.keys_generation() > generation);
        assert!(s.ssh_certificates().unwrap().is_empty(), "removed with its key");
        assert!(!s.remove_ssh_certificate("aa", &test_rows::audit()).unwrap());
    }
}
