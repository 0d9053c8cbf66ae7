//! Drives one rotation through TPP's stages. Every step reads the rotation row, does the
//! stage's work (a key generated, hooks run) and commits the next stage in one transaction,
//! guarded by the stage it started from, so a SIGKILL anywhere resumes at the stage last
//! committed (the stage's hooks run again: hooks are idempotent by contract) and a caller's
//! cancel or confirm that moved the row meanwhile wins.
//!
//! Forward: 0 (new key generated as the pending version, `pre` hooks) → 10200
//! (`provision-public`) → [10250 wait] → 10300 (`provision-private`) → [10350 wait] → 10355
//! (grace) → 10400 (`verify`) → 10500 (`remove-old`; then the old version retires and the new
//! one becomes active, in one transaction) → 10600 (`post`) → complete. A failed stage retries
//! per the Options mask, else rolls back: 90200 → 90300 → 90400 → 90500 (`rollback` hooks),
//! then the pending version's key is deleted and the version marked abandoned.

use std::sync::Arc;

use super::hooks::{self, HookEnv, HookPlan, HookRun};
use super::schedule;
use super::stage::{status, Stage};
use super::App;
use crate::core::authz::Principal;
use crate::core::keys::GenerateRequest;
use crate::core::CoreError;
use crate::store::keysets::{KeysetRecord, KeysetVersion, RotationEvent, RotationRecord, VersionChange};
use crate::store::records::now;

/// Waits for `RetryRotation` (a rollback stage that failed): the runner never picks it up.
pub const MANUAL: i64 = i64::MAX;

/// How long a rotation waits when the token or store is unavailable: the health probe's
/// interval, so a rotation goes on within seconds of the token coming back. The stage is not
/// charged and nothing is undone: every step commits whole or not at all, so the rotation
/// stands at the stage it last committed, the old version active.
const UNAVAILABLE_RETRY_SECS: i64 = 5;

/// Drives rotation `id` until it waits (a confirmation, grace, a retry) or finishes.
pub async fn drive(app: &Arc<App>, id: i64) {
    loop {
        // Stopping: the rotation stays at its stage (each stage is crash-safe) and resumes
        // there at the next start.
        if app.background.is_stopping() {
            return;
        }
        let r = match app.store.rotation(id) {
            Ok(Some(r)) if r.finished_at.is_none() => r,
            Ok(_) => return,
            Err(e) => {
                tracing::error!(rotation = id, error = %e, "rotation: cannot read it; the runner tries again");
                return;
            }
        };
        if r.next_attempt.is_some_and(|t| t > schedule::now()) {
            return;
        }
        let Some(stage) = Stage::from_code(r.stage) else {
            tracing::error!(rotation = id, stage = r.stage, "rotation at an unknown stage; left alone");
            return;
        };
        if stage.waits_for_confirmation() {
            return;
        }
        match step(app, &r, stage).await {
            Ok(true) => continue,
            Ok(false) => return,
            Err(e) => {
                // The token or the store failed: try again later, the stage is not charged.
                tracing::warn!(rotation = id, stage = r.stage, error = %e, "rotation step could not run; trying again in {UNAVAILABLE_RETRY_SECS} s");
                // A rollback keeps the error that caused it (its outcome names it); the fault
                // is in the history.
                let keep_cause = stage.is_rollback() && r.error.is_some();
                let next = RotationRecord {
                    next_attempt: Some(schedule::now() + UNAVAILABLE_RETRY_SECS),
                    error: if keep_cause { r.error.clone() } else { Some(e.to_string()) },
                    ..r.clone()
                };
                // One history line per distinct fault, not one per retry of a long outage.
                let repeated = !keep_cause && r.error.as_deref() == Some(e.to_string().as_str());
                let ev: Vec<RotationEvent> = if repeated { Vec::new() } else { vec![event(r.stage, "unavailable", Some(e.to_string()))] };
                let _ = app.store.rotation_step(&next, r.stage, &ev, &[], None);
                return;
            }
        }
    }
}

fn event(stage: i64, what: &str, detail: Option<String>) -> RotationEvent {
    RotationEvent { at: now(), stage, event: what.into(), detail }
}

