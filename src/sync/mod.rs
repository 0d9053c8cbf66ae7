//! Scheduled sync of keys and certificates to a remote, one of two connectors
//! (`[sync] remote`, `remote::Remote`):
//!
//! - `openbao` (default): an OpenBao / Vault API vault; keys wrapped in the token and imported
//!   into transit (BYOK), certificates in KV v2, one key at a time (`openbao`).
//! - `tlspc`: a TLS Protect Cloud–style remote; keys with their certificates in
//!   `certificates/imports` batches of at most 100, each key PBES2-encrypted under a password
//!   sealed to the remote's edge encryption key, the job polled and each item's result recorded
//!   (`tlspc`). Keys without a certificate, or non-exportable, are `not_syncable`.
//!
//! - The outbox (`store::outbox`): every change that must reach the remote is a row written in
//!   the same store transaction as the change; `outbox` here orders rows and spaces retries.
//!   A TLSPC job's id is stored with its rows (`store::remote_jobs`) before its result, so a
//!   restart polls the job and never posts a key twice.
//! - `schedule`: when a pass runs (interval + jitter, backoff ends, `sync now`).
//! - `worker`: a pass; rows are marked done only after the remote confirmed. A remote that is
//!   down, failing or rate-limiting ends the pass; `gate` then backs off for the whole vault
//!   (no key is charged an attempt) and the next pass probes before it touches a key.
//! - OpenBao cluster client: `cluster` (`[sync] addresses`: the active node, failover, 307s),
//!   `pacer` (client pacing per mount under a rate-limit quota), read-after-write consistency
//!   with `X-Vault-Index` (`openbao::OpenBao::call`).
//! - `verify` (OpenBao): notices a vault that lost keys it had confirmed and puts them back in
//!   the outbox.
//! - OpenBao: `openbao` (transit BYOK import, KV v2, error classes) over `http`; `auth` (static
//!   token, AppRole, or TLS certificate login, renewal and re-login); `client_cert` (the vault
//!   client key in the token, its CSR). Wrapping happens in the token (`token::byok`): the
//!   private key never leaves it in clear. `keyrecord`: a KV record per synced key, so
//!   `restore` brings exportable keys back into an empty token (byok-export, unwrapped inside
//!   the token) with their certificates.
//! - TLSPC: the key leaves the token as PKCS#8 only into zeroized memory, to be encrypted for
//!   the remote, and every such export is audited (`key.sync_export`).

pub mod auth;
pub mod client_cert;
pub mod cluster;
pub mod gate;
pub mod http;
pub mod keyrecord;
pub mod openbao;
pub mod outbox;
pub mod pacer;
pub mod prefetch;
pub mod remote;
pub mod restore;
pub mod schedule;
pub mod tlspc;
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
    /// The remote's name for it: OpenBao's transit key; TLSPC's certificate (its id, else its
    /// SHA-1 fingerprint as the remote reports it).
    pub vault_name: Option<String>,
    /// `synced`, `pending`, `failed` (the vault refused; retried on `sync now`), `not_syncable`
    /// or `deleted`.
    pub status: String,
    pub pushed_version: Option<i64>,
    pub pushed_at: Option<crate::clock::Timestamp>,
    pub detail: Option<String>,
    pub pending: usize,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<crate::clock::Timestamp>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub enabled: bool,
    /// The remote's kind (`openbao`, `tlspc`) and address.
    pub remote: Option<&'static str>,
    pub vault: Option<String>,
    pub namespaces: Vec<String>,
    /// `sync.vault_exportable`: false = the vault is a one-way copy (it signs, never gives
    /// keys back); true = new keys can come back with `keyport restore`.
    pub vault_exportable: bool,
    /// This host's name in the vault (`[sync] host`).
    pub host: Option<String>,
    /// Scheduled passes start this many seconds into each `interval_secs` of the wall clock
    /// (from the host name's hash, so a fleet spreads out), plus up to `jitter_secs`.
    pub slot_secs: Option<u64>,
    pub backlog: usize,
    /// OpenBao: the pinned wrapping key's fingerprint; TLSPC: the edge encryption key (and
    /// edge instance) keys are sealed to.
    pub wrapping_key: Option<String>,
    /// The vault login: method, token expiry (never the token).
    pub auth: Option<auth::AuthStatus>,
    pub last_pass: Option<worker::PassInfo>,
    /// Passes run since the daemon started.
    pub passes: u64,
    /// Set while the whole vault backs off (down, sealed, no active node, rate-limiting): why,
    /// since when, and when it is probed next (`gate`).
    pub vault_down: Option<gate::GateStatus>,
    /// OpenBao: the node keyport talks to now, and counts of what the vault answered.
    pub vault_node: Option<String>,
    pub vault_stats: Option<openbao::VaultCounts>,
    pub keys: Vec<KeyStatus>,
}

