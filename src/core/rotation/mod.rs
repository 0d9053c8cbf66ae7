//! SSH keysets and their rotation (issue 13), as TPP models them (`docs/rotation-and-fleet.md`).
//!
//! A keyset is a name per namespace, a type (User or Host) and ordered versions; each version is
//! an ordinary inventory key made by `core::keys::generate` (token objects, inventory row,
//! sync). One version is active; a rotation adds a pending one and walks TPP's stages
//! (`stage.rs`), each stage change one store transaction (`store::keysets`), running the hooks
//! of the stage (`hooks.rs`). The runner (`runner.rs`) resumes every open rotation at start and
//! starts the ones a policy schedules (`schedule.rs`). The old version stays active until the
//! step from 10500 to 10600, which retires it and activates the new one in one transaction.
//!
//! Permissions (namespace permissions, no new ones): listing and showing need `read` (or
//! ownership of the keyset); creating, rotating, cancelling and retrying need `manage`;
//! confirming an installation needs `manage` or `export-private` (the device that exported the
//! new key and installed it confirms with the permission it exported with).

mod delete;
pub mod hooks;
mod machine;
pub mod runner;
pub mod schedule;
pub mod stage;

use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::authz::Principal;
use super::keys::{audit, GenerateRequest, DEFAULT_NAMESPACE};
use super::{App, CoreError};
use crate::config::{Permission, RotationPolicy};
use crate::store::keysets::{KeysetRecord, KeysetVersion, RotationEvent, RotationRecord};
use crate::store::records::now;
pub use delete::{delete, finish_deletes, DeletedKeyset};
pub use stage::{status, Stage};

/// The runner's shared state: one per daemon (`App::rotations`).
#[derive(Default)]
pub struct Rotations {
    /// Wakes the runner: a rotation was started, confirmed, cancelled or retried.
    wake: tokio::sync::Notify,
    /// Rotations being driven now (each by one task).
    running: std::sync::Mutex<std::collections::HashSet<i64>>,
    /// `<hooks_dir>/<stage>/`; set by the server at start.
    pub hooks_dir: std::sync::OnceLock<std::path::PathBuf>,
    /// Bounds rotations advancing at once (`rotation.concurrency`).
    slots: std::sync::OnceLock<std::sync::Arc<tokio::sync::Semaphore>>,
}

impl Rotations {
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// `POST /keyport/v1/keysets`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub name: String,
    pub namespace: Option<String>,
    /// Of the first version; unset = the policy's algorithm (ignored with `key_id`).
    pub algorithm: Option<String>,
    /// `User` or `Host`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Adopt this existing key as the first version instead of generating one.
    pub key_id: Option<String>,
}

/// A version with what a caller needs of its key.
#[derive(Debug, Clone, Serialize)]
pub struct VersionView {
    #[serde(flatten)]
    pub version: KeysetVersion,
    pub key_name: Option<String>,
    pub fingerprint: Option<String>,
    pub algorithm: Option<String>,
}

/// A keyset as every face shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeysetView {
    #[serde(flatten)]
    pub keyset: KeysetRecord,
    pub versions: Vec<VersionView>,
    /// TPP's RotationStage of the open rotation, else the last one's end (10600, or 10101 when
    /// it failed; 0 when the keyset was never rotated).
    pub stage: i64,
    pub stage_name: &'static str,
    /// TPP's ProcessStatus (0 when idle).
    pub process_status: i64,
    /// The open rotation, else the last one.
    pub rotation: Option<RotationRecord>,
    /// Its history (most recent 100 lines), hook results included.
    pub history: Vec<RotationEvent>,
    pub policy: RotationPolicy,
}

impl KeysetView {
    pub fn active(&self) -> Option<&VersionView> {
        self.versions.iter().find(|v| v.version.state == "active")
    }
    pub fn pending(&self) -> Option<&VersionView> {
        self.versions.iter().find(|v| v.version.state == "pending")
    }
}

fn may_read(who: &Principal, k: &KeysetRecord) -> bool {
    who.allows(&k.namespace, Permission::Read) || who.owns(&k.owner, &k.namespace)
}

fn not_found(name: &str) -> CoreError {
    CoreError::NotFound(format!("no keyset '{name}'; `keyport keysets list` shows the keysets you may see"))
}

pub fn policy(app: &App, k: &KeysetRecord) -> RotationPolicy {
    app.config.rotation.policy(&k.namespace, &k.name)
}

