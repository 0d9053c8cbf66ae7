//! The TPP WebSDK SSH face over HTTPS with curl: the token flow, every format exported through
//! ExportSelfServicePrivateKey and judged by ssh-keygen/puttygen, and the refusals TPP clients
//! must see (no permission, non-exportable, bad format, SSH2 for Ed25519, expired token, wrong
//! scope).

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};

const PASS: &str = "export pass phrase";

fn config() -> String {
    format!(
        r#"
[[principals]]
name = "root"
uids = [TEST_UID]
permissions = {{ "*" = ["admin"] }}

[[principals]]
name = "bob"
api_key_sha256 = ["{bob}"]
permissions = {{ default = ["read"] }}

[apiops.projects.Ops]
namespace = "default"
[apiops.environments]
Production = "soft"

[tpp]
token_lifetime_secs = {lifetime}

[[tpp.users]]
username = "alice"
password_hash = "{alice_pw}"
principal = "root"

[[tpp.users]]
username = "bob"
password_hash = "{bob_pw}"
principal = "bob"
"#,
        bob = sha256_hex("bob-api-key"),
        alice_pw = phc("alice-secret"),
        bob_pw = phc("bob-secret"),
        lifetime = "LIFETIME",
    )
}

fn phc(password: &str) -> String {
    common::phc(password)
}

/// `text` with the `password_hash` of TPP user `user` set to a hash of `password`.
fn set_password(text: &str, user: &str, password: &str) -> String {
    let mut out = Vec::new();
    let mut in_user = false;
    for line in text.lines() {
        if line.starts_with("username = ") {
            in_user = line == format!("username = \"{user}\"");
        }
        if in_user && line.starts_with("password_hash = ") {
            out.push(format!("password_hash = \"{}\"", phc(password)));
        } else {
            out.push(line.to_string());
        }
    }
    out.join("\n")
}

fn start(lifetime: u64) -> Daemon {
    Daemon::start(&config().replace("LIFETIME", &lifetime.to_string()))
}

fn login(d: &Daemon, user: &str, pw: &str, scope: &str) -> (u16, Value) {
    d.curl_https(
        "POST",
        "/vedauth/authorize/oauth",
        Some(&json!({"client_id": "keyport-test", "username": user, "password": pw, "scope": scope}).to_string()),
        &[],
    )
}

fn token(d: &Daemon, user: &str, pw: &str, scope: &str) -> String {
    let (s, v) = login(d, user, pw, scope);
    assert_eq!(s, 200, "{v}\n{}", d.log());
    v["access_token"].as_str().unwrap().to_string()
}

fn call(d: &Daemon, tok: &str, path: &str, body: Value) -> (u16, Value) {
    d.curl_https("POST", path, Some(&body.to_string()), &["-H", &format!("Authorization: Bearer {tok}")])
}

fn key_id(d: &Daemon, tok: &str, name: &str) -> i64 {
    let (s, v) = call(d, tok, "/vedsdk/SSH/KeyDetails", json!({}));
    assert_eq!(s, 200, "{v}");
    v["Data"].as_array().unwrap().iter().find(|k| k["Notes"] == name).unwrap_or_else(|| panic!("{name} not in {v}"))["KeyId"]
        .as_i64()
        .unwrap()
}

fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program).args(args).stdin(Stdio::null()).output().unwrap()
}

