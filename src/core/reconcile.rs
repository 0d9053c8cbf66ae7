//! Start-up reconciliation between the store and the tokens. It never stops the daemon: what
//! it cannot do (a token away, a full disk) is reported in health and the log, and the rest
//! goes on.
//!
//! - Token identity: each configured token's serial is recorded at first start; a token whose
//!   serial changed is a different token (wiped and re-initialized, or replaced) and is said
//!   so loudly. A token that is not there is never re-created once the store has seen it.
//! - An unfinished creation (intent row): never acknowledged, so its objects are destroyed and
//!   the intent dropped; half-made key objects (neither id nor label: what SoftHSM leaves when
//!   killed mid-creation) go too, but only after such an interrupted creation.
//! - An unfinished delete (delete intent): acknowledged or not, it is finished: objects, then
//!   the row with its audit entry.
//! - A row whose objects are gone is marked `missing`, never removed (the inventory is not
//!   emptied because a token went away; restore can bring the key back), and a missing row
//!   whose objects are back is active again. A certificate row whose object is gone from the
//!   same token (same serial) is removed.
//!
//! Objects keyport knows nothing about (no row, no intent) belong to someone else sharing the
//! token; they are counted and left alone.

use std::collections::HashSet;
use std::sync::Arc;

use super::App;
use crate::store::records::now;
use crate::store::{AuditEntry, KeyStatus, StoreError};
use crate::token::{objects, Token};

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Repairs {
    pub intents_undone: usize,
    pub half_made_removed: usize,
    pub deletes_finished: usize,
    pub rows_marked_missing: usize,
    pub rows_back: usize,
    pub certificate_rows_removed: usize,
    pub foreign_objects: usize,
}

fn entry(action: &str, namespace: Option<String>, key_id: Option<String>, detail: String) -> AuditEntry {
    AuditEntry {
        at: now(),
        principal: "keyport".into(),
        action: action.into(),
        namespace,
        key_id,
        outcome: "repaired".into(),
        detail: Some(detail),
    }
}

/// Runs every step; problems go to health (`app.health`) and the log, never to the caller.
pub async fn run(app: &App) -> Repairs {
    let mut r = Repairs::default();
    if let Err(e) = steps(app, &mut r).await {
        match &e {
            super::CoreError::Store(s) => store_problem(app, s),
            other => app.health.set("reconcile", format!("start-up reconciliation stopped: {other}; it runs again at the next start")),
        }
    }
    r
}

/// A store that cannot be written (full disk, read-only file system): keyport runs on,
/// reading what it has; writes fail until space is freed.
pub fn store_problem(app: &App, e: &StoreError) {
    let dir = app.config.state_dir.display();
    tracing::error!(error = %e, state_dir = %dir, "the store cannot be written; running read-only (reads work, changes fail)");
    app.health.set(
        "store",
        format!(
            "the store cannot be written ({e}): keyport runs read-only — listing and reading keys work, changes fail; free space on the file system of {dir} and restart keyport"
        ),
    );
}

