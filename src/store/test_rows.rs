//! Rows for the store's unit tests (no key material: ids and fingerprints are made up).

use super::records::now;
use super::{AuditEntry, KeyRecord};

/// An inventory row with hex `id`, in `namespace`, named `name`.
pub fn key(id: &str, namespace: &str, name: &str, exportable: bool) -> KeyRecord {
    KeyRecord {
        id: id.into(),
        name: name.into(),
        namespace: namespace.into(),
        owner: "root".into(),
        token: "soft".into(),
        cka_id: hex::decode(id).unwrap(),
        algorithm: "ec-p256".into(),
        fingerprint: format!("sha256:{id}"),
        exportable,
        origin: "generated".into(),
        created_at: now(),
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