/// Everything a step needs about its keyset.
struct Ctx {
    keyset: KeysetRecord,
    versions: Vec<KeysetVersion>,
    policy: crate::config::RotationPolicy,
    who: Option<Arc<Principal>>,
}

impl Ctx {
    fn version(&self, n: Option<i64>) -> Option<&KeysetVersion> {
        n.and_then(|n| self.versions.iter().find(|v| v.version == n))
    }
}

/// One step; `Ok(true)` when the rotation moved and should be looked at again.
async fn step(app: &Arc<App>, r: &RotationRecord, stage: Stage) -> Result<bool, CoreError> {
    let keyset = app.store.keyset(&r.keyset_id)?.ok_or_else(|| CoreError::NotFound(format!("keyset {} is gone", r.keyset_id)))?;
    let ctx = Ctx {
        versions: app.store.keyset_versions(&keyset.id)?,
        policy: super::policy(app, &keyset),
        who: app.authz.read().expect("poisoned").by_name(&r.principal),
        keyset,
    };
    let Some(who) = ctx.who.clone() else {
        let why = format!("principal {:?} that started the rotation is no longer configured", r.principal);
        return finish_failed(app, r, Stage::NotEnoughPermissions, why, &ctx).await;
    };
    if r.kind == "rotate" && stage == Stage::Scheduled && r.new_version.is_none() {
        return new_version(app, r, &ctx, &who).await;
    }
    let next = match stage {
        Stage::Scheduled => Stage::ProvisionNewPublicKeys,
        Stage::ProvisionNewPublicKeys if ctx.policy.confirmations.authorized_key() => Stage::WaitManualAuthorizedKeyConfirmation,
        Stage::ProvisionNewPublicKeys => Stage::ProvisionPrivateKeys,
        Stage::ProvisionPrivateKeys if ctx.policy.confirmations.private_key() => Stage::WaitManualPrivateKeyConfirmation,
        Stage::ProvisionPrivateKeys => Stage::WaitManualDeviceSyncConfirmation,
        Stage::WaitManualDeviceSyncConfirmation => {
            let until = r.stage_since + ctx.policy.grace_secs as i64;
            if schedule::now() < until {
                if r.next_attempt != Some(until) {
                    let next = RotationRecord { next_attempt: Some(until), ..r.clone() };
                    let ev = event(r.stage, "grace", Some(format!("both keys stay trusted for {} s", ctx.policy.grace_secs)));
                    app.store.rotation_step(&next, r.stage, &[ev], &[], None)?;
                }
                return Ok(false);
            }
            Stage::ReconfigureServers
        }
        Stage::ReconfigureServers => Stage::RemoveOldPublicKeys,
        Stage::RemoveOldPublicKeys => Stage::Complete,
        Stage::Complete => return post(app, r, &ctx).await,
        Stage::RestoreOldPublicKeys => Stage::RestorePrivateKeys,
        Stage::RestorePrivateKeys => Stage::ReconfigureServersOnRestore,
        Stage::ReconfigureServersOnRestore => Stage::RemoveNewPublicKeys,
        Stage::RemoveNewPublicKeys => Stage::RemoveNewPublicKeys,
        other => {
            tracing::error!(rotation = r.id, stage = other.code(), "rotation: nothing to do at this stage");
            return Ok(false);
        }
    };
    let runs = run_hooks(app, r, stage, &ctx).await?;
    let events: Vec<RotationEvent> = runs.iter().map(|h| hook_event(r.stage, h)).collect();
    if let Some(failed) = runs.iter().find(|h| !h.ok()) {
        return failed_stage(app, r, stage, failed, events, &ctx).await;
    }
    if stage == Stage::RemoveNewPublicKeys {
        return finish_rollback(app, r, &ctx, &who, events).await;
    }
    let mut versions = Vec::new();
    if stage == Stage::RemoveOldPublicKeys {
        // The one moment the active version changes.
        versions.push(VersionChange::State { version: r.old_version.unwrap_or(0), state: "retired" });
        versions.push(VersionChange::State { version: r.new_version.unwrap_or(0), state: "active" });
    }
    let waits = next.waits_for_confirmation();
    let n = RotationRecord {
        stage: next.code(),
        status: if waits { status::ROTATION_SUSPENDED } else { status::ROTATING },
        attempts: 0,
        next_attempt: None,
        stage_since: schedule::now(),
        // A rollback keeps the error that caused it, for the outcome.
        error: if stage.is_rollback() { r.error.clone() } else { None },
        ..r.clone()
    };
    let mut events = events;
    events.push(event(n.stage, &format!("entered {}", next.name()), None));
    app.store.rotation_step(&n, r.stage, &events, &versions, None)?;
    tracing::info!(rotation = r.id, keyset = ?ctx.keyset.name, stage = n.stage, "rotation stage");
    Ok(!waits)
}

