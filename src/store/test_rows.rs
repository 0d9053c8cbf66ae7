//! Rows for the store's unit tests (no key material: ids and fingerprints are made up).

use super::records::now;
use super::{AuditEntry, CertificateRecord, JobItem, JobRecord, KeyRecord, Store};

/// An inventory row with hex `id`, in `namespace`, named `name`.
pub fn key(id: &str, namespace: &str, name: &str, exportable: bool) -> KeyRecord {
    KeyRecord {
        id: id.into(),
        name: name.into(),
        namespace: namespace.into(),
        owner: "root".into(),
        token: "soft".into(),
        cka_id: hex::decode(id).unwrap(),
        algorithm: crate::material::kind::KeyKind::parse("ec-p256"),
        fingerprint: format!("sha256:{id}"),
        exportable,
        origin: "generated".into(),
        created_at: now(),
        status: Default::default(),
    }
}

pub fn audit() -> AuditEntry {
    AuditEntry {
        at: now(),
        principal: "root".into(),
        action: "test".into(),
        namespace: None,
        key_id: None,
        outcome: "ok".into(),
        detail: None,
    }
}

/// A certificate row `sha` (also its SHA-1) in `namespace`, linked to `key` if given.
pub fn cert(sha: &str, key: Option<&str>, namespace: &str) -> CertificateRecord {
    CertificateRecord {
        sha256: sha.into(),
        key_id: key.map(String::from),
        namespace: namespace.into(),
        subject: "CN=t".into(),
        issuer: "CN=t".into(),
        serial: "01".into(),
        not_before: now().to_string(),
        not_after: now().to_string(),
        sha1: sha.into(),
        der: vec![0x30, 0x00],
        created_at: now(),
    }
}

/// Creates certificate-import job `id` in `namespace` and returns the item for its first entry.
pub fn import_job(s: &Store, id: &str, namespace: &str) -> JobItem {
    let job = JobRecord {
        id: id.into(),
        kind: "certificate_import".into(),
        namespace: Some(namespace.into()),
        principal: "root".into(),
        status: super::JobStatus::Pending,
        created_at: now(),
        finished_at: None,
        total: 1,
        failed: 0,
    };
    s.create_job(&job, b"").unwrap();
    JobItem { job_id: id.into(), seq: 0, status: super::ItemStatus::Imported, key_id: None, fingerprint: None, reason: None }
}
