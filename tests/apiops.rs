//! The project-key face (seed 004), driven over HTTPS with curl the way the vendor documents
//! it: keys made by openssl (and random secret bytes), two environments = two SoftHSM tokens,
//! every object checked with pkcs11-tool in each token.

mod common;
use base64::Engine;
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

const OPS: &str = "Authorization: Bearer ops-key";
const BASE: &str = "/apiops/projects/MyProject/keys/";

fn tools() {
    require("curl");
    require("openssl");
    require("pkcs11-tool");
    require("python3");
}

/// Two tokens (Production = "soft", label test; Test = "soft2", label second) and principals:
/// ops (manage, deploy, import, export-private), viewer (read), manager (manage only).
fn extra(d: &Path, exportable: bool) -> String {
    format!(
        r#"
[[tokens]]
name = "soft2"
module = "{module}"
label = "second"
pin = {{ file = "{pin2}" }}
softhsm = {{ dir = "{hsm}" }}

[[principals]]
name = "root"
uids = [TEST_UID]
permissions = {{ "*" = ["admin"] }}

[[principals]]
name = "ops"
api_key_sha256 = ["{ops}"]
permissions = {{ web = ["manage", "deploy", "import", "export-private"] }}

[[principals]]
name = "viewer"
api_key_sha256 = ["{viewer}"]
permissions = {{ web = ["read"] }}

[[principals]]
name = "manager"
api_key_sha256 = ["{manager}"]
permissions = {{ web = ["manage"] }}

# export-file has no passphrase: plain exports must be allowed for it to export (issue 11).
[namespaces.web]
allow_unencrypted_export = true

[apiops]
exportable = {exportable}
[apiops.projects.MyProject]
namespace = "web"
[apiops.environments]
Production = "soft"
Test = "soft2"
"#,
        module = softhsm_module().display(),
        pin2 = d.join("pin2").display(),
        hsm = d.join("softhsm").display(),
        ops = sha256_hex("ops-key"),
        viewer = sha256_hex("viewer-key"),
        manager = sha256_hex("manager-key"),
    )
}

fn start(exportable: bool, env: &[(&str, &str)]) -> Daemon {
    let mut d = Daemon::config("");
    let text = std::fs::read_to_string(&d.config).unwrap();
    // Replace the harness's principals with this face's (the harness adds its own only when
    // `extra` has none, and `extra` needs the daemon's folder).
    let cut = text.find("\n[[principals]]").unwrap();
    std::fs::write(&d.config, format!("{}\n{}", &text[..cut], extra(d.dir.path(), exportable))).unwrap();
    for (k, v) in env {
        d.env.push((k.to_string(), v.to_string()));
    }
    d.spawn();
    d
}

/// pkcs11-tool's object list of one token: (kind line, label, ID) per object.
fn objects(d: &Daemon, label: &str) -> Vec<(String, String, String)> {
    let pin_file = if label == "test" { "pin" } else { "pin2" };
    let pin = std::fs::read_to_string(d.dir.path().join(pin_file)).unwrap().trim().to_string();
    let out = Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", d.softhsm_conf())
        .arg("--module")
        .arg(softhsm_module())
        .args(["--token-label", label, "--login", "--pin", &pin, "--list-objects"])
        .output()
        .unwrap();
    assert!(out.status.success(), "pkcs11-tool: {}", String::from_utf8_lossy(&out.stderr));
    object_blocks(&String::from_utf8_lossy(&out.stdout))
}

fn named(d: &Daemon, token_label: &str, name: &str) -> Vec<String> {
    objects(d, token_label).into_iter().filter(|o| o.1 == name).map(|o| o.0).collect()
}

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// `openssl rand`: secret key bytes.
fn random(dir: &Path, n: usize) -> Vec<u8> {
    openssl(dir, &["rand", &n.to_string()])
}

