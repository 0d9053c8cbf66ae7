//! Noticing a vault that lost data: a dev vault restarted, a vault restored from an older
//! backup, a transit or KV mount re-created. The outbox only knows what changed in keyport, so
//! without this check a key the vault lost would stay "synced" forever.
//!
//! Every key the store records as synced is checked: its transit key must still be there, with
//! the pushed version holding the key's public key, and its KV key record (`keyrecord`) too;
//! a key with certificates (synced or kept in the token) must still have its KV entry. The
//! check reads in pages, not one GET per key: one paged LIST of this host's range of transit
//! key names and one of each namespace's KV folders answer "is it still there" for every key
//! at once. A transit key at version 1 that is listed holds what keyport imported (imports
//! never allow rotation inside the vault, and only keyport adds versions); a key keyport has
//! given later versions (`import_version`) is also read, to see that the vault still holds the
//! pushed version. Where the policy does not allow a LIST, the keys behind it are read one by
//! one (GET). A KV entry soft-deleted behind keyport's back is still listed (its metadata
//! stays), so it is not noticed; a deleted one (metadata gone), a re-created mount or a vault
//! restored from an older backup is.
//!
//! A key that fails goes back in
//! the outbox (key and certificates) and is pushed by the same pass (a key still in transit
//! whose record is missing only gets its record written). Runs on `sync now` and at most every
//! `verify_interval_secs` on scheduled passes. A key that cannot be checked (a per-key error)
//! is logged and skipped; a vault that is unusable (`stop_pass`) ends the check early and the
//! next pass resumes it after the last key it got through (keys in key-id order), so a rate
//! limit that allows a few hundred reads per pass still sees every key checked.

use std::collections::{HashMap, HashSet};

use crate::store::SyncStatus;

use super::openbao::vault_fingerprint;
use super::remote::RemoteError;
use super::worker::{store_err, Syncer};
use crate::core::App;

/// Names per LIST page: OpenBao's answers stay small, and 10,000 keys take 10 requests.
const PAGE: usize = 1000;

/// What the vault lists for this host, read once per check. `None` where a listing could not
/// be read (the policy does not allow it): the keys behind it are read one by one.
#[derive(Default)]
struct Listed {
    /// This host's transit key names (`<host>-…`).
    transit: Option<HashSet<String>>,
    /// Namespace → the names in `<kv_prefix>/<host>/keys/<namespace>/` (key records).
    records: HashMap<String, Option<HashSet<String>>>,
    /// Namespace → the names in `<kv_prefix>/<host>/certs/<namespace>/`.
    certs: HashMap<String, Option<HashSet<String>>>,
}

/// One listing, or `None` (logged) when it cannot be read but the keys can still be read one
/// by one; `Err` only when the vault is unusable for this pass.
async fn list(syncer: &Syncer, path: &str, prefix: &str) -> Result<Option<HashSet<String>>, RemoteError> {
    match syncer.vault().list_prefixed(path, prefix, PAGE).await {
        Ok(names) => Ok(Some(names.into_iter().collect())),
        Err(e @ RemoteError::Retry { stop_pass: true, .. }) => Err(e),
        Err(e) => {
            tracing::info!(path = ?path, error = %e.message(), "sync: cannot list the vault's copies here; checking these keys one by one (grant `list` on this path to check in pages)");
            Ok(None)
        }
    }
}

impl Listed {
    async fn read(syncer: &Syncer, todo: &[Todo<'_>]) -> Result<Listed, RemoteError> {
        let mut l = Listed::default();
        let vault = syncer.vault();
        if todo.iter().any(|t| t.state.status == SyncStatus::Synced) {
            let prefix = format!("{}-", syncer.host);
            l.transit = list(syncer, &format!("{}/keys", vault.transit_mount()), &prefix).await?;
        }
        for t in todo {
            let ns = &t.key.namespace;
            if t.state.status == SyncStatus::Synced && !l.records.contains_key(ns) {
                let folder = format!("{}/metadata/{}/{}/keys/{ns}/", vault.kv_mount(), syncer.cfg.kv_prefix, syncer.host);
                l.records.insert(ns.clone(), list(syncer, &folder, "").await?);
            }
            if t.has_certs && !l.certs.contains_key(ns) {
                let folder = format!("{}/metadata/{}/{}/certs/{ns}/", vault.kv_mount(), syncer.cfg.kv_prefix, syncer.host);
                l.certs.insert(ns.clone(), list(syncer, &folder, "").await?);
            }
        }
        Ok(l)
    }
}

/// A key to check, with what the store says about it.
struct Todo<'a> {
    state: &'a crate::store::outbox::SyncState,
    key: crate::store::KeyRecord,
    has_certs: bool,
}

