//! The KV v2 record of each key keyport imported into transit, at
//! `<kv_prefix>/<host>/keys/<namespace>/<name>`: transit alone cannot tell which keyport key
//! (namespace, name, key id, algorithm, fingerprint) a transit key is, and `keyport restore`
//! needs exactly that on a host whose store is gone. Written after a verified import, with
//! check-and-set and read-before-write like the certificate entry, so a pass that finds
//! everything in place writes nothing.
//!
//! A key that is an SSH keyset's version (issue 13) says so in its record: `keyset_id`,
//! `keyset`, `keyset_version` and `keyset_state` (`pending`, `active`, `retired`). A version
//! changing state puts its key back in the outbox (`store::outbox::on_keyset_version`), so the
//! record follows: a retired version stays in the vault, marked `retired`. A version whose key
//! was deleted (an abandoned pending version, or a deleted keyset) keeps its record, marked
//! `deleted_at` and, for an abandoned one, `keyset_state = abandoned` in the metadata.

use crate::store::SyncStatus;
use serde_json::{json, Value};
use std::collections::BTreeMap;

use super::openbao::KvEntry;
use super::remote::RemoteError;
use super::worker::{path_name, store_err, Syncer};
use crate::core::App;
use crate::store::outbox::{OutboxRow, SyncState};

/// One key's record as restore reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    pub namespace: String,
    pub name: String,
    pub key_id: String,
    pub algorithm: String,
    pub fingerprint: String,
    pub transit_key: String,
    pub version: i64,
    /// Whether transit holds the key as exportable (only then can it come back).
    pub vault_exportable: bool,
    /// The keyset version the key is, if it is one.
    pub keyset: Option<KeysetTag>,
}

/// Which keyset version a key is, as its vault record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysetTag {
    /// TPP's 40-hex KeysetId.
    pub id: String,
    pub name: String,
    pub version: i64,
    /// `pending`, `active`, `retired` (or `abandoned`).
    pub state: String,
}

impl KeysetTag {
    /// The keyset version `key_id` is, from the store.
    pub fn of_key(app: &App, key_id: &str) -> Result<Option<KeysetTag>, crate::store::StoreError> {
        let Some(v) = app.store.keyset_version_of_key(key_id)? else { return Ok(None) };
        // A keyset being deleted is no longer found by id; its name is then unknown here.
        let name = app.store.keyset(&v.keyset_id)?.map(|k| k.name).unwrap_or_default();
        Ok(Some(KeysetTag { id: v.keyset_id, name, version: v.version, state: v.state }))
    }
}

impl KeyEntry {
    fn data(&self) -> Value {
        let mut v = json!({
            "namespace": self.namespace,
            "name": self.name,
            "key_id": self.key_id,
            "algorithm": self.algorithm,
            "fingerprint": self.fingerprint,
            "transit_key": self.transit_key,
            "version": self.version.to_string(),
            "vault_exportable": self.vault_exportable.to_string(),
        });
        if let Some(k) = &self.keyset {
            v["keyset_id"] = json!(k.id);
            v["keyset"] = json!(k.name);
            v["keyset_version"] = json!(k.version.to_string());
            v["keyset_state"] = json!(k.state);
        }
        v
    }

    /// From a KV entry's data; `None` when a field is missing (not written by keyport).
    pub fn from_kv(e: &KvEntry) -> Option<KeyEntry> {
        let d = e.data.as_ref()?;
        let s = |k: &str| d[k].as_str().map(String::from);
        Some(KeyEntry {
            namespace: s("namespace")?,
            name: s("name")?,
            key_id: s("key_id")?,
            algorithm: s("algorithm")?,
            fingerprint: s("fingerprint")?,
            transit_key: s("transit_key")?,
            version: s("version")?.parse().ok()?,
            vault_exportable: s("vault_exportable")? == "true",
            keyset: match (s("keyset_id"), s("keyset_version").and_then(|v| v.parse().ok())) {
                (Some(id), Some(version)) => {
                    Some(KeysetTag { id, name: s("keyset").unwrap_or_default(), version, state: s("keyset_state").unwrap_or_default() })
                }
                _ => None,
            },
        })
    }
}

impl Syncer {
    /// `<kv_prefix>/<host>/keys/<namespace>/<name>`.
    pub fn key_record_path(&self, namespace: &str, name: &str, key_id: &str) -> String {
        format!("{}/{}/keys/{namespace}/{}", self.cfg.kv_prefix, self.host, path_name(name, key_id))
    }

    /// `<kv_prefix>/<host>/keys`, the folder restore lists.
    pub fn key_records_root(&self) -> String {
        format!("{}/{}/keys", self.cfg.kv_prefix, self.host)
    }