/// An RSA key: (PKCS#8 PEM, PKCS#1 DER, SPKI PEM).
fn rsa(dir: &Path, name: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let key = format!("{name}.pem");
    openssl(dir, &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", &key]);
    let pkcs1 = openssl(dir, &["rsa", "-in", &key, "-traditional", "-outform", "DER"]);
    let spki = openssl(dir, &["pkey", "-in", &key, "-pubout"]);
    (std::fs::read(dir.join(&key)).unwrap(), pkcs1, spki)
}

fn create(d: &Daemon, body: &Value, auth: &str) -> (u16, Value) {
    let f = d.dir.path().join("body.json");
    std::fs::write(&f, body.to_string()).unwrap();
    d.curl_https("POST", BASE, Some(&format!("@{}", f.display())), &["-H", auth])
}

fn env(name: &str, content: &[u8]) -> Value {
    json!({"environmentName": name, "content": b64(content)})
}

/// Downloads to a file; the HTTP status.
fn download(d: &Daemon, path: &str, out: &Path, auth: &str) -> u16 {
    let o = Command::new("curl")
        .args(["-sS", "-o"])
        .arg(out)
        .args(["-w", "%{http_code}", "--cacert"])
        .arg(d.dir.path().join("state/tls-cert.pem"))
        .args(["-H", auth])
        .arg(format!("https://127.0.0.1:{}{path}", d.port))
        .output()
        .unwrap();
    assert!(o.status.success());
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

fn total_objects(d: &Daemon) -> (usize, usize) {
    (objects(d, "test").len(), objects(d, "second").len())
}

#[test]
fn every_key_type_deploys_to_two_environments_and_exports_back() {
    tools();
    let d = start(true, &[]);
    let dir = d.dir.path().join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    let (pkcs8_pem, pkcs1_der, spki_pem) = rsa(&dir, "rsa");
    let (aes, des, des3) = (random(&dir, 32), random(&dir, 8), random(&dir, 24));
    let cases: Vec<(&str, Value, &str)> = vec![
        ("aes-key", json!({"keyType": "SECRET_KEY", "algorithm": "AES"}), "AES"),
        ("des-key", json!({"keyType": "SECRET_KEY"}), "DES"),
        ("des3-key", json!({"keyType": "SECRET_KEY", "algorithm": "DESede"}), "DESede"),
        ("rsa-private", json!({"keyType": "PRIVATE_KEY"}), "RSA"),
        ("rsa-private-der", json!({"keyType": "PRIVATE_KEY", "algorithm": "RSA"}), "RSA"),
        ("rsa-public", json!({"keyType": "PUBLIC_KEY"}), "RSA"),
    ];
    let material: Vec<&[u8]> = vec![&aes, &des, &des3, &pkcs8_pem, &pkcs1_der, &spki_pem];
    for ((name, base, _), m) in cases.iter().zip(&material) {
        let mut body = base.clone();
        body["name"] = json!(name);
        body["description"] = json!(format!("{name} for the gateway"));
        body["cryptoKeyInfoEnvironmentList"] = json!([env("Production", m), {"environmentName": "Test", "content": b64(m), "alias": "t1"}]);
        let (s, v) = create(&d, &body, OPS);
        assert_eq!(s, 200, "{name}: {v}\n{}", d.log());
        assert_eq!(v["success"], true);
        assert_eq!(v["deploymentResult"]["message"], "Deployment completed successfully");
        let envs: Vec<_> = v["deploymentResult"]["environmentResults"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["environmentName"].as_str().unwrap().to_string(), e["success"].as_bool().unwrap()))
            .collect();
        assert_eq!(envs, vec![("Production".to_string(), true), ("Test".to_string(), true)], "{v}");
    }

    // In each token, under the key's name: secret keys of the right type, key pairs, a public key.
    for label in ["test", "second"] {
        let aes = named(&d, label, "aes-key");
        assert!(aes.len() == 1 && aes[0].starts_with("Secret Key Object; AES length 32"), "{label}: {aes:?}");
        let des = named(&d, label, "des-key");
        assert!(des.len() == 1 && des[0].starts_with("Secret Key Object; DES "), "{label}: {des:?}");
        let des3 = named(&d, label, "des3-key");
        assert!(des3.len() == 1 && des3[0].starts_with("Secret Key Object; DES3"), "{label}: {des3:?}");
        for n in ["rsa-private", "rsa-private-der"] {
            let mut kinds = named(&d, label, n);
            kinds.sort();
            assert!(
                kinds.len() == 2 && kinds[0].starts_with("Private Key Object; RSA") && kinds[1].starts_with("Public Key Object; RSA 2048"),
                "{label} {n}: {kinds:?}"
            );
        }
        let public = named(&d, label, "rsa-public");
        assert!(public.len() == 1 && public[0].starts_with("Public Key Object; RSA 2048"), "{label}: {public:?}");
    }
    for s in named(&d, "test", "aes-key") {
        assert!(s.contains("sensitive") && s.contains("extractable"), "secret keys are sensitive, extractable as configured: {s}");
    }

    // List and get: metadata, never content.
    let (s, v) = d.curl_https("GET", BASE, None, &["-H", "Authorization: Bearer viewer-key"]);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "SUCCESS");
    assert_eq!(v["resultCount"], 6);
    let text = v.to_string();
    assert!(!text.contains(&b64(&aes)) && !text.contains("BEGIN"), "no material in listings");
    for ((name, _, alg), k) in cases.iter().zip(v["resultList"].as_array().unwrap()) {
        assert_eq!(k["name"], *name);
        assert_eq!(k["algorithm"], *alg, "{k}");
        assert!(k["id"].as_str().unwrap().len() == 24 && k["projectId"].is_string());
        assert_eq!(k["cryptoKeyInfoEnvironmentList"][1], json!({"environmentName": "Test", "alias": "t1", "source": "TEXT"}));
        assert!(k["cryptoKeyInfoEnvironmentList"][0].get("content").is_none());
    }
    let (s, v) = d.curl_https("GET", &format!("{BASE}des-key/"), None, &["-H", OPS]);
    assert_eq!(s, 200);
    assert_eq!(v["resultList"][0]["keyType"], "SECRET_KEY");
    assert_eq!(v["resultList"][0]["description"], "des-key for the gateway");
    let (s, v) = d.curl_https("GET", "/apiops/projects/MyProject/keys/des-key", None, &["-H", OPS]);
    assert_eq!(s, 200, "the form without the trailing slash works too: {v}");

    // export-file: one environment's file, or a ZIP of all.
    let out = dir.join("dl");
    assert_eq!(download(&d, &format!("{BASE}aes-key/export-file/?environmentName=Test"), &out, OPS), 200);
    assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), b64(&aes), "the secret comes back byte for byte");
    assert_eq!(download(&d, &format!("{BASE}des3-key/export-file/?environmentName=Production"), &out, OPS), 200);
    assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), b64(&des3));
    assert_eq!(download(&d, &format!("{BASE}rsa-public/export-file/?environmentName=Production"), &out, OPS), 200);
    assert_eq!(std::fs::read(&out).unwrap(), spki_pem, "the public key as openssl writes it");
    assert_eq!(download(&d, &format!("{BASE}rsa-private-der/export-file/?environmentName=Test"), &out, OPS), 200);
    let exported_pub = openssl(&dir, &["pkey", "-in", out.to_str().unwrap(), "-pubout"]);
    assert_eq!(exported_pub, spki_pem, "the exported private key is the imported one");
    assert_eq!(download(&d, &format!("{BASE}rsa-private/export-file/"), &out, OPS), 200);
    let listing = Command::new("python3")
        .args(["-c", "import sys,zipfile; z=zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print(' '.join(sorted(z.namelist()))); print(z.read('rsa-private-Test.pem').decode())"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(listing.status.success(), "{}", String::from_utf8_lossy(&listing.stderr));
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.starts_with("rsa-private-Production.pem rsa-private-Test.pem\n-----BEGIN PRIVATE KEY-----"), "{listing}");
    assert_eq!(download(&d, &format!("{BASE}aes-key/export-file/?environmentName=Staging"), &out, OPS), 400);
    let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(v["resultMessage"], "(aes-key) has no material for environment (Staging)! Available: Production, Test");
    assert_eq!(
        download(&d, &format!("{BASE}aes-key/export-file/?environmentName=Test"), &out, "Authorization: Bearer viewer-key"),
        403,
        "export needs export-private"
    );
    assert_eq!(
        download(&d, &format!("{BASE}rsa-public/export-file/?environmentName=Test"), &out, "Authorization: Bearer viewer-key"),
        200,
        "a public key does not"
    );

    // A restart keeps everything (reconciliation knows secret-key-only rows are whole).
    let mut d = d;
    assert!(d.stop().success());
    d.spawn();
    let (_, v) = d.curl_https("GET", BASE, None, &["-H", OPS]);
    assert_eq!(
        v["resultCount"],
        6,
        "{v}\n{}",
        d.log().lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect::<Vec<_>>().join("\n")
    );

    // Delete: undeployed from both tokens.
    for (name, _, _) in &cases {
        let (s, v) = d.curl_https("DELETE", &format!("{BASE}{name}/"), None, &["-H", OPS]);
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["deploymentResult"]["message"], "Undeployment completed successfully");
        assert_eq!(v["deploymentResult"]["environmentResults"][1]["message"], "Undeployed successfully");
        assert!(named(&d, "test", name).is_empty() && named(&d, "second", name).is_empty(), "{name} gone from both tokens");
    }
    let (_, v) = d.curl_https("GET", BASE, None, &["-H", OPS]);
    assert_eq!(v["resultCount"], 0);
    let (_, keys) = d.curl("GET", "/keyport/v1/keys", None, &[]);
    assert!(keys["keys"].as_array().unwrap().is_empty(), "no inventory rows left: {keys}");
}

