//! What an operator watches: Prometheus metrics (per request, per token operation, the build;
//! a metrics-only listener without authentication that names no namespace), one access-log
//! line per request with a request id answered as `x-request-id`, and the audit log, which
//! records refusals and failures too and is readable by admins (`GET /keyport/v1/audit`,
//! `keyport audit`).

mod common;

use common::{free_port, Daemon};
use serde_json::Value;
use std::process::Command;

/// curl over the socket with the response headers: (status, headers, body).
fn curl_headers(d: &Daemon, method: &str, path: &str, args: &[&str]) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-D", "-", "-o", "-", "--unix-socket"])
        .arg(&d.socket)
        .args(["-X", method])
        .args(args)
        .arg(format!("http://localhost{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn metrics(d: &Daemon) -> String {
    let (s, m) = d.curl("GET", "/keyport/v1/metrics", None, &[]);
    assert_eq!(s, 200, "{m}");
    m.as_str().unwrap_or_default().to_string()
}

#[test]
fn requests_tokens_and_the_build_are_counted() {
    let d = Daemon::start("");
    d.generate("web", "ec-p256", false);
    let (s, _) = d.curl("GET", "/keyport/v1/keys/0011223344556677", None, &[]);
    assert_eq!(s, 404);
    let (s, _) = d.curl("GET", "/no/such/path%22%0a", None, &[]);
    assert_eq!(s, 404);
    let m = metrics(&d);
    assert!(m.contains(r#"keyport_http_requests_total{face="native",method="POST",route="/keyport/v1/keys",status="201"} 1"#), "{m}");
    assert!(m.contains(r#"keyport_http_requests_total{face="native",method="GET",route="/keyport/v1/keys/{id}",status="404"} 1"#), "{m}");
    assert!(m.contains(r#"route="unmatched",status="404"} 1"#), "an unknown path is one label, never the caller's: {m}");
    assert!(!m.contains("no/such"), "{m}");
    assert!(m.contains(r#"keyport_http_request_duration_seconds_bucket{face="native",route="/keyport/v1/keys","#), "{m}");
    assert!(m.contains(r#"keyport_token_operations_total{token="soft",op="probe",result="ok"}"#), "{m}");
    assert!(m.contains(&format!(r#"keyport_build_info{{version="{}""#, env!("CARGO_PKG_VERSION"))), "{m}");
    // The families kept from before prometheus-client.
    assert!(m.contains(r#"keyport_token_up{token="soft"} 1"#) && m.contains(r#"keyport_keys{namespace="default"} 1"#), "{m}");
    assert!(m.contains("\nkeyport_sync_enabled 0\n") && m.contains("\nkeyport_degraded_components 0\n"), "{m}");
}

#[test]
fn the_metrics_listener_needs_no_key_and_names_no_namespace() {
    let port = free_port();
    let d = Daemon::start(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    d.generate("secret-name", "ec-p256", false);
    let (s, v) = d.curl("POST", "/keyport/v1/keys", Some(r#"{"name":"x","algorithm":"ec-p256","namespace":"hidden-ns"}"#), &[]);
    assert_eq!(s, 201, "{v}");
    let out = Command::new("curl").args(["-sS", "-w", "\n%{http_code}"]).arg(format!("http://127.0.0.1:{port}/metrics")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.ends_with("\n200"), "{text}");
    assert!(text.contains("\nkeyport_inventory_keys 2\n") && text.contains(r#"keyport_token_up{token="soft"} 1"#), "{text}");
    assert!(!text.contains("hidden-ns") && !text.contains("default") && !text.contains("secret-name"), "{text}");
    // Only metrics there: the API is not served on that port.
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}/keyport/v1/keys"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
}

#[test]
fn each_request_has_an_id_and_one_access_line() {
    let d = Daemon::start("");
    let (s, head, _) = curl_headers(&d, "GET", "/keyport/v1/health", &["-H", "x-request-id: trace-42.a"]);
    assert_eq!(s, 200);
    assert!(head.contains("x-request-id: trace-42.a\r\n"), "{head}");
    // A caller's id with a newline or quote is not kept: keyport makes its own.
    let (_, head, _) = curl_headers(&d, "GET", "/keyport/v1/health", &["-H", "x-request-id: bad\"id"]);
    let id = head.lines().find_map(|l| l.strip_prefix("x-request-id: ")).expect("an id").trim().to_string();
    assert!(id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    let (s, _, _) = curl_headers(&d, "GET", "/keyport/v1/keys/abc", &["-H", "x-request-id: missing-key-1"]);
    assert_eq!(s, 404);
    let log = d.log();
    let line = log.lines().find(|l| l.contains("missing-key-1")).unwrap_or_else(|| panic!("no access line:\n{log}"));
    for want in ["face=\"native\"", "method=\"GET\"", "route=\"/keyport/v1/keys/{id}\"", "status=404", "principal=\"root\"", "duration_ms="]
    {
        assert!(line.contains(want), "{want} missing: {line}");
    }
    assert!(!line.contains("/keys/abc"), "the raw path is not logged: {line}");
}

#[test]
fn refusals_are_audited_logged_and_listed_for_admins_only() {
    let d = Daemon::start("");
    let key = d.generate("audited", "ec-p256", false);
    let id = key["id"].as_str().unwrap();
    // A wrong API key (401) and a reader asking for the audit log (403).
    let (s, _) = d.curl_https("GET", "/keyport/v1/keys", None, &["-H", "X-Api-Key: wrong"]);
    assert_eq!(s, 401);
    let (s, v) = d.curl_https("GET", "/keyport/v1/audit", None, &["-H", "X-Api-Key: reader-key"]);
    assert_eq!(s, 403, "{v}");
    let (s, v) = d.curl("GET", "/keyport/v1/audit?limit=1000", None, &[]);
    assert_eq!(s, 200, "{v}");
    let entries = v["entries"].as_array().unwrap();
    let denied: Vec<&Value> = entries.iter().filter(|e| e["outcome"] == "denied").collect();
    assert!(denied.iter().any(|e| e["principal"] == "-" && e["detail"].as_str().unwrap().contains("401")), "{v}");
    assert!(
        denied.iter().any(|e| e["principal"] == "reader" && e["detail"].as_str().unwrap().contains("lacks the 'admin' permission")),
        "{v}"
    );
    assert!(entries.iter().any(|e| e["key_id"] == id && e["outcome"] == "ok"), "{v}");
    // Filters and pages.
    let (_, v) = d.curl("GET", &format!("/keyport/v1/audit?key={id}"), None, &[]);
    assert!(v["entries"].as_array().unwrap().iter().all(|e| e["key_id"] == id) && !v["entries"].as_array().unwrap().is_empty(), "{v}");
    let (_, v) = d.curl("GET", "/keyport/v1/audit?principal=reader", None, &[]);
    assert!(v["entries"].as_array().unwrap().iter().all(|e| e["principal"] == "reader"), "{v}");
    let (_, p1) = d.curl("GET", "/keyport/v1/audit?limit=1", None, &[]);
    let before = p1["next_before"].as_i64().expect("a next page");
    let (_, p2) = d.curl("GET", &format!("/keyport/v1/audit?limit=1&before={before}"), None, &[]);
    assert!(p2["entries"][0]["seq"].as_i64().unwrap() < before, "{p2}");
    let (s, v) = d.curl("GET", "/keyport/v1/audit?since=2999-01-01", None, &[]);
    assert_eq!((s, v["entries"].as_array().map(Vec::len)), (200, Some(0)), "{v}");
    let (s, v) = d.curl("GET", "/keyport/v1/audit?since=yesterday", None, &[]);
    assert_eq!(s, 400, "{v}");
    // Each entry also went to the log.
    let log = d.log();
    assert!(
        log.lines().any(|l| l.contains("keyport::audit") && l.contains("outcome=\"denied\"") && l.contains("principal=\"reader\"")),
        "{log}"
    );
    // The CLI, as a script reads it.
    let out = d.command().args(["audit", "--principal", "reader", "--json", "--socket"]).arg(&d.socket).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!v["entries"].as_array().unwrap().is_empty(), "{v}");
    let out = d.command().args(["audit", "--key", id, "--socket"]).arg(&d.socket).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("PRINCIPAL") && text.contains(id), "{text}");
}
