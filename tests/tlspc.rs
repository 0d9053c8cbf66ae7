//! The TLS Protect Cloud face, driven over HTTPS the way the vendor's clients call it: keys made
//! by openssl (and ssh-keygen), passwords and keys sealed to the DEK by PyNaCl (the vendor's own
//! Python sample uses it), results checked in the token with pkcs11-tool.

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "tppl-api-key: tlspc-key";

fn tools() {
    require("curl");
    require("openssl");
    require("pkcs11-tool");
    require("python3");
    let ok = Command::new("python3").args(["-c", "import nacl.public"]).status().is_ok_and(|s| s.success());
    assert!(ok, "PyNaCl is required (scripts/deps-test installs it)");
}

/// libsodium sealed box to `public_b64`, by PyNaCl.
fn seal(public_b64: &str, data: &[u8]) -> String {
    let script = "import sys,base64\nfrom nacl.public import PublicKey, SealedBox\nfrom nacl.encoding import Base64Encoder\n\
                  pk = PublicKey(sys.argv[1].encode(), encoder=Base64Encoder)\n\
                  sys.stdout.write(base64.b64encode(SealedBox(pk).encrypt(sys.stdin.buffer.read())).decode())";
    let mut c = Command::new("python3").args(["-c", script, public_b64]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(c.stdin.as_mut().unwrap(), data).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A key and a self-signed certificate for it: `<name>.key` (PEM PKCS#8), `<name>.crt`.
fn key_and_cert(dir: &Path, name: &str, alg: &[&str]) {
    let key = format!("{name}.key");
    let mut args = vec!["genpkey"];
    args.extend_from_slice(alg);
    args.extend_from_slice(&["-out", &key]);
    openssl(dir, &args);
    openssl(
        dir,
        &["req", "-x509", "-new", "-key", &key, "-subj", &format!("/CN={name}.example.com"), "-days", "30", "-out", &format!("{name}.crt")],
    );
}

fn sha256_hex_bytes(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

fn read(dir: &Path, f: &str) -> String {
    std::fs::read_to_string(dir.join(f)).unwrap()
}

fn cert_sha1(dir: &Path, crt: &str) -> String {
    let out = Command::new("openssl").current_dir(dir).args(["x509", "-in", crt, "-noout", "-fingerprint", "-sha1"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().rsplit_once('=').unwrap().1.replace(':', "")
}

struct Edge {
    edge_id: String,
    key_id: String,
    public: String,
}

fn edge(d: &Daemon) -> Edge {
    let (s, v) = d.curl_https("GET", "/v1/edgeinstances", None, &["-H", KEY]);
    assert_eq!(s, 200, "{v}");
    let e = &v["edgeInstances"][0];
    let (edge_id, key_id) = (e["id"].as_str().unwrap().to_string(), e["encryptionKeyId"].as_str().unwrap().to_string());
    for id in [&edge_id, &key_id] {
        assert!(id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'), "URL-safe id: {id}");
    }
    let (s, k) = d.curl_https("GET", &format!("/v1/edgeencryptionkeys/{key_id}"), None, &["-H", KEY]);
    assert_eq!(s, 200, "{k}");
    let public = k["key"].as_str().unwrap().to_string();
    use base64::Engine;
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(&public).unwrap().len(), 32, "raw 32-byte key, standard base64");
    Edge { edge_id, key_id, public }
}

fn submit(d: &Daemon, e: &Edge, items: Vec<Value>) -> (u16, Value) {
    let body = json!({"edgeInstanceId": e.edge_id, "encryptionKeyId": e.key_id, "importInformation": items}).to_string();
    let f = d.dir.path().join("body.json");
    std::fs::write(&f, body).unwrap();
    d.curl_https("POST", "/outagedetection/v1/certificates/imports", Some(&format!("@{}", f.display())), &["-H", KEY])
}

fn wait_job(d: &Daemon, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let (s, v) = d.curl_https("GET", &format!("/outagedetection/v1/certificates/imports/{id}"), None, &["-H", KEY]);
        assert_eq!(s, 200, "{v}");
        if v["status"] == "COMPLETED" || v["status"] == "FAILED" {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "job did not finish: {v}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn password_item(dir: &Path, e: &Edge, name: &str, cipher: &[&str]) -> Value {
    let mut args = vec!["pkcs8", "-topk8", "-in"];
    let key = format!("{name}.key");
    let enc = format!("{name}.enc.pem");
    args.push(&key);
    args.extend_from_slice(cipher);
    args.extend_from_slice(&["-passout", "pass:s3cret!", "-out", &enc]);
    openssl(dir, &args);
    json!({
        "certificate": read(dir, &format!("{name}.crt")),
        "passwordEncryptedPrivateKey": read(dir, &enc),
        "dekEncryptedPassword": seal(&e.public, b"s3cret!"),
    })
}

#[test]
fn edge_instance_and_encryption_key_as_the_vendor_serves_them() {
    tools();
    let d = Daemon::start("");
    let e = edge(&d);
    let (s, v) = d.curl_https("GET", &format!("/v1/edgeinstances/{}", e.edge_id), None, &["-H", KEY]);
    assert_eq!(s, 200);
    assert_eq!(v["encryptionKeyId"], e.key_id.as_str());
    assert_eq!(v["edgeStatus"], "ACTIVE");
    let (s, v) = d.curl_https("GET", "/v1/edgeencryptionkeys", None, &["-H", KEY]);
    assert_eq!(s, 200);
    assert_eq!(v["encryptionKeys"][0]["id"], e.key_id.as_str());
    let (s, v) = d.curl_https("GET", "/v1/edgeinstances/nope", None, &["-H", KEY]);
    assert_eq!(s, 404);
    assert!(v["errors"][0]["code"].is_i64() && v["errors"][0]["message"].is_string() && v["errors"][0]["args"].is_array(), "{v}");
    let (s, v) = d.curl_https("GET", "/v1/useraccounts", None, &["-H", KEY]);
    assert_eq!(s, 200, "vcert and VenafiPS check the key here first: {v}");
    assert_eq!(v["user"]["username"], "tlspc-client");
    let (s, v) = d.curl_https("GET", "/v1/edgeinstances", None, &[]);
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["errors"][0]["code"], 1004);
    assert!(v["errors"][0]["message"].as_str().unwrap().contains("tppl-api-key"));
    // The DEK survives a restart (same ids, same public key).
    let mut d = d;
    assert!(d.stop().success());
    d.spawn();
    let again = edge(&d);
    assert_eq!((again.edge_id, again.key_id, again.public), (e.edge_id, e.key_id, e.public));
    // Its private half is not in the store in the clear: the store holds 32 + 28 bytes sealed.
    let db = std::fs::read(d.dir.path().join("state/keyport.db")).unwrap();
    assert!(!db.windows(8).any(|w| w == b"-----BEG"), "no PEM in the store");
}

#[test]
fn a_batch_of_every_kind_imports_with_certificates_linked() {
    tools();
    let d = Daemon::start("");
    let e = edge(&d);
    let dir = d.dir.path().join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    key_and_cert(&dir, "rsa", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
    key_and_cert(&dir, "ec", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"]);
    key_and_cert(&dir, "ed", &["-algorithm", "ED25519"]);
    key_and_cert(&dir, "p12", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    openssl(&dir, &["pkcs12", "-export", "-inkey", "p12.key", "-in", "p12.crt", "-passout", "pass:p12pass", "-out", "p12.pfx"]);
    openssl(&dir, &["pkey", "-in", "ed.key", "-outform", "DER", "-out", "ed.der"]);
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    // SSH keys, as rotation hooks hold them: an encrypted OpenSSH key from ssh-keygen, and a
    // PuTTY key sealed whole to the DEK. No certificate: the key alone is imported.
    let run = |c: &mut Command| assert!(c.current_dir(&dir).status().unwrap().success());
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "sshpass", "-C", "hook", "-f", "ssh_ed"]));
    run(Command::new("ssh-keygen").args(["-q", "-t", "ecdsa", "-b", "256", "-N", "", "-f", "ssh_ec"]));
    std::fs::write(dir.join("pp"), "pppass").unwrap();
    run(Command::new("puttygen").args(["ssh_ec", "-O", "private", "--new-passphrase", "pp", "-o", "ec.ppk"]));
    // SPKI SHA-256 of each SSH public key, to find them in the inventory: the EC key through
    // ssh-keygen's PKCS#8 export and openssl; the Ed25519 key (which ssh-keygen cannot export
    // that way) from its 32 raw bytes under the RFC 8410 SPKI prefix.
    let ec_spki = {
        let pem = Command::new("ssh-keygen").current_dir(&dir).args(["-e", "-m", "PKCS8", "-f", "ssh_ec.pub"]).output().unwrap().stdout;
        std::fs::write(dir.join("ssh_ec.pem"), pem).unwrap();
        openssl(&dir, &["pkey", "-pubin", "-in", "ssh_ec.pem", "-outform", "DER", "-out", "ssh_ec.der"]);
        format!("sha256:{}", sha256_hex_bytes(&std::fs::read(dir.join("ssh_ec.der")).unwrap()))
    };
    let ed_spki = {
        use base64::Engine;
        let line = read(&dir, "ssh_ed.pub");
        let blob = base64::engine::general_purpose::STANDARD.decode(line.split_whitespace().nth(1).unwrap()).unwrap();
        let spki = [hex::decode("302a300506032b6570032100").unwrap(), blob[blob.len() - 32..].to_vec()].concat();
        format!("sha256:{}", sha256_hex_bytes(&spki))
    };
    let items = vec![
        password_item(&dir, &e, "rsa", &["-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA256"]),
        password_item(&dir, &e, "ec", &["-v2", "des3", "-v2prf", "hmacWithSHA1"]),
        json!({"certificate": read(&dir, "ed.crt"), "dekEncryptedPrivateKey": seal(&e.public, &std::fs::read(dir.join("ed.der")).unwrap())}),
        json!({"pkcs12Keystore": b64(&std::fs::read(dir.join("p12.pfx")).unwrap()), "dekEncryptedPassword": seal(&e.public, b"p12pass")}),
        json!({"passwordEncryptedPrivateKey": read(&dir, "ssh_ed"), "dekEncryptedPassword": seal(&e.public, b"sshpass")}),
        json!({"dekEncryptedPrivateKey": seal(&e.public, &std::fs::read(dir.join("ec.ppk")).unwrap()), "dekEncryptedPassword": seal(&e.public, b"pppass")}),
    ];
    let (s, v) = submit(&d, &e, items.clone());
    assert_eq!(s, 201, "{v}");
    assert!(v["creationDate"].as_str().unwrap().ends_with("+00:00"), "{v}");
    let job = wait_job(&d, v["id"].as_str().unwrap());
    assert_eq!(job["status"], "COMPLETED", "{job}");
    let results = job["results"].as_array().unwrap();
    assert_eq!(results.len(), 6);
    for r in &results[4..] {
        assert_eq!(r["status"], "IMPORTED", "{r}");
    }
    for (r, crt) in results.iter().zip(["rsa.crt", "ec.crt", "ed.crt", "p12.crt"]) {
        assert_eq!(r["status"], "IMPORTED", "{r}");
        assert_eq!(r["fingerprint"], cert_sha1(&dir, crt).as_str(), "SHA-1 of the certificate");
        assert!(r["certificateBytes"].is_string());
    }

    // In the token: each key's private, public and certificate objects share one CKA_ID.
    let (_, keys) = d.curl("GET", "/keyport/v1/keys", None, &[]);
    let keys = keys["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 6);
    let blocks = object_blocks(&d.pkcs11_objects());
    // The SSH keys are the keys ssh-keygen fingerprints (same public key in the token).
    let ssh_keys: Vec<_> = keys.iter().filter(|k| k["name"].as_str().unwrap().starts_with("key-")).collect();
    assert_eq!(ssh_keys.len(), 2, "keys without a certificate are named after their fingerprint");
    let mut fps: Vec<_> = ssh_keys.iter().map(|k| k["fingerprint"].as_str().unwrap().to_string()).collect();
    fps.sort();
    let mut want = vec![ec_spki, ed_spki];
    want.sort();
    assert_eq!(fps, want, "the imported SSH keys are the keys ssh-keygen made");
    for k in keys.iter().filter(|k| !k["name"].as_str().unwrap().starts_with("key-")) {
        assert_eq!(k["origin"], "imported");
        let id = k["id"].as_str().unwrap();
        let kinds: Vec<_> = blocks.iter().filter(|b| b.2 == id).map(|b| b.0.split(';').next().unwrap().to_string()).collect();
        assert_eq!(kinds.len(), 3, "{id}: {kinds:?}");
        assert!(kinds.iter().any(|k| k.starts_with("Certificate")), "{kinds:?}");
    }
    let names: Vec<_> = keys.iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"rsa.example.com"), "named after the certificate's CN: {names:?}");

    // The same keys again: SKIPPED, nothing new in the token.
    let (s, v) = submit(&d, &e, items);
    assert_eq!(s, 201);
    let job = wait_job(&d, v["id"].as_str().unwrap());
    assert!(job["results"].as_array().unwrap().iter().all(|r| r["status"] == "SKIPPED"), "{job}");
    assert_eq!(object_blocks(&d.pkcs11_objects()).len(), blocks.len());
    // Issue 16: no password, API key or private key (PEM body) reached the log or the store.
    let keys: Vec<String> = ["rsa.key", "ec.key", "ed.key", "p12.key"].iter().map(|f| read(&dir, f)).collect();
    let mut secrets: Vec<&str> = keys.iter().map(String::as_str).collect();
    secrets.extend(["s3cret!", "p12pass", "sshpass", "pppass", "tlspc-key"]);
    d.assert_no_secret_leaked(&secrets);
}

#[test]
fn bad_items_fail_alone_with_a_reason_and_leave_nothing() {
    tools();
    let d = Daemon::start("");
    let e = edge(&d);
    let dir = d.dir.path().join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    key_and_cert(&dir, "good", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    key_and_cert(&dir, "other", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    let before = object_blocks(&d.pkcs11_objects()).len();

    let good = password_item(&dir, &e, "good", &["-v2", "aes-128-cbc"]);
    let mut wrong_password = good.clone();
    wrong_password["dekEncryptedPassword"] = json!(seal(&e.public, b"not-it"));
    let stranger = Command::new("python3")
        .args([
            "-c",
            "from nacl.public import PrivateKey; import base64; print(base64.b64encode(bytes(PrivateKey.generate().public_key)).decode())",
        ])
        .output()
        .unwrap();
    let stranger = String::from_utf8(stranger.stdout).unwrap().trim().to_string();
    let mut other_dek = good.clone();
    other_dek["dekEncryptedPassword"] = json!(seal(&stranger, b"s3cret!"));
    let mut mismatch = good.clone();
    mismatch["certificate"] = json!(read(&dir, "other.crt"));
    openssl(&dir, &["pkey", "-in", "good.key", "-outform", "DER", "-out", "good.der"]);
    let der = std::fs::read(dir.join("good.der")).unwrap();
    let truncated = json!({"certificate": read(&dir, "good.crt"), "dekEncryptedPrivateKey": seal(&e.public, &der[..der.len() / 2])});

    let (s, v) = submit(&d, &e, vec![wrong_password, other_dek, mismatch, truncated]);
    assert_eq!(s, 201, "{v}");
    let job = wait_job(&d, v["id"].as_str().unwrap());
    assert_eq!(job["status"], "COMPLETED", "per-item failures are reported inside a COMPLETED job: {job}");
    let reasons: Vec<String> = job["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["status"], "FAILED");
            r["reason"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(reasons[0].contains("wrong password"), "{}", reasons[0]);
    assert!(reasons[1].contains("edgeencryptionkeys"), "says which key to seal to: {}", reasons[1]);
    assert!(reasons[2].contains("does not match"), "{}", reasons[2]);
    assert!(reasons[3].contains("truncated") || reasons[3].contains("malformed"), "{}", reasons[3]);
    for r in &reasons {
        assert!(!r.contains("s3cret"), "no secrets in reasons");
    }
    assert_eq!(object_blocks(&d.pkcs11_objects()).len(), before, "nothing reached the token");

    // Refused at the door, with the vendor's error shape: nothing is queued.
    let (s, v) = submit(&d, &e, vec![good.clone(); 101]);
    assert_eq!(s, 400, "{v}");
    assert!(v["errors"][0]["message"].as_str().unwrap().contains("at most 100"), "{v}");
    let mut garbage = good.clone();
    garbage["dekEncryptedPassword"] = json!("%%% not base64 %%%");
    let (s, v) = submit(&d, &e, vec![garbage]);
    assert_eq!(s, 400);
    assert!(v["errors"][0]["message"].as_str().unwrap().contains("importInformation[0].dekEncryptedPassword"), "{v}");
    let body =
        json!({"edgeInstanceId": "00000000-0000-4000-8000-000000000000", "encryptionKeyId": e.key_id, "importInformation": [good.clone()]});
    let (s, v) = d.curl_https("POST", "/outagedetection/v1/certificates/imports", Some(&body.to_string()), &["-H", KEY]);
    assert_eq!(s, 400);
    assert!(v["errors"][0]["message"].as_str().unwrap().contains("edgeInstanceId"), "{v}");
    let (s, _) = d.curl_https("POST", "/outagedetection/v1/certificates/imports", Some(&body.to_string()), &["-H", "tppl-api-key: wrong"]);
    assert_eq!(s, 401);
    // A 50 MB body: 413 in the vendor's shape, before any parsing.
    let big = d.dir.path().join("big.json");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(50 * 1024 * 1024).unwrap();
    let (s, v) = d.curl_https("POST", "/outagedetection/v1/certificates/imports", Some(&format!("@{}", big.display())), &["-H", KEY]);
    assert_eq!(s, 413, "{v}");
    assert!(v["errors"][0]["code"].is_i64());
    assert_eq!(object_blocks(&d.pkcs11_objects()).len(), before);
    let (_, keys) = d.curl("GET", "/keyport/v1/keys", None, &[]);
    assert!(keys["keys"].as_array().unwrap().is_empty());
}

#[test]
fn a_job_accepted_before_a_crash_finishes_after_it() {
    tools();
    let mut d = Daemon::config("");
    d.env.push(("KEYPORT_TEST_PAUSE_BEFORE_COMMIT_MS".into(), "60000".into()));
    d.spawn();
    let e = edge(&d);
    let dir = d.dir.path().join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    let mut items = Vec::new();
    for n in ["a", "b", "c"] {
        key_and_cert(&dir, n, &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
        items.push(password_item(&dir, &e, n, &["-v2", "aes-256-cbc"]));
    }
    let (s, v) = submit(&d, &e, items);
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    // Wait until the first key's objects are in the token (the daemon now pauses before commit).
    let start = Instant::now();
    while !object_blocks(&d.pkcs11_objects()).iter().any(|b| b.1 == "a.example.com") {
        assert!(start.elapsed() < Duration::from_secs(60), "{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    d.kill9();
    d.env.clear();
    d.spawn();
    let job = wait_job(&d, &id);
    assert_eq!(job["status"], "COMPLETED", "{job}");
    assert!(job["results"].as_array().unwrap().iter().all(|r| r["status"] == "IMPORTED"), "{job}");
    let blocks = object_blocks(&d.pkcs11_objects());
    assert_eq!(blocks.iter().filter(|b| b.1 == "a.example.com").count(), 3, "exactly one copy of the interrupted key");
}

/// Venafi's own Python client (pyVenafi 1.0.x; 1.1.0 crashes on every cloud response), in the
/// virtualenv `scripts/deps` makes, drives the whole flow.
#[test]
fn the_vendors_python_client_imports_a_key() {
    tools();
    let python = Path::new("/opt/keyport-test/pyvenafi/bin/python");
    assert!(python.exists(), "pyVenafi virtualenv missing (scripts/deps makes it)");
    let d = Daemon::start("");
    let dir = d.dir.path().join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    key_and_cert(&dir, "sdk", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
    openssl(&dir, &["pkcs8", "-topk8", "-in", "sdk.key", "-v2", "aes-256-cbc", "-passout", "pass:sdk-pass", "-out", "sdk.enc.pem"]);
    let out = Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/pyvenafi_import.py"))
        .arg(format!("127.0.0.1:{}", d.port))
        .arg("tlspc-key")
        .arg(dir.join("sdk.enc.pem"))
        .arg(dir.join("sdk.crt"))
        .arg("sdk-pass")
        .output()
        .unwrap();
    assert!(out.status.success(), "pyVenafi failed:\n{}\n{}", String::from_utf8_lossy(&out.stderr), d.log());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["job_status"], "COMPLETED", "{v}");
    assert_eq!(v["results"][0]["status"], "IMPORTED", "{v}");
    assert_eq!(v["results"][0]["fingerprint"], cert_sha1(&dir, "sdk.crt").as_str());
    assert!(v["edge_status"].as_str().unwrap().contains("ACTIVE"), "{v}");
    let blocks = object_blocks(&d.pkcs11_objects());
    assert_eq!(blocks.iter().filter(|b| b.1 == "sdk.example.com").count(), 3, "key, public key and certificate in the token");
}

/// Issue 11 item 9: a principal that may only import learns nothing about a key it cannot read
/// when its import is SKIPPED as a duplicate: no name, no id, no certificate.
#[test]
fn a_skipped_import_reveals_nothing_about_the_existing_key() {
    tools();
    let d = Daemon::start(&format!(
        r#"
[[principals]]
name = "root"
uids = [TEST_UID]
permissions = {{ "*" = ["admin"] }}

[[principals]]
name = "tlspc-client"
api_key_sha256 = ["{}"]
permissions = {{ default = ["import", "read"] }}

[[principals]]
name = "importer"
api_key_sha256 = ["{}"]
permissions = {{ default = ["import"] }}
"#,
        sha256_hex("tlspc-key"),
        sha256_hex("import-only-key")
    ));
    let e = edge(&d);
    let dir = d.dir.path().join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    key_and_cert(&dir, "dup", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    let item = password_item(&dir, &e, "dup", &["-v2", "aes-256-cbc"]);
    let (s, v) = submit(&d, &e, vec![item.clone()]);
    assert_eq!(s, 201, "{v}");
    let first = wait_job(&d, v["id"].as_str().unwrap());
    assert_eq!(first["results"][0]["status"], "IMPORTED", "{first}");
    let (_, keys) = d.curl("GET", "/keyport/v1/keys", None, &[]);
    let existing = keys["keys"][0].clone();
    let (id, name) = (existing["id"].as_str().unwrap(), existing["name"].as_str().unwrap());

    // The same key again, by the import-only principal.
    let only = "tppl-api-key: import-only-key";
    let body = json!({"edgeInstanceId": e.edge_id, "encryptionKeyId": e.key_id, "importInformation": [item]}).to_string();
    let (s, v) = d.curl_https("POST", "/outagedetection/v1/certificates/imports", Some(&body), &["-H", only]);
    assert_eq!(s, 201, "{v}");
    let job_id = v["id"].as_str().unwrap().to_string();
    let start = Instant::now();
    let job = loop {
        let (s, j) = d.curl_https("GET", &format!("/outagedetection/v1/certificates/imports/{job_id}"), None, &["-H", only]);
        assert_eq!(s, 200, "{j}");
        if j["status"] == "COMPLETED" || j["status"] == "FAILED" {
            break j;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "{j}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let r = &job["results"][0];
    assert_eq!(r["status"], "SKIPPED", "{job}");
    assert!(r["reason"].as_str().is_some_and(|s| !s.is_empty()), "SKIPPED says why: {job}");
    let text = job.to_string();
    assert!(!text.contains(id) && !text.contains(name), "the existing key's id or name leaked: {text}");
    assert!(r.get("certificateBytes").is_none(), "the existing key's certificate leaked: {job}");
    // Nothing the importer may read, either.
    let (s, _) = d.curl_https("GET", &format!("/keyport/v1/keys/{id}"), None, &["-H", "X-Api-Key: import-only-key"]);
    assert_eq!(s, 404);
}

/// Items are written through two token sessions at once (issue 17), yet each item's outcome is
/// the one of working them one after another: the same key twice in a row is IMPORTED then
/// SKIPPED (never two copies, never a name conflict), and a different key whose certificate
/// has the same CN takes the fallback name after the first has taken the CN. Results keep the
/// order of the items.
#[test]
fn duplicates_within_a_batch_resolve_as_if_written_one_by_one() {
    tools();
    let mut d = Daemon::config_tokens(&format!("{SOFT_TOKEN}sessions = 2\n"), "");
    d.spawn();
    let e = edge(&d);
    let dir = d.dir.path().join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    let ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
    for n in ["a", "b", "c", "f"] {
        key_and_cert(&dir, n, &ec);
    }
    // A different key, certified with a's CN.
    openssl(&dir, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "twin.key"]);
    openssl(&dir, &["req", "-x509", "-new", "-key", "twin.key", "-subj", "/CN=a.example.com", "-days", "30", "-out", "twin.crt"]);
    let item = |n: &str| password_item(&dir, &e, n, &["-v2", "aes-256-cbc"]);
    let items = vec![item("a"), item("a"), item("b"), item("twin"), item("c"), item("b"), item("f"), item("a")];
    let before = object_blocks(&d.pkcs11_objects()).len();
    let (s, v) = submit(&d, &e, items);
    assert_eq!(s, 201, "{v}");
    let job = wait_job(&d, v["id"].as_str().unwrap());
    assert_eq!(job["status"], "COMPLETED", "{job}");
    let statuses: Vec<&str> = job["results"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["IMPORTED", "SKIPPED", "IMPORTED", "IMPORTED", "IMPORTED", "SKIPPED", "IMPORTED", "SKIPPED"], "{job}");
    let fps: Vec<&str> = job["results"].as_array().unwrap().iter().map(|r| r["fingerprint"].as_str().unwrap()).collect();
    let want: Vec<String> = ["a", "a", "b", "twin", "c", "b", "f", "a"].iter().map(|n| cert_sha1(&dir, &format!("{n}.crt"))).collect();
    assert_eq!(fps, want, "results in item order");
    let (_, keys) = d.curl("GET", "/keyport/v1/keys", None, &[]);
    let mut names: Vec<String> = keys["keys"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap().to_string()).collect();
    names.sort();
    assert_eq!(names.len(), 5, "one key per distinct key: {names:?}");
    assert_eq!([&names[0], &names[2], &names[3], &names[4]], ["a.example.com", "b.example.com", "c.example.com", "f.example.com"]);
    let suffix = names[1].strip_prefix("a.example.com-").unwrap_or_default();
    assert!(suffix.len() == 8 && suffix.bytes().all(|c| c.is_ascii_hexdigit()), "the twin takes the CN with its fingerprint: {names:?}");
    // Three objects per key in the token, nothing left over.
    assert_eq!(object_blocks(&d.pkcs11_objects()).len(), before + 15);
}
