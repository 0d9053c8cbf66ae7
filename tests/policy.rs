//! Issue 11 items 5, 6 and 7: authorization and export policy held across every face, against a
//! real daemon with real requests (curl over HTTPS, SIGHUP reloads), checked in the inventory.
//!
//! Namespaces: `web` (the defaults: no plain exports, owners may not export), `open`
//! (`allow_unencrypted_export`), `owned` (`owners_may_export`).

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PROJECT: &str = "0123456789abcdef0123456789abcdef";
const OPEN_PROJECT: &str = "fedcba9876543210fedcba9876543210";
const PASS: &str = "a long enough passphrase";

fn phc(password: &str) -> String {
    use std::io::Write;
    let mut c =
        Command::new(env!("CARGO_BIN_EXE_keyport")).arg("hash-password").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    c.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap().trim().to_string()
}

fn principals(gen_permissions: &str) -> String {
    format!(
        r#"
[[principals]]
name = "root"
uids = [TEST_UID]
permissions = {{ "*" = ["admin"] }}

[[principals]]
name = "ops"
api_key_sha256 = ["{ops}"]
permissions = {{ web = ["manage", "deploy", "import", "read", "export-private"], open = ["manage", "import", "read", "export-private"] }}

[[principals]]
name = "importer"
api_key_sha256 = ["{importer}"]
permissions = {{ web = ["import", "deploy"] }}

[[principals]]
name = "gen"
api_key_sha256 = ["{gen}"]
permissions = {gen_permissions}
"#,
        ops = sha256_hex("ops-key"),
        importer = sha256_hex("importer-key"),
        gen = sha256_hex("gen-key"),
    )
}

fn rest(importer_pw: &str) -> String {
    format!(
        r#"
[namespaces.web]
exportable_by_default = true

[namespaces.open]
exportable_by_default = true
allow_unencrypted_export = true

[namespaces.owned]
exportable_by_default = true
owners_may_export = true

[kps.projects.{PROJECT}]
namespace = "web"

[kps.projects.{OPEN_PROJECT}]
namespace = "open"

[apiops]
exportable = true
[apiops.projects.MyProject]
namespace = "web"
[apiops.environments]
Production = "soft"

[tpp]
namespace = "web"
[[tpp.users]]
username = "imp"
password_hash = "{importer_pw}"
principal = "importer"
"#
    )
}

const GEN_FIRST: &str = r#"{ owned = ["manage"] }"#;

fn start() -> Daemon {
    Daemon::start(&format!("{}{}", principals(GEN_FIRST), rest(&phc("imp-password"))))
}

fn https(d: &Daemon, method: &str, path: &str, body: Option<&Value>, key: &str) -> (u16, Value) {
    let text = body.map(|b| b.to_string());
    d.curl_https(method, path, text.as_deref(), &["-H", &format!("X-Api-Key: {key}")])
}

fn kps(d: &Daemon, project: &str, path: &str, body: Value) -> (u16, Value) {
    d.curl_https("POST", &format!("/v3/{project}/keypairs{path}"), Some(&body.to_string()), &["-H", "X-Auth-Token: ops-key"])
}

