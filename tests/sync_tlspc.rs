//! Sync to a TLS Protect Cloud–style remote: two real keyport daemons. Daemon A syncs
//! (`[sync] remote = "tlspc"`); daemon B is the remote, through its own TLS Protect Cloud face
//! over HTTPS (A trusts B's self-signed certificate) with B's own token. Keys with
//! certificates arrive in B once, keys without one are not_syncable, batches hold at most 100
//! keys, a dead remote is a backlog drained once, and a SIGKILL after the post sends nothing
//! twice.

mod common;
use base64::Engine;
use common::bao::{key_status, sha256_hex_bytes, sync_now};
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const KEY: &str = "tppl-api-key: tlspc-key";

fn tools() {
    require("curl");
}

/// The remote: a plain daemon (principal `tlspc-client` with API key `tlspc-key`).
fn remote() -> Daemon {
    Daemon::start("")
}

/// The syncing daemon, pointed at `b`'s TLS Protect Cloud face. Keys imported through A's own
/// face are exportable, so they can leave its token.
fn local(b: &Daemon, env: &[(&str, &str)], sync_extra: &str) -> Daemon {
    let mut a = Daemon::config("[tlspc]\nexportable = true\n");
    let key = a.dir.path().join("remote.key");
    std::fs::write(&key, "tlspc-key\n").unwrap();
    let mut text = std::fs::read_to_string(&a.config).unwrap();
    text.push_str(&format!(
        r#"
[sync]
remote = "tlspc"
interval_secs = 3600
jitter_secs = 0
retry_base_secs = 1
namespaces = ["default"]

[sync.tlspc]
address = "https://127.0.0.1:{port}"
ca_file = "{ca}"
api_key = {{ file = "{key}" }}
{sync_extra}
"#,
        port = b.port,
        ca = b.dir.path().join("state/tls-cert.pem").display(),
        key = key.display(),
    ));
    std::fs::write(&a.config, text).unwrap();
    a.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    a.spawn();
    a
}

/// Imports `names` into `d` through its TLS Protect Cloud face, 100 per call: fresh P-256 keys
/// with self-signed certificates (CN = name) made in-process, each PKCS#8 sealed to the DEK as
/// `dekEncryptedPrivateKey`. Returns each certificate's SHA-256.
fn import_many(d: &Daemon, names: &[String]) -> Vec<String> {
    let (_, v) = d.curl_https("GET", "/v1/edgeinstances", None, &["-H", KEY]);
    let (edge, kid) =
        (v["edgeInstances"][0]["id"].as_str().unwrap().to_string(), v["edgeInstances"][0]["encryptionKeyId"].as_str().unwrap().to_string());
    let (_, k) = d.curl_https("GET", &format!("/v1/edgeencryptionkeys/{kid}"), None, &["-H", KEY]);
    let dek: [u8; 32] = base64::engine::general_purpose::STANDARD.decode(k["key"].as_str().unwrap()).unwrap().try_into().unwrap();
    let dek = crypto_box::PublicKey::from(dek);
    let mut shas = Vec::new();
    for chunk in names.chunks(100) {
        let mut items = Vec::new();
        for name in chunk {
            let kp = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(vec![format!("{name}.example")]).unwrap();
            params.distinguished_name.push(rcgen::DnType::CommonName, name.as_str());
            let cert = params.self_signed(&kp).unwrap();
            shas.push(sha256_hex_bytes(cert.der()));
            let sealed = dek.seal(&mut rand::rngs::OsRng, &kp.serialize_der()).unwrap();
            items.push(
                json!({"certificate": cert.pem(), "dekEncryptedPrivateKey": base64::engine::general_purpose::STANDARD.encode(sealed)}),
            );
        }
        let body = json!({"edgeInstanceId": edge, "encryptionKeyId": kid, "importInformation": items}).to_string();
        let (s, v) = d.curl_https("POST", "/outagedetection/v1/certificates/imports", Some(&body), &["-H", KEY]);
        assert_eq!(s, 201, "{v}");
        let job = v["id"].as_str().unwrap().to_string();
        let start = Instant::now();
        loop {
            let (_, v) = d.curl_https("GET", &format!("/outagedetection/v1/certificates/imports/{job}"), None, &["-H", KEY]);
            if v["status"] == "COMPLETED" {
                assert!(v["results"].as_array().unwrap().iter().all(|r| r["status"] == "IMPORTED"), "{v}");
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(120), "{v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    shas
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:03}")).collect()
}

/// fingerprint → name of every key in `d`.
fn keys(d: &Daemon) -> std::collections::BTreeMap<String, String> {
    let (s, v) = d.curl("GET", "/keyport/v1/keys", None, &[]);
    assert_eq!(s, 200, "{v}");
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["fingerprint"].as_str().unwrap().to_string(), k["name"].as_str().unwrap().to_string()))
        .collect()
}

fn certificate_shas(d: &Daemon) -> Vec<String> {
    let (s, v) = d.curl("GET", "/keyport/v1/certificates", None, &[]);
    assert_eq!(s, 200, "{v}");
    v["certificates"].as_array().unwrap().iter().map(|c| c["sha256"].as_str().unwrap_or_default().to_string()).collect()
}

