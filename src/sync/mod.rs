//! Scheduled sync of wrapped keys and certificates to the remote vault (OpenBao / Vault API).
//!
//! - The outbox (`store::outbox`): every change that must reach the vault is a row written in
//!   the same store transaction as the change; `outbox` here orders rows and spaces retries.
//! - `openbao`: the connector (transit BYOK import, KV v2, error classes) over `http`.
//! - `auth`: the vault login (static token, AppRole, or TLS certificate), renewal and re-login.
//! - `client_cert`: the vault client key in the token, its CSR, the certificate presented.
//! - `schedule`: when a pass runs (interval + jitter, backoff ends, `sync now`).
//! - `worker`: a pass takes one key at a time; rows are marked done only after the vault
//!   confirmed.
//! - `verify`: notices a vault that lost keys it had confirmed and puts them back in the outbox.
//! - Wrapping happens in the token (`token::byok`): the private key never leaves it in clear.
//! - `keyrecord`: a KV record per synced key, so `restore` knows what each transit key is;
//!   `restore` brings exportable keys back into an empty token (byok-export, unwrapped inside
//!   the token) with their certificates.

pub mod auth;
pub mod client_cert;
pub mod http;
pub mod keyrecord;
pub mod openbao;
pub mod outbox;
pub mod restore;
pub mod schedule;
pub mod verify;
pub mod worker;

use serde::Serialize;
use std::collections::BTreeMap;

pub use worker::Syncer;

use crate::core::App;
use crate::store::outbox::OutboxRow;

/// One key's sync status, as `GET /keyport/v1/sync` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyStatus {
    pub key_id: String,
    pub namespace: String,
    pub name: String,
    pub vault_name: Option<String>,
    /// `synced`, `pending`, `failed` (the vault refused; retried on `sync now`), `not_syncable`
    /// or `deleted`.
    pub status: String,
    pub pushed_version: Option<i64>,
    pub pushed_at: Option<String>,
    pub detail: Option<String>,
    pub pending: usize,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub enabled: bool,
    pub vault: Option<String>,
    pub namespaces: Vec<String>,
    /// `sync.vault_exportable`: false = the vault is a one-way copy (it signs, never gives
    /// keys back); true = new keys can come back with `keyport restore`.
    pub vault_exportable: bool,
    pub backlog: usize,
    pub wrapping_key: Option<String>,
    /// The vault login: method, token expiry (never the token).
    pub auth: Option<auth::AuthStatus>,
    pub last_pass: Option<worker::PassInfo>,
    pub keys: Vec<KeyStatus>,
}

/// Status of every key the caller may see (`visible(namespace)`).
pub async fn status(app: &App, visible: impl Fn(&str) -> bool) -> Result<Status, crate::store::StoreError> {
    let syncer = app.sync.get();
    let rows = app.store.sync_rows()?;
    let mut keys: BTreeMap<String, KeyStatus> = BTreeMap::new();
    for s in app.store.sync_states()? {
        keys.insert(
            s.key_id.clone(),
            KeyStatus {
                key_id: s.key_id,
                namespace: s.namespace,
                name: s.name,
                vault_name: s.vault_name,
                status: s.status,
                pushed_version: s.pushed_version,
                pushed_at: s.pushed_at,
                detail: s.detail,
                pending: 0,
                attempts: 0,
                last_error: None,
                next_attempt_at: None,
            },
        );
    }
    let mut firsts: BTreeMap<String, &OutboxRow> = BTreeMap::new();
    for r in &rows {
        let k = keys.entry(r.key_id.clone()).or_insert_with(|| KeyStatus {
            key_id: r.key_id.clone(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            vault_name: syncer.map(|s| s.vault_name(&r.namespace, &r.name, &r.key_id)),
            status: "pending".into(),
            pushed_version: None,
            pushed_at: None,
            detail: None,
            pending: 0,
            attempts: 0,
            last_error: None,
            next_attempt_at: None,
        });
        k.pending += 1;
        firsts.entry(r.key_id.clone()).or_insert(r);
    }
    for (id, r) in firsts {
        let k = keys.get_mut(&id).expect("inserted above");
        k.attempts = r.attempts;
        k.last_error = r.last_error.clone();
        k.next_attempt_at = if r.permanent { None } else { r.next_attempt_at.clone() };
        if r.permanent {
            k.status = "failed".into();
        } else if k.status != "failed" {
            k.status = "pending".into();
        }
    }
    let keys: Vec<KeyStatus> = keys.into_values().filter(|k| visible(&k.namespace)).collect();
    Ok(Status {
        enabled: syncer.is_some(),
        vault: syncer.map(|s| s.vault.address.clone()),
        namespaces: syncer.map(|s| s.cfg.namespaces.clone()).unwrap_or_default(),
        vault_exportable: syncer.is_some_and(|s| s.cfg.vault_exportable),
        backlog: rows.len(),
        wrapping_key: match syncer {
            Some(s) => s.vault.pinned_wrapping_key().await,
            None => None,
        },
        auth: syncer.map(|s| s.vault.auth_status()),
        last_pass: syncer.map(|s| s.last_pass.lock().expect("poisoned").clone()),
        keys,
    })
}

/// Starts the worker when `[sync]` is configured: turns the outbox on for the opted-in
/// namespaces and spawns the loop. Call once, on the runtime, after reconciliation.
pub fn start(app: &std::sync::Arc<App>) -> Result<(), String> {
    if !app.config.sync.enabled() {
        return Ok(());
    }
    let syncer = Syncer::new(&app.config.sync)?;
    syncer.vault.attach_token(app.tokens.get(None));
    let syncer = std::sync::Arc::new(syncer);
    app.store.set_sync_scope(syncer.scope());
    let _ = app.sync.set(syncer.clone());
    tracing::info!(vault = %syncer.vault.address, host = %syncer.host, namespaces = ?syncer.cfg.namespaces, "sync to the remote vault on");
    tokio::spawn(syncer.run(app.clone()));
    Ok(())
}
