//! The rows the store holds, as plain structs.

use rusqlite::{params, Connection, Row};
use serde::Serialize;

/// One inventory row: everything about a key except the key.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub owner: String,
    pub token: String,
    #[serde(skip)]
    pub cka_id: Vec<u8>,
    /// Parsed from the `algorithm` column; written back as the same string.
    #[schema(value_type = String, example = "ec-p256")]
    pub algorithm: crate::material::kind::KeyKind,
    pub fingerprint: String,
    pub exportable: bool,
    pub origin: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: crate::clock::Timestamp,
    /// Whether the token objects are there (`missing` after a wiped or replaced token).
    pub status: KeyStatus,
}

/// Where a key's row stands with its token objects.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// The objects are in the token.
    #[default]
    Active,
    /// The objects were not found at start (token wiped, replaced or edited by another tool):
    /// the row stays, so the inventory is never emptied by a token that went away; restore
    /// can bring the key back, delete removes the row.
    Missing,
    /// A delete intent is recorded: no longer listed or usable; reconcile or the background
    /// retry finishes it.
    Deleting,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Missing => "missing",
            KeyStatus::Deleting => "deleting",
        }
    }

    fn parse(s: &str) -> Option<KeyStatus> {
        [KeyStatus::Active, KeyStatus::Missing, KeyStatus::Deleting].into_iter().find(|k| k.as_str() == s)
    }
}

impl rusqlite::types::FromSql for KeyStatus {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let s = v.as_str()?;
        KeyStatus::parse(s).ok_or_else(|| rusqlite::types::FromSqlError::Other(format!("unknown key status '{s}'").into()))
    }
}

impl KeyRecord {
    pub const COLUMNS: &'static str =
        "id, name, namespace, owner, token, cka_id, algorithm, fingerprint, exportable, origin, created_at, status";

    pub fn from_row(r: &Row) -> rusqlite::Result<KeyRecord> {
        Ok(KeyRecord {
            id: r.get(0)?,
            name: r.get(1)?,
            namespace: r.get(2)?,
            owner: r.get(3)?,
            token: r.get(4)?,
            cka_id: r.get(5)?,
            algorithm: crate::material::kind::KeyKind::parse(&r.get::<_, String>(6)?),
            fingerprint: r.get(7)?,
            exportable: r.get(8)?,
            origin: r.get(9)?,
            created_at: r.get(10)?,
            status: r.get(11)?,
        })
    }
}

/// A delete in progress: written (with the row's status `deleting`) before the first token
/// object goes, removed with the row in one transaction once the objects are gone. Left over
/// after a crash or a token fault, reconcile or the background retry finishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteIntent {
    pub key_id: String,
    pub token: String,
    pub cka_id: Vec<u8>,
    pub namespace: String,
    pub name: String,
    /// Who asked: the audit entry written when the delete finishes carries this name.
    pub principal: String,
    pub created_at: crate::clock::Timestamp,
}

impl DeleteIntent {
    pub const COLUMNS: &'static str = "key_id, token, cka_id, namespace, name, principal, created_at";

    pub fn from_row(r: &Row) -> rusqlite::Result<DeleteIntent> {
        Ok(DeleteIntent {
            key_id: r.get(0)?,
            token: r.get(1)?,
            cka_id: r.get(2)?,
            namespace: r.get(3)?,
            name: r.get(4)?,
            principal: r.get(5)?,
            created_at: r.get(6)?,
        })
    }
}

/// A creation in progress: written before token objects are made, removed when the inventory
/// row commits. Left over after a crash, it tells reconciliation what to undo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub key_id: String,
    pub token: String,
    pub cka_id: Vec<u8>,
    pub namespace: String,
    pub name: String,
    pub op: String,
    pub created_at: crate::clock::Timestamp,
}

impl Intent {
    pub fn from_row(r: &Row) -> rusqlite::Result<Intent> {
        Ok(Intent {
            key_id: r.get(0)?,
            token: r.get(1)?,
            cka_id: r.get(2)?,
            namespace: r.get(3)?,
            name: r.get(4)?,
            op: r.get(5)?,
            created_at: r.get(6)?,
        })
    }
}

/// A certificate row: public data, linked to a key when one matches.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CertificateRecord {
    pub sha256: String,
    pub key_id: Option<String>,
    pub namespace: String,
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub sha1: String,
    #[serde(skip)]
    pub der: Vec<u8>,
    pub created_at: crate::clock::Timestamp,
}

impl CertificateRecord {
    pub const COLUMNS: &'static str = "sha256, key_id, namespace, subject, issuer, serial, not_before, not_after, sha1, der, created_at";

