//! `GET /keyport/v1/keys/{id}` with 64 concurrent clients, next to a minimal hyper server
//! answering the same JSON from memory on the same kind of socket, in the same run.
//!
//!     cargo bench --bench key_get                       # 64 clients, 5 rounds of 3 s each side
//!     KEYPORT_BENCH_CLIENTS=64 KEYPORT_BENCH_ROUNDS=7 KEYPORT_BENCH_SECS=5 cargo bench --bench key_get
//!
//! Each client is one keep-alive HTTP/1.1 connection on a Unix socket sending the next request
//! when the last answer is read. The baseline is the floor for any daemon on this transport:
//! hyper's HTTP/1 server on tokio (2 worker threads, like keyport on 2 cores), no routing, no
//! authentication, no store. Rounds alternate between the two so the machine's load drifts
//! over both alike.

mod common;
use common::Conn;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("key_get: run with `cargo bench --bench key_get`");
        return;
    }
    let clients = common::env_usize("KEYPORT_BENCH_CLIENTS", 64);
    let rounds = common::env_usize("KEYPORT_BENCH_ROUNDS", 5);
    let secs = common::env_usize("KEYPORT_BENCH_SECS", 3) as u64;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let dir = tempfile::tempdir().unwrap();
    let daemon = common::BenchDaemon::start(&dir.path().join("daemon"), "", "", "");
    let client_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    // One key; its JSON is what the baseline answers.
    let (path, body) = client_rt.block_on(async {
        let (s, v) = keyport::cli::request(
            &daemon.socket,
            "POST",
            "/keyport/v1/keys",
            Some(serde_json::json!({"name": "get-bench", "algorithm": "ec-p256"})),
        )
        .await
        .unwrap();
        assert_eq!(s, 201, "{v}");
        let path = format!("/keyport/v1/keys/{}", v["id"].as_str().unwrap());
        let mut c = Conn::open(&daemon.socket).await;
        let (s, body) = c.get(&path).await;
        assert_eq!(s, 200);
        (path, body)
    });
    let baseline_sock = dir.path().join("baseline.sock");
    let server = baseline_server(&baseline_sock, body.clone());

    println!("# keyport bench key_get: {clients} clients, {rounds} rounds of {secs} s per side, {} byte answer, {cores} cores", body.len());
    let (mut base, mut kp, mut ratio) = (vec![], vec![], vec![]);
    for r in 0..rounds {
        let b = client_rt.block_on(load(&baseline_sock, &path, clients, Duration::from_secs(secs)));
        let k = client_rt.block_on(load(&daemon.socket, &path, clients, Duration::from_secs(secs)));
        eprintln!("round {r}: baseline {b:.0} /s, keyport {k:.0} /s");
        base.push(b);
        kp.push(k);
        ratio.push(k / b);
    }
    let show = |label: &str, v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        println!("{label:<52} {:>10.2} (min {:.2}, max {:.2})", s[s.len() / 2], s[0], s[s.len() - 1]);
    };
    show("minimal hyper server, same JSON from memory, req/s", &base);
    show("keyport GET /keyport/v1/keys/{id}, req/s", &kp);
    show("keyport / baseline (per round)", &ratio);
    drop(server);
}

/// hyper's HTTP/1 server on its own 2-thread runtime, answering `body` to every request.
fn baseline_server(sock: &Path, body: Bytes) -> tokio::runtime::Runtime {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = rt.block_on(async { tokio::net::UnixListener::bind(sock).unwrap() });
    rt.spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let body = body.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
                    let body = body.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder().header("content-type", "application/json").body(Full::new(body)).unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    rt
}

/// `clients` connections sending GET `path` for `dur`; answers per second.
async fn load(sock: &Path, path: &str, clients: usize, dur: Duration) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let sock: PathBuf = sock.to_path_buf();
    for _ in 0..clients {
        let (stop, done, sock, path) = (stop.clone(), done.clone(), sock.clone(), path.to_string());
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(&sock).await;
            while !stop.load(Ordering::Relaxed) {
                let (s, _) = c.get(&path).await;
                assert_eq!(s, 200);
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Warm-up: every connection open and answered once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (n0, t0) = (done.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(dur).await;
    let rate = (done.load(Ordering::Relaxed) - n0) as f64 / t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    rate
}
