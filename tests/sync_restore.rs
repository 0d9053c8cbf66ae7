//! `keyport restore` against a real OpenBao: a host syncs keys (exportable in the vault with
//! `sync.vault_exportable = true`, one before that without), then a second daemon with an empty
//! token and the same host name restores them — same fingerprints and key ids, signatures made
//! by the restored keys verify against the vault's public keys, the certificate is back, the
//! private keys are sensitive in the token, a second restore changes nothing, and the next sync
//! pushes nothing new.

mod common;
use common::bao::*;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Restarts a daemon from `daemon()` with `sync.vault_exportable = true` ([sync] is the
/// config's last section).
fn make_vault_exportable(d: &mut Daemon) {
    assert!(d.stop().success());
    let mut text = std::fs::read_to_string(&d.config).unwrap();
    text.push_str("vault_exportable = true\n");
    std::fs::write(&d.config, text).unwrap();
    d.spawn();
}

fn keys_by_name(d: &Daemon) -> BTreeMap<String, Value> {
    let (s, v) = d.curl("GET", "/keyport/v1/keys", None, &[]);
    assert_eq!(s, 200, "{v}");
    v["keys"].as_array().unwrap().iter().map(|k| (k["name"].as_str().unwrap().to_string(), k.clone())).collect()
}

fn restore(d: &Daemon, dry_run: bool) -> Value {
    let mut c = d.command();
    c.args(["restore", "--json", "--socket"]).arg(&d.socket);
    if dry_run {
        c.arg("--dry-run");
    }
    let out = c.output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("keyport restore ({e}): {}\n{}", String::from_utf8_lossy(&out.stderr), d.log()));
    // Exit 0, or 4 exactly when some item failed (docs/cli.md).
    let failed = report["items"].as_array().into_iter().flatten().any(|i| i["outcome"] == "failed");
    assert_eq!(out.status.code(), Some(if failed { 4 } else { 0 }), "keyport restore: {report}\n{}", String::from_utf8_lossy(&out.stderr));
    report
}

fn item<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["items"].as_array().unwrap().iter().find(|i| i["name"] == name).unwrap_or_else(|| panic!("no item {name}: {report}"))
}

