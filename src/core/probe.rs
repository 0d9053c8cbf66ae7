//! Health probes: every [`EVERY`] (and at once when a request fails with an infrastructure
//! error, [`request_failed`]) each token reads a known object and the store runs a rolled-back
//! write and checks its file system (`Token::health`, `Store::probe`). A failure is recorded in
//! the health registry with its reason (`GET health` says degraded, 503); the next success
//! clears it. A token probe goes through `Token::run`, so it also re-opens a token that was
//! lost while no request used it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

use super::App;
use crate::token::{objects, Token, TokenHealth};

/// The probe's cadence.
pub const EVERY: Duration = Duration::from_secs(5);
/// A probe that takes longer than this counts as failed (a locked store), or for a token as
/// busy until [`HUNG`].
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// Wakes the probe loop; a static so that error mapping (which has no `App`) can reach it.
static WAKE: Notify = Notify::const_new();

/// A request just failed with an infrastructure error: probe now rather than at the next tick.
pub fn request_failed() {
    WAKE.notify_one();
}

/// Creations whose undo failed because the token or store was failing: (key id, token name,
/// CKA_ID). Their intent reserves the key's name, so a caller retrying after the 503 would get
/// a conflict; the probe undoes them once the token and the store work again.
static PENDING_UNDO: Mutex<Vec<(String, String, [u8; 16])>> = Mutex::new(Vec::new());

/// Records a creation to undo later (see [`PENDING_UNDO`]).
pub fn undo_later(key_id: &str, token: &str, cka_id: [u8; 16]) {
    let mut p = PENDING_UNDO.lock().expect("poisoned");
    if !p.iter().any(|(k, _, _)| k == key_id) {
        p.push((key_id.into(), token.into(), cka_id));
    }
    WAKE.notify_one();
}

/// Undoes the pending creations of token `t` (its probe just passed). An intent of an unfinished
/// import job's item is left to the job runner, which undoes and retries it itself.
async fn retry_undos(app: &App, t: &Arc<Token>) {
    let mine: Vec<_> = PENDING_UNDO.lock().expect("poisoned").iter().filter(|(_, tok, _)| *tok == t.name).cloned().collect();
    if mine.is_empty() {
        return;
    }
    let job_items: std::collections::HashSet<String> = match app.store.unfinished_jobs(super::jobs::KIND_SEALED_IMPORT) {
        Ok(jobs) => jobs.iter().flat_map(|(j, _)| (0..j.total).map(move |seq| hex::encode(super::jobs::item_cka_id(&j.id, seq)))).collect(),
        Err(_) => return,
    };
    for (key_id, _, cka_id) in mine {
        let done = if job_items.contains(&key_id) {
            true
        } else {
            match t.run(move |c| objects::destroy(c, &cka_id)).await {
                Ok(n) => match app.store.drop_intent(&key_id) {
                    Ok(()) => {
                        tracing::info!(key = %key_id, objects_removed = n, "undid a creation that failed during a fault");
                        true
                    }
                    Err(_) => false,
                },
                Err(_) => false,
            }
        };
        if done {
            PENDING_UNDO.lock().expect("poisoned").retain(|(k, _, _)| *k != key_id);
        }
    }
}

/// The health registry's component of a token's probe.
pub fn token_component(t: &Token) -> String {
    format!("token:{}:io", t.name)
}

pub const STORE_COMPONENT: &str = "store:io";

/// The background loop, started by the server.
pub async fn run(app: Arc<App>) {
    loop {
        once(&app).await;
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = WAKE.notified() => {}
            _ = app.background.stopping() => return,
        }
    }
}

/// Probes every token and the store once; records each outcome in the health registry.
pub async fn once(app: &Arc<App>) {
    for t in app.tokens.all() {
        token(app, t).await;
    }
    store(app).await;
}

/// A token probe that has not answered within [`TIMEOUT`] but for less than this is queued
/// behind other callers' token work (every session busy under load), not hung: health keeps
/// the token's last answer instead of calling it absent. Past this it counts as hung.
pub const HUNG: Duration = Duration::from_secs(30);

/// The probe of each token that is running or ran last: when it started, and its outcome once
/// it has one. One probe per token at a time, whoever asks (the loop, every `GET health`):
/// under load, piling up probes would only queue more work on the token.
#[allow(clippy::type_complexity)]
static PROBES: Mutex<Vec<(String, Instant, watch::Receiver<Option<TokenHealth>>)>> = Mutex::new(Vec::new());

/// The last answer of each token whose probe passed, shown while a newer probe is queued.
static LAST_GOOD: Mutex<Vec<(String, TokenHealth)>> = Mutex::new(Vec::new());

/// The running probe of `t`, or a new one. Spawned, so a caller's timeout does not cancel it
/// (a cancelled probe would start over behind the same queue every time).
fn probe_of(t: &Arc<Token>) -> (Instant, watch::Receiver<Option<TokenHealth>>) {
    let mut probes = PROBES.lock().expect("poisoned");
    if let Some((_, started, rx)) = probes.iter().find(|(n, _, rx)| *n == t.name && rx.borrow().is_none()) {
        return (*started, rx.clone());
    }
    let (tx, rx) = watch::channel(None);
    let token = t.clone();
    tokio::spawn(async move {
        let h = token.health().await;
        let _ = tx.send(Some(h));
    });
    let started = Instant::now();
    probes.retain(|(n, _, _)| *n != t.name);
    probes.push((t.name.clone(), started, rx.clone()));
    (started, rx)
}

