//! Import batches next to the raw token import of the same keys through cryptoki, 2 threads
//! with a session each, in the same run:
//! - TLS Protect Cloud: 100 password-encrypted RSA-2048 keys with certificates (PBES2,
//!   PBKDF2-SHA256 10,000 iterations, AES-256-CBC: what vcert writes), POST to COMPLETED;
//!   raw: C_CreateObject ×3 per key (keys pre-decoded).
//! - KPS: `POST /v3/{project}/keypairs/batch-import` of 100 P-256 private keys (PEM); raw:
//!   C_CreateObject ×2 per key.
//!
//! Rounds alternate raw and daemon (fresh tokens and daemon each round), so the machine's load
//! drifts over both alike; medians with min–max at the end.
//!
//!     cargo bench --bench import_batch                        # 5 rounds of both
//!     KEYPORT_BENCH_ROUNDS=7 KEYPORT_BENCH_ONLY=kps cargo bench --bench import_batch

mod common;

use base64::Engine;
use cryptoki::object::{Attribute, CertificateType, KeyType, ObjectClass};
use keyport::material::key::PrivateKey;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const N: usize = 100;

fn sh(dir: &Path, cmd: &str) {
    let st = Command::new("sh").current_dir(dir).args(["-c", cmd]).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
    assert!(st.success(), "{cmd}");
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("import_batch: run with `cargo bench --bench import_batch`");
        return;
    }
    let rounds = common::env_usize("KEYPORT_BENCH_ROUNDS", 5);
    let only = std::env::var("KEYPORT_BENCH_ONLY").unwrap_or_default();
    let (tlspc, kps) = (only.is_empty() || only == "tlspc", only.is_empty() || only == "kps");
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let t = Instant::now();
    if tlspc {
        // Two openssl pipelines at once: key, vcert-style encrypted PKCS#8, self-signed certificate.
        sh(
            &keys,
            &format!(
                "seq 0 {} | xargs -P 2 -I@ sh -c 'openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out k@.pem && \
             openssl pkcs8 -topk8 -in k@.pem -v2 aes-256-cbc -v2prf hmacWithSHA256 -iter 10000 -passout pass:bench-pass -out e@.pem && \
             openssl req -x509 -new -key k@.pem -subj /CN=bench@.example.com -days 30 -out c@.pem'",
                N - 1
            ),
        );
    }
    if kps {
        sh(&keys, &format!("seq 0 {} | xargs -P 2 -I@ openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out p@.pem", N - 1));
    }
    println!("# {N} keys per batch made by openssl in {:.1} s; {rounds} rounds", t.elapsed().as_secs_f64());
    let mut rows: Vec<(&str, Vec<f64>)> = Vec::new();
    let mut push = |name: &'static str, v: f64| match rows.iter_mut().find(|r| r.0 == name) {
        Some(r) => r.1.push(v),
        None => rows.push((name, vec![v])),
    };
    for round in 0..rounds {
        let d = dir.path().join(format!("round{round}"));
        if tlspc {
            push("tlspc raw", raw(&d.join("tlspc"), &keys));
            push("tlspc keyport", daemon(&d.join("tlspc"), &keys));
        }
        if kps {
            push("kps raw", kps_raw(&d.join("kps"), &keys));
            push("kps keyport", kps_daemon(&d.join("kps"), &keys));
        }
        let _ = std::fs::remove_dir_all(&d);
    }
    println!("# seconds per batch of {N}: median (min-max) over {rounds} rounds; keys/s of the median");
    for (name, v) in &rows {
        let (med, min, max) = stats(v);
        println!("{name}: {med:.2} s ({min:.2}-{max:.2}), {:.1} keys/s; rounds {v:.2?}", N as f64 / med);
    }
    for face in ["tlspc", "kps"] {
        let get = |w: &str| rows.iter().find(|r| r.0 == format!("{face} {w}")).map(|r| r.1.clone());
        if let (Some(raw), Some(kp)) = (get("raw"), get("keyport")) {
            let per_round: Vec<f64> = raw.iter().zip(&kp).map(|(r, k)| r / k).collect();
            let (med, min, max) = stats(&per_round);
            println!(
                "{face}: keyport / raw (rate) = {:.2} of the medians; per round median {med:.2} ({min:.2}-{max:.2})",
                stats(&raw).0 / stats(&kp).0
            );
        }
    }
}

fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let med = if s.len() % 2 == 1 { s[s.len() / 2] } else { (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0 };
    (med, s[0], s[s.len() - 1])
}

fn raw(dir: &Path, keys: &Path) -> f64 {
    let material: Vec<(PrivateKey, Vec<u8>, Vec<u8>)> = (0..N)
        .map(|i| {
            let k = keyport::material::pkcs::read_private_key(&std::fs::read(keys.join(format!("k{i}.pem"))).unwrap(), None).unwrap();
            let c = keyport::material::x509::parse_certificates(&std::fs::read(keys.join(format!("c{i}.pem"))).unwrap()).unwrap().remove(0);
            (k, c.der, c.subject_der)
        })
        .collect();
    two_threads(dir, "RSA-2048 keys + certificates", |s, i| {
        let (PrivateKey::Rsa(k), cert, subject) = &material[i] else { unreachable!() };
        let id = format!("raw-{i}").into_bytes();
        s.create_object(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Id(id.clone()),
            Attribute::Modulus(k.n.clone()),
            Attribute::PublicExponent(k.e.clone()),
            Attribute::PrivateExponent(k.d.to_vec()),
            Attribute::Prime1(k.p.to_vec()),
            Attribute::Prime2(k.q.to_vec()),
            Attribute::Exponent1(k.dp.to_vec()),
            Attribute::Exponent2(k.dq.to_vec()),
            Attribute::Coefficient(k.qinv.to_vec()),
        ])
        .unwrap();
        s.create_object(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Token(true),
            Attribute::Id(id.clone()),
            Attribute::Modulus(k.n.clone()),
            Attribute::PublicExponent(k.e.clone()),
        ])
        .unwrap();
        s.create_object(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Id(id),
            Attribute::Value(cert.clone()),
            Attribute::Subject(subject.clone()),
        ])
        .unwrap();
    })
}

/// The raw baseline's frame: `each(session, i)` for every item, split over two threads with a
/// session each (as the daemon's two token workers), timed from the first call to the last.
fn two_threads(dir: &Path, what: &str, each: impl Fn(&cryptoki::session::Session, usize) + Sync) -> f64 {
    let (p, slot, _s0) = common::raw_token(dir);
    let start = Instant::now();
    std::thread::scope(|sc| {
        for w in 0..2 {
            let (p, each) = (p.clone(), &each);
            sc.spawn(move || {
                let s = p.open_rw_session(slot).unwrap();
                for i in (w..N).step_by(2) {
                    each(&s, i);
                }
            });
        }
    });
    let e = start.elapsed();
    println!("raw cryptoki: {N} {what} into the token (2 threads): {:.2} s ({:.1} keys/s)", e.as_secs_f64(), N as f64 / e.as_secs_f64());
    common::close_raw_token(p);
    e.as_secs_f64()
}

