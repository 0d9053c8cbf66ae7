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
use crate::core::keys::{self, GenerateRequest};
use crate::core::SharedApp;
use crate::store::KeyRecord;

pub fn routes() -> Router<SharedApp> {
    Router::new()
        .route("/health", get(health))
        .route("/keys", get(list_keys).post(generate_key))
        .route("/keys/{id}", get(show_key).delete(delete_key))
        .route("/keys/{id}/export", axum::routing::post(export_key))
}

/// Health answers any authenticated caller: each token's state and the store's.
async fn health(State(app): State<SharedApp>, Caller(_): Caller) -> (StatusCode, Json<Value>) {
    let mut tokens = Vec::new();
    for t in app.tokens.all() {
        tokens.push(t.health().await);
    }
    let store_ok = app.store.healthy();
    let ok = store_ok && tokens.iter().all(|t| t.present && t.logged_in);
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        status,
        Json(json!({
            "status": if ok { "ok" } else { "degraded" },
            "version": env!("CARGO_PKG_VERSION"),
            "tokens": tokens,
            "store": {"ok": store_ok, "schema_version": app.store.schema_version().ok()},
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
    /// Only "pkcs8" (encrypted PKCS#8 PEM) here; the SSH formats live on the TPP face.
    format: Option<String>,
    /// Encrypts the exported key; required: keyport never hands out a key in the clear.
    passphrase: String,
}

async fn export_key(
    State(app): State<SharedApp>,
    Caller(who): Caller,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ExportRequest>,
) -> Result<Json<Value>, ApiError> {
    if let Some(f) = req.format.as_deref().filter(|f| *f != "pkcs8") {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_format", format!("format '{f}' is not supported here; use \"pkcs8\"")));
    }
    if req.passphrase.len() < 8 {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "weak_passphrase", "passphrase must be at least 8 characters: the exported key is encrypted with it"));
    }
    let key = crate::core::export::export_private_key(&app, &who, &id).await?;
    let pass = zeroize::Zeroizing::new(req.passphrase.into_bytes());
    let pem = tokio::task::spawn_blocking(move || {
        let der = crate::material::pkcs::to_pkcs8_der(&key)?;
        crate::material::pkcs::encrypt_pkcs8_pem(&der, &pass)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    .map_err(|e| ApiError::from(crate::core::import::material_error(e)))?;
    Ok(Json(json!({"id": id, "format": "pkcs8", "private_key": pem.as_str()})))
}
