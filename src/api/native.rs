//! The native API under `/keyport/v1/`: health and keys.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::body::JsonBody;
use super::error::ApiError;
use crate::core::formats::{self, ExportFormat};
use crate::core::keys::{self, GenerateRequest};
use crate::core::probe;
use crate::core::SharedApp;
use crate::store::KeyRecord;

pub fn routes() -> Router<SharedApp> {
    Router::new()
        .route("/health", get(health))
        .route("/keys", get(list_keys).post(generate_key))
        .route("/keys/{id}", get(show_key).delete(delete_key))
        .route("/keys/{id}/export", axum::routing::post(export_key))
}

/// Health answers any authenticated caller. It probes now (`core::probe`: each token reads a
/// known object, the store runs a rolled-back write and checks its disk) rather than trusting
/// the last round, and is degraded (503) while any component has a problem.
async fn health(State(app): State<SharedApp>, Caller(_): Caller) -> (StatusCode, Json<Value>) {
    let mut tokens = Vec::new();
    for t in app.tokens.all() {
        tokens.push(probe::token(&app, t).await);
    }
    let store_ok = probe::store(&app).await;
    let problems = app.health.problems();
    let ok = store_ok && problems.is_empty() && tokens.iter().all(|t| t.present && t.logged_in);
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        status,
        Json(json!({
            "status": if ok { "ok" } else { "degraded" },
            "version": env!("CARGO_PKG_VERSION"),
            "tokens": tokens,
            "store": {"ok": store_ok, "schema_version": app.store.schema_version().ok()},
            "problems": problems,
        })),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    namespace: Option<String>,
    name: Option<String>,
}

async fn list_keys(State(app): State<SharedApp>, Caller(who): Caller, Query(q): Query<ListQuery>) -> Result<Json<Value>, ApiError> {
    let keys = keys::list(&app, &who, q.namespace.as_deref(), q.name.as_deref())?;
    Ok(Json(json!({ "keys": keys })))
}

async fn show_key(State(app): State<SharedApp>, Caller(who): Caller, Path(id): Path<String>) -> Result<Json<KeyRecord>, ApiError> {
    Ok(Json(keys::get(&app, &who, &id)?))
}

async fn generate_key(
    State(app): State<SharedApp>,
    Caller(who): Caller,
    JsonBody(req): JsonBody<GenerateRequest>,
) -> Result<(StatusCode, Json<KeyRecord>), ApiError> {
    Ok((StatusCode::CREATED, Json(keys::generate(&app, &who, req).await?)))
}

async fn delete_key(State(app): State<SharedApp>, Caller(who): Caller, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let rec = keys::delete(&app, &who, &id).await?;
    Ok(Json(json!({ "deleted": rec.id })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportRequest {
    /// pkcs8 (default), pkcs1/sec1, openssh, putty (v3), putty-v2, ssh2, tectia.
    format: Option<String>,
    /// Encrypts the exported key. Absent or empty: an unencrypted key, only when the
    /// namespace's policy has `allow_unencrypted_export`.
    passphrase: Option<String>,
}

async fn export_key(
    State(app): State<SharedApp>,
    Caller(who): Caller,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ExportRequest>,
) -> Result<Json<Value>, ApiError> {
    let name = req.format.as_deref().unwrap_or("pkcs8");
    let format = ExportFormat::parse_native(name).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_format",
            format!("format '{name}' is not supported; use one of: {}", formats::NATIVE_NAMES),
        )
    })?;
    // The passphrase rule (length, required by policy) is the core's, shared by every face.
    let pass = req.passphrase.filter(|p| !p.is_empty()).map(|p| zeroize::Zeroizing::new(p.into_bytes()));
    let encrypted = pass.is_some();
    let (rec, text) = formats::export_as(&app, &who, &id, format, pass).await?;
    Ok(Json(json!({"id": rec.id, "format": format.native_name(), "encrypted": encrypted, "private_key": text.as_str()})))
}

/// The face's request bodies and queries, for `fuzz/` (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_request(body: &[u8], query: &str) {
    use crate::fuzzing::{json, query as q};
    if let Some(r) = json::<ExportRequest>(body) {
        let _ = ExportFormat::parse_native(r.format.as_deref().unwrap_or("pkcs8"));
    }
    if let Some(r) = json::<GenerateRequest>(body) {
        let _ = crate::material::algorithm::Algorithm::parse(&r.algorithm);
    }
    let _ = q::<ListQuery>(query);
}
