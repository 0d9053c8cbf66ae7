//! TPP's SSH rotation calls on keyport keysets: Venafi's own Python client (pyvenafi's WebSDK)
//! drives Rotate, KeysetDetails, the export of the new key at 10350, the confirmation, skip,
//! cancel and retry; curl covers what pyvenafi does not (the confirmation without the `SSH/`
//! prefix, as the vendor's example calls it; refusals; scopes).

mod common;

use common::{phc, Daemon};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const PASS: &str = "device pass phrase";

fn start() -> Daemon {
    Daemon::start(&format!(
        r#"
[[principals]]
name = "root"
uids = [TEST_UID]
permissions = {{ "*" = ["admin"] }}

[[principals]]
name = "device"
permissions = {{ default = ["read", "export-private"] }}

[namespaces.default]
allow_exportable = true

[rotation.namespaces.default]
confirmations = "private-key"
exportable = true

[[tpp.users]]
username = "alice"
password_hash = "{alice}"
principal = "root"

[[tpp.users]]
username = "device"
password_hash = "{device}"
principal = "device"
"#,
        alice = phc("alice-secret"),
        device = phc("device-secret"),
    ))
}

fn token(d: &Daemon, user: &str, pw: &str, scope: &str) -> String {
    let (s, v) = d.curl_https(
        "POST",
        "/vedauth/authorize/oauth",
        Some(&json!({"client_id": "t", "username": user, "password": pw, "scope": scope}).to_string()),
        &[],
    );
    assert_eq!(s, 200, "{v}");
    v["access_token"].as_str().unwrap().to_string()
}

fn call(d: &Daemon, tok: &str, path: &str, body: Value) -> (u16, Value) {
    d.curl_https("POST", path, Some(&body.to_string()), &["-H", &format!("Authorization: Bearer {tok}")])
}

fn details(d: &Daemon, tok: &str, id: &str) -> Value {
    let (s, v) = d.curl_https(
        "GET",
        &format!("/vedsdk/SSH/KeysetDetails?KeysetId={id}&LoadKeyData=true"),
        None,
        &["-H", &format!("Authorization: Bearer {tok}")],
    );
    assert_eq!(s, 200, "{v}");
    v
}