fn public_words(line: &str) -> String {
    line.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// The public key line a key file holds, read by the real tools with the passphrase.
fn public_of(dir: &Path, file: &Path, format: &str) -> String {
    std::fs::set_permissions(file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    if format == "OpenSSH" {
        let out = run("ssh-keygen", &["-y", "-P", PASS, "-f", file.to_str().unwrap()]);
        assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
        let wrong = run("ssh-keygen", &["-y", "-P", "wrong", "-f", file.to_str().unwrap()]);
        assert_eq!(wrong.status.code(), Some(255));
        return public_words(&String::from_utf8_lossy(&out.stdout));
    }
    let pw = dir.join("pw");
    std::fs::write(&pw, PASS).unwrap();
    let bad = dir.join("bad");
    std::fs::write(&bad, "wrong").unwrap();
    let text = run("puttygen", &[file.to_str().unwrap(), "--old-passphrase", bad.to_str().unwrap(), "-O", "text"]);
    assert!(!text.status.success(), "{format}: puttygen accepted a wrong passphrase");
    let out = dir.join("conv.pub");
    let _ = std::fs::remove_file(&out);
    let r = run(
        "puttygen",
        &[file.to_str().unwrap(), "--old-passphrase", pw.to_str().unwrap(), "-O", "public-openssh", "-o", out.to_str().unwrap()],
    );
    assert!(r.status.success(), "puttygen {format}: {}", String::from_utf8_lossy(&r.stderr));
    public_words(&std::fs::read_to_string(out).unwrap())
}

#[test]
fn token_flow_version_and_case_insensitive_routes() {
    require("curl");
    let d = start(3600);
    let (s, v) = login(&d, "alice", "wrong", "ssh:manage");
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "{v}");
    let (s, v) = login(&d, "alice", "alice-secret", "nonsense:x");
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_scope")), "{v}");
    let (s, v) = d.curl_https(
        "POST",
        "/VEDAUTH/Authorize/OAuth",
        Some(r#"{"client_id":"c","username":"alice","password":"alice-secret","scope":"ssh:manage"}"#),
        &[],
    );
    assert_eq!(s, 200, "{v}");
    for field in ["access_token", "refresh_token", "expires", "expires_in", "refresh_until", "token_type", "scope", "identity"] {
        assert!(!v[field].is_null(), "{field} missing in {v}");
    }
    let tok = v["access_token"].as_str().unwrap().to_string();
    let auth = format!("Authorization: Bearer {tok}");
    let (s, ver) = d.curl_https("GET", "/vedsdk/SystemStatus/Version", None, &["-H", &auth]);
    assert_eq!((s, ver["Version"].is_string()), (200, true), "{ver}");
    let (s, _) = d.curl_https("GET", "/vedsdk/systemstatus/version", None, &[]);
    assert_eq!(s, 401);
    let (s, ver) = d.curl_https("GET", "/vedauth/authorize/verify", None, &["-H", &auth]);
    assert_eq!((s, ver["application"].as_str(), ver["scope"].as_str()), (200, Some("c"), Some("ssh:manage")), "{ver}");
    assert!(ver["valid_for"].as_u64().unwrap() > 3000);
    // Refresh: a new pair; the old access token stops working.
    let (s, r) = d.curl_https(
        "POST",
        "/vedauth/authorize/token",
        Some(&json!({"client_id": "c", "refresh_token": v["refresh_token"]}).to_string()),
        &[],
    );
    assert_eq!(s, 200, "{r}");
    let (s, _) = d.curl_https("GET", "/vedauth/authorize/verify", None, &["-H", &auth]);
    assert_eq!(s, 401);
    let (s, _) = d.curl_https(
        "POST",
        "/vedauth/authorize/token",
        Some(&json!({"client_id": "c", "refresh_token": v["refresh_token"]}).to_string()),
        &[],
    );
    assert_eq!(s, 400, "a refresh token is used once");
    let auth2 = format!("Authorization: Bearer {}", r["access_token"].as_str().unwrap());
    let (s, _) = d.curl_https("GET", "/vedsdk/SSH/../SystemStatus/Version", None, &["-H", &auth2, "--path-as-is"]);
    assert_ne!(s, 500);
    let (s, _) = d.curl_https("GET", "/VedAuth/Revoke/Token", None, &["-H", &auth2]);
    assert_eq!(s, 200);
    let (s, _) = d.curl_https("GET", "/vedauth/authorize/verify", None, &["-H", &auth2]);
    assert_eq!(s, 401, "revoked");
    let (s, v) = d.curl_https("GET", "/vedsdk/NoSuchThing", None, &[]);
    assert_eq!(s, 404, "{v}");
    let (s, v) = d.curl_https("GET", "/keyport/v1/nothing", None, &[]);
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
}

#[test]
fn every_format_through_the_face_is_read_by_the_real_tools() {
    require("curl");
    require("ssh-keygen");
    require("puttygen");
    let d = start(3600);
    let tok = token(&d, "alice", "alice-secret", "ssh:manage,discover");
    for (name, alg) in [("rsa", "rsa-2048"), ("p256", "ec-p256"), ("p521", "ec-p521"), ("ed", "ed25519")] {
        d.generate(name, alg, true);
        let id = key_id(&d, &tok, name);
        // The authorized-key line is the reference public key.
        let (s, v) = call(&d, &tok, "/vedsdk/ssh/ExportSelfServiceAuthorizedKey", json!({"KeyId": id}));
        assert_eq!((s, v["Response"]["Success"].as_bool()), (200, Some(true)), "{v}");
        let public = public_words(v["KeyMaterial"].as_str().unwrap());
        for format in ["OpenSSH", "PuTTY", "SSH2", "Tectia"] {
            let (s, v) =
                call(&d, &tok, "/vedsdk/SSH/ExportSelfServicePrivateKey", json!({"KeyId": id, "Format": format, "Passphrase": PASS}));
            assert_eq!(s, 200);
            if alg != "rsa-2048" && (format == "SSH2" || format == "Tectia") {
                assert_eq!(v["Response"]["Success"], false, "{v}");
                assert_eq!(v["Response"]["ErrorCode"], 4, "{v}");
                assert!(v["Response"]["ErrorMessage"].as_str().unwrap().contains("RSA keys only"), "{v}");
                continue;
            }
            assert_eq!(v["Response"]["Success"], true, "{name} {format}: {v}");
            let material = v["KeyMaterial"].as_str().unwrap();
            let f = d.dir.path().join(format!("{name}.{format}"));
            std::fs::write(&f, material).unwrap();
            assert_eq!(public_of(d.dir.path(), &f, format), public, "{name} {format}");
        }
        // No Format: the namespace policy's, else OpenSSH.
        let (_, v) = call(&d, &tok, "/vedsdk/SSH/ExportSelfServicePrivateKey", json!({"KeyId": id, "Passphrase": PASS}));
        assert!(v["KeyMaterial"].as_str().unwrap().starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"), "{v}");
    }
    // KeysetDetails groups by keyset and carries the SHA-256 fingerprint.
    let (s, v) = call(&d, &tok, "/vedsdk/SSH/KeysetDetails", json!({}));
    assert_eq!((s, v["Data"].as_array().unwrap().len()), (200, 4), "{v}");
    // Import through the face: an ssh-keygen key comes back with a KeyId that exports again.
    let k = d.dir.path().join("imported");
    assert!(run("ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-f", k.to_str().unwrap()]).status.success());
    use base64::Engine;
    let content = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&k).unwrap());
    let (s, v) = call(
        &d,
        &tok,
        "/vedsdk/SSH/ImportPrivateKey",
        json!({"DeviceGuid": "{x}", "Filepath": "/home/a/.ssh/id", "Format": "OpenSSH", "KeyContentBase64": content, "Username": "a"}),
    );
    assert_eq!((s, v["SshWebResponse"]["Success"].as_bool()), (200, Some(true)), "{v}\n{}", d.log());
    let imported = v["KeyId"].as_i64().unwrap();
    let (_, v) = call(&d, &tok, "/vedsdk/SSH/ExportSelfServiceAuthorizedKey", json!({"KeyId": imported}));
    let original = std::fs::read_to_string(k.with_extension("pub")).unwrap();
    assert_eq!(public_words(v["KeyMaterial"].as_str().unwrap()), public_words(&original));
    let (_, v) = call(&d, &tok, "/vedsdk/SSH/ImportPrivateKey", json!({"KeyContentBase64": content}));
    assert_eq!(v["SshWebResponse"]["ErrorCode"], 5, "already present: {v}");
}

