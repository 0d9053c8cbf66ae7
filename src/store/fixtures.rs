//! Inventory rows for the tests and benches that fill a store to a size (start-up at 10,000
//! keys, pages of `GET keys`, a token lost under thousands of keys) without generating each
//! key: the rows `core::create` commits for a generated, non-exportable P-256 key in namespace
//! `default`, owned by `root`, on token `soft`. Only in builds with the `test-hooks` feature.

use super::{AuditEntry, FaceRows, KeyCommit, KeyRecord, Store};
use crate::clock::Timestamp;

/// One key's row and its audit entry: `id` is the hex CKA_ID, `name` the key's name, and
/// `fingerprint` a number that makes the key's fingerprint unique.
pub fn generated_key(id: String, name: String, fingerprint: usize, at: Timestamp) -> (KeyRecord, AuditEntry) {
    let key = KeyRecord {
        cka_id: hex::decode(&id).expect("the id is hex"),
        id: id.clone(),
        name,
        namespace: "default".into(),
        owner: "root".into(),
        token: "soft".into(),
        algorithm: crate::material::kind::KeyKind::parse("ec-p256"),
        fingerprint: format!("sha256:{fingerprint:064x}"),
        exportable: false,
        origin: "generated".into(),
        created_at: at,
        status: Default::default(),
    };
    let audit = AuditEntry {
        at,
        principal: "root".into(),
        action: "key.generate".into(),
        namespace: Some("default".into()),
        key_id: Some(id),
        outcome: "ok".into(),
        detail: None,
    };
    (key, audit)
}

/// Commits `rows` in one transaction, as a batch creation does.
pub fn commit(store: &Store, rows: &[(KeyRecord, AuditEntry)]) {
    let commits: Vec<KeyCommit> =
        rows.iter().map(|(key, audit)| KeyCommit { key, certificates: &[], audit, job_item: None, replaces: None }).collect();
    store.commit_keys(&commits, &FaceRows::None).expect("the fixture rows commit");
}
