//! Native certificate views under `/keyport/v1/`: `GET /certificates?namespace=…&expiring_before=…`
//! (a date `2026-01-31` or an RFC 3339 time), soonest expiry first.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::ApiError;
use crate::core::certificates;
use crate::core::SharedApp;

pub fn routes() -> Router<SharedApp> {
    Router::new().route("/certificates", get(list))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    namespace: Option<String>,
    expiring_before: Option<String>,
}

/// A date or an RFC 3339 time as the store's `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn parse_instant(s: &str) -> Option<String> {
    use time::format_description::well_known::Rfc3339;
    let t = match time::OffsetDateTime::parse(s, &Rfc3339) {
        Ok(t) => t,
        Err(_) => time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()?.midnight().assume_utc(),
    };
    t.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).ok()?.format(&Rfc3339).ok()
}

async fn list(State(app): State<SharedApp>, Caller(who): Caller, Query(q): Query<ListQuery>) -> Result<Json<Value>, ApiError> {
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
    let certs = certificates::list(&app, &who, q.namespace.as_deref(), before.as_deref())?;
    Ok(Json(json!({ "certificates": certs })))
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