fn key_by_name(d: &Daemon, name: &str) -> Value {
    let (s, v) = d.curl("GET", "/keyport/v1/keys", None, &[]);
    assert_eq!(s, 200, "{v}");
    v["keys"].as_array().unwrap().iter().find(|k| k["name"] == name).unwrap_or_else(|| panic!("{name} not in {v}")).clone()
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Item 6: with `allow_unencrypted_export = false` no face hands out a plain private key: KPS
/// export and batch export, the 004 export-file (their protocols have no passphrase) refuse in
/// their own error shapes; the native API wants a passphrase of at least 8 characters. Where
/// the policy allows plain exports the same calls work.
#[test]
fn no_face_exports_in_the_clear_where_the_policy_forbids_it() {
    require("curl");
    require("openssl");
    let d = start();
    // KPS: a generated key pair in the strict namespace and one in the open namespace.
    let (s, v) = kps(&d, PROJECT, "", json!({"keypair": {"name": "kp-strict"}}));
    assert_eq!(s, 200, "{v}\n{}", d.log());
    let (s, v) = kps(&d, PROJECT, "/private-key/export", json!({"keypair": {"name": "kp-strict"}}));
    assert_eq!((s, v["error_code"].as_str()), (403, Some("KPS.9003")), "KPS export must refuse: {v}");
    assert!(v["error_msg"].as_str().unwrap().contains("allow_unencrypted_export"), "{v}");
    assert!(!v.to_string().contains("PRIVATE KEY"), "{v}");
    let (s, v) = kps(&d, PROJECT, "/private-key/batch-export", json!([{"keypair": {"name": "kp-strict"}}]));
    assert_eq!((s, v["error_code"].as_str()), (403, Some("KPS.9003")), "KPS batch export must refuse: {v}");
    let (s, v) = kps(&d, OPEN_PROJECT, "", json!({"keypair": {"name": "kp-open"}}));
    assert_eq!(s, 200, "{v}");
    let (s, v) = kps(&d, OPEN_PROJECT, "/private-key/export", json!({"keypair": {"name": "kp-open"}}));
    assert_eq!(s, 200, "{v}");
    assert!(v["keypair"]["private_key"].as_str().unwrap().contains("PRIVATE KEY"), "{v}");

    // 004: a private key deployed to Production, then export-file.
    let dir = d.dir.path();
    openssl(dir, &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "p.pem"]);
    use base64::Engine;
    let content = base64::engine::general_purpose::STANDARD.encode(std::fs::read(dir.join("p.pem")).unwrap());
    let body = json!({"name": "pk", "keyType": "PRIVATE_KEY", "cryptoKeyInfoEnvironmentList": [{"environmentName": "Production", "content": content}]});
    let (s, v) =
        d.curl_https("POST", "/apiops/projects/MyProject/keys/", Some(&body.to_string()), &["-H", "Authorization: Bearer ops-key"]);
    assert_eq!(s, 200, "{v}\n{}", d.log());
    let (s, v) = d.curl_https(
        "GET",
        "/apiops/projects/MyProject/keys/pk/export-file/?environmentName=Production",
        None,
        &["-H", "Authorization: Bearer ops-key"],
    );
    assert_eq!((s, v["status"].as_str()), (403, Some("FAILURE")), "004 export-file must refuse: {v}");
    assert!(v["resultMessage"].as_str().unwrap().contains("allow_unencrypted_export"), "{v}");

    // Native: no passphrase, a short one, then a good one.
    let id = key_by_name(&d, "kp-strict")["id"].as_str().unwrap().to_string();
    let export = |body: Value| https(&d, "POST", &format!("/keyport/v1/keys/{id}/export"), Some(&body), "ops-key");
    let (s, v) = export(json!({"format": "pkcs8"}));
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("passphrase_required")), "{v}");
    let (s, v) = export(json!({"format": "pkcs8", "passphrase": "short"}));
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("weak_passphrase")), "{v}");
    let (s, v) = export(json!({"format": "pkcs8", "passphrase": PASS}));
    assert_eq!(s, 200, "{v}");
    assert!(v["private_key"].as_str().unwrap().contains("ENCRYPTED PRIVATE KEY"), "{v}");

    // Every refusal is audited.
    let db = rusqlite::Connection::open(dir.join("state/keyport.db")).unwrap();
    let refused: i64 = db
        .query_row("SELECT count(*) FROM audit WHERE action = 'key.export' AND outcome = 'refused' AND principal = 'ops'", [], |r| r.get(0))
        .unwrap();
    assert!(refused >= 5, "{refused} refusals audited");
}

