//! A TLS Protect Cloud import batch of 100 password-encrypted RSA-2048 keys with certificates
//! (PBES2, PBKDF2-SHA256 10,000 iterations, AES-256-CBC: what vcert writes), from POST to
//! COMPLETED, next to the raw token import of the same 100 keys and certificates through
//! cryptoki (C_CreateObject ×3 per key, 2 threads) in the same run.
//!
//!     cargo bench --bench import_batch

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
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let t = Instant::now();
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
    println!("# {N} RSA-2048 keys, encrypted and certified by openssl in {:.1} s", t.elapsed().as_secs_f64());
    raw(dir.path(), &keys);
    daemon(dir.path(), &keys);
}

fn raw(dir: &Path, keys: &Path) {
    let material: Vec<(PrivateKey, Vec<u8>, Vec<u8>)> = (0..N)
        .map(|i| {
            let k = keyport::material::pkcs::read_private_key(&std::fs::read(keys.join(format!("k{i}.pem"))).unwrap(), None).unwrap();
            let c = keyport::material::x509::parse_certificates(&std::fs::read(keys.join(format!("c{i}.pem"))).unwrap()).unwrap().remove(0);
            (k, c.der, c.subject_der)
        })
        .collect();
    let (p, slot, _s0) = common::raw_token(dir);
    let start = Instant::now();
    std::thread::scope(|sc| {
        for w in 0..2 {
            let (p, material) = (p.clone(), &material);
            sc.spawn(move || {
                let s = p.open_rw_session(slot).unwrap();
                for i in (w..N).step_by(2) {
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
                }
            });
        }
    });
    let e = start.elapsed();
    println!(
        "raw cryptoki: {N} RSA-2048 keys + certificates into the token (2 threads): {:.2} s ({:.1} keys/s)",
        e.as_secs_f64(),
        N as f64 / e.as_secs_f64()
    );
    common::close_raw_token(p);
}

fn daemon(dir: &Path, keys: &Path) {
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
    rt.block_on(async {
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
    });
}
