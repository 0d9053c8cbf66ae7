//! Signatures through keyport's ssh-agent socket next to raw C_Sign through cryptoki on a
//! SoftHSM token of the same kind, in one run.
//!
//!     cargo bench --bench agent_sign                 # N=4000 signatures per figure, 2 workers, 3 rounds
//!     KEYPORT_BENCH_N=20000 KEYPORT_BENCH_ROUNDS=5 cargo bench --bench agent_sign
//!
//! The daemon figure is the whole path an SSH client pays: an agent SIGN_REQUEST over the Unix
//! socket, principal lookup, authorization, C_Sign in the token, the audit row, the SSH
//! signature encoding. The raw figure is C_Sign alone (plus the same SHA-256 for ECDSA), one
//! session per thread.

mod common;
use common::module;

use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;
use sha2::Digest;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

const WORKERS: usize = 2;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("agent_sign: run with `cargo bench --bench agent_sign`");
        return;
    }
    let n: usize = std::env::var("KEYPORT_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(4000);
    let rounds = common::env_usize("KEYPORT_BENCH_ROUNDS", 3);
    let dir = tempfile::tempdir().unwrap();
    println!(
        "# keyport agent bench: N={n} signatures per figure, {WORKERS} workers, {rounds} interleaved rounds, SoftHSM at {}",
        module().display()
    );
    let data = userauth_like();
    // The daemon first: it must not inherit the raw token's SOFTHSM2_CONF.
    let (daemon, agent, blobs) = start_daemon(dir.path());
    let (p, slot, s0) = common::raw_token(dir.path());
    let mut medians = Vec::new();
    for (i, (alg, params)) in
        [("ec-p256", vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]), ("ed25519", vec![0x06, 0x03, 0x2b, 0x65, 0x70])]
            .into_iter()
            .enumerate()
    {
        let gen = if alg == "ed25519" { Mechanism::EccEdwardsKeyPairGen } else { Mechanism::EccKeyPairGen };
        let (_, private) = s0
            .generate_key_pair(
                &gen,
                &[Attribute::Token(true), Attribute::EcParams(params), Attribute::Verify(true)],
                &[Attribute::Token(true), Attribute::Private(true), Attribute::Sensitive(true), Attribute::Sign(true)],
            )
            .unwrap();
        let msg = sign_request(&blobs[i], &data);
        let (mut raw_rates, mut agent_rates) = (Vec::new(), Vec::new());
        // Interleaved, so the machine's load drifts over both alike.
        for _ in 0..rounds {
            let start = Instant::now();
            std::thread::scope(|sc| {
                for _ in 0..WORKERS {
                    let (p, data) = (p.clone(), &data);
                    sc.spawn(move || {
                        let s = p.open_rw_session(slot).unwrap();
                        for _ in 0..n / WORKERS {
                            if alg == "ed25519" {
                                s.sign(&Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)), private, data).unwrap();
                            } else {
                                s.sign(&Mechanism::Ecdsa, private, &sha2::Sha256::digest(data)).unwrap();
                            }
                        }
                    });
                }
            });
            raw_rates.push(report(&format!("raw cryptoki: C_Sign {alg} ({WORKERS} threads, 1 session each)"), n, start.elapsed()));
            let start = Instant::now();
            std::thread::scope(|sc| {
                for _ in 0..WORKERS {
                    let (agent, msg) = (&agent, &msg);
                    sc.spawn(move || {
                        let mut s = UnixStream::connect(agent).unwrap();
                        for _ in 0..n / WORKERS {
                            assert_eq!(request(&mut s, msg)[0], 14, "SSH_AGENT_SIGN_RESPONSE");
                        }
                    });
                }
            });
            agent_rates.push(report(&format!("keyport agent: SIGN_REQUEST {alg} ({WORKERS} connections)"), n, start.elapsed()));
        }
        let (r, a) = (median(&mut raw_rates), median(&mut agent_rates));
        medians.push(format!("{alg}: raw {r:.1} /s, agent {a:.1} /s, agent/raw {:.0} %", 100.0 * a / r));
    }
    common::close_raw_token(p);
    drop(daemon);
    for m in medians {
        println!("median {m}");
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// About what `ssh` asks an agent to sign: session id, userauth request, key blob.
fn userauth_like() -> Vec<u8> {
    let mut d = vec![0, 0, 0, 32];
    d.extend([7u8; 32]);
    d.push(50);
    for s in [&b"root"[..], b"ssh-connection", b"publickey"] {
        d.extend((s.len() as u32).to_be_bytes());
        d.extend(s);
    }
    d.push(1);
    d.extend([0u8; 60]);
    d
}

fn report(what: &str, count: usize, elapsed: Duration) -> f64 {
    let rate = count as f64 / elapsed.as_secs_f64();
    println!("{what:<62} {rate:>9.1} /s  ({count} in {:.2} s)", elapsed.as_secs_f64());
    rate
}

/// `keyport serve` with its agent and one non-exportable P-256 and Ed25519 key; their blobs
/// in that order.
fn start_daemon(dir: &Path) -> (common::BenchDaemon, std::path::PathBuf, Vec<Vec<u8>>) {
    let d = dir.join("daemon");
    let agent = d.join("agent.sock");
    let daemon = common::BenchDaemon::start(
        &d,
        "",
        &format!("sessions = {WORKERS}"),
        &format!("[agent]\nsocket = \"{}\"\nmax_connections_per_uid = 64\n", agent.display()),
    );
    for alg in ["ec-p256", "ed25519"] {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-f", "--unix-socket"])
            .arg(&daemon.socket)
            .args(["-H", "content-type: application/json", "-d"])
            .arg(format!(r#"{{"name":"{alg}","algorithm":"{alg}","exportable":false}}"#))
            .arg("http://localhost/keyport/v1/keys")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let mut s = UnixStream::connect(&agent).unwrap();
    let ids = request(&mut s, &[11]);
    assert_eq!(ids[0], 12);
    let mut blobs = Vec::new();
    let mut at = 5;
    for _ in 0..u32::from_be_bytes(ids[1..5].try_into().unwrap()) {
        let len = u32::from_be_bytes(ids[at..at + 4].try_into().unwrap()) as usize;
        blobs.push(ids[at + 4..at + 4 + len].to_vec());
        at += 4 + len;
        let clen = u32::from_be_bytes(ids[at..at + 4].try_into().unwrap()) as usize;
        at += 4 + clen;
    }
    (daemon, agent, blobs)
}

fn sign_request(blob: &[u8], data: &[u8]) -> Vec<u8> {
    let mut msg = vec![13u8];
    msg.extend((blob.len() as u32).to_be_bytes());
    msg.extend(blob);
    msg.extend((data.len() as u32).to_be_bytes());
    msg.extend(data);
    msg.extend(0u32.to_be_bytes());
    msg
}

fn request(s: &mut UnixStream, body: &[u8]) -> Vec<u8> {
    let mut m = (body.len() as u32).to_be_bytes().to_vec();
    m.extend(body);
    s.write_all(&m).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut out = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut out).unwrap();
    out
}
