//! The Huawei KPS face, driven by the vendor's own Python SDK (huaweicloudsdkkps, AK/SK
//! signature and X-Auth-Token) over HTTPS, and by curl for the requests the SDK would never
//! send (signed by the SDK's own signer, then tampered with). Keys come from ssh-keygen,
//! puttygen and openssl; the token is checked with pkcs11-tool.

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

const PROJECT: &str = "0123456789abcdef0123456789abcdef";
const AK: &str = "AKKPSTEST0001";
const SK: &str = "kps-test-secret-key-0123456789abcdef";
const TOKEN: &str = "kps-token";
const READER: &str = "kps-reader-token";

fn tools() {
    require("curl");
    require("openssl");
    require("pkcs11-tool");
    require("ssh-keygen");
    require("puttygen");
    require("python3");
    let ok = Command::new("python3").args(["-c", "import huaweicloudsdkkps, huaweicloudsdkcore"]).status().is_ok_and(|s| s.success());
    assert!(ok, "huaweicloudsdkkps is required (scripts/deps-test installs it)");
}

fn daemon() -> Daemon {
    let extra = format!(
        r#"
[[principals]]
name = "root"
uids = [TEST_UID]
permissions = {{ "*" = ["admin"] }}

[[principals]]
name = "kps-user"
api_key_sha256 = ["{user}"]
permissions = {{ kps = ["import", "read", "manage", "export-private"] }}

[[principals]]
name = "kps-reader"
api_key_sha256 = ["{reader}"]
permissions = {{ kps = ["read"] }}

[namespaces.kps]
exportable_by_default = false
allow_exportable = true
# KPS export has no passphrase: plain exports must be allowed for it to export (issue 11).
allow_unencrypted_export = true

[kps.projects.{PROJECT}]
namespace = "kps"
kms_keys = [{{ name = "kps/default", id = "2f3c1a9e-0000-4000-8000-000000000001" }}]

[[kps.access_keys]]
access_key = "{AK}"
secret_key = {{ env = "KPS_TEST_SK" }}
principal = "kps-user"
"#,
        user = sha256_hex(TOKEN),
        reader = sha256_hex(READER),
    );
    // Two sessions, as on the CI machine's 2 cores by default: batch imports write through both.
    let mut d = Daemon::config_tokens(&format!("{SOFT_TOKEN}sessions = 2\n"), &extra);
    d.env.push(("KPS_TEST_SK".into(), SK.into()));
    d.spawn();
    d
}

fn sdk_script() -> String {
    format!("{}/tests/kps_sdk.py", env!("CARGO_MANIFEST_DIR"))
}

/// One SDK call; `auth` is `aksk` or `token`.
fn sdk(d: &Daemon, auth: &str, op: &str, args: Value) -> Value {
    let auth = match auth {
        "aksk" => format!("aksk:{AK}:{SK}"),
        "token" => format!("token:{TOKEN}"),
        other => other.to_string(),
    };
    let out = Command::new("python3")
        .args([&sdk_script(), &format!("https://127.0.0.1:{}", d.port), PROJECT, &auth, op, &args.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "sdk {op}: {}\n{}", String::from_utf8_lossy(&out.stderr), d.log());
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("sdk {op} printed {}: {e}", String::from_utf8_lossy(&out.stdout)))
}

fn ok(v: Value) -> Value {
    assert!(v.get("ok").is_some(), "expected success: {v}");
    v["ok"].clone()
}

fn err(v: &Value) -> (u64, String) {
    let e = &v["error"];
    assert!(e.is_object(), "expected an error: {v}");
    (e["status"].as_u64().unwrap(), e["error_code"].as_str().unwrap_or_default().to_string())
}

fn run(dir: &Path, prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog).current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "{prog} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read(dir: &Path, f: &str) -> String {
    std::fs::read_to_string(dir.join(f)).unwrap()
}

/// `SHA256:…` of a public or private key file, as ssh-keygen prints it.
fn ssh_fingerprint(dir: &Path, f: &str) -> String {
    run(dir, "ssh-keygen", &["-l", "-E", "sha256", "-f", f]).split_whitespace().nth(1).unwrap().to_string()
}