/// The remote's import jobs, oldest first: item counts.
fn remote_jobs(b: &Daemon) -> Vec<i64> {
    let db = rusqlite::Connection::open(b.dir.path().join("state/keyport.db")).unwrap();
    let mut st = db.prepare("SELECT total FROM jobs WHERE kind = 'sealed-import' ORDER BY created_at").unwrap();
    let totals = st.query_map([], |r| r.get(0)).unwrap().collect::<Result<Vec<i64>, _>>().unwrap();
    totals
}

fn sync_state(st: &Value, name: &str) -> Value {
    key_status(st, name).clone()
}

#[test]
fn keys_with_certificates_reach_the_remote_once() {
    tools();
    let b = remote();
    let mut a = local(&b, &[], "");
    let web = names("web", 3);
    let shas = import_many(&a, &web);
    a.generate("bare", "ec-p256", true);
    a.generate("sealed", "ec-p256", false);
    let jobs_before = remote_jobs(&b).len();

    let st = sync_now(&a);
    assert_eq!((st["remote"].as_str(), st["backlog"].as_u64()), (Some("tlspc"), Some(0)), "{st}");
    assert_eq!(st["vault"], format!("https://127.0.0.1:{}", b.port));
    assert!(st["wrapping_key"].as_str().unwrap().contains("edge instance"), "the DEK items are sealed to: {st}");
    let ours = keys(&a);
    let theirs = keys(&b);
    for n in &web {
        let ks = sync_state(&st, n);
        assert_eq!(ks["status"], "synced", "{ks}");
        assert!(ks["detail"].as_str().unwrap().contains("imported by the remote's job"), "{ks}");
        // The remote's name for it: its certificate's fingerprint (SHA-1, as the vendor's).
        assert_eq!(ks["vault_name"].as_str().unwrap().len(), 40, "{ks}");
        let fp = ours.iter().find(|(_, name)| name == &n).unwrap().0;
        assert_eq!(theirs.get(fp), Some(n), "{n} arrived in the remote with the same fingerprint");
    }
    let remote_certs = certificate_shas(&b);
    for sha in &shas {
        assert!(remote_certs.contains(sha), "the remote lists the certificate {sha}: {remote_certs:?}");
    }
    for (n, why) in [("bare", "no certificate"), ("sealed", "non-exportable")] {
        let ks = sync_state(&st, n);
        assert_eq!(ks["status"], "not_syncable", "{ks}");
        assert!(ks["detail"].as_str().unwrap().contains(why), "{ks}");
    }
    assert_eq!(theirs.len(), 3, "only the keys with certificates: {theirs:?}");
    assert_eq!(remote_jobs(&b).len(), jobs_before + 1, "one import call");
    assert!(a.log().contains("keys_per_sec"), "{}", a.log());

    // A second pass pushes nothing.
    assert_eq!(sync_now(&a)["backlog"], 0);
    assert_eq!(remote_jobs(&b).len(), jobs_before + 1);
    assert_eq!(keys(&b), theirs);

    // Even when A forgot what it pushed: posted again, the remote skips what it holds.
    assert!(a.stop().success());
    {
        let db = rusqlite::Connection::open(a.dir.path().join("state/keyport.db")).unwrap();
        db.execute("DELETE FROM sync_state", []).unwrap();
    }
    a.spawn();
    let st = sync_now(&a);
    assert_eq!(st["backlog"], 0, "{st}");
    for n in &web {
        let ks = sync_state(&st, n);
        assert_eq!(ks["status"], "synced", "{ks}");
        assert!(ks["detail"].as_str().unwrap().contains("already at the remote"), "{ks}");
    }
    assert_eq!(keys(&b), theirs, "no key twice");
}