#[test]
fn bad_requests_and_refusals_leave_nothing_in_any_token() {
    tools();
    let d = start(false, &[]);
    let dir = d.dir.path().join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    let (pkcs8_pem, _, spki_pem) = rsa(&dir, "rsa");
    let aes = random(&dir, 16);
    let before = total_objects(&d);
    let body = |key_type: &str, alg: Option<&str>, envs: Value| {
        let mut b = json!({"name": "k1", "keyType": key_type, "cryptoKeyInfoEnvironmentList": envs});
        if let Some(a) = alg {
            b["algorithm"] = json!(a);
        }
        b
    };
    let failures: Vec<(Value, &str, &str)> = vec![
        (
            body("SECRET_KEY", Some("AES"), json!([env("Production", &aes), env("Staging", &aes)])),
            OPS,
            "Environment (Staging) is not found",
        ),
        (
            body("SECRET_KEY", Some("AES"), json!([env("Production", &aes), {"environmentName": "Test", "content": "%%% not base64 %%%"}])),
            OPS,
            "neither PEM nor valid Base64",
        ),
        (body("PUBLIC_KEY", None, json!([env("Production", &pkcs8_pem)])), OPS, "it is a private key"),
        (body("PRIVATE_KEY", None, json!([env("Production", &spki_pem)])), OPS, "it is a public key"),
        (body("SECRET_KEY", None, json!([env("Production", &pkcs8_pem)])), OPS, "does not match the content"),
        (body("SECRET_KEY", Some("DES"), json!([env("Production", &aes)])), OPS, "A DES key is 8 bytes"),
        (body("SECRET_KEY", None, json!([env("Production", &random(&dir, 24))])), OPS, "algorithm is required for SECRET_KEY"),
        (body("SECRET_KEY", Some("aes"), json!([env("Production", &aes)])), OPS, "Unknown algorithm (aes)!"),
        (
            body("RSA", None, json!([env("Production", &aes)])),
            OPS,
            "Unknown keyType (RSA)! Supported values: SECRET_KEY, PRIVATE_KEY, PUBLIC_KEY",
        ),
        (body("PRIVATE_KEY", Some("AES"), json!([env("Production", &pkcs8_pem)])), OPS, "does not fit keyType PRIVATE_KEY"),
        (body("SECRET_KEY", Some("AES"), json!([])), OPS, "cryptoKeyInfoEnvironmentList value can not be empty!"),
        (body("SECRET_KEY", Some("AES"), json!([env("Production", &aes), env("Production", &aes)])), OPS, "listed more than once"),
    ];
    for (b, auth, want) in &failures {
        let (s, v) = create(&d, b, auth);
        assert_eq!(s, 400, "{b}: {v}");
        assert_eq!(v["status"], "FAILURE");
        assert!(v["resultMessage"].as_str().unwrap().contains(want), "want '{want}': {v}");
    }
    // Credentials and permissions.
    let ok = body("SECRET_KEY", Some("AES"), json!([env("Production", &aes), env("Test", &aes)]));
    let (s, v) = create(&d, &ok, "Authorization: Bearer wrong");
    assert_eq!((s, v["resultMessage"].as_str()), (401, Some("Token is not valid!")));
    let (s, _) = create(&d, &ok, "X-Nothing: 1");
    assert_eq!(s, 401, "no token over TCP");
    let (s, v) = create(&d, &ok, "Authorization: Bearer viewer-key");
    assert_eq!(s, 403, "{v}");
    assert!(v["resultMessage"].as_str().unwrap().contains("'manage'"), "{v}");
    let (s, v) = create(&d, &ok, "Authorization: Bearer manager-key");
    assert_eq!(s, 403, "deploying needs deploy too: {v}");
    assert!(v["resultMessage"].as_str().unwrap().contains("'deploy'"), "{v}");
    let f = d.dir.path().join("body.json");
    let (s, v) = d.curl_https("POST", "/apiops/projects/Other/keys/", Some(&format!("@{}", f.display())), &["-H", OPS]);
    assert_eq!((s, v["resultMessage"].as_str()), (400, Some("Project (name: Other) is not found!")));
    assert_eq!(total_objects(&d), before, "nothing reached either token");

    // The good one, then a duplicate name (in any environment) is refused and changes nothing.
    let (s, v) = create(&d, &ok, OPS);
    assert_eq!(s, 200, "{v}\n{}", d.log());
    let after = total_objects(&d);
    assert_eq!(after, (before.0 + 1, before.1 + 1));
    let dup = body("SECRET_KEY", Some("AES"), json!([env("Test", &random(&dir, 32))]));
    let (s, v) = create(&d, &dup, OPS);
    assert_eq!(s, 400);
    assert_eq!(v["resultMessage"], "Key (name: k1) is already exist! Try update operation if want to change its value.");
    assert_eq!(total_objects(&d), after);
    // Not exportable (the face's `exportable = false`): export-file is refused, nothing leaks.
    let out = d.dir.path().join("dl");
    assert_eq!(download(&d, &format!("{BASE}k1/export-file/?environmentName=Test"), &out, OPS), 403);
    assert!(std::fs::read_to_string(&out).unwrap().contains("non-exportable"));
    for (label, _) in [("test", 0), ("second", 1)] {
        let k = named(&d, label, "k1");
        assert!(k[0].contains("sensitive") && !k[0].contains("extractable"), "{label}: {k:?}");
    }
    // Reads: missing key, viewer may read, a stranger may not; manager may not delete (undeploy).
    let (s, v) = d.curl_https("GET", &format!("{BASE}nope/"), None, &["-H", OPS]);
    assert_eq!((s, v["resultMessage"].as_str()), (400, Some("Key (name: nope) is not found!")));
    let (s, _) = d.curl_https("GET", &format!("{BASE}k1/"), None, &["-H", "Authorization: Bearer viewer-key"]);
    assert_eq!(s, 200);
    let (s, _) = d.curl_https("GET", &format!("{BASE}k1/"), None, &["-H", "Authorization: Bearer tlspc-key"]);
    assert_eq!(s, 401, "not a principal of this config");
    let (s, _) = d.curl_https("DELETE", &format!("{BASE}k1/"), None, &["-H", "Authorization: Bearer manager-key"]);
    assert_eq!(s, 403);
    assert_eq!(total_objects(&d), after);
}

