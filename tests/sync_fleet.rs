//! A fleet against a real three-node OpenBao Raft cluster whose nodes audit every request
//! (tests/common/raft.rs, `start_audited`): what keyport sends is counted at the vault, not by
//! keyport. An idle pass writes nothing; a fleet of keyport daemons (each its own SoftHSM
//! token and host name) syncing at once converges with every key in transit exactly once.
//!
//!     cargo test --test sync_fleet                                   # 10 hosts × 5 keys
//!     KEYPORT_FLEET_HOSTS=50 cargo test --release --test sync_fleet fleet -- --nocapture

mod common;
use common::raft::*;
use common::Daemon;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn status(d: &Daemon) -> Value {
    let (s, v) = d.curl("GET", "/keyport/v1/sync", None, &[]);
    assert_eq!(s, 200, "{v}");
    v
}

/// `sync now`, waiting for the pass.
fn sync_now(d: &Daemon) -> Value {
    let (s, v) = d.curl("POST", "/keyport/v1/sync", Some(r#"{"wait_secs": 120}"#), &[]);
    assert_eq!(s, 200, "{v}\n{}", d.log());
    v
}

fn converged(st: &Value, keys: usize) -> bool {
    st["backlog"] == 0
        && st["keys"].as_array().is_some_and(|k| k.len() == keys && k.iter().all(|k| k["status"] == "synced" && k["detail"].is_null()))
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn an_idle_pass_sends_the_vault_reads_only() {
    let mut g = shared_audited();
    let c = g.as_mut().unwrap();
    let d = c.daemon("idle", &c.addresses(), "");
    for i in 0..20 {
        d.generate(&format!("k{i:02}"), "ec-p256", true);
    }
    d.generate("local", "ec-p256", false); // not syncable: never sent

    let mark = c.audit_mark();
    sync_now(&d);
    let st = status(&d);
    assert_eq!(st["host"], "idle");
    assert!(st["slot_secs"].as_u64().unwrap() < 3600, "the host's slot in its hour-long interval: {}", st["slot_secs"]);
    assert_eq!(st["backlog"], 0, "{st}");
    assert!(st["keys"].as_array().unwrap().iter().all(|k| k["status"] == "synced" || k["name"] == "local"), "{st}");
    let first = c.audit_since(&mark);
    let first_writes = first.iter().filter(|a| a.is_write()).count();
    // Per key: the import, the KV key record and its metadata; the harness counts them.
    assert!(first_writes >= 20 * 3, "the first pass wrote each key ({first_writes} writes): {first:?}");

    // Two more passes with nothing changed: `sync now` forces the lost-data check, so they read
    // what the vault holds and write nothing; they read it in lists (this host's range of
    // transit names, the KV folder of its key records), not one GET per key.
    for round in 0..2 {
        let mark = c.audit_mark();
        let v = sync_now(&d);
        assert_eq!(v["status"]["last_pass"]["pushed"], 0, "{v}");
        let seen = c.audit_since(&mark);
        let writes: Vec<&Audited> = seen.iter().filter(|a| a.is_write()).collect();
        let reads = seen.len() - writes.len();
        eprintln!("idle pass {round}: {} requests at the vault, {} writes ({:?})", seen.len(), writes.len(), writes);
        assert!(writes.is_empty(), "an idle pass writes nothing: {writes:?}");
        let lists: Vec<&Audited> = seen.iter().filter(|a| a.operation == "list").collect();
        assert!(lists.iter().any(|a| a.path.trim_end_matches('/') == "transit/keys"), "the check listed the transit keys: {seen:?}");
        assert!(lists.iter().any(|a| a.path.starts_with("secret/metadata/keyport/idle/keys/default")), "and the key records: {seen:?}");
        assert!(reads <= 6, "a few lists for 20 keys, not a read per key ({reads} reads): {seen:?}");
    }

    // A key deleted from the vault behind keyport's back is seen in the lists and pushed again.
    let (s, v) = c.call(c.leader(), "POST", "transit/keys/idle-default.k07/config", Some(serde_json::json!({"deletion_allowed": true})));
    assert!(s == 200 || s == 204, "{v}");
    let (s, v) = c.call(c.leader(), "DELETE", "transit/keys/idle-default.k07", None);
    assert!(s == 200 || s == 204, "{v}");
    let (s, v) = c.call(c.leader(), "DELETE", "secret/metadata/keyport/idle/keys/default/k13", None);
    assert!(s == 200 || s == 204, "{v}");
    let v = sync_now(&d);
    assert_eq!(v["status"]["backlog"], 0, "{v}");
    let (s, k) = c.call(c.leader(), "GET", "transit/keys/idle-default.k07", None);
    assert_eq!((s, &k["data"]["latest_version"]), (200, &Value::from(1)), "imported again: {k}");
    let (s, r) = c.call(c.leader(), "GET", "secret/data/keyport/idle/keys/default/k13", None);
    assert_eq!(s, 200, "the key record written again: {r}");
    assert!(d.log().contains("no longer holds a synced key"), "{}", d.log());
}

/// N keyport daemons (`KEYPORT_FLEET_HOSTS`, 10 by default), each with its own SoftHSM token,
/// host name and `KEYPORT_FLEET_KEYS` exportable keys (5), all told to sync at the same moment
/// (the worst case: the schedule would spread them over the interval). Converged: every key of
/// every host in transit exactly once (version 1), each with its KV record, nothing pending.
#[test]
fn fleet_of_hosts_syncing_at_once_converges_exactly_once() {
    let hosts = env("KEYPORT_FLEET_HOSTS", 10);
    let keys = env("KEYPORT_FLEET_KEYS", 5);
    let mut g = shared_audited();
    let c = g.as_mut().unwrap();
    let names: Vec<String> = (0..hosts).map(|i| format!("fleet-{i:03}")).collect();
    let t = Instant::now();
    // Start and fill the daemons a few at a time (each start creates a SoftHSM token).
    let c_ref = &*c;
    let mut daemons: Vec<Daemon> = Vec::new();
    for chunk in names.chunks(4) {
        let started: Vec<Daemon> = std::thread::scope(|s| {
            let hs: Vec<_> = chunk
                .iter()
                .map(|h| {
                    s.spawn(move || {
                        let d = c_ref.daemon(h, &c_ref.addresses(), "");
                        for k in 0..keys {
                            d.generate(&format!("k{k:03}"), "ec-p256", true);
                        }
                        d
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        daemons.extend(started);
    }
    eprintln!("fleet: {hosts} daemons with {keys} keys each ready in {:.1} s", t.elapsed().as_secs_f64());

    let mark = c.audit_mark();
    let start = Instant::now();
    std::thread::scope(|s| {
        for d in &daemons {
            s.spawn(move || {
                let (st, v) = d.curl("POST", "/keyport/v1/sync", Some("{}"), &[]);
                assert!(st == 200 || st == 202, "{st} {v}");
            });
        }
    });
    let limit = Duration::from_secs(60 + (hosts * keys) as u64);
    let mut done: BTreeMap<usize, Duration> = BTreeMap::new();
    while done.len() < hosts {
        for (i, d) in daemons.iter().enumerate() {
            if !done.contains_key(&i) && converged(&status(d), keys) {
                done.insert(i, start.elapsed());
            }
        }
        assert!(start.elapsed() < limit, "{} of {hosts} hosts converged within {limit:?}", done.len());
        std::thread::sleep(Duration::from_millis(200));
    }
    let converge = start.elapsed();

    // Exactly once: every host's keys in transit at version 1 with their KV records, and no
    // other transit key of the fleet.
    let leader = c.leader();
    let (s, list) = c.call(leader, "LIST", "transit/keys", None);
    assert_eq!(s, 200, "{list}");
    let in_transit: Vec<String> = list["data"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k.as_str())
        .filter(|k| k.starts_with("fleet-"))
        .map(String::from)
        .collect();
    let mut want: Vec<String> = names.iter().flat_map(|h| (0..keys).map(move |k| format!("{h}-default.k{k:03}"))).collect();
    want.sort();
    let mut got = in_transit.clone();
    got.sort();
    assert_eq!(got, want, "every key of every host in transit, nothing else");
    for (h, d) in names.iter().zip(&daemons) {
        let st = status(d);
        assert!(converged(&st, keys), "{st}");
        for k in st["keys"].as_array().unwrap() {
            assert_eq!(k["pushed_version"], 1, "{h}: {k}");
            assert_eq!(k["attempts"], 0, "{h}: no key was charged a failure: {k}");
        }
        for k in 0..keys {
            let (s, v) = c.call(leader, "GET", &format!("transit/keys/{h}-default.k{k:03}"), None);
            assert_eq!((s, &v["data"]["latest_version"]), (200, &Value::from(1)), "{h} k{k:03} imported once: {v}");
            let (s, v) = c.call(leader, "GET", &format!("secret/data/keyport/{h}/keys/default/k{k:03}"), None);
            assert_eq!(s, 200, "KV record of {h} k{k:03}: {v}");
        }
    }

    // Figures, from the vault's own audit entries.
    let seen = c.audit_since(&mark);
    let fleet: Vec<&Audited> = seen.iter().filter(|a| a.path.contains("fleet-") || a.path.starts_with("transit/wrapping_key")).collect();
    let writes: Vec<&Audited> = fleet.iter().copied().filter(|a| a.is_write()).collect();
    let at_leader: Vec<&Audited> = writes.iter().copied().filter(|a| a.node == leader).collect();
    let span = at_leader.iter().map(|a| a.time).fold(f64::NAN, f64::max) - at_leader.iter().map(|a| a.time).fold(f64::NAN, f64::min);
    let mut lat: Vec<f64> = at_leader.iter().filter_map(|a| a.latency).collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or(f64::NAN) * 1e3;
    let total = hosts * keys;
    eprintln!(
        "fleet: {hosts} hosts x {keys} keys = {total} keys converged in {:.1} s ({:.1} keys/s); first host {:.1} s, median {:.1} s",
        converge.as_secs_f64(),
        total as f64 / converge.as_secs_f64(),
        done.values().min().unwrap().as_secs_f64(),
        {
            let mut v: Vec<_> = done.values().collect();
            v.sort();
            v[v.len() / 2].as_secs_f64()
        },
    );
    eprintln!(
        "fleet: vault requests {} ({} writes, {:.1} writes per key); writes at the active node {} over {:.1} s = {:.1} writes/s; write latency at the active node p50 {:.1} ms, p99 {:.1} ms",
        fleet.len(),
        writes.len(),
        writes.len() as f64 / total as f64,
        at_leader.len(),
        span,
        at_leader.len() as f64 / span,
        pct(0.5),
        pct(0.99)
    );
    assert!(writes.len() >= total * 3, "the import, KV record and metadata of each key reached the vault");
}
