//! A fleet of N simulated hosts against one real OpenBao three-node Raft cluster
//! (tests/common/raft.rs), each host sending what a keyport pass sends, to check the capacity
//! rule of docs/operations.md ("Fleet capacity") against measured figures.
//!
//!     cargo bench --bench fleet                                  # 1,000 and 10,000 hosts, 5 runs each
//!     KEYPORT_FLEET_HOSTS=1000 KEYPORT_BENCH_ROUNDS=3 KEYPORT_FLEET_CHANGE_EVERY=5 cargo bench --bench fleet
//!
//! One pass of host `h`: its lost-data check (a LIST of its range of transit names and a LIST
//! of its KV key-record folder: what `sync::verify` sends, whatever the number of keys) and,
//! for one host in `KEYPORT_FLEET_CHANGE_EVERY` (5: r = 0.2 changed keys per host per pass),
//! one new key: the six calls keyport makes (transit read, BYOK import, read back, KV record
//! read, check-and-set write, metadata), the ciphertext wrapped in software beforehand. Every
//! pass starts at once (the worst case; the schedule spreads them over the interval) and
//! `KEYPORT_FLEET_CONNECTIONS` (32) passes run at a time, all to the active node, as keyport
//! sends its writes. Measured at the client: writes/s at the active node over the run, the
//! write latency p50/p99, and the time until every pass is done (converged).

mod common;
#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod tests_common;

use base64::Engine;
use rsa::pkcs8::DecodePublicKey;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("fleet: run with `cargo bench --bench fleet`");
        return;
    }
    let sizes: Vec<usize> = std::env::var("KEYPORT_FLEET_HOSTS")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1000, 10_000]);
    let rounds = common::env_usize("KEYPORT_BENCH_ROUNDS", 5);
    let every = common::env_usize("KEYPORT_FLEET_CHANGE_EVERY", 5).max(1);
    let conns = common::env_usize("KEYPORT_FLEET_CONNECTIONS", 32);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let c = tests_common::raft::Cluster::start();
    let leader = c.leader();
    let address = c.address(leader);
    let token = c.root_token.clone();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!(
        "# keyport bench fleet: OpenBao Raft cluster of 3 on loopback, {conns} connections to the active node, one new key per {every} hosts per pass, {rounds} runs, {cores} cores"
    );
    for n in sizes {
        let mut runs = Vec::new();
        for r in 0..rounds {
            let wrapped = rt.block_on(wrap_keys(&address, &token, n.div_ceil(every)));
            let run = rt.block_on(fleet(&address, &token, &format!("s{n}r{r}"), n, every, conns, wrapped));
            eprintln!(
                "{n} hosts run {r}: converged {:.1} s, {} writes at {:.1}/s, {} reads, write p50 {:.0} ms p99 {:.0} ms",
                run.converge, run.writes, run.writes_per_s, run.reads, run.p50_ms, run.p99_ms
            );
            runs.push(run);
        }
        report(n, every, &runs);
    }
}