/// The keyset named `name` in `namespace` (default namespace when `None`), if the caller may
/// see it; a 40-hex `name` is taken as a KeysetId too.
pub fn find(app: &App, who: &Principal, namespace: Option<&str>, name: &str) -> Result<KeysetRecord, CoreError> {
    let ns = namespace.unwrap_or(DEFAULT_NAMESPACE);
    let k = match app.store.keyset_by_name(ns, name)? {
        Some(k) => Some(k),
        None if name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit()) => app.store.keyset(&name.to_ascii_lowercase())?,
        None => None,
    };
    k.filter(|k| may_read(who, k)).ok_or_else(|| not_found(name))
}

pub fn by_id(app: &App, who: &Principal, id: &str) -> Result<KeysetRecord, CoreError> {
    app.store.keyset(&id.to_ascii_lowercase())?.filter(|k| may_read(who, k)).ok_or_else(|| not_found(id))
}

pub fn list(app: &App, who: &Principal) -> Result<Vec<KeysetView>, CoreError> {
    let mut out = Vec::new();
    for k in app.store.keysets()?.into_iter().filter(|k| may_read(who, k)) {
        out.push(view(app, k, 0)?);
    }
    Ok(out)
}

pub fn show(app: &App, k: KeysetRecord) -> Result<KeysetView, CoreError> {
    view(app, k, 100)
}

fn view(app: &App, k: KeysetRecord, history: u32) -> Result<KeysetView, CoreError> {
    let mut versions = Vec::new();
    for v in app.store.keyset_versions(&k.id)? {
        let key = app.store.key(&v.key_id)?;
        versions.push(VersionView {
            key_name: key.as_ref().map(|r| r.name.clone()),
            fingerprint: key.as_ref().map(|r| r.fingerprint.clone()),
            algorithm: key.as_ref().map(|r| r.algorithm.to_string()),
            version: v,
        });
    }
    let rotation = app.store.last_rotation(&k.id)?;
    let (stage, process_status) = match &rotation {
        None => (0, status::IDLE),
        Some(r) => (r.stage, r.status),
    };
    let history = match (&rotation, history) {
        (Some(r), n) if n > 0 => app.store.rotation_history(r.id, n)?,
        _ => Vec::new(),
    };
    Ok(KeysetView {
        stage,
        stage_name: Stage::from_code(stage).map_or("Unknown", Stage::name),
        process_status,
        policy: policy(app, &k),
        keyset: k,
        versions,
        rotation,
        history,
    })
}

fn kind(s: &str) -> Result<&'static str, CoreError> {
    match s.to_ascii_lowercase().as_str() {
        "user" => Ok("User"),
        "host" => Ok("Host"),
        _ => Err(CoreError::invalid("invalid_type", format!("type '{s}' is not User or Host"))),
    }
}

