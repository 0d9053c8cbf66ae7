//! SSH keyset rotation next to key generation alone, on one daemon and token, in one run.
//!
//!     cargo bench --bench rotation                   # N=100 keysets, 2 rounds
//!     KEYPORT_BENCH_N=300 KEYPORT_BENCH_ROUNDS=3 cargo bench --bench rotation
//!
//! Generation: `POST /keyport/v1/keys` (Ed25519) one after another over the Unix socket. Rotation:
//! `POST /keyport/v1/keysets/{name}/rotate` for N keysets, then until every one is `complete`:
//! each rotation generates its new version, walks TPP's stages (one fsync'd store transaction
//! per stage), runs a no-op `verify` hook (a fork + exec of `sh`), and swaps the versions; the
//! runner advances `rotation.concurrency` (4) rotations at once.

mod common;

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn curl(socket: &Path, method: &str, path: &str, body: Option<&str>) -> Value {
    let mut c = Command::new("curl");
    c.args(["-sS", "--unix-socket"]).arg(socket).args(["-X", method]);
    if let Some(b) = body {
        c.args(["-H", "content-type: application/json", "--data-binary", b]);
    }
    let out = c.arg(format!("http://localhost{path}")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("rotation: run with `cargo bench --bench rotation`");
        return;
    }
    let n: usize = std::env::var("KEYPORT_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let rounds = common::env_usize("KEYPORT_BENCH_ROUNDS", 2);
    let dir = tempfile::tempdir().unwrap();
    let noop = dir.path().join("noop");
    std::fs::write(&noop, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&noop, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = common::BenchDaemon::start(
        &dir.path().join("daemon"),
        "",
        "",
        &format!("[rotation.namespaces.default]\nhooks = {{ verify = [\"{}\"] }}\n", noop.display()),
    );
    println!("# keyport rotation bench: N={n} keysets, {rounds} rounds, SoftHSM at {}", common::module().display());
    for i in 0..n {
        let v = curl(&d.socket, "POST", "/keyport/v1/keysets", Some(&format!(r#"{{"name":"ks{i}","type":"User","algorithm":"ed25519"}}"#)));
        assert!(v["id"].is_string(), "{v}");
    }
    let mut gen_rates = Vec::new();
    let mut rot_rates = Vec::new();
    for round in 0..rounds {
        let start = Instant::now();
        for i in 0..n {
            let v = curl(&d.socket, "POST", "/keyport/v1/keys", Some(&format!(r#"{{"name":"g{round}-{i}","algorithm":"ed25519"}}"#)));
            assert!(v["id"].is_string(), "{v}");
        }
        let g = n as f64 / start.elapsed().as_secs_f64();
        let start = Instant::now();
        for i in 0..n {
            let v = curl(&d.socket, "POST", &format!("/keyport/v1/keysets/ks{i}/rotate"), None);
            assert!(v["rotation"].is_object(), "{v}");
        }
        loop {
            let v = curl(&d.socket, "GET", "/keyport/v1/keysets", None);
            let ks = v["keysets"].as_array().unwrap();
            let done = ks.iter().filter(|k| k["rotation"]["finished_at"].is_string()).count();
            assert!(ks.iter().all(|k| k["rotation"]["outcome"].is_null() || k["rotation"]["outcome"] == "complete"), "{v}");
            if done == n {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(600), "rotations did not finish: {done}/{n}");
            std::thread::sleep(Duration::from_millis(20));
        }
        let r = n as f64 / start.elapsed().as_secs_f64();
        println!("round {round}: generate {g:.1} keys/s, rotate {r:.1} rotations/s");
        gen_rates.push(g);
        rot_rates.push(r);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (g, r) = (median(&mut gen_rates), median(&mut rot_rates));
    println!(
        "| {n} Ed25519 keysets, no-op verify hook | generate alone {g:.1} keys/s | rotate {r:.1} rotations/s | {:.0} % |",
        100.0 * r / g
    );
}