/// One token's probe, as `GET health` shows it; the outcome goes to the registry. A probe that
/// takes longer than [`TIMEOUT`] answers with the token's last good state while it is younger
/// than [`HUNG`] (the token is busy: 200 clients exporting keep every session in use), and as
/// "did not answer" after that. Found by issue 16's load test: health answered 503 "token did
/// not answer within 3 s" for a SoftHSM token that was serving every other request.
pub async fn token(app: &Arc<App>, t: &Arc<Token>) -> TokenHealth {
    let pause = crate::test_hooks::pause_health_probe();
    if !pause.is_zero() {
        tokio::time::sleep(pause).await;
    }
    let component = token_component(t);
    let (started, mut rx) = probe_of(t);
    let answered = tokio::time::timeout(TIMEOUT, rx.wait_for(Option::is_some)).await.ok().and_then(|r| r.ok().and_then(|v| v.clone()));
    let h = match answered {
        Some(h) => h,
        None if started.elapsed() < HUNG => {
            let last = LAST_GOOD.lock().expect("poisoned").iter().find(|(n, _)| *n == t.name).map(|(_, h)| h.clone());
            if let Some(h) = last {
                tracing::debug!(token = %t.name, waited_ms = started.elapsed().as_millis() as u64, "token probe queued behind other work; showing its last state");
                return h;
            }
            let mut h = TokenHealth::absent(&t.name);
            h.error = Some(format!("token '{}' has not answered its first probe yet (busy for {} s)", t.name, started.elapsed().as_secs()));
            h
        }
        None => {
            let mut h = TokenHealth::absent(&t.name);
            h.error = Some(format!("token '{}' did not answer within {} s", t.name, started.elapsed().as_secs()));
            h
        }
    };
    app.telemetry.token_op(&t.name, "probe", h.error.is_none() && h.present && h.logged_in);
    match &h.error {
        None if h.present && h.logged_in => {
            {
                let mut last = LAST_GOOD.lock().expect("poisoned");
                last.retain(|(n, _)| *n != t.name);
                last.push((t.name.clone(), h.clone()));
            }
            app.health.clear(&component);
            // On its own task: a `GET health` runs in its connection's task and may be dropped
            // (a client that hangs up), and an undo must not stop between its token write and
            // its store write.
            let (app, t) = (app.clone(), t.clone());
            tokio::spawn(async move { retry_undos(&app, &t).await });
        }
        None => app.health.set(&component, format!("token '{}' is present but not logged in; it is re-opened on the next use", t.name)),
        Some(e) => {
            LAST_GOOD.lock().expect("poisoned").retain(|(n, _)| *n != t.name);
            app.health.set(&component, format!("{e}; keyport re-opens it by itself once it reads again"))
        }
    }
    h
}

pub const STATE_COMPONENT: &str = "store:permissions";

/// What in the state folder keyport could not open for writing again, if anything. A running
/// daemon keeps writing through the files it holds open (SQLite's database, WAL and index,
/// the lock), so `chmod -R a-w` or a `chown` of the folder changes nothing until the next
/// start, which then fails ("cannot open keyport.lock"). Health says so while there is time.
/// (root ignores modes: this only fires for a daemon run as its own user.)
fn unwritable_state(dir: &std::path::Path) -> Option<String> {
    use nix::unistd::{access, AccessFlags};
    let mut bad = Vec::new();
    if access(dir, AccessFlags::W_OK | AccessFlags::X_OK).is_err() {
        bad.push(dir.display().to_string());
    }
    for f in ["keyport.db", "keyport.db-wal", "keyport.db-shm", "keyport.lock"] {
        let p = dir.join(f);
        if p.exists() && access(&p, AccessFlags::W_OK).is_err() {
            bad.push(p.display().to_string());
        }
    }
    (!bad.is_empty()).then(|| {
        format!(
            "keyport (uid {}) cannot write {}: writes work now through the files it holds open, but the next start will fail; give the state folder back to keyport's user (chown -R, chmod u+w)",
            nix::unistd::geteuid(),
            bad.join(", ")
        )
    })
}

/// The store's probe; `true` when it passed. The outcome goes to the registry.
pub async fn store(app: &Arc<App>) -> bool {
    match unwritable_state(&app.config.state_dir) {
        Some(why) => app.health.set(STATE_COMPONENT, why),
        None => app.health.clear(STATE_COMPONENT),
    }
    let a = app.clone();
    let r = tokio::time::timeout(TIMEOUT, tokio::task::spawn_blocking(move || a.store.probe())).await;
    let problem = match r {
        Ok(Ok(Ok(()))) => None,
        Ok(Ok(Err(e))) => Some(e.to_string()),
        Ok(Err(e)) => Some(format!("store probe failed: {e}")),
        Err(_) => Some(format!("the store did not answer within {} s (locked or stalled disk)", TIMEOUT.as_secs())),
    };
    match problem {
        None => {
            app.health.clear(STORE_COMPONENT);
            true
        }
        Some(p) => {
            app.health.set(STORE_COMPONENT, p);
            false
        }
    }
}
