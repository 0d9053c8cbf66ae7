//! Key generation, listing, showing and deletion through the real daemon on a real SoftHSM
//! token, cross-checked with OpenSC's pkcs11-tool.

mod common;
use common::*;

#[test]
fn every_algorithm_round_trips_and_pkcs11_tool_sees_exactly_it() {
    require("curl");
    require("pkcs11-tool");
    let d = Daemon::start("");
    let algs = ["rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384", "ec-p521", "ed25519"];
    let mut ids = Vec::new();
    for (i, alg) in algs.iter().enumerate() {
        let exportable = i % 2 == 0;
        let v = d.generate(&format!("key-{alg}"), alg, exportable);
        assert_eq!(v["algorithm"], *alg);
        assert_eq!(v["namespace"], "default");
        assert_eq!(v["owner"], "root");
        assert_eq!(v["exportable"], exportable);
        assert!(v["fingerprint"].as_str().unwrap().starts_with("sha256:"));
        ids.push((v["id"].as_str().unwrap().to_string(), format!("key-{alg}"), exportable));
    }

    let (status, list) = d.curl("GET", "/keyport/v1/keys", None, &[]);
    assert_eq!(status, 200);
    assert_eq!(list["keys"].as_array().unwrap().len(), algs.len());
    let (status, one) = d.curl("GET", "/keyport/v1/keys?name=key-ed25519", None, &[]);
    assert_eq!(status, 200);
    assert_eq!(one["keys"].as_array().unwrap().len(), 1);

    let listing = d.pkcs11_objects();
    let blocks = object_blocks(&listing);
    for (id, name, exportable) in &ids {
        let mine: Vec<_> = blocks.iter().filter(|b| &b.2 == id).collect();
        assert_eq!(mine.len(), 2, "a private and a public object share CKA_ID {id}:\n{listing}");
        assert!(mine.iter().all(|b| &b.1 == name), "CKA_LABEL is the key's name:\n{listing}");
        let private = mine.iter().find(|b| b.0.starts_with("Private Key Object")).expect("private key");
        // SoftHSM cannot wrap Ed25519, so an exportable Ed25519 key is readable (not sensitive)
        // by a logged-in session; every other private key is sensitive.
        let readable = name == "key-ed25519" && *exportable;
        assert_eq!(private.0.contains(" sensitive") || private.0.contains(":      sensitive"), !readable, "{private:?}");
        assert_eq!(!private.0.contains("never extractable"), *exportable, "CKA_EXTRACTABLE only when asked: {private:?}");
    }

    let (rsa_id, _, _) = &ids[0];
    let (status, shown) = d.curl("GET", &format!("/keyport/v1/keys/{rsa_id}"), None, &[]);
    assert_eq!(status, 200);
    assert_eq!(shown["name"], "key-rsa-2048");

    for (id, _, _) in &ids {
        let (status, v) = d.curl("DELETE", &format!("/keyport/v1/keys/{id}"), None, &[]);
        assert_eq!(status, 200, "{v}");
    }
    let (_, list) = d.curl("GET", "/keyport/v1/keys", None, &[]);
    assert!(list["keys"].as_array().unwrap().is_empty());
    let listing = d.pkcs11_objects();
    for (id, _, _) in &ids {
        assert!(!listing.contains(id.as_str()), "objects of {id} are gone:\n{listing}");
    }
    let (status, v) = d.curl("GET", &format!("/keyport/v1/keys/{rsa_id}"), None, &[]);
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"]["code"], "not_found");
}

#[test]
fn bad_requests_get_one_error_shape_and_change_nothing() {
    require("curl");
    let d = Daemon::start("");
    let before = d.curl("GET", "/keyport/v1/keys", None, &[]).1;

    let (s, v) = d.curl("POST", "/keyport/v1/keys", Some(r#"{"name":"a","algorithm":"rsa-1024"}"#), &[]);
    assert_eq!(s, 400);
    assert_eq!(v["error"]["code"], "invalid_algorithm");
    assert!(v["error"]["message"].as_str().unwrap().contains("ec-p256"), "says what to use: {v}");

    let (s, v) = d.curl("POST", "/keyport/v1/keys", Some(r#"{"name":"a","algorithm":"ec-p256","colour":"red"}"#), &[]);
    assert_eq!(s, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("colour"), "names the unknown field: {v}");

    let (s, v) = d.curl("POST", "/keyport/v1/keys", Some(r#"{"name":"../x","algorithm":"ec-p256"}"#), &[]);
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_name")));

    let (s, v) = d.curl("POST", "/keyport/v1/keys", Some(r#"{"name":"a","algorithm":"ec-p256","token":"nope"}"#), &[]);
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("unknown_token")));

    let (s, _) = d.curl("POST", "/keyport/v1/keys", Some("{not json"), &[]);
    assert_eq!(s, 400);

    // Over the 1 MiB limit of the test config: 413 before any work, whether the size is
    // declared (Content-Length) or only found while reading (chunked).
    let big = format!(r#"{{"name":"big","algorithm":"ec-p256","pad":"{}"}}"#, "x".repeat(1_100_000));
    let f = d.dir.path().join("big.json");
    std::fs::write(&f, &big).unwrap();
    let (s, v) = d.curl("POST", "/keyport/v1/keys", Some(&format!("@{}", f.display())), &["-H", "Transfer-Encoding: chunked"]);
    assert_eq!(s, 413, "{v}");
    let (s, v) = d.curl("POST", "/keyport/v1/keys", Some(&format!("@{}", f.display())), &[]);
    assert_eq!(s, 413, "{v}");
    assert_eq!(v["error"]["code"], "body_too_large");

    assert_eq!(d.curl("GET", "/keyport/v1/keys", None, &[]).1, before, "nothing was created");

    d.generate("dup", "ec-p256", false);
    let (s, v) = d.curl("POST", "/keyport/v1/keys", Some(r#"{"name":"dup","algorithm":"ed25519"}"#), &[]);
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"]["code"], "conflict");
    let blocks = object_blocks(&d.pkcs11_objects());
    assert_eq!(blocks.iter().filter(|b| b.1 == "dup").count(), 2, "the refused duplicate left no objects");

    let (s, v) = d.curl("GET", "/nowhere", None, &[]);
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
}

#[test]
fn namespace_policy_decides_exportability() {
    require("curl");
    require("pkcs11-tool");
    let d = Daemon::start("[namespaces.ssh]\nexportable_by_default = true\n[namespaces.web]\nallow_exportable = false\n");
    let (s, v) = d.curl("POST", "/keyport/v1/keys", Some(r#"{"name":"h","namespace":"ssh","algorithm":"ed25519"}"#), &[]);
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["exportable"], true, "namespace default applies when the request is silent");
    let (s, v) = d.curl("POST", "/keyport/v1/keys", Some(r#"{"name":"w","namespace":"web","algorithm":"ec-p256","exportable":true}"#), &[]);
    assert_eq!(s, 403, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("allow_exportable"));
    assert!(!d.pkcs11_objects().contains("label:      w\n"), "refused request made no object");
}