    /// Reads the first eleven columns, in `COLUMNS` order.
    pub fn from_row(r: &Row) -> rusqlite::Result<CertificateRecord> {
        Ok(CertificateRecord {
            sha256: r.get(0)?,
            key_id: r.get(1)?,
            namespace: r.get(2)?,
            subject: r.get(3)?,
            issuer: r.get(4)?,
            serial: r.get(5)?,
            not_before: r.get(6)?,
            not_after: r.get(7)?,
            sha1: r.get(8)?,
            der: r.get(9)?,
            created_at: r.get(10)?,
        })
    }
}

/// A job: any face's asynchronous batch (imports today).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct JobRecord {
    pub id: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub principal: String,
    pub status: JobStatus,
    pub created_at: crate::clock::Timestamp,
    pub finished_at: Option<crate::clock::Timestamp>,
    pub total: i64,
    pub failed: i64,
}

impl JobRecord {
    pub const COLUMNS: &'static str = "id, kind, namespace, principal, status, created_at, finished_at, total, failed";

    pub fn from_row(r: &Row) -> rusqlite::Result<JobRecord> {
        Ok(JobRecord {
            id: r.get(0)?,
            kind: r.get(1)?,
            namespace: r.get(2)?,
            principal: r.get(3)?,
            status: r.get(4)?,
            created_at: r.get(5)?,
            finished_at: r.get(6)?,
            total: r.get(7)?,
            failed: r.get(8)?,
        })
    }
}

/// A column holding one of a fixed set of words: read with `FromSql` (an unknown word is a
/// conversion error, so a corrupt row is an internal error, never a guess), written with
/// `ToSql`, rendered by serde as the same word.
macro_rules! stored_words {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($word => Some($name::$variant),)+ _ => None }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }
        impl rusqlite::types::FromSql for $name {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                let s = v.as_str()?;
                $name::parse(s).ok_or_else(|| rusqlite::types::FromSqlError::Other(format!("'{s}' is not a {}", stringify!($name)).into()))
            }
        }
    };
}

stored_words! {
    /// Where a job stands (TLS Protect Cloud's and the certificate import's vocabulary).
    JobStatus {
        /// Accepted, not started (TLS Protect Cloud's word).
        Waiting = "WAITING",
        /// Accepted, not started (the certificate import's word).
        Pending = "PENDING",
        /// Started; resumed at the next start if interrupted.
        Processing = "PROCESSING",
        /// Every item has its result.
        Completed = "COMPLETED",
        /// The job as a whole could not run (its input unreadable, its principal gone).
        Failed = "FAILED",
    }
}

stored_words! {
    /// One item's result in a job.
    ItemStatus {
        Imported = "IMPORTED",
        /// Already present (TLS Protect Cloud: the same key).
        Skipped = "SKIPPED",
        /// Already present (certificate import: the same certificate).
        Duplicate = "DUPLICATE",
        Failed = "FAILED",
    }
}

stored_words! {
    /// What the vault has of a key, as the sync worker last confirmed it.
    SyncStatus {
        /// The vault holds the key (`pushed_version`).
        Synced = "synced",
        /// It stays in the token (`detail` says why: not exportable, a secret key, …).
        NotSyncable = "not_syncable",
        /// Deleted in keyport and marked deleted in the vault.
        Deleted = "deleted",
    }
}

/// One item's result in a job.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct JobItem {
    pub job_id: String,
    pub seq: i64,
    pub status: ItemStatus,
    pub key_id: Option<String>,
    pub fingerprint: Option<String>,
    pub reason: Option<String>,
}

impl JobItem {
    pub fn from_row(r: &Row) -> rusqlite::Result<JobItem> {
        Ok(JobItem { job_id: r.get(0)?, seq: r.get(1)?, status: r.get(2)?, key_id: r.get(3)?, fingerprint: r.get(4)?, reason: r.get(5)? })
    }
}

/// Inserts an inventory row; a (namespace, name) already taken is `NameTaken`.
pub(super) fn insert_key(conn: &Connection, k: &KeyRecord) -> Result<(), super::StoreError> {
    conn.prepare_cached(
        "INSERT INTO keys(id, name, namespace, owner, token, cka_id, algorithm, fingerprint, exportable, origin, created_at, status)
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
    )
    .and_then(|mut st| {
        st.execute(params![
            k.id,
            k.name,
            k.namespace,
            k.owner,
            k.token,
            k.cka_id,
            k.algorithm.to_string(),
            k.fingerprint,
            k.exportable,
            k.origin,
            k.created_at,
            k.status.as_str()
        ])
    })
    .map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            super::StoreError::NameTaken { namespace: k.namespace.clone(), name: k.name.clone() }
        }
        e => e.into(),
    })?;
    Ok(())
}

