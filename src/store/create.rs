//! The two writes of the crash-safe creation sequence (`core::create`): the intents that
//! reserve names before any token object exists, and the one transaction that turns them into
//! inventory rows together with everything recorded about the new keys — certificates, audit
//! entries, a job item, the sync outbox and the face's own rows (a KPS key pair, 004
//! deployments). A crash leaves all of that or none of it.

use rusqlite::params;

use super::records::{self, AuditEntry, CertificateRecord, Intent, JobItem, KeyRecord};
use super::{apiops, kps, outbox, ApiOpsDeployment, ApiOpsKey, KpsKeypair, Store, StoreError};

/// What a face keeps about new keys, written in the keys' own transaction.
#[derive(Debug, Default, Clone)]
pub enum FaceRows {
    #[default]
    None,
    /// A KPS key pair holding the (one) new key, with its audit entry.
    KpsKeypair { pair: Box<KpsKeypair>, audit: AuditEntry },
    /// An existing KPS key pair (row `id`) that now holds the (one) new key, a private key
    /// imported into it.
    KpsLink { id: i64, protection: String, kms_key_name: Option<String>, kms_key_id: Option<String> },
    /// A 004 vendor key (inserted when new) and one deployment per new key.
    ApiOps { key: Option<ApiOpsKey>, deployments: Vec<ApiOpsDeployment> },
}

/// A [`KeyCommit`] the group commit can carry to whichever writer commits it.
struct OwnedCommit {
    key: KeyRecord,
    certificates: Vec<CertificateRecord>,
    audit: AuditEntry,
    job_item: Option<JobItem>,
    replaces: Option<KeyRecord>,
}

/// One new key's rows.
pub struct KeyCommit<'a> {
    pub key: &'a KeyRecord,
    pub certificates: &'a [CertificateRecord],
    pub audit: &'a AuditEntry,
    pub job_item: Option<&'a JobItem>,
    /// The inventory row this key replaces (same 004 environment, new material): the row goes
    /// and an intent is left for its objects, which the caller destroys after the commit (or
    /// reconciliation, after a crash).
    pub replaces: Option<&'a KeyRecord>,
}

impl Store {
    /// Records the intent to create objects under `intent.cka_id`, reserving the name.
    /// A crash after this and before the commit is undone at the next start.
    pub fn add_intent(&self, intent: &Intent) -> Result<(), StoreError> {
        self.add_intents(std::slice::from_ref(intent), &[])
    }

    /// Records several creation intents at once; all or none. A name already taken in the
    /// inventory (or by another intent) fails the lot, unless that inventory row is one of
    /// `replacing` (a 004 environment getting new material). Durable when this returns, in a
    /// commit shared with concurrent creations (`group.rs`).
    pub fn add_intents(&self, intents: &[Intent], replacing: &[String]) -> Result<(), StoreError> {
        let intents = intents.to_vec();
        let replacing = serde_json::to_string(replacing).expect("strings serialize");
        self.grouped(move |tx| {
            for i in &intents {
                let taken: bool = tx
                    .prepare_cached(
                        "SELECT EXISTS(SELECT 1 FROM keys WHERE namespace=?1 AND name=?2 AND id NOT IN (SELECT value FROM json_each(?3)))
                         OR EXISTS(SELECT 1 FROM intents WHERE namespace=?1 AND name=?2)",
                    )?
                    .query_row(params![i.namespace, i.name, replacing], |r| r.get(0))?;
                if taken {
                    return Err(StoreError::NameTaken { namespace: i.namespace.clone(), name: i.name.clone() });
                }
                tx.prepare_cached(
                    "INSERT INTO intents(key_id, token, cka_id, namespace, name, op, created_at) VALUES (?1,?2,?3,?4,?5,?6,?7)",
                )?
                .execute(params![i.key_id, i.token, i.cka_id, i.namespace, i.name, i.op, i.created_at])?;
            }
            Ok(())
        })
    }

    /// Turns the intents of `keys` into inventory rows with everything recorded about them, in
    /// one transaction (shared with concurrent creations, `group.rs`; durable when this
    /// returns). Returns the KPS key pair's row id when `face` holds one.
    pub fn commit_keys(&self, keys: &[KeyCommit], face: &FaceRows) -> Result<Option<i64>, StoreError> {
        let keys: Vec<OwnedCommit> = keys
            .iter()
            .map(|k| OwnedCommit {
                key: k.key.clone(),
                certificates: k.certificates.to_vec(),
                audit: k.audit.clone(),
                job_item: k.job_item.cloned(),
                replaces: k.replaces.cloned(),
            })
            .collect();
        let face = face.clone();
        let scope = self.sync_scope();
        self.grouped(move |tx| {
            if let FaceRows::ApiOps { key: Some(k), .. } = &face {
                apiops::insert_vendor_key(tx, k)?;
            }
            for k in &keys {
                if let Some(old) = &k.replaces {
                    outbox::on_delete(tx, &scope, &old.id)?;
                    tx.execute("DELETE FROM keys WHERE id=?1", [&old.id])?;
                    tx.execute(
                        "INSERT INTO intents(key_id, token, cka_id, namespace, name, op, created_at) VALUES (?1,?2,?3,?4,?5,'replaced',?6)",
                        params![old.id, old.token, old.cka_id, old.namespace, old.name, records::now()],
                    )?;
                }
                tx.prepare_cached("DELETE FROM intents WHERE key_id=?1")?.execute([&k.key.id])?;
                records::insert_key(tx, &k.key)?;
                for c in &k.certificates {
                    records::insert_certificate(tx, c)?;
                }
                records::insert_audit(tx, &k.audit)?;
                if let Some(i) = &k.job_item {
                    records::insert_job_item(tx, i)?;
                }
                outbox::on_commit(tx, &scope, &k.key, &k.certificates)?;
            }
            let row = match &face {
                FaceRows::None => None,
                FaceRows::KpsKeypair { pair, audit } => {
                    let id = kps::insert_keypair(tx, pair)?;
                    records::insert_audit(tx, audit)?;
                    Some(id)
                }
                FaceRows::KpsLink { id, protection, kms_key_name, kms_key_id } => {
                    let key = keys.first().map(|k| k.key.id.as_str()).unwrap_or_default();
                    kps::link_key(tx, *id, key, protection, kms_key_name.as_deref(), kms_key_id.as_deref())?;
                    Some(*id)
                }
                FaceRows::ApiOps { deployments, .. } => {
                    for d in deployments {
                        apiops::insert_deployment(tx, d)?;
                    }
                    None
                }
            };
            Ok(row)
        })
    }

    /// One key with its certificates, audit entry and job item (the common case).
    pub fn commit_key(
        &self,
        k: &KeyRecord,
        certs: &[CertificateRecord],
        audit: &AuditEntry,
        item: Option<&JobItem>,
    ) -> Result<(), StoreError> {
        self.commit_keys(&[KeyCommit { key: k, certificates: certs, audit, job_item: item, replaces: None }], &FaceRows::None).map(|_| ())
    }
}
