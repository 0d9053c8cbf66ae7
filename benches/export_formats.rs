//! Export latency per format: end to end through the daemon (`POST /keyport/v1/keys/{id}/export`
//! over the Unix socket: authorization, C_WrapKey, software unwrap, encode, encrypt, audit), and
//! the encoder alone in-process with and without a passphrase, whose difference is the KDF and
//! cipher share.
//!
//!     cargo bench --bench export_formats

mod common;

use keyport::material::key::PrivateKey;
use keyport::material::ssh::{write_openssh, write_ppk, write_sshcom};
use std::time::{Duration, Instant};

const ROUNDS: u32 = 20;

fn mean<F: FnMut()>(n: u32, mut f: F) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed() / n
}

fn encode(format: &str, key: &PrivateKey, pass: Option<&[u8]>) {
    match format {
        "pkcs8" => {
            let der = keyport::material::pkcs::to_pkcs8_der(key).unwrap();
            if let Some(p) = pass {
                keyport::material::pkcs::encrypt_pkcs8_pem(&der, p).unwrap();
            }
        }
        "pkcs1" => {
            keyport::material::pkcs::write_traditional::write_traditional_pem(key, pass).unwrap();
        }
        "openssh" => {
            write_openssh::write(key, "bench", pass).unwrap();
        }
        "putty" => {
            write_ppk::write(key, "bench", pass, write_ppk::PpkVersion::V3).unwrap();
        }
        "putty-v2" => {
            write_ppk::write(key, "bench", pass, write_ppk::PpkVersion::V2).unwrap();
        }
        "ssh2" => {
            write_sshcom::write(key, "bench", pass, &write_sshcom::Style::Ssh2).unwrap();
        }
        _ => unreachable!(),
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("export_formats: run with `cargo bench --bench export_formats`");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let daemon = common::BenchDaemon::start(d, "", "", "");
    let sock = daemon.socket.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    println!("# mean of {ROUNDS} exports each; RSA-2048 and Ed25519 keys generated exportable in SoftHSM");
    println!("{:<10} {:<9} {:>12} {:>14} {:>14} {:>12}", "format", "key", "daemon (ms)", "encode+KDF ms", "encode only ms", "KDF share");
    rt.block_on(async {
        for alg in ["rsa-2048", "ed25519"] {
            let (_, k) = keyport::cli::request(
                &sock,
                "POST",
                "/keyport/v1/keys",
                Some(serde_json::json!({"name": format!("b-{alg}"), "algorithm": alg, "exportable": true})),
            )
            .await
            .unwrap();
            let id = k["id"].as_str().unwrap().to_string();
            // One export to get the key material for the in-process encoder timings.
            let (_, v) = keyport::cli::request(
                &sock,
                "POST",
                &format!("/keyport/v1/keys/{id}/export"),
                Some(serde_json::json!({"format": "pkcs8", "passphrase": "bench-passphrase"})),
            )
            .await
            .unwrap();
            let key = keyport::material::pkcs::read_private_key(v["private_key"].as_str().unwrap().as_bytes(), Some(b"bench-passphrase"))
                .unwrap();
            for format in ["pkcs8", "pkcs1", "openssh", "putty", "putty-v2", "ssh2"] {
                if format == "ssh2" && alg != "rsa-2048" || format == "pkcs1" && alg == "ed25519" {
                    continue;
                }
                let native = if format == "pkcs1" { "pkcs1" } else { format };
                let t = Instant::now();
                for _ in 0..ROUNDS {
                    let (s, v) = keyport::cli::request(
                        &sock,
                        "POST",
                        &format!("/keyport/v1/keys/{id}/export"),
                        Some(serde_json::json!({"format": native, "passphrase": "bench-passphrase"})),
                    )
                    .await
                    .unwrap();
                    assert_eq!(s, 200, "{format}: {v}");
                }
                let daemon = t.elapsed() / ROUNDS;
                let with = mean(ROUNDS, || encode(format, &key, Some(b"bench-passphrase")));
                let without = mean(ROUNDS, || encode(format, &key, None));
                let kdf = with.saturating_sub(without);
                println!(
                    "{format:<10} {alg:<9} {:>12.2} {:>14.2} {:>14.3} {:>11.0}%",
                    daemon.as_secs_f64() * 1e3,
                    with.as_secs_f64() * 1e3,
                    without.as_secs_f64() * 1e3,
                    100.0 * kdf.as_secs_f64() / daemon.as_secs_f64()
                );
            }
        }
    });
}
