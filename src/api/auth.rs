//! The `Caller` extractor: peer (from the connection) + API key (from headers) → principal.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;
use crate::core::authz::{Peer, Principal};
use crate::core::SharedApp;

/// An authenticated caller of the native API.
pub struct Caller(pub Principal);

/// The API key of a request: `X-Api-Key`, or `Authorization: Bearer <key>`.
pub fn api_key(parts: &Parts) -> Option<&str> {
    if let Some(v) = parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
}

pub fn peer(parts: &Parts) -> Peer {
    // The listener always inserts the peer; a missing one would be a wiring bug, treated as an
    // anonymous TCP peer so it can never grant socket-based identity.
    parts.extensions.get::<Peer>().copied().unwrap_or(Peer::Tcp { addr: ([0, 0, 0, 0], 0).into() })
}

impl FromRequestParts<SharedApp> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &SharedApp) -> Result<Self, ApiError> {
        let p = peer(parts);
        let principal = app.authz.read().expect("poisoned").identify(&p, api_key(parts)).map_err(|e| {
            tracing::info!(peer = ?p, "request refused: {e}");
            ApiError::from(e)
        })?;
        Ok(Caller(principal))
    }
}
