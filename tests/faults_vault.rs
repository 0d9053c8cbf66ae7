//! Vault faults under a running daemon (issue 16, "Faults"): a real OpenBao dev server behind a
//! TCP proxy in the test process (`common::proxy`) that refuses, resets, cuts answers short or
//! slows them down; the vault sealed and unsealed; a rate-limit quota. Each test checks that
//! callers of keyport's own API are unaffected (generate 201, in well under a second's worth of
//! the fault), that `GET health` and `GET /keyport/v1/sync` say what is wrong while it lasts,
//! that no key is marked failed because of a transient fault, and that once the fault ends sync
//! finishes by itself (no `sync now`) within the bound in the test's name, every key in transit
//! exactly once (`latest_version` 1, our public key). Figures: docs/RELIABILITY.md,
//! "Injected faults".

mod common;
use common::bao::*;
use common::proxy::{Mode, Proxy};
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// How long each fault lasts.
const FAULT: Duration = Duration::from_secs(10);

struct Setup {
    work: tempfile::TempDir,
    bao: Bao,
    proxy: Proxy,
    d: Daemon,
}

/// OpenBao, the proxy in front of it, and a daemon whose `[sync]` goes through the proxy.
fn setup() -> Setup {
    tools();
    let work = tempfile::tempdir().unwrap();
    let bao = Bao::start(work.path());
    let proxy = Proxy::start(bao.port);
    let mut d = Daemon::config("");
    common::bao::sync_to(&d, proxy.port, "");
    // The sync worker's waits and retries, for the failure messages.
    d.env.push(("KEYPORT_LOG".into(), "info,keyport::sync=debug,cryptoki=off".into()));
    d.spawn();
    Setup { work, bao, proxy, d }
}

fn sync_status(d: &Daemon) -> Value {
    let (s, v) = d.curl("GET", "/keyport/v1/sync", None, &[]);
    assert_eq!(s, 200, "{v}");
    v
}

/// `(status, body, the "sync" problem's reason if any)`.
fn health(d: &Daemon) -> (u16, Value, Option<String>) {
    let (s, v) = d.curl("GET", "/keyport/v1/health", None, &[]);
    let sync = v["problems"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["component"] == "sync"))
        .map(|p| p["reason"].as_str().unwrap().to_string());
    (s, v, sync)
}