/// Stage 0's first half: the pending version's key. Its name was chosen when the rotation
/// started, so a resumed rotation finds a key a crash left committed instead of making another.
async fn new_version(app: &Arc<App>, r: &RotationRecord, ctx: &Ctx, who: &Principal) -> Result<bool, CoreError> {
    let ks = &ctx.keyset;
    let name = r.new_key_name.clone().unwrap_or_else(|| format!("{}.v{}", ks.name, r.old_version.unwrap_or(0) + 1));
    let old = ctx.version(r.old_version).and_then(|v| app.store.key(&v.key_id).ok().flatten());
    let key = match app.store.key_by_name(&ks.namespace, &name)? {
        Some(k) => k,
        None => {
            let req = GenerateRequest {
                name: name.clone(),
                namespace: Some(ks.namespace.clone()),
                algorithm: ctx.policy.algorithm.clone().unwrap_or_else(|| ks.algorithm.clone()),
                token: old.as_ref().map(|k| k.token.clone()),
                exportable: ctx.policy.exportable.or(old.as_ref().map(|k| k.exportable)),
            };
            match crate::core::keys::generate(app, who, req).await {
                Ok(k) => k,
                Err(e) if e.is_unavailable() => return Err(e),
                // An earlier attempt that met a token fault left its creation intent, which
                // holds the name until the token is back and the intent is undone: not this
                // rotation's failure, try again shortly (as for the fault itself).
                Err(CoreError::Conflict(m)) if app.store.key_by_name(&ks.namespace, &name)?.is_none() => {
                    return Err(CoreError::Conflict(format!(
                        "the new key's name '{name}' is still held by an earlier attempt that met a token fault ({m}); \
                         trying again once it is undone"
                    )))
                }
                Err(e) => {
                    let stage = match &e {
                        CoreError::Forbidden(_) | CoreError::Unauthenticated(_) => Stage::NotEnoughPermissions,
                        CoreError::Invalid { code: "invalid_algorithm", .. } => Stage::KeyLengthNotSupported,
                        CoreError::Invalid { .. } => Stage::ConflictingPolicies,
                        _ => Stage::Failed,
                    };
                    return finish_failed(app, r, stage, format!("the new key could not be made: {e}"), ctx).await;
                }
            }
        }
    };
    let version = ctx.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
    let v = KeysetVersion {
        keyset_id: ks.id.clone(),
        version,
        key_id: key.id.clone(),
        state: "pending".into(),
        created_at: now(),
        activated_at: None,
        retired_at: None,
    };
    let n = RotationRecord { new_version: Some(version), ..r.clone() };
    let ev = event(r.stage, "new key", Some(format!("version {version}: key {} ({})", key.id, key.algorithm)));
    app.store.rotation_step(&n, r.stage, &[ev], &[VersionChange::Add(v)], None)?;
    Ok(true)
}

/// An authorized_keys line and fingerprint of a version's key (read from the token: core may).
async fn public(app: &App, ks: &KeysetRecord, v: Option<&KeysetVersion>) -> Result<(String, String, String), CoreError> {
    let Some(v) = v else { return Ok(Default::default()) };
    let Some(rec) = app.store.key(&v.key_id)? else { return Ok((v.key_id.clone(), String::new(), String::new())) };
    let token = app
        .tokens
        .get(Some(&rec.token))
        .ok_or_else(|| CoreError::Conflict(format!("the key's token '{}' is no longer configured", rec.token)))?
        .clone();
    let cka = rec.cka_id.clone();
    let pk = token.run(move |c| crate::token::objects::public_key(c, &cka)).await?;
    let comment = format!("keyport:{}/{}/v{}", ks.namespace, ks.name, v.version);
    Ok((rec.id, crate::material::ssh::public_key_line(&pk, &comment), crate::material::ssh::fingerprint_sha256(&pk)))
}

