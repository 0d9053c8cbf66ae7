//! Request bodies: read up to the configured limit (413 past it, checked while reading, so a
//! lying or absent Content-Length does not help), then parsed as JSON with serde's message
//! (which names unknown and missing fields) in the native error shape.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use std::future::Future;

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
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let inner = e.into_inner();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(inner.as_ref());
        while let Some(c) = cause {
            if c.is::<BodyDeadline>() {
                return ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", c.to_string());
            }
            cause = c.source();
        }
        too_large(limit)
    })
}

/// The request body did not arrive before the request's deadline.
#[derive(Debug)]
pub struct BodyDeadline(pub u64);

impl std::fmt::Display for BodyDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body did not arrive within {} s (limits.request_timeout_secs)", self.0)
    }
}

impl std::error::Error for BodyDeadline {}

/// A request body that fails once the request's deadline passes. Handlers run as tasks of
/// their own (`listen`), so without this a client trickling a body would hold its task and
/// connection for ever.
pub struct DeadlineBody {
    inner: std::pin::Pin<Box<hyper::body::Incoming>>,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    secs: u64,
    /// Told when the deadline cuts the body off: the connection, left mid-body, must close.
    expired: std::sync::Arc<tokio::sync::Notify>,
}

impl DeadlineBody {
    pub fn new(inner: hyper::body::Incoming, limit: std::time::Duration, expired: std::sync::Arc<tokio::sync::Notify>) -> DeadlineBody {
        DeadlineBody { inner: Box::pin(inner), deadline: Box::pin(tokio::time::sleep(limit)), secs: limit.as_secs(), expired }
    }
}

impl hyper::body::Body for DeadlineBody {
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        if self.inner.is_end_stream() {
            return std::task::Poll::Ready(None);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.expired.notify_one();
            return std::task::Poll::Ready(Some(Err(Box::new(BodyDeadline(self.secs)))));
        }
        self.inner.as_mut().poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
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