#[test]
fn refusals() {
    require("curl");
    let d = start(3600);
    d.generate("sealed", "ed25519", false);
    d.generate("open", "rsa-2048", true);
    let tok = token(&d, "alice", "alice-secret", "ssh:manage");
    let sealed = key_id(&d, &tok, "sealed");
    let open = key_id(&d, &tok, "open");
    let export = |tok: &str, body: Value| call(&d, tok, "/vedsdk/SSH/ExportSelfServicePrivateKey", body);

    let (_, v) = export(&tok, json!({"KeyId": sealed, "Format": "OpenSSH", "Passphrase": PASS}));
    assert_eq!((v["Response"]["Success"].as_bool(), v["Response"]["ErrorCode"].as_i64()), (Some(false), Some(14)), "non-exportable: {v}");
    let (_, v) = export(&tok, json!({"KeyId": sealed, "Format": "SSH2", "Passphrase": PASS}));
    assert_eq!(v["Response"]["ErrorCode"], 4, "SSH2 for Ed25519: {v}");
    let (_, v) = export(&tok, json!({"KeyId": open, "Format": "JKS", "Passphrase": PASS}));
    assert_eq!(v["Response"]["ErrorCode"], 4, "bad format: {v}");
    assert!(v["Response"]["ErrorMessage"].as_str().unwrap().contains("JKS"));
    let (_, v) = export(&tok, json!({"KeyId": open, "Format": "OpenSSH"}));
    assert_eq!(v["Response"]["ErrorCode"], 4, "no passphrase, policy forbids plain: {v}");
    assert!(v["Response"]["ErrorMessage"].as_str().unwrap().contains("passphrase"));
    let (_, v) = export(&tok, json!({"KeyId": 999_999, "Format": "OpenSSH", "Passphrase": PASS}));
    assert_eq!(v["Response"]["ErrorCode"], 1, "{v}");

    // bob may read the namespace but not export its keys.
    let bob = token(&d, "bob", "bob-secret", "ssh:manage");
    let (_, v) = export(&bob, json!({"KeyId": open, "Format": "OpenSSH", "Passphrase": PASS}));
    assert_eq!(v["Response"]["ErrorCode"], 12, "no permission: {v}");
    // Wrong scope: a certificate token cannot call SSH methods; `ssh` alone cannot import.
    let cert = token(&d, "alice", "alice-secret", "certificate:manage");
    let (s, v) = export(&cert, json!({"KeyId": open, "Passphrase": PASS}));
    assert_eq!((s, v["error"].as_str()), (403, Some("insufficient_scope")), "{v}");
    let (s, _) = call(&d, &tok, "/vedsdk/SSH/ImportPrivateKey", json!({"KeyContentBase64": ""}));
    assert_eq!(s, 403, "ssh:manage lacks discover");
}

