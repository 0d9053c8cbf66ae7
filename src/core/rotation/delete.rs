//! Deleting a keyset. Refused while a rotation is open (cancel it or let it finish first).
//! Otherwise one transaction marks the keyset deleting (it is no longer listed, found or
//! rotated) and records a delete intent for every version key still in the inventory; each
//! key then goes through the key delete's own crash-safe steps (token objects, then its row
//! with a `key.delete` audit entry and the sync outbox's delete); once none is left, the
//! keyset's history, rotations, versions and row go in one transaction with the
//! `keyset.delete` audit entry. A crash or a token fault in between leaves intents that the
//! background delete retry (and reconciliation at start) finishes; the rotation runner then
//! removes the keyset's rows (`finish_deletes`).

use serde::Serialize;

use super::{not_found, App, CoreError};
use crate::config::Permission;
use crate::core::authz::Principal;
use crate::store::keysets::{KeysetDeleteStart, KeysetRecord};
use crate::store::records::now;
use crate::store::AuditEntry;

/// What a keyset delete did.
#[derive(Debug, Clone, Serialize)]
pub struct DeletedKeyset {
    pub id: String,
    pub namespace: String,
    pub name: String,
    /// The version keys deleted (ids): every version's key still in the inventory.
    pub keys_deleted: Vec<String>,
}

/// Deletes keyset `k` and every version's key (`manage`).
pub async fn delete(app: &App, who: &Principal, k: &KeysetRecord) -> Result<DeletedKeyset, CoreError> {
    who.require(&k.namespace, Permission::Manage)?;
    let intents = match app.store.begin_keyset_delete(&k.id, &who.name)? {
        KeysetDeleteStart::Started(i) => i,
        KeysetDeleteStart::Gone => return Err(not_found(&k.name)),
        KeysetDeleteStart::RotationOpen { stage } => {
            return Err(CoreError::Conflict(format!(
                "keyset '{}' has a rotation under way (stage {stage} {}); wait for it to finish, or cancel it \
                 (keyport keysets show {} shows where it is), then delete the keyset",
                k.name,
                super::Stage::from_code(stage).map_or("?", super::Stage::name),
                k.name
            )))
        }
    };
    tracing::info!(keyset = ?k.name, namespace = ?k.namespace, keys = intents.len(), principal = ?who.name, "keyset delete recorded");
    let pause = crate::test_hooks::pause_keyset_delete();
    if !pause.is_zero() {
        tracing::warn!(keyset = ?k.name, "test hook: pausing after the keyset delete was recorded");
        tokio::time::sleep(pause).await;
    }
    let mut deleted = Vec::new();
    for i in &intents {
        if let Err(e) = crate::core::keys::finish_delete(app, i).await {
            tracing::warn!(keyset = ?k.name, key = %i.key_id, error = %e, "keyset delete recorded but not finished; it is retried in the background");
            crate::core::keys::retry_deletes_soon();
            return Err(e);
        }
        deleted.push(i.key_id.clone());
    }
    finish_one(app, k, &who.name)?;
    Ok(DeletedKeyset { id: k.id.clone(), namespace: k.namespace.clone(), name: k.name.clone(), keys_deleted: deleted })
}

fn finish_one(app: &App, k: &KeysetRecord, principal: &str) -> Result<bool, CoreError> {
    let entry = AuditEntry {
        at: now(),
        principal: principal.into(),
        action: "keyset.delete".into(),
        namespace: Some(k.namespace.clone()),
        key_id: None,
        outcome: "ok".into(),
        detail: Some(format!("keyset {:?} ({}) and its versions' keys deleted", k.name, k.id)),
    };
    let done = app.store.finish_keyset_delete(&k.id, &entry)?;
    if done {
        tracing::info!(keyset = ?k.name, namespace = ?k.namespace, principal = ?principal, "keyset deleted");
    }
    Ok(done)
}

/// Removes the rows of keysets whose delete was recorded and whose version keys are gone
/// since (finished by the background delete retry, or at start after a crash).
pub fn finish_deletes(app: &App) {
    let pending = match app.store.deleting_keysets() {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read keysets being deleted; trying again shortly");
            return;
        }
    };
    for (k, by) in pending {
        if let Err(e) = finish_one(app, &k, &by) {
            tracing::warn!(keyset = ?k.name, error = %e, "keyset delete not finished; trying again shortly");
        }
    }
}