/// A log line without its colour codes.
fn strip_ansi(l: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in l.chars() {
        match (esc, c) {
            (_, '\x1b') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

/// The `keys_per_sec` of each import batch A logged.
fn batch_rates(a: &Daemon) -> Vec<(u64, f64)> {
    a.log()
        .lines()
        .filter(|l| l.contains("import batch done"))
        .map(strip_ansi)
        .filter_map(|l| {
            let field = |k: &str| l.split(&format!("{k}=")).nth(1)?.split_whitespace().next().map(String::from);
            Some((field("keys")?.parse().ok()?, field("keys_per_sec")?.parse().ok()?))
        })
        .collect()
}

#[test]
fn more_than_100_keys_go_in_batches_of_at_most_100() {
    tools();
    let b = remote();
    let a = local(&b, &[], "");
    let many = names("bulk", 105);
    let made = Instant::now();
    import_many(&a, &many);
    eprintln!("105 keys with certificates imported into A in {:.1} s", made.elapsed().as_secs_f64());
    let jobs_before = remote_jobs(&b).len();
    let started = Instant::now();
    let st = sync_now(&a);
    eprintln!("105 keys synced to B in {:.1} s; batches (keys, keys/s): {:?}", started.elapsed().as_secs_f64(), batch_rates(&a));
    assert_eq!(st["backlog"], 0, "{st}");
    assert!(st["keys"].as_array().unwrap().iter().all(|k| k["status"] == "synced"), "{st}");
    assert_eq!(remote_jobs(&b)[jobs_before..], [100, 5], "two import calls: 100 keys, then 5");
    let theirs = keys(&b);
    for (fp, name) in keys(&a) {
        assert_eq!(theirs.get(&fp), Some(&name));
    }
    assert_eq!(theirs.len(), 105);
}

#[test]
fn a_dead_remote_is_a_backlog_drained_once_when_it_returns() {
    tools();
    let mut b = remote();
    let a = local(&b, &[], "");
    import_many(&a, &names("before", 1));
    assert_eq!(key_status(&sync_now(&a), "before-000")["status"], "synced");
    let jobs = remote_jobs(&b).len();

    assert!(b.stop().success());
    import_many(&a, &names("during", 2));
    let st = sync_now(&a);
    let ks = key_status(&st, "during-000");
    assert_eq!(ks["status"], "pending", "{ks}");
    assert!(ks["last_error"].as_str().unwrap().contains("cannot connect"), "{ks}");
    assert!(ks["next_attempt_at"].is_string() && ks["attempts"] == 1, "{ks}");
    assert_eq!(st["backlog"], 4, "a key row and a certificate row per key: {st}");
    assert!(st["last_pass"]["stopped"].is_string(), "{st}");

    b.spawn();
    let st = sync_now(&a);
    assert_eq!(st["backlog"], 0, "{st}\n{}", a.log());
    for n in ["during-000", "during-001"] {
        assert_eq!(key_status(&st, n)["status"], "synced");
    }
    assert_eq!(remote_jobs(&b)[jobs..], [2], "the backlog went in one call, once");
    assert_eq!(keys(&b).len(), 3);
    assert_eq!(sync_now(&a)["backlog"], 0);
    assert_eq!(remote_jobs(&b).len(), jobs + 1);
}

#[test]
fn a_sigkill_after_the_post_sends_no_key_twice() {
    tools();
    let b = remote();
    let mut a = local(&b, &[("KEYPORT_TEST_PAUSE_AFTER_REMOTE_POST_MS", "60000")], "");
    let batch = names("crash", 4);
    import_many(&a, &batch);
    let jobs = remote_jobs(&b).len();
    let (s, v) = a.curl("POST", "/keyport/v1/sync", None, &[]);
    assert_eq!(s, 202, "{v}");
    let start = Instant::now();
    while !a.log().contains("pausing after the remote post") {
        assert!(start.elapsed() < Duration::from_secs(60), "{}", a.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    a.kill9();
    assert_eq!(remote_jobs(&b)[jobs..], [4], "the job reached the remote before the kill");

    a.env.clear();
    a.spawn();
    let st = sync_now(&a);
    assert_eq!(st["backlog"], 0, "{st}\n{}", a.log());
    for n in &batch {
        let ks = key_status(&st, n);
        assert_eq!(ks["status"], "synced", "{ks}");
        assert!(ks["detail"].as_str().unwrap().contains("imported by the remote's job"), "the first job's result: {ks}");
    }
    assert!(a.log().contains("polling the remote's import job posted earlier"), "{}", a.log());
    assert_eq!(remote_jobs(&b).len(), jobs + 1, "polled, not posted again");
    let theirs = keys(&b);
    assert_eq!(theirs.len(), 4, "every key exactly once: {theirs:?}");
    for (fp, name) in keys(&a) {
        assert_eq!(theirs.get(&fp), Some(&name));
    }
}

#[test]
fn a_job_the_remote_never_finishes_stops_holding_the_key_back() {
    tools();
    // The remote pauses 6 s before committing each imported key: its job stays PENDING.
    let mut b = Daemon::config("");
    b.env.push(("KEYPORT_TEST_PAUSE_BEFORE_COMMIT_MS".into(), "6000".into()));
    b.spawn();
    let a = local(&b, &[], "poll_secs = 1\njob_timeout_secs = 1");
    import_many(&a, &names("slow", 1));

    // The first pass posts and polls for a second; the next one gives up on the job.
    sync_now(&a);
    let start = Instant::now();
    let failed = loop {
        let (_, st) = a.curl("GET", "/keyport/v1/sync", None, &[]);
        let ks = sync_state(&st, "slow-000");
        if ks["status"] == "failed" {
            break ks;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "never gave up on the job: {ks}\n{}", a.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(failed["last_error"].as_str().unwrap().contains("job_timeout_secs"), "{failed}");
    assert_eq!(remote_jobs(&b).len(), 1, "nothing posted twice while waiting");

    // The remote's job ends meanwhile; `sync now` posts the key again and the remote skips it.
    let start = Instant::now();
    while keys(&b).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(30), "{}", b.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let start = Instant::now();
    loop {
        let st = sync_now(&a);
        if sync_state(&st, "slow-000")["status"] == "synced" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{st}\n{}", a.log());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(keys(&b).len(), 1, "the key is at the remote once");
}
