//! Vault logins against a real OpenBao dev server: AppRole (a token kept in memory, a new login
//! when it dies or reaches its max TTL, a wrong secret_id reported with the setting to fix and
//! picked up again when the file is fixed) and TLS certificate login with the client key in
//! SoftHSM (CSR from `keyport sync csr`, signed by an openssl test CA). Neither the log nor the
//! status ever shows a vault token or the secret_id.

mod common;
use common::bao::*;
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const POLICY: &str = r#"
path "transit/wrapping_key" { capabilities = ["read"] }
path "transit/keys/h1-*" { capabilities = ["create", "read", "update"] }
path "secret/data/keyport/h1/*" { capabilities = ["create", "read", "update"] }
path "secret/metadata/keyport/h1/*" { capabilities = ["create", "read", "update"] }
"#;

fn ok(bao: &Bao, method: &str, path: &str, body: Value) {
    let (s, v) = bao.call(method, path, Some(body));
    assert!(s == 200 || s == 204, "{method} {path}: {s} {v}");
}

/// Role `h1` with a fixed role_id and secret_id `secret`, tokens limited to the h1 policy.
fn approle(bao: &Bao, token_ttl: &str, max_ttl: &str, secret: &str) {
    ok(bao, "POST", "sys/policies/acl/h1-sync", json!({"policy": POLICY}));
    ok(bao, "POST", "sys/auth/approle", json!({"type": "approle"}));
    ok(
        bao,
        "POST",
        "auth/approle/role/h1",
        json!({"role_id": "h1-role-id", "token_policies": ["h1-sync"], "token_ttl": token_ttl, "token_max_ttl": max_ttl}),
    );
    ok(bao, "POST", "auth/approle/role/h1/custom-secret-id", json!({"secret_id": secret}));
}

fn approle_daemon(bao: &Bao, secret_file: &Path) -> Daemon {
    daemon_with_auth(
        bao,
        "",
        &format!("[sync.approle]\nrole_id = \"h1-role-id\"\nsecret_id = {{ file = \"{}\" }}\n", secret_file.display()),
    )
}

/// Every service token (`s.` + 24 characters) in `text`.
fn vault_tokens(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    for i in 0..b.len().saturating_sub(2) {
        if &b[i..i + 2] == b"s." && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
            let n = b[i + 2..].iter().take_while(|c| c.is_ascii_alphanumeric()).count();
            if n == 24 {
                out.push(text[i..i + 26].to_string());
            }
        }
    }
    out
}

/// Neither the daemon's log nor its sync status holds a vault token or `secret`.
fn no_secrets_shown(d: &Daemon, secret: &str) {
    let (_, status) = d.curl("GET", "/keyport/v1/sync", None, &[]);
    for (what, text) in [("log", d.log()), ("status", status.to_string())] {
        assert!(vault_tokens(&text).is_empty(), "a vault token in the {what}: {:?}", vault_tokens(&text));
        assert!(!text.contains(secret), "the secret_id in the {what}");
    }
}

/// Revokes every token the AppRole `h1` issued (the daemon's, and ours).
fn revoke_approle_tokens(bao: &Bao) -> usize {
    let (_, v) = bao.call("LIST", "auth/token/accessors", None);
    let mut n = 0;
    for a in v["data"]["keys"].as_array().unwrap() {
        let (_, t) = bao.call("POST", "auth/token/lookup-accessor", Some(json!({"accessor": a})));
        if t["data"]["path"] == "auth/approle/login" {
            ok(bao, "POST", "auth/token/revoke-accessor", json!({"accessor": a}));
            n += 1;
        }
    }
    n
}

fn alive(d: &mut Daemon) {
    assert!(d.child.as_mut().unwrap().try_wait().unwrap().is_none(), "keyport exited:\n{}", d.log());
    assert_eq!(d.curl("GET", "/keyport/v1/health", None, &[]).0, 200);
}

