//! Key generation, listing and deletion. Creation goes through the crash-safe sequence of
//! `create.rs`; a delete is recorded first and finished in the token, then in the store.

use rand::RngCore;
use serde::Deserialize;

use super::authz::Principal;
use super::names::{is_valid_key_name, is_valid_name};
use super::{App, CoreError};
use crate::config::Permission;
use crate::material::algorithm::Algorithm;
use crate::store::records::now;
use crate::store::{AuditEntry, KeyRecord};
use crate::token::objects;

/// `POST /keyport/v1/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    pub name: String,
    pub namespace: Option<String>,
    pub algorithm: String,
    pub token: Option<String>,
    pub exportable: Option<bool>,
}

pub const DEFAULT_NAMESPACE: &str = "default";

pub(crate) fn audit(who: &Principal, action: &str, ns: &str, key_id: &str, outcome: &str, detail: Option<String>) -> AuditEntry {
    AuditEntry {
        at: now(),
        principal: who.name.clone(),
        action: action.into(),
        namespace: Some(ns.into()),
        key_id: Some(key_id.into()),
        outcome: outcome.into(),
        detail,
    }
}

/// Decides exportability from the request and the namespace policy.
pub fn exportable(app: &App, namespace: &str, requested: Option<bool>) -> Result<bool, CoreError> {
    let policy = app.config.policy(namespace);
    let want = requested.unwrap_or(policy.exportable_by_default);
    if want && !policy.allow_exportable {
        return Err(CoreError::Forbidden(format!(
            "namespace '{namespace}' does not allow exportable keys (namespaces.{namespace}.allow_exportable = false); ask for a non-exportable key"
        )));
    }
    Ok(want)
}

/// Replacing or changing an existing key's material is an update, whichever face asks (a
/// `PUT`, or an import with override): it needs `manage` on the key's namespace.
pub fn require_update(who: &Principal, namespace: &str) -> Result<(), CoreError> {
    who.require(namespace, Permission::Manage)
}

pub async fn generate(app: &App, who: &Principal, req: GenerateRequest) -> Result<KeyRecord, CoreError> {
    generate_with(app, who, req, |_: &[KeyRecord], _: &[Option<crate::material::spki::PublicKey>]| crate::store::FaceRows::None).await
}

/// `generate`, with the face's own rows written in the key's transaction.
pub(crate) async fn generate_with(
    app: &App,
    who: &Principal,
    req: GenerateRequest,
    face: impl super::create::Face,
) -> Result<KeyRecord, CoreError> {
    let namespace = req.namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.into());
    if !is_valid_name(&namespace) {
        return Err(CoreError::invalid(
            "invalid_namespace",
            format!("namespace '{namespace}' is not valid: use 1-64 letters, digits, '_' or '-'"),
        ));
    }
    if !is_valid_key_name(&req.name) {
        return Err(CoreError::invalid("invalid_name", "name must be 1-128 letters, digits, '_', '-', '.' or '@', not starting with '.'"));
    }
    let alg = Algorithm::parse(&req.algorithm).ok_or_else(|| {
        CoreError::invalid(
            "invalid_algorithm",
            format!(
                "algorithm '{}' is not supported; use one of rsa-2048, rsa-3072, rsa-4096, ec-p256, ec-p384, ec-p521, ed25519",
                req.algorithm
            ),
        )
    })?;
    who.require(&namespace, Permission::Manage)?;
    let token = app.tokens.get(req.token.as_deref()).ok_or_else(|| {
        CoreError::invalid("unknown_token", format!("no token named '{}' is configured", req.token.clone().unwrap_or_default()))
    })?;
    let exportable = exportable(app, &namespace, req.exportable)?;
    super::token_caps::check_generate(&app.tokens, token, alg, exportable)?;

    let mut cka_id = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut cka_id);
    let make = super::create::from_public(move |c, id, label| objects::generate_key_pair(c, alg, id, label, exportable));
    let new = super::create::NewKey::new(
        namespace,
        req.name,
        token.clone(),
        cka_id,
        crate::material::kind::KeyKind::Pair(alg),
        exportable,
        "generated",
        "generate",
        make,
    );
    let token_name = token.name.clone();
    let rec = super::create::create_with(app, who, new, face).await;
    app.telemetry.token_op(&token_name, "generate", rec.is_ok());
    rec
}