#[test]
fn a_failure_in_the_second_environment_rolls_back_the_first() {
    tools();
    let d = start(false, &[("KEYPORT_TEST_FAIL_CREATE_SUFFIX", "@Test")]);
    let dir = d.dir.path().join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    let (pkcs8_pem, _, _) = rsa(&dir, "rsa");
    for (name, key_type, m) in [("rb-secret", "SECRET_KEY", random(&dir, 32)), ("rb-private", "PRIVATE_KEY", pkcs8_pem.clone())] {
        let before = total_objects(&d);
        let b = json!({"name": name, "keyType": key_type, "cryptoKeyInfoEnvironmentList": [env("Production", &m), env("Test", &m)]});
        let (s, v) = create(&d, &b, OPS);
        assert_eq!(s, 400, "{v}");
        assert!(v["resultMessage"].as_str().unwrap().contains("Deployment to environment (Test) failed"), "{v}");
        assert_eq!(total_objects(&d), before, "{name}: nothing left in either token");
        let (_, v) = d.curl_https("GET", &format!("{BASE}{name}/"), None, &["-H", OPS]);
        assert_eq!(v["status"], "FAILURE", "{v}");
        // The name is free again: the same key deploys where the hook does not fire.
        let b = json!({"name": name, "keyType": key_type, "cryptoKeyInfoEnvironmentList": [env("Production", &m)]});
        let (s, v) = create(&d, &b, OPS);
        assert_eq!(s, 200, "{v}");
        assert!(!named(&d, "test", name).is_empty());
    }
    let (_, keys) = d.curl("GET", "/keyport/v1/keys", None, &[]);
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2, "only the two good deployments are in the inventory: {keys}");
}