#[test]
fn approle_login_syncs_and_a_revoked_token_means_a_new_login() {
    tools();
    let work = tempfile::tempdir().unwrap();
    let bao = Bao::start(work.path());
    approle(&bao, "20m", "1h", "h1-secret-one");
    let secret = work.path().join("secret-id");
    std::fs::write(&secret, "h1-secret-one\n").unwrap();
    let d = approle_daemon(&bao, &secret);

    let k1 = d.generate("k1", "ec-p256", true);
    let st = sync_now(&d);
    let ks = key_status(&st, "k1");
    assert_eq!((ks["status"].as_str(), ks["pushed_version"].as_i64()), (Some("synced"), Some(1)), "{ks}\n{}", d.log());
    check_in_transit(&bao, work.path(), "h1-default.k1", &k1);
    let a = &st["auth"];
    assert_eq!(
        (a["method"].as_str(), a["mount"].as_str(), a["logged_in"].as_bool()),
        (Some("approle"), Some("approle"), Some(true)),
        "{a}"
    );
    assert!(a["token_expires_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{a}");
    assert_eq!(a["logins"], 1, "{a}");

    // The scan below finds tokens of this shape: one of our own logins proves it.
    let (_, login) = bao.call("POST", "auth/approle/login", Some(json!({"role_id": "h1-role-id", "secret_id": "h1-secret-one"})));
    let ours = login["auth"]["client_token"].as_str().unwrap();
    assert_eq!(vault_tokens(&format!("token={ours}")), vec![ours.to_string()]);

    // Revoked behind keyport's back: 403, lookup-self 403, a new login, and the key goes in.
    assert!(revoke_approle_tokens(&bao) >= 2);
    let k2 = d.generate("k2", "ec-p256", true);
    let st = sync_now(&d);
    assert_eq!(key_status(&st, "k2")["status"], "synced", "{st}\n{}", d.log());
    check_in_transit(&bao, work.path(), "h1-default.k2", &k2);
    assert_eq!(st["auth"]["logins"], 2, "{}", st["auth"]);
    no_secrets_shown(&d, "h1-secret-one");
    // Issue 16: nor the store and the rest of the state folder, in any encoding; and no
    // service token of the vault's shape in the store's raw bytes.
    d.assert_no_secret_leaked(&["h1-secret-one"]);
    for f in ["keyport.db", "keyport.db-wal"] {
        let bytes = std::fs::read(d.dir.path().join("state").join(f)).unwrap_or_default();
        assert!(vault_tokens(&String::from_utf8_lossy(&bytes)).is_empty(), "a vault token in {f}");
    }
}

#[test]
fn approle_past_max_ttl_logs_in_again_and_a_wrong_secret_id_names_the_setting() {
    tools();
    let work = tempfile::tempdir().unwrap();
    let bao = Bao::start(work.path());
    approle(&bao, "3s", "6s", "h1-secret-one");
    let secret = work.path().join("secret-id");
    std::fs::write(&secret, "h1-secret-one\n").unwrap();
    let mut d = approle_daemon(&bao, &secret);

    d.generate("k1", "ec-p256", true);
    assert_eq!(key_status(&sync_now(&d), "k1")["status"], "synced", "{}", d.log());
    // Past the token's max TTL: the next pass must log in again, not fail on a dead token.
    std::thread::sleep(Duration::from_secs(7));
    let k2 = d.generate("k2", "ec-p256", true);
    let st = sync_now(&d);
    assert_eq!(key_status(&st, "k2")["status"], "synced", "{st}\n{}", d.log());
    check_in_transit(&bao, work.path(), "h1-default.k2", &k2);
    assert!(st["auth"]["logins"].as_u64().unwrap() >= 2, "{}", st["auth"]);

    // A wrong secret_id: the pass stops with a message naming the setting; nothing is pushed.
    std::fs::write(&secret, "not-the-secret\n").unwrap();
    revoke_approle_tokens(&bao);
    std::thread::sleep(Duration::from_secs(3)); // and past the lease, whatever the revocation left
    let k3 = d.generate("k3", "ec-p256", true);
    let st = sync_now(&d);
    let ks = key_status(&st, "k3");
    assert_eq!(ks["status"], "pending", "{ks}");
    let err = ks["last_error"].as_str().unwrap();
    assert!(err.contains("sync.approle.secret_id") && err.contains("invalid role or secret ID"), "{err}");
    assert!(st["last_pass"]["stopped"].as_str().unwrap().contains("sync.approle.secret_id"), "{st}");
    assert_eq!(st["auth"]["logged_in"], false, "{}", st["auth"]);
    assert!(st["auth"]["last_error"].as_str().unwrap().contains("sync.approle.secret_id"), "{}", st["auth"]);
    assert_eq!(bao.call("GET", "transit/keys/h1-default.k3", None).0, 404);
    alive(&mut d);
    let out = d.command().args(["sync", "status", "--socket"]).arg(&d.socket).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("login: approle (auth/approle)") && text.contains("sync.approle.secret_id"), "{text}");

    // Rotated: a new secret_id in the vault and in the file; the next login reads it.
    ok(&bao, "POST", "auth/approle/role/h1/custom-secret-id", json!({"secret_id": "h1-secret-two"}));
    std::fs::write(&secret, "h1-secret-two\n").unwrap();
    let st = sync_now(&d);
    assert_eq!(key_status(&st, "k3")["status"], "synced", "{st}\n{}", d.log());
    check_in_transit(&bao, work.path(), "h1-default.k3", &k3);
    assert_eq!(st["auth"]["logged_in"], true);
    assert!(st["auth"]["last_error"].is_null(), "{}", st["auth"]);
    no_secrets_shown(&d, "h1-secret-one");
    no_secrets_shown(&d, "h1-secret-two");
    no_secrets_shown(&d, "not-the-secret");
}