pub(super) fn insert_job_item(conn: &Connection, i: &JobItem) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO job_items(job_id, seq, status, key_id, fingerprint, reason) VALUES (?1,?2,?3,?4,?5,?6)")?
        .execute(params![i.job_id, i.seq, i.status, i.key_id, i.fingerprint, i.reason])?;
    Ok(())
}

pub(super) fn insert_certificate(conn: &Connection, c: &CertificateRecord) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO certificates(sha256, key_id, namespace, subject, issuer, serial, not_before, not_after, sha1, der, created_at)
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)
         ON CONFLICT(sha256) DO UPDATE SET key_id = COALESCE(excluded.key_id, certificates.key_id)",
    )?
    .execute(params![
        c.sha256,
        c.key_id,
        c.namespace,
        c.subject,
        c.issuer,
        c.serial,
        c.not_before,
        c.not_after,
        c.sha1,
        c.der,
        c.created_at
    ])?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: crate::clock::Timestamp,
    pub principal: String,
    pub action: String,
    pub namespace: Option<String>,
    pub key_id: Option<String>,
    pub outcome: String,
    pub detail: Option<String>,
}

impl AuditEntry {
    pub fn from_row(r: &Row) -> rusqlite::Result<AuditEntry> {
        Ok(AuditEntry {
            at: r.get(0)?,
            principal: r.get(1)?,
            action: r.get(2)?,
            namespace: r.get(3)?,
            key_id: r.get(4)?,
            outcome: r.get(5)?,
            detail: r.get(6)?,
        })
    }
}

/// Every audit row also goes to the log (and the journal), as it is written; caller strings
/// only through `?` (escaped).
pub(super) fn log_audit(e: &AuditEntry) {
    tracing::info!(
        target: "keyport::audit",
        principal = ?e.principal,
        action = ?e.action,
        namespace = ?e.namespace.as_deref().unwrap_or("-"),
        key_id = ?e.key_id.as_deref().unwrap_or("-"),
        outcome = ?e.outcome,
        detail = ?e.detail.as_deref().unwrap_or(""),
        "audit"
    );
}

pub(super) const INSERT_AUDIT: &str =
    "INSERT INTO audit(at, principal, action, namespace, key_id, outcome, detail) VALUES (?1,?2,?3,?4,?5,?6,?7)";

pub(super) fn insert_audit(conn: &Connection, e: &AuditEntry) -> rusqlite::Result<()> {
    log_audit(e);
    insert_audit_unlogged(conn, e)
}

/// The row alone, not the log line: for a write that is rolled back on purpose (the store
/// probe), which must not read in the log as something that happened.
pub(super) fn insert_audit_unlogged(conn: &Connection, e: &AuditEntry) -> rusqlite::Result<()> {
    conn.prepare_cached(INSERT_AUDIT)?.execute(params![e.at, e.principal, e.action, e.namespace, e.key_id, e.outcome, e.detail])?;
    Ok(())
}

/// A date or an RFC 3339 time (a caller's filter) as whole seconds, `YYYY-MM-DDTHH:MM:SSZ`.
pub fn parse_instant(s: &str) -> Option<String> {
    crate::clock::Timestamp::parse(s).ok().map(|t| t.to_seconds_string())
}