#[test]
fn expired_bearer_token() {
    require("curl");
    let d = start(1);
    d.generate("open", "rsa-2048", true);
    let tok = token(&d, "alice", "alice-secret", "ssh:manage");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (s, v) = call(&d, &tok, "/vedsdk/SSH/KeyDetails", json!({}));
    assert_eq!((s, v["error"].as_str()), (401, Some("expired_token")), "{v}");
    let (s, v) = call(&d, &tok, "/vedsdk/SSH/ExportSelfServicePrivateKey", json!({"KeyId": 1, "Format": "OpenSSH", "Passphrase": PASS}));
    assert_eq!((s, v["error"].as_str()), (401, Some("expired_token")), "{v}");
}

#[test]
fn tokens_survive_a_daemon_restart_and_only_their_hashes_are_stored() {
    require("curl");
    let mut d = start(3600);
    let (s, v) = login(&d, "alice", "alice-secret", "ssh:manage");
    assert_eq!(s, 200, "{v}");
    let (access, refresh) = (v["access_token"].as_str().unwrap().to_string(), v["refresh_token"].as_str().unwrap().to_string());
    assert!(d.stop().success());
    let db = std::fs::read(d.dir.path().join("state/keyport.db")).unwrap();
    let wal = std::fs::read(d.dir.path().join("state/keyport.db-wal")).unwrap_or_default();
    for t in [&access, &refresh] {
        let needle = t.as_bytes();
        assert!(!db.windows(needle.len()).chain(wal.windows(needle.len())).any(|w| w == needle), "a token is stored in the clear");
    }

    d.spawn();
    let auth = format!("Authorization: Bearer {access}");
    let (s, v) = d.curl_https("GET", "/vedauth/authorize/verify", None, &["-H", &auth]);
    assert_eq!((s, v["identity"].as_str()), (200, Some("local:alice")), "{v}");
    let (s, v) = d.curl_https(
        "POST",
        "/vedauth/authorize/token",
        Some(&json!({"client_id": "keyport-test", "refresh_token": refresh}).to_string()),
        &[],
    );
    assert_eq!(s, 200, "the refresh token too: {v}");
    let (s, _) = d.curl_https("GET", "/vedauth/authorize/verify", None, &["-H", &auth]);
    assert_eq!(s, 401, "the refreshed-away access token is gone");
}