async fn steps(app: &App, r: &mut Repairs) -> Result<(), super::CoreError> {
    if let Some(why) = app.store.open_problem() {
        store_problem(
            app,
            &StoreError::Open {
                path: app.config.state_dir.join("keyport.db").display().to_string(),
                detail: format!("{why}; the disk is probably full"),
            },
        );
    }
    let intents = app.store.intents()?;
    let mut replaced = HashSet::new();
    for token in app.tokens.all() {
        if let Some(damage) = token.damage() {
            app.health.set(&format!("token:{}:objects", token.name), damage);
        }
    }
    for token in app.tokens.all() {
        if check_identity(app, token)? {
            replaced.insert(token.name.clone());
        }
    }
    for intent in &intents {
        let Some(token) = app.tokens.get(Some(&intent.token)) else {
            tracing::warn!(key = %intent.key_id, token = %intent.token, "intent for a token no longer configured; left as is");
            continue;
        };
        if token.identity().is_none() {
            continue; // absent: left for the next start
        }
        let cka_id = intent.cka_id.clone();
        let destroyed = token.run(move |c| objects::destroy(c, &cka_id)).await?;
        app.store.drop_intent(&intent.key_id)?;
        app.store.audit(&entry(
            "reconcile.undo-intent",
            Some(intent.namespace.clone()),
            Some(intent.key_id.clone()),
            format!("unfinished {} of '{}'; {destroyed} token object(s) removed", intent.op, intent.name),
        ))?;
        tracing::warn!(key = %intent.key_id, name = %intent.name, objects = destroyed, "repaired: removed an unfinished key creation");
        r.intents_undone += 1;
    }
    for token in app.tokens.all() {
        let interrupted = intents.iter().filter(|i| i.token == token.name).count();
        remove_half_made(app, token, interrupted, r).await?;
    }
    for intent in app.store.delete_intents()? {
        if app.tokens.get(Some(&intent.token)).is_none_or(|t| t.identity().is_none()) {
            continue;
        }
        super::keys::finish_delete(app, &intent).await?;
        tracing::warn!(key = %intent.key_id, name = %intent.name, "repaired: finished an interrupted delete");
        r.deletes_finished += 1;
    }
    for token in app.tokens.all() {
        if token.identity().is_some() {
            rows(app, token, replaced.contains(&token.name), r).await?;
        }
    }
    let missing = app.store.missing_keys()?;
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|(t, n)| format!("{n} in token '{t}'")).collect();
        app.health.set(
            "inventory",
            format!(
                "keys whose token objects are gone are listed with status \"missing\" ({}): `keyport restore` brings synced keys back; DELETE removes a row",
                list.join(", ")
            ),
        );
    }
    Ok(())
}

/// Compares the token with the serial the store recorded; true when it is a different token.
fn check_identity(app: &App, token: &Arc<Token>) -> Result<bool, super::CoreError> {
    let recorded = app.store.token_identity(&token.name)?;
    let Some((label, serial)) = token.identity() else {
        let was = recorded.map(|i| format!("label '{}', serial {}", i.label, i.serial)).unwrap_or_else(|| "never opened".into());
        let msg = format!(
            "token '{}' ({was}) is not there: its keys stay in the inventory and answer 503 until it is back; keyport does not create a new token in its place. If it was wiped, create it again (SoftHSM: softhsm2-util --init-token --free --label <label> with the configured PIN) and restart: its keys are then listed as missing and `keyport restore` brings synced keys back",
            token.name
        );
        tracing::error!(token = %token.name, "{msg}");
        app.health.set(&format!("token:{}", token.name), msg);
        return Ok(false);
    };
    match recorded {
        Some(r) if r.serial != serial => {
            let msg = format!(
                "token '{}' is a different token: serial {serial} (label '{label}'), the store recorded serial {} since {}. It was wiped and re-initialized, or replaced: keys whose objects are not in it are listed as missing (restore brings synced keys back); new keys go into the new token",
                token.name, r.serial, r.first_seen
            );
            tracing::error!(token = %token.name, old_serial = %r.serial, new_serial = %serial, "TOKEN REPLACED: {msg}");
            app.health.set(&format!("token:{}:identity", token.name), msg.clone());
            app.store.audit(&entry("token.replaced", None, None, msg))?;
            app.store.record_token_identity(&token.name, &label, &serial)?;
            Ok(true)
        }
        Some(_) => Ok(false),
        None => {
            app.store.record_token_identity(&token.name, &label, &serial)?;
            tracing::info!(token = %token.name, serial = %serial, "recorded the token's serial");
            Ok(false)
        }
    }
}

/// Destroys key objects half-made by creations keyport was running when it stopped: only when
/// there were `interrupted` creation intents for this token, and at most two objects (a private
/// and a public key) per intent. Otherwise they are only reported: without that evidence they
/// might be another application's (the token is shared).
async fn remove_half_made(app: &App, token: &Arc<Token>, interrupted: usize, r: &mut Repairs) -> Result<(), super::CoreError> {
    let half = token.half_made();
    if half.is_empty() {
        return Ok(());
    }
    if interrupted == 0 || half.len() > 2 * interrupted {
        app.health.set(
            &format!("token:{}:half-made", token.name),
            format!(
                "{} key object(s) with neither id nor label (left by a process killed while creating a key); keyport removes such objects only right after an interrupted creation of its own — check with pkcs11-tool --list-objects and delete them",
                half.len()
            ),
        );
        return Ok(());
    }
    let n = half.len();
    let removed = token
        .run(move |c| {
            let mut gone = 0;
            for h in &half {
                match c.session.destroy_object(*h) {
                    Ok(()) => gone += 1,
                    Err(e) => tracing::warn!(handle = h.handle(), error = %e, "could not remove a half-made object"),
                }
            }
            c.live.index.write().expect("poisoned").half_made.clear();
            Ok(gone)
        })
        .await?;
    app.store.audit(&entry(
        "reconcile.remove-half-made",
        None,
        None,
        format!("{removed} of {n} half-made key object(s) (neither id nor label) removed from token '{}'", token.name),
    ))?;
    tracing::warn!(token = %token.name, removed, "repaired: removed key objects half-made by an interrupted creation");
    r.half_made_removed += removed;
    Ok(())
}