/// The OpenSSH public key of a private key file (type and base64 only): by ssh-keygen, or for
/// a PKCS#8 Ed25519 key (which ssh-keygen does not read) from `openssl pkey -pubout`.
fn ssh_public_of(dir: &Path, pem: &str) -> String {
    let f = dir.join("exported.key");
    std::fs::write(&f, pem).unwrap();
    if pem.starts_with("-----BEGIN PRIVATE KEY-----") {
        let out =
            Command::new("openssl").current_dir(dir).args(["pkey", "-in", "exported.key", "-pubout", "-outform", "DER"]).output().unwrap();
        assert!(out.status.success(), "openssl pkey: {}", String::from_utf8_lossy(&out.stderr));
        let spki = out.stdout;
        assert_eq!(spki.len(), 44, "an Ed25519 SubjectPublicKeyInfo");
        let mut blob = Vec::new();
        for part in [&b"ssh-ed25519"[..], &spki[12..]] {
            blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
            blob.extend_from_slice(part);
        }
        use base64::Engine;
        return format!("ssh-ed25519 {}", base64::engine::general_purpose::STANDARD.encode(blob));
    }
    std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let line = run(dir, "ssh-keygen", &["-y", "-f", "exported.key"]);
    line.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

fn labels(d: &Daemon) -> Vec<String> {
    object_blocks(&d.pkcs11_objects()).into_iter().map(|(_, label, _)| label).collect()
}

/// Headers of a request signed by the vendor SDK's own signer (`sk`, `date` may be forced).
fn signed_headers(d: &Daemon, method: &str, path: &str, query: &[(&str, &str)], body: &str, sk: &str, date: Option<&str>) -> Vec<String> {
    let script = r#"
import json, sys
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.signer.signer import Signer
from huaweicloudsdkcore.sdk_request import SdkRequest
a = json.loads(sys.argv[1])
h = {"Host": a["host"]}
if a["body"]:
    h["Content-Type"] = "application/json"  # curl sends it with the body
if a["date"]:
    h["X-Sdk-Date"] = a["date"]
r = SdkRequest(method=a["method"], schema="https", host=a["host"], resource_path=a["path"], uri=a["path"],
               query_params=[tuple(q) for q in a["query"]], header_params=h, body=a["body"].encode() if a["body"] else "")
r = Signer(BasicCredentials(a["ak"], a["sk"])).sign(r)
print(json.dumps(["%s: %s" % kv for kv in r.header_params.items() if kv[0] not in ("Host", "Content-Type")]))
"#;
    let args = json!({"host": format!("127.0.0.1:{}", d.port), "method": method, "path": path, "query": query, "body": body, "ak": AK, "sk": sk, "date": date});
    let out = Command::new("python3").args(["-c", script, &args.to_string()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn curl_signed(d: &Daemon, method: &str, path_and_query: &str, body: Option<&str>, headers: &[String]) -> (u16, Value) {
    let mut args: Vec<&str> = Vec::new();
    for h in headers {
        args.push("-H");
        args.push(h);
    }
    d.curl_https(method, path_and_query, body, &args)
}

fn keypairs_path() -> String {
    format!("/v3/{PROJECT}/keypairs")
}

#[test]
fn sdk_lifecycle_with_ak_sk_generate_show_update_list_export_clear_delete() {
    tools();
    let d = daemon();
    let dir = d.dir.path();
    let made = ok(sdk(&d, "aksk", "create", json!({"name": "gen-1", "user_id": "u-1"})));
    let kp = &made["keypair"];
    assert_eq!(kp["name"], "gen-1");
    assert_eq!(kp["type"], "ssh");
    let public = kp["public_key"].as_str().unwrap().to_string();
    assert!(public.starts_with("ssh-rsa AAAA"), "{public}");
    std::fs::write(dir.join("gen.pub"), format!("{public}\n")).unwrap();
    assert_eq!(kp["fingerprint"].as_str().unwrap(), ssh_fingerprint(dir, "gen.pub"), "fingerprint as ssh-keygen -lf shows it");
    assert!(kp.get("private_key").is_none_or(|v| v.is_null()), "create never returns the private key: {kp}");
    let objects = object_blocks(&d.pkcs11_objects());
    assert!(objects.iter().any(|(kind, label, _)| kind.starts_with("Private Key Object") && label == "gen-1"), "{objects:?}");

    for name in ["gen-2", "gen-3"] {
        ok(sdk(&d, "aksk", "create", json!({"name": name, "encryption": {"type": "kms", "kms_key_name": "kps/default"}})));
    }
    let shown = ok(sdk(&d, "aksk", "show", json!({"name": "gen-1"})))["keypair"].clone();
    assert_eq!(shown["is_key_protection"], true);
    assert_eq!(shown["user_id"], "u-1");
    assert_eq!(shown["public_key"].as_str().unwrap(), public);
    assert!(shown["create_time"].as_i64().unwrap() > 1_600_000_000_000, "epoch milliseconds: {shown}");

    let up = sdk(&d, "aksk", "update", json!({"name": "gen-1", "description": "build host key"}));
    assert!(ok(up.clone()).is_object() || up["status"] == 204, "{up}");
    assert_eq!(ok(sdk(&d, "aksk", "show", json!({"name": "gen-1"})))["keypair"]["description"], "build host key");

    // Paging: limit 2 → next_marker → the rest.
    let p1 = ok(sdk(&d, "aksk", "list", json!({"limit": 2})));
    let names1: Vec<&str> = p1["keypairs"].as_array().unwrap().iter().map(|k| k["keypair"]["name"].as_str().unwrap()).collect();
    assert_eq!(names1, ["gen-1", "gen-2"], "{p1}");
    assert_eq!(p1["page_info"]["current_count"], 2);
    let marker = p1["page_info"]["next_marker"].as_str().unwrap().to_string();
    let p2 = ok(sdk(&d, "aksk", "list", json!({"limit": 2, "marker": marker})));
    let names2: Vec<&str> = p2["keypairs"].as_array().unwrap().iter().map(|k| k["keypair"]["name"].as_str().unwrap()).collect();
    assert_eq!(names2, ["gen-3"], "{p2}");
    assert!(p2["page_info"]["next_marker"].is_null(), "{p2}");

    // Export: PKCS#1 PEM, the token's key.
    let exported = ok(sdk(&d, "aksk", "export", json!({"name": "gen-1"})));
    let pem = exported["keypair"]["private_key"].as_str().unwrap().to_string();
    assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "{}", &pem[..40]);
    assert_eq!(ssh_public_of(dir, &pem), public.split_whitespace().take(2).collect::<Vec<_>>().join(" "));

    // Clear the private key: the pair stays with its public key, the token objects go.
    ok(sdk(&d, "aksk", "clear", json!({"name": "gen-1"})));
    assert!(!labels(&d).contains(&"gen-1".to_string()), "objects gone from the token");
    let shown = ok(sdk(&d, "aksk", "show", json!({"name": "gen-1"})))["keypair"].clone();
    assert_eq!(shown["is_key_protection"], false);
    assert_eq!(shown["public_key"].as_str().unwrap(), public);
    // The SDK dates requests to the second and keyport refuses a replayed changing request: the
    // repeated export (and clear) below go in a later second than the first ones.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(err(&sdk(&d, "aksk", "export", json!({"name": "gen-1"}))), (400, "KPS.6005".into()));
    assert_eq!(err(&sdk(&d, "aksk", "clear", json!({"name": "gen-1"}))), (400, "KPS.6005".into()));

    ok(sdk(&d, "aksk", "delete", json!({"name": "gen-2"})));
    assert!(!labels(&d).contains(&"gen-2".to_string()));
    assert_eq!(err(&sdk(&d, "aksk", "show", json!({"name": "gen-2"}))), (400, "KPS.4016".into()));
    // The same signed request within the same second (the SDK dates to the second) is a replay
    // and refused (issue 11): a second delete is a new request only in a later second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(err(&sdk(&d, "aksk", "delete", json!({"name": "gen-2"}))), (400, "KPS.4016".into()));

    // Tasks: keyport never answers with one.
    assert_eq!(ok(sdk(&d, "aksk", "running_tasks", json!({})))["total"], 0);
    assert_eq!(ok(sdk(&d, "token", "failed_tasks", json!({})))["total"], 0);
    // Issue 16: the SK and the API tokens never reached the log or the store.
    d.assert_no_secret_leaked(&[SK, TOKEN, READER]);
}

#[test]
fn sdk_import_with_token_from_ssh_keygen_puttygen_and_openssl() {
    tools();
    let d = daemon();
    let dir = d.dir.path();
    run(dir, "ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-C", "", "-f", "ed"]);
    run(dir, "ssh-keygen", &["-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "", "-f", "rsa"]);
    run(dir, "puttygen", &["-q", "-t", "ecdsa", "-b", "384", "-o", "p384.ppk", "--new-passphrase", "/dev/null"]);
    run(dir, "puttygen", &["p384.ppk", "-O", "public-openssh", "-o", "p384.pub"]);
    run(dir, "openssl", &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "p256.pem"]);
    std::fs::write(dir.join("p256.pub"), run(dir, "ssh-keygen", &["-y", "-f", "p256.pem"])).unwrap();

    for (name, file, public, enc) in [
        ("ed-key", "ed", "ed.pub", json!({"type": "default"})),
        ("rsa-key", "rsa", "rsa.pub", json!({"type": "kms", "kms_key_name": "kps/default"})),
        ("putty_p384", "p384.ppk", "p384.pub", json!({"type": "kms", "kms_key_id": "2f3c1a9e-0000-4000-8000-000000000001"})),
        ("openssl-p256", "p256.pem", "p256.pub", json!({"type": "default"})),
    ] {
        let v = ok(sdk(&d, "token", "import", json!({"name": name, "private_key": read(dir, file), "encryption": enc})));
        assert_eq!(v["keypair"]["name"], name);
        let shown = ok(sdk(&d, "token", "show", json!({"name": name})))["keypair"].clone();
        assert_eq!(shown["fingerprint"].as_str().unwrap(), ssh_fingerprint(dir, public), "{name}");
        assert_eq!(shown["is_key_protection"], true);
        let exported = ok(sdk(&d, "token", "export", json!({"name": name})))["keypair"]["private_key"].as_str().unwrap().to_string();
        let want_header = match name {
            "ed-key" => "-----BEGIN PRIVATE KEY-----",
            "rsa-key" => "-----BEGIN RSA PRIVATE KEY-----",
            _ => "-----BEGIN EC PRIVATE KEY-----",
        };
        assert!(exported.starts_with(want_header), "{name}: {}", &exported[..40]);
        let want: String = read(dir, public).split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        assert_eq!(ssh_public_of(dir, &exported), want, "{name}: the exported key is the imported one");
    }
    let l = labels(&d);
    for name in ["ed-key", "rsa-key", "putty_p384", "openssl-p256"] {
        assert!(l.contains(&name.to_string()), "{name} in the token: {l:?}");
    }

    // A key pair registered with only its public key, then its private key imported.
    run(dir, "ssh-keygen", &["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", "reg"]);
    let v = ok(sdk(&d, "token", "create", json!({"name": "registered", "public_key": read(dir, "reg.pub").trim()})));
    assert_eq!(v["keypair"]["fingerprint"].as_str().unwrap(), ssh_fingerprint(dir, "reg.pub"));
    assert_eq!(ok(sdk(&d, "token", "show", json!({"name": "registered"})))["keypair"]["is_key_protection"], false);
    assert!(!labels(&d).contains(&"registered".to_string()), "a public key alone makes no token object");
    let wrong = sdk(&d, "token", "import", json!({"name": "registered", "private_key": read(dir, "rsa")}));
    assert_eq!(err(&wrong), (400, "KPS.6011".into()), "{wrong}");
    assert!(!labels(&d).contains(&"registered".to_string()));
    ok(sdk(&d, "token", "import", json!({"name": "registered", "private_key": read(dir, "reg")})));
    assert_eq!(ok(sdk(&d, "token", "show", json!({"name": "registered"})))["keypair"]["is_key_protection"], true);
    assert!(labels(&d).contains(&"registered".to_string()));
    // Re-importing onto a key pair that holds a key: a different key is still a mismatch.
    assert_eq!(err(&sdk(&d, "token", "import", json!({"name": "rsa-key", "private_key": read(dir, "reg")}))), (400, "KPS.6011".into()));
}

#[test]
fn refusals_signature_token_names_duplicates_kms_and_bad_keys() {
    tools();
    let d = daemon();
    let dir = d.dir.path();
    let path = keypairs_path();
    let before = object_blocks(&d.pkcs11_objects()).len();

    // Signed requests: valid, wrong SK, stale date, tampered body, tampered query.
    let h = signed_headers(&d, "GET", &path, &[("limit", "5")], "", SK, None);
    let (s, v) = curl_signed(&d, "GET", &format!("{path}?limit=5"), None, &h);
    assert_eq!(s, 200, "{v}\n{}", d.log());
    let (s, v) = curl_signed(&d, "GET", &format!("{path}?limit=6"), None, &h);
    assert_eq!((s, v["error_code"].as_str()), (401, Some("KPS.9001")), "tampered query: {v}");
    let h = signed_headers(&d, "GET", &path, &[], "", "wrong-secret", None);
    let (s, v) = curl_signed(&d, "GET", &path, None, &h);
    assert_eq!((s, v["error_code"].as_str()), (401, Some("KPS.9001")), "wrong SK: {v}");
    let stale = {
        let out = Command::new("date").args(["-u", "-d", "-20 minutes", "+%Y%m%dT%H%M%SZ"]).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let h = signed_headers(&d, "GET", &path, &[], "", SK, Some(&stale));
    let (s, v) = curl_signed(&d, "GET", &path, None, &h);
    assert_eq!((s, v["error_code"].as_str()), (401, Some("KPS.9001")), "stale date: {v}");
    assert!(v["error_msg"].as_str().unwrap().contains("15 minutes"), "{v}");
    let body = r#"{"keypair":{"name":"signed-1"}}"#;
    let h = signed_headers(&d, "POST", &path, &[], body, SK, None);
    let (s, v) = curl_signed(&d, "POST", &path, Some(r#"{"keypair":{"name":"signed-2"}}"#), &h);
    assert_eq!((s, v["error_code"].as_str()), (401, Some("KPS.9001")), "tampered body: {v}");
    let (s, v) = curl_signed(&d, "POST", &path, Some(body), &h);
    assert_eq!(s, 200, "the same signed body goes through: {v}\n{}", d.log());
    assert_eq!(v["keypair"]["name"], "signed-1");
    let before = before + 2;

    // Tokens.
    let tok = format!("X-Auth-Token: {TOKEN}");
    let (s, v) = d.curl_https("GET", &path, None, &["-H", "X-Auth-Token: not-a-token"]);
    assert_eq!((s, v["error_code"].as_str()), (401, Some("KPS.9001")), "{v}");
    let (s, v) = d.curl_https("GET", &path, None, &[]);
    assert_eq!((s, v["error_code"].as_str()), (401, Some("KPS.9001")), "no credentials: {v}");
    let (s, v) = d.curl_https("POST", &path, Some(r#"{"keypair":{"name":"by-reader"}}"#), &["-H", &format!("X-Auth-Token: {READER}")]);
    assert_eq!((s, v["error_code"].as_str()), (403, Some("KPS.9003")), "{v}");
    let (s, v) = d.curl_https("GET", &path, None, &["-H", &format!("X-Auth-Token: {READER}")]);
    assert_eq!(s, 200, "a reader may list: {v}");
    let (s, v) = d.curl_https("GET", "/v3/not-a-project/keypairs", None, &["-H", &tok]);
    assert_eq!((s, v["error_code"].as_str()), (400, Some("KPS.0002")), "{v}");

    // Name rule and duplicates.
    for name in ["a.b", "with space", "", &"x".repeat(65), "ключ"] {
        let (s, v) = d.curl_https("POST", &path, Some(&json!({"keypair": {"name": name}}).to_string()), &["-H", &tok]);
        assert_eq!((s, v["error_code"].as_str()), (400, Some("KPS.0002")), "{name:?}: {v}");
    }
    let (s, _) = d.curl_https("POST", &path, Some(&json!({"keypair": {"name": "x".repeat(64)}}).to_string()), &["-H", &tok]);
    assert_eq!(s, 200, "64 characters are allowed");
    let (s, v) = d.curl_https("POST", &path, Some(r#"{"keypair":{"name":"signed-1"}}"#), &["-H", &tok]);
    assert_eq!((s, v["error_code"].as_str()), (400, Some("KPS.0002")), "duplicate: {v}");
    assert!(v["error_msg"].as_str().unwrap().contains("already exists"), "{v}");
    let before = before + 2;

    // Unknown kms key, kms without a key, bad encryption type.
    run(dir, "ssh-keygen", &["-q", "-t", "ecdsa", "-N", "", "-f", "ec"]);
    let imp = |name: &str, key: &str, enc: Value| {
        let body = json!({"keypair": {"name": name, "key_protection": {"private_key": key, "encryption": enc}}}).to_string();
        d.curl_https("POST", &format!("{path}/private-key/import"), Some(&body), &["-H", &tok])
    };
    let key = read(dir, "ec");
    let (s, v) = imp("k1", &key, json!({"type": "kms", "kms_key_name": "kps/nope"}));
    assert_eq!((s, v["error_code"].as_str()), (400, Some("KPS.6008")), "{v}");
    let (s, v) = imp("k1", &key, json!({"type": "kms"}));
    assert_eq!((s, v["error_code"].as_str()), (400, Some("KPS.0002")), "{v}");
    let (s, v) = imp("k1", &key, json!({"type": "vault"}));
    assert_eq!((s, v["error_code"].as_str()), (400, Some("KPS.0002")), "{v}");
    // Garbage and wrong formats.
    run(dir, "openssl", &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "c.key", "-subj", "/CN=c", "-out", "c.crt"]);
    for bad in [
        "not a key".to_string(),
        read(dir, "c.crt"),
        read(dir, "ec.pub"),
        "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n".into(),
    ] {
        let (s, v) = imp("k1", &bad, json!({"type": "default"}));
        assert_eq!((s, v["error_code"].as_str()), (400, Some("KPS.0002")), "{v}");
    }
    let (s, v) = d.curl_https("POST", &format!("{path}/private-key/import"), Some("{not json"), &["-H", &tok]);
    assert_eq!((s, v["error_code"].as_str()), (400, Some("KPS.0002")), "{v}");
    // Mismatch at create: public_key and private_key of different keys.
    let body = json!({"keypair": {"name": "mm", "public_key": read(dir, "ec.pub"), "key_protection": {"private_key": read(dir, "c.key"), "encryption": {"type": "default"}}}});
    let (s, v) = d.curl_https("POST", &path, Some(&body.to_string()), &["-H", &tok]);
    assert_eq!((s, v["error_code"].as_str()), (400, Some("KPS.6011")), "{v}");
    // ECS binding and tasks.
    let (s, v) = d.curl_https("GET", &format!("/v3/{PROJECT}/tasks/abc"), None, &["-H", &tok]);
    assert_eq!((s, v["error_code"].as_str()), (400, Some("KPS.0001")), "{v}");

    let left = labels(&d);
    assert_eq!(left.len(), before, "refusals leave nothing in the token: {left:?}");
}

#[test]
fn batch_import_of_many_and_batch_export_zip() {
    tools();
    let d = daemon();
    let dir = d.dir.path();
    let mut items = Vec::new();
    for i in 0..6 {
        items.push(json!({"name": format!("gen-{i:02}")}));
    }
    for i in 0..5 {
        let f = format!("ssh{i}");
        run(dir, "ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-f", &f]);
        items.push(json!({"name": format!("imp-{i:02}"), "private_key": read(dir, &f), "encryption": {"type": "default"}}));
    }
    run(dir, "ssh-keygen", &["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", "pubonly"]);
    items.push(json!({"name": "pub-only", "public_key": read(dir, "pubonly.pub").trim()}));
    items.push(json!({"name": "bad.name"}));
    items.push(json!({"name": "gen-00"}));
    let v = ok(sdk(&d, "aksk", "batch_import", json!({"items": items})));
    assert_eq!(v["succeeded_keypairs"].as_array().unwrap().len(), 12, "{v}");
    let failed: Vec<&str> = v["failed_keypairs"].as_array().unwrap().iter().map(|f| f["keypair_name"].as_str().unwrap()).collect();
    assert_eq!(failed, ["bad.name", "gen-00"], "{v}");
    let l = labels(&d);
    assert_eq!(l.iter().filter(|n| n.starts_with("gen-") || n.starts_with("imp-")).count(), 11 * 2, "private and public objects: {l:?}");

    // List every page with limit 5.
    let (mut seen, mut marker) = (Vec::new(), None::<String>);
    loop {
        let mut args = json!({"limit": 5});
        if let Some(m) = &marker {
            args["marker"] = json!(m);
        }
        let p = ok(sdk(&d, "token", "list", args));
        seen.extend(p["keypairs"].as_array().unwrap().iter().map(|k| k["keypair"]["name"].as_str().unwrap().to_string()));
        match p["page_info"]["next_marker"].as_str() {
            Some(m) => marker = Some(m.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 12, "{seen:?}");

    // Batch export: a zip of PEM files, one per key pair.
    let tok = format!("X-Auth-Token: {TOKEN}");
    let body = json!([{"keypair": {"name": "gen-01"}}, {"keypair": {"name": "imp-02"}}]).to_string();
    let zip = dir.join("keypairs.zip");
    let out = Command::new("curl")
        .args(["-sS", "-o"])
        .arg(&zip)
        .args(["-w", "%{http_code}", "--cacert"])
        .arg(dir.join("state/tls-cert.pem"))
        .args(["-X", "POST", "-H", &tok, "-H", "content-type: application/json", "--data-binary", &body])
        .arg(format!("https://127.0.0.1:{}{}/private-key/batch-export", d.port, keypairs_path()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{}", std::fs::read_to_string(&zip).unwrap_or_default());
    let listing = run(dir, "python3", &["-c", "import zipfile,sys,json; z=zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print(json.dumps({n: z.read(n).decode() for n in z.namelist()}))", zip.to_str().unwrap()]);
    let files: Value = serde_json::from_str(&listing).unwrap();
    assert!(files["gen-01.pem"].as_str().unwrap().starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let ed = files["imp-02.pem"].as_str().unwrap();
    let want: String = read(dir, "ssh2.pub").split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    assert_eq!(ssh_public_of(dir, ed), want);
    let eleven: Vec<Value> = (0..11).map(|i| json!({"keypair": {"name": format!("gen-{:02}", i % 6)}})).collect();
    let (s, v) = d.curl_https(
        "POST",
        &format!("{}/private-key/batch-export", keypairs_path()),
        Some(&Value::Array(eleven).to_string()),
        &["-H", &tok],
    );
    assert_eq!((s, v["error_code"].as_str()), (400, Some("KPS.0002")), "at most 10: {v}");
    let (s, v) = d.curl_https(
        "POST",
        &format!("{}/private-key/batch-export", keypairs_path()),
        Some(r#"[{"keypair":{"name":"pub-only"}}]"#),
        &["-H", &tok],
    );
    assert_eq!((s, v["error_code"].as_str()), (400, Some("KPS.6005")), "{v}");
}

// --- issue 11: bounds, one auth rule, replay ---------------------------------------------------

/// VmHWM (peak resident set) and VmRSS of the daemon, in MiB.
fn memory_mib(d: &Daemon) -> (u64, u64) {
    let pid = d.child.as_ref().unwrap().id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"));
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn sdk_date_now() -> String {
    let out = Command::new("date").args(["-u", "+%Y%m%dT%H%M%SZ"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_signed_headers_bomb_is_refused_with_bounded_memory_while_others_are_served() {
    tools();
    let d = daemon();
    let dir = d.dir.path();
    // Only the public AK and a current date: a 100 KB header named 1,300 times in
    // SignedHeaders asked the old verifier for 130 MB per request.
    let names = std::iter::repeat_n("x-big", 1300).collect::<Vec<_>>().join(";");
    let headers = format!(
        "Authorization: SDK-HMAC-SHA256 Access={AK}, SignedHeaders=host;x-sdk-date;{names}, Signature={sig}\nX-Sdk-Date: {date}\nX-Big: {big}\n",
        sig = "0".repeat(64),
        date = sdk_date_now(),
        big = "a".repeat(100 * 1024),
    );
    std::fs::write(dir.join("bomb.headers"), headers).unwrap();
    let (hwm_before, _) = memory_mib(&d);
    let started = std::time::Instant::now();
    let bombs: Vec<_> = (0..6)
        .map(|_| {
            let mut c = Command::new("curl");
            c.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time", "60", "--cacert"])
                .arg(dir.join("state/tls-cert.pem"))
                .arg("-H")
                .arg(format!("@{}", dir.join("bomb.headers").display()))
                .arg(format!("https://127.0.0.1:{}{}", d.port, keypairs_path()));
            c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
        })
        .collect();
    // Another caller is served meanwhile.
    let (s, v) = d.curl("GET", "/keyport/v1/health", None, &["--max-time", "5"]);
    assert_eq!(s, 200, "{v}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "health took {:?}", started.elapsed());
    let answers: Vec<_> = bombs.into_iter().map(|b| parse_curl(b.wait_with_output().unwrap())).collect();
    let (hwm, rss) = memory_mib(&d);
    eprintln!("peak RSS {hwm_before} MiB before, {hwm} MiB after six bombs; health in {:?}", started.elapsed());
    assert!(hwm < hwm_before + 100, "peak RSS grew from {hwm_before} MiB to {hwm} MiB (now {rss} MiB)");
    for (status, v) in answers {
        assert_eq!((status, v["error_code"].as_str()), (401, Some("KPS.9001")), "{v}");
        assert!(v["error_msg"].as_str().unwrap().contains("SignedHeaders names 'x-big' twice"), "{v}");
    }
    let (s, _) = d.curl_https("GET", &keypairs_path(), None, &["-H", &format!("X-Auth-Token: {TOKEN}")]);
    assert_eq!(s, 200, "the daemon still serves: {}", d.log());
}

#[test]
fn a_wrong_api_key_on_the_socket_is_refused_by_every_face() {
    tools();
    let d = daemon();
    let path = keypairs_path();
    // Root (uid 0) is an admin principal; with no key its uid is used.
    let (s, v) = d.curl("GET", &path, None, &[]);
    assert_eq!(s, 200, "root by uid: {v}");
    for header in ["X-Api-Key: wrong", "Authorization: Bearer wrong", "X-Auth-Token: wrong"] {
        let (s, v) = d.curl("GET", &path, None, &["-H", header]);
        assert_eq!((s, v["error_code"].as_str()), (401, Some("KPS.9001")), "KPS with {header}: {v}");
        let (s, v) = d.curl("GET", "/keyport/v1/keys", None, &["-H", header]);
        if header.starts_with("X-Auth-Token") {
            assert_eq!(s, 200, "the native face has no X-Auth-Token header: {v}");
        } else {
            assert_eq!((s, v["error"]["code"].as_str()), (401, Some("unauthenticated")), "native with {header}: {v}");
        }
    }
    // A good key next to a wrong one is refused too, whichever header each came in.
    let (s, v) = d.curl("GET", &path, None, &["-H", &format!("X-Auth-Token: {TOKEN}"), "-H", "X-Api-Key: wrong"]);
    assert_eq!((s, v["error_code"].as_str()), (401, Some("KPS.9001")), "{v}");
    let (s, v) = d.curl("GET", "/v1/edgeinstances", None, &["-H", &format!("tppl-api-key: {TOKEN}"), "-H", "X-Api-Key: wrong"]);
    assert_eq!(s, 401, "TLS Protect Cloud face: {v}");
    assert!(v["errors"][0]["message"].as_str().unwrap().contains("not recognized"), "{v}");
    // Keys of two principals: refused.
    let (s, v) = d.curl("GET", &path, None, &["-H", &format!("X-Auth-Token: {TOKEN}"), "-H", &format!("X-Api-Key: {READER}")]);
    assert_eq!((s, v["error_code"].as_str()), (401, Some("KPS.9001")), "{v}");
    assert!(v["error_msg"].as_str().unwrap().contains("different principals"), "{v}");
    // A signed request that also carries a wrong key is refused.
    let h = signed_headers(&d, "GET", &path, &[], "", SK, None);
    let mut with_key = h.clone();
    with_key.push("X-Api-Key: wrong".into());
    let (s, v) = curl_signed(&d, "GET", &path, None, &with_key);
    assert_eq!((s, v["error_code"].as_str()), (401, Some("KPS.9001")), "{v}");
}

/// Headers signed by the vendor's signer for access key `ak`.
fn signed_headers_as(d: &Daemon, ak: &str, method: &str, path: &str, body: &str) -> Vec<String> {
    signed_headers(d, method, path, &[], body, SK, None)
        .into_iter()
        .map(|h| h.replace(&format!("Access={AK},"), &format!("Access={ak},")))
        .collect()
}

#[test]
fn a_signed_request_is_served_once_and_unknown_aks_look_the_same() {
    tools();
    let d = daemon();
    ok(sdk(&d, "aksk", "create", json!({"name": "replayed"})));
    let path = format!("{}/replayed", keypairs_path());
    let body = r#"{"keypair":{"description":"first"}}"#;
    let h = signed_headers(&d, "PUT", &path, &[], body, SK, None);
    let (s, v) = curl_signed(&d, "PUT", &path, Some(body), &h);
    assert_eq!(s, 204, "{v}\n{}", d.log());
    let mut refusals = Vec::new();
    for _ in 0..2 {
        let (s, v) = curl_signed(&d, "PUT", &path, Some(body), &h);
        assert_eq!((s, v["error_code"].as_str()), (401, Some("KPS.9001")), "a replay is refused: {v}");
        refusals.push(v);
    }
    // The SDK's next request (a new date, so a new signature) is served.
    ok(sdk(&d, "aksk", "update", json!({"name": "replayed", "description": "second"})));
    assert_eq!(ok(sdk(&d, "aksk", "show", json!({"name": "replayed"})))["keypair"]["description"], "second");
    // Unknown AK, wrong SK, replay: one answer.
    let unknown = signed_headers_as(&d, "AKNOSUCHKEY0001", "GET", &keypairs_path(), "");
    let (s, v) = curl_signed(&d, "GET", &keypairs_path(), None, &unknown);
    assert_eq!(s, 401);
    let wrong_sk = signed_headers(&d, "GET", &keypairs_path(), &[("limit", "3")], "", "wrong-secret", None);
    let (s2, v2) = curl_signed(&d, "GET", &format!("{}?limit=3", keypairs_path()), None, &wrong_sk);
    assert_eq!(s2, 401);
    assert_eq!(v, refusals[0], "unknown AK and replay answer alike");
    assert_eq!(v2, refusals[0], "wrong SK and replay answer alike");
}

/// Issue 12: a key pair and its key are one transaction. SIGKILLed after the token write and
/// before the commit, the restart leaves neither (no objects, no key, no key pair row) and the
/// name is free; an acknowledged create has both.
#[test]
fn a_sigkill_before_the_commit_leaves_neither_key_nor_key_pair() {
    tools();
    let mut d = daemon();
    let path = keypairs_path();
    let tok = format!("X-Auth-Token: {TOKEN}");
    assert!(d.stop().success());
    d.env.push(("KEYPORT_TEST_PAUSE_BEFORE_COMMIT_MS".into(), "60000".into()));
    d.spawn();
    let mut pending = Command::new("curl")
        .args(["-sS", "--max-time", "90", "--cacert"])
        .arg(d.dir.path().join("state/tls-cert.pem"))
        .args(["-X", "POST", "-H", "content-type: application/json", "-H", &tok])
        .args(["--data-binary", r#"{"keypair":{"name":"crashy"}}"#])
        .arg(format!("https://127.0.0.1:{}{path}", d.port))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !labels(&d).iter().any(|l| l == "crashy") {
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "the token write never happened:\n{}", d.log());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    d.kill9();
    let _ = pending.kill();
    let _ = pending.wait();
    d.env.retain(|(k, _)| k != "KEYPORT_TEST_PAUSE_BEFORE_COMMIT_MS");
    d.spawn();
    assert!(!labels(&d).iter().any(|l| l == "crashy"), "the unacknowledged objects are gone");
    let (s, v) = d.curl_https("GET", &format!("{path}/crashy"), None, &["-H", &tok]);
    assert_eq!((s, v["error_code"].as_str()), (400, Some("KPS.4016")), "no key pair row: {v}");
    let (_, keys) = d.curl("GET", "/keyport/v1/keys?namespace=kps", None, &[]);
    assert_eq!(keys["keys"].as_array().unwrap().len(), 0, "no inventory key: {keys}");
    let (s, v) = d.curl_https("POST", &path, Some(r#"{"keypair":{"name":"crashy"}}"#), &["-H", &tok]);
    assert_eq!(s, 200, "the name is free again: {v}");
    let (s, v) = d.curl_https("GET", &format!("{path}/crashy"), None, &["-H", &tok]);
    assert_eq!(s, 200, "{v}");
    assert!(!v["keypair"]["key_id"].as_str().unwrap_or_default().is_empty(), "the key pair holds its key: {v}");
}

/// A batch is written through two token sessions (issue 17), yet each item's outcome is the
/// one-after-another outcome: the same private key under a second name is refused as already
/// held (never imported twice), a name used twice keeps the first item's key pair, and the
/// answer lists items in their order.
#[test]
fn batch_import_duplicates_resolve_as_if_written_one_by_one() {
    tools();
    let d = daemon();
    let dir = d.dir.path();
    for f in ["k1", "k2", "k3"] {
        run(dir, "ssh-keygen", &["-q", "-t", "ecdsa", "-b", "256", "-N", "", "-f", f]);
    }
    let imp = |name: &str, f: &str| json!({"name": name, "private_key": read(dir, f), "encryption": {"type": "default"}});
    let items = vec![
        imp("one", "k1"),
        imp("one-again", "k1"),
        imp("two", "k2"),
        json!({"name": "two"}),
        imp("three", "k3"),
        json!({"name": "four"}),
        imp("three", "k1"),
    ];
    let before = labels(&d).len();
    let v = ok(sdk(&d, "aksk", "batch_import", json!({"items": items})));
    let succeeded: Vec<&str> = v["succeeded_keypairs"].as_array().unwrap().iter().map(|k| k["keypair"]["name"].as_str().unwrap()).collect();
    assert_eq!(succeeded, ["one", "two", "three", "four"], "{v}");
    let failed: Vec<(&str, &str)> = v["failed_keypairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["keypair_name"].as_str().unwrap(), f["failed_reason"].as_str().unwrap()))
        .collect();
    assert_eq!(failed.iter().map(|f| f.0).collect::<Vec<_>>(), ["one-again", "two", "three"], "{v}");
    assert!(failed[0].1.contains("already held"), "{v}");
    assert!(failed[1].1.contains("already exists") && failed[2].1.contains("already exists"), "{v}");
    // The second "two" did not replace the first: it still holds k2.
    let two = ok(sdk(&d, "aksk", "show", json!({"name": "two"})));
    assert_eq!(two["keypair"]["fingerprint"], ssh_fingerprint(dir, "k2.pub"), "{two}");
    // Four key pairs, each a private and a public object.
    assert_eq!(labels(&d).len(), before + 8);
}