struct Run {
    converge: f64,
    writes: usize,
    reads: usize,
    writes_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn report(n: usize, every: usize, runs: &[Run]) {
    let med = |f: &dyn Fn(&Run) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let show = |label: &str, (m, lo, hi): (f64, f64, f64)| println!("  {n:>6} hosts {label:<40} {m:>10.1} (min {lo:.1}, max {hi:.1})");
    show("time to converge, s", med(&|r| r.converge));
    show("writes/s at the active node", med(&|r| r.writes_per_s));
    show("write latency p50, ms", med(&|r| r.p50_ms));
    show("write latency p99, ms", med(&|r| r.p99_ms));
    show("requests per host per pass", med(&|r| (r.reads + r.writes) as f64 / n as f64));
    // The rule: hosts ≤ W × interval / (2 × 3 × r). With W the measured rate, the interval
    // it asks for these N hosts, next to the time the fleet needed at once.
    let (w, _, _) = med(&|r| r.writes_per_s);
    let r = 1.0 / every as f64;
    let interval = n as f64 * 2.0 * 3.0 * r / w;
    let (conv, _, _) = med(&|r| r.converge);
    println!(
        "  {n:>6} hosts capacity rule with W = {w:.1}/s, r = {r:.2}: interval ≥ {interval:.1} s; the fleet converged at once in {conv:.1} s ({})",
        if conv <= interval { "within it: the rule holds" } else { "longer: the rule is too generous here" }
    );
}

/// `count` P-256 keys wrapped for the cluster's transit mount (import bodies).
async fn wrap_keys(address: &str, token: &str, count: usize) -> Vec<Value> {
    use p256::pkcs8::EncodePrivateKey;
    let vault = keyport::sync::http::Http::new(address, None).unwrap();
    let r = vault.request("GET", "/v1/transit/wrapping_key", Some(token), None).await.unwrap();
    let wrapping = rsa::RsaPublicKey::from_public_key_pem(r.body["data"]["public_key"].as_str().unwrap()).unwrap();
    let mut rng = rand::rngs::OsRng;
    (0..count)
        .map(|_| {
            let pkcs8 = p256::SecretKey::random(&mut rng).to_pkcs8_der().unwrap();
            let aes: [u8; 32] = rand::random();
            let body = aes_kw::KekAes256::new(&aes.into()).wrap_with_padding_vec(pkcs8.as_bytes()).unwrap();
            let head = wrapping.encrypt(&mut rng, rsa::Oaep::new::<sha2::Sha256>(), &aes).unwrap();
            let ct = base64::engine::general_purpose::STANDARD.encode([head, body].concat());
            json!({"ciphertext": ct, "hash_function": "SHA256", "type": "ecdsa-p256", "exportable": false, "allow_rotation": false})
        })
        .collect()
}

/// Every host's pass, `conns` at a time.
async fn fleet(address: &str, token: &str, tag: &str, n: usize, every: usize, conns: usize, wrapped: Vec<Value>) -> Run {
    let next = Arc::new(AtomicUsize::new(0));
    let wrapped = Arc::new(wrapped);
    let writes: Arc<Mutex<Vec<(f64, f64)>>> = Arc::default(); // (end since start, latency)
    let reads = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (next, wrapped, writes, reads) = (next.clone(), wrapped.clone(), writes.clone(), reads.clone());
        let (address, token, tag) = (address.to_string(), token.to_string(), tag.to_string());
        tasks.push(tokio::spawn(async move {
            let vault = keyport::sync::http::Http::new(&address, None).unwrap();
            loop {
                let h = next.fetch_add(1, Ordering::Relaxed);
                if h >= n {
                    break;
                }
                let host = format!("{tag}h{h:05}");
                let call = async |method: &str, path: String, body: Option<Value>, ok: &[u16]| {
                    let t = Instant::now();
                    let r = vault.request(method, &path, Some(&token), body.as_ref()).await.unwrap();
                    assert!(ok.contains(&r.status), "{method} {path}: {} {}", r.status, r.body);
                    if method == "POST" {
                        writes.lock().unwrap().push((start.elapsed().as_secs_f64(), t.elapsed().as_secs_f64()));
                    } else {
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                };
                // The lost-data check: two lists, whatever the number of keys.
                call("GET", format!("/v1/transit/keys?list=true&limit=1000&after={host}-"), None, &[200, 404]).await;
                call("GET", format!("/v1/secret/metadata/keyport/{host}/keys/default/?list=true&limit=1000"), None, &[200, 404]).await;
                if h % every == 0 {
                    let name = format!("{host}-default.k0");
                    let kv = format!("keyport/{host}/keys/default/k0");
                    call("GET", format!("/v1/transit/keys/{name}"), None, &[404]).await;
                    call("POST", format!("/v1/transit/keys/{name}/import"), Some(wrapped[h / every].clone()), &[204]).await;
                    call("GET", format!("/v1/transit/keys/{name}"), None, &[200]).await;
                    call("GET", format!("/v1/secret/data/{kv}"), None, &[404]).await;
                    call("POST", format!("/v1/secret/data/{kv}"), Some(json!({"options": {"cas": 0}, "data": {"host": host}})), &[200])
                        .await;
                    call("POST", format!("/v1/secret/metadata/{kv}"), Some(json!({"custom_metadata": {"host": host}})), &[204]).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let converge = start.elapsed().as_secs_f64();
    let w = writes.lock().unwrap().clone();
    let mut lat: Vec<f64> = w.iter().map(|(_, l)| *l).collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or(f64::NAN) * 1e3;
    let span = w.iter().map(|(e, _)| *e).fold(0.0, f64::max);
    Run {
        converge,
        writes: w.len(),
        reads: reads.load(Ordering::Relaxed),
        writes_per_s: w.len() as f64 / span,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
    }
}
