//! "Feature off" with a real module: p11-kit's trust module (Debian's p11-kit-modules) is a
//! read-only token that wants no login and offers no mechanism, so it can make none of
//! keyport's own keys. Alone, keyport still starts and names what is off in the log, in
//! `GET /keyport/v1/health` (`features_off`) and in `keyport config check`, and refuses every
//! creation on it with the token's name and why. Listed before SoftHSM, keyport's own keys go
//! to SoftHSM and nothing is off.

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn trust_module() -> PathBuf {
    for p in ["/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-trust.so", "/usr/lib/aarch64-linux-gnu/pkcs11/p11-kit-trust.so"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("p11-kit-trust.so not found: install p11-kit-modules (scripts/deps-test)");
}

/// The `[[tokens]]` block of the trust module's "System Trust" token under `trust`; its PIN
/// file exists but is never read (the token wants no login).
fn trust_toml(dir: &Path) -> String {
    let pin = dir.join("trust.pin");
    std::fs::write(&pin, "unused\n").unwrap();
    format!(
        "[[tokens]]\nname = \"trust\"\nmodule = \"{}\"\nlabel = \"System Trust\"\npin = {{ file = \"{}\" }}\n",
        trust_module().display(),
        pin.display()
    )
}

fn off<'a>(h: &'a Value, component: &str) -> &'a str {
    h["features_off"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["component"] == component)
        .and_then(|f| f["reason"].as_str())
        .unwrap_or_else(|| panic!("{component} not in features_off: {h}"))
}

#[test]
fn only_a_read_only_module_keyport_starts_with_its_features_off_and_refuses_clearly() {
    require("curl");
    let work = tempfile::tempdir().unwrap();
    let mut d = Daemon::config_tokens(&trust_toml(work.path()), "");
    d.spawn_socket_only();
    let log = d.log();
    assert!(log.contains("token opened without a login or read-only"), "{log}");
    let dek_off = "the edge encryption key (DEK) is off: no configured token can hold the at-rest key";
    let https_off = format!("HTTPS on 127.0.0.1:{} is off: no configured token can hold the HTTPS server key", d.port);
    assert!(log.contains(dek_off) && log.contains(&https_off), "{log}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", d.port)).is_err(), "no HTTPS listener");

    let (s, h) = d.curl("GET", "/keyport/v1/health", None, &[]);
    assert_eq!((s, h["status"].as_str()), (200, Some("ok")), "up, with features off: {h}");
    assert!(off(&h, "dek").contains("token 'trust' generates none and cannot seal keyport's own secrets"), "{h}");
    assert!(off(&h, "listen:tcp").contains("it needs ECDSA P-256 key generation, and token 'trust' generates none"), "{h}");
    let t = &h["tokens"][0];
    assert_eq!((t["present"].as_bool(), t["logged_in"].as_bool()), (Some(true), Some(true)), "a token that wants no login: {t}");
    assert_eq!(t["capabilities"]["read_only"], true, "{t}");
    assert_eq!(t["capabilities"]["generates"], json!([]), "{t}");
    assert!(t["can"][0].as_str().unwrap().starts_with("read-only token"), "{t}");

    // `keyport config check` opens the token (never creating anything) and says what is off.
    let out = d.command().args(["config", "check"]).arg(&d.config).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("token 'trust': read-only token (write-protected)"), "{text}");
    assert!(text.contains("off: no configured token can hold the at-rest key that seals the edge encryption key (DEK)"), "{text}");
    assert!(text.contains("off: no configured token can hold the HTTPS server key"), "{text}");

    // Operations on the token: refused with its name and why; nothing is written.
    let (s, v) = d.curl("POST", "/keyport/v1/keys", Some(r#"{"name":"k","algorithm":"ec-p256"}"#), &[]);
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("unsupported_by_token")), "{v}");
    assert_eq!(
        v["error"]["message"],
        "token 'trust' cannot generate ec-p256 keys; it is a read-only token (keyport can make no key in it): use another token (no other configured token can)"
    );
    let key = common::tpm::openssl(work.path(), &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    let body = json!({"data": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &key), "name": "imp"}).to_string();
    let (s, v) = d.curl("POST", "/keyport/v1/keys/import", Some(&body), &[]);
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("unsupported_by_token")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("token 'trust' cannot import private keys (it is a read-only token)"), "{v}");
    // The TLS Protect Cloud face needs the DEK: 503 in its own shape, saying it is off.
    let (s, v) = d.curl("GET", "/v1/edgeencryptionkeys", None, &["-H", "tppl-api-key: tlspc-key"]);
    assert_eq!(s, 503, "{v}");
    assert!(v.to_string().contains("is off"), "{v}");
    let (s, v) = d.curl("GET", "/keyport/v1/keys", None, &[]);
    assert_eq!((s, v["keys"].as_array().map(Vec::len)), (200, Some(0)), "{v}");
    assert!(d.stop().success(), "{}", d.log());
}

#[test]
fn a_read_only_module_before_softhsm_keyports_own_keys_go_to_softhsm() {
    require("curl");
    let work = tempfile::tempdir().unwrap();
    let mut d = Daemon::config_tokens(&format!("{}\n{SOFT_TOKEN}", trust_toml(work.path())), "");
    d.spawn();
    let (s, h) = d.curl("GET", "/keyport/v1/health", None, &[]);
    assert_eq!((s, h["status"].as_str()), (200, Some("ok")), "{h}");
    assert_eq!(h["features_off"], json!([]), "{h}");
    let out = d.command().args(["config", "check"]).arg(&d.config).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("the at-rest key that seals the edge encryption key (DEK): token 'soft'"), "{text}");
    assert!(text.contains("the HTTPS server key: token 'soft'"), "{text}");
    // The first token is the default: a key asked of it is refused, naming the one that can.
    let (s, v) = d.curl("POST", "/keyport/v1/keys", Some(r#"{"name":"k","algorithm":"ec-p256"}"#), &[]);
    assert_eq!(s, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("token 'soft' can"), "{v}");
    let (s, v) = d.curl("POST", "/keyport/v1/keys", Some(r#"{"name":"k","algorithm":"ec-p256","token":"soft"}"#), &[]);
    assert_eq!((s, v["token"].as_str()), (201, Some("soft")), "{v}");
    // The DEK is up on SoftHSM: the TLS Protect Cloud face serves its key.
    let (s, v) = d.curl_https("GET", "/v1/edgeencryptionkeys", None, &["-H", "tppl-api-key: tlspc-key"]);
    assert_eq!(s, 200, "{v}");
}