fn wait_stage(d: &Daemon, tok: &str, id: &str, stage: i64) -> Value {
    let start = Instant::now();
    loop {
        let v = details(d, tok, id);
        if v["RotationStage"] == stage {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "stage {stage} never came: {v:#}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn create(d: &Daemon, name: &str) -> Value {
    let (s, v) =
        d.curl("POST", "/keyport/v1/keysets", Some(&json!({"name": name, "type": "User", "algorithm": "ed25519"}).to_string()), &[]);
    assert_eq!(s, 201, "{v}");
    v
}

#[test]
fn venafis_python_sdk_rotates_exports_the_new_key_and_confirms() {
    common::require("ssh-keygen");
    let python = Path::new("/opt/keyport-test/pyvenafi/bin/python");
    assert!(python.exists(), "pyvenafi virtualenv missing (scripts/deps makes it)");
    let d = start();
    let ks = create(&d, "fleet");
    let out = Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/pyvenafi_rotation.py"))
        .arg(format!("127.0.0.1:{}", d.port))
        .args(["alice", "alice-secret", "default/fleet", PASS])
        .output()
        .unwrap();
    assert!(out.status.success(), "pyvenafi failed:\n{}\n{}", String::from_utf8_lossy(&out.stderr), d.log());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["keyset_id"], ks["id"], "{v}");
    assert_eq!((v["listed_stage"].as_i64(), v["listed_type"].as_str()), (Some(0), Some("User")), "{v}");
    assert_eq!(v["rotate_ok"], true, "{v}");
    assert_eq!(v["rotate_again"], json!([false, 8]), "a second Rotate is OperationIsAlreadyRunning: {v}");
    assert_eq!(v["waiting_status"], "8", "{v}");
    assert_eq!(v["export_ok"], true, "{v}");
    assert_eq!(v["confirm_ok"], true, "{v}");
    assert_eq!((v["skip_ok"].as_bool(), v["cancel_ok"].as_bool()), (Some(true), Some(true)), "{v}");
    assert_eq!(v["retry_nothing"], json!([false, 18]), "{v}");
    // The exported key is the new version: its public half is what the keyset now trusts.
    let file = d.dir.path().join("id_new");
    std::fs::write(&file, v["exported"].as_str().unwrap()).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let pubout = Command::new("ssh-keygen").args(["-y", "-P", PASS, "-f"]).arg(&file).output().unwrap();
    assert!(pubout.status.success(), "{}", String::from_utf8_lossy(&pubout.stderr));
    let (_, shown) = d.curl("GET", "/keyport/v1/keysets/fleet", None, &[]);
    let v2 = &shown["versions"][1];
    let (_, pk) = d.curl("GET", &format!("/keyport/v1/keys/{}/public", v2["key_id"].as_str().unwrap()), None, &[]);
    let words = |s: &str| s.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    assert_eq!(words(&String::from_utf8_lossy(&pubout.stdout)), words(pk["public_key"].as_str().unwrap()));
    // Second rotation made v3 active; the cancel after completion brought v2 back.
    let states: Vec<&str> = shown["versions"].as_array().unwrap().iter().map(|x| x["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["retired", "active", "retired"], "{shown:#}");
    assert_eq!(v["after_cancel_fingerprint"], v["complete_fingerprint"], "{v}");
    assert_ne!(v["second_fingerprint"], v["complete_fingerprint"], "{v}");
}

#[test]
fn confirm_without_the_ssh_prefix_scopes_and_refusals() {
    let d = start();
    let ks = create(&d, "box");
    let id = ks["id"].as_str().unwrap();
    let admin = token(&d, "alice", "alice-secret", "ssh:manage");
    let device = token(&d, "device", "device-secret", "ssh:manage");
    let reader = token(&d, "device", "device-secret", "ssh");
    // The read-only scope may not rotate.
    let (s, v) = call(&d, &reader, "/vedsdk/SSH/Rotate", json!({"KeysetId": id}));
    assert_eq!(s, 403, "{v}");
    // The device (read + export-private) may not start a rotation: TPP's 12.
    let (s, v) = call(&d, &device, "/vedsdk/SSH/Rotate", json!({"KeysetId": id}));
    assert_eq!((s, v["Success"].as_bool(), v["ErrorCode"].as_i64()), (200, Some(false), Some(12)), "{v}");
    assert_eq!(v["Response"]["ErrorCode"], 12, "both shapes: {v}");
    // An unknown keyset: 2 KeysetNotFound.
    let (_, v) = call(&d, &admin, "/vedsdk/SSH/Rotate", json!({"KeysetId": "0".repeat(40)}));
    assert_eq!(v["ErrorCode"], 2, "{v}");
    let (_, v) = call(&d, &admin, "/vedsdk/SSH/Rotate", json!({"KeysetId": id, "Options": 0}));
    assert_eq!(v["Success"], true, "{v}");
    // While the new public key is provisioned and before 10350 the new key cannot leave; at
    // 10350 the device exports it and confirms without the SSH/ prefix.
    let k = wait_stage(&d, &admin, id, 10350);
    assert_eq!(k["ProcessStatus"], 8, "{k}");
    let new_key = k["PrivateKeys"][0]["KeyId"].as_i64().unwrap();
    assert_eq!(k["PrivateKeys"][0]["RotationStage"], 10350, "the pending key comes first: {k:#}");
    let (s, v) =
        call(&d, &device, "/vedsdk/SSH/ExportSelfServicePrivateKey", json!({"KeyId": new_key, "Format": "OpenSSH", "Passphrase": PASS}));
    assert_eq!((s, v["Response"]["Success"].as_bool()), (200, Some(true)), "{v}");
    let (s, v) = call(&d, &device, "/vedsdk/ConfirmSelfServiceKeyInstallation", json!({"KeysetId": id}));
    assert_eq!((s, v["Success"].as_bool()), (200, Some(true)), "{v}");
    let k = wait_stage(&d, &admin, id, 10600);
    assert_eq!(k["ProcessStatus"], 0);
    assert!(k["LastRotationDate"].is_string(), "{k}");
    // Confirm again: nothing waits (18 ImproperKeysetStage).
    let (_, v) = call(&d, &device, "/vedsdk/SSH/ConfirmSelfServiceKeyInstallation", json!({"KeysetId": id}));
    assert_eq!(v["ErrorCode"], 18, "{v}");
    // The keyset's keys are listed inside it, not as keysets of their own.
    let (_, all) = call(&d, &admin, "/vedsdk/SSH/KeysetDetails", json!({"PageSize": 100}));
    let ids: Vec<&str> = all["Data"].as_array().unwrap().iter().map(|k| k["KeysetId"].as_str().unwrap()).collect();
    assert_eq!(ids, [id], "{all:#}");
}

fn create_as(d: &Daemon, name: &str, kind: &str, algorithm: &str) -> Value {
    let (s, v) = d.curl("POST", "/keyport/v1/keysets", Some(&json!({"name": name, "type": kind, "algorithm": algorithm}).to_string()), &[]);
    assert_eq!(s, 201, "{v}");
    v
}

/// `POST SSH/KeysetDetails` with `KeysetFilter`, `LoadKeyData`, `Offset` and `PageSize`: Venafi's
/// Python client sends its own filter model (as a list), curl the vendor's object form and what
/// keyport refuses with a reason.
#[test]
fn keyset_details_filters_and_pages_for_pyvenafi_and_curl() {
    let python = Path::new("/opt/keyport-test/pyvenafi/bin/python");
    assert!(python.exists(), "pyvenafi virtualenv missing (scripts/deps makes it)");
    let d = start();
    let fa = create_as(&d, "fa", "User", "ed25519");
    create_as(&d, "fb", "Host", "ec-p256");
    create_as(&d, "fc", "User", "ec-p384");
    let admin = token(&d, "alice", "alice-secret", "ssh:manage");
    // fa waits at 10350 (ProcessStatus 8) with a pending version.
    let id = fa["id"].as_str().unwrap();
    let (_, v) = call(&d, &admin, "/vedsdk/SSH/Rotate", json!({"KeysetId": id}));
    assert_eq!(v["Success"], true, "{v}");
    let k = wait_stage(&d, &admin, id, 10350);
    let pending_fp = k["PrivateKeys"][0]["FingerprintSHA256"].as_str().unwrap().to_string();
    assert_ne!(Some(pending_fp.as_str()), k["FingerprintSHA256"].as_str(), "the pending key is not the active one: {k:#}");

    let out = Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/pyvenafi_keyset_filter.py"))
        .arg(format!("127.0.0.1:{}", d.port))
        .args(["alice", "alice-secret", &pending_fp])
        .output()
        .unwrap();
    assert!(out.status.success(), "pyvenafi failed:\n{}\n{}", String::from_utf8_lossy(&out.stderr), d.log());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["all"], json!(["default/fa", "default/fb", "default/fc"]), "{v}");
    assert_eq!(v["host"], json!(["default/fb"]), "{v}");
    assert_eq!(v["ecdsa_384"], json!(["default/fc"]), "{v}");
    assert_eq!(v["suspended"], json!(["default/fa"]), "{v}");
    assert_eq!(v["fingerprint"], json!(["default/fa"]), "the pending key's fingerprint finds its keyset: {v}");
    assert_eq!(v["user_or_host"], v["all"], "{v}");
    assert_eq!(v["page_2_of_1"], json!(["default/fb"]), "{v}");
    assert_eq!(v["bare_private_keys"], json!([0, 0, 0]), "LoadKeyData false: no key data: {v}");
    assert_eq!(v["full_private_keys"], json!([2, 1, 1]), "the rotating keyset carries its pending and active keys: {v}");

    // curl, the vendor's object form.
    let listed = |body: Value| -> Vec<String> {
        let (s, v) = call(&d, &admin, "/vedsdk/SSH/KeysetDetails", body);
        assert_eq!((s, v["Response"]["Success"].as_bool()), (200, Some(true)), "{v}");
        v["Data"].as_array().unwrap().iter().map(|k| k["Access"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(listed(json!({"KeysetFilter": {"Algorithm": ["ed25519", "ECDSA"], "Type": "User"}})), ["default/fa", "default/fc"]);
    assert_eq!(listed(json!({"KeysetFilter": {"MaxKeyLength": 256, "Type": "Host"}})), ["default/fb"]);
    assert_eq!(listed(json!({"KeysetFilter": {"Usernames": ["root"]}, "Offset": 2})), ["default/fc"]);
    assert!(listed(json!({"KeysetFilter": {"DeviceGuids": ["{00000000-0000-0000-0000-000000000000}"]}})).is_empty());
    let new_key = k["PrivateKeys"][0]["KeyId"].as_i64().unwrap();
    assert_eq!(listed(json!({"KeyId": [new_key]})), ["default/fa"]);
    let (_, g) = d.curl_https(
        "GET",
        &format!("/vedsdk/SSH/KeysetDetails?KeysetId={id}&LoadKeyData=false"),
        None,
        &["-H", &format!("Authorization: Bearer {admin}")],
    );
    assert_eq!((g["PrivateKeys"].as_array().map(Vec::len), g["RotationStage"].as_i64()), (Some(0), Some(10350)), "{g}");
    // What keyport cannot answer, or a bad page, is refused with a reason (TPP's 200 + Success false).
    for (body, says) in [
        (json!({"PageSize": 0}), "PageSize 0"),
        (json!({"PageSize": 100000}), "1-1000"),
        (json!({"KeysetFilter": {"FingerprintsMD5": ["00"]}}), "SHA-256"),
        (json!({"KeysetFilter": {"Type": "Router"}}), "User or Host"),
        (json!({"KeysetFilter": {"Colour": ["red"]}}), "Colour"),
    ] {
        let (s, v) = call(&d, &admin, "/vedsdk/SSH/KeysetDetails", body.clone());
        assert_eq!(
            (s, v["Response"]["Success"].as_bool(), v["Response"]["ErrorCode"].as_i64()),
            (200, Some(false), Some(4)),
            "{body}: {v}"
        );
        assert!(v["Response"]["ErrorMessage"].as_str().unwrap().contains(says), "{body}: {v}");
    }
}
