//! SSH keyset versions in the vault (issue 13, sync): a real OpenBao, real rotations. Each
//! version's KV key record names its keyset, version and state; a retired version stays in the
//! vault (transit key and record, no `deleted_at`), marked `retired`; an abandoned pending
//! version (a cancelled rotation) keeps its transit key and record, marked deleted and
//! `abandoned`.

mod common;
use common::bao::*;
use common::Daemon;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn show(d: &Daemon, name: &str) -> Value {
    let (s, v) = d.curl("GET", &format!("/keyport/v1/keysets/{name}"), None, &[]);
    assert_eq!(s, 200, "{v}");
    v
}

fn wait_for(d: &Daemon, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let v = show(d, name);
        if f(&v) {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "keyset {name} never reached: {what}\n{v:#}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn act(d: &Daemon, name: &str, action: &str) {
    let (s, v) = d.curl("POST", &format!("/keyport/v1/keysets/{name}/{action}"), None, &[]);
    assert_eq!(s, 202, "{action}: {v}");
}

/// The record's data and custom metadata.
fn record(bao: &Bao, key_name: &str) -> (Value, Value) {
    let (s, v) = bao.call("GET", &format!("secret/data/keyport/h1/keys/default/{key_name}"), None);
    assert_eq!(s, 200, "{key_name}: {v}");
    let (_, m) = bao.call("GET", &format!("secret/metadata/keyport/h1/keys/default/{key_name}"), None);
    (v["data"]["data"].clone(), m["data"]["custom_metadata"].clone())
}

fn in_transit(bao: &Bao, key_name: &str) -> bool {
    bao.call("GET", &format!("transit/keys/h1-default.{key_name}"), None).0 == 200
}

#[test]
fn keyset_versions_carry_keyset_and_state_and_retired_ones_stay_in_the_vault() {
    tools();
    let work = tempfile::tempdir().unwrap();
    let bao = Bao::start(work.path());
    let d = daemon(&bao, "[rotation.namespaces.default]\nexportable = true\nconfirmations = \"authorized-key\"\n");
    let (s, ks) =
        d.curl("POST", "/keyport/v1/keysets", Some(&json!({"name": "deploy", "type": "User", "algorithm": "ec-p256"}).to_string()), &[]);
    assert_eq!(s, 201, "{ks}");
    let id = ks["id"].as_str().unwrap();
    assert_eq!(sync_now(&d)["backlog"], 0, "{}", d.log());
    let (data, meta) = record(&bao, "deploy.v1");
    assert_eq!(
        (data["keyset_id"].as_str(), data["keyset"].as_str(), data["keyset_version"].as_str(), data["keyset_state"].as_str()),
        (Some(id), Some("deploy"), Some("1"), Some("active")),
        "{data}"
    );
    assert_eq!(meta["keyset_state"], "active", "the metadata says it too: {meta}");

    // A rotation waiting at 10250: v2 is pending in the vault too.
    act(&d, "deploy", "rotate");
    wait_for(&d, "deploy", "10250", |v| v["stage"] == 10250);
    sync_now(&d);
    let (data, _) = record(&bao, "deploy.v2");
    assert_eq!((data["keyset_version"].as_str(), data["keyset_state"].as_str()), (Some("2"), Some("pending")), "{data}");

    // Cancelled: v2 is abandoned and its key deleted in keyport; the vault keeps the transit
    // key and the record, marked deleted and abandoned.
    act(&d, "deploy", "cancel");
    let v = wait_for(&d, "deploy", "cancelled", |v| v["rotation"]["finished_at"].is_string());
    assert_eq!(v["versions"][1]["state"], "abandoned", "{v:#}");
    sync_now(&d);
    let (data, meta) = record(&bao, "deploy.v2");
    assert!(meta["deleted_at"].is_string(), "{meta}");
    assert_eq!((meta["keyset_state"].as_str(), meta["keyset_version"].as_str()), (Some("abandoned"), Some("2")), "{meta}");
    assert_eq!(data["keyset_id"], id, "the record's data stays: {data}");
    assert!(in_transit(&bao, "deploy.v2"), "the vault's copy stays");

    // A full rotation: v3 active, v1 retired, both still in the vault, v1 marked retired (not
    // deleted).
    act(&d, "deploy", "rotate");
    wait_for(&d, "deploy", "10250 again", |v| v["stage"] == 10250 && v["versions"].as_array().unwrap().len() == 3);
    act(&d, "deploy", "confirm");
    let v = wait_for(&d, "deploy", "complete", |v| v["rotation"]["outcome"] == "complete");
    let states: Vec<&str> = v["versions"].as_array().unwrap().iter().map(|x| x["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["retired", "abandoned", "active"]);
    assert_eq!(sync_now(&d)["backlog"], 0);
    let (data, meta) = record(&bao, "deploy.v1");
    assert_eq!((data["keyset_version"].as_str(), data["keyset_state"].as_str()), (Some("1"), Some("retired")), "{data}");
    assert!(meta["deleted_at"].is_null(), "a retired version is not deleted: {meta}");
    assert_eq!(meta["keyset_state"], "retired", "{meta}");
    assert!(in_transit(&bao, "deploy.v1"), "the retired version's transit key stays");
    let (data, _) = record(&bao, "deploy.v3");
    assert_eq!((data["keyset_version"].as_str(), data["keyset_state"].as_str()), (Some("3"), Some("active")), "{data}");
    // A pass with nothing new writes nothing: the record's KV version does not move.
    let (_, before) = bao.call("GET", "secret/metadata/keyport/h1/keys/default/deploy.v1", None);
    sync_now(&d);
    let (_, after) = bao.call("GET", "secret/metadata/keyport/h1/keys/default/deploy.v1", None);
    assert_eq!(before["data"]["current_version"], after["data"]["current_version"]);

    // A key the vault already holds, adopted as a keyset's first version: its record gains the
    // keyset.
    let plain = d.generate("plain", "ec-p256", true);
    sync_now(&d);
    assert!(record(&bao, "plain").0["keyset_id"].is_null());
    let (s, adopted) =
        d.curl("POST", "/keyport/v1/keysets", Some(&json!({"name": "adopted", "type": "Host", "key_id": plain["id"]}).to_string()), &[]);
    assert_eq!(s, 201, "{adopted}");
    sync_now(&d);
    let (data, _) = record(&bao, "plain");
    assert_eq!(
        (data["keyset_id"].as_str(), data["keyset"].as_str(), data["keyset_state"].as_str()),
        (adopted["id"].as_str(), Some("adopted"), Some("active")),
        "{data}"
    );
}
