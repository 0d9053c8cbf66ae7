//! Counters and histograms that live for the daemon's life (`prometheus-client`): requests per
//! face, route template and status, their latency, token operations and their errors, sync
//! errors, and the build. `api::metrics` encodes them next to the gauges it computes per
//! scrape. Labels hold only bounded values (face, method, route template, status, token name,
//! operation): never a key's or namespace's name, never a caller's string.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// A request's labels: fixed strings and a number, so counting a request allocates nothing
/// (the route template is interned by `api::access`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct RequestLabels {
    face: &'static str,
    method: &'static str,
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct RouteLabels {
    face: &'static str,
    route: &'static str,
}

/// Latency buckets in seconds: 1 ms to about 33 s (token RSA generation and slow vaults).
fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 16))
}

#[derive(Clone)]
pub struct Telemetry {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    token_ops: Family<Labels, Counter>,
    sync_errors: Family<Labels, Counter>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            token_ops: Family::default(),
            sync_errors: Family::default(),
        }
    }
}

impl Telemetry {
    /// One finished HTTP request. `route` is the route template (never the raw path).
    pub fn request(&self, face: &'static str, method: &str, route: &'static str, status: u16, seconds: f64) {
        let method = match method {
            "GET" => "GET",
            "HEAD" => "HEAD",
            "POST" => "POST",
            "PUT" => "PUT",
            "PATCH" => "PATCH",
            "DELETE" => "DELETE",
            "OPTIONS" => "OPTIONS",
            _ => "other",
        };
        self.requests.get_or_create(&RequestLabels { face, method, route, status }).inc();
        self.latency.get_or_create(&RouteLabels { face, route }).observe(seconds);
    }

    /// One token operation (`generate`, `import`, `sign`, `probe`, …) and whether it worked.
    pub fn token_op(&self, token: &str, op: &'static str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.token_ops.get_or_create(&vec![("token", token.into()), ("op", op.into()), ("result", result.into())]).inc();
    }

    /// One sync failure: `refused` (the vault refused a key, not retried), `retry` (a key
    /// will be retried), `stopped` (a pass stopped: the vault was unusable for every key).
    pub fn sync_error(&self, kind: &'static str) {
        self.sync_errors.get_or_create(&vec![("kind", kind.into())]).inc();
    }

    /// Registers the long-lived families (shared, not copied) in a scrape's registry.
    pub fn register(&self, r: &mut Registry) {
        r.register("keyport_http_requests", "HTTP requests answered, by face, method, route template and status.", self.requests.clone());
        r.register(
            "keyport_http_request_duration_seconds",
            "Time from a request's headers to its answer, by face and route template.",
            self.latency.clone(),
        );
        r.register("keyport_token_operations", "Token operations by token, operation and result (ok, error).", self.token_ops.clone());
        r.register(
            "keyport_sync_errors",
            "Sync failures: refused (a key the vault refused), retry (a key retried later), stopped (a pass stopped early).",
            self.sync_errors.clone(),
        );
        r.register(
            "keyport_build",
            "The running build: version, and git commit when built from a checkout.",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                ("commit", option_env!("KEYPORT_GIT_COMMIT").unwrap_or("unknown").to_string()),
            ]),
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn families_encode_with_their_labels() {
        let t = super::Telemetry::default();
        t.request("native", "GET", "/keyport/v1/keys/{id}", 404, 0.002);
        t.request("native", "BREW", "/keyport/v1/keys/{id}", 404, 0.002);
        t.token_op("soft", "sign", false);
        t.sync_error("retry");
        let mut r = prometheus_client::registry::Registry::default();
        t.register(&mut r);
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &r).unwrap();
        assert!(
            out.contains(r#"keyport_http_requests_total{face="native",method="GET",route="/keyport/v1/keys/{id}",status="404"} 1"#),
            "{out}"
        );
        assert!(out.contains(r#"method="other""#), "an unknown method is not a label value: {out}");
        assert!(out.contains(r#"keyport_http_request_duration_seconds_count{face="native",route="/keyport/v1/keys/{id}"} 2"#), "{out}");
        assert!(out.contains(r#"keyport_token_operations_total{token="soft",op="sign",result="error"} 1"#), "{out}");
        assert!(out.contains(r#"keyport_sync_errors_total{kind="retry"} 1"#), "{out}");
        assert!(out.contains("keyport_build_info{version=\""), "{out}");
    }
}
