//! Health probes: every [`EVERY`] (and at once when a request fails with an infrastructure
//! error, [`request_failed`]) each token reads a known object and the store runs a rolled-back
//! write and checks its file system (`Token::health`, `Store::probe`). A failure is recorded in
//! the health registry with its reason (`GET health` says degraded, 503); the next success
//! clears it. A token probe goes through `Token::run`, so it also re-opens a token that was
//! lost while no request used it.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

use super::App;
use crate::token::{objects, Token, TokenHealth};

/// The probe's cadence.
pub const EVERY: Duration = Duration::from_secs(5);
/// A probe that takes longer than this counts as failed (a hung token or a locked store).
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

/// One token's probe, as `GET health` shows it; the outcome goes to the registry.
pub async fn token(app: &App, t: &Arc<Token>) -> TokenHealth {
    let component = token_component(t);
    let h = match tokio::time::timeout(TIMEOUT, t.health()).await {
        Ok(h) => h,
        Err(_) => {
            let mut h = TokenHealth::absent(&t.name);
            h.error = Some(format!("token '{}' did not answer within {} s", t.name, TIMEOUT.as_secs()));
            h
        }
    };
    app.telemetry.token_op(&t.name, "probe", h.error.is_none() && h.present && h.logged_in);
    match &h.error {
        None if h.present && h.logged_in => {
            app.health.clear(&component);
            retry_undos(app, t).await;
        }
        None => app.health.set(&component, format!("token '{}' is present but not logged in; it is re-opened on the next use", t.name)),
        Some(e) => app.health.set(&component, format!("{e}; keyport re-opens it by itself once it reads again")),
    }
    h
}

/// The store's probe; `true` when it passed. The outcome goes to the registry.
pub async fn store(app: &Arc<App>) -> bool {
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
