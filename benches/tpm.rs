//! P-256 generation and signing on a TPM 2.0 (swtpm + tpm2-abrmd + tpm2-pkcs11, the tests'
//! harness `tests/common/tpm.rs`) through keyport, next to raw cryptoki on the same TPM, in one
//! run, interleaved so the machine's load drifts over both alike.
//!
//!     cargo bench --bench tpm                             # N=8 generations, 160 signatures, 5 rounds
//!     KEYPORT_BENCH_N=12 KEYPORT_BENCH_ROUNDS=3 cargo bench --bench tpm
//!
//! Each figure is the median of the rounds, with their min–max. N × rounds stays under ~40: tpm2-pkcs11 keeps every key pair a process has used loaded in
//! the TPM, and tpm2-abrmd allows at most 100 transient objects per client (`--max-transients`).
//!
//! One worker on each side: a TPM executes one command at a time (docs/pkcs11.md §4: sign is
//! the same with 1 or 2 threads). The keyport figure is the whole path a caller pays: HTTP over
//! the Unix socket (one kept-alive connection), authorization, the token call, and for
//! generation the intent row, the commit and its audit row; the raw figure is the PKCS#11 call.

#[path = "../tests/common/mod.rs"]
mod tc;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use sha2::Digest;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

const P256: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("tpm: run with `cargo bench --bench tpm`");
        return;
    }
    let n: usize = std::env::var("KEYPORT_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let rounds: usize = std::env::var("KEYPORT_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let tpm = tc::tpm::Tpm::start();
    let mut d = tc::Daemon::config_tokens(&tpm.token_toml("tpm"), "");
    d.env.extend(tpm.env());
    d.spawn();
    println!("# keyport TPM bench: N={n} generations and {} signatures per figure, 1 worker, {rounds} rounds, swtpm", n * 20);

    // Raw cryptoki in this process, on the same TPM through the same resource manager.
    for (k, v) in tpm.env() {
        std::env::set_var(k, v);
    }
    let p = Pkcs11::new(tc::tpm::module()).unwrap();
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)).unwrap();
    let slot = p.get_slots_with_initialized_token().unwrap()[0];
    let s = p.open_rw_session(slot).unwrap();
    s.login(UserType::User, Some(&AuthPin::new(tpm.pin.clone().into()))).unwrap();

    let mut conn = UnixStream::connect(&d.socket).unwrap();
    let key = http(&mut conn, "POST", "/keyport/v1/keys", r#"{"name":"signer","algorithm":"ec-p256","exportable":false}"#);
    let key_id = json_str(&key, "id");
    let (_, raw_key) = s
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[Attribute::Token(true), Attribute::EcParams(P256.to_vec()), Attribute::Verify(true), Attribute::Id(b"bench-signer".to_vec())],
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Sign(true),
                Attribute::Id(b"bench-signer".to_vec()),
            ],
        )
        .unwrap();
    let digest = sha2::Sha256::digest(b"hello").to_vec();
    let sign_body = r#"{"data":"aGVsbG8="}"#;
    let sign_path = format!("/keyport/v1/keys/{key_id}/sign");

    let (mut rg, mut kg, mut rs, mut ks) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut made = Vec::new();
    for round in 0..rounds {
        let start = Instant::now();
        for i in 0..n {
            let body = format!(r#"{{"name":"k-{round}-{i}","algorithm":"ec-p256","exportable":false}}"#);
            http(&mut conn, "POST", "/keyport/v1/keys", &body);
        }
        kg.push(report("keyport: POST /keyport/v1/keys ec-p256", n, start.elapsed()));
        let start = Instant::now();
        for i in 0..n {
            let id = format!("raw-{round}-{i}").into_bytes();
            let (pu, pr) = s
                .generate_key_pair(
                    &Mechanism::EccKeyPairGen,
                    &[Attribute::Token(true), Attribute::EcParams(P256.to_vec()), Attribute::Verify(true), Attribute::Id(id.clone())],
                    &[
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Extractable(false),
                        Attribute::Sign(true),
                        Attribute::Id(id),
                    ],
                )
                .unwrap();
            made.push((pu, pr));
        }
        rg.push(report("raw cryptoki: C_GenerateKeyPair P-256 (token objects)", n, start.elapsed()));
        let start = Instant::now();
        for _ in 0..n * 20 {
            s.sign(&Mechanism::Ecdsa, raw_key, &digest).unwrap();
        }
        rs.push(report("raw cryptoki: C_Sign CKM_ECDSA P-256 (SHA-256 digest)", n * 20, start.elapsed()));
        let start = Instant::now();
        for _ in 0..n * 20 {
            http(&mut conn, "POST", &sign_path, sign_body);
        }
        ks.push(report("keyport: POST /keyport/v1/keys/{id}/sign ec-p256", n * 20, start.elapsed()));
    }
    for (pu, pr) in made {
        let _ = s.destroy_object(pr);
        let _ = s.destroy_object(pu);
    }
    drop(s);
    let _ = p.finalize();
    // Per-round ratios: both sides of a round ran within seconds of each other, so the
    // machine's drift between rounds cancels out of them.
    let mut gr: Vec<f64> = kg.iter().zip(&rg).map(|(k, r)| 100.0 * k / r).collect();
    let mut sr: Vec<f64> = ks.iter().zip(&rs).map(|(k, r)| 100.0 * k / r).collect();
    let (gr, sr) = (spread(&mut gr), spread(&mut sr));
    println!(
        "per-round keyport/raw, median (min–max): generate {:.0} % ({:.0}–{:.0} %), sign {:.0} % ({:.0}–{:.0} %)",
        gr.0, gr.1, gr.2, sr.0, sr.1, sr.2
    );
    let (rg, kg, rs, ks) = (spread(&mut rg), spread(&mut kg), spread(&mut rs), spread(&mut ks));
    println!(
        "median (min–max) of {rounds} rounds, generate P-256: raw {:.1} ({:.1}–{:.1}) /s, keyport {:.1} ({:.1}–{:.1}) /s, keyport/raw {:.0} %",
        rg.0,
        rg.1,
        rg.2,
        kg.0,
        kg.1,
        kg.2,
        100.0 * kg.0 / rg.0
    );
    println!(
        "median (min–max) of {rounds} rounds, sign P-256: raw {:.1} ({:.1}–{:.1}) /s, keyport {:.1} ({:.1}–{:.1}) /s, keyport/raw {:.0} %",
        rs.0,
        rs.1,
        rs.2,
        ks.0,
        ks.1,
        ks.2,
        100.0 * ks.0 / rs.0
    );
    drop(d);
    drop(tpm);
}

/// Median, min and max.
fn spread(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn report(what: &str, count: usize, elapsed: Duration) -> f64 {
    let rate = count as f64 / elapsed.as_secs_f64();
    println!("{what:<62} {rate:>9.1} /s  ({count} in {:.2} s)", elapsed.as_secs_f64());
    rate
}

/// One HTTP/1.1 request on a kept-alive connection; panics unless 2xx. Returns the body.
fn http(conn: &mut UnixStream, method: &str, path: &str, body: &str) -> String {
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        if h == "\r\n" {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
    }
    let mut b = vec![0u8; len];
    r.read_exact(&mut b).unwrap();
    let b = String::from_utf8(b).unwrap();
    assert!(status.split(' ').nth(1).is_some_and(|c| c.starts_with('2')), "{status} {b}");
    b
}

fn json_str(body: &str, field: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v[field].as_str().unwrap().to_string()
}