/// Why the vault no longer holds a synced key, or `None` when it does.
async fn missing(syncer: &Syncer, t: &Todo<'_>, listed: &Listed) -> Result<Option<String>, RemoteError> {
    let (rec, state) = (&t.key, t.state);
    let leaf = super::worker::path_name(&rec.name, &rec.id);
    if state.status == SyncStatus::Synced {
        let name = syncer.vault_name(&rec.namespace, &rec.name, &rec.id);
        let listed_here = listed.transit.as_ref().map(|names| names.contains(&name));
        if listed_here == Some(false) {
            return Ok(Some(format!("transit key '{name}' is gone")));
        }
        // Listed at version 1: the version keyport imported. Later versions are read.
        if listed_here.is_none() || state.pushed_version != Some(1) {
            let Some(key) = syncer.vault().read_key(&name).await? else {
                return Ok(Some(format!("transit key '{name}' is gone")));
            };
            let version = state.pushed_version.unwrap_or(key.latest_version);
            let holds = key.versions.get(&version).and_then(|v| vault_fingerprint(&v.public_key)).is_some_and(|f| f == rec.fingerprint);
            if !holds {
                return Ok(Some(format!("transit key '{name}' version {version} no longer holds this key")));
            }
        }
        let record = syncer.key_record_path(&rec.namespace, &rec.name, &rec.id);
        let there = match listed.records.get(&rec.namespace) {
            Some(Some(names)) => names.contains(leaf),
            _ => syncer.vault().kv_read(&record).await?.data.is_some(),
        };
        if !there {
            return Ok(Some(format!("the key record {record} is missing")));
        }
    }
    if t.has_certs {
        let path = syncer.kv_path(&rec.namespace, &rec.name, &rec.id);
        let there = match listed.certs.get(&rec.namespace) {
            Some(Some(names)) => names.contains(leaf),
            _ => syncer.vault().kv_read(&path).await?.data.is_some(),
        };
        if !there {
            return Ok(Some(format!("the certificate entry {path} is gone")));
        }
    }
    Ok(None)
}

/// Checks every synced key after `cursor` (the last key an earlier, interrupted check got
/// through); returns how many went back in the outbox. `Err` only when the walk stopped early
/// (the vault is unusable, or the store cannot be read); `cursor` then holds where to resume,
/// and is cleared when the walk reaches the end.
///
/// Keys pushed at or after `fresh_since` are skipped: this pass read them back from the vault
/// moments ago (unless their KV record could not be written).
pub async fn run(
    syncer: &Syncer,
    app: &App,
    cursor: &std::sync::Mutex<Option<String>>,
    fresh_since: crate::clock::Timestamp,
) -> Result<usize, RemoteError> {
    let mut states = app.store.sync_states().map_err(store_err)?;
    states.sort_by(|a, b| a.key_id.cmp(&b.key_id));
    let after = cursor.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut requeued = 0;
    // Keys that stay in the token (`not_syncable`) still have their certificates in KV.
    // A key with a `detail` (its KV record was not written) is checked even when fresh.
    let fresh = |s: &&crate::store::outbox::SyncState| s.detail.is_none() && s.pushed_at.is_some_and(|t| t >= fresh_since);
    let mut todo = Vec::new();
    for state in states.iter().filter(|s| (s.status == SyncStatus::Synced || s.status == SyncStatus::NotSyncable) && !fresh(s)) {
        if after.as_deref().is_some_and(|a| state.key_id.as_str() <= a) {
            continue;
        }
        let Some(key) = app.store.key(&state.key_id).map_err(store_err)? else { continue };
        let has_certs = !app.store.certificates_of(&key.id).map_err(store_err)?.is_empty();
        if state.status == SyncStatus::Synced || has_certs {
            todo.push(Todo { state, key, has_certs });
        }
    }
    if todo.is_empty() {
        *cursor.lock().unwrap_or_else(|e| e.into_inner()) = None;
        return Ok(0);
    }
    let listed = Listed::read(syncer, &todo).await?;
    for t in &todo {
        let state = t.state;
        let why = match missing(syncer, t, &listed).await {
            Ok(Some(why)) => why,
            Ok(None) => {
                if state.detail.is_some() && state.status == SyncStatus::Synced {
                    if let Err(e) = app.store.sync_clear_detail(&state.key_id) {
                        tracing::error!(key = %state.key_id, error = %e, "sync: cannot record a confirmed key");
                    }
                }
                *cursor.lock().unwrap_or_else(|e| e.into_inner()) = Some(state.key_id.clone());
                continue;
            }
            Err(e @ RemoteError::Retry { stop_pass: true, .. }) => return Err(e),
            // This key cannot be checked now (policy, a vault fault on its path): the others can.
            Err(e) => {
                tracing::warn!(key = %state.key_id, error = %e.message(), "sync: cannot check the vault's copy of this key; skipped");
                // A key still waiting for its KV record is checked again by the next pass.
                if state.detail.is_some() && state.status == SyncStatus::Synced {
                    syncer.recheck.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                continue;
            }
        };
        let detail = format!("the vault lost this key ({why}); pushing it again");
        match app.store.sync_requeue(&state.key_id, &detail) {
            Ok(true) => {
                tracing::warn!(key = %state.key_id, reason = %why, "sync: the vault no longer holds a synced key; pushing it again");
                requeued += 1;
            }
            Ok(false) => {}
            Err(e) => tracing::error!(key = %state.key_id, error = %e, "sync: cannot enqueue a lost key"),
        }
        *cursor.lock().unwrap_or_else(|e| e.into_inner()) = Some(state.key_id.clone());
    }
    *cursor.lock().unwrap_or_else(|e| e.into_inner()) = None;
    Ok(requeued)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_of_pem_and_raw_ed25519_keys() {
        use base64::Engine;
        use sha2::Digest;
        let raw = [7u8; 32];
        let spki = [&hex::decode("302a300506032b6570032100").unwrap()[..], &raw].concat();
        let want = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&spki)));
        assert_eq!(vault_fingerprint(&base64::engine::general_purpose::STANDARD.encode(raw)).unwrap(), want);
        assert_eq!(vault_fingerprint(&super::super::openbao::der_to_pem("PUBLIC KEY", &spki)).unwrap(), want);
        assert!(vault_fingerprint("bm90IDMyIGJ5dGVz").is_none(), "not 32 bytes");
    }
}
