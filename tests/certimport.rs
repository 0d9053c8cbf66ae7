//! The certificate import face (seed 001, DigiCert ONE IoT Trust Manager), driven the way the
//! vendor documents it: `curl -F file=@bundle.zip -H 'x-api-key: …'`. Zips are built with the
//! `zip` crate and with the system `zip` tool, certificates with openssl (and rcgen), results
//! checked in the token with pkcs11-tool.

mod common;
use common::*;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use zip::write::SimpleFileOptions;

const KEY: &str = "x-api-key: tlspc-key";

const PROFILES: &str = r#"
[[enrollment_profiles]]
id = "pem-profile"
name = "PEM profile"
namespace = "default"
source_format = "PEM"
max_entries = 20
max_uncompressed_bytes = 4194304

[[enrollment_profiles]]
id = "xml-profile"
name = "XML profile"
namespace = "default"
source_format = "XML"

[[enrollment_profiles]]
id = "est-profile"
name = "EST profile"
enrollment_method = "EST"
source_format = "PEM"
"#;

fn tools() {
    require("curl");
    require("openssl");
    require("pkcs11-tool");
    require("zip");
}

fn run(dir: &Path, prog: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(prog).current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "{prog} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn upload(d: &Daemon, profile: &str, zip: &Path) -> (u16, Value) {
    d.curl("POST", &format!("/iot/api/v1/certificate-import/{profile}"), None, &["-H", KEY, "-F", &format!("file=@{}", zip.display())])
}

fn wait_job(d: &Daemon, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let (s, v) = d.curl("GET", &format!("/iot/api/v1/certificate-import/job/{id}"), None, &["-H", KEY]);
        assert_eq!(s, 200, "{v}");
        if v["status"] == "COMPLETED" {
            return v;
        }
        assert_eq!(v["status"], "PENDING");
        assert!(start.elapsed() < Duration::from_secs(60), "job did not finish: {v}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn zip_crate(path: &Path, files: &[(&str, &[u8])]) {
    let mut w = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, data) in files {
        w.start_file(*name, SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated)).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap();
}

fn certificates(d: &Daemon, query: &str) -> Vec<Value> {
    let (s, v) = d.curl("GET", &format!("/keyport/v1/certificates{query}"), None, &[]);
    assert_eq!(s, 200, "{v}");
    v["certificates"].as_array().unwrap().clone()
}

fn cert_objects(d: &Daemon) -> Vec<(String, String, String)> {
    object_blocks(&d.pkcs11_objects()).into_iter().filter(|o| o.0.starts_with("Certificate Object") && o.1 != "keyport-tls").collect()
}

/// The vendor's job object fields, as the POST answers.
fn check_job_shape(v: &Value, profile: &str, format: &str, total: i64) {
    assert_eq!(v["status"], "PENDING", "{v}");
    assert_eq!(v["enrollment_profile"]["id"], profile);
    assert_eq!(v["format"], format);
    assert_eq!(v["total_certificates"], total);
    assert_eq!(v["failed_certificates"], 0);
    assert_eq!(v["processing_time"], 0);
    assert_eq!(v["enrollment_context"]["enrollment_method"], "CERTIFICATE_IMPORT");
    assert_eq!(v["enrollment_context"]["authorization"], "");
    let rid = v["random_id"].as_str().unwrap();
    assert!(rid.len() == 12 && rid.bytes().all(|b| b.is_ascii_digit()), "{rid}");
    assert_eq!(v["stored_file_name"], format!("certificate-import-{rid}.zip").as_str());
    assert!(v["original_size"].as_i64().unwrap() > 0);
    let id = v["id"].as_str().unwrap();
    assert!(id.len() == 36 && id.chars().filter(|c| *c == '-').count() == 4, "{id}");
    let at = v["created_at"].as_str().unwrap();
    assert!(at.len() == 27 && at.ends_with('Z') && at.as_bytes()[19] == b'.', "ISO 8601 UTC with microseconds: {at}");
}

