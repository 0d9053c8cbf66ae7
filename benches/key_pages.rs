//! `GET /keyport/v1/keys` pages against the size of the store: the time of one page (first,
//! middle, last) with 100, 1,000 and 10,000 keys, next to the unpaginated whole list.
//!
//!     cargo bench --bench key_pages                                   # 100 / 1000 / 10000 keys
//!     KEYPORT_BENCH_SIZES=100,1000,10000,50000 KEYPORT_BENCH_ROUNDS=7 cargo bench --bench key_pages
//!
//! The inventory rows are written straight into the daemon's store (one transaction per 1,000
//! rows) while it is stopped: a page reads only the store, never the token, and generating
//! 10,000 key pairs in SoftHSM would take the bench most of an hour. At start the daemon's
//! reconciliation finds no token objects for them and marks them `missing`; missing keys are
//! listed like any other, so the page does the same work.

mod common;
use common::Conn;

use keyport::store::Store;
use std::path::Path;
use std::time::{Duration, Instant};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("key_pages: run with `cargo bench --bench key_pages`");
        return;
    }
    let sizes: Vec<usize> = common::env_sizes();
    let rounds = common::env_usize("KEYPORT_BENCH_ROUNDS", 5);
    println!("# keyport bench key_pages: sizes {sizes:?}, {rounds} rounds, one keep-alive connection on the Unix socket");
    println!("# {:>6} {:<34} {:>12} {:>22}", "keys", "request", "median", "min-max (per request)");
    for n in sizes {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("daemon");
        // First start: the token, the store and its schema.
        drop(common::BenchDaemon::start(&d, "", "", ""));
        fill(&d.join("state/keyport.db"), n);
        let daemon = common::BenchDaemon::start(&d, "", "", "");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(measure(&daemon.socket, n, rounds));
    }
}

/// `n` inventory rows in namespace `default`, created a microsecond apart.
fn fill(db: &Path, n: usize) {
    let store = Store::open(db).unwrap();
    let base = keyport::clock::Timestamp::now();
    let mut done = 0;
    while done < n {
        let rows: Vec<_> = (done..n.min(done + 1000))
            .map(|i| {
                let id = format!("{:032x}", 0xb000_0000_0000_0000u128 + i as u128);
                keyport::store::fixtures::generated_key(id, format!("bench-{i:06}"), i, base.plus(Duration::from_micros(i as u64)))
            })
            .collect();
        keyport::store::fixtures::commit(&store, &rows);
        done += rows.len();
    }
}

async fn measure(socket: &Path, n: usize, rounds: usize) {
    let mut c = Conn::open(socket).await;
    // The cursors of every page at limit 100: first, middle and last page positions.
    let mut cursors: Vec<Option<String>> = vec![None];
    loop {
        let path = match cursors.last().unwrap() {
            Some(cur) => format!("/keyport/v1/keys?limit=100&cursor={cur}"),
            None => "/keyport/v1/keys?limit=100".into(),
        };
        let (status, body) = c.get(&path).await;
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        match v["next_cursor"].as_str() {
            Some(next) => cursors.push(Some(next.to_string())),
            None => break,
        }
    }
    assert_eq!(cursors.len(), n.div_ceil(100), "pages of 100 over {n} keys");
    let at = |i: usize| cursors[i].as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
    let mid = cursors.len() / 2;
    let last = cursors.len() - 1;
    let cases = [
        ("page of 100, first".to_string(), format!("/keyport/v1/keys?limit=100{}", at(0))),
        ("page of 100, middle".into(), format!("/keyport/v1/keys?limit=100{}", at(mid))),
        ("page of 100, last".into(), format!("/keyport/v1/keys?limit=100{}", at(last))),
        ("page of 1000, first".into(), "/keyport/v1/keys?limit=1000".into()),
        ("whole list, unpaginated".into(), "/keyport/v1/keys".into()),
    ];
    for (label, path) in cases {
        // About 1 s of requests per round at the first size; fewer for the big answers.
        let per_round = if label.contains("whole") { (200_000 / n.max(1)).clamp(3, 200) } else { 100 };
        let mut samples = Vec::new();
        for _ in 0..rounds {
            let start = Instant::now();
            for _ in 0..per_round {
                assert_eq!(c.get(&path).await.0, 200);
            }
            samples.push(start.elapsed() / per_round as u32);
        }
        samples.sort();
        println!(
            "  {:>6} {:<34} {:>10.0} µs {:>10.0}-{:.0} µs",
            n,
            label,
            samples[samples.len() / 2].as_secs_f64() * 1e6,
            samples[0].as_secs_f64() * 1e6,
            samples[samples.len() - 1].as_secs_f64() * 1e6
        );
    }
}