fn daemon(dir: &Path, keys: &Path) -> f64 {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let daemon = common::BenchDaemon::start(
        &dir.join("daemon"),
        &format!("tcp = \"127.0.0.1:{port}\"\ntls = {{ mode = \"plain\" }}"),
        "sessions = 2",
        "[limits]\nmax_body_bytes = 16777216",
    );
    let sock = daemon.socket.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let e = rt.block_on(async {
        let (_, edges) = keyport::cli::request(&sock, "GET", "/v1/edgeinstances", None).await.unwrap();
        let (edge, key_id) = (
            edges["edgeInstances"][0]["id"].as_str().unwrap().to_string(),
            edges["edgeInstances"][0]["encryptionKeyId"].as_str().unwrap().to_string(),
        );
        let (_, k) = keyport::cli::request(&sock, "GET", &format!("/v1/edgeencryptionkeys/{key_id}"), None).await.unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let pk: [u8; 32] = b64.decode(k["key"].as_str().unwrap()).unwrap().try_into().unwrap();
        let sealed = crypto_box::PublicKey::from(pk).seal(&mut rand::rngs::OsRng, b"bench-pass").unwrap();
        let password = b64.encode(sealed);
        let items: Vec<_> = (0..N)
            .map(|i| {
                serde_json::json!({
                    "certificate": std::fs::read_to_string(keys.join(format!("c{i}.pem"))).unwrap(),
                    "passwordEncryptedPrivateKey": std::fs::read_to_string(keys.join(format!("e{i}.pem"))).unwrap(),
                    "dekEncryptedPassword": password,
                })
            })
            .collect();
        let body = serde_json::json!({"edgeInstanceId": edge, "encryptionKeyId": key_id, "importInformation": items});
        let start = Instant::now();
        let (status, v) = keyport::cli::request(&sock, "POST", "/outagedetection/v1/certificates/imports", Some(body)).await.unwrap();
        assert_eq!(status, 201, "{v}");
        let accepted = start.elapsed();
        let id = v["id"].as_str().unwrap().to_string();
        loop {
            let (_, j) =
                keyport::cli::request(&sock, "GET", &format!("/outagedetection/v1/certificates/imports/{id}"), None).await.unwrap();
            if j["status"] == "COMPLETED" || j["status"] == "FAILED" {
                let imported = j["results"].as_array().unwrap().iter().filter(|r| r["status"] == "IMPORTED").count();
                assert_eq!(imported, N, "{j}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let e = start.elapsed();
        println!("daemon: POST of {N} items answered 201 in {:.1} ms", accepted.as_secs_f64() * 1000.0);
        println!("daemon: {N}-item TLSPC import, POST to COMPLETED: {:.2} s ({:.1} keys/s)", e.as_secs_f64(), N as f64 / e.as_secs_f64());
        e
    });
    e.as_secs_f64()
}

fn kps_raw(dir: &Path, keys: &Path) -> f64 {
    let material: Vec<PrivateKey> = (0..N)
        .map(|i| keyport::material::pkcs::read_private_key(&std::fs::read(keys.join(format!("p{i}.pem"))).unwrap(), None).unwrap())
        .collect();
    let params = keyport::material::algorithm::OID_P256.to_vec();
    two_threads(dir, "P-256 keys", |s, i| {
        let PrivateKey::Ec { d, point, .. } = &material[i] else { unreachable!() };
        let id = format!("raw-{i}").into_bytes();
        s.create_object(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(KeyType::EC),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Id(id.clone()),
            Attribute::EcParams(params.clone()),
            Attribute::Value(d.to_vec()),
        ])
        .unwrap();
        let mut ec_point = vec![0x04, point.len() as u8];
        ec_point.extend_from_slice(point);
        s.create_object(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::EC),
            Attribute::Token(true),
            Attribute::Verify(true),
            Attribute::Id(id),
            Attribute::EcParams(params.clone()),
            Attribute::EcPoint(ec_point),
        ])
        .unwrap();
    })
}

fn kps_daemon(dir: &Path, keys: &Path) -> f64 {
    let daemon = common::BenchDaemon::start(
        &dir.join("daemon"),
        "",
        "sessions = 2",
        "[limits]\nmax_body_bytes = 16777216\n[kps.projects.bench]\nnamespace = \"kps\"",
    );
    let sock = daemon.socket.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let items: Vec<_> = (0..N)
        .map(|i| {
            serde_json::json!({"keypair": {
                "name": format!("k{i}"),
                "key_protection": {"private_key": std::fs::read_to_string(keys.join(format!("p{i}.pem"))).unwrap(), "encryption": {"type": "default"}},
            }})
        })
        .collect();
    let e = rt.block_on(async {
        let start = Instant::now();
        let (status, v) =
            keyport::cli::request(&sock, "POST", "/v3/bench/keypairs/batch-import", Some(serde_json::Value::Array(items))).await.unwrap();
        let e = start.elapsed();
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["succeeded_keypairs"].as_array().map(Vec::len), Some(N), "{v}");
        e
    });
    println!("daemon: KPS batch import of {N} P-256 keys: {:.2} s ({:.1} keys/s)", e.as_secs_f64(), N as f64 / e.as_secs_f64());
    e.as_secs_f64()
}
