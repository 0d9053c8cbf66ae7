//! The Huawei Cloud KPS face (DEW key pair service): `/v3/{project_id}/keypairs…` with the
//! vendor's paths, bodies, fields and error shape (`docs/vendor-apis.md` §002), so
//! the vendor's SDKs work unchanged against the loopback HTTPS port.
//!
//! A project id maps to a keyport namespace (`[kps.projects.<id>]`). A key pair is a row of
//! KPS metadata (`store::kps`) plus, while it holds a private key, an inventory key in a token
//! (the keyport key of the same name). Authentication: `X-Auth-Token` (an API key, checked by
//! the same rule as every face: `auth::identify`) or the vendor's `SDK-HMAC-SHA256` AK/SK
//! signature (`sign`), each signature accepted once (`replay`).

mod encode;
mod handlers;
#[cfg(feature = "fuzzing")]
pub(crate) use handlers::fuzz_request;
mod replay;
pub mod sign;

use super::json::Json;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;

use super::auth::{identify, peer};
use crate::config::KpsProject;
use crate::core::authz::Principal;
use crate::core::{CoreError, SharedApp};
use crate::token::TokenError;

pub fn routes() -> Router<SharedApp> {
    use handlers::*;
    Router::new()
        .route("/v3/{project_id}/keypairs", post(create).get(list))
        .route("/v3/{project_id}/keypairs/{name}", get(show).put(update).delete(delete))
        .route("/v3/{project_id}/keypairs/{name}/private-key", axum::routing::delete(clear_private_key))
        .route("/v3/{project_id}/keypairs/private-key/import", post(import_private_key))
        .route("/v3/{project_id}/keypairs/private-key/export", post(export_private_key))
        .route("/v3/{project_id}/keypairs/private-key/batch-export", post(batch_export))
        .route("/v3/{project_id}/keypairs/batch-import", post(batch_import))
        .route("/v3/{project_id}/keypairs/associate", post(ecs_binding))
        .route("/v3/{project_id}/keypairs/batch-associate", post(ecs_binding))
        .route("/v3/{project_id}/keypairs/disassociate", post(ecs_binding))
        .route("/v3/{project_id}/tasks/{task_id}", get(task))
        .route("/v3/{project_id}/running-tasks", get(running_tasks))
        .route("/v3/{project_id}/failed-tasks", get(failed_tasks).delete(delete_failed_tasks))
        .route("/v3/{project_id}/failed-tasks/{task_id}", axum::routing::delete(delete_failed_task))
        .layer(axum::Extension(std::sync::Arc::new(replay::ReplayCache::default())))
}

// --- errors -----------------------------------------------------------------------------------

/// The vendor's codes (`SSH密钥对错误码`, seed-apis.md §002) with their HTTP statuses.
pub mod codes {
    pub const TASK_ILLEGAL: &str = "KPS.0001";
    pub const PARAMETER: &str = "KPS.0002";
    pub const DEPENDENCY: &str = "KPS.0003";
    pub const RESPONSE: &str = "KPS.0004";
    pub const NOT_EXIST: &str = "KPS.4016";
    pub const NO_PRIVATE_KEY: &str = "KPS.6005";
    pub const ENCRYPT_FAILED: &str = "KPS.6008";
    pub const MISMATCH: &str = "KPS.6011";
    pub const AUTH: &str = "KPS.9001";
    pub const NO_PERMISSION: &str = "KPS.9003";
    pub const DB: &str = "KPS.5001";
}

#[derive(Debug)]
pub struct KpsError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl KpsError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> KpsError {
        KpsError { status, code, message: message.into() }
    }
    pub fn bad(code: &'static str, message: impl Into<String>) -> KpsError {
        KpsError::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn param(message: impl Into<String>) -> KpsError {
        KpsError::bad(codes::PARAMETER, message)
    }
}

impl IntoResponse for KpsError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error_code": self.code, "error_msg": self.message}))).into_response()
    }
}

