//! The audit log as callers see it: who did what to which key, successes and refusals alike.
//! Rows are written by the operations themselves (in the same transaction as their change) and
//! by `api::access` for refused and failed requests; every row also goes to the log
//! (`target: keyport::audit`, written by the store as it records it).

use serde::Serialize;

use super::authz::Principal;
use super::{App, CoreError};
use crate::config::Permission;
use crate::store::audit_query::AuditFilter;
use crate::store::AuditEntry;

/// Largest page `GET audit` answers.
pub const MAX_PAGE: u32 = 1000;

/// A refusal or failure, recorded without an fsync of its own (`store::audit_log`): a flood of
/// bad requests must not hold the disk.
pub fn record_unsynced(app: &App, e: &AuditEntry) -> Result<(), CoreError> {
    Ok(app.store.audit_unsynced(e)?)
}

#[derive(Serialize)]
pub struct Row {
    pub seq: i64,
    #[serde(flatten)]
    pub entry: AuditEntry,
}

#[derive(Serialize)]
pub struct Page {
    pub entries: Vec<Row>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

/// `since` as the store writes times: RFC 3339 or a date, to microseconds in UTC.
pub fn stored_time(s: &str) -> Option<String> {
    crate::clock::Timestamp::parse(s).ok().map(|t| t.to_string())
}

/// A page of the audit log; reading it needs `admin` (it names every principal and key).
pub fn list(app: &App, who: &Principal, mut f: AuditFilter) -> Result<Page, CoreError> {
    who.require("*", Permission::Admin)?;
    if f.limit == 0 || f.limit > MAX_PAGE {
        return Err(CoreError::invalid("invalid_limit", format!("limit must be 1-{MAX_PAGE}")));
    }
    if let Some(s) = f.since.take() {
        f.since = Some(stored_time(&s).ok_or_else(|| {
            CoreError::invalid("invalid_date", format!("since '{s}' is not an RFC 3339 time or a date (2026-01-31T12:00:00Z, 2026-01-31)"))
        })?);
    }
    let limit = f.limit as usize;
    let rows = app.store.audit_page(&f)?;
    let next_before = (rows.len() == limit).then(|| rows.last().map(|(seq, _)| *seq)).flatten();
    Ok(Page { entries: rows.into_iter().map(|(seq, entry)| Row { seq, entry }).collect(), next_before })
}

#[cfg(test)]
mod tests {
    #[test]
    fn since_in_the_stored_shape() {
        assert_eq!(super::stored_time("2026-01-31").as_deref(), Some("2026-01-31T00:00:00.000000Z"));
        assert_eq!(super::stored_time("2026-01-31T12:00:00+01:00").as_deref(), Some("2026-01-31T11:00:00.000000Z"));
        assert!(super::stored_time("yesterday").is_none());
    }
}
