//! `GET /keyport/v1/audit?since=&key=&principal=&limit=&before=` (admin): the audit log,
//! newest first, a page at a time (`next_before` names the next page).

use super::json::Json;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::auth::Caller;
use super::error::ApiError;
use crate::core::audit::{self, Page};
use crate::core::SharedApp;
use crate::store::audit_query::AuditFilter;

pub fn routes() -> Router<SharedApp> {
    Router::new().route("/keyport/v1/audit", get(list))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// RFC 3339 time or date: entries at or after it.
    since: Option<String>,
    /// A key id: entries about that key.
    key: Option<String>,
    principal: Option<String>,
    /// Entries per page, 1-1000 (default 100).
    limit: Option<u32>,
    /// `next_before` of the previous page.
    before: Option<i64>,
}

async fn list(State(app): State<SharedApp>, Caller(who): Caller, Query(q): Query<AuditQuery>) -> Result<Json<Page>, ApiError> {
    let f = AuditFilter { since: q.since, key_id: q.key, principal: q.principal, before: q.before, limit: q.limit.unwrap_or(100) };
    Ok(Json(audit::list(&app, &who, f)?))
}
