//! Noticing a vault that lost data: a dev vault restarted, a vault restored from an older
//! backup, a transit or KV mount re-created. The outbox only knows what changed in keyport, so
//! without this check a key the vault lost would stay "synced" forever.
//!
//! Every key the store records as synced is read back: its transit key must still show the
//! pushed version with the key's public key (compared by SPKI fingerprint, so the token is not
//! involved) and its KV key record (`keyrecord`) must be there, and a key with certificates
//! (synced or kept in the token) must still have its KV entry. A key that fails goes back in
//! the outbox (key and certificates) and is pushed by the same pass (a key still in transit
//! whose record is missing only gets its record written). Runs on `sync now` and at most every
//! `verify_interval_secs` on scheduled passes. A key that cannot be checked (a per-key error)
//! is logged and skipped; a vault that is unusable (`stop_pass`) ends the check early and the
//! next pass resumes it after the last key it got through (keys in key-id order), so a rate
//! limit that allows a few hundred reads per pass still sees every key checked.

use crate::store::SyncStatus;
use sha2::Digest;

use super::openbao::transit_public_key_spki;
use super::remote::RemoteError;
use super::worker::{store_err, Syncer};
use crate::core::App;

/// The `sha256:<hex>` fingerprint of a transit public key (SPKI PEM, or raw base64 for Ed25519).
fn vault_fingerprint(public_key: &str) -> Option<String> {
    transit_public_key_spki(public_key).map(|spki| format!("sha256:{}", hex::encode(sha2::Sha256::digest(&spki))))
}

/// Why the vault no longer holds a synced key, or `None` when it does.
async fn missing(syncer: &Syncer, app: &App, state: &crate::store::outbox::SyncState) -> Result<Option<String>, RemoteError> {
    let Some(rec) = app.store.key(&state.key_id).map_err(store_err)? else { return Ok(None) };
    if state.status == SyncStatus::Synced {
        let name = syncer.vault_name(&rec.namespace, &rec.name, &rec.id);
        let Some(key) = syncer.vault().read_key(&name).await? else {
            return Ok(Some(format!("transit key '{name}' is gone")));
        };
        let version = state.pushed_version.unwrap_or(key.latest_version);
        let holds = key.versions.get(&version).and_then(|v| vault_fingerprint(&v.public_key)).is_some_and(|f| f == rec.fingerprint);
        if !holds {
            return Ok(Some(format!("transit key '{name}' version {version} no longer holds this key")));
        }
        let record = syncer.key_record_path(&rec.namespace, &rec.name, &rec.id);
        if syncer.vault().kv_read(&record).await?.data.is_none() {
            return Ok(Some(format!("the key record {record} is missing")));
        }
    }
    if !app.store.certificates_of(&rec.id).map_err(store_err)?.is_empty() {
        let path = syncer.kv_path(&rec.namespace, &rec.name, &rec.id);
        if syncer.vault().kv_read(&path).await?.data.is_none() {
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
pub async fn run(syncer: &Syncer, app: &App, cursor: &std::sync::Mutex<Option<String>>, fresh_since: &str) -> Result<usize, RemoteError> {
    let mut states = app.store.sync_states().map_err(store_err)?;
    states.sort_by(|a, b| a.key_id.cmp(&b.key_id));
    let after = cursor.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut requeued = 0;
    // Keys that stay in the token (`not_syncable`) still have their certificates in KV.
    // A key with a `detail` (its KV record was not written) is checked even when fresh.
    let fresh = |s: &&crate::store::outbox::SyncState| s.detail.is_none() && s.pushed_at.as_deref().is_some_and(|t| t >= fresh_since);
    let todo = states.iter().filter(|s| (s.status == SyncStatus::Synced || s.status == SyncStatus::NotSyncable) && !fresh(s));
    for state in todo.filter(|s| after.as_deref().is_none_or(|a| s.key_id.as_str() > a)) {
        let why = match missing(syncer, app, state).await {
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
        let raw = [7u8; 32];
        let spki = [&hex::decode("302a300506032b6570032100").unwrap()[..], &raw].concat();
        let want = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&spki)));
        assert_eq!(vault_fingerprint(&base64::engine::general_purpose::STANDARD.encode(raw)).unwrap(), want);
        assert_eq!(vault_fingerprint(&super::super::openbao::der_to_pem("PUBLIC KEY", &spki)).unwrap(), want);
        assert!(vault_fingerprint("bm90IDMyIGJ5dGVz").is_none(), "not 32 bytes");
    }
}