/// Whether the algorithm is one SSH can use (every key-pair algorithm keyport has).
/// Creates a keyset: a first version generated (`<name>.v1`) or an existing key adopted.
pub async fn create(app: &App, who: &Principal, req: CreateRequest) -> Result<KeysetView, CoreError> {
    let namespace = req.namespace.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.into());
    if !super::names::is_valid_name(&namespace) {
        return Err(CoreError::invalid(
            "invalid_namespace",
            format!("namespace '{namespace}' is not valid: use 1-64 letters, digits, '_' or '-'"),
        ));
    }
    if !super::names::is_valid_name(&req.name) {
        return Err(CoreError::invalid("invalid_name", "a keyset name is 1-64 letters, digits, '_' or '-'"));
    }
    let kind = kind(&req.kind)?;
    who.require(&namespace, Permission::Manage)?;
    if app.store.keyset_by_name(&namespace, &req.name)?.is_some() {
        return Err(CoreError::Conflict(format!(
            "a keyset named '{}' already exists in namespace '{namespace}'; choose another name",
            req.name
        )));
    }
    let key = match &req.key_id {
        Some(id) => {
            let rec = super::keys::get(app, who, id)?;
            if rec.namespace != namespace {
                return Err(CoreError::invalid(
                    "namespace_mismatch",
                    format!("key '{id}' is in namespace '{}', not '{namespace}'; a keyset's versions live in its namespace", rec.namespace),
                ));
            }
            if rec.algorithm.pair().is_none() {
                return Err(CoreError::invalid("invalid_key", format!("key '{id}' ({}) is not a key pair SSH can use", rec.algorithm)));
            }
            if let Some(v) = app.store.keyset_version_of_key(&rec.id)? {
                return Err(CoreError::Conflict(format!("key '{id}' is already version {} of another keyset", v.version)));
            }
            rec
        }
        None => {
            let pol = app.config.rotation.policy(&namespace, &req.name);
            let Some(algorithm) = req.algorithm.clone().or(pol.algorithm.clone()) else {
                return Err(CoreError::invalid(
                    "algorithm_required",
                    "give an algorithm (e.g. ed25519), or set rotation.namespaces.<ns>.algorithm",
                ));
            };
            let name = format!("{}.v1", req.name);
            // A key of this name left by a create that was interrupted after the key was made
            // is taken, if this caller made it and no keyset holds it; another one is a conflict.
            let existing = app.store.key_by_name(&namespace, &name)?;
            match existing {
                Some(rec) if rec.owner == who.name && app.store.keyset_version_of_key(&rec.id)?.is_none() => rec,
                _ => {
                    let g =
                        GenerateRequest { name, namespace: Some(namespace.clone()), algorithm, token: None, exportable: pol.exportable };
                    super::keys::generate(app, who, g).await?
                }
            }
        }
    };
    let mut id = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut id);
    let t = now();
    let k = KeysetRecord {
        id: hex::encode(id),
        namespace: namespace.clone(),
        name: req.name.clone(),
        kind: kind.into(),
        algorithm: key.algorithm.to_string(),
        owner: who.name.clone(),
        created_at: t,
        last_rotation_at: None,
    };
    let first = KeysetVersion {
        keyset_id: k.id.clone(),
        version: 1,
        key_id: key.id.clone(),
        state: "active".into(),
        created_at: t,
        activated_at: Some(t),
        retired_at: None,
    };
    let entry = audit(who, "keyset.create", &namespace, &key.id, "ok", Some(format!("keyset {:?} ({kind})", req.name)));
    app.store.create_keyset(&k, &first, &entry).map_err(|e| match e {
        crate::store::StoreError::NameTaken { .. } => {
            CoreError::Conflict(format!("a keyset named '{}' already exists in namespace '{namespace}'", req.name))
        }
        e => e.into(),
    })?;
    tracing::info!(keyset = ?k.name, namespace = ?k.namespace, key = %key.id, principal = ?who.name, "keyset created");
    show(app, k)
}

/// Starts a rotation of `k` (TPP `SSH/Rotate`); it goes on in the background.
pub async fn rotate(
    app: &std::sync::Arc<App>,
    who: &Principal,
    k: &KeysetRecord,
    options: Option<u32>,
) -> Result<RotationRecord, CoreError> {
    who.require(&k.namespace, Permission::Manage)?;
    let options = options.unwrap_or_else(|| policy(app, k).retry_options);
    if options > 7 {
        return Err(CoreError::invalid(
            "invalid_options",
            format!("Options {options} is not 0-7 (1 retry on error, 2 connection errors, 4 any error)"),
        ));
    }
    let r = start(app, &who.name, k, options, "rotate")?;
    runner::drive_soon(app, r.id);
    Ok(r)
}