#[test]
fn update_deploys_replaces_and_undeploys_and_import_file_uploads() {
    tools();
    let d = start(true, &[]);
    let dir = d.dir.path().join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (random(&dir, 16), random(&dir, 16));
    let (s, v) = create(
        &d,
        &json!({"name": "k", "keyType": "SECRET_KEY", "algorithm": "AES", "cryptoKeyInfoEnvironmentList": [env("Production", &a)]}),
        OPS,
    );
    assert_eq!(s, 200, "{v}");
    let put = |body: Value, auth: &str| {
        let f = d.dir.path().join("put.json");
        std::fs::write(&f, body.to_string()).unwrap();
        d.curl_https("PUT", &format!("{BASE}k/"), Some(&format!("@{}", f.display())), &["-H", auth])
    };
    // Description only: no deploy permission needed, nothing deployed.
    let (s, v) = put(json!({"description": "rotated monthly"}), "Authorization: Bearer manager-key");
    assert_eq!(s, 200, "{v}");
    // Add Test: deployed there.
    let (s, v) = put(
        json!({"cryptoKeyInfoEnvironmentList": [{"environmentName": "Production"}, env("Test", &b)]}),
        "Authorization: Bearer manager-key",
    );
    assert_eq!(s, 403, "deploying needs deploy: {v}");
    let (s, v) = put(json!({"cryptoKeyInfoEnvironmentList": [{"environmentName": "Production", "alias": "p"}, env("Test", &b)]}), OPS);
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["deploymentResult"]["environmentResults"],
        json!([{"environmentName": "Test", "success": true, "message": "Deployed successfully"}])
    );
    assert_eq!(named(&d, "second", "k").len(), 1);
    let out = dir.join("dl");
    assert_eq!(download(&d, &format!("{BASE}k/export-file/?environmentName=Test"), &out, OPS), 200);
    assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), b64(&b));
    // Replace Production's material: one object still, the new value.
    let old_id = objects(&d, "test").into_iter().find(|o| o.1 == "k").unwrap().2;
    let (s, v) = put(
        json!({"name": "k", "keyType": "SECRET_KEY", "cryptoKeyInfoEnvironmentList": [env("Production", &b), {"environmentName": "Test"}]}),
        OPS,
    );
    assert_eq!(s, 200, "{v}");
    let now: Vec<_> = objects(&d, "test").into_iter().filter(|o| o.1 == "k").collect();
    assert!(now.len() == 1 && now[0].2 != old_id, "replaced under a new ID: {now:?}");
    assert_eq!(download(&d, &format!("{BASE}k/export-file/?environmentName=Production"), &out, OPS), 200);
    assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), b64(&b));
    // Undeploy Production by leaving it out.
    let (s, v) = put(json!({"cryptoKeyInfoEnvironmentList": [{"environmentName": "Test"}]}), OPS);
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["deploymentResult"]["environmentResults"],
        json!([{"environmentName": "Production", "success": true, "message": "Undeployed successfully"}])
    );
    assert!(named(&d, "test", "k").is_empty());
    assert_eq!(named(&d, "second", "k").len(), 1);
    let (_, v) = d.curl_https("GET", &format!("{BASE}k/"), None, &["-H", OPS]);
    assert_eq!(v["resultList"][0]["description"], "rotated monthly");
    assert_eq!(v["resultList"][0]["cryptoKeyInfoEnvironmentList"], json!([{"environmentName": "Test", "alias": null, "source": "TEXT"}]));
    // Immutable: name, keyType, algorithm.
    for (body, want) in [
        (json!({"name": "other"}), "can not be changed"),
        (json!({"keyType": "PUBLIC_KEY"}), "can not be changed"),
        (json!({"algorithm": "DES"}), "can not be changed"),
        (json!({"cryptoKeyInfoEnvironmentList": [env("Test", &random(&dir, 8))]}), "A AES key is 16, 24 or 32 bytes"),
    ] {
        let (s, v) = put(body, OPS);
        assert_eq!(s, 400, "{v}");
        assert!(v["resultMessage"].as_str().unwrap().contains(want), "{v}");
    }

    // import-file: a PEM file to two environments, as the vendor's curl example sends it.
    let (pkcs8_pem, _, spki_pem) = rsa(&dir, "up");
    let upload = |extra: &[&str], auth: &str| {
        let mut c = Command::new("curl");
        c.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert"]).arg(d.dir.path().join("state/tls-cert.pem")).args(["-H", auth]);
        c.arg("-F").arg(format!("keyFile=@{}", dir.join("up.pem").display()));
        for f in extra {
            c.args(["-F", f]);
        }
        c.arg(format!("https://127.0.0.1:{}{BASE}import-file/", d.port));
        parse_curl(c.output().unwrap())
    };
    let (s, v) = upload(&["keyName=signing-key", "keyType=PRIVATE_KEY", "environmentList=Production,Test", "keyDescription=uploaded"], OPS);
    assert_eq!((s, &v), (200, &json!({"status": "SUCCESS"})), "{}", d.log());
    for label in ["test", "second"] {
        assert_eq!(named(&d, label, "signing-key").len(), 2, "{label}");
    }
    let (s, v) = upload(&["keyName=signing-key", "keyType=PRIVATE_KEY", "environmentList=Production"], OPS);
    assert_eq!(s, 400);
    assert_eq!(v["resultMessage"], "Key (name: signing-key) is already exist! Send override=true to update it.");
    let (s, v) = upload(&["keyName=new-key", "keyType=PRIVATE_KEY", "environmentList=Production", "override=true"], OPS);
    assert_eq!((s, v["resultMessage"].as_str()), (400, Some("Key (name: new-key) is not found!")));
    let (s, v) = upload(&["keyName=x", "keyType=PRIVATE_KEY", "environmentList="], OPS);
    assert_eq!((s, v["resultMessage"].as_str()), (400, Some("environmentList value can not be empty!")));
    let (s, v) = upload(&["keyName=x", "keyType=PUBLIC_KEY", "environmentList=Test"], OPS);
    assert_eq!(s, 400);
    assert!(v["resultMessage"].as_str().unwrap().contains("it is a private key"), "{v}");
    let (s, _) = upload(&["keyName=x", "keyType=PRIVATE_KEY", "environmentList=Test"], "Authorization: Bearer manager-key");
    assert_eq!(s, 403, "import-file needs import + deploy");
    // override=true writes the new material where named and keeps the other environment.
    openssl(&dir, &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "up.pem"]);
    let (s, v) = upload(&["keyName=signing-key", "keyType=PRIVATE_KEY", "environmentList=Test", "override=true"], OPS);
    assert_eq!(s, 200, "{v}");
    assert_eq!(download(&d, &format!("{BASE}signing-key/export-file/?environmentName=Production"), &out, OPS), 200);
    assert_eq!(openssl(&dir, &["pkey", "-in", out.to_str().unwrap(), "-pubout"]), spki_pem, "Production kept the first upload");
    assert_eq!(download(&d, &format!("{BASE}signing-key/export-file/?environmentName=Test"), &out, OPS), 200);
    assert_ne!(openssl(&dir, &["pkey", "-in", out.to_str().unwrap(), "-pubout"]), spki_pem, "Test has the rotated key");
    let _ = pkcs8_pem;
    // Algorithm is case-insensitive in the form; a secret key file is the Base64 of its bytes.
    std::fs::write(dir.join("up.pem"), b64(&random(&dir, 24))).unwrap();
    let (s, v) = upload(&["keyName=form-secret", "keyType=SECRET_KEY", "algorithm=desede", "environmentList=Test"], OPS);
    assert_eq!(s, 200, "{v}");
    let k = named(&d, "second", "form-secret");
    assert!(k.len() == 1 && k[0].starts_with("Secret Key Object; DES3"), "{k:?}");
}