#[test]
fn pem_zip_from_the_zip_tool_links_a_generated_key_and_keeps_the_chain() {
    tools();
    let d = Daemon::start(PROFILES);
    let w = tempfile::tempdir().unwrap();
    let dir = w.path();
    let key = d.generate("device-1", "ec-p256", false);
    let key_id = key["id"].as_str().unwrap().to_string();

    // A CA, and a certificate for the token key's public key (read out with pkcs11-tool).
    let pubder = dir.join("pub.der");
    let out = d.pkcs11_tool(&["--read-object", "--type", "pubkey", "--id", &key_id, "-o", pubder.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    run(dir, "openssl", &["pkey", "-pubin", "-inform", "DER", "-in", "pub.der", "-out", "pub.pem"]);
    run(
        dir,
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-subj",
            "/CN=Factory CA",
            "-days",
            "365",
            "-out",
            "ca.pem",
        ],
    );
    run(
        dir,
        "openssl",
        &[
            "x509",
            "-new",
            "-force_pubkey",
            "pub.pem",
            "-subj",
            "/CN=device-1",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-days",
            "30",
            "-out",
            "device-1.pem",
        ],
    );
    run(dir, "openssl", &["genpkey", "-algorithm", "ed25519", "-out", "junk.pem"]);
    run(dir, "zip", &["-q", "bundle.zip", "device-1.pem", "ca.pem", "junk.pem"]);

    let (s, v) = upload(&d, "pem-profile", &dir.join("bundle.zip"));
    assert_eq!(s, 200, "{v}");
    check_job_shape(&v, "pem-profile", "PEM", 3);
    assert_eq!(v["original_file_name"], "bundle.zip");
    let job = wait_job(&d, v["id"].as_str().unwrap());
    assert_eq!(job["total_certificates"], 3);
    assert_eq!(job["failed_certificates"], 1, "the key file fails alone: {job}");
    assert_eq!(job["result"], "PARTIAL_SUCCESS");
    let msgs: Vec<String> = serde_json::from_str(job["status_message"].as_str().unwrap()).unwrap();
    assert!(msgs.len() == 1 && msgs[0].contains("junk.pem") && msgs[0].contains("not a certificate"), "{msgs:?}");
    assert!(!job["created_at"].as_str().unwrap().contains('.'), "the job detail shows seconds");
    assert!(job["account_id"].is_string() && job["division"]["name"] == "default");

    // The certificate shares the key's CKA_ID in the token; the CA has its own.
    let objs = cert_objects(&d);
    assert_eq!(objs.len(), 2, "{objs:?}");
    assert!(objs.iter().any(|o| o.2 == key_id && o.1 == "device-1"), "certificate next to its key: {objs:?}\n{}", d.pkcs11_objects());
    assert!(objs.iter().any(|o| o.2 != key_id), "{objs:?}");
    let listed = certificates(&d, "");
    assert_eq!(listed.len(), 2);
    let leaf = listed.iter().find(|c| c["subject"] == "CN=device-1").unwrap();
    assert_eq!(leaf["key_id"], key_id.as_str());
    assert_eq!(leaf["key_name"], "device-1");
    assert_eq!(leaf["cka_id"], key_id.as_str());
    assert_eq!(leaf["issuer"], "CN=Factory CA");
    let ca = listed.iter().find(|c| c["subject"] == "CN=Factory CA").unwrap();
    assert!(ca["key_id"].is_null());

    // Expiry filter: the leaf (30 days) is expiring within 60 days, the CA (365) is not.
    let soon = certificates(&d, "?namespace=default&expiring_before=2999-01-01");
    assert_eq!(soon.len(), 2);
    let in60: String = {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 60 * 86400;
        String::from_utf8(run(dir, "date", &["-u", "-d", &format!("@{t}"), "+%Y-%m-%d"])).unwrap().trim().to_string()
    };
    let soon = certificates(&d, &format!("?expiring_before={in60}"));
    assert_eq!(soon.len(), 1, "{soon:?}");
    assert_eq!(soon[0]["subject"], "CN=device-1");
    let (s, v) = d.curl("GET", "/keyport/v1/certificates?expiring_before=tomorrow", None, &[]);
    assert_eq!(s, 400, "{v}");

    // The CLI's table and JSON.
    let out = d.command().args(["certs", "list", "--socket"]).arg(&d.socket).args(["--expiring", "60d"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("SUBJECT") && text.contains("CN=device-1") && text.contains("device-1") && !text.contains("Factory CA,"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 2, "{text}");
    let out = d.command().args(["certs", "list", "--json", "--socket"]).arg(&d.socket).args(["--expiring", "400d"]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["certificates"].as_array().unwrap().len(), 2);

    // The same upload again: duplicates are not stored twice.
    let (s, v) = upload(&d, "pem-profile", &dir.join("bundle.zip"));
    assert_eq!(s, 200, "{v}");
    let job = wait_job(&d, v["id"].as_str().unwrap());
    assert_eq!(job["failed_certificates"], 1);
    assert_eq!(cert_objects(&d).len(), 2);
    assert_eq!(certificates(&d, "").len(), 2);

    // Deleting the leaf takes its certificate object only: the key sharing its CKA_ID stays.
    let leaf_sha = leaf["sha256"].as_str().unwrap().to_string();
    let (s, v) = d.curl("DELETE", &format!("/keyport/v1/certificates/{leaf_sha}"), None, &["-H", "x-api-key: reader-key"]);
    assert_eq!(s, 403, "a reader may not delete: {v}");
    let (s, v) = d.curl("DELETE", "/keyport/v1/certificates/not-a-hash", None, &[]);
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_id")), "{v}");
    let (s, v) = d.curl("DELETE", &format!("/keyport/v1/certificates/{leaf_sha}"), None, &[]);
    assert_eq!((s, v["deleted"].as_str()), (200, Some(leaf_sha.as_str())), "{v}");
    let objs = cert_objects(&d);
    assert!(objs.len() == 1 && objs[0].2 != key_id, "only the CA's certificate object is left: {objs:?}");
    let keys_objs = object_blocks(&d.pkcs11_objects());
    assert!(keys_objs.iter().filter(|o| o.2 == key_id).count() == 2, "the key's private and public objects stay: {keys_objs:?}");
    assert_eq!(certificates(&d, "").len(), 1);
    let (s, v) = d.curl("GET", &format!("/keyport/v1/keys/{key_id}"), None, &[]);
    assert_eq!(s, 200, "the key stays: {v}");
    let (s, _) = d.curl("DELETE", &format!("/keyport/v1/certificates/{leaf_sha}"), None, &[]);
    assert_eq!(s, 404, "deleted once");
}

fn rcgen_cert(name: &str) -> Vec<u8> {
    rcgen::generate_simple_self_signed(vec![format!("{name}.example")]).unwrap().cert.der().to_vec()
}

fn b64(der: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(der)
}

#[test]
fn xml_bundle_in_the_vendor_structure_and_the_vendor_errors() {
    tools();
    let d = Daemon::start(PROFILES);
    let w = tempfile::tempdir().unwrap();
    let dir = w.path();
    let (a, b) = (rcgen_cert("a"), rcgen_cert("b"));
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<certificates>\n  <certificate><pem>{}</pem></certificate>\n  <certificate><pem>{}</pem></certificate>\n  <certificate><pem>bm90IGEgY2VydGlmaWNhdGU=</pem></certificate>\n</certificates>\n",
        b64(&a),
        b64(&b)
    );
    let z = dir.join("certificates.xml.zip");
    zip_crate(&z, &[("certificates.xml", xml.as_bytes())]);
    let (s, v) = upload(&d, "xml-profile", &z);
    assert_eq!(s, 200, "{v}");
    check_job_shape(&v, "xml-profile", "XML", 3);
    assert_eq!(v["enrollment_profile"]["name"], "XML profile");
    let job = wait_job(&d, v["id"].as_str().unwrap());
    assert_eq!((job["total_certificates"].as_i64(), job["failed_certificates"].as_i64()), (Some(3), Some(1)), "{job}");
    assert!(job["processing_time"].as_i64().unwrap() >= 0);
    assert_eq!(cert_objects(&d).len(), 2);
    let listed = certificates(&d, "?namespace=default");
    assert!(listed.iter().all(|c| c["key_id"].is_null() && c["cka_id"].is_string()), "{listed:?}");

    // The vendor's errors, in DigiCert ONE's shape.
    let err = |v: &Value| {
        (v["errors"][0]["code"].as_str().unwrap_or("").to_string(), v["errors"][0]["message"].as_str().unwrap_or("").to_string())
    };
    let pem = dir.join("pem.zip");
    zip_crate(&pem, &[("a.pem", format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", b64(&a)).as_bytes())]);
    let (s, v) = upload(&d, "xml-profile", &pem);
    assert_eq!(s, 400, "{v}");
    assert_eq!(err(&v).0, "invalid_input");
    assert!(err(&v).1.contains("set up with XML"), "{v}");
    let (s, v) = upload(&d, "est-profile", &pem);
    assert_eq!((s, err(&v).0.as_str()), (400, "invalid_input"), "{v}");
    assert!(err(&v).1.contains("Certificate Import"));
    let (s, v) = upload(&d, "nope", &pem);
    assert_eq!((s, err(&v).0.as_str()), (404, "resource_not_found"), "{v}");
    let (s, v) = d.curl_https("POST", "/iot/api/v1/certificate-import/pem-profile", None, &["-F", &format!("file=@{}", pem.display())]);
    assert_eq!((s, err(&v).0.as_str()), (401, "invalid_api_key"), "{v}");
    let (s, v) = d.curl_https(
        "POST",
        "/iot/api/v1/certificate-import/pem-profile",
        None,
        &["-H", "x-api-key: reader-key", "-F", &format!("file=@{}", pem.display())],
    );
    assert_eq!((s, err(&v).0.as_str()), (403, "access_denied"), "{v}");
    let (s, v) = d.curl("POST", "/iot/api/v1/certificate-import/pem-profile", Some("{}"), &["-H", KEY]);
    assert_eq!((s, err(&v).0.as_str()), (400, "invalid_input"), "{v}");
    let (s, v) = d.curl("POST", "/iot/api/v1/certificate-import/pem-profile", None, &["-H", KEY, "-F", "other=x"]);
    assert_eq!((s, err(&v).0.as_str()), (400, "invalid_input"), "{v}");
    assert!(err(&v).1.contains("'file'"));
    let (s, v) = d.curl("GET", "/iot/api/v1/certificate-import/job/00000000-0000-4000-8000-000000000000", None, &["-H", KEY]);
    assert_eq!((s, err(&v).0.as_str()), (404, "resource_not_found"), "{v}");
    // Over HTTPS with the key, as the vendor's clients call it.
    let (s, v) =
        d.curl_https("POST", "/iot/api/v1/certificate-import/pem-profile", None, &["-H", KEY, "-F", &format!("file=@{}", pem.display())]);
    assert_eq!(s, 200, "{v}");
    assert!(v["enrollment_context"]["ip_address"] == "127.0.0.1");
    wait_job(&d, v["id"].as_str().unwrap());
}

#[test]
fn hostile_uploads_are_refused_and_nothing_is_stored() {
    tools();
    let d = Daemon::start(PROFILES);
    let w = tempfile::tempdir().unwrap();
    let dir = w.path();
    let good = format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", b64(&rcgen_cert("good")));
    let g = good.as_bytes();
    let mut cases: Vec<(&str, std::path::PathBuf, &str, &str)> = Vec::new();
    let p = |n: &str| dir.join(n);

    // A zip bomb: 64 MiB of zeros in ~64 KiB.
    {
        let mut zw = zip::ZipWriter::new(std::fs::File::create(p("bomb.zip")).unwrap());
        zw.start_file("bomb.pem", SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated)).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            zw.write_all(&zeros).unwrap();
        }
        zw.finish().unwrap();
    }
    cases.push(("bomb", p("bomb.zip"), "pem-profile", "decompresses"));
    let names: Vec<String> = (0..21).map(|i| format!("{i}.pem")).collect();
    let many: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), g)).collect();
    zip_crate(&p("many.zip"), &many);
    cases.push(("too many entries", p("many.zip"), "pem-profile", "at most 20"));
    zip_crate(&p("dotdot.zip"), &[("a.pem", g), ("../../etc/cron.d/x.pem", g)]);
    cases.push(("dot-dot", p("dotdot.zip"), "pem-profile", "unsafe path"));
    zip_crate(&p("abs.zip"), &[("/etc/x.pem", g)]);
    cases.push(("absolute", p("abs.zip"), "pem-profile", "unsafe path"));
    {
        let mut zw = zip::ZipWriter::new(std::fs::File::create(p("link.zip")).unwrap());
        zw.start_file("a.pem", SimpleFileOptions::default()).unwrap();
        zw.write_all(g).unwrap();
        zw.add_symlink("b.pem", "/etc/passwd", SimpleFileOptions::default()).unwrap();
        zw.finish().unwrap();
    }
    cases.push(("symlink (zip crate)", p("link.zip"), "pem-profile", "symbolic link"));
    std::fs::write(p("real.pem"), g).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", p("passwd.pem")).unwrap();
    run(dir, "zip", &["-q", "-y", "toollink.zip", "real.pem", "passwd.pem"]);
    cases.push(("symlink (zip tool)", p("toollink.zip"), "pem-profile", "symbolic link"));
    run(dir, "zip", &["-q", "-P", "secret", "enc.zip", "real.pem"]);
    cases.push(("encrypted (zip tool)", p("enc.zip"), "pem-profile", "encrypted"));
    run(dir, "zip", &["-q", "inner.zip", "real.pem"]);
    run(dir, "zip", &["-q", "outer.zip", "real.pem", "inner.zip"]);
    cases.push(("nested by name", p("outer.zip"), "pem-profile", "nested"));
    let inner = std::fs::read(p("inner.zip")).unwrap();
    zip_crate(&p("disguised.zip"), &[("a.pem", g), ("b.pem", &inner)]);
    cases.push(("nested by content", p("disguised.zip"), "pem-profile", "nested"));
    zip_crate(&p("exe.zip"), &[("a.pem", g), ("run.sh", b"#!/bin/sh\n")]);
    cases.push(("unexpected file", p("exe.zip"), "pem-profile", "neither a .pem nor a .xml"));
    zip_crate(&p("doctype.zip"), &[("c.xml", b"<?xml version=\"1.0\"?><!DOCTYPE c [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><certificates><certificate><pem>&x;</pem></certificate></certificates>")]);
    cases.push(("XXE", p("doctype.zip"), "xml-profile", "DOCTYPE"));
    zip_crate(&p("entity.zip"), &[("c.xml", b"<certificates><certificate><pem>&lol;</pem></certificate></certificates>")]);
    cases.push(("entity", p("entity.zip"), "xml-profile", "entity"));
    std::fs::write(p("notzip.zip"), g).unwrap();
    cases.push(("not a zip", p("notzip.zip"), "pem-profile", "not a readable zip"));

    for (what, file, profile, needle) in &cases {
        let (s, v) = upload(&d, profile, file);
        assert_eq!(s, 400, "{what}: {v}");
        assert_eq!(v["errors"][0]["code"], "invalid_input", "{what}: {v}");
        let msg = v["errors"][0]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{what}: {msg}");
    }
    // Larger than the body limit (1 MiB in tests): 413 before the zip is read.
    let big: Vec<u8> = (0..1_200_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(p("big.zip"), &big).unwrap();
    let (s, v) = upload(&d, "pem-profile", &p("big.zip"));
    assert_eq!(s, 413, "{v}");
    assert_eq!(v["errors"][0]["code"], "payload_too_large");

    assert!(certificates(&d, "").is_empty(), "nothing stored");
    assert!(cert_objects(&d).is_empty(), "nothing in the token");
    let (_, v) = d.curl("GET", "/keyport/v1/health", None, &[]);
    assert_eq!(v["status"], "ok", "the daemon is fine: {v}");
}

#[test]
fn a_crash_between_token_and_store_neither_loses_nor_duplicates() {
    tools();
    let mut d = Daemon::config(PROFILES);
    d.env.push(("KEYPORT_TEST_PAUSE_BEFORE_COMMIT_MS".into(), "60000".into()));
    d.spawn();
    let w = tempfile::tempdir().unwrap();
    let z = w.path().join("one.zip");
    let pem = format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", b64(&rcgen_cert("crash")));
    zip_crate(&z, &[("one.pem", pem.as_bytes())]);
    let (s, v) = upload(&d, "pem-profile", &z);
    assert_eq!(s, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    // The object is in the token once keyport pauses before its commit. Waiting on the log,
    // not on pkcs11-tool: SoftHSM can lose an object's attributes written while another
    // process reads the token folder (docs/RELIABILITY.md), and the retry would then not
    // recognise the object as its own.
    let start = Instant::now();
    while !d.log().contains("test hook: pausing before the store commit") {
        assert!(start.elapsed() < Duration::from_secs(30), "{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(cert_objects(&d).len(), 1, "the certificate object is in the token before the commit");
    d.kill9();
    d.env.clear();
    d.spawn();
    let job = wait_job(&d, &id);
    assert_eq!(job["failed_certificates"], 0, "{job}");
    assert_eq!(job["result"], "SUCCESS");
    assert_eq!(cert_objects(&d).len(), 1, "the retry reuses the object left before the crash");
    assert_eq!(certificates(&d, "").len(), 1);
}

#[test]
fn a_certificate_row_whose_object_is_gone_is_removed_at_start() {
    tools();
    let mut d = Daemon::start(PROFILES);
    let w = tempfile::tempdir().unwrap();
    let z = w.path().join("two.zip");
    zip_crate(&z, &[("gone.pem", pem_of(&rcgen_cert("gone")).as_bytes()), ("kept.pem", pem_of(&rcgen_cert("kept")).as_bytes())]);
    let (s, v) = upload(&d, "pem-profile", &z);
    assert_eq!(s, 200, "{v}");
    wait_job(&d, v["id"].as_str().unwrap());
    let listed = certificates(&d, "");
    assert_eq!(listed.len(), 2, "{listed:?}");
    let gone = listed[0].clone();
    let gone_id = gone["cka_id"].as_str().unwrap().to_string();
    assert!(d.stop().success());

    // Another tool deletes one certificate object from the token.
    let out = d.pkcs11_tool(&["--delete-object", "--type", "cert", "--id", &gone_id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    d.spawn();
    let left = certificates(&d, "");
    assert_eq!(left.len(), 1, "{left:?}");
    assert_ne!(left[0]["sha256"], gone["sha256"]);
    assert!(d.log().contains("certificate_rows_removed=1"), "{}", d.log());
}

fn pem_of(der: &[u8]) -> String {
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", b64(der))
}
