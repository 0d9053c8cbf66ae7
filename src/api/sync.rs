//! `GET /keyport/v1/sync` (status: per key the last pushed version, pending rows, last error,
//! next attempt; the backlog; the vault login), `POST /keyport/v1/sync` (`sync now`) and
//! `POST /keyport/v1/sync/csr` (a CSR for the vault client key, for certificate login).
//!
//! `POST /keyport/v1/sync/restore` brings keys back from the vault (`keyport restore`).
//!
//! Status shows the keys of namespaces the caller may read; the trigger needs the `sync`
//! permission on every opted-in namespace (it retries permanent failures too). The CSR needs
//! `sync` on `*` (or admin): the client key is the host's, not a namespace's.

use super::json::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

use axum::Extension;

use super::auth::Caller;
use super::error::ApiError;
use super::SyncWorker;
use crate::config::Permission;
use crate::core::{CoreError, SharedApp};

pub fn routes() -> Router<SharedApp> {
    Router::new()
        .route("/keyport/v1/sync", get(status).post(trigger))
        .route("/keyport/v1/sync/csr", post(csr))
        .route("/keyport/v1/sync/restore", post(restore))
}

/// `POST /keyport/v1/sync/restore` `{"dry_run": bool}`: keys back from the vault
/// (`crate::sync::restore`); needs `admin` on every opted-in namespace. Runs as its own task,
/// so a client that gives up (or the request timeout) does not stop it half-way.
async fn restore(
    State(app): State<SharedApp>,
    Extension(SyncWorker(syncer)): Extension<SyncWorker>,
    Caller(who): Caller,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: crate::sync::restore::RestoreRequest = if body.iter().all(|b| b.is_ascii_whitespace()) {
        Default::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("the request body is not the expected JSON: {e}"))
        })?
    };
    let task = tokio::spawn(async move { crate::sync::restore::restore(&app, syncer, &who, req.dry_run).await });
    let report = task.await.map_err(|e| CoreError::Internal(format!("restore task failed: {e}")))?.map_err(|e| match e {
        crate::sync::restore::RestoreError::Core(e) => ApiError::from(e),
        crate::sync::restore::RestoreError::VaultUnavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "vault_unavailable", m),
    })?;
    Ok(Json(serde_json::to_value(report).map_err(|e| CoreError::Internal(e.to_string()))?))
}

async fn status(
    State(app): State<SharedApp>,
    Extension(SyncWorker(syncer)): Extension<SyncWorker>,
    Caller(who): Caller,
) -> Result<Json<crate::sync::Status>, ApiError> {
    let s = crate::sync::status(&app, syncer.as_deref(), |ns| who.allows(ns, Permission::Read) || who.allows(ns, Permission::Sync))
        .await
        .map_err(CoreError::from)?;
    Ok(Json(s))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TriggerRequest {
    /// Wait for the pass to finish (at most this many seconds) and answer with the status.
    wait_secs: Option<u64>,
}

async fn trigger(
    State(app): State<SharedApp>,
    Extension(SyncWorker(syncer)): Extension<SyncWorker>,
    Caller(who): Caller,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Some(syncer) = syncer else {
        // Only a caller that could trigger a pass learns that sync is off.
        who.require_somewhere(Permission::Sync)?;
        return Err(ApiError::new(StatusCode::CONFLICT, "sync_off", "sync is not configured: add a [sync] section with an address"));
    };
    for ns in &syncer.cfg.namespaces {
        who.require(ns, Permission::Sync)?;
    }
    // An empty body is `{}`: `keyport sync now` and `curl -X POST` send none.
    let req: TriggerRequest = if body.iter().all(|b| b.is_ascii_whitespace()) {
        TriggerRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("the request body is not the expected JSON: {e}"))
        })?
    };
    let wait = req.wait_secs.map(|s| Duration::from_secs(s.min(600)));
    let finished = syncer.trigger(wait).await;
    let status = crate::sync::status(&app, Some(&syncer), |_| true).await.map_err(CoreError::from)?;
    let code = if wait.is_none() { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok((code, Json(json!({"finished": wait.is_some() && finished, "status": status}))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CsrRequest {
    /// Subject common name; default: the sync host name.
    cn: Option<String>,
    /// DNS subject alternative names.
    #[serde(default)]
    dns: Vec<String>,
}

/// A CSR signed by the vault client key (generated in the first token on first use).
async fn csr(State(app): State<SharedApp>, Caller(who): Caller, body: axum::body::Bytes) -> Result<Json<Value>, ApiError> {
    who.require("*", Permission::Sync)?;
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", m);
    let req: CsrRequest = if body.iter().all(|b| b.is_ascii_whitespace()) {
        CsrRequest { cn: None, dns: Vec::new() }
    } else {
        serde_json::from_slice(&body).map_err(|e| bad(format!("the request body is not the expected JSON: {e}")))?
    };
    let cn = req.cn.unwrap_or_else(|| app.config.sync.host_name());
    if cn.is_empty() || cn.len() > 64 || cn.chars().any(|c| c.is_control()) {
        return Err(bad("cn must be 1-64 printable characters".into()));
    }
    if let Some(d) = req.dns.iter().find(|d| {
        d.is_empty() || d.len() > 253 || !d.bytes().all(|c| c.is_ascii_alphanumeric() || b".-*".contains(&c)) || d.starts_with('.')
    }) {
        return Err(bad(format!("'{d}' is not a DNS name")));
    }
    use crate::core::placement::{holds_id, token_for, OwnKey};
    let token = token_for(&app.tokens, OwnKey::VaultClient, |t| holds_id(t, crate::sync::client_cert::CLIENT_KEY_ID))
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_token", e.to_string()))?;
    let csr = crate::sync::client_cert::csr(&token, &cn, &req.dns)
        .await
        .map_err(|m| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "token_error", m))?;
    tracing::info!(principal = %who.name, cn = %cn, key = %csr.public_key_sha256, "sync: CSR for the vault client key");
    let audit = crate::store::records::AuditEntry {
        at: crate::store::records::now(),
        principal: who.name.clone(),
        action: "sync.csr".into(),
        namespace: None,
        key_id: None,
        outcome: "ok".into(),
        detail: Some(format!(
            "CN={cn}; vault client key {} in token '{}'{}",
            csr.public_key_sha256,
            csr.token,
            if csr.generated { " (generated now)" } else { "" }
        )),
    };
    app.store.audit(&audit).map_err(CoreError::from)?;
    Ok(Json(serde_json::to_value(csr).expect("serializable")))
}

/// The face's request bodies, for `fuzz/` (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_request(body: &[u8], _query: &str) {
    use crate::fuzzing::json;
    let _ = json::<TriggerRequest>(body);
    let _ = json::<CsrRequest>(body);
    let _ = json::<crate::sync::restore::RestoreRequest>(body);
}