/// The token a key lives in, in one wording wherever a key's token left the configuration.
pub fn token_of(app: &App, token: &str) -> Result<std::sync::Arc<crate::token::Token>, CoreError> {
    app.tokens.get(Some(token)).cloned().ok_or_else(|| {
        CoreError::Conflict(format!("the key's token '{token}' is no longer configured; add it back to [[tokens]], or delete the key"))
    })
}

/// A key's public key, read from its token (for keyport's own work: sync, exports of public
/// keys; a caller's access is checked by whoever asks).
pub(crate) async fn read_public_key(app: &App, rec: &KeyRecord) -> Result<crate::material::spki::PublicKey, CoreError> {
    let token = token_of(app, &rec.token)?;
    let cka_id = rec.cka_id.clone();
    Ok(token.run(move |c| objects::public_key(c, &cka_id)).await?)
}

pub fn get(app: &App, who: &Principal, id: &str) -> Result<KeyRecord, CoreError> {
    get_shared(app, who, id).map(|r| KeyRecord::clone(&r))
}

/// [`get`] without a copy of the row (the store's cached one).
pub fn get_shared(app: &App, who: &Principal, id: &str) -> Result<std::sync::Arc<KeyRecord>, CoreError> {
    let rec = app.store.key_shared(id)?.ok_or_else(|| CoreError::NotFound(format!("no key with id '{id}'")))?;
    // A caller who may not read the namespace learns nothing, not even that the key exists.
    if !who.allows(&rec.namespace, Permission::Read) && !who.owns(&rec.owner, &rec.namespace) {
        return Err(CoreError::NotFound(format!("no key with id '{id}'")));
    }
    Ok(rec)
}

pub fn list(app: &App, who: &Principal, namespace: Option<&str>, name: Option<&str>) -> Result<Vec<KeyRecord>, CoreError> {
    let all = app.store.list_keys(namespace, name)?;
    Ok(all.into_iter().filter(|k| who.allows(&k.namespace, Permission::Read) || who.owns(&k.owner, &k.namespace)).collect())
}

/// Deletes a key. The delete intent is recorded first (the key stops being listed or usable at
/// once; of concurrent deletes exactly one gets it, the others find no key: 404), then every
/// token object under the key's CKA_ID goes (its certificates too), then the row, its
/// certificate rows and the audit entry in one transaction. Success is answered only when the
/// objects are gone; if the token fails, the error is returned and the intent stays: the
/// background retry ([`finish_deletes`]) or the next start's reconciliation finishes it.
///
/// A keyset's active or pending version is refused (409): the keyset decides over it
/// (`keyport keysets delete`, or a rotation that retires it first).
pub async fn delete(app: &App, who: &Principal, id: &str) -> Result<KeyRecord, CoreError> {
    let rec = get(app, who, id)?;
    who.require(&rec.namespace, Permission::Manage)?;
    token_of(app, &rec.token)?;
    use crate::store::BeginKeyDelete as B;
    let intent = match app.store.begin_key_delete(&rec.id, &who.name)? {
        B::Started(i) => i,
        B::Gone => return Err(CoreError::NotFound(format!("no key with id '{id}' (it was deleted, or its delete is under way)"))),
        B::KeysetVersion { namespace, keyset, version, state } => {
            return Err(CoreError::Conflict(format!(
                "key '{}' is the {state} version {version} of keyset '{keyset}' (namespace '{namespace}'); delete the keyset \
                 (keyport keysets delete {keyset}) or rotate it, then delete this key once its version is retired",
                rec.name
            )))
        }
    };
    finish_delete_now(app, &rec, &intent).await
}