/// Status of every key the caller may see (`visible(namespace)`).
pub async fn status(app: &App, syncer: Option<&Syncer>, visible: impl Fn(&str) -> bool) -> Result<Status, crate::store::StoreError> {
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
                status: s.status.to_string(),
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
            // The remote's name for a key not pushed yet: OpenBao's transit name; a TLSPC
            // remote names it (its certificate) only once imported.
            vault_name: syncer.filter(|s| s.remote.openbao().is_some()).map(|s| s.vault_name(&r.namespace, &r.name, &r.key_id)),
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
        k.next_attempt_at = if r.permanent { None } else { r.next_attempt_at };
        if r.permanent {
            k.status = "failed".into();
        } else if k.status != "failed" {
            k.status = "pending".into();
        }
    }
    // While the vault backs off as a whole, every waiting key waits for its probe.
    let down = syncer.and_then(|s| s.gate.status());
    let mut keys: Vec<KeyStatus> = keys.into_values().filter(|k| visible(&k.namespace)).collect();
    if let Some(d) = &down {
        for k in keys.iter_mut().filter(|k| k.status == "pending") {
            k.last_error = Some(d.reason.clone());
            k.next_attempt_at = Some(k.next_attempt_at.take().map_or(d.next_probe_at, |n| n.max(d.next_probe_at)));
        }
    }
    Ok(Status {
        enabled: syncer.is_some(),
        remote: syncer.map(|s| s.remote.kind()),
        vault: syncer.map(|s| s.remote.address().to_string()),
        namespaces: syncer.map(|s| s.cfg.namespaces.clone()).unwrap_or_default(),
        vault_exportable: syncer.is_some_and(|s| s.cfg.vault_exportable),
        host: syncer.map(|s| s.host.clone()),
        slot_secs: syncer.map(|s| s.slot().as_secs()),
        backlog: rows.len(),
        wrapping_key: match syncer.and_then(|s| s.remote.openbao()) {
            Some(v) => v.pinned_wrapping_key().await,
            None => match syncer.map(|s| &s.remote) {
                Some(remote::Remote::Tlspc(t)) => t.pinned_encryption_key().await,
                _ => None,
            },
        },
        auth: syncer.and_then(|s| s.remote.openbao()).map(|v| v.auth_status()),
        last_pass: syncer.map(|s| s.last_pass.lock().expect("poisoned").clone()),
        passes: syncer.map_or(0, |s| s.passes.load(std::sync::atomic::Ordering::Relaxed)),
        vault_down: down,
        vault_node: syncer.and_then(|s| s.remote.openbao()).map(|v| v.current_node().to_string()),
        vault_stats: syncer.and_then(|s| s.remote.openbao()).map(|v| v.stats.snapshot()),
        keys,
    })
}

/// Starts the worker when `[sync]` is configured: turns the outbox on for the opted-in
/// namespaces and spawns the loop. Call once, on the runtime, after reconciliation.
pub fn start(app: &std::sync::Arc<App>) -> Result<Option<std::sync::Arc<Syncer>>, String> {
    if !app.config.sync.enabled() {
        return Ok(None);
    }
    let syncer = Syncer::new(&app.config.sync)?;
    if let Some(vault) = syncer.remote.openbao() {
        use crate::core::placement::{holds_id, token_for, OwnKey};
        match token_for(&app.tokens, OwnKey::VaultClient, |t| holds_id(t, client_cert::CLIENT_KEY_ID)) {
            Ok(t) => vault.attach_token(Some(&t)),
            // The walk stopped at a token that is away: the key is there or will be made there
            // once it is back (logins fail meanwhile, with the token's own error).
            Err(e) if e.retry => vault.attach_token(app.tokens.all().iter().find(|t| t.capabilities().is_none())),
            // Certificate login then fails with "no token to hold the vault client key".
            Err(e) if vault.uses_client_cert() => {
                let msg = format!("vault certificate login is off: {e}");
                tracing::error!("{msg}");
                app.health.set_off("sync:client-key", msg);
            }
            Err(_) => {}
        }
    }
    let syncer = std::sync::Arc::new(syncer);
    app.store.set_sync_scope(syncer.scope());
    tracing::info!(remote = syncer.remote.kind(), address = %syncer.remote.address(), host = %syncer.host, namespaces = ?syncer.cfg.namespaces, "sync to the remote vault on");
    app.background.spawn(syncer.clone().run(app.clone()));
    Ok(Some(syncer))
}
