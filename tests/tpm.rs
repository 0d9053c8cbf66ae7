//! keyport on a real TPM 2.0 (swtpm + tpm2-abrmd + tpm2-pkcs11, `common::tpm`), next to
//! SoftHSM: the token-agnostic lifecycle on both, capabilities in health, refusals that name
//! the token and what it offers, a daemon with both tokens (exports and sync), and the TPM
//! taken away and brought back under a running daemon.

mod common;
use common::tpm::{On, OnToken};
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn token_health<'a>(h: &'a Value, name: &str) -> &'a Value {
    h["tokens"].as_array().unwrap().iter().find(|t| t["name"] == name).unwrap_or_else(|| panic!("no token {name}: {h}"))
}

fn sign(d: &Daemon, id: &str) -> (u16, Value) {
    d.curl("POST", &format!("/keyport/v1/keys/{id}/sign"), Some(r#"{"data":"aGVsbG8="}"#), &[])
}

/// Generate, sign, list, health, delete, restart and reconcile on one token kind.
fn lifecycle(on: On) {
    require("curl");
    let mut d = OnToken::start(on, "");
    let tok = d.token;
    let (s, h) = d.curl("GET", "/keyport/v1/health", None, &[]);
    assert_eq!(s, 200, "{h}\n{}", d.log());
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["features_off"], json!([]), "every own key found a token: {h}");
    let th = token_health(&h, tok);
    let can: Vec<&str> = th["can"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(can.len(), 4, "{th}");
    assert!(th["capabilities"]["generates"].as_array().unwrap().contains(&json!("ec-p256")), "{th}");
    match on {
        On::Tpm => {
            assert_eq!(th["capabilities"]["wrap_private"], false, "{th}");
            assert_eq!(th["capabilities"]["create_private"], false, "{th}");
            assert_eq!(th["capabilities"]["ed25519"], false, "{th}");
            assert_eq!(th["capabilities"]["hardware"], true, "{th}");
            assert!(!th["capabilities"]["generates"].as_array().unwrap().contains(&json!("rsa-4096")), "{th}");
            assert!(can[0].contains("no Ed25519"), "{can:?}");
            assert!(can[1].starts_with("cannot wrap private keys out"), "{can:?}");
            assert!(can[2].starts_with("cannot import private keys"), "{can:?}");
            assert!(can[3].contains("RSA-OAEP"), "the at-rest key is an RSA pair on the TPM: {can:?}");
        }
        On::Soft => {
            assert_eq!(th["capabilities"]["wrap_private"], true, "{th}");
            assert_eq!(th["capabilities"]["create_private"], true, "{th}");
            assert_eq!(th["capabilities"]["hardware"], false, "{th}");
            assert!(can[3].contains("AES-256-GCM"), "{can:?}");
        }
    }
    // The DEK is up (sealed in this token): the edge encryption key is served.
    let (s, v) = d.curl_https("GET", "/v1/edgeencryptionkeys", None, &["-H", "tppl-api-key: tlspc-key"]);
    assert_eq!(s, 200, "{v}\n{}", d.log());

    let ec = d.generate("ec", "ec-p256", false);
    let rsa = d.generate("rsa", "rsa-2048", false);
    for k in [&ec, &rsa] {
        assert_eq!(k["token"], tok, "{k}");
        let id = k["id"].as_str().unwrap();
        let (s, v) = sign(&d, id);
        assert_eq!(s, 200, "{v}");
        assert!(d.token_objects().contains(id), "the key's objects are in the token");
    }
    let (s, v) = d.curl("GET", "/keyport/v1/keys", None, &[]);
    assert_eq!(s, 200);
    assert_eq!(v["keys"].as_array().unwrap().len(), 2, "{v}");
    // The metrics count this token's operations under its own name.
    let (s, m) = d.curl("GET", "/keyport/v1/metrics", None, &[]);
    assert_eq!(s, 200);
    let m = m.as_str().unwrap_or_default().to_string();
    for (op, n) in [("generate", 2), ("sign", 2)] {
        let line = format!("keyport_token_operations_total{{token=\"{tok}\",op=\"{op}\",result=\"ok\"}} {n}");
        assert!(m.contains(&line), "{line} in:\n{m}");
    }

    // Per-key facts, from the token: generated in the token, never extractable.
    let (s, v) = d.curl("GET", "/keyport/v1/health/keys", None, &[]);
    assert_eq!(s, 200, "{v}");
    let facts = v["keys"].as_array().unwrap().iter().find(|k| k["id"] == ec["id"]).cloned().unwrap_or_else(|| panic!("{v}"));
    assert_eq!((facts["local"].as_bool(), facts["never_extractable"].as_bool()), (Some(true), Some(true)), "{facts}");
    assert_eq!(facts["never_outside_token"], true, "{facts}");

    if on == On::Soft {
        // An imported key was outside the token before: never "never outside", whatever the
        // token's flags say.
        let job = common::bao::import_job(&d, "imported.example");
        assert_eq!(job["results"][0]["status"], "IMPORTED", "{job}");
        let (_, v) = d.curl("GET", "/keyport/v1/health/keys", None, &[]);
        let imp = v["keys"].as_array().unwrap().iter().find(|k| k["origin"] == "imported").cloned().unwrap_or_else(|| panic!("{v}"));
        assert_eq!((imp["local"].as_bool(), imp["never_outside_token"].as_bool()), (Some(false), Some(false)), "{imp}");
        let (s, _) = d.curl("DELETE", &format!("/keyport/v1/keys/{}", imp["id"].as_str().unwrap()), None, &[]);
        assert_eq!(s, 200);
    }

    if on == On::Tpm {
        let (s, v) = d.curl("POST", "/keyport/v1/keys", Some(r#"{"name":"ed","algorithm":"ed25519","exportable":false}"#), &[]);
        assert_eq!(s, 400, "{v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains("token 'tpm'") && m.contains("ed25519") && m.contains("ec-p256"), "names the token and what it offers: {m}");
        let (s, v) = d.curl("POST", "/keyport/v1/keys", Some(r#"{"name":"big","algorithm":"rsa-4096"}"#), &[]);
        assert_eq!(s, 400, "{v}");
        let (s, v) = d.curl("POST", "/keyport/v1/keys", Some(r#"{"name":"out","algorithm":"ec-p256","exportable":true}"#), &[]);
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("not_exportable_on_token")), "{v}");
        let (s, v) = d.curl(
            "POST",
            &format!("/keyport/v1/keys/{}/export", ec["id"].as_str().unwrap()),
            Some(r#"{"format":"pkcs8","passphrase":"long enough"}"#),
            &[],
        );
        assert_eq!(s, 403, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("not exportable on this token"), "{v}");
        // Import through the TLS Protect Cloud face: a per-item failure in the vendor's shape.
        let job = common::bao::import_job(&d, "imported.example");
        let item = &job["results"][0];
        assert_eq!(item["status"], "FAILED", "{job}");
        assert!(item["reason"].as_str().unwrap().contains("token 'tpm' cannot import private keys"), "{job}");
        let (s, v) = d.curl("GET", "/keyport/v1/keys", None, &[]);
        assert_eq!((s, v["keys"].as_array().unwrap().len()), (200, 2), "refusals wrote nothing: {v}");
        // `keyport health` shows the capabilities in plain words.
        let out = d.command().args(["health", "--socket"]).arg(&d.socket).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("token tpm: cannot wrap private keys out"), "{text}{}", String::from_utf8_lossy(&out.stderr));
    }

    // `keyport config check` opens the token and says where keyport's own keys live.
    let out = d.command().args(["config", "check"]).arg(&d.config).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("the at-rest key that seals the edge encryption key (DEK): token '{tok}'")), "{text}");
    assert!(text.contains(&format!("the HTTPS server key: token '{tok}'")), "{text}");
    assert!(text.contains(&format!("token '{tok}': generates")), "{text}");

    // Delete: gone from the token and the inventory.
    let rid = rsa["id"].as_str().unwrap();
    let (s, v) = d.curl("DELETE", &format!("/keyport/v1/keys/{rid}"), None, &[]);
    assert_eq!(s, 200, "{v}");
    assert!(!d.token_objects().contains(rid));

    // Restart: the key, the DEK (sealed in the token) and the TLS certificate come back.
    let cert = std::fs::read(d.dir.path().join("state/tls-cert.pem")).unwrap();
    assert!(d.stop().success());
    d.spawn();
    assert_eq!(std::fs::read(d.dir.path().join("state/tls-cert.pem")).unwrap(), cert, "same TLS key and certificate");
    let (s, h) = d.curl("GET", "/keyport/v1/health", None, &[]);
    assert_eq!((s, h["status"].as_str()), (200, Some("ok")), "{h}\n{}", d.log());
    let eid = ec["id"].as_str().unwrap();
    let (s, v) = sign(&d, eid);
    assert_eq!(s, 200, "{v}");

    // Reconcile: the key's objects destroyed behind keyport's back → listed `missing`.
    assert!(d.stop().success());
    let out = match &d.tpm {
        Some(t) => t.pkcs11_tool(&["--delete-object", "--type", "privkey", "--id", eid]),
        None => d.pkcs11_tool(&["--delete-object", "--type", "privkey", "--id", eid]),
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = match &d.tpm {
        Some(t) => t.pkcs11_tool(&["--delete-object", "--type", "pubkey", "--id", eid]),
        None => d.pkcs11_tool(&["--delete-object", "--type", "pubkey", "--id", eid]),
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    d.spawn();
    let (s, v) = d.curl("GET", &format!("/keyport/v1/keys/{eid}"), None, &[]);
    assert_eq!((s, v["status"].as_str()), (200, Some("missing")), "{v}");
}

#[test]
fn lifecycle_on_softhsm() {
    lifecycle(On::Soft);
}

#[test]
fn lifecycle_on_tpm() {
    lifecycle(On::Tpm);
}

/// SoftHSM (`soft`, first) and the TPM (`tpm`) in one daemon, syncing to a real OpenBao.
#[test]
fn two_tokens_export_and_sync() {
    use common::bao::*;
    tools();
    let work = tempfile::tempdir().unwrap();
    let bao = Bao::start(work.path());
    let tpm = common::tpm::Tpm::start();
    let mut d = Daemon::config(&tpm.token_toml("tpm"));
    d.env.extend(tpm.env());
    let token = d.dir.path().join("vault.token");
    std::fs::write(&token, format!("{ROOT_TOKEN}\n")).unwrap();
    let mut text = std::fs::read_to_string(&d.config).unwrap();
    text.push_str(&format!(
        "\n[sync]\naddress = \"http://127.0.0.1:{}\"\ntoken = {{ file = \"{}\" }}\nhost = \"h1\"\ninterval_secs = 3600\njitter_secs = 0\nretry_base_secs = 1\nnamespaces = [\"default\"]\n",
        bao.port,
        token.display()
    ));
    std::fs::write(&d.config, text).unwrap();
    d.spawn();

    let gen = |name: &str, alg: &str, token: &str, exportable: bool| {
        let (s, v) = d.curl(
            "POST",
            "/keyport/v1/keys",
            Some(&json!({"name": name, "algorithm": alg, "token": token, "exportable": exportable}).to_string()),
            &[],
        );
        assert_eq!(s, 201, "{name}: {v}\n{}", d.log());
        assert_eq!(v["token"], token, "landed where asked: {v}");
        v
    };
    let soft = gen("on-soft", "ec-p256", "soft", true);
    let tpmk = gen("on-tpm", "ec-p256", "tpm", false);
    let soft_id = soft["id"].as_str().unwrap();
    let tpm_id = tpmk["id"].as_str().unwrap();
    assert!(d.pkcs11_objects().contains(soft_id) && !d.pkcs11_objects().contains(tpm_id));
    assert!(tpm.objects().contains(tpm_id) && !tpm.objects().contains(soft_id));

    // Ed25519: the TPM refuses, naming SoftHSM as a token that can.
    let (s, v) = d.curl("POST", "/keyport/v1/keys", Some(r#"{"name":"ed","algorithm":"ed25519","token":"tpm"}"#), &[]);
    assert_eq!(s, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("token 'soft' can"), "{v}");

    // Export: from SoftHSM an encrypted PKCS#8; from the TPM the one core refusal.
    let body = r#"{"format":"pkcs8","passphrase":"long enough"}"#;
    let (s, v) = d.curl("POST", &format!("/keyport/v1/keys/{soft_id}/export"), Some(body), &[]);
    assert_eq!(s, 200, "{v}");
    let (s, v) = d.curl("POST", &format!("/keyport/v1/keys/{tpm_id}/export"), Some(body), &[]);
    assert_eq!(s, 403, "{v}");
    assert_eq!(
        v["error"]["message"].as_str().unwrap(),
        format!("key 'on-tpm' is not exportable on this token: token 'tpm' cannot wrap private keys out (it has no AES key-wrap mechanism); the key stays in the token and is used in place (sign)")
    );
    // Still there and usable in place.
    assert_eq!(sign(&d, tpm_id).0, 200);

    // Sync: the SoftHSM key reaches transit, the TPM key is reported not_syncable.
    let st = sync_now(&d);
    let ks = key_status(&st, "on-soft");
    assert_eq!(ks["status"], "synced", "{ks}");
    check_in_transit(&bao, work.path(), "h1-default.on-soft", &soft);
    let ks = key_status(&st, "on-tpm");
    assert_eq!(ks["status"], "not_syncable", "{ks}");
    assert!(ks["detail"].as_str().unwrap().contains("not exportable on this token"), "{ks}");
    assert_eq!(bao.call("GET", "transit/keys/h1-default.on-tpm", None).0, 404);
    drop(d);
}

/// swtpm killed under a running daemon: a clear 503 with Retry-After meanwhile; once the TPM
/// (and its resource manager) is back, keyport serves again without a restart.
#[test]
fn tpm_killed_and_restarted_under_a_running_daemon() {
    let mut d = OnToken::start(On::Tpm, "");
    let k = d.generate("k", "ec-p256", false);
    let id = k["id"].as_str().unwrap().to_string();
    assert_eq!(sign(&d, &id).0, 200);

    d.tpm.as_mut().unwrap().kill_swtpm();
    let out = std::process::Command::new("curl")
        .args(["-sS", "-D", "-", "--unix-socket"])
        .arg(&d.socket)
        .args(["-H", "content-type: application/json", "--data-binary", r#"{"data":"aGVsbG8="}"#])
        .arg(format!("http://localhost/keyport/v1/keys/{id}/sign"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(text.starts_with("http/1.1 503"), "{text}\n{}", d.log());
    assert!(text.contains("retry-after:"), "{text}");
    assert!(text.contains("token 'tpm'"), "names the token: {text}");
    let (s, h) = d.curl("GET", "/keyport/v1/health", None, &[]);
    assert_eq!(s, 503, "{h}");
    assert_eq!(token_health(&h, "tpm")["present"], false, "{h}");

    let tpm = d.tpm.as_mut().unwrap();
    tpm.start_swtpm();
    // The resource manager loses its TPM connection with swtpm; it is infrastructure like the
    // TPM itself and comes back with it.
    tpm.start_abrmd();
    let start = Instant::now();
    loop {
        let (s, v) = sign(&d, &id);
        if s == 200 {
            break;
        }
        assert_eq!(s, 503, "only 503 while recovering: {v}");
        assert!(start.elapsed() < Duration::from_secs(60), "no recovery in 60 s: {v}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(500));
    }
    let (s, h) = d.curl("GET", "/keyport/v1/health", None, &[]);
    assert_eq!((s, h["status"].as_str()), (200, Some("ok")), "{h}");
    assert!(d.child.is_some(), "the same daemon process");
    // New work lands in the TPM again.
    let k2 = d.generate("k2", "rsa-2048", false);
    assert!(d.tpm.as_ref().unwrap().objects().contains(k2["id"].as_str().unwrap()));
}

/// tpm2-abrmd at its default (27 loaded objects per client): tpm2-pkcs11 keeps every key pair
/// keyport used loaded, so past ~13 pairs the TPM answers CKR_GENERAL_ERROR. keyport logs out and
/// in again (which evicts them) and serves on: every key generates and signs.
#[test]
fn more_keys_than_the_tpm_has_object_slots() {
    let tpm = common::tpm::Tpm::start_with(27);
    let mut d = Daemon::config_tokens(&tpm.token_toml("tpm"), "");
    d.env.extend(tpm.env());
    d.spawn();
    let mut ids = Vec::new();
    for i in 0..24 {
        let (s, v) = d.curl("POST", "/keyport/v1/keys", Some(&format!(r#"{{"name":"k{i}","algorithm":"ec-p256"}}"#)), &[]);
        assert_eq!(s, 201, "key {i}: {v}\n{}", d.log());
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    for (i, id) in ids.iter().enumerate() {
        let (s, v) = sign(&d, id);
        assert_eq!(s, 200, "sign with key {i}: {v}");
    }
    assert!(d.log().contains("logged out and in again to free the device's object slots"), "{}", d.log());
    drop(d);
}

/// The ssh-agent on a TPM-only daemon: `ssh-add` (an import) is refused and nothing is written;
/// a key generated in the TPM is listed and signs in place (SSHSIG verified by ssh-keygen).
#[test]
fn ssh_agent_on_the_tpm() {
    require("ssh-add");
    require("ssh-keygen");
    let tpm = common::tpm::Tpm::start();
    let sockdir = tempfile::tempdir().unwrap();
    let sock = sockdir.path().join("agent.sock");
    let mut d = Daemon::config_tokens(
        &tpm.token_toml("tpm"),
        &format!("[agent]\nsocket = \"{}\"\nsocket_mode = \"0666\"\nadd = \"imported\"\n", sock.display()),
    );
    d.env.extend(tpm.env());
    d.spawn();
    let agent = |args: &[&str]| std::process::Command::new(args[0]).args(&args[1..]).env("SSH_AUTH_SOCK", &sock).output().unwrap();
    let f = d.dir.path().join("id_ecdsa");
    let st = std::process::Command::new("ssh-keygen").args(["-q", "-t", "ecdsa", "-b", "256", "-N", "", "-f"]).arg(&f).status().unwrap();
    assert!(st.success());
    let out = agent(&["ssh-add", f.to_str().unwrap()]);
    assert!(!out.status.success(), "ssh-add into a token that cannot import must fail");
    assert!(d.log().contains("token 'tpm' cannot import private keys"), "the reason is logged: {}", d.log());
    let (_, v) = d.curl("GET", "/keyport/v1/keys", None, &[]);
    assert_eq!(v["keys"].as_array().unwrap().len(), 0, "{v}");

    let k = d.generate("host", "ec-p256", false);
    let out = agent(&["ssh-add", "-L"]);
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = listed.lines().find(|l| l.ends_with("default/host")).unwrap_or_else(|| panic!("{listed}"));
    let pubf = d.dir.path().join("host.pub");
    std::fs::write(&pubf, format!("{line}\n")).unwrap();
    let data = d.dir.path().join("data");
    std::fs::write(&data, b"signed in the TPM").unwrap();
    let out = agent(&["ssh-keygen", "-Y", "sign", "-f", pubf.to_str().unwrap(), "-n", "file", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), d.log());
    let allowed = d.dir.path().join("allowed");
    std::fs::write(&allowed, format!("me {line}\n")).unwrap();
    let out = std::process::Command::new("ssh-keygen")
        .args(["-Y", "verify", "-f", allowed.to_str().unwrap(), "-I", "me", "-n", "file", "-s"])
        .arg(data.with_extension("sig"))
        .stdin(std::fs::File::open(&data).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(k["token"], "tpm");
}

fn b64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn status_of(d: &Daemon, id: &str) -> Value {
    let (s, v) = d.curl("GET", &format!("/keyport/v1/keys/{id}"), None, &[]);
    assert_eq!(s, 200, "{v}");
    v
}

/// Each face's creations on one token kind: the native import, the KPS face (generate, list,
/// show, register a public key, import, export, delete), the 004 face (deploy a private, a
/// public and a secret key to the environment on this token) and a TLS Protect Cloud import
/// job. Where the token cannot hold what
/// is asked (a TPM creates no private or secret key objects), the face's own error shape says
/// so and nothing is written. The metrics count the token's operations; what was made survives
/// a daemon restart and is listed.
fn faces(on: On) {
    require("curl");
    let tok = if on == On::Tpm { "tpm" } else { "soft" };
    let mut d = OnToken::start(on, &common::tpm::faces_toml(tok));
    let dir = d.dir.path().join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    let openssl = |args: &[&str]| common::tpm::openssl(&dir, args);
    openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "p256.pem"]);
    openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "rsa.pem"]);
    let p256 = std::fs::read_to_string(dir.join("p256.pem")).unwrap();
    let rsa = std::fs::read(dir.join("rsa.pem")).unwrap();
    let rsa_spki = openssl(&["pkey", "-in", "rsa.pem", "-pubout"]);
    let objects_before = d.token_objects();

    // Native import.
    let body = json!({"data": b64(p256.as_bytes()), "name": "imported"}).to_string();
    let (s, v) = d.curl("POST", "/keyport/v1/keys/import", Some(&body), &[]);
    match on {
        On::Soft => {
            assert_eq!((s, v["key"]["token"].as_str()), (201, Some("soft")), "{v}");
            assert!(d.token_objects().contains(v["key"]["id"].as_str().unwrap()));
        }
        On::Tpm => {
            assert_eq!((s, v["error"]["code"].as_str()), (400, Some("unsupported_by_token")), "{v}");
            let m = v["error"]["message"].as_str().unwrap();
            assert!(m.contains("token 'tpm' cannot import private keys") && m.contains("ec-p256"), "{m}");
        }
    }

    // KPS: generate (RSA-2048, the face's only generated kind), list, show, register, import.
    let kps = format!("/v3/{}/keypairs", common::tpm::KPS_PROJECT);
    let (s, v) = d.curl("POST", &kps, Some(r#"{"keypair":{"name":"gen"}}"#), &[]);
    assert_eq!(s, 200, "{v}\n{}", d.log());
    let public = v["keypair"]["public_key"].as_str().unwrap().to_string();
    assert!(public.starts_with("ssh-rsa AAAA"), "{v}");
    let (_, keys) = d.curl("GET", "/keyport/v1/keys?namespace=kps", None, &[]);
    let gen = keys["keys"].as_array().unwrap().iter().find(|k| k["name"] == "gen").cloned().unwrap_or_else(|| panic!("{keys}"));
    assert_eq!(gen["token"], tok, "{gen}");
    // Exportable wherever the namespace allows it and the token can wrap keys out.
    assert_eq!(gen["exportable"], on == On::Soft, "{gen}");
    let gen_id = gen["id"].as_str().unwrap().to_string();
    assert!(d.token_objects().contains(&gen_id));
    let (s, v) = d.curl("POST", &kps, Some(r#"{"keypair":{"name":"keep"}}"#), &[]);
    assert_eq!(s, 200, "{v}");
    std::fs::set_permissions(dir.join("p256.pem"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = std::process::Command::new("ssh-keygen").args(["-y", "-f"]).arg(dir.join("p256.pem")).output().unwrap();
    let p256_line = String::from_utf8(out.stdout).unwrap();
    assert!(p256_line.starts_with("ecdsa-sha2-nistp256 "), "{p256_line}");
    let body = json!({"keypair": {"name": "registered", "public_key": p256_line.trim()}}).to_string();
    let (s, v) = d.curl("POST", &kps, Some(&body), &[]);
    assert_eq!(s, 200, "a public key alone makes no token object, on any token: {v}");
    let body = json!({"keypair": {"name": "imp", "key_protection": {"private_key": p256, "encryption": {"type": "default"}}}}).to_string();
    let (s, v) = d.curl("POST", &format!("{kps}/private-key/import"), Some(&body), &[]);
    match on {
        On::Soft => assert_eq!(s, 200, "{v}"),
        On::Tpm => {
            assert_eq!((s, v["error_code"].as_str()), (400, Some("KPS.0002")), "{v}");
            assert!(v["error_msg"].as_str().unwrap().contains("token 'tpm' cannot import private keys"), "{v}");
        }
    }
    let (s, v) = d.curl("GET", &kps, None, &[]);
    assert_eq!(s, 200, "{v}");
    let names: Vec<&str> = v["keypairs"].as_array().unwrap().iter().map(|k| k["keypair"]["name"].as_str().unwrap()).collect();
    let want: &[&str] = if on == On::Soft { &["gen", "imp", "keep", "registered"] } else { &["gen", "keep", "registered"] };
    assert_eq!(names, want, "{v}");
    let (s, v) = d.curl("GET", &format!("{kps}/gen"), None, &[]);
    assert_eq!((s, v["keypair"]["public_key"].as_str()), (200, Some(public.as_str())), "{v}");
    assert_eq!(v["keypair"]["is_key_protection"], true, "{v}");
    let (s, v) = d.curl("POST", &format!("{kps}/private-key/export"), Some(r#"{"keypair":{"name":"gen"}}"#), &[]);
    match on {
        On::Soft => {
            assert!(s == 200 && v["keypair"]["private_key"].as_str().unwrap().starts_with("-----BEGIN RSA PRIVATE KEY-----"), "{v}")
        }
        On::Tpm => {
            assert_eq!(s, 403, "{v}");
            assert!(v["error_msg"].as_str().unwrap().contains("not exportable on this token"), "the core's words: {v}");
        }
    }
    let (s, v) = d.curl("DELETE", &format!("{kps}/gen"), None, &[]);
    assert_eq!(s, 204, "{v}");
    assert!(!d.token_objects().contains(&gen_id), "the key pair's objects left the token");

    // 004: deploy to the environment on this token.
    let deploy = |name: &str, key_type: &str, content: &[u8]| {
        let body = json!({"name": name, "keyType": key_type, "cryptoKeyInfoEnvironmentList": [{"environmentName": "Production", "content": b64(content)}]});
        d.curl("POST", common::tpm::APIOPS_KEYS, Some(&body.to_string()), &[])
    };
    let (s, v) = deploy("api-public", "PUBLIC_KEY", &rsa_spki);
    assert_eq!((s, v["success"].as_bool()), (200, Some(true)), "an RSA public key object, on either token: {v}\n{}", d.log());
    for (name, key_type, content, why) in [
        ("api-private", "PRIVATE_KEY", rsa.clone(), "cannot import private keys"),
        ("api-secret", "SECRET_KEY", vec![7u8; 32], "cannot import secret keys"),
    ] {
        let (s, v) = deploy(name, key_type, &content);
        match on {
            On::Soft => assert_eq!((s, v["success"].as_bool()), (200, Some(true)), "{name}: {v}"),
            On::Tpm => {
                assert_eq!((s, v["status"].as_str()), (400, Some("FAILURE")), "{name}: {v}");
                let m = v["resultMessage"].as_str().unwrap();
                assert!(m.contains(&format!("token 'tpm' {why}")), "{name}: {m}");
            }
        }
    }
    let (s, v) = d.curl("GET", common::tpm::APIOPS_KEYS, None, &[]);
    assert_eq!(s, 200, "{v}");
    let deployed = v["resultCount"].as_u64().unwrap();
    assert_eq!(deployed, if on == On::Soft { 3 } else { 1 }, "refusals wrote nothing: {v}");
    if on == On::Tpm {
        // What is in the TPM now: the KPS key pair `keep` and the 004 public key, no more.
        let after = d.token_objects();
        let new: Vec<_> = object_blocks(&after).into_iter().filter(|o| !objects_before.contains(&o.2)).map(|o| (o.0, o.1)).collect();
        assert_eq!(new.len(), 3, "keep (private, public) and api-public: {new:?}");
        assert!(new.iter().any(|(kind, label)| kind.starts_with("Public Key Object; RSA 2048") && label == "api-public"), "{new:?}");
    }

    // TLS Protect Cloud: a two-item import job, each item imported or failed on its own.
    let edge = common::tlspc::edge(&d);
    let job = common::tlspc::submit(&d, &common::tlspc::body(&d, &edge, &["job-a", "job-b"]));
    let job = common::tlspc::wait_finished(&d, &job, Duration::from_secs(60));
    assert_eq!(job["status"], "COMPLETED", "per-item results inside a COMPLETED job: {job}");
    for r in job["results"].as_array().unwrap() {
        match on {
            On::Soft => assert_eq!(r["status"], "IMPORTED", "{job}"),
            On::Tpm => {
                assert_eq!(r["status"], "FAILED", "{job}");
                assert!(r["reason"].as_str().unwrap().contains("token 'tpm' cannot import private keys"), "{job}");
            }
        }
    }

    // The metrics count this token's operations by name.
    let (_, m) = d.curl("GET", "/keyport/v1/metrics", None, &[]);
    let m = m.as_str().unwrap_or_default().to_string();
    let line = format!("keyport_token_operations_total{{token=\"{tok}\",op=\"generate\",result=\"ok\"}} 2");
    assert!(m.contains(&line), "{line} in:\n{m}");
    let imports = format!("keyport_token_operations_total{{token=\"{tok}\",op=\"import\",result=\"ok\"}} 4");
    assert_eq!(m.contains(&imports), on == On::Soft, "native, KPS and two job imports on SoftHSM, none on the TPM:\n{m}");
    let exported = m.contains(&format!("keyport_token_operations_total{{token=\"{tok}\",op=\"export\",result=\"ok\"}} 1"));
    assert_eq!(exported, on == On::Soft, "the KPS export: {m}");

    // A restart: what each face made is still in the token, listed and usable.
    let keep_id = {
        let (_, keys) = d.curl("GET", "/keyport/v1/keys?namespace=kps", None, &[]);
        keys["keys"].as_array().unwrap().iter().find(|k| k["name"] == "keep").unwrap()["id"].as_str().unwrap().to_string()
    };
    assert!(d.stop().success());
    d.spawn();
    let (s, v) = d.curl("GET", &format!("{kps}/keep"), None, &[]);
    assert_eq!((s, v["keypair"]["is_key_protection"].as_bool()), (200, Some(true)), "{v}");
    assert_eq!(status_of(&d, &keep_id)["status"], "active");
    assert_eq!(sign(&d, &keep_id).0, 200, "the KPS key pair signs in place after the restart");
    let (s, v) = d.curl("GET", common::tpm::APIOPS_KEYS, None, &[]);
    assert_eq!((s, v["resultCount"].as_u64()), (200, Some(deployed)), "{v}");
    let (_, keys) = d.curl("GET", "/keyport/v1/keys?namespace=web", None, &[]);
    for k in keys["keys"].as_array().unwrap() {
        assert_eq!((k["token"].as_str(), k["status"].as_str()), (Some(tok), Some("active")), "{k}");
    }
}

#[test]
fn faces_on_softhsm() {
    faces(On::Soft);
}

#[test]
fn faces_on_tpm() {
    faces(On::Tpm);
}