async fn run_hooks(app: &App, r: &RotationRecord, stage: Stage, ctx: &Ctx) -> Result<Vec<HookRun>, CoreError> {
    let Some(hook) = stage.hook() else { return Ok(Vec::new()) };
    let plan = HookPlan {
        configured: ctx.policy.hooks.get(hook).cloned().unwrap_or_default(),
        dir: app.rotations.hooks_dir.get().cloned(),
        user: ctx.policy.hook_user.clone(),
        timeout: std::time::Duration::from_secs(ctx.policy.hook_timeout_secs),
    };
    if hooks::programs(&plan, hook).is_empty() {
        return Ok(Vec::new());
    }
    let (old_id, old_line, old_fp) = public(app, &ctx.keyset, ctx.version(r.old_version)).await?;
    let (new_id, new_line, new_fp) = public(app, &ctx.keyset, ctx.version(r.new_version)).await?;
    let env = HookEnv {
        keyset: ctx.keyset.name.clone(),
        namespace: ctx.keyset.namespace.clone(),
        hook,
        stage_name: stage.name(),
        stage_code: stage.code(),
        key_id: new_id,
        old_key_id: old_id,
        new_public_key: new_line,
        old_public_key: old_line,
        new_fingerprint: new_fp,
        old_fingerprint: old_fp,
        socket: app.config.listen.socket.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
    };
    Ok(hooks::run_stage(&plan, hook, &env).await)
}

fn hook_event(stage: i64, h: &HookRun) -> RotationEvent {
    let what = if h.ok() { "hook ok" } else { "hook failed" };
    event(stage, what, serde_json::to_string(h).ok())
}

/// A stage's hook failed: retry per the Options mask, else roll back (or, in a rollback, stop
/// and wait for `RetryRotation`).
async fn failed_stage(
    app: &Arc<App>,
    r: &RotationRecord,
    stage: Stage,
    h: &HookRun,
    events: Vec<RotationEvent>,
    ctx: &Ctx,
) -> Result<bool, CoreError> {
    let o = r.options;
    let retry = (o & 1 != 0 || o & 4 != 0 || (h.connection_error() && o & 2 != 0)) && (r.attempts + 1) < ctx.policy.retry_limit as i64;
    let why = h.summary();
    tracing::warn!(rotation = r.id, keyset = ?ctx.keyset.name, stage = r.stage, retry, error = ?why, "rotation stage failed");
    let mut events = events;
    let n = if retry {
        let at = schedule::now() + ctx.policy.retry_interval_secs as i64;
        events.push(event(r.stage, "retry", Some(format!("attempt {} failed; next at {at} (Unix)", r.attempts + 1))));
        RotationRecord { attempts: r.attempts + 1, next_attempt: Some(at), status: status::FAILED_TO_ROTATE, error: Some(why), ..r.clone() }
    } else if stage.is_rollback() {
        events.push(event(r.stage, "rollback stopped", Some("fix the hook, then RetryRotation (keyport retry)".into())));
        RotationRecord { next_attempt: Some(MANUAL), status: status::FAILED_TO_ROTATE, error: Some(why), ..r.clone() }
    } else {
        events.push(event(Stage::RestoreOldPublicKeys.code(), "rolling back", Some(why.clone())));
        RotationRecord {
            stage: Stage::RestoreOldPublicKeys.code(),
            status: status::ROTATING,
            attempts: 0,
            next_attempt: None,
            stage_since: schedule::now(),
            failed_stage: Some(r.stage),
            error: Some(why),
            ..r.clone()
        }
    };
    app.store.rotation_step(&n, r.stage, &events, &[], None)?;
    Ok(!retry && !stage.is_rollback())
}

/// Nothing was made yet (or what was made is gone): the rotation ends failed at `code`.
async fn finish_failed(app: &Arc<App>, r: &RotationRecord, code: Stage, why: String, ctx: &Ctx) -> Result<bool, CoreError> {
    tracing::warn!(rotation = r.id, keyset = ?ctx.keyset.name, error = ?why, "rotation failed");
    let n = RotationRecord {
        stage: code.code(),
        status: status::FAILED_TO_ROTATE,
        finished_at: Some(now()),
        outcome: Some("failed".into()),
        error: Some(why.clone()),
        ..r.clone()
    };
    let audit = audit_entry(r, ctx, "failed", Some(why.clone()));
    app.store.rotation_step(&n, r.stage, &[event(n.stage, "failed", Some(why))], &[], Some(&audit))?;
    Ok(false)
}