fn outcomes(report: &Value) -> BTreeMap<String, String> {
    report["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap().to_string(), i["outcome"].as_str().unwrap().to_string()))
        .collect()
}

/// The vault's public key of a transit key as a PEM file openssl reads.
fn vault_public_pem(bao: &Bao, dir: &Path, vault_name: &str, algorithm: &str) -> std::path::PathBuf {
    let (s, v) = bao.call("GET", &format!("transit/keys/{vault_name}"), None);
    assert_eq!(s, 200, "{v}");
    let public = v["data"]["keys"]["1"]["public_key"].as_str().unwrap();
    let pem = if algorithm == "ed25519" {
        use base64::Engine;
        let e = base64::engine::general_purpose::STANDARD;
        let spki = [hex::decode("302a300506032b6570032100").unwrap(), e.decode(public).unwrap()].concat();
        format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", e.encode(spki))
    } else {
        public.to_string()
    };
    let path = dir.join(format!("{vault_name}.pub.pem"));
    std::fs::write(&path, pem).unwrap();
    path
}

/// Signs in the restored token with pkcs11-tool and verifies with openssl against the vault's
/// public key of the same key.
fn restored_key_signs(d: &Daemon, bao: &Bao, key: &Value) {
    let dir = d.dir.path();
    let (name, alg, id) = (key["name"].as_str().unwrap(), key["algorithm"].as_str().unwrap(), key["id"].as_str().unwrap());
    let data = dir.join("data.bin");
    std::fs::write(&data, b"signed by the restored key").unwrap();
    let sig = dir.join(format!("{name}.sig"));
    let public = vault_public_pem(bao, dir, &format!("h1-default.{name}"), alg);
    let (mech, input): (&str, std::path::PathBuf) = match alg {
        a if a.starts_with("rsa") => ("SHA256-RSA-PKCS", data.clone()),
        "ed25519" => ("EDDSA", data.clone()),
        _ => {
            use sha2::Digest;
            let digest = dir.join("digest.bin");
            std::fs::write(&digest, sha2::Sha256::digest(b"signed by the restored key")).unwrap();
            ("ECDSA", digest)
        }
    };
    let mut args = vec!["--sign", "--id", id, "-m", mech, "--input-file", input.to_str().unwrap(), "--output-file", sig.to_str().unwrap()];
    if mech == "ECDSA" {
        args.extend(["--signature-format", "openssl"]);
    }
    let out = d.pkcs11_tool(&args);
    assert!(out.status.success(), "{name}: pkcs11-tool --sign: {}", String::from_utf8_lossy(&out.stderr));
    let out = if alg == "ed25519" {
        Command::new("openssl")
            .args(["pkeyutl", "-verify", "-pubin", "-rawin", "-inkey"])
            .arg(&public)
            .arg("-in")
            .arg(&data)
            .arg("-sigfile")
            .arg(&sig)
            .output()
            .unwrap()
    } else {
        Command::new("openssl").args(["dgst", "-sha256", "-verify"]).arg(&public).arg("-signature").arg(&sig).arg(&data).output().unwrap()
    };
    assert!(out.status.success(), "{name}: the restored key's signature does not verify: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn restore_brings_exportable_keys_and_certificates_back_into_an_empty_token() {
    tools();
    require("pkcs11-tool");
    let work = tempfile::tempdir().unwrap();
    let bao = Bao::start(work.path());

    // Host 1, default policy: the vault holds a one-way copy.
    let mut d1 = daemon(&bao, "[tlspc]\nexportable = true\n");
    d1.generate("locked", "ec-p256", true);
    let st = sync_now(&d1);
    assert_eq!(key_status(&st, "locked")["status"], "synced");
    assert_eq!(st["vault_exportable"], false, "status says the vault is a one-way copy");
    let (_, t) = bao.call("GET", "transit/keys/h1-default.locked", None);
    assert_eq!(t["data"]["exportable"], false, "default: not exportable in the vault");

    // Then exportable in the vault.
    make_vault_exportable(&mut d1);
    for (n, a) in [("web-rsa", "rsa-2048"), ("web-ec", "ec-p256"), ("ssh-ed", "ed25519"), ("clash", "ec-p256"), ("gone", "ec-p256")] {
        d1.generate(n, a, true);
    }
    let cert_sha = import_with_certificate(&d1, "site.example.com");
    let st = sync_now(&d1);
    assert_eq!((&st["backlog"], &st["vault_exportable"]), (&0.into(), &true.into()), "{st}");
    let mut restorable = vec!["web-rsa", "web-ec", "ssh-ed"];
    if cert_sha.is_some() {
        restorable.push("site.example.com");
    }
    for n in &restorable {
        assert_eq!(key_status(&st, n)["status"], "synced", "{st}");
        let (_, t) = bao.call("GET", &format!("transit/keys/h1-default.{n}"), None);
        assert_eq!(t["data"]["exportable"], true, "{t}");
    }
    // A key deleted in keyport stays in the vault, but its record says so and restore skips it.
    let gone = keys_by_name(&d1)["gone"]["id"].as_str().unwrap().to_string();
    let (s, v) = d1.curl("DELETE", &format!("/keyport/v1/keys/{gone}"), None, &[]);
    assert_eq!(s, 200, "{v}");
    assert_eq!(sync_now(&d1)["backlog"], 0);
    let (_, v) = bao.call("GET", "secret/metadata/keyport/h1/keys/default/gone", None);
    assert!(v["data"]["custom_metadata"]["deleted_at"].is_string(), "{v}");
    let original = keys_by_name(&d1);
    // The KV key record restore reads.
    let (s, v) = bao.call("GET", "secret/data/keyport/h1/keys/default/web-rsa", None);
    assert_eq!(s, 200, "{v}");
    let meta = &v["data"]["metadata"]["custom_metadata"];
    assert_eq!(meta["key_id"], original["web-rsa"]["id"], "{meta}");
    assert_eq!(meta["fingerprint"], original["web-rsa"]["fingerprint"], "{meta}");
    assert_eq!((meta["transit_key"].as_str(), meta["algorithm"].as_str()), (Some("h1-default.web-rsa"), Some("rsa-2048")));
    assert_eq!(bao.call("GET", "secret/data/keyport/h1/keys/default/locked", None).1["data"]["data"]["vault_exportable"], "false");

    // Host 1 again, with an empty token (a lost disk); one name is taken by another key.
    let d2 = daemon(&bao, "");
    let other = d2.generate("clash", "ec-p256", false);
    let dry = restore(&d2, true);
    assert_eq!(dry["dry_run"], true);
    for n in &restorable {
        assert_eq!(item(&dry, n)["outcome"], "would_restore", "{dry}");
    }
    assert_eq!(keys_by_name(&d2).len(), 1, "a dry run changes nothing");
    assert!(dry["destination"].is_null(), "a dry run makes nothing in the vault: {dry}");

    // Listed, not silently left out.
    assert_eq!(item(&dry, "gone")["outcome"], "skipped", "{dry}");
    assert!(item(&dry, "gone")["reason"].as_str().unwrap().contains("deleted in keyport"), "{dry}");
    // Restore needs `admin`: the reader may not.
    let (s, v) = d2.curl_https("POST", "/keyport/v1/sync/restore", Some("{}"), &["-H", "x-api-key: reader-key"]);
    assert_eq!(s, 403, "{v}");

    let report = restore(&d2, false);
    assert_eq!(report["path"], "byok-export");
    for n in &restorable {
        assert_eq!(item(&report, n)["outcome"], "restored", "{report}\n{}", d2.log());
    }
    let locked = item(&report, "locked");
    assert_eq!(locked["outcome"], "skipped", "{report}");
    assert!(locked["reason"].as_str().unwrap().contains("not exportable in the vault"), "{locked}");
    let clash = item(&report, "clash");
    assert_eq!(clash["outcome"], "failed", "{report}");
    assert!(clash["reason"].as_str().unwrap().contains("different key"), "{clash}");
    // The restore-only transit key is gone (the root token may delete it).
    let dest = report["destination"].as_str().unwrap();
    assert!(dest.starts_with("h1-restore-"), "{dest}");
    assert!(report["destination_left"].is_null(), "{report}");
    assert_eq!(bao.call("GET", &format!("transit/keys/{dest}"), None).0, 404);

    let restored = keys_by_name(&d2);
    for n in &restorable {
        let (a, b) = (&original[*n], &restored[*n]);
        assert_eq!((&a["fingerprint"], &a["id"], &a["algorithm"]), (&b["fingerprint"], &b["id"], &b["algorithm"]), "{n}");
        restored_key_signs(&d2, &bao, b);
    }
    assert_eq!(restored["clash"]["fingerprint"], other["fingerprint"], "the store's own 'clash' is untouched");
    assert!(!restored.contains_key("locked"));

    // Private keys are sensitive in the new token (Ed25519 follows keyport's exception for
    // tokens that cannot wrap it: exportable ⇒ readable, as on host 1).
    let blocks = object_blocks(&d2.pkcs11_objects());
    let access = |blocks: &[(String, String, String)], label: &str| {
        blocks
            .iter()
            .find(|(k, l, _)| k.starts_with("Private Key Object") && l == label)
            .map(|(k, _, _)| k.clone())
            .unwrap_or_else(|| panic!("no private key {label}: {blocks:?}"))
    };
    for n in ["web-rsa", "web-ec"] {
        assert!(access(&blocks, n).contains("Access:") && access(&blocks, n).contains(" sensitive"), "{}", access(&blocks, n));
    }
    let before = object_blocks(&d1.pkcs11_objects());
    assert_eq!(
        access(&blocks, "ssh-ed").contains(" sensitive"),
        access(&before, "ssh-ed").contains(" sensitive"),
        "{} vs {}",
        access(&blocks, "ssh-ed"),
        access(&before, "ssh-ed")
    );

    if let Some(sha) = &cert_sha {
        assert_eq!(item(&report, "site.example.com")["certificate"], sha.as_str());
        let (_, v) = d2.curl("GET", "/keyport/v1/certificates", None, &[]);
        let c = v["certificates"].as_array().unwrap().iter().find(|c| c["sha256"] == sha.as_str()).unwrap_or_else(|| panic!("{v}"));
        assert_eq!(c["key_name"], "site.example.com", "{c}");
        assert!(
            blocks.iter().any(|(k, l, _)| k.starts_with("Certificate Object") && l == "site.example.com"),
            "certificate object in the token: {blocks:?}"
        );
    }

    // Again: nothing changes.
    let again = restore(&d2, false);
    for n in &restorable {
        assert_eq!(item(&again, n)["outcome"], "skipped", "{again}");
        assert!(item(&again, n)["reason"].as_str().unwrap().contains("already present"), "{again}");
    }
    assert_eq!(outcomes(&again)["clash"], "failed");
    assert!(again["destination"].is_null(), "nothing to restore, no destination key: {again}");
    assert_eq!(keys_by_name(&d2), restored);
    // The table for people.
    let out = d2.command().args(["restore", "--dry-run", "--socket"]).arg(&d2.socket).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    // 'clash' fails, so the exit code says partial failure (4).
    assert!(out.status.code() == Some(4) && table.contains("OUTCOME") && table.contains("already present"), "{table}");
    assert!(table.lines().any(|l| l.contains("locked") && l.contains("not exportable in the vault")), "{table}");

    // The restored host's next sync finds everything in place and pushes nothing.
    let st = sync_now(&d2);
    assert_eq!(st["backlog"], 0, "{st}");
    for n in &restorable {
        let ks = key_status(&st, n);
        assert_eq!((ks["status"].as_str(), ks["pushed_version"].as_i64()), (Some("synced"), Some(1)), "{ks}");
        let (_, t) = bao.call("GET", &format!("transit/keys/h1-default.{n}"), None);
        assert_eq!(t["data"]["latest_version"], 1, "{n} was not pushed again: {t}");
        let (_, m) = bao.call("GET", &format!("secret/metadata/keyport/h1/keys/default/{n}"), None);
        assert_eq!(m["data"]["current_version"], 1, "{n}: no second key record version: {m}");
    }
    if cert_sha.is_some() {
        let (_, v) = bao.call("GET", "secret/metadata/keyport/h1/certs/default/site.example.com", None);
        assert_eq!(v["data"]["current_version"], 1, "no second KV certificate version: {v}");
    }
}

#[test]
fn restore_leaves_the_destination_key_when_the_policy_forbids_deleting_it() {
    tools();
    require("pkcs11-tool");
    let work = tempfile::tempdir().unwrap();
    let bao = Bao::start(work.path());
    let mut d1 = daemon(&bao, "");
    make_vault_exportable(&mut d1);
    let key = d1.generate("app", "ec-p256", true);
    assert_eq!(key_status(&sync_now(&d1), "app")["status"], "synced");

    // The second host's token may do everything restore needs but delete.
    let policy = r#"
        path "transit/*" { capabilities = ["create", "read", "update", "list"] }
        path "secret/*" { capabilities = ["create", "read", "update", "list"] }
    "#;
    let (s, v) = bao.call("POST", "sys/policies/acl/no-delete", Some(serde_json::json!({ "policy": policy })));
    assert_eq!(s, 204, "{v}");
    let (s, v) = bao.call("POST", "auth/token/create", Some(serde_json::json!({"policies": ["no-delete"], "ttl": "1h"})));
    assert_eq!(s, 200, "{v}");
    let mut d2 = daemon(&bao, "");
    assert!(d2.stop().success());
    std::fs::write(d2.dir.path().join("vault.token"), v["auth"]["client_token"].as_str().unwrap()).unwrap();
    d2.spawn();

    let report = restore(&d2, false);
    assert_eq!(item(&report, "app")["outcome"], "restored", "{report}\n{}", d2.log());
    assert_eq!(keys_by_name(&d2)["app"]["fingerprint"], key["fingerprint"]);
    let dest = report["destination"].as_str().unwrap();
    let left = report["destination_left"].as_str().unwrap_or_else(|| panic!("{report}"));
    assert!(left.contains(dest) && left.contains("403"), "{left}");
    // It stays, and holds a public key only.
    let (s, v) = bao.call("POST", &format!("transit/sign/{dest}"), Some(serde_json::json!({"input": "aGk="})));
    assert_ne!(s, 200, "{v}");
    let out = d2.command().args(["restore", "--socket"]).arg(&d2.socket).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("already present"), "{}", String::from_utf8_lossy(&out.stdout));
}

/// The vault's records are not trusted, a key deleted in keyport does not come back (also while
/// its delete has not reached the vault), and a sealed vault stops restore with a 503.
#[test]
fn restore_refuses_hostile_records_deleted_keys_and_a_sealed_vault() {
    tools();
    require("pkcs11-tool");
    let work = tempfile::tempdir().unwrap();
    let bao = Bao::start(work.path());
    let mut d1 = daemon(&bao, "");
    make_vault_exportable(&mut d1);
    let app = d1.generate("app", "ec-p256", true);
    d1.generate("kept", "ec-p256", true);
    let st = sync_now(&d1);
    assert_eq!((key_status(&st, "app")["status"].as_str(), key_status(&st, "kept")["status"].as_str()), (Some("synced"), Some("synced")));

    // Hostile records, written as root next to the real ones: they point at app's transit key.
    let record = |ns: &str, name: &str, key_id: &str, transit: &str| {
        serde_json::json!({"data": {
            "namespace": ns, "name": name, "key_id": key_id, "algorithm": "ec-p256",
            "fingerprint": app["fingerprint"], "transit_key": transit, "version": "1", "vault_exportable": "true"}})
    };
    let id = app["id"].as_str().unwrap();
    for (path, body) in [
        ("evil-dots", record("default", "../x", id, "h1-default.app")),
        ("evil-ns", record("other", "evil-ns", id, "h1-default.app")),
        ("evil-transit", record("default", "evil-transit", "0123456789abcdef0123456789abcdef", "h1-default.app")),
        ("evil-id", record("default", "evil-id", "../../sys", "h1-default.app")),
    ] {
        let (s, v) = bao.call("POST", &format!("secret/data/keyport/h1/keys/default/{path}"), Some(body));
        assert_eq!(s, 200, "{v}");
    }

    // A sealed vault: 503, nothing made, in the token or in the vault.
    let d2 = daemon(&bao, "");
    let (s, v) = bao.call("POST", "sys/seal", None);
    assert_eq!(s, 204, "{v}");
    let (s, v) = d2.curl("POST", "/keyport/v1/sync/restore", Some("{}"), &[]);
    assert_eq!(s, 503, "{v}\n{}", d2.log());
    assert!(v.to_string().contains("sealed"), "{v}");
    assert!(keys_by_name(&d2).is_empty());
    let (s, v) = bao.call("POST", "sys/unseal", Some(serde_json::json!({"key": bao.unseal_key()})));
    assert_eq!((s, &v["sealed"]), (200, &serde_json::json!(false)), "{v}");
    let (_, v) = bao.call("LIST", "transit/keys", None);
    assert!(!v.to_string().contains("restore-"), "no restore destination was made: {v}");

    // Host 1 may no longer write KV metadata: its delete of 'app' stays pending in the outbox.
    let policy = r#"
        path "transit/*" { capabilities = ["create", "read", "update", "delete", "list"] }
        path "secret/data/*" { capabilities = ["read", "list"] }
        path "secret/metadata/*" { capabilities = ["read", "list"] }
    "#;
    let (s, v) = bao.call("POST", "sys/policies/acl/no-kv-write", Some(serde_json::json!({ "policy": policy })));
    assert_eq!(s, 204, "{v}");
    let (s, v) = bao.call("POST", "auth/token/create", Some(serde_json::json!({"policies": ["no-kv-write"], "ttl": "1h"})));
    assert_eq!(s, 200, "{v}");
    assert!(d1.stop().success());
    std::fs::write(d1.dir.path().join("vault.token"), v["auth"]["client_token"].as_str().unwrap()).unwrap();
    d1.spawn();
    let (s, v) = d1.curl("DELETE", &format!("/keyport/v1/keys/{id}"), None, &[]);
    assert_eq!(s, 200, "{v}");
    let st = sync_now(&d1);
    assert_ne!(st["backlog"], 0, "the delete is pending: {st}");
    let (_, m) = bao.call("GET", "secret/metadata/keyport/h1/keys/default/app", None);
    assert!(m["data"]["custom_metadata"]["deleted_at"].is_null(), "the vault does not know of the delete yet: {m}");

    let report = restore(&d1, false);
    let a = item(&report, "app");
    assert_eq!(a["outcome"], "skipped", "{report}\n{}", d1.log());
    assert!(a["reason"].as_str().unwrap().contains("pending"), "{a}");
    assert_eq!(item(&report, "kept")["outcome"], "skipped", "{report}");
    for (name, why) in [
        ("evil-dots", "not a valid key name"),
        ("evil-ns", "not its folder"),
        ("evil-transit", "keyport's name"),
        ("evil-id", "not 32 hex"),
    ] {
        let i = item(&report, name);
        assert_eq!(i["outcome"], "failed", "{report}");
        assert!(i["reason"].as_str().unwrap().contains(why), "{i}");
    }
    let names: Vec<String> = keys_by_name(&d1).into_keys().collect();
    assert_eq!(names, vec!["kept".to_string()], "nothing came back on host 1");
    assert!(report["destination"].is_null(), "nothing to restore, no destination key: {report}");

    // The empty host: the hostile records fail there too, 'kept' comes back, nothing else.
    let report = restore(&d2, false);
    assert_eq!(item(&report, "kept")["outcome"], "restored", "{report}\n{}", d2.log());
    assert_eq!(item(&report, "app")["outcome"], "restored", "host 2 has no record of the delete: {report}");
    for name in ["evil-dots", "evil-ns", "evil-transit", "evil-id"] {
        assert_eq!(item(&report, name)["outcome"], "failed", "{report}");
    }
    let names: Vec<String> = keys_by_name(&d2).into_keys().collect();
    assert_eq!(names, vec!["app".to_string(), "kept".to_string()]);
}

/// Issue 19, item 2: a key whose token objects vanished (wiped token) stays in the inventory as
/// `missing`, and restore brings it back under its id, active again.
#[test]
fn restore_brings_back_a_key_marked_missing() {
    require("pkcs11-tool");
    let work = tempfile::tempdir().unwrap();
    let bao = Bao::start(work.path());
    let mut d = daemon(&bao, "[tlspc]\nexportable = true\n");
    make_vault_exportable(&mut d);
    let id = d.generate("lost", "ec-p256", true)["id"].as_str().unwrap().to_string();
    assert_eq!(key_status(&sync_now(&d), "lost")["status"], "synced");
    assert!(d.stop().success());
    for t in ["privkey", "pubkey"] {
        assert!(d.pkcs11_tool(&["--delete-object", "--type", t, "--label", "lost"]).status.success());
    }
    d.spawn();
    assert_eq!(keys_by_name(&d)["lost"]["status"], "missing");
    let report = restore(&d, false);
    assert_eq!(item(&report, "lost")["outcome"], "restored", "{report}");
    let k = &keys_by_name(&d)["lost"];
    assert_eq!((k["id"].as_str(), k["status"].as_str()), (Some(id.as_str()), Some("active")), "{k}");
    assert!(object_blocks(&d.pkcs11_objects()).iter().any(|b| b.1 == "lost" && b.0.starts_with("Private Key")));
}