/// Records a new rotation (kind `rotate`, or `rollback` to the previous version).
fn start(app: &App, principal: &str, k: &KeysetRecord, options: u32, kind: &str) -> Result<RotationRecord, CoreError> {
    let versions = app.store.keyset_versions(&k.id)?;
    let active = versions
        .iter()
        .find(|v| v.state == "active")
        .ok_or_else(|| CoreError::Conflict(format!("keyset '{}' has no active version to rotate from", k.name)))?;
    let (old, new, key_name) = if kind == "rollback" {
        let prev = versions.iter().filter(|v| v.state == "retired" && v.version < active.version).max_by_key(|v| v.version);
        let prev = prev.ok_or_else(|| CoreError::Conflict(format!("keyset '{}' has no previous version to roll back to", k.name)))?;
        if app.store.key(&prev.key_id)?.is_none() {
            return Err(CoreError::Conflict(format!("the previous version's key of keyset '{}' was deleted; it cannot come back", k.name)));
        }
        (prev.version, Some(active.version), None)
    } else {
        let n = versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
        let mut name = format!("{}.v{n}", k.name);
        if !app.store.list_keys(Some(&k.namespace), Some(&name))?.is_empty() {
            let mut b = [0u8; 4];
            rand::rngs::OsRng.fill_bytes(&mut b);
            name = format!("{name}-{}", hex::encode(b));
        }
        (active.version, None, Some(name))
    };
    let t = schedule::now();
    let mut r = RotationRecord {
        id: 0,
        keyset_id: k.id.clone(),
        kind: kind.into(),
        stage: if kind == "rollback" { Stage::RestoreOldPublicKeys.code() } else { Stage::Scheduled.code() },
        status: status::ROTATING,
        options: options as i64,
        principal: principal.into(),
        old_version: Some(old),
        new_version: new,
        new_key_name: key_name,
        attempts: 0,
        next_attempt: None,
        stage_since: t,
        failed_stage: None,
        error: None,
        started_at: now(),
        finished_at: None,
        outcome: None,
    };
    let ev = RotationEvent {
        at: now(),
        stage: r.stage,
        event: format!("{kind} started"),
        detail: Some(format!("by {principal:?}, Options {options}")),
    };
    r.id = match app.store.start_rotation(&r, &ev)? {
        Some(id) => id,
        // Deleted meanwhile (its delete is recorded): gone, as for every other call.
        None if app.store.keyset(&k.id)?.is_none() => return Err(not_found(&k.name)),
        None => {
            return Err(CoreError::Conflict(format!("keyset '{}' already has a rotation under way; wait for it, or cancel it", k.name)))
        }
    };
    let _ = app.store.audit(&crate::store::AuditEntry {
        at: now(),
        principal: principal.into(),
        action: format!("keyset.{kind}"),
        namespace: Some(k.namespace.clone()),
        key_id: None,
        outcome: "ok".into(),
        detail: Some(format!("keyset {:?}, rotation {}", k.name, r.id)),
    });
    tracing::info!(keyset = ?k.name, namespace = ?k.namespace, rotation = r.id, kind, principal = ?principal, "rotation started");
    Ok(r)
}

/// The open rotation of `k`, or a conflict that says there is none.
fn open(app: &App, k: &KeysetRecord) -> Result<RotationRecord, CoreError> {
    app.store
        .last_rotation(&k.id)?
        .filter(|r| r.finished_at.is_none())
        .ok_or_else(|| CoreError::Conflict(format!("keyset '{}' has no rotation under way", k.name)))
}

/// A change to an open rotation made by a caller (confirm, cancel, retry).
fn change(app: &App, r: &RotationRecord, next: RotationRecord, event: &str, who: &Principal) -> Result<RotationRecord, CoreError> {
    let ev = RotationEvent { at: now(), stage: next.stage, event: event.into(), detail: Some(format!("by {:?}", who.name)) };
    if !app.store.rotation_step(&next, r.stage, &[ev], &[], None)? {
        return Err(CoreError::Conflict("the rotation moved on meanwhile; look at it again and repeat if still needed".into()));
    }
    app.rotations.wake();
    Ok(next)
}

/// `ConfirmSelfServiceKeyInstallation`: a rotation waiting at 10250 or 10350 goes on.
pub fn confirm(app: &App, who: &Principal, k: &KeysetRecord) -> Result<RotationRecord, CoreError> {
    if !who.allows(&k.namespace, Permission::Manage) {
        who.require(&k.namespace, Permission::ExportPrivate)?;
    }
    let r = open(app, k)?;
    let next_stage = match Stage::from_code(r.stage) {
        Some(Stage::WaitManualAuthorizedKeyConfirmation) => Stage::ProvisionPrivateKeys,
        Some(Stage::WaitManualPrivateKeyConfirmation) => Stage::WaitManualDeviceSyncConfirmation,
        _ => {
            return Err(CoreError::Conflict(format!(
                "keyset '{}' is at stage {} ({}), not waiting for a confirmation",
                k.name,
                r.stage,
                Stage::from_code(r.stage).map_or("?", Stage::name)
            )))
        }
    };
    let next = RotationRecord {
        stage: next_stage.code(),
        status: status::ROTATING,
        stage_since: schedule::now(),
        next_attempt: None,
        ..r.clone()
    };
    change(app, &r, next, "confirmed", who)
}

