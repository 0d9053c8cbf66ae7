//! TLS Protect Cloud import jobs as the vendor's clients build them: keys encrypted by
//! `openssl pkcs8`, their password sealed to the daemon's DEK by PyNaCl (the vendor's own
//! Python sample does the same), posted over HTTPS with the face's API key header.

use super::Daemon;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The TLS Protect Cloud API key header of the test principals (`tlspc-client`).
pub const HEADER: &str = "tppl-api-key: tlspc-key";

/// libsodium sealed box to `public_b64`, by PyNaCl.
pub fn seal(public_b64: &str, data: &[u8]) -> String {
    let script = "import sys,base64\nfrom nacl.public import PublicKey, SealedBox\nfrom nacl.encoding import Base64Encoder\n\
                  pk = PublicKey(sys.argv[1].encode(), encoder=Base64Encoder)\n\
                  sys.stdout.write(base64.b64encode(SealedBox(pk).encrypt(sys.stdin.buffer.read())).decode())";
    let mut c = Command::new("python3").args(["-c", script, public_b64]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(c.stdin.as_mut().unwrap(), data).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "PyNaCl is required (scripts/deps-test installs it)");
    String::from_utf8(out.stdout).unwrap()
}

pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// One import item: a P-256 key with its certificate (CN `<name>.example.com`),
/// password-encrypted, the password sealed to the DEK.
pub fn item(d: &Daemon, dek_public: &str, name: &str) -> Value {
    let dir = d.dir.path().join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    let key = format!("{name}.key");
    openssl(&dir, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &key]);
    openssl(
        &dir,
        &["req", "-x509", "-new", "-key", &key, "-subj", &format!("/CN={name}.example.com"), "-days", "30", "-out", &format!("{name}.crt")],
    );
    openssl(&dir, &["pkcs8", "-topk8", "-in", &key, "-v2", "aes-256-cbc", "-passout", "pass:s3cret!", "-out", &format!("{name}.enc")]);
    json!({
        "certificate": std::fs::read_to_string(dir.join(format!("{name}.crt"))).unwrap(),
        "passwordEncryptedPrivateKey": std::fs::read_to_string(dir.join(format!("{name}.enc"))).unwrap(),
        "dekEncryptedPassword": seal(dek_public, b"s3cret!"),
    })
}

/// The daemon's edge instance id, DEK id and DEK public key.
pub fn edge(d: &Daemon) -> (String, String, String) {
    let (s, v) = d.curl_https("GET", "/v1/edgeinstances", None, &["-H", HEADER]);
    assert_eq!(s, 200, "{v}");
    let (edge_id, key_id) =
        (v["edgeInstances"][0]["id"].as_str().unwrap().to_string(), v["edgeInstances"][0]["encryptionKeyId"].as_str().unwrap().to_string());
    let (_, k) = d.curl_https("GET", &format!("/v1/edgeencryptionkeys/{key_id}"), None, &["-H", HEADER]);
    (edge_id, key_id, k["key"].as_str().unwrap().to_string())
}

/// An import request body for `names`, in a file for curl's `--data @file`.
pub fn body(d: &Daemon, edge: &(String, String, String), names: &[&str]) -> PathBuf {
    let items: Vec<Value> = names.iter().map(|n| item(d, &edge.2, n)).collect();
    let body = json!({"edgeInstanceId": edge.0, "encryptionKeyId": edge.1, "importInformation": items}).to_string();
    let f = d.dir.path().join("body.json");
    std::fs::write(&f, body).unwrap();
    f
}

/// Posts the body in `file`; returns the job id.
pub fn submit(d: &Daemon, file: &Path) -> String {
    let (s, v) = d.curl_https("POST", "/outagedetection/v1/certificates/imports", Some(&format!("@{}", file.display())), &["-H", HEADER]);
    assert_eq!(s, 201, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// The job as the face shows it.
pub fn job(d: &Daemon, id: &str) -> Value {
    d.curl_https("GET", &format!("/outagedetection/v1/certificates/imports/{id}"), None, &["-H", HEADER]).1
}

/// Polls the job until COMPLETED or FAILED, for at most `limit`.
pub fn wait_finished(d: &Daemon, id: &str, limit: Duration) -> Value {
    let start = Instant::now();
    loop {
        let v = job(d, id);
        if v["status"] == "COMPLETED" || v["status"] == "FAILED" {
            return v;
        }
        assert!(start.elapsed() < limit, "import job {id} did not finish in {limit:?}: {v}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}