/// The delete of a keyset's version key by the rotation (a rolled-back pending version): the
/// same crash-safe delete without the keyset-version guard.
pub(crate) async fn delete_version_key(app: &App, who: &Principal, id: &str) -> Result<KeyRecord, CoreError> {
    let rec = get(app, who, id)?;
    token_of(app, &rec.token)?;
    let Some(intent) = app.store.begin_delete(&rec.id, &who.name)? else {
        return Err(CoreError::NotFound(format!("no key with id '{id}' (it was deleted, or its delete is under way)")));
    };
    finish_delete_now(app, &rec, &intent).await
}

/// Wakes the background delete retry (a delete recorded and not finished).
pub(crate) fn retry_deletes_soon() {
    DELETES.notify_one();
}

async fn finish_delete_now(app: &App, rec: &KeyRecord, intent: &crate::store::DeleteIntent) -> Result<KeyRecord, CoreError> {
    let who_name = &intent.principal;
    match finish_delete(app, intent).await {
        Ok(()) => {
            tracing::info!(key = %rec.id, principal = ?who_name, "key deleted");
            Ok(rec.clone())
        }
        Err(e) => {
            tracing::warn!(key = %rec.id, error = %e, "delete recorded but not finished; it is retried in the background");
            DELETES.notify_one();
            Err(e)
        }
    }
}

/// Wakes [`finish_deletes`] when a delete could not finish at once.
static DELETES: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Destroys the token objects of a recorded delete, then removes the row with its audit entry
/// (written in the name of whoever asked for the delete).
pub(crate) async fn finish_delete(app: &App, intent: &crate::store::DeleteIntent) -> Result<(), CoreError> {
    let token = token_of(app, &intent.token)?;
    let cka_id = intent.cka_id.clone();
    let destroyed = token.run(move |c| objects::destroy(c, &cka_id)).await?;
    let entry = AuditEntry {
        at: now(),
        principal: intent.principal.clone(),
        action: "key.delete".into(),
        namespace: Some(intent.namespace.clone()),
        key_id: Some(intent.key_id.clone()),
        outcome: "ok".into(),
        detail: Some(format!("'{}': {destroyed} token object(s) destroyed", intent.name)),
    };
    app.store.finish_delete(&intent.key_id, &entry)?;
    Ok(())
}

/// Finishes every recorded delete it can; returns how many are still pending and the first
/// error.
pub(crate) async fn finish_pending_deletes(app: &App) -> (usize, Option<String>) {
    let intents = match app.store.delete_intents() {
        Ok(i) => i,
        Err(e) => return (0, Some(e.to_string())),
    };
    let (mut pending, mut first) = (0, None);
    for i in &intents {
        match finish_delete(app, i).await {
            Ok(()) => tracing::info!(key = %i.key_id, "finished a recorded delete"),
            Err(e) => {
                pending += 1;
                first.get_or_insert_with(|| format!("key {}: {e}", i.key_id));
            }
        }
    }
    (pending, first)
}

/// The background retry of deletes that could not finish when asked (token unavailable,
/// store full): with backoff from 1 s to 60 s while any is pending; reported in health.
pub async fn finish_deletes(app: std::sync::Arc<App>) {
    let mut delay = std::time::Duration::from_secs(1);
    loop {
        let (pending, first) = finish_pending_deletes(&app).await;
        if pending == 0 {
            app.health.clear("deletes");
            // A keyset whose version keys are now gone has its rows removed by the runner.
            app.rotations.wake();
            delay = std::time::Duration::from_secs(1);
            tokio::select! {
                _ = DELETES.notified() => {}
                _ = app.background.stopping() => return,
            }
            continue;
        }
        app.health.set(
            "deletes",
            format!(
                "{pending} recorded delete(s) not finished ({}); keyport retries on its own, the keys are no longer listed or usable",
                first.unwrap_or_default()
            ),
        );
        tokio::select! {
            _ = tokio::time::timeout(delay, DELETES.notified()) => {}
            _ = app.background.stopping() => return,
        }
        delay = (delay * 2).min(std::time::Duration::from_secs(60));
    }
}