/// `SkipKeyRotation {KeyId}` of the pending version's key: the device that holds it is
/// skipped, so a rotation waiting for its confirmation goes on.
pub fn skip_key(app: &App, who: &Principal, key_id: &str) -> Result<RotationRecord, CoreError> {
    let v = app.store.keyset_version_of_key(key_id)?.ok_or_else(|| CoreError::NotFound(format!("key '{key_id}' is in no keyset")))?;
    let k = by_id(app, who, &v.keyset_id)?;
    who.require(&k.namespace, Permission::Manage)?;
    confirm(app, who, &k)
}

/// `CancelRotation`: a rotation under way rolls back (90200…90500, the new version is
/// removed); with none under way, the last completed one is undone: the previous version
/// becomes active again through the same stages.
pub async fn cancel(app: &std::sync::Arc<App>, who: &Principal, k: &KeysetRecord) -> Result<RotationRecord, CoreError> {
    who.require(&k.namespace, Permission::Manage)?;
    match app.store.last_rotation(&k.id)? {
        Some(r) if r.finished_at.is_none() => {
            let stage = Stage::from_code(r.stage).unwrap_or(Stage::Failed);
            if stage.is_rollback() {
                return Err(CoreError::Conflict(format!("keyset '{}' is already rolling back (stage {})", k.name, r.stage)));
            }
            if stage == Stage::Complete {
                return Err(CoreError::Conflict(format!(
                    "keyset '{}' finished its rotation a moment ago; cancel again to roll back to the previous version",
                    k.name
                )));
            }
            let next = RotationRecord {
                stage: Stage::RestoreOldPublicKeys.code(),
                status: status::ROTATING,
                attempts: 0,
                next_attempt: None,
                stage_since: schedule::now(),
                ..r.clone()
            };
            let n = change(app, &r, next, "cancelled", who)?;
            runner::drive_soon(app, n.id);
            Ok(n)
        }
        Some(r) if r.outcome.as_deref() == Some("failed") => Err(CoreError::Conflict(format!(
            "keyset '{}''s last rotation failed and was rolled back already; its previous version is active",
            k.name
        ))),
        _ => {
            let r = start(app, &who.name, k, 0, "rollback")?;
            runner::drive_soon(app, r.id);
            Ok(r)
        }
    }
}

/// `RetryRotation`: a rotation waiting to retry (or stopped in its rollback) goes on now; when
/// the last one failed, a new one starts.
pub async fn retry(app: &std::sync::Arc<App>, who: &Principal, k: &KeysetRecord) -> Result<RotationRecord, CoreError> {
    who.require(&k.namespace, Permission::Manage)?;
    match app.store.last_rotation(&k.id)? {
        Some(r) if r.finished_at.is_none() => {
            if r.status != status::FAILED_TO_ROTATE {
                return Err(CoreError::Conflict(format!(
                    "keyset '{}''s rotation is not failing (stage {}); nothing to retry",
                    k.name, r.stage
                )));
            }
            let next = RotationRecord { attempts: 0, next_attempt: None, status: status::ROTATING, ..r.clone() };
            let n = change(app, &r, next, "retried", who)?;
            runner::drive_soon(app, n.id);
            Ok(n)
        }
        Some(r) if r.outcome.as_deref() == Some("failed") => rotate(app, who, k, Some(r.options as u32)).await,
        _ => Err(CoreError::Conflict(format!("keyset '{}' has no failed rotation to retry", k.name))),
    }
}

/// The export gate's rotation rule (`core::export`): a pending version's key leaves only once
/// its rotation has provisioned private keys (10350 and on), never before it is trusted.
pub fn check_export(app: &App, key_id: &str) -> Result<(), CoreError> {
    let Some(v) = app.store.keyset_version_of_key(key_id)? else { return Ok(()) };
    if v.state != "pending" {
        return Ok(());
    }
    let stage = app.store.last_rotation(&v.keyset_id)?.filter(|r| r.finished_at.is_none()).map(|r| r.stage);
    match stage {
        Some(s) if (Stage::WaitManualPrivateKeyConfirmation.code()..=Stage::Complete.code()).contains(&s) => Ok(()),
        s => Err(CoreError::Forbidden(format!(
            "this key is the pending version {} of a keyset whose rotation is at stage {}; it can be exported once the rotation \
             waits at 10350 (WaitManualPrivateKeyConfirmation)",
            v.version,
            s.unwrap_or(0)
        ))),
    }
}

/// The rotation runner (`runner::run`), for the server to spawn.
pub use runner::run;