#[test]
fn certificate_login_with_the_client_key_in_the_token() {
    tools();
    require("pkcs11-tool");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let bao = Bao::start_tls(dir);
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=keyport test client CA",
        "-days",
        "2",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    ok(&bao, "POST", "sys/policies/acl/h1-sync", json!({"policy": POLICY}));
    ok(&bao, "POST", "sys/auth/cert", json!({"type": "cert"}));
    ok(
        &bao,
        "POST",
        "auth/cert/certs/h1",
        json!({
            "certificate": std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
            "allowed_common_names": ["host1"],
            "token_policies": ["h1-sync"],
            "token_ttl": "24s",
            "token_max_ttl": "1h",
        }),
    );
    let client = dir.join("client.pem");
    let mut d = daemon_with_auth(&bao, "", &format!("[sync.cert]\ncertificate = \"{}\"\nname = \"h1\"\n", client.display()));

    // No certificate yet: the pass stops and says which setting wants one.
    let k1 = d.generate("k1", "ec-p256", true);
    let st = sync_now(&d);
    let err = key_status(&st, "k1")["last_error"].as_str().unwrap().to_string();
    assert!(err.contains("sync.cert.certificate") && err.contains("keyport sync csr"), "{err}");
    alive(&mut d);

    // The CSR, signed by the token key; our CA signs it.
    let csr = dir.join("client.csr");
    let out = d.command().args(["sync", "csr", "--cn", "host1", "--out"]).arg(&csr).arg("--socket").arg(&d.socket).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    openssl(&["req", "-in", "client.csr", "-verify", "-noout"]);
    std::fs::write(dir.join("ext.cnf"), "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-sha256",
        "-extfile",
        "ext.cnf",
        "-out",
        "client.pem",
    ]);
    // A second CSR is for the same key (made once).
    let (s, again) = d.curl("POST", "/keyport/v1/sync/csr", Some(r#"{"cn":"host1"}"#), &[]);
    assert_eq!((s, &again["generated"]), (200, &json!(false)), "{again}");

    let st = sync_now(&d);
    assert_eq!(key_status(&st, "k1")["status"], "synced", "{st}\n{}", d.log());
    check_in_transit(&bao, dir, "h1-default.k1", &k1);
    let a = &st["auth"];
    assert_eq!((a["method"].as_str(), a["mount"].as_str(), a["logged_in"].as_bool()), (Some("cert"), Some("cert"), Some(true)), "{a}");
    assert_eq!(a["logins"], 1, "{a}");

    // Past 2/3 of the 24 s lease (16 s), well before its end even on a loaded machine:
    // renewed (over the connection that presents the certificate), not a second login.
    std::thread::sleep(Duration::from_secs(17));
    let k2 = d.generate("k2", "ec-p256", true);
    let st = sync_now(&d);
    assert_eq!(key_status(&st, "k2")["status"], "synced", "{st}\n{}", d.log());
    check_in_transit(&bao, dir, "h1-default.k2", &k2);
    assert_eq!((st["auth"]["logins"].as_u64(), st["auth"]["renewals"].as_u64()), (Some(1), Some(1)), "{}", st["auth"]);

    // The client key is in the token and cannot leave it.
    let listing = d.pkcs11_objects();
    let blocks = object_blocks(&listing);
    let key = blocks
        .iter()
        .find(|(kind, label, _)| label == "keyport-vault-client" && kind.contains("Private Key"))
        .unwrap_or_else(|| panic!("no vault client key in the token:\n{listing}"));
    let access: Vec<&str> = key.0.split("Access:").nth(1).unwrap_or("").split(',').map(str::trim).collect();
    assert!(access.contains(&"never extractable") && !access.contains(&"extractable"), "{key:?}");
    assert!(access.contains(&"sensitive"), "{key:?}");
    no_secrets_shown(&d, "-----BEGIN PRIVATE KEY-----");
}
