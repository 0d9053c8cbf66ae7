//! Who may call: peer credentials on the socket, API keys on either listener, permissions.

mod common;
use common::*;

#[test]
#[ignore = "needs root: calls the socket as uid 65534 through setpriv; scripts/test runs it"]
fn a_uid_that_is_not_a_principal_is_refused() {
    common::require_root("calls the socket as uid 65534 through setpriv");
    require("curl");
    require("setpriv");
    let d = Daemon::start("");
    // The socket is 0666 in the test config, so uid 65534 can connect; it is just not a principal.
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "curl", "-sS", "-w", "\n%{http_code}", "--unix-socket"])
        .arg(&d.socket)
        .arg("http://localhost/keyport/v1/keys")
        .output()
        .unwrap();
    let (status, v) = parse_curl(out);
    assert_eq!(status, 401, "{v}");
    assert_eq!(v["error"]["code"], "unauthenticated");
    assert!(v["error"]["message"].as_str().unwrap().contains("uid 65534"), "{v}");
}

#[test]
fn api_keys_over_https_and_the_socket() {
    require("curl");
    let d = Daemon::start("");
    // No key over TCP: 401.
    let (s, v) = d.curl_https("GET", "/keyport/v1/health", None, &[]);
    assert_eq!(s, 401, "{v}");
    // Wrong key: 401 on TCP and on the socket too (a wrong key is never ignored for the uid).
    let (s, _) = d.curl_https("GET", "/keyport/v1/keys", None, &["-H", "X-Api-Key: wrong"]);
    assert_eq!(s, 401);
    let (s, _) = d.curl("GET", "/keyport/v1/keys", None, &["-H", "X-Api-Key: wrong"]);
    assert_eq!(s, 401);
    // The right key, both header forms; TLS verified against the daemon's own certificate.
    let (s, v) = d.curl_https("GET", "/keyport/v1/health", None, &["-H", "X-Api-Key: reader-key"]);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "ok");
    let (s, _) = d.curl_https("GET", "/keyport/v1/keys", None, &["-H", "Authorization: Bearer reader-key"]);
    assert_eq!(s, 200);
    // The reader may read `default` but not create keys: 403 naming the permission.
    let (s, v) = d.curl_https("POST", "/keyport/v1/keys", Some(r#"{"name":"x","algorithm":"ec-p256"}"#), &["-H", "X-Api-Key: reader-key"]);
    assert_eq!(s, 403, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("manage"), "{v}");
    // The reader sees keys in `default` but not in other namespaces.
    d.generate("visible", "ec-p256", false);
    let (s, _) = d.curl("POST", "/keyport/v1/keys", Some(r#"{"name":"hidden","namespace":"secret","algorithm":"ec-p256"}"#), &[]);
    assert_eq!(s, 201);
    let (_, v) = d.curl_https("GET", "/keyport/v1/keys", None, &["-H", "X-Api-Key: reader-key"]);
    let names: Vec<_> = v["keys"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, vec!["visible"]);
}

#[test]
fn health_shows_token_and_store() {
    require("curl");
    let d = Daemon::start("");
    let (s, v) = d.curl("GET", "/keyport/v1/health", None, &[]);
    assert_eq!(s, 200, "{v}");
    let t = &v["tokens"][0];
    assert_eq!(t["name"], "soft");
    assert_eq!(t["present"], true);
    assert_eq!(t["logged_in"], true);
    assert_eq!(t["label"], "test");
    assert_eq!(t["mechanisms"]["kwp"], 0x210A, "SoftHSM's RFC 5649 id is probed");
    assert_eq!(t["mechanisms"]["ed25519_wrappable"], false, "SoftHSM 2.6 cannot wrap Ed25519 (probed)");
    // The TLS key pair, its certificate, and the AES key that seals the DEK at rest.
    assert_eq!(t["objects"], 4);
    assert_eq!(v["store"]["ok"], true);
    // Not a fixed number: steps appended on other branches are reordered at merge.
    let version = v["store"]["schema_version"].as_i64().expect("schema_version is a number");
    assert!(
        version >= 10,
        "{version}: at least 1 inventory, 2 DEK/certificates, 3 project-key face, 4 KPS face, 5 sync outbox, 6 TPP face, 7 certificate import, 8 sync remote jobs, 9 TPP sessions, 10 key status, delete intents, token identities"
    );
}