impl From<CoreError> for KpsError {
    fn from(e: CoreError) -> KpsError {
        let (status, code) = match &e {
            // The vendor's "dependency service unavailable", as 503 so clients retry.
            e if e.is_unavailable() => (StatusCode::SERVICE_UNAVAILABLE, codes::DEPENDENCY),
            CoreError::Invalid { .. } | CoreError::Conflict(_) => (StatusCode::BAD_REQUEST, codes::PARAMETER),
            CoreError::NotFound(_) => (StatusCode::BAD_REQUEST, codes::NOT_EXIST),
            CoreError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, codes::AUTH),
            CoreError::Forbidden(_) | CoreError::NotExportable(_) => (StatusCode::FORBIDDEN, codes::NO_PERMISSION),
            CoreError::Token(TokenError::Transient { .. }) | CoreError::Token(TokenError::Config { .. }) => {
                (StatusCode::INTERNAL_SERVER_ERROR, codes::DEPENDENCY)
            }
            CoreError::Token(_) | CoreError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, codes::RESPONSE),
            CoreError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, codes::DB),
            CoreError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, codes::DEPENDENCY),
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "kps request failed");
        }
        KpsError::new(status, code, e.to_string())
    }
}

impl From<crate::store::StoreError> for KpsError {
    fn from(e: crate::store::StoreError) -> KpsError {
        CoreError::from(e).into()
    }
}

// --- authentication ---------------------------------------------------------------------------

/// An authenticated KPS request: the caller, the raw query and the body (read within
/// `limits.max_body_bytes`, as the signature covers it).
pub struct KpsRequest {
    pub who: std::sync::Arc<Principal>,
    pub query: Option<String>,
    pub body: axum::body::Bytes,
}

fn unauthenticated(message: impl Into<String>) -> KpsError {
    KpsError::new(StatusCode::UNAUTHORIZED, codes::AUTH, message)
}

/// One answer for an unknown AK, a wrong signature and a replayed one, so none can be told
/// from the others.
const BAD_SIGNATURE: &str =
    "the request signature is not valid: check the AK/SK pair, and sign every request anew (a signature is accepted once)";

fn now_secs() -> i64 {
    crate::clock::Timestamp::now().unix()
}

/// The face's own API-key header (an IAM token in the vendor's API); `X-Api-Key` and
/// `Authorization: Bearer` count too (`auth::identify`).
const TOKEN_HEADERS: &[&str] = &["x-auth-token"];

impl FromRequest<SharedApp> for KpsRequest {
    type Rejection = KpsError;