#[test]
fn a_password_change_ends_the_users_sessions_across_a_restart() {
    require("curl");
    let mut d = start(3600);
    let (s, v) = login(&d, "bob", "bob-secret", "ssh");
    assert_eq!(s, 200, "{v}");
    let (access, refresh) = (v["access_token"].as_str().unwrap().to_string(), v["refresh_token"].as_str().unwrap().to_string());
    let alice = token(&d, "alice", "alice-secret", "ssh");
    assert!(d.stop().success());
    let text = std::fs::read_to_string(&d.config).unwrap();
    let changed = set_password(&text, "bob", "bob-new-secret");
    assert_ne!(text, changed);
    std::fs::write(&d.config, changed).unwrap();
    d.spawn();

    let auth = format!("Authorization: Bearer {access}");
    let (s, v) = d.curl_https("GET", "/vedauth/authorize/verify", None, &["-H", &auth]);
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_token")), "{v}");
    assert!(v["error_description"].as_str().unwrap().contains("password changed"), "{v}");
    let (s, v) = d.curl_https(
        "POST",
        "/vedauth/authorize/token",
        Some(&json!({"client_id": "keyport-test", "refresh_token": refresh}).to_string()),
        &[],
    );
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "{v}");
    let (s, v) = d.curl_https("GET", "/vedauth/authorize/verify", None, &["-H", &format!("Authorization: Bearer {alice}")]);
    assert_eq!((s, v["identity"].as_str()), (200, Some("local:alice")), "an unchanged user keeps its session: {v}");
    let (s, v) = login(&d, "bob", "bob-new-secret", "ssh");
    assert_eq!(s, 200, "the new password logs in: {v}");
}

