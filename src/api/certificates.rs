//! Native certificate views under `/keyport/v1/`: `GET /certificates?namespace=…&expiring_before=…`
//! (a date `2026-01-31` or an RFC 3339 time), soonest expiry first; `DELETE /certificates/{sha256}`.

use super::json::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::ApiError;
use crate::core::certificates;
use crate::core::SharedApp;

pub fn routes() -> Router<SharedApp> {
    Router::new().route("/keyport/v1/certificates", get(list)).route("/keyport/v1/certificates/{sha256}", axum::routing::delete(delete))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    namespace: Option<String>,
    expiring_before: Option<String>,
}

pub use crate::store::records::parse_instant;

async fn list(State(app): State<SharedApp>, Caller(who): Caller, Query(q): Query<ListQuery>) -> Result<Json<CertList>, ApiError> {
    let before = match q.expiring_before.as_deref() {
        None => None,
        Some(s) => Some(parse_instant(s).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_date",
                format!("expiring_before '{s}' is not a date (2026-01-31) or an RFC 3339 time"),
            )
        })?),
    };
    let certificates = certificates::list(&app, &who, q.namespace.as_deref(), before.as_deref())?;
    // Serialized straight from the rows: a JSON tree of every certificate first would hold
    // several times their size per concurrent request.
    Ok(Json(CertList { certificates }))
}

#[derive(serde::Serialize)]
struct CertList {
    certificates: Vec<crate::store::CertView>,
}

async fn delete(State(app): State<SharedApp>, Caller(who): Caller, Path(sha256): Path<String>) -> Result<Json<Value>, ApiError> {
    let sha256 = sha256.to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_id", "name the certificate by its SHA-256: 64 hex digits"));
    }
    let rec = certificates::delete(&app, &who, &sha256).await?;
    Ok(Json(json!({ "deleted": rec.sha256 })))
}

/// The face's query, for `fuzz/` (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_request(_body: &[u8], query: &str) {
    if let Some(ListQuery { expiring_before: Some(s), .. }) = crate::fuzzing::query::<ListQuery>(query) {
        let _ = parse_instant(&s);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn instants() {
        assert_eq!(super::parse_instant("2026-01-31").unwrap(), "2026-01-31T00:00:00Z");
        assert_eq!(super::parse_instant("2026-01-31T12:00:00.5+02:00").unwrap(), "2026-01-31T10:00:00Z");
        assert!(super::parse_instant("31/01/2026").is_none());
    }
}
