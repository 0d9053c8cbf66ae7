//! `GET /keyport/v1/metrics`: Prometheus text exposition (version 0.0.4) for the numbers an
//! operator alerts on: tokens up, keys held, the sync backlog and how old its oldest row is,
//! keys whose sync failed, and when the last pass finished. Any authenticated caller may read it
//! (like health); it holds counts only, never key material.
//!
//! Counts that name a namespace or come from one are filtered by what the caller may read:
//! `keyport_keys{namespace}` lists only namespaces the caller has `read` on, and
//! `keyport_sync_keys{status}` counts only their keys. The global gauges (`keyport_token_up`,
//! `keyport_sync_enabled`, `keyport_sync_backlog_rows`, `keyport_sync_oldest_pending_age_seconds`,
//! `keyport_sync_last_pass_timestamp_seconds`) stay whole for every caller: they carry no
//! namespace or key names, only token names and daemon-wide numbers, as health does; so do
//! `keyport_degraded{component}` and `keyport_degraded_components` (the health registry).
//!
//! A scrape is cheap: keys and the backlog come from aggregate queries, and each token's health
//! check is bounded ([`TOKEN_HEALTH_TIMEOUT`]; a token that does not answer in time is down).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use super::auth::Caller;
use super::error::ApiError;
use crate::config::Permission;
use crate::core::{CoreError, SharedApp};

/// How long one token's health check may take in a scrape.
const TOKEN_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes() -> Router<SharedApp> {
    Router::new().route("/metrics", get(metrics))
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value as the exposition format wants it (`\`, `"` and newlines escaped).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Seconds since the Unix epoch of a stored RFC 3339 time.
fn epoch(at: &str) -> Option<i64> {
    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok().map(|t| t.unix_timestamp())
}

async fn metrics(
    State(app): State<SharedApp>,
    axum::Extension(super::SyncWorker(syncer)): axum::Extension<super::SyncWorker>,
    Caller(who): Caller,
) -> Result<impl IntoResponse, ApiError> {
    let mut out = String::new();
    family(&mut out, "keyport_token_up", "gauge", "1 when the token is present and logged in.");
    for t in app.tokens.all() {
        let up = match tokio::time::timeout(TOKEN_HEALTH_TIMEOUT, t.health()).await {
            Ok(h) => h.present && h.logged_in,
            Err(_) => {
                tracing::warn!(token = %t.name, "metrics: the token's health check timed out");
                false
            }
        };
        let _ = writeln!(out, "keyport_token_up{{token=\"{}\"}} {}", label(&t.name), u8::from(up));
    }
    let problems = app.health.problems();
    family(&mut out, "keyport_degraded", "gauge", "1 per component with a current problem (GET health says why); absent when fine.");
    for p in &problems {
        let _ = writeln!(out, "keyport_degraded{{component=\"{}\"}} 1", label(&p.component));
    }
    family(&mut out, "keyport_degraded_components", "gauge", "Components with a current problem; 0 when health is ok.");
    let _ = writeln!(out, "keyport_degraded_components {}", problems.len());
    family(&mut out, "keyport_keys", "gauge", "Keys in the inventory, per namespace the caller may read.");
    for (ns, n) in app.store.keys_per_namespace().map_err(CoreError::from)? {
        if who.allows(&ns, Permission::Read) {
            let _ = writeln!(out, "keyport_keys{{namespace=\"{}\"}} {n}", label(&ns));
        }
    }

    let status = crate::sync::status(&app, syncer.as_deref(), |ns| who.allows(ns, Permission::Read)).await.map_err(CoreError::from)?;
    let (backlog, oldest) = app.store.sync_backlog().map_err(CoreError::from)?;
    family(&mut out, "keyport_sync_enabled", "gauge", "1 when [sync] is configured.");
    let _ = writeln!(out, "keyport_sync_enabled {}", u8::from(status.enabled));
    family(&mut out, "keyport_sync_backlog_rows", "gauge", "Changes waiting for the remote vault (outbox rows).");
    let _ = writeln!(out, "keyport_sync_backlog_rows {backlog}");
    let oldest = oldest.as_deref().and_then(epoch);
    family(&mut out, "keyport_sync_oldest_pending_age_seconds", "gauge", "Age of the oldest change not yet in the vault (0 when none).");
    let age = oldest.map_or(0, |t| (time::OffsetDateTime::now_utc().unix_timestamp() - t).max(0));
    let _ = writeln!(out, "keyport_sync_oldest_pending_age_seconds {age}");
    let mut by_status: BTreeMap<&str, usize> =
        ["synced", "pending", "failed", "not_syncable", "deleted"].into_iter().map(|s| (s, 0)).collect();
    for k in &status.keys {
        *by_status.entry(k.status.as_str()).or_default() += 1;
    }
    family(&mut out, "keyport_sync_keys", "gauge", "Keys by sync status, in the namespaces the caller may read.");
    for (s, n) in &by_status {
        let _ = writeln!(out, "keyport_sync_keys{{status=\"{s}\"}} {n}");
    }
    family(&mut out, "keyport_sync_passes_total", "counter", "Sync passes run since start.");
    let _ = writeln!(out, "keyport_sync_passes_total {}", status.passes);
    family(
        &mut out,
        "keyport_sync_vault_down",
        "gauge",
        "1 while the whole vault backs off (down, sealed, no active node, rate-limiting).",
    );
    let _ = writeln!(out, "keyport_sync_vault_down {}", u8::from(status.vault_down.is_some()));
    if let Some(v) = &status.vault_stats {
        family(&mut out, "keyport_sync_vault_answers_total", "counter", "Vault requests sent, and answers keyport acted on (OpenBao).");
        for (kind, n) in
            [("requests", v.requests), ("rate_limited", v.rate_limited), ("redirects", v.redirects), ("failovers", v.failovers)]
        {
            let _ = writeln!(out, "keyport_sync_vault_answers_total{{kind=\"{kind}\"}} {n}");
        }
    }
    if let Some(t) = status.last_pass.as_ref().and_then(|p| p.finished_at.as_deref()).and_then(epoch) {
        family(&mut out, "keyport_sync_last_pass_timestamp_seconds", "gauge", "When the last sync pass finished.");
        let _ = writeln!(out, "keyport_sync_last_pass_timestamp_seconds {t}");
    }
    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out))
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(super::label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(super::label("x\ny"), "x\\ny");
    }
}