fn audit_entry(r: &RotationRecord, ctx: &Ctx, outcome: &str, detail: Option<String>) -> crate::store::AuditEntry {
    crate::store::AuditEntry {
        at: now(),
        principal: r.principal.clone(),
        action: format!("keyset.{}", r.kind),
        namespace: Some(ctx.keyset.namespace.clone()),
        key_id: None,
        outcome: outcome.into(),
        detail: Some(format!("keyset {:?}, rotation {}{}", ctx.keyset.name, r.id, detail.map(|d| format!(": {d}")).unwrap_or_default())),
    }
}

/// 90500 done: a rotation's pending key is deleted (through the crash-safe core delete) and its
/// version marked abandoned; a rollback to the previous version swaps the versions back.
async fn finish_rollback(
    app: &Arc<App>,
    r: &RotationRecord,
    ctx: &Ctx,
    who: &Principal,
    mut events: Vec<RotationEvent>,
) -> Result<bool, CoreError> {
    let mut versions = Vec::new();
    let outcome = if r.kind == "rollback" {
        versions.push(VersionChange::State { version: r.new_version.unwrap_or(0), state: "retired" });
        versions.push(VersionChange::State { version: r.old_version.unwrap_or(0), state: "active" });
        "rolled-back"
    } else {
        if let Some(v) = ctx.version(r.new_version) {
            if app.store.key(&v.key_id)?.is_some() {
                match crate::core::keys::delete_version_key(app, who, &v.key_id).await {
                    Ok(_) | Err(CoreError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            versions.push(VersionChange::State { version: v.version, state: "abandoned" });
        } else if let Some(name) = &r.new_key_name {
            // Cancelled while its key was being made: the key may exist without a version row.
            if let Some(k) = app.store.key_by_name(&ctx.keyset.namespace, name)? {
                if app.store.keyset_version_of_key(&k.id)?.is_none() {
                    match crate::core::keys::delete_version_key(app, who, &k.id).await {
                        Ok(_) | Err(CoreError::NotFound(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        if r.failed_stage.is_some() {
            "failed"
        } else {
            "cancelled"
        }
    };
    let failed = outcome == "failed";
    let n = RotationRecord {
        stage: if failed { Stage::Failed.code() } else { Stage::Complete.code() },
        status: if failed { status::FAILED_TO_ROTATE } else { status::IDLE },
        finished_at: Some(now()),
        outcome: Some(outcome.into()),
        next_attempt: None,
        ..r.clone()
    };
    events.push(event(n.stage, outcome, r.error.clone()));
    let audit = audit_entry(r, ctx, outcome, r.error.clone());
    app.store.rotation_step(&n, r.stage, &events, &versions, Some(&audit))?;
    tracing::info!(rotation = r.id, keyset = ?ctx.keyset.name, outcome, "rotation rolled back");
    Ok(false)
}

/// 10600: the `post` hooks (a failure is recorded; the new version is already active and stays).
async fn post(app: &Arc<App>, r: &RotationRecord, ctx: &Ctx) -> Result<bool, CoreError> {
    let runs = run_hooks(app, r, Stage::Complete, ctx).await?;
    let mut events: Vec<RotationEvent> = runs.iter().map(|h| hook_event(r.stage, h)).collect();
    let warn = runs.iter().find(|h| !h.ok()).map(HookRun::summary);
    events.push(event(r.stage, "complete", warn.clone()));
    let n = RotationRecord { status: status::IDLE, finished_at: Some(now()), outcome: Some("complete".into()), error: warn, ..r.clone() };
    let audit = audit_entry(r, ctx, "ok", Some(format!("version {} active", r.new_version.unwrap_or(0))));
    app.store.rotation_step(&n, r.stage, &events, &[], Some(&audit))?;
    tracing::info!(rotation = r.id, keyset = ?ctx.keyset.name, version = r.new_version, "rotation complete");
    Ok(false)
}
