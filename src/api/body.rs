//! Request bodies: read up to the configured limit (413 past it, checked while reading, so a
//! lying or absent Content-Length does not help), then parsed as JSON with serde's message
//! (which names unknown and missing fields) in the native error shape.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::core::SharedApp;

pub struct JsonBody<T>(pub T);

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the request body is larger than {limit} bytes (limits.max_body_bytes)"),
    )
}

/// Reads the whole body, at most `limit` bytes. A declared Content-Length over the limit is
/// refused before reading a byte (so a client waiting on `Expect: 100-continue` gets the 413
/// instead of a broken pipe); a body without one is cut off while reading.
pub async fn read_limited(req: Request, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    let declared = req.headers().get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    read_body(req.into_body(), limit).await
}

async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| too_large(limit))
}

impl<T: DeserializeOwned> FromRequest<SharedApp> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &SharedApp) -> Result<Self, ApiError> {
        let bytes = read_limited(req, app.config.limits.max_body_bytes).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("the request body is not the expected JSON: {e}")))
    }
}
