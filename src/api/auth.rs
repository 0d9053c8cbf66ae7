//! Who is calling, by one rule for every face: every API key the request carries (the face's
//! own header, `X-Api-Key`, `Authorization: Bearer`) must be recognized and all must name the
//! same principal; with none, the socket peer's uid/gid. A wrong key is refused even on the
//! socket, whichever header it came in. A caller identified here may take its time sending the
//! body (`body::BodyClock`); before that, the body must arrive soon.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use std::sync::Arc;

use super::error::ApiError;
use crate::core::authz::{Peer, Principal};
use crate::core::{CoreError, SharedApp};

/// An authenticated caller of the native API.
pub struct Caller(pub Arc<Principal>);

/// The API key of a request: `X-Api-Key`, or `Authorization: Bearer <key>`.
pub fn api_key(parts: &Parts) -> Option<&str> {
    presented_keys(parts, &[]).into_iter().next()
}

/// Every API key in the request: the face's own `face_headers`, `X-Api-Key`, and
/// `Authorization: Bearer`. A header that is not valid text still counts (as a key that matches
/// nothing), so it is refused rather than ignored.
pub fn presented_keys<'a>(parts: &'a Parts, face_headers: &[&str]) -> Vec<&'a str> {
    let text = |v: &'a axum::http::HeaderValue| v.to_str().map(str::trim).unwrap_or("\u{fffd}");
    let mut keys = Vec::new();
    for h in face_headers.iter().copied().chain(["x-api-key"]) {
        keys.extend(parts.headers.get_all(h).iter().map(text));
    }
    for v in parts.headers.get_all(axum::http::header::AUTHORIZATION) {
        let v = text(v);
        if let Some(k) = v.get(..7).filter(|s| s.eq_ignore_ascii_case("bearer ")).map(|_| v[7..].trim()) {
            keys.push(k);
        }
    }
    keys
}

pub fn peer(parts: &Parts) -> Peer {
    // The listener gives every request a context with its peer; a missing one would be a wiring
    // bug, treated as an anonymous TCP peer so it can never grant socket-based identity.
    super::request::Context::of(&parts.extensions).map(|c| c.peer()).unwrap_or(Peer::Tcp { addr: ([0, 0, 0, 0], 0).into() })
}

/// The principal of a request by the one rule (see the module doc); `face_headers` are the
/// face's own API-key headers. On success the request's body may use its whole deadline.
pub fn identify(app: &SharedApp, parts: &Parts, face_headers: &[&str]) -> Result<Arc<Principal>, CoreError> {
    let p = peer(parts);
    let keys = presented_keys(parts, face_headers);
    let authz = app.authz.read().expect("poisoned");
    let who = if keys.is_empty() {
        authz.identify(&p, None)?
    } else {
        let mut who: Option<Arc<Principal>> = None;
        for k in keys {
            let this = authz.identify(&p, Some(k))?;
            if who.as_ref().is_some_and(|w| w.name != this.name) {
                return Err(CoreError::Unauthenticated("the request carries API keys of different principals; send one key".into()));
            }
            who = Some(this);
        }
        who.expect("at least one key")
    };
    authenticated(parts);
    note_principal(parts, &who);
    Ok(who)
}

/// Names the request's principal for the access log and the audit of a refusal (also for
/// faces that identify callers their own way: KPS AK/SK).
pub fn note_principal(parts: &Parts, who: &Arc<Principal>) {
    if let Some(c) = super::request::Context::of(&parts.extensions) {
        c.note_principal(who);
    }
}

/// Marks the request's caller as known: its body may take the request's whole deadline.
pub fn authenticated(parts: &Parts) {
    if let Some(c) = super::request::Context::of(&parts.extensions) {
        c.clock().authenticated();
    }
}

impl FromRequestParts<SharedApp> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &SharedApp) -> Result<Self, ApiError> {
        let principal = identify(app, parts, &[]).map_err(|e| {
            tracing::info!(peer = ?peer(parts), "request refused: {e}");
            ApiError::from(e)
        })?;
        Ok(Caller(principal))
    }
}