fn poll<T>(limit: Duration, what: &str, d: &Daemon, mut f: impl FnMut() -> Option<T>) -> (T, Duration) {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return (v, start.elapsed());
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a fault test measured.
struct Figures {
    generate_max: Duration,
    detect: Option<Duration>,
    drained: Duration,
    reason: Option<String>,
}

/// The shared scenario: a key synced before the fault; `inject`; keys made during the fault
/// (timed) and a pass asked for; `during` checks what health and sync status say; after
/// [`FAULT`] `heal`; then the backlog must drain by itself within `bound`.
fn scenario(
    s: &Setup,
    label: &str,
    inject: impl FnOnce(&Setup),
    during: impl FnOnce(&Setup) -> (Option<Duration>, Option<String>),
    heal: impl FnOnce(&Setup),
    bound: Duration,
) -> Figures {
    let d = &s.d;
    let before = d.generate("before", "ec-p256", true);
    let st = sync_now(d);
    assert_eq!(st["backlog"], 0, "{st}");
    let h = health(d);
    assert_eq!((h.0, h.1["status"].as_str()), (200, Some("ok")), "{}", h.1);

    inject(s);
    let fault = Instant::now();
    // Callers of keyport's own API do not wait for the vault.
    let mut keys = vec![("before".to_string(), before)];
    let mut generate_max = Duration::ZERO;
    for (i, alg) in ["ec-p256", "ed25519", "rsa-2048"].iter().enumerate() {
        let name = format!("during-{i}");
        let t = Instant::now();
        let k = d.generate(&name, alg, true);
        generate_max = generate_max.max(t.elapsed());
        keys.push((name, k));
    }
    let (c, v) = d.curl("POST", "/keyport/v1/sync", Some("{}"), &[]);
    assert_eq!(c, 202, "{v}");
    let (detect, reason) = during(s);
    // Nothing is parked as failed because of the fault, and reads of the status stay quick.
    let t = Instant::now();
    let st = sync_status(d);
    assert!(t.elapsed() < Duration::from_secs(5), "sync status took {:?} during the fault", t.elapsed());
    for k in st["keys"].as_array().unwrap() {
        assert_ne!(k["status"], "failed", "a transient fault parked a key: {k}\n{st}");
    }
    // A vault-wide fault is the gate's, never charged to a key (a key's attempts count its own
    // refusals and back it off alone).
    let attempts: Vec<i64> = st["keys"].as_array().unwrap().iter().map(|k| k["attempts"].as_i64().unwrap_or(0)).collect();
    assert!(attempts.iter().all(|a| *a == 0), "attempts charged to keys for a vault fault: {attempts:?}\n{st}");
    std::thread::sleep(FAULT.saturating_sub(fault.elapsed()));

    heal(s);
    let (_, drained) = poll(bound, "the backlog drains by itself once the fault ended", d, || {
        let st = sync_status(d);
        (st["backlog"] == 0 && st["keys"].as_array().unwrap().iter().all(|k| k["status"] == "synced")).then_some(())
    });
    // Health is ok again, the sync problem gone.
    poll(Duration::from_secs(10), "health ok again", d, || {
        let h = health(d);
        (h.0 == 200 && h.1["status"] == "ok" && h.2.is_none()).then_some(())
    });
    for (name, key) in &keys {
        check_in_transit(&s.bao, s.work.path(), &format!("h1-default.{name}"), key);
    }

    assert!(d.child.as_ref().is_some(), "the daemon kept running");
    // The vault token never reached the log or the store.
    d.assert_no_secret_leaked(&[ROOT_TOKEN]);
    let f = Figures { generate_max, detect, drained, reason };
    eprintln!(
        "FIGURES vault {label}: generate max {:.2} s during the fault; health named it after {}; backlog drained {:.1} s after the fault ended; attempts charged {attempts:?}; proxy connections {}; reason: {}",
        f.generate_max.as_secs_f64(),
        f.detect.map_or("-".into(), |d| format!("{:.1} s", d.as_secs_f64())),
        f.drained.as_secs_f64(),
        s.proxy.accepted(),
        f.reason.as_deref().unwrap_or("-")
    );
    f
}

/// Waits for health to name the vault problem (component `sync`, still 200: keyport works
/// locally) and for sync status to show it as the waiting keys' error; returns the time and
/// reason.
fn expect_vault_down(s: &Setup, words: &[&str]) -> (Option<Duration>, Option<String>) {
    let d = &s.d;
    let (reason, t) = poll(Duration::from_secs(20), "health names the vault problem", d, || {
        let h = health(d);
        assert_eq!(h.0, 200, "a vault fault does not make keyport itself unavailable: {}", h.1);
        h.2.filter(|_| h.1["status"] == "degraded")
    });
    assert!(words.iter().any(|w| reason.contains(w)), "health's reason names the fault ({words:?}): {reason}");
    let st = sync_status(d);
    assert!(st["vault_down"]["reason"].is_string(), "{st}");
    let pending: Vec<&Value> = st["keys"].as_array().unwrap().iter().filter(|k| k["status"] == "pending").collect();
    assert!(!pending.is_empty(), "{st}");
    for k in pending {
        assert!(k["last_error"].is_string() && k["next_attempt_at"].is_string(), "a waiting key says why and when: {k}");
    }
    (Some(t), Some(reason))
}

#[test]
fn vault_stopped_keys_wait_and_sync_within_30s_of_it_returning() {
    let s = setup();
    let f = scenario(
        &s,
        "stopped (proxy refuses connections)",
        |s| s.proxy.set(Mode::Refuse),
        |s| expect_vault_down(s, &["cannot connect", "refused", "unreachable"]),
        |s| s.proxy.set(Mode::Pass),
        Duration::from_secs(30),
    );
    assert!(f.generate_max < Duration::from_secs(5), "{:?}", f.generate_max);
}

#[test]
fn vault_resetting_connections_keys_wait_and_sync_within_30s_of_it_ending() {
    let s = setup();
    let f = scenario(
        &s,
        "resets every connection",
        |s| s.proxy.set(Mode::Reset),
        |s| expect_vault_down(s, &["vault"]),
        |s| s.proxy.set(Mode::Pass),
        Duration::from_secs(30),
    );
    assert!(f.generate_max < Duration::from_secs(5), "{:?}", f.generate_max);
}

#[test]
fn vault_answers_cut_mid_response_never_double_a_key_and_sync_within_30s() {
    let s = setup();
    let f = scenario(
        &s,
        "answers cut after 300 bytes",
        |s| s.proxy.set(Mode::Truncate(300)),
        |s| expect_vault_down(s, &["vault"]),
        |s| s.proxy.set(Mode::Pass),
        Duration::from_secs(30),
    );
    assert!(f.generate_max < Duration::from_secs(5), "{:?}", f.generate_max);
}

#[test]
fn vault_sealed_keys_wait_and_sync_within_30s_of_the_unseal() {
    let s = setup();
    let f = scenario(
        &s,
        "sealed",
        |s| {
            let (c, v) = s.bao.call("POST", "sys/seal", None);
            assert_eq!(c, 204, "{v}");
        },
        |s| expect_vault_down(s, &["sealed"]),
        |s| {
            let (c, v) = s.bao.call("POST", "sys/unseal", Some(json!({"key": s.bao.unseal_key()})));
            assert_eq!((c, &v["sealed"]), (200, &json!(false)), "{v}");
        },
        Duration::from_secs(30),
    );
    assert!(f.generate_max < Duration::from_secs(5), "{:?}", f.generate_max);
}

#[test]
fn vault_rate_limiting_429_keys_wait_and_sync_within_60s_of_the_quota_ending() {
    let s = setup();
    let f = scenario(
        &s,
        "rate-limited (quota: 1 request per 30 s on transit/)",
        |s| {
            let (c, v) =
                s.bao.call("POST", "sys/quotas/rate-limit/keyport-fault", Some(json!({"path": "transit/", "rate": 1, "interval": "30s"})));
            assert_eq!(c, 204, "{v}");
        },
        |s| expect_vault_down(s, &["rate-limit"]),
        |s| {
            let (c, v) = s.bao.call("DELETE", "sys/quotas/rate-limit/keyport-fault", None);
            assert_eq!(c, 204, "{v}");
        },
        Duration::from_secs(60),
    );
    assert!(f.generate_max < Duration::from_secs(5), "{:?}", f.generate_max);
}

#[test]
fn vault_slow_1s_per_chunk_does_not_slow_callers_and_syncs_within_60s_of_it_ending() {
    let s = setup();
    let f = scenario(
        &s,
        "slow (1 s before every chunk)",
        |s| s.proxy.set(Mode::Delay(1000)),
        |s| {
            // A slow vault is not an outage: health stays ok, the pass is just slow. Callers
            // keep their speed meanwhile.
            let d = &s.d;
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(4) {
                let h = health(d);
                assert_eq!((h.0, h.1["status"].as_str()), (200, Some("ok")), "{}", h.1);
                std::thread::sleep(Duration::from_millis(500));
            }
            let t = Instant::now();
            d.generate("during-slow", "ec-p256", true);
            assert!(t.elapsed() < Duration::from_secs(5), "generate while the vault is slow: {:?}", t.elapsed());
            // Made while a pass runs: a pass asked for now runs after it (keys otherwise wait
            // for the interval, by design).
            let (c, v) = d.curl("POST", "/keyport/v1/sync", Some("{}"), &[]);
            assert_eq!(c, 202, "{v}");
            (None, None)
        },
        |s| s.proxy.set(Mode::Pass),
        Duration::from_secs(60),
    );
    assert!(f.generate_max < Duration::from_secs(5), "{:?}", f.generate_max);
}

/// The vault imports the key but its answer never reaches keyport (the connection is reset
/// just before it): the write happened, the acknowledgement was lost. keyport must not import
/// it again (transit would get a second version): the next try reads before it writes, finds
/// its own public key, and records the key as synced.
#[test]
fn vault_answer_to_an_import_lost_never_doubles_the_key_and_syncs_within_30s() {
    let s = setup();
    let (d, bao) = (&s.d, &s.bao);
    s.proxy.set(Mode::LoseAnswerTo("/import HTTP/1.1"));
    let key = d.generate("lost-ack", "ec-p256", true);
    let (c, v) = d.curl("POST", "/keyport/v1/sync", Some("{}"), &[]);
    assert_eq!(c, 202, "{v}");
    poll(Duration::from_secs(20), "the import's answer is lost", d, || (s.proxy.lost() >= 1).then_some(()));
    // The vault did it; keyport does not know.
    let (c, v) = bao.call("GET", "transit/keys/h1-default.lost-ack", None);
    assert_eq!((c, &v["data"]["latest_version"]), (200, &json!(1)), "{v}");
    let (st, _) = poll(Duration::from_secs(10), "sync status shows the key waiting", d, || {
        let st = sync_status(d);
        (key_status(&st, "lost-ack")["status"] == "pending").then_some(st)
    });
    assert_ne!(key_status(&st, "lost-ack")["status"], "failed", "{st}");
    let lost = s.proxy.lost();

    s.proxy.set(Mode::Pass);
    let (_, drained) = poll(Duration::from_secs(30), "the backlog drains by itself", d, || {
        let st = sync_status(d);
        (st["backlog"] == 0).then_some(())
    });
    let st = sync_status(d);
    assert_eq!(key_status(&st, "lost-ack")["status"], "synced", "{st}");
    check_in_transit(bao, s.work.path(), "h1-default.lost-ack", &key);
    d.assert_no_secret_leaked(&[ROOT_TOKEN]);
    eprintln!(
        "FIGURES vault import answer lost ({lost} answers dropped): the next try found the key in transit (latest_version 1), synced {:.1} s after the fault ended",
        drained.as_secs_f64()
    );
}
