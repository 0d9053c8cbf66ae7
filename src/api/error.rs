//! The native API's one error shape: `{"error": {"code": "...", "message": "..."}}`.
//! Vendor faces map `CoreError` to their own shapes in their own modules.

use super::json::Json;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
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
            CoreError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            CoreError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        ApiError { status, code, message: e.to_string() }
    }
}

/// Every face's 503 carries `Retry-After` (the probe's cadence), whatever built it: called on
/// every answer by `access::answer`, so no face can forget it.
pub fn retry_after(r: &mut Response) {
    if r.status() == StatusCode::SERVICE_UNAVAILABLE && !r.headers().contains_key(RETRY_AFTER) {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": {"code": self.code, "message": self.message}}))).into_response()
    }
}

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no route for {}; the native API lives under /keyport/v1/", uri.path()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Cure;
    use serde_json::Value;

    fn token_down() -> CoreError {
        CoreError::Token(TokenError::Transient {
            token: "soft".into(),
            detail: "C_GenerateKeyPair: CKR_GENERAL_ERROR".into(),
            cure: Cure::Reinitialize,
        })
    }

    fn disk_full() -> CoreError {
        CoreError::Store(StoreError::Sqlite(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL), None)))
    }

    /// Status, Retry-After and JSON body, after the router's `retry_after` layer.
    async fn render(mut r: Response) -> (StatusCode, Option<String>, Value) {
        retry_after(&mut r);
        let ra = r.headers().get(RETRY_AFTER).map(|v| v.to_str().unwrap().to_string());
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), usize::MAX).await.unwrap();
        (status, ra, serde_json::from_slice(&body).unwrap())
    }

    /// Item 9 of issue 19: a token or store fault is 503 + Retry-After in every face's shape.
    #[tokio::test]
    async fn infrastructure_faults_are_503_with_retry_after_in_every_face() {
        for e in [token_down, disk_full] {
            let (s, ra, v) = render(ApiError::from(e()).into_response()).await;
            assert_eq!((s, ra.as_deref()), (StatusCode::SERVICE_UNAVAILABLE, Some("5")), "native {v}");
            assert!(v["error"]["code"].as_str().unwrap().ends_with("_unavailable"), "{v}");
            let (s, ra, v) = render(super::super::tlspc::VendorError::from(e()).into_response()).await;
            assert_eq!((s, ra.is_some()), (StatusCode::SERVICE_UNAVAILABLE, true), "tlspc {v}");
            assert_eq!(v["errors"][0]["code"], super::super::tlspc::codes::UNAVAILABLE);
            let (s, ra, v) = render(super::super::certimport::IotError::from(e()).into_response()).await;
            assert_eq!((s, ra.is_some()), (StatusCode::SERVICE_UNAVAILABLE, true), "certimport {v}");
            assert_eq!(v["errors"][0]["code"], "service_unavailable");
            let (s, ra, v) = render(super::super::kps::KpsError::from(e()).into_response()).await;
            assert_eq!((s, ra.is_some()), (StatusCode::SERVICE_UNAVAILABLE, true), "kps {v}");
            assert_eq!(v["error_code"], super::super::kps::codes::DEPENDENCY);
            let (s, ra, v) = render(super::super::keys::VendorError::from(e()).into_response()).await;
            assert_eq!((s, ra.is_some()), (StatusCode::SERVICE_UNAVAILABLE, true), "apiops {v}");
            assert_eq!(v["status"], "FAILURE");
        }
    }

    /// Refusals stay the request's (never retried, never 503); a damaged store is 500.
    #[tokio::test]
    async fn refusals_stay_4xx_and_a_corrupt_store_is_500() {
        let refused =
            CoreError::Token(TokenError::Refused { token: "soft".into(), operation: "C_SignInit", detail: "CKR_MECHANISM_INVALID".into() });
        let (s, ra, _) = render(ApiError::from(refused).into_response()).await;
        assert_eq!((s, ra), (StatusCode::UNPROCESSABLE_ENTITY, None));
        let corrupt = CoreError::Store(StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            None,
        )));
        let (s, ra, _) = render(ApiError::from(corrupt).into_response()).await;
        assert_eq!((s, ra), (StatusCode::INTERNAL_SERVER_ERROR, None));
    }

    /// keyport's own failure (a panicked worker, an unreadable stored job) is a 500 in every
    /// face's shape, never a 400 about the caller's input.
    #[tokio::test]
    async fn internal_failures_are_500_in_every_face() {
        let e = || CoreError::Internal("decrypt worker failed: task panicked".into());
        let (s, ra, v) = render(ApiError::from(e()).into_response()).await;
        assert_eq!((s, ra), (StatusCode::INTERNAL_SERVER_ERROR, None), "native {v}");
        assert_eq!(v["error"]["code"], "internal");
        let (s, _, v) = render(super::super::tlspc::VendorError::from(e()).into_response()).await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "tlspc {v}");
        let (s, _, v) = render(super::super::certimport::IotError::from(e()).into_response()).await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "certimport {v}");
        let (s, _, v) = render(super::super::kps::KpsError::from(e()).into_response()).await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "kps {v}");
        let (s, _, v) = render(super::super::keys::VendorError::from(e()).into_response()).await;
        assert_eq!((s, &v["status"]), (StatusCode::INTERNAL_SERVER_ERROR, &serde_json::json!("FAILURE")), "apiops {v}");
    }
}
