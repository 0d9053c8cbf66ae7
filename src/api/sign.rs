//! `POST /keyport/v1/keys/{id}/sign`: a signature by a key that stays in the token, for local
//! services that are not SSH clients. Same permission (`sign`) and the same core operation as
//! the ssh-agent (`core::sign`).
//!
//! Body `{"data": <base64 of the message>, "algorithm"?: …}`; the message is hashed as the
//! scheme says (the caller sends the message, not a digest). Answer: the signature in the
//! key's standard encoding, base64: RSA PKCS#1 v1.5 bytes, ECDSA DER (`ECDSA-Sig-Value`, what
//! `openssl dgst -verify` reads), Ed25519 the 64 raw bytes.

use super::json::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use super::auth::Caller;
use super::body::JsonBody;
use super::error::ApiError;
use crate::core::authz::Peer;
use crate::core::sign::{self, Scheme, SignCaller, SignError};
use crate::core::SharedApp;

pub fn routes() -> Router<SharedApp> {
    Router::new().route("/keyport/v1/keys/{id}/sign", post(sign_key))
}

/// The connection's peer (uid and pid on the socket), for `allowed_uids` and the audit.
struct PeerOf(Peer);

impl<S: Send + Sync> FromRequestParts<S> for PeerOf {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerOf(super::auth::peer(parts)))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignBody {
    /// The message, standard base64.
    data: String,
    /// rsa-sha256 (default for RSA), rsa-sha384, rsa-sha512, ecdsa-sha256/384/512 (default:
    /// the curve's hash), ed25519.
    algorithm: Option<String>,
}

const SCHEMES: &str = "rsa-sha256, rsa-sha384, rsa-sha512, ecdsa-sha256, ecdsa-sha384, ecdsa-sha512, ed25519";

async fn sign_key(
    State(app): State<SharedApp>,
    Caller(who): Caller,
    PeerOf(peer): PeerOf,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<SignBody>,
) -> Response {
    let data = match STANDARD.decode(req.data.trim()) {
        Ok(d) => d,
        Err(_) => return bad("invalid_data", "data must be the message in standard base64 (RFC 4648 §4)".into()),
    };
    let scheme = match req.algorithm.as_deref() {
        None => None,
        Some(a) => match Scheme::parse(a) {
            Some(s) => Some(s),
            None => return bad("invalid_algorithm", format!("algorithm {a:?} is not supported; use one of: {SCHEMES}")),
        },
    };
    let caller = SignCaller { principal: &who, peer, via: "api" };
    let rec = match sign::key_by_id(&app, &caller, &id) {
        Ok(r) => r,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let sig = match sign::sign(&app, &caller, &rec, scheme, &data).await {
        Ok(s) => s,
        Err(SignError::Core(e)) => return ApiError::from(e).into_response(),
        Err(e @ SignError::RateLimited { retry_after_secs, .. }) => {
            let mut r = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string()).into_response();
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            return r;
        }
    };
    let (bytes, encoding) = match sig.scheme {
        Scheme::Ecdsa(_) => match ecdsa_der(&sig.bytes) {
            Some(der) => (der, "der"),
            None => {
                tracing::error!(key = %rec.id, "the token's ECDSA signature is not r‖s");
                return ApiError::new(StatusCode::BAD_GATEWAY, "token_refused", "the token returned a malformed ECDSA signature")
                    .into_response();
            }
        },
        Scheme::Rsa(_) => (sig.bytes, "pkcs1-v1_5"),
        Scheme::Ed25519 => (sig.bytes, "raw"),
    };
    Json(json!({
        "id": rec.id,
        "algorithm": sig.scheme.name(),
        "encoding": encoding,
        "signature": STANDARD.encode(bytes),
    }))
    .into_response()
}

fn bad(code: &'static str, message: String) -> Response {
    ApiError::new(StatusCode::BAD_REQUEST, code, message).into_response()
}

/// Raw r‖s (halves of equal size) as DER `SEQUENCE { INTEGER r, INTEGER s }`.
fn ecdsa_der(rs: &[u8]) -> Option<Vec<u8>> {
    use der::asn1::{AnyRef, UintRef};
    use der::Encode;
    if rs.is_empty() || rs.len() % 2 != 0 {
        return None;
    }
    let (r, s) = rs.split_at(rs.len() / 2);
    let mut body = Vec::new();
    UintRef::new(r).ok()?.encode_to_vec(&mut body).ok()?;
    UintRef::new(s).ok()?.encode_to_vec(&mut body).ok()?;
    AnyRef::new(der::Tag::Sequence, &body).ok()?.to_der().ok()
}

/// The face's request body, for `fuzz/` (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_request(body: &[u8], _query: &str) {
    if let Some(r) = crate::fuzzing::json::<SignBody>(body) {
        let _ = STANDARD.decode(r.data.trim());
        let _ = r.algorithm.as_deref().map(Scheme::parse);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ecdsa_der_matches_p256() {
        let rs: Vec<u8> = (1..=64).collect();
        let expected = p256::ecdsa::Signature::from_slice(&rs).unwrap().to_der();
        assert_eq!(super::ecdsa_der(&rs).unwrap(), expected.as_bytes());
        // A high bit in r gets its leading zero; leading zeros in s are dropped.
        let mut rs = vec![0x80; 32];
        rs.extend([0u8; 31]);
        rs.push(5);
        let expected = p256::ecdsa::Signature::from_slice(&rs).unwrap().to_der();
        assert_eq!(super::ecdsa_der(&rs).unwrap(), expected.as_bytes());
    }
}