    /// Passes a key push's result through, writing the key's KV record when the key is synced.
    ///
    /// The record never fails the key's row: transit holds the key, so the row is done and the
    /// synced state recorded whatever happens here (failing the row would block the key's later
    /// rows, its certificates, behind a bookkeeping write, and re-import nothing). A record that
    /// could not be written is logged, named in the state's `detail`, and written again by the
    /// lost-data check (`verify`), which puts a synced key without a record back in the outbox:
    /// that pass finds the key in transit and only writes the record.
    pub(super) async fn record_key(&self, app: &App, pushed: Option<SyncState>, vault_exportable: Option<bool>) -> Option<SyncState> {
        let mut state = pushed?;
        if let Err(e) = self.write_key_record(app, &state, vault_exportable).await {
            let path = self.key_record_path(&state.namespace, &state.name, &state.key_id);
            tracing::warn!(key = %state.key_id, path = %path, error = %e.message(), "sync: the key is in transit but its KV record is not written; the lost-data check writes it again");
            state.detail = Some(format!("in transit; its KV record {path} is not written yet ({}); written again later", e.message()));
            // The next pass runs the lost-data check, which writes it (not an hour later).
            self.recheck.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Some(state)
    }

    async fn write_key_record(&self, app: &App, state: &SyncState, vault_exportable: Option<bool>) -> Result<(), RemoteError> {
        let Some(version) = state.pushed_version.filter(|_| state.status == SyncStatus::Synced) else { return Ok(()) };
        let Some(rec) = app.store.key(&state.key_id).map_err(store_err)? else { return Ok(()) };
        let transit_key = self.vault_name(&rec.namespace, &rec.name, &rec.id);
        let entry = KeyEntry {
            namespace: rec.namespace.clone(),
            name: rec.name.clone(),
            key_id: rec.id.clone(),
            algorithm: rec.algorithm.to_string(),
            fingerprint: rec.fingerprint.clone(),
            vault_exportable: match vault_exportable {
                Some(e) => e,
                None => self.vault().key_exportable(&transit_key).await?.unwrap_or(false),
            },
            transit_key,
            version,
            keyset: KeysetTag::of_key(app, &rec.id).map_err(store_err)?,
        };
        let data = entry.data();
        let mut meta: BTreeMap<String, String> =
            data.as_object().expect("object").iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect();
        meta.insert("host".into(), self.host.clone());
        let path = self.key_record_path(&rec.namespace, &rec.name, &rec.id);
        self.vault().kv_sync(&path, &data, &meta, |current| current.data.as_ref() == Some(&data)).await
    }

    /// Passes a delete's result through, marking the key's record deleted (`deleted_at`), so
    /// restore does not bring back a key deleted in keyport (the vault keeps its copy).
    ///
    /// A keyset's pending version deleted (its rotation rolled back) is marked `keyset_state =
    /// abandoned` too: the record otherwise still says `pending`.
    pub(super) async fn record_deleted(
        &self,
        app: &App,
        row: &OutboxRow,
        pushed: Option<SyncState>,
    ) -> Result<Option<SyncState>, RemoteError> {
        let tag = KeysetTag::of_key(app, &row.key_id).map_err(store_err)?;
        let mut extra = Vec::new();
        if let Some(t) = tag.filter(|t| t.state == "pending" || t.state == "abandoned") {
            extra.push(("keyset_state", "abandoned".to_string()));
            extra.push(("keyset_version", t.version.to_string()));
        }
        self.vault().kv_mark_deleted(&self.key_record_path(&row.namespace, &row.name, &row.key_id), &extra).await?;
        Ok(pushed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_and_partial_data_is_not_a_record() {
        let e = KeyEntry {
            namespace: "web".into(),
            name: "site".into(),
            key_id: "00112233445566778899aabbccddeeff".into(),
            algorithm: "ec-p256".into(),
            fingerprint: "sha256:ab".into(),
            transit_key: "h1-web.site".into(),
            version: 2,
            vault_exportable: true,
            keyset: None,
        };
        let kv = KvEntry { version: 1, data: Some(e.data()), custom_metadata: BTreeMap::new() };
        assert_eq!(KeyEntry::from_kv(&kv), Some(e.clone()));
        let partial = KvEntry { version: 1, data: Some(json!({"namespace": "web"})), custom_metadata: BTreeMap::new() };
        assert_eq!(KeyEntry::from_kv(&partial), None);
        // A keyset version's record names it and reads back the same.
        let v = KeyEntry {
            keyset: Some(KeysetTag { id: "ab".repeat(20), name: "deploy".into(), version: 3, state: "retired".into() }),
            ..e.clone()
        };
        let d = v.data();
        assert_eq!((d["keyset_version"].as_str(), d["keyset_state"].as_str()), (Some("3"), Some("retired")));
        let kv = KvEntry { version: 1, data: Some(d), custom_metadata: BTreeMap::new() };
        assert_eq!(KeyEntry::from_kv(&kv), Some(v));
        assert_eq!(KeyEntry::from_kv(&KvEntry::default()), None, "soft-deleted: no data");
    }
}
