//! Request bodies: read up to the configured limit (413 past it, checked while reading, so a
//! lying or absent Content-Length does not help), then parsed as JSON with serde's message
//! (which names unknown and missing fields) in the native error shape.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use std::future::Future;

use super::error::ApiError;
use super::request::Context;
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

/// Reads `body`, at most `limit` bytes (413 past it; 408 when its deadline passes).
pub async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
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

/// The request body did not arrive before its deadline.
#[derive(Debug)]
pub struct BodyDeadline {
    secs: u64,
    authenticated: bool,
}

impl std::fmt::Display for BodyDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.authenticated {
            write!(f, "the request body did not arrive within {} s (limits.request_timeout_secs)", self.secs)
        } else {
            write!(
                f,
                "the request body did not arrive within {} s (limits.unauthenticated_body_secs: a caller not yet authenticated from its headers gets this long)",
                self.secs
            )
        }
    }
}

impl std::error::Error for BodyDeadline {}

/// When a request's body must have arrived: soon (`limits.unauthenticated_body_secs`) until
/// the face has authenticated the caller from the headers, then by the request's own deadline.
/// Part of each request's `request::Context`; `auth` marks it authenticated. So an unknown
/// caller cannot hold a connection by trickling a body, and a known one is not hurried.
pub struct BodyClock {
    start: tokio::time::Instant,
    unauthenticated: std::time::Duration,
    full: std::time::Duration,
    authenticated: std::sync::atomic::AtomicBool,
}

impl BodyClock {
    pub fn new(unauthenticated: std::time::Duration, full: std::time::Duration) -> BodyClock {
        BodyClock {
            start: tokio::time::Instant::now(),
            unauthenticated: unauthenticated.min(full),
            full,
            authenticated: Default::default(),
        }
    }

    /// The caller is known: its body may take the request's whole deadline.
    pub fn authenticated(&self) {
        self.authenticated.store(true, std::sync::atomic::Ordering::Release);
    }

    fn is_authenticated(&self) -> bool {
        self.authenticated.load(std::sync::atomic::Ordering::Acquire)
    }

    fn deadline(&self) -> tokio::time::Instant {
        self.start + if self.is_authenticated() { self.full } else { self.unauthenticated }
    }
}

/// A request body that fails once its deadline (its context's `BodyClock`) passes. Handlers
/// that may write run as tasks of their own (`listen`), so without this a client trickling a
/// body would hold its task and connection for ever.
pub struct DeadlineBody {
    inner: std::pin::Pin<Box<hyper::body::Incoming>>,
    context: Context,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// Told when the deadline cuts the body off: the connection, left mid-body, must close.
    expired: std::sync::Arc<tokio::sync::Notify>,
}

impl DeadlineBody {
    /// The request's body for the router: a body that has already ended (a `GET`'s, most
    /// often) is the empty body, which costs no allocation and needs no deadline.
    pub fn of(inner: hyper::body::Incoming, context: Context, expired: std::sync::Arc<tokio::sync::Notify>) -> Body {
        if hyper::body::Body::is_end_stream(&inner) {
            return Body::empty();
        }
        let sleep = Box::pin(tokio::time::sleep_until(context.clock().deadline()));
        Body::new(DeadlineBody { inner: Box::pin(inner), context, sleep, expired })
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
        // The deadline moves once, later, when the caller is authenticated.
        let deadline = self.context.clock().deadline();
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.expired.notify_one();
            let clock = self.context.clock();
            let authenticated = clock.is_authenticated();
            let secs = if authenticated { clock.full } else { clock.unauthenticated }.as_secs();
            return std::task::Poll::Ready(Some(Err(Box::new(BodyDeadline { secs, authenticated }))));
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
