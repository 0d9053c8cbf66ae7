//! `GET /keyport/v1/metrics`, and the optional metrics-only listener (`[metrics] listen`):
//! Prometheus text exposition (version 0.0.4, `prometheus-client`) for the numbers an operator
//! alerts on: tokens up, keys held, the sync backlog and how old its oldest row is, keys whose
//! sync failed, when the last pass finished; and the daemon-long counters of
//! `core::telemetry` (requests by face, route template and status; latency; token operations
//! and errors; sync errors; `keyport_build_info`). Counts only, never key material.
//!
//! On the API any authenticated caller may read it (like health). Counts that name a namespace
//! or come from one are filtered by what the caller may read: `keyport_keys{namespace}` lists
//! only namespaces the caller has `read` on, and `keyport_sync_keys{status}` counts only their
//! keys. The global gauges (`keyport_token_up`, `keyport_sync_enabled`,
//! `keyport_sync_backlog_rows`, `keyport_sync_oldest_pending_age_seconds`,
//! `keyport_sync_last_pass_timestamp_seconds`) stay whole for every caller: they carry no
//! namespace or key names, only token names and daemon-wide numbers, as health does; so do
//! `keyport_degraded{component}` and `keyport_degraded_components` (the health registry).
//!
//! The metrics-only listener has no authentication, so it shows no namespace names at all:
//! `keyport_keys` is replaced by `keyport_inventory_keys` (every key, one number), and
//! `keyport_sync_keys` counts every key.
//!
//! A scrape is cheap: keys and the backlog come from aggregate queries, and each token's health
//! check is bounded ([`TOKEN_HEALTH_TIMEOUT`]; a token that does not answer in time is down).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::time::Duration;

use super::auth::Caller;
use super::error::ApiError;
use crate::config::Permission;
use crate::core::authz::Principal;
use crate::core::{App, CoreError, SharedApp};

/// How long one token's health check may take in a scrape.
const TOKEN_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

type Labels = Vec<(&'static str, String)>;

pub fn routes() -> Router<SharedApp> {
    Router::new().route("/keyport/v1/metrics", get(metrics))
}

/// Who the numbers are for.
pub enum Viewer<'a> {
    /// An authenticated API caller: namespace counts follow its `read` permission.
    Caller(&'a Principal),
    /// The unauthenticated metrics-only listener: no namespace names.
    Anonymous,
}

impl Viewer<'_> {
    fn reads(&self, namespace: &str) -> bool {
        match self {
            Viewer::Caller(p) => p.allows(namespace, Permission::Read),
            Viewer::Anonymous => true,
        }
    }
}

fn gauge(r: &mut Registry, name: &str, help: &str, v: i64) {
    let g: Gauge = Gauge::default();
    g.set(v);
    r.register(name, help, g);
}

fn gauges(r: &mut Registry, name: &str, help: &str, rows: impl IntoIterator<Item = (Labels, i64)>) {
    let f: Family<Labels, Gauge> = Family::default();
    for (labels, v) in rows {
        f.get_or_create(&labels).set(v);
    }
    r.register(name, help, f);
}

async fn metrics(
    State(app): State<SharedApp>,
    axum::Extension(super::SyncWorker(syncer)): axum::Extension<super::SyncWorker>,
    Caller(who): Caller,
) -> Result<impl IntoResponse, ApiError> {
    let text = render(&app, syncer.as_deref(), Viewer::Caller(&who)).await?;
    Ok(([(CONTENT_TYPE, prometheus_text::CONTENT_TYPE)], text))
}

/// The metrics-only listener's whole router: `GET /metrics` (and `/keyport/v1/metrics`) in the
/// anonymous view, and the liveness check; no authentication. Not in the OpenAPI document,
/// which describes the API listeners (`api::openapi` says why).
pub fn listener_router(app: SharedApp, syncer: Option<std::sync::Arc<crate::sync::Syncer>>) -> axum::Router {
    async fn anonymous(
        State(app): State<SharedApp>,
        axum::Extension(super::SyncWorker(syncer)): axum::Extension<super::SyncWorker>,
    ) -> axum::response::Response {
        match render(&app, syncer.as_deref(), Viewer::Anonymous).await {
            Ok(text) => ([(CONTENT_TYPE, prometheus_text::CONTENT_TYPE)], text).into_response(),
            Err(e) => ApiError::from(e).into_response(),
        }
    }
    Router::new()
        .route("/metrics", get(anonymous))
        .route("/keyport/v1/metrics", get(anonymous))
        .route("/keyport/v1/health/live", get(super::native::live))
        .layer(axum::Extension(super::SyncWorker(syncer)))
        .route_layer(super::access::NoteRoute)
        .fallback(super::error::not_found)
        .with_state(app)
}