/// Item 5: import-file with override=true replaces material only for a caller that may update
/// the key (`manage`); `import` + `deploy` is not enough, and nothing changes.
#[test]
fn import_file_override_needs_manage() {
    require("curl");
    require("openssl");
    let d = start();
    let dir = d.dir.path();
    openssl(dir, &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "a.pem"]);
    openssl(dir, &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "b.pem"]);
    let upload = |file: &str, name: &str, auth: &str| {
        let mut c = Command::new("curl");
        c.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert"]).arg(dir.join("state/tls-cert.pem")).args(["-H", auth]);
        c.arg("-F").arg(format!("keyFile=@{}", dir.join(file).display()));
        for f in [format!("keyName={name}"), "keyType=PRIVATE_KEY".into(), "environmentList=Production".into(), "override=true".into()] {
            c.args(["-F", &f]);
        }
        c.arg(format!("https://127.0.0.1:{}/apiops/projects/MyProject/keys/import-file/", d.port));
        parse_curl(c.output().unwrap())
    };
    use base64::Engine;
    let content = base64::engine::general_purpose::STANDARD.encode(std::fs::read(dir.join("a.pem")).unwrap());
    let body = json!({"name": "victim", "keyType": "PRIVATE_KEY", "cryptoKeyInfoEnvironmentList": [{"environmentName": "Production", "content": content}]});
    let (s, v) =
        d.curl_https("POST", "/apiops/projects/MyProject/keys/", Some(&body.to_string()), &["-H", "Authorization: Bearer ops-key"]);
    assert_eq!(s, 200, "{v}");
    let before = key_by_name(&d, "victim@Production");

    let (s, v) = upload("b.pem", "victim", "Authorization: Bearer importer-key");
    assert_eq!((s, v["status"].as_str()), (403, Some("FAILURE")), "import + deploy must not override: {v}");
    assert!(v["resultMessage"].as_str().unwrap().contains("manage"), "{v}");
    let after = key_by_name(&d, "victim@Production");
    assert_eq!((&after["id"], &after["fingerprint"], &after["owner"]), (&before["id"], &before["fingerprint"], &before["owner"]));
    assert_eq!(object_blocks(&d.pkcs11_objects()).iter().filter(|b| b.1 == "victim").count(), 2, "the old pair, nothing new");

    // The same call by a principal that may update the key replaces it.
    let (s, v) = upload("b.pem", "victim", "Authorization: Bearer ops-key");
    assert_eq!(s, 200, "{v}");
    assert_ne!(key_by_name(&d, "victim@Production")["fingerprint"], before["fingerprint"]);
}

