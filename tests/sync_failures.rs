//! Sync when things go wrong, against a real OpenBao dev server: the vault sealed, rate-limited,
//! or restarted empty during a sync, keyport killed with SIGKILL between the vault's answer and
//! the store commit, and a key replaced under the same name. In every case each key arrives in
//! the vault exactly once (`latest_version` stays 1), or as exactly one new version.

mod common;
use common::bao::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn transit(bao: &Bao, vault_name: &str) -> Value {
    let (s, v) = bao.call("GET", &format!("transit/keys/{vault_name}"), None);
    assert_eq!(s, 200, "{vault_name}: {v}");
    v["data"].clone()
}

/// The SPKI fingerprint of a transit key version's public key (PEM for RSA and EC).
fn version_fingerprint(data: &Value, version: u32) -> String {
    let pem = data["keys"][version.to_string()]["public_key"].as_str().unwrap();
    format!("sha256:{}", sha256_hex_bytes(&pem_der(pem)))
}

#[test]
fn a_sealed_vault_holds_the_backlog_until_it_is_unsealed() {
    tools();
    let work = tempfile::tempdir().unwrap();
    let bao = Bao::start(work.path());
    let d = daemon(&bao, "");
    let key = d.generate("sealed-wait", "rsa-2048", true);
    let (s, v) = bao.call("POST", "sys/seal", None);
    assert_eq!(s, 204, "{v}");

    let st = sync_now(&d);
    let ks = key_status(&st, "sealed-wait");
    assert_eq!(ks["status"], "pending", "{ks}");
    assert!(ks["last_error"].as_str().unwrap().contains("sealed"), "{ks}");
    assert!(st["last_pass"]["stopped"].as_str().unwrap().contains("sealed"), "{st}");
    // Imports keep working while the vault is sealed.
    d.generate("while-sealed", "ec-p256", true);
    let (s, m) = d.curl("GET", "/keyport/v1/metrics", None, &[]);
    let m = m.as_str().unwrap_or_default().to_string();
    assert_eq!(s, 200, "{m}");
    assert!(m.contains("\nkeyport_sync_backlog_rows 2\n") && m.contains("keyport_sync_keys{status=\"pending\"} 2"), "{m}");
    assert!(m.contains("keyport_token_up{token=\"soft\"} 1") && m.contains("keyport_keys{namespace=\"default\"} 2"), "{m}");
    // Per-namespace counts follow read permission: `reader` (read on `default` only) does not
    // see a key in `other`; the global backlog gauge carries no names and stays whole.
    let (s, v) = d.curl(
        "POST",
        "/keyport/v1/keys",
        Some(r#"{"name":"x","algorithm":"ec-p256","namespace":"other"}"#),
        &["-H", "content-type: application/json"],
    );
    assert!(s == 200 || s == 201, "{s} {v}");
    let (_, m) = d.curl("GET", "/keyport/v1/metrics", None, &[]);
    let m = m.as_str().unwrap_or_default().to_string();
    assert!(m.contains("keyport_keys{namespace=\"other\"} 1"), "{m}");
    let (s, m) = d.curl_https("GET", "/keyport/v1/metrics", None, &["-H", "X-Api-Key: reader-key"]);
    let m = m.as_str().unwrap_or_default().to_string();
    assert_eq!(s, 200, "{m}");
    assert!(m.contains("keyport_keys{namespace=\"default\"} 2") && !m.contains("namespace=\"other\""), "{m}");
    assert!(m.contains("\nkeyport_sync_backlog_rows 2\n") && m.contains("keyport_sync_keys{status=\"pending\"} 2"), "{m}");

    let (s, v) = bao.call("POST", "sys/unseal", Some(json!({"key": bao.unseal_key()})));
    assert_eq!((s, &v["sealed"]), (200, &json!(false)), "{v}");
    let st = sync_now(&d);
    assert_eq!(st["backlog"], 0, "{st}\n{}", d.log());
    check_in_transit(&bao, work.path(), "h1-default.sealed-wait", &key);
    assert_eq!(transit(&bao, "h1-default.while-sealed")["latest_version"], 1);
    let (_, m) = d.curl("GET", "/keyport/v1/metrics", None, &[]);
    let m = m.as_str().unwrap_or_default().to_string();
    assert!(m.contains("\nkeyport_sync_backlog_rows 0\n") && m.contains("keyport_sync_oldest_pending_age_seconds 0\n"), "{m}");
    assert!(m.contains("keyport_sync_keys{status=\"synced\"} 2") && m.contains("keyport_sync_last_pass_timestamp_seconds "), "{m}");
}

#[test]
fn a_rate_limited_vault_is_retried_on_schedule_and_gets_each_key_once() {
    tools();
    let work = tempfile::tempdir().unwrap();
    let bao = Bao::start(work.path());
    let d = daemon(&bao, "");
    let names = ["rl-a", "rl-b", "rl-c"];
    for n in names {
        d.generate(n, "ec-p256", true);
    }
    let (s, v) = bao.call("POST", "sys/quotas/config", Some(json!({"enable_rate_limit_response_headers": true})));
    assert_eq!(s, 204, "{v}");
    let (s, v) = bao.call("POST", "sys/quotas/rate-limit/keyport-test", Some(json!({"path": "transit/", "rate": 2, "interval": "1s"})));
    assert_eq!(s, 204, "{v}");

    // keyport paces itself to the quota (X-Ratelimit-Limit) and waits out a 429, so the pass
    // may finish; if the quota stopped it, the waiting keys say when they are tried again.
    let st = sync_now(&d);
    let limited: Vec<&Value> = st["keys"].as_array().unwrap().iter().filter(|k| k["status"] == "pending").collect();
    if !limited.is_empty() {
        assert!(st["last_pass"]["stopped"].as_str().unwrap().contains("rate-limits"), "{st}");
        assert!(limited.iter().all(|k| k["next_attempt_at"].is_string()), "{st}");
    }
    assert!(st["keys"].as_array().unwrap().iter().all(|k| k["status"] != "failed" && k["attempts"] == 0), "{st}");

    // The quota goes; the worker's own backoff (retry_base_secs = 1) finishes the job: no
    // `sync now`.
    let (s, v) = bao.call("DELETE", "sys/quotas/rate-limit/keyport-test", None);
    assert_eq!(s, 204, "{v}");
    let start = Instant::now();
    loop {
        let (_, st) = d.curl("GET", "/keyport/v1/sync", None, &[]);
        if st["backlog"] == 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the backlog did not drain on its own: {st}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    for n in names {
        assert_eq!(transit(&bao, &format!("h1-default.{n}"))["latest_version"], 1, "{n} imported once");
    }
}

#[test]
fn sigkill_after_the_vault_answered_never_doubles_a_key() {
    tools();
    let work = tempfile::tempdir().unwrap();
    let bao = Bao::start(work.path());
    let mut d = daemon(&bao, "");
    let keys = [d.generate("crash-a", "ec-p256", true), d.generate("crash-b", "rsa-2048", true)];
    assert!(d.stop().success());

    // Restart with the hook that pauses after the vault confirmed, before the outbox row goes.
    d.env.push(("KEYPORT_TEST_PAUSE_BEFORE_COMMIT_MS".into(), "60000".into()));
    d.spawn();
    let (s, v) = d.curl("POST", "/keyport/v1/sync", None, &[]);
    assert_eq!(s, 202, "{v}");
    let start = Instant::now();
    while !d.log().contains("pausing before recording the vault's confirmation") {
        assert!(start.elapsed() < Duration::from_secs(60), "{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    d.kill9();
    assert_eq!(transit(&bao, "h1-default.crash-a")["latest_version"], 1, "the vault has the first key");

    d.env.clear();
    d.spawn();
    let st = sync_now(&d);
    assert_eq!(st["backlog"], 0, "{st}\n{}", d.log());
    for (n, k) in ["crash-a", "crash-b"].iter().zip(&keys) {
        assert_eq!(key_status(&st, n)["status"], "synced");
        check_in_transit(&bao, work.path(), &format!("h1-default.{n}"), k);
    }
}

#[test]
fn a_vault_that_lost_its_data_gets_the_synced_keys_and_certificates_again() {
    tools();
    let work = tempfile::tempdir().unwrap();
    let mut bao = Bao::start(work.path());
    let d = daemon(&bao, "");
    let key = d.generate("lost", "ec-p256", true);
    let cert = import_with_certificate(&d, "lost-cert");
    let st = sync_now(&d);
    assert_eq!(st["backlog"], 0, "{st}");

    // A dev vault keeps everything in memory: a restart is a vault that lost its data.
    bao.kill();
    bao.spawn();
    let st = sync_now(&d);
    assert_eq!(st["backlog"], 0, "{st}\n{}", d.log());
    assert!(d.log().contains("no longer holds a synced key"), "{}", d.log());
    check_in_transit(&bao, work.path(), "h1-default.lost", &key);
    if let Some(sha) = cert {
        // Imported keys are non-exportable: the key stays in the token, its certificate is in KV.
        assert_eq!(key_status(&st, "lost-cert")["status"], "not_syncable");
        let (s, v) = bao.call("GET", "secret/data/keyport/h1/certs/default/lost-cert", None);
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["data"]["data"]["fingerprint_sha256"], sha.as_str());
    }

    // Nothing lost: the check pushes nothing.
    let st = sync_now(&d);
    assert_eq!(st["last_pass"]["pushed"], 0, "{st}");
}

#[test]
fn a_new_key_under_a_synced_name_becomes_a_new_vault_version() {
    tools();
    let work = tempfile::tempdir().unwrap();
    let bao = Bao::start(work.path());
    let d = daemon(&bao, "");
    let old = d.generate("rotated", "ec-p256", true);
    sync_now(&d);
    let (s, v) = d.curl("DELETE", &format!("/keyport/v1/keys/{}", old["id"].as_str().unwrap()), None, &[]);
    assert!(s == 200 || s == 204, "{s} {v}");
    let new = d.generate("rotated", "ec-p256", true);
    let st = sync_now(&d);
    assert_eq!(st["backlog"], 0, "{st}\n{}", d.log());

    let data = transit(&bao, "h1-default.rotated");
    assert_eq!(data["latest_version"], 2, "import_version added exactly one version: {data}");
    assert_eq!(version_fingerprint(&data, 1), old["fingerprint"].as_str().unwrap());
    assert_eq!(version_fingerprint(&data, 2), new["fingerprint"].as_str().unwrap());
    // A second pass leaves it alone.
    sync_now(&d);
    assert_eq!(transit(&bao, "h1-default.rotated")["latest_version"], 2);
}

/// A proxy in front of OpenBao that answers the first `fail` transit imports with a 500 whose
/// message is no known client mistake (OpenBao gives no way to provoke a passing 500 on
/// demand), and forwards everything else.
const FLAKY_PROXY: &str = r#"
import http.client, http.server, sys, threading
listen, upstream, fail = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def handle_one(self):
        global fail
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        with lock:
            flaky = self.command == "POST" and self.path.endswith("/import") and fail > 0
            if flaky: fail -= 1
        if flaky:
            out = b'{"errors":["1 error occurred:\\n\\t* internal error: storage backend hiccup\\n\\n"]}'
            self.send_response(500); self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out))); self.end_headers(); self.wfile.write(out); return
        c = http.client.HTTPConnection("127.0.0.1", upstream, timeout=30)
        c.request(self.command, self.path, body=body, headers={k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")})
        r = c.getresponse(); out = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"): self.send_header(k, v)
        self.send_header("content-length", str(len(out))); self.end_headers(); self.wfile.write(out); c.close()
    do_GET = do_POST = do_PUT = do_DELETE = do_LIST = handle_one
http.server.ThreadingHTTPServer(("127.0.0.1", listen), H).serve_forever()
"#;

#[test]
fn an_unknown_500_is_retried_for_the_key_not_parked() {
    tools();
    common::require("python3");
    let work = tempfile::tempdir().unwrap();
    let bao = Bao::start(work.path());
    let port = common::free_port();
    let mut proxy =
        std::process::Command::new("python3").args(["-c", FLAKY_PROXY, &port.to_string(), &bao.port.to_string(), "1"]).spawn().unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "the proxy did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let front = Bao { port, dir: work.path().to_path_buf(), child: None, tls_dir: None };
    let d = daemon(&front, "");
    let key = d.generate("flaky", "ec-p256", true);
    d.generate("steady", "ec-p256", true);

    let st = sync_now(&d);
    let ks = key_status(&st, "flaky");
    assert_eq!(ks["status"], "pending", "a passing vault fault is not a permanent failure: {ks}\n{st}");
    assert!(ks["last_error"].as_str().unwrap().contains("storage backend hiccup"), "{ks}");
    assert!(ks["next_attempt_at"].is_string(), "{ks}");
    assert!(st["last_pass"]["stopped"].is_null(), "one key's 500 does not stop the pass: {st}");
    assert_eq!(key_status(&st, "steady")["status"], "synced", "the next key went on: {st}");

    // No `sync now`: the key's backoff (retry_base_secs = 1) brings it in.
    let start = Instant::now();
    loop {
        let (_, st) = d.curl("GET", "/keyport/v1/sync", None, &[]);
        if st["backlog"] == 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the 500 parked the key: {st}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    check_in_transit(&bao, work.path(), "h1-default.flaky", &key);
    assert_eq!(transit(&bao, "h1-default.flaky")["latest_version"], 1);
    assert_eq!(transit(&bao, "h1-default.steady")["latest_version"], 1);
    let _ = proxy.kill();
    let _ = proxy.wait();
}

/// A key whose KV record write failed carries a note until the record is there. Whether the
/// record later appears by an unseen write that landed (a leader killed after it stored the write)
/// or is written by the lost-data check, the next check clears the note; a key in transit is
/// never imported twice for it.
#[test]
fn a_missing_kv_record_note_clears_once_the_record_is_there() {
    let work = tempfile::tempdir().unwrap();
    let bao = Bao::start(work.path());
    let mut d = daemon(&bao, "");
    let policy = r#"
        path "transit/*" { capabilities = ["create", "read", "update", "list"] }
        path "secret/data/*" { capabilities = ["read", "list"] }
        path "secret/metadata/*" { capabilities = ["read", "list"] }
    "#;
    let (s, v) = bao.call("POST", "sys/policies/acl/no-kv-write", Some(json!({ "policy": policy })));
    assert_eq!(s, 204, "{v}");
    let (s, v) = bao.call("POST", "auth/token/create", Some(json!({"policies": ["no-kv-write"], "ttl": "1h"})));
    assert_eq!(s, 200, "{v}");
    assert!(d.stop().success());
    std::fs::write(d.dir.path().join("vault.token"), v["auth"]["client_token"].as_str().unwrap()).unwrap();
    d.spawn();
    d.generate("landed", "ec-p256", true);
    d.generate("later", "ec-p256", true);
    let st = sync_now(&d);
    for name in ["landed", "later"] {
        let k = key_status(&st, name);
        assert_eq!(k["status"], "synced", "{k}");
        assert!(k["detail"].as_str().unwrap_or_default().contains("is not written yet"), "{k}\n{}", d.log());
    }

    // The write of 'landed' got through after all (as root here): the check sees it and the
    // note goes, without another write.
    let (s, v) = bao.call("POST", "secret/data/keyport/h1/keys/default/landed", Some(json!({"data": {"namespace": "default"}})));
    assert_eq!(s, 200, "{v}");
    let st = sync_now(&d);
    assert!(key_status(&st, "landed")["detail"].is_null(), "{st}\n{}", d.log());
    assert!(key_status(&st, "later")["detail"].as_str().is_some(), "still no record: {st}");

    // The vault takes writes again: the check writes 'later''s record and its note goes too.
    assert!(d.stop().success());
    std::fs::write(d.dir.path().join("vault.token"), format!("{ROOT_TOKEN}\n")).unwrap();
    d.spawn();
    let st = sync_now(&d);
    assert_eq!(st["backlog"], 0, "{st}");
    for name in ["landed", "later"] {
        assert!(key_status(&st, name)["detail"].is_null(), "{st}\n{}", d.log());
        assert_eq!(transit(&bao, &format!("h1-default.{name}"))["latest_version"], 1, "{name} imported once");
    }
    let (s, v) = bao.call("GET", "secret/data/keyport/h1/keys/default/later", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["data"]["name"], "later", "{v}");
}