/// Marks rows whose objects are gone missing (and missing rows whose objects are back
/// active); removes certificate rows whose object is gone from the same token.
async fn rows(app: &App, token: &Arc<Token>, replaced: bool, r: &mut Repairs) -> Result<(), super::CoreError> {
    let rows = Arc::new(app.store.keys_in_token(&token.name)?);
    let of_token = rows.clone();
    // Certificates kept without a key (certificate import) are keyport's too.
    let certs = app.store.certificates_in_token(&token.name)?;
    // The token's thread says, for each row, whether its objects are there (no copy of every
    // CKA_ID).
    let (present, missing_certs, foreign) = token
        .run(move |c| {
            let idx = c.live.index.read().expect("poisoned");
            let present: Vec<bool> = of_token
                .iter()
                .map(|k| idx.get(&k.cka_id).is_some_and(|s| s.private.is_some() || s.public.is_some() || s.secret.is_some()))
                .collect();
            let missing_certs: Vec<String> =
                certs.iter().filter(|(_, id)| idx.get(id).is_none_or(|s| s.certificate.is_none())).map(|(sha, _)| sha.clone()).collect();
            let ours: HashSet<&[u8]> = of_token
                .iter()
                .map(|k| k.cka_id.as_slice())
                .chain(certs.iter().map(|(_, id)| id.as_slice()))
                .chain(crate::token::reserved::ALL.iter().copied())
                .collect();
            let foreign = idx.ids().filter(|(id, _)| !ours.contains(id.as_slice())).count();
            Ok((present, missing_certs, foreign))
        })
        .await?;
    // One transaction for every change, one log line with the counts (per-key detail at debug).
    let mut certificates = Vec::new();
    if !replaced {
        for sha in &missing_certs {
            tracing::debug!(certificate = %sha, token = %token.name, "removing a certificate row whose token object is gone");
            let detail = format!("certificate sha256:{sha} has no object left in token '{}'", token.name);
            certificates.push((sha.clone(), entry("reconcile.remove-certificate-row", None, None, detail)));
        }
    }
    let mut statuses = Vec::new();
    for (k, &here) in rows.iter().zip(&present) {
        let (status, action, detail) = match (k.status, here) {
            (KeyStatus::Active, false) => {
                tracing::debug!(key = %k.id, name = ?k.name, token = %token.name, "key marked missing: its token objects are gone");
                (
                    KeyStatus::Missing,
                    "reconcile.mark-missing",
                    format!("key '{}' has no objects in token '{}'; kept as missing", k.name, token.name),
                )
            }
            (KeyStatus::Missing, true) => {
                tracing::debug!(key = %k.id, name = ?k.name, "a missing key's objects are back in its token");
                (KeyStatus::Active, "reconcile.mark-active", format!("key '{}' is back in token '{}'", k.name, token.name))
            }
            _ => continue,
        };
        statuses.push((k.id.clone(), status, entry(action, Some(k.namespace.clone()), Some(k.id.clone()), detail)));
    }
    let done = app.store.apply_reconciliation(&statuses, &certificates)?;
    if done != Default::default() {
        tracing::warn!(
            token = %token.name,
            keys = rows.len(),
            marked_missing = done.marked_missing,
            back = done.back,
            certificate_rows_removed = done.certificate_rows_removed,
            "reconciled the token's keys: rows whose objects are gone are kept as missing (each key at debug level and in the audit log)"
        );
    }
    r.rows_marked_missing += done.marked_missing;
    r.rows_back += done.back;
    r.certificate_rows_removed += done.certificate_rows_removed;
    r.foreign_objects += foreign;
    Ok(())
}