/// The one clock (`crate::clock`).
pub fn now() -> crate::clock::Timestamp {
    crate::clock::Timestamp::now()
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::now;
    use crate::store::test_rows::audit;

    fn rec(id: &str, ns: &str, name: &str) -> KeyRecord {
        crate::store::test_rows::key(id, ns, name, false)
    }

    fn intent(id: &str, ns: &str, name: &str) -> Intent {
        Intent {
            key_id: id.into(),
            token: "soft".into(),
            cka_id: hex::decode(id).unwrap(),
            namespace: ns.into(),
            name: name.into(),
            op: "generate".into(),
            created_at: now(),
        }
    }

    #[test]
    fn file_is_private_and_migrated() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k.db");
        let s = Store::open(&p).unwrap();
        assert_eq!(s.schema_version().unwrap(), super::super::migrations::LATEST);
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        drop(s);
        assert_eq!(Store::open(&p).unwrap().schema_version().unwrap(), super::super::migrations::LATEST, "reopen does not re-run steps");
    }

    #[test]
    fn names_are_reserved_by_intents_and_rows() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("k.db")).unwrap();
        s.add_intent(&intent("aa", "default", "web")).unwrap();
        assert!(matches!(s.add_intent(&intent("bb", "default", "web")), Err(StoreError::NameTaken { .. })));
        s.add_intent(&intent("cc", "other", "web")).unwrap();
        s.commit_key(&rec("aa", "default", "web"), &[], &audit(), None).unwrap();
        assert!(s.intents().unwrap().iter().all(|i| i.key_id != "aa"), "commit removes the intent");
        assert!(matches!(s.add_intent(&intent("dd", "default", "web")), Err(StoreError::NameTaken { .. })));
        assert_eq!(s.list_keys(Some("default"), None).unwrap().len(), 1);
        assert!(s.delete_key("aa", &audit()).unwrap());
        assert!(s.key("aa").unwrap().is_none());
        assert_eq!(s.recent_audit(10).unwrap().len(), 2);
    }

    /// A job's status shows the certificate of each key it imported: not of a key it skipped
    /// (that key was there before), not of another job's.
    #[test]
    fn a_jobs_certificates_are_those_of_the_keys_it_imported() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("k.db")).unwrap();
        let cert = |sha: &str, key: &str| crate::store::test_rows::cert(sha, Some(key), "default");
        let first = crate::store::test_rows::import_job(&s, "j", "default");
        let item = |seq: i64, status: ItemStatus, key: &str| JobItem { seq, status, key_id: Some(key.into()), ..first.clone() };
        s.commit_key(&rec("aa", "default", "a"), &[cert("a1", "aa")], &audit(), Some(&item(0, ItemStatus::Imported, "aa"))).unwrap();
        s.commit_key(&rec("bb", "default", "b"), &[cert("b1", "bb")], &audit(), Some(&item(1, ItemStatus::Skipped, "bb"))).unwrap();
        s.commit_key(&rec("cc", "default", "c"), &[], &audit(), Some(&item(2, ItemStatus::Imported, "cc"))).unwrap();
        let got = s.job_certificates("j").unwrap();
        assert_eq!(got.keys().collect::<Vec<_>>(), vec!["aa"], "{got:?}");
        assert_eq!(got["aa"], s.certificates_of("aa").unwrap()[0]);
        assert!(s.job_certificates("other").unwrap().is_empty());
    }

    #[test]
    fn deleting_a_key_drops_the_certificates_that_shared_its_token_id() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("k.db")).unwrap();
        let cert = |sha: &str, key: Option<&str>| crate::store::test_rows::cert(sha, key, "default");
        // The leaf of an import (its object shares the key's CKA_ID) and a CA of its chain.
        s.commit_key(&rec("aa", "default", "web"), &[cert("leaf", Some("aa")), cert("ca", None)], &audit(), None).unwrap();
        // A second certificate of the key, stored by certificate import under its own CKA_ID.
        let own = crate::store::certs::StoredCertificate {
            record: cert("own", Some("aa")),
            token: Some("soft".into()),
            cka_id: Some(vec![0xbb; 16]),
            job_id: None,
        };
        let item = crate::store::test_rows::import_job(&s, "j", "default");
        s.commit_certificate(&own, &audit(), &item).unwrap();
        assert_eq!(s.certificates_of("aa").unwrap().len(), 2);

        assert!(s.delete_key("aa", &audit()).unwrap());
        assert!(s.certificates_of("aa").unwrap().is_empty(), "no certificate points at a deleted key");
        assert!(s.certificate_by_sha256("leaf").unwrap().is_none(), "its object went with the key");
        let kept = s.certificate_by_sha256("own").unwrap().expect("its own object is still in the token");
        assert_eq!(kept.key_id, None);
        assert!(s.certificate_by_sha256("ca").unwrap().is_some(), "the chain was never the key's");

        // The same key in two namespaces shares one certificate row: deleting one copy moves it.
        let twin = |id: &str, ns: &str| KeyRecord { fingerprint: "sha256:same".into(), ..rec(id, ns, "twin") };
        s.commit_key(&twin("c1", "a"), &[cert("shared", Some("c1"))], &audit(), None).unwrap();
        s.commit_key(&twin("c2", "b"), &[cert("shared", Some("c2"))], &audit(), None).unwrap();
        assert_eq!(s.certificate_by_sha256("shared").unwrap().unwrap().key_id.as_deref(), Some("c2"));
        s.delete_key("c2", &audit()).unwrap();
        assert_eq!(s.certificate_by_sha256("shared").unwrap().unwrap().key_id.as_deref(), Some("c1"), "still c1's");
    }

    #[test]
    fn newer_schema_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k.db");
        drop(Store::open(&p).unwrap());
        rusqlite::Connection::open(&p).unwrap().pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(Store::open(&p), Err(StoreError::TooNew { found: 99, .. })));
    }
}
