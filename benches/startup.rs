//! Start-up to READY and resident memory against the number of keys in the token, next to the
//! token's own floor measured in the same run.
//!
//!     cargo bench --bench startup                          # 100 / 1,000 / 10,000 keys, 5 runs each
//!     KEYPORT_BENCH_SIZES=100,1000 KEYPORT_BENCH_ROUNDS=7 cargo bench --bench startup
//!
//! The token holds N EC P-256 key pairs (C_CreateObject of one fixed key under N CKA_IDs: the
//! start reads objects, not keys) and the store N matching inventory rows, so reconciliation
//! finds every key present. Sizes grow in one token (100, then 900 more, …). Per size and
//! round, interleaved:
//! - baseline: a child process doing C_Initialize, C_OpenSession, C_Login and one
//!   C_FindObjects over all objects (spawn → exit);
//! - keyport: `keyport serve` spawned → "keyport ready" in its log (every token open with its
//!   index, reconciliation, the listeners), then its RSS after 1 s idle and its peak;
//! - memory baseline: `pkcs11-tool --list-objects` on the same token (its peak RSS, from
//!   `/usr/bin/time`): SoftHSM's own cache of the objects.

mod common;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use keyport::store::Store;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const P256: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--startup-baseline") {
        baseline_child(Path::new(&args[i + 1]), &args[i + 2]);
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        println!("startup: run with `cargo bench --bench startup`");
        return;
    }
    let sizes: Vec<usize> = common::env_sizes();
    let rounds = common::env_usize("KEYPORT_BENCH_ROUNDS", 5);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("# keyport bench startup: sizes {sizes:?}, {rounds} rounds, {cores} cores");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("daemon");
    drop(common::BenchDaemon::start(&d, "", "", "")); // the token, the store, the config
    let conf = d.join("softhsm/softhsm2.conf");
    let pin = std::fs::read_to_string(d.join("pin")).unwrap().trim().to_string();
    let mut have = 0;
    println!("# {:>6} {:<44} {:>10} {:>18}", "keys", "measure", "median", "min-max");
    for n in sizes {
        let t = Instant::now();
        fill(&d, &conf, &pin, have, n);
        eprintln!("# filled token and store to {n} keys in {:.1} s", t.elapsed().as_secs_f64());
        have = n;
        let (mut base, mut serve, mut idle, mut peak, mut tool) = (vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..rounds {
            base.push(baseline(&conf, &pin));
            let (ready, rss, hwm) = start_daemon(&d);
            serve.push(ready);
            idle.push(rss);
            peak.push(hwm);
            tool.push(pkcs11_tool_rss(&conf, &pin));
        }
        let ms = |v: &[f64]| v.iter().map(|x| x * 1e3).collect::<Vec<_>>();
        row(n, "baseline: init + login + FindObjects, ms", &ms(&base));
        row(n, "keyport serve to READY, ms", &ms(&serve));
        let ratio: Vec<f64> = serve.iter().zip(&base).map(|(s, b)| s / b).collect();
        row(n, "ratio keyport / baseline (per round)", &ratio);
        row(n, "baseline: pkcs11-tool --list-objects peak RSS, MB", &tool);
        row(n, "keyport RSS idle 1 s after READY, MB", &idle);
        row(n, "keyport peak RSS (VmHWM), MB", &peak);
    }
}

fn row(n: usize, label: &str, v: &[f64]) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    println!("  {:>6} {:<44} {:>10.2} {:>8.2}-{:.2}", n, label, s[s.len() / 2], s[0], s[s.len() - 1]);
}

/// Runs in the child: the token's own floor for a start.
fn baseline_child(conf: &Path, pin: &str) {
    std::env::set_var("SOFTHSM2_CONF", conf);
    let p = Pkcs11::new(common::module()).unwrap();
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)).unwrap();
    let slot = p.get_slots_with_initialized_token().unwrap()[0];
    let s = p.open_rw_session(slot).unwrap();
    s.login(UserType::User, Some(&AuthPin::new(pin.into()))).unwrap();
    let all = s.find_objects(&[]).unwrap();
    assert!(!all.is_empty());
}

fn baseline(conf: &Path, pin: &str) -> f64 {
    let start = Instant::now();
    let st = Command::new(std::env::current_exe().unwrap()).arg("--startup-baseline").arg(conf).arg(pin).status().unwrap();
    assert!(st.success());
    start.elapsed().as_secs_f64()
}

