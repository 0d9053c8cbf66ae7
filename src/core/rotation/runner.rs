//! The rotation runner: at start it resumes every open rotation at the stage the store holds;
//! then it wakes when asked (a rotation started, confirmed, cancelled, retried), when a retry or
//! a grace period is due, when a policy's schedule makes a keyset due, and at least every
//! minute. Each rotation is driven by one task at a time; `rotation.concurrency` bound how many
//! advance at once.

use std::sync::Arc;
use std::time::Duration;

use super::machine::{self, MANUAL};
use super::schedule;
use super::stage::Stage;
use super::App;

/// The longest the runner sleeps without looking (schedules, missed wake-ups).
const MAX_SLEEP_SECS: i64 = 60;

/// Runs for the daemon's life.
pub async fn run(app: Arc<App>) {
    let _ = app.rotations.slots.set(Arc::new(tokio::sync::Semaphore::new(app.config.rotation.concurrency.max(1))));
    loop {
        let due = tick(&app).await;
        tokio::select! {
            _ = schedule::sleep_until(due, Duration::from_secs(MAX_SLEEP_SECS as u64)) => {}
            _ = app.rotations.wake.notified() => {}
            _ = app.background.stopping() => return,
        }
    }
}

/// Starts what is due; returns when (runner clock, Unix seconds) something else will be.
pub async fn tick(app: &Arc<App>) -> i64 {
    super::finish_deletes(app);
    let now = schedule::now();
    let mut next = now + MAX_SLEEP_SECS;
    let open = match app.store.open_rotations() {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "rotation runner: cannot read the store; trying again shortly");
            return now + 5;
        }
    };
    let busy: std::collections::HashSet<String> = open.iter().map(|r| r.keyset_id.clone()).collect();
    for r in &open {
        let waiting = Stage::from_code(r.stage).is_some_and(Stage::waits_for_confirmation);
        match r.next_attempt {
            Some(MANUAL) => {}
            _ if waiting => {}
            Some(t) if t > now => next = next.min(t),
            _ => drive_soon(app, r.id),
        }
    }
    // Schedules: keysets with no open rotation whose policy says they are due.
    if let Ok(keysets) = app.store.keysets() {
        for k in keysets.iter().filter(|k| !busy.contains(&k.id)) {
            let Some(due) = due(app, k) else { continue };
            if due > now {
                next = next.min(due);
                continue;
            }
            let p = super::policy(app, k);
            match super::start(app, &k.owner, k, p.retry_options, "rotate") {
                Ok(r) => {
                    tracing::info!(keyset = ?k.name, namespace = ?k.namespace, rotation = r.id, "scheduled rotation started");
                    drive_soon(app, r.id);
                }
                Err(e) => tracing::warn!(keyset = ?k.name, error = %e, "scheduled rotation could not start"),
            }
        }
    }
    next.max(now + 1)
}

/// When keyset `k` is next due under its policy (after a failed rotation, not before the
/// retry interval has passed).
pub fn due(app: &App, k: &crate::store::keysets::KeysetRecord) -> Option<i64> {
    let p = super::policy(app, k);
    p.interval_secs.or(p.max_age_secs)?;
    let created = k.created_at.unix();
    let last = k.last_rotation_at.map_or(created, crate::clock::Timestamp::unix);
    let versions = app.store.keyset_versions(&k.id).ok()?;
    let active_since =
        versions.iter().find(|v| v.state == "active").and_then(|v| v.activated_at).map_or(created, crate::clock::Timestamp::unix);
    let mut due = schedule::next_due(&p, &k.id, last, active_since)?;
    if let Ok(Some(r)) = app.store.last_rotation(&k.id) {
        if r.outcome.as_deref() != Some("complete") {
            if let Some(f) = r.finished_at.map(crate::clock::Timestamp::unix) {
                due = due.max(f + p.retry_interval_secs as i64);
            }
        }
    }
    Some(due)
}

/// Drives rotation `id` in its own task unless one already does.
pub fn drive_soon(app: &Arc<App>, id: i64) {
    if !app.rotations.running.lock().expect("poisoned").insert(id) {
        return;
    }
    /// Releases the rotation when the task ends, also by a panic (else it would never be
    /// driven again until a restart).
    struct Running(Arc<App>, i64);
    impl Drop for Running {
        fn drop(&mut self) {
            self.0.rotations.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.1);
            // What it left (a retry time, a grace end) is for the runner to schedule.
            self.0.rotations.wake();
        }
    }
    let guard = Running(app.clone(), id);
    app.background.spawn(async move {
        let app = guard.0.clone();
        let slots = app.rotations.slots.get().cloned();
        let _permit = match &slots {
            Some(s) => s.acquire().await.ok(),
            None => None,
        };
        machine::drive(&app, id).await;
        drop(guard);
    });
}
