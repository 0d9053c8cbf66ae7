//! The native API's one error shape: `{"error": {"code": "...", "message": "..."}}`.
//! Vendor faces map `CoreError` to their own shapes in their own modules.

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::core::fault::RETRY_AFTER_SECS;
use crate::core::CoreError;
use crate::store::StoreError;
use crate::token::TokenError;

pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> ApiError {
        let (status, code) = match &e {
            // Token or store faults that may pass: 503 (Retry-After is added by `retry_after`).
            e if e.is_unavailable() => match e {
                CoreError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
                _ => (StatusCode::SERVICE_UNAVAILABLE, "token_unavailable"),
            },
            CoreError::Invalid { code, .. } => (StatusCode::BAD_REQUEST, *code),
            CoreError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            CoreError::Conflict(_) | CoreError::Store(StoreError::NameTaken { .. }) => (StatusCode::CONFLICT, "conflict"),
            CoreError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            CoreError::Forbidden(_) | CoreError::NotExportable(_) => (StatusCode::FORBIDDEN, "forbidden"),
            CoreError::Token(TokenError::NotFound { .. }) => (StatusCode::NOT_FOUND, "not_found"),
            CoreError::Token(TokenError::Refused { .. }) => (StatusCode::UNPROCESSABLE_ENTITY, "token_refused"),
            CoreError::Token(_) => (StatusCode::SERVICE_UNAVAILABLE, "token_unavailable"),
            CoreError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store_error"),
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        ApiError { status, code, message: e.to_string() }
    }
}

/// Every face's 503 carries `Retry-After` (the probe's cadence), whatever built it: a layer on
/// the whole router, so no face can forget it.
pub async fn retry_after(mut r: Response) -> Response {
    if r.status() == StatusCode::SERVICE_UNAVAILABLE && !r.headers().contains_key(RETRY_AFTER) {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    r
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": {"code": self.code, "message": self.message}}))).into_response()
    }
}

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no route for {}; the native API lives under /keyport/v1/", uri.path()))
}