/// `keyport serve` until its log says ready: (seconds, RSS MB after 1 s idle, peak RSS MB).
fn start_daemon(d: &Path) -> (f64, f64, f64) {
    let log: PathBuf = d.join("bench-serve.log");
    let start = Instant::now();
    // KEYPORT_BENCH_BIN: another keyport build (an earlier commit's), for before/after runs.
    let bin = std::env::var("KEYPORT_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_keyport").to_string());
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(d.join("keyport.toml"))
        .env("KEYPORT_LOG", "info,cryptoki=off")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    loop {
        if std::fs::read_to_string(&log).unwrap_or_default().contains("keyport ready") {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "keyport exited: {}", std::fs::read_to_string(&log).unwrap_or_default());
        assert!(start.elapsed() < Duration::from_secs(120), "keyport not ready in 120 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    let ready = start.elapsed().as_secs_f64();
    // Every key's objects were found (the index read every object): none is marked missing.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains(" marked_missing="), "keys were not found in the token: {text}");
    std::thread::sleep(Duration::from_secs(1));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let kb = |field: &str| {
        status.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<f64>().ok()).unwrap()
    };
    let (rss, hwm) = (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
    assert!(child.wait().unwrap().success());
    (ready, rss, hwm)
}

/// Peak RSS of `pkcs11-tool --list-objects` on the token, MB.
fn pkcs11_tool_rss(conf: &Path, pin: &str) -> f64 {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M", "pkcs11-tool", "--module"])
        .arg(common::module())
        .args(["--login", "--pin", pin, "--list-objects"])
        .env("SOFTHSM2_CONF", conf)
        .stdout(Stdio::null())
        .output()
        .expect("/usr/bin/time and pkcs11-tool (opensc)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    err.lines().last().and_then(|l| l.trim().parse::<f64>().ok()).expect("max RSS in KB") / 1024.0
}

fn id(i: usize) -> String {
    format!("{:032x}", 0xc000_0000_0000_0000u128 + i as u128)
}

/// Keys `from..to`: two token objects each (one fixed P-256 key) and an inventory row.
fn fill(d: &Path, conf: &Path, pin: &str, from: usize, to: usize) {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let secret = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
    let point = secret.public_key().to_encoded_point(false).as_bytes().to_vec();
    let ec_point = [&[0x04, point.len() as u8][..], &point].concat(); // DER OCTET STRING
    std::env::set_var("SOFTHSM2_CONF", conf);
    let p = Pkcs11::new(common::module()).unwrap();
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)).unwrap();
    let slot = p.get_slots_with_initialized_token().unwrap()[0];
    let ids: Vec<usize> = (from..to).collect();
    std::thread::scope(|s| {
        for part in ids.chunks(ids.len().div_ceil(2).max(1)) {
            let (p, secret, ec_point) = (&p, &secret, &ec_point);
            s.spawn(move || {
                let sess = p.open_rw_session(slot).unwrap();
                let _ = sess.login(UserType::User, Some(&AuthPin::new(pin.into())));
                for &i in part {
                    let (cka, label) = (hex::decode(id(i)).unwrap(), format!("boot-{i:06}"));
                    sess.create_object(&[
                        Attribute::Class(ObjectClass::PRIVATE_KEY),
                        Attribute::KeyType(KeyType::EC),
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Sign(true),
                        Attribute::Id(cka.clone()),
                        Attribute::Label(label.clone().into_bytes()),
                        Attribute::EcParams(P256.to_vec()),
                        Attribute::Value(secret.to_bytes().to_vec()),
                    ])
                    .unwrap();
                    sess.create_object(&[
                        Attribute::Class(ObjectClass::PUBLIC_KEY),
                        Attribute::KeyType(KeyType::EC),
                        Attribute::Token(true),
                        Attribute::Verify(true),
                        Attribute::Id(cka),
                        Attribute::Label(label.into_bytes()),
                        Attribute::EcParams(P256.to_vec()),
                        Attribute::EcPoint(ec_point.clone()),
                    ])
                    .unwrap();
                }
            });
        }
    });
    p.finalize().unwrap();
    std::env::remove_var("SOFTHSM2_CONF");

    let store = Store::open(&d.join("state/keyport.db")).unwrap();
    for chunk in ids.chunks(1000) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|&i| keyport::store::fixtures::generated_key(id(i), format!("boot-{i:06}"), i, keyport::store::records::now()))
            .collect();
        keyport::store::fixtures::commit(&store, &rows);
    }
}