/// Issue 11 item 14: Venafi's own Python SDK (pyvenafi's `WebSDK`, unchanged) logs in, lists,
/// exports and imports, and a second client starts from the refresh token. Before the fix
/// every call after login got 401: pyvenafi sends a token not ending in `==` in the legacy
/// `X-Venafi-API-Key` header.
#[test]
fn venafis_python_sdk_drives_the_face() {
    require("ssh-keygen");
    let python = Path::new("/opt/keyport-test/pyvenafi/bin/python");
    assert!(python.exists(), "pyvenafi virtualenv missing (scripts/deps makes it)");
    let d = start(3600);
    d.generate("sdk-ed", "ed25519", true);
    let k = d.dir.path().join("to-import");
    assert!(run("ssh-keygen", &["-q", "-t", "ecdsa", "-b", "384", "-N", "", "-f", k.to_str().unwrap()]).status.success());
    let out = Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/pyvenafi_tpp.py"))
        .arg(format!("127.0.0.1:{}", d.port))
        .args(["alice", "alice-secret"])
        .arg(&k)
        .arg(PASS)
        .output()
        .unwrap();
    assert!(out.status.success(), "pyvenafi failed:\n{}\n{}", String::from_utf8_lossy(&out.stderr), d.log());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["token_header"], "Authorization", "{v}");
    assert!(v["version"].as_str().unwrap().starts_with("25.1"), "{v}");
    assert_eq!(v["keysets"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!((v["keysets"][0]["algorithm"].as_str(), v["keysets"][0]["length"].as_i64()), (Some("ED25519"), Some(256)), "{v}");
    assert_eq!(v["keyset_get"], v["keysets"][0]["keyset_id"], "{v}");
    assert_eq!(v["key_details_status"], 200, "{v}");
    assert!(v["authorized_ok"] == true && v["authorized_key"].as_str().unwrap().starts_with("ssh-ed25519 "), "{v}");
    assert_eq!(v["private_ok"], true, "{v}");
    let f = d.dir.path().join("sdk.key");
    std::fs::write(&f, v["private_key"].as_str().unwrap()).unwrap();
    assert_eq!(public_of(d.dir.path(), &f, "OpenSSH"), public_words(v["authorized_key"].as_str().unwrap()));
    assert_eq!(v["import_ok"], true, "{v}");
    assert_eq!(v["refreshed_ok"], true, "the refreshed client works: {v}");
    let original = std::fs::read_to_string(k.with_extension("pub")).unwrap();
    assert_eq!(public_words(v["refreshed_key"].as_str().unwrap()), public_words(&original));
}

/// Issue 11 item 16: only SSH key pairs are listed (and exportable) through TPP; an AES secret
/// key and a public-only row in the same namespace are neither listed nor reachable by id.
#[test]
fn only_ssh_key_pairs_are_listed() {
    require("openssl");
    let d = start(3600);
    d.generate("ssh-rsa", "rsa-3072", true);
    d.generate("ssh-p384", "ec-p384", true);
    let dir = d.dir.path();
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "r.pem"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let spki = Command::new("openssl").current_dir(dir).args(["pkey", "-in", "r.pem", "-pubout"]).output().unwrap().stdout;
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    for (name, key_type, alg, content) in [("aes", "SECRET_KEY", "AES", b64(&[7u8; 32])), ("pub", "PUBLIC_KEY", "RSA", b64(&spki))] {
        let body = json!({"name": name, "keyType": key_type, "algorithm": alg,
            "cryptoKeyInfoEnvironmentList": [{"environmentName": "Production", "content": content}]});
        let (s, v) = d.curl("POST", "/apiops/projects/Ops/keys/", Some(&body.to_string()), &[]);
        assert_eq!(s, 200, "{name}: {v}\n{}", d.log());
    }
    let (_, all) = d.curl("GET", "/keyport/v1/keys", None, &[]);
    assert_eq!(all["keys"].as_array().unwrap().len(), 4, "{all}");
    let tok = token(&d, "alice", "alice-secret", "ssh");
    let (s, v) = call(&d, &tok, "/vedsdk/SSH/KeyDetails", json!({}));
    assert_eq!(s, 200);
    let mut listed: Vec<(String, String, i64)> = v["Data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["Notes"].as_str().unwrap().to_string(), k["Algorithm"].as_str().unwrap().to_string(), k["Length"].as_i64().unwrap()))
        .collect();
    listed.sort();
    assert_eq!(listed, [("ssh-p384".into(), "ECDSA".into(), 384), ("ssh-rsa".into(), "RSA".into(), 3072)], "{v}");
    let (_, v) = call(&d, &tok, "/vedsdk/SSH/KeysetDetails", json!({}));
    assert_eq!(v["Data"].as_array().unwrap().len(), 2, "{v}");
    // The secret key is not reachable by a KeyId either (ids are handed out in listing order;
    // probe a range well past the listed ones).
    let listed_ids: Vec<i64> = listed.iter().map(|(n, _, _)| key_id(&d, &tok, n)).collect();
    for id in 1..=10 {
        if listed_ids.contains(&id) {
            continue;
        }
        let (_, v) = call(&d, &tok, "/vedsdk/SSH/ExportSelfServiceAuthorizedKey", json!({"KeyId": id}));
        assert_eq!(v["Response"]["ErrorCode"], 1, "KeyId {id}: {v}");
    }
}

/// Issue 11 item 13: TPP export follows the one passphrase rule (at least 8 characters),
/// refused in TPP's shape (HTTP 200, `Success: false`, no key material).
#[test]
fn a_short_export_passphrase_is_refused_in_tpps_shape() {
    let d = start(3600);
    d.generate("open", "ec-p256", true);
    let tok = token(&d, "alice", "alice-secret", "ssh");
    let id = key_id(&d, &tok, "open");
    for short in ["x", "1234567"] {
        let (s, v) =
            call(&d, &tok, "/vedsdk/SSH/ExportSelfServicePrivateKey", json!({"KeyId": id, "Format": "OpenSSH", "Passphrase": short}));
        assert_eq!((s, v["Response"]["Success"].as_bool()), (200, Some(false)), "{short:?}: {v}");
        assert!(v["KeyMaterial"].is_null(), "{v}");
        assert!(v["Response"]["ErrorMessage"].as_str().unwrap().contains("at least 8 characters"), "{v}");
    }
    let (_, v) =
        call(&d, &tok, "/vedsdk/SSH/ExportSelfServicePrivateKey", json!({"KeyId": id, "Format": "OpenSSH", "Passphrase": "12345678"}));
    assert_eq!(v["Response"]["Success"], true, "{v}");
}

/// Issue 11 item 12: a username holding a newline cannot forge a log line (nor an audit row).
#[test]
fn a_username_with_a_newline_forges_no_log_line() {
    let d = start(3600);
    let forged = "FORGED-LINE keyport::api::tpp: tpp login ok username=admin";
    let (s, _) = login(&d, &format!("mallory\n{forged}"), "whatever", "ssh");
    assert_eq!(s, 400);
    let (s, _) = login(&d, &format!("alice\r\n{forged}"), "alice-secret", "ssh");
    assert_eq!(s, 400);
    // Give the log writer a moment, then read what the daemon wrote.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let log = d.log();
    assert!(log.contains("tpp login refused"), "{log}");
    for line in log.lines() {
        assert!(!line.trim_start().starts_with("FORGED-LINE"), "a forged log line:\n{log}");
        if line.contains("FORGED-LINE") {
            // The refusal's log line, or the audit entry's copy in the log: escaped either way.
            let ours = line.contains("tpp login refused") || line.contains("keyport::audit");
            assert!(ours && line.contains("\\n"), "escaped on its own line: {line}");
        }
    }
    let db = rusqlite::Connection::open(d.dir.path().join("state/keyport.db")).unwrap();
    let details: Vec<String> = db
        .prepare("SELECT detail FROM audit WHERE action = 'tpp.login'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(details.len(), 2, "{details:?}");
    assert!(details.iter().all(|d| !d.contains('\n') && d.contains("\\n")), "{details:?}");
}

/// Issue 11 item 10: failed logins are throttled per user and per source before any password
/// check (a blocked try is answered at once, 429 with Retry-After), audited, and the block
/// passes; the old unsalted hashes are refused by `config check` with the migration step.
#[test]
fn failed_logins_are_throttled_per_user_and_source_and_audited() {
    let d = start(3600);
    // Three free failures over TCP, the fourth starts a 1 s block for bob and for 127.0.0.1.
    for i in 0..4 {
        let (s, v) = login(&d, "bob", &format!("guess-{i}"), "ssh");
        assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "{i}: {v}");
    }
    let t = std::time::Instant::now();
    let out = Command::new("curl")
        .args(["-sS", "-D", "-", "-o", "/dev/null", "--cacert"])
        .arg(d.dir.path().join("state/tls-cert.pem"))
        .args(["-H", "content-type: application/json", "--data-binary"])
        .arg(json!({"client_id": "c", "username": "bob", "password": "bob-secret", "scope": "ssh"}).to_string())
        .arg(format!("https://127.0.0.1:{}/vedauth/authorize/oauth", d.port))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 429"), "even the right password waits out the block: {head}");
    assert!(head.contains("retry-after: 1"), "{head}");
    assert!(t.elapsed() < std::time::Duration::from_millis(900), "refused before any password check");
    // Per user: bob is blocked from the socket too; per source: alice over TCP is blocked, but
    // alice over the socket (another source) logs in.
    let sock = |user: &str, pw: &str| {
        d.curl(
            "POST",
            "/vedauth/authorize/oauth",
            Some(&json!({"client_id": "c", "username": user, "password": pw, "scope": "ssh"}).to_string()),
            &[],
        )
    };
    assert_eq!(sock("bob", "bob-secret").0, 429, "the user is blocked everywhere");
    assert_eq!(login(&d, "alice", "alice-secret", "ssh").0, 429, "the source is blocked for every user");
    assert_eq!(sock("alice", "alice-secret").0, 200, "another user from another source is not");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(login(&d, "bob", "bob-secret", "ssh").0, 200, "the block passes");
    // A success clears the count: a new failure is free again.
    assert_eq!(login(&d, "bob", "wrong", "ssh").0, 400);
    assert_eq!(login(&d, "bob", "bob-secret", "ssh").0, 200);

    let db = rusqlite::Connection::open(d.dir.path().join("state/keyport.db")).unwrap();
    let count = |outcome: &str| -> i64 {
        db.query_row("SELECT count(*) FROM audit WHERE action = 'tpp.login' AND outcome = ?1", [outcome], |r| r.get(0)).unwrap()
    };
    assert_eq!(count("refused"), 5, "every checked failure is audited");
    assert_eq!(count("throttled"), 2, "the user's and the source's block");
    assert_eq!(count("ok"), 3);

    // The old unsalted form is refused with the way out.
    let text = std::fs::read_to_string(&d.config).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let at = lines.iter().position(|l| l == "username = \"bob\"").unwrap() + 1;
    lines[at] = format!("password_sha256 = \"{}\"", sha256_hex("bob-secret"));
    let f = d.dir.path().join("old.toml");
    std::fs::write(&f, lines.join("\n")).unwrap();
    let out = d.command().args(["config", "check"]).arg(&f).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("tpp.users[1].password_sha256") && err.contains("keyport hash-password"), "{err}");
}

/// Issue 11 item 10: a flood of wrong logins costs bounded CPU (the throttle answers before
/// any Argon2 work, and few checks run at once) while another caller is served.
#[test]
fn a_login_flood_costs_bounded_cpu() {
    let d = start(3600);
    let pid = d.child.as_ref().unwrap().id();
    let cpu = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<u64> = stat.rsplit_once(')').unwrap().1.split_whitespace().skip(11).take(2).map(|f| f.parse().unwrap()).collect();
        (fields[0] + fields[1]) as f64 / 100.0 // clock ticks (USER_HZ = 100)
    };
    let before = cpu();
    let body = json!({"client_id": "c", "username": "nobody", "password": "guess", "scope": "ssh"}).to_string();
    let cacert = d.dir.path().join("state/tls-cert.pem");
    let url = format!("https://127.0.0.1:{}/vedauth/authorize/oauth", d.port);
    let flood: Vec<_> = (0..64)
        .map(|_| {
            Command::new("curl")
                .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
                .arg(&cacert)
                .args(["-H", "content-type: application/json", "--data-binary", &body, &url])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let t = std::time::Instant::now();
    let (s, _) = d.curl("GET", "/keyport/v1/health", None, &[]);
    assert_eq!(s, 200);
    assert!(t.elapsed() < std::time::Duration::from_secs(5), "health took {:?} during the flood", t.elapsed());
    let codes: Vec<String> = flood.into_iter().map(|c| String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap()).collect();
    let checked = codes.iter().filter(|c| *c == "400").count();
    assert!(codes.iter().all(|c| ["400", "429", "503"].contains(&c.as_str())), "{codes:?}");
    assert!(checked <= 8, "{checked} passwords were checked for one blocked source: {codes:?}");
    let spent = cpu() - before;
    eprintln!("login flood: 64 requests, {checked} passwords checked, {spent:.2} s of daemon CPU, health in {:?}", t.elapsed());
    assert!(spent < 5.0, "the flood cost {spent:.2} s of CPU");
}
