//! keyport against the physical limit: the same operations through the daemon (HTTP over the
//! Unix socket, keep-alive connections) and directly through cryptoki on a SoftHSM token, in
//! one run on one machine.
//!
//!     cargo bench --bench token_vs_daemon            # N=200 keys, 2 workers
//!     KEYPORT_BENCH_N=500 cargo bench --bench token_vs_daemon
//!     KEYPORT_BENCH_WORKERS=8 cargo bench --bench token_vs_daemon   # 8 threads / 8 connections
//!
//! Prints one line per figure; BENCHMARKS.md records them with the command.

mod common;
use common::module;
use common::Conn;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType};
use std::path::Path;
use std::time::{Duration, Instant};

/// Threads on the raw side, keep-alive connections (and token sessions) on keyport's side:
/// 2 unless `KEYPORT_BENCH_WORKERS` says otherwise.
fn workers() -> usize {
    std::env::var("KEYPORT_BENCH_WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2)
}

fn main() {
    // `cargo test --all-targets` runs harness-less benches as plain binaries: compile-check
    // only. `cargo bench` passes --bench.
    if !std::env::args().any(|a| a == "--bench") {
        println!("token_vs_daemon: run with `cargo bench --bench token_vs_daemon`");
        return;
    }
    let n: usize = std::env::var("KEYPORT_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    println!("# keyport bench: N={n}, {} workers, SoftHSM at {}", workers(), module().display());
    raw(dir.path(), n);
    daemon(dir.path(), n);
}

fn report(what: &str, count: usize, elapsed: Duration) {
    println!("{what:<58} {:>9.1} /s  ({count} in {:.2} s)", count as f64 / elapsed.as_secs_f64(), elapsed.as_secs_f64());
}

/// Directly through cryptoki: one session per worker thread, like the token layer.
fn raw(dir: &Path, n: usize) {
    let (p, slot, s0) = common::raw_token(dir);

    for (alg, params) in
        [("ec-p256", vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]), ("ed25519", vec![0x06, 0x03, 0x2b, 0x65, 0x70])]
    {
        let start = Instant::now();
        std::thread::scope(|sc| {
            for w in 0..workers() {
                let (p, params) = (p.clone(), params.clone());
                sc.spawn(move || {
                    let s = p.open_rw_session(slot).unwrap();
                    let mech = if alg == "ed25519" { Mechanism::EccEdwardsKeyPairGen } else { Mechanism::EccKeyPairGen };
                    for i in (w..n).step_by(workers()) {
                        let id = format!("{alg}-{i}").into_bytes();
                        let public = [
                            Attribute::Token(true),
                            Attribute::Private(false),
                            Attribute::Id(id.clone()),
                            Attribute::EcParams(params.clone()),
                            Attribute::Verify(true),
                        ];
                        let private = [
                            Attribute::Token(true),
                            Attribute::Private(true),
                            Attribute::Sensitive(true),
                            Attribute::Extractable(false),
                            Attribute::Id(id),
                            Attribute::Sign(true),
                        ];
                        s.generate_key_pair(&mech, &public, &private).unwrap();
                    }
                });
            }
        });
        report(&format!("raw cryptoki: generate {alg} key pair (token objects)"), n, start.elapsed());
    }
    // The lookup a daemon without an index would make per request: C_FindObjects by CKA_ID.
    let count = n.min(200);
    let start = Instant::now();
    for i in 0..count {
        let id = format!("ec-p256-{i}").into_bytes();
        let h = s0.find_objects(&[Attribute::Id(id)]).unwrap();
        assert_eq!(h.len(), 2);
    }
    report(&format!("raw cryptoki: C_FindObjects by CKA_ID ({} objects)", 4 * n), count, start.elapsed());
    // Reading one public key's attributes by handle: the floor for "show a key".
    let h = s0.find_objects(&[Attribute::Id(b"ec-p256-0".to_vec())]).unwrap()[0];
    let reads = 20_000;
    let start = Instant::now();
    for _ in 0..reads {
        s0.get_attributes(h, &[AttributeType::Label, AttributeType::Id]).unwrap();
    }
    report("raw cryptoki: C_GetAttributeValue by cached handle", reads, start.elapsed());
    common::close_raw_token(p);
}

/// Through the daemon: `keyport serve` (release build) on its own token, over the Unix socket.
fn daemon(dir: &Path, n: usize) {
    let daemon = common::BenchDaemon::start(&dir.join("daemon"), "", &format!("sessions = {}", workers()), "");
    let socket = daemon.socket.clone();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        for alg in ["ec-p256", "ed25519"] {
            let start = Instant::now();
            let tasks: Vec<_> = (0..workers())
                .map(|w| {
                    let socket = socket.clone();
                    tokio::spawn(async move {
                        let mut c = Conn::open(&socket).await;
                        for i in (w..n).step_by(workers()) {
                            let body = format!(r#"{{"name":"{alg}-{i}","algorithm":"{alg}"}}"#);
                            assert_eq!(c.request("POST", "/keyport/v1/keys", body).await.0, 201);
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            report(&format!("daemon: POST /keyport/v1/keys {alg} (socket, {} conns)", workers()), n, start.elapsed());
        }
        for (path, count) in [("/keyport/v1/keys?name=ec-p256-7", 5000), ("/keyport/v1/keys", 200)] {
            let start = Instant::now();
            let tasks: Vec<_> = (0..workers())
                .map(|_| {
                    let socket = socket.clone();
                    tokio::spawn(async move {
                        let mut c = Conn::open(&socket).await;
                        for _ in 0..count / workers() {
                            assert_eq!(c.get(path).await.0, 200);
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            let label = if path.contains('?') {
                "daemon: GET keys?name= (one key)".to_string()
            } else {
                format!("daemon: GET keys (all {} keys)", 2 * n)
            };
            report(&format!("{label} (socket, {} conns)", workers()), count, start.elapsed());
        }
    });
}