    async fn from_request(req: Request, app: &SharedApp) -> Result<Self, KpsError> {
        let (parts, body) = req.into_parts();
        let declared =
            parts.headers.get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        let limit = app.config.limits.max_body_bytes;
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(KpsError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                codes::PARAMETER,
                format!("the request body is larger than {limit} bytes (limits.max_body_bytes)"),
            ));
        }
        let read_body = |body| async move {
            super::body::read_body(body, limit).await.map_err(|e| KpsError::new(e.status, codes::PARAMETER, e.message))
        };
        let query = parts.uri.query().map(String::from);
        let authorization = parts
            .headers
            .get_all(axum::http::header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.trim_start().starts_with(sign::ALGORITHM));
        let Some(value) = authorization else {
            // A token (or the socket peer) is known from the headers: authenticate first,
            // then read the body.
            let who = identify(app, &parts, TOKEN_HEADERS).map_err(|e| match e {
                CoreError::Unauthenticated(m) => {
                    tracing::info!(peer = ?peer(&parts), "kps request refused: {m}");
                    unauthenticated(format!("{m} (this face reads X-Auth-Token, or an SDK-HMAC-SHA256 signature with X-Sdk-Date)"))
                }
                other => other.into(),
            })?;
            let body = read_body(body).await?;
            return Ok(KpsRequest { who, query, body });
        };

        // AK/SK: the signature covers the body, so everything that needs neither the body nor
        // the secret is checked first, and the body is read under the short deadline for
        // callers not yet known (limits.unauthenticated_body_secs).
        let refused = |e: sign::SignError| {
            tracing::info!(error = %e, "signed request refused");
            unauthenticated(e.to_string())
        };
        let auth = sign::parse_authorization(value).map_err(refused)?;
        let now = now_secs();
        let head = sign::SignedRequest {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &parts.headers,
            body: &[],
        };
        let at = sign::precheck(&head, &auth, now).map_err(refused)?;
        let body = read_body(body).await?;
        let signed = sign::SignedRequest { body: &body, ..head };
        let entry = app.config.kps.access_key(&auth.access);
        let sk = match entry {
            Some(entry) => crate::token::pin::read(&entry.secret_key).map_err(|e| {
                tracing::error!(access_key = ?entry.access_key, "cannot read the KPS SK source (file, env or credential): {e}");
                KpsError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    codes::DEPENDENCY,
                    "the secret key for this access key cannot be read; see the daemon's log",
                )
            })?,
            // An unknown AK costs the same work and gets the same answer as a wrong signature.
            None => zeroize::Zeroizing::new(String::from("keyport: no such access key")),
        };
        let verified = sign::verify(&signed, &auth, sk.as_bytes(), now);
        // Reads (GET, HEAD) change nothing and the SDK dates requests to the second, so a client
        // that lists or shows twice in one second sends the same signature twice: only
        // requests that change something are refused when replayed.
        let safe = parts.method == axum::http::Method::GET || parts.method == axum::http::Method::HEAD;
        let first_use = verified.is_ok()
            && (safe || {
                let mut sig = [0u8; 32];
                hex::decode_to_slice(auth.signature.to_ascii_lowercase(), &mut sig).is_ok()
                    && replay_cache(&parts).first_use(sig, at + sign::MAX_SKEW_SECS, now)
            });
        let entry = match (entry, verified) {
            (Some(entry), Ok(())) if first_use => entry,
            (_, Err(e @ sign::SignError::UnsignedPayload)) => return Err(refused(e)),
            (_, r) => {
                tracing::info!(access_key = ?auth.access, signature_ok = r.is_ok(), replayed = r.is_ok() && !first_use, "signed request refused");
                return Err(unauthenticated(BAD_SIGNATURE));
            }
        };
        let who = app
            .authz
            .read()
            .expect("poisoned")
            .by_name(&entry.principal)
            .ok_or_else(|| unauthenticated(format!("the principal '{}' of this access key is not configured", entry.principal)))?;
        // Any API key sent alongside must be valid and name the same principal.
        if !super::auth::presented_keys(&parts, TOKEN_HEADERS).is_empty() {
            let by_key = identify(app, &parts, TOKEN_HEADERS).map_err(|e| unauthenticated(e.to_string()))?;
            if by_key.name != who.name {
                return Err(unauthenticated("the API key sent with the signed request belongs to another principal; send one credential"));
            }
        }
        super::auth::note_principal(&parts, &who);
        Ok(KpsRequest { who, query, body })
    }
}

fn replay_cache(parts: &axum::http::request::Parts) -> std::sync::Arc<replay::ReplayCache> {
    parts.extensions.get::<std::sync::Arc<replay::ReplayCache>>().cloned().expect("kps::routes adds the replay cache")
}

impl KpsRequest {
    /// The body as `T`, or KPS.0002 with serde's message.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, KpsError> {
        serde_json::from_slice(&self.body).map_err(|e| KpsError::param(format!("the request body is not valid: {e}")))
    }
}

/// The configured project, or KPS.0002.
pub fn project<'a>(app: &'a SharedApp, project_id: &str) -> Result<&'a KpsProject, KpsError> {
    app.config
        .kps
        .projects
        .get(project_id)
        .ok_or_else(|| KpsError::param(format!("project '{project_id}' is not configured ([kps.projects.<id>])")))
}