/// The exposition text for `viewer`.
pub async fn render(app: &App, syncer: Option<&crate::sync::Syncer>, viewer: Viewer<'_>) -> Result<String, CoreError> {
    let mut r = Registry::default();
    let mut up = Vec::new();
    for t in app.tokens.all() {
        let ok = match tokio::time::timeout(TOKEN_HEALTH_TIMEOUT, t.health()).await {
            Ok(h) => h.present && h.logged_in,
            Err(_) => {
                tracing::warn!(token = ?t.name, "metrics: the token's health check timed out");
                false
            }
        };
        up.push((vec![("token", t.name.clone())], i64::from(ok)));
    }
    gauges(&mut r, "keyport_token_up", "1 when the token is present and logged in.", up);
    let problems = app.health.problems();
    gauges(
        &mut r,
        "keyport_degraded",
        "1 per component with a current problem (GET health says why); absent when fine.",
        problems.iter().map(|p| (vec![("component", p.component.clone())], 1)),
    );
    gauge(&mut r, "keyport_degraded_components", "Components with a current problem; 0 when health is ok.", problems.len() as i64);
    let per_ns: Vec<(String, i64)> =
        app.store.keys_per_namespace()?.into_iter().filter(|(ns, _)| viewer.reads(ns)).map(|(ns, n)| (ns, n as i64)).collect();
    match viewer {
        Viewer::Caller(_) => gauges(
            &mut r,
            "keyport_keys",
            "Keys in the inventory, per namespace the caller may read.",
            per_ns.into_iter().map(|(ns, n)| (vec![("namespace", ns)], n)),
        ),
        Viewer::Anonymous => {
            gauge(&mut r, "keyport_inventory_keys", "Keys in the inventory, all namespaces.", per_ns.iter().map(|(_, n)| n).sum())
        }
    }

    let status = crate::sync::status(app, syncer, |ns| viewer.reads(ns)).await?;
    let (backlog, oldest) = app.store.sync_backlog()?;
    gauge(&mut r, "keyport_sync_enabled", "1 when [sync] is configured.", i64::from(status.enabled));
    gauge(&mut r, "keyport_sync_backlog_rows", "Changes waiting for the remote vault (outbox rows).", backlog as i64);
    let age = oldest.map_or(0, |t| t.age().as_secs() as i64);
    gauge(&mut r, "keyport_sync_oldest_pending_age_seconds", "Age of the oldest change not yet in the vault (0 when none).", age);
    let mut by_status: BTreeMap<&str, i64> =
        ["synced", "pending", "failed", "not_syncable", "deleted"].into_iter().map(|s| (s, 0)).collect();
    for k in &status.keys {
        *by_status.entry(k.status.as_str()).or_default() += 1;
    }
    gauges(
        &mut r,
        "keyport_sync_keys",
        "Keys by sync status, in the namespaces the caller may read.",
        by_status.iter().map(|(s, n)| (vec![("status", s.to_string())], *n)),
    );
    let passes: prometheus_client::metrics::counter::Counter = Default::default();
    passes.inc_by(status.passes);
    r.register("keyport_sync_passes", "Sync passes run since start.", passes);
    gauge(
        &mut r,
        "keyport_sync_vault_down",
        "1 while the whole vault backs off (down, sealed, no active node, rate-limiting).",
        i64::from(status.vault_down.is_some()),
    );
    if let Some(v) = &status.vault_stats {
        let f: Family<Labels, prometheus_client::metrics::counter::Counter> = Family::default();
        for (kind, n) in
            [("requests", v.requests), ("rate_limited", v.rate_limited), ("redirects", v.redirects), ("failovers", v.failovers)]
        {
            f.get_or_create(&vec![("kind", kind.to_string())]).inc_by(n);
        }
        r.register("keyport_sync_vault_answers", "Vault requests sent, and answers keyport acted on (OpenBao).", f);
    }
    if let Some(t) = status.last_pass.as_ref().and_then(|p| p.finished_at).map(crate::clock::Timestamp::unix) {
        gauge(&mut r, "keyport_sync_last_pass_timestamp_seconds", "When the last sync pass finished.", t);
    }
    app.telemetry.register(&mut r);
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_text::encode(&mut out, &r);
    Ok(out)
}