/// Item 7: `import` alone does not let a principal export what it imported; owner rights (where
/// the policy grants owners export) end when a SIGHUP takes the principal's permissions away.
#[test]
fn ownership_needs_a_permission_and_never_replaces_export_private() {
    require("curl");
    require("ssh-keygen");
    let d = start();
    let dir = d.dir.path();
    // The import-only principal imports through TPP, then tries the native export.
    let (s, v) = d.curl_https(
        "POST",
        "/vedauth/authorize/oauth",
        Some(&json!({"client_id": "c", "username": "imp", "password": "imp-password", "scope": "ssh:discover"}).to_string()),
        &[],
    );
    assert_eq!(s, 200, "{v}\n{}", d.log());
    let tok = v["access_token"].as_str().unwrap().to_string();
    let k = dir.join("imported");
    assert!(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&k).status().unwrap().success());
    use base64::Engine;
    let content = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&k).unwrap());
    let (s, v) = d.curl_https(
        "POST",
        "/vedsdk/SSH/ImportPrivateKey",
        Some(&json!({"KeyContentBase64": content}).to_string()),
        &["-H", &format!("Authorization: Bearer {tok}")],
    );
    assert_eq!((s, v["SshWebResponse"]["Success"].as_bool()), (200, Some(true)), "{v}");
    let (_, list) = https(&d, "GET", "/keyport/v1/keys", None, "importer-key");
    let imported = list["keys"].as_array().unwrap().iter().find(|k| k["owner"] == "importer").expect("its own key").clone();
    assert_eq!(imported["exportable"], true);
    let id = imported["id"].as_str().unwrap();
    let (s, v) = https(
        &d,
        "POST",
        &format!("/keyport/v1/keys/{id}/export"),
        Some(&json!({"format": "openssh", "passphrase": PASS})),
        "importer-key",
    );
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")), "import alone must not export: {v}");

    // Owner export where the policy grants it, while the owner holds a permission there.
    let (s, v) =
        https(&d, "POST", "/keyport/v1/keys", Some(&json!({"name": "mine", "namespace": "owned", "algorithm": "ec-p256"})), "gen-key");
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let export =
        || https(&d, "POST", &format!("/keyport/v1/keys/{id}/export"), Some(&json!({"format": "pkcs8", "passphrase": PASS})), "gen-key");
    let (s, v) = export();
    assert_eq!(s, 200, "owners_may_export: {v}");
    // SIGHUP takes gen's permissions in `owned` away.
    let text = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(&d.config, text.replace(GEN_FIRST, r#"{ web = ["read"] }"#)).unwrap();
    let pid = d.child.as_ref().unwrap().id() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGHUP).unwrap();
    let start = Instant::now();
    while !d.log().contains("principals reloaded") {
        assert!(start.elapsed() < Duration::from_secs(20), "no reload:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (s, v) = export();
    assert!(s == 404 || s == 403, "the revoked owner must not export: {s} {v}");
    assert!(v["private_key"].is_null(), "{v}");
}

/// Item 7: two principals with one name would share ownership; the config check refuses it.
#[test]
fn duplicate_principal_names_are_a_config_error() {
    let d = Daemon::config(&format!("{}{}\n[[principals]]\nname = \"gen\"\nuids = [4242]\n", principals(GEN_FIRST), rest("x")));
    let out = d.command().args(["config", "check"]).arg(&d.config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("principals[4].name") && err.contains("'gen' is used twice"), "{err}");
}

/// Item 9, on the TPP and KPS faces too: importing a key that is already held tells a caller
/// that may not read the holder nothing about it (no name, no KeyId).
#[test]
fn a_duplicate_import_names_no_key_the_importer_cannot_read() {
    require("curl");
    require("ssh-keygen");
    let d = start();
    let k = d.dir.path().join("dup");
    assert!(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&k).status().unwrap().success());
    let pem = std::fs::read_to_string(&k).unwrap();
    let create = |auth: &str, name: &str| {
        let body = json!({"keypair": {"name": name, "key_protection": {"private_key": pem, "encryption": {"type": "default"}}}});
        d.curl_https("POST", &format!("/v3/{PROJECT}/keypairs"), Some(&body.to_string()), &["-H", &format!("X-Auth-Token: {auth}")])
    };
    let (s, v) = create("ops-key", "kp-held");
    assert_eq!(s, 200, "{v}\n{}", d.log());
    let held = key_by_name(&d, "kp-held");

    // KPS: the import-only principal sends the same private key.
    let (s, v) = create("importer-key", "mine");
    assert_eq!((s, v["error_code"].as_str()), (400, Some("KPS.0002")), "{v}");
    assert!(!v.to_string().contains("kp-held"), "the holder's name leaked: {v}");
    // TPP: the same.
    let (s, v) = d.curl_https(
        "POST",
        "/vedauth/authorize/oauth",
        Some(&json!({"client_id": "c", "username": "imp", "password": "imp-password", "scope": "ssh:discover"}).to_string()),
        &[],
    );
    assert_eq!(s, 200, "{v}");
    use base64::Engine;
    let content = base64::engine::general_purpose::STANDARD.encode(&pem);
    let (s, v) = d.curl_https(
        "POST",
        "/vedsdk/SSH/ImportPrivateKey",
        Some(&json!({"KeyContentBase64": content}).to_string()),
        &["-H", &format!("Authorization: Bearer {}", v["access_token"].as_str().unwrap())],
    );
    assert_eq!((s, v["SshWebResponse"]["ErrorCode"].as_i64()), (200, Some(5)), "{v}");
    assert!(v["KeyId"].is_null() && !v.to_string().contains("kp-held"), "the holder leaked: {v}");
    assert_eq!(key_by_name(&d, "kp-held")["id"], held["id"], "nothing changed");
}
