//! The operator's commands: `keyport keys import` (every format, batch, passphrase file,
//! certificates), `keys show` by name, `keyport status` (like `certbot certificates`), the
//! unauthenticated liveness path, and no progress drawing when output is not a terminal.

mod common;

use common::{require, Daemon};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn keyport(d: &Daemon, args: &[&str]) -> Output {
    d.command().args(args).arg("--socket").arg(&d.socket).output().unwrap()
}

fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh").arg("-ec").arg(script).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn key_files_of_every_kind_import_and_status_shows_what_expires() {
    require("openssl");
    require("ssh-keygen");
    let d = Daemon::start("");
    let w = d.dir.path();
    std::fs::write(w.join("pass"), "correct horse\n").unwrap();
    sh(
        w,
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key -out leaf.crt -days 10 -subj /CN=soon.example 2>/dev/null
         openssl pkcs12 -export -inkey leaf.key -in leaf.crt -out leaf.p12 -passout pass:'correct horse'
         openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -aes-256-cbc -pass pass:'correct horse' -out rsa.p8.pem 2>/dev/null
         ssh-keygen -q -t ed25519 -N 'correct horse' -f id_ed25519
         echo 'not a key' > junk.pem",
    );
    // One PKCS#12 with its certificate, named after the CN.
    let path = |f: &str| w.join(f).display().to_string();
    let out = keyport(&d, &["keys", "import", &path("leaf.p12"), "--passphrase-file", &path("pass"), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &v["results"][0];
    assert_eq!(
        (r["outcome"].as_str(), r["name"].as_str(), r["algorithm"].as_str()),
        (Some("imported"), Some("soon.example"), Some("ec-p256")),
        "{v}"
    );
    // The token holds it, non-exportable (the default policy).
    let (s, k) = d.curl("GET", &format!("/keyport/v1/keys/{}", r["id"].as_str().unwrap()), None, &[]);
    assert_eq!((s, &k["exportable"]), (200, &Value::Bool(false)), "{k}");
    assert!(d.pkcs11_objects().contains(r["id"].as_str().unwrap()), "{}", d.pkcs11_objects());
    // A batch: encrypted PKCS#8 and OpenSSH import, the junk file fails, the p12 again is
    // already present: exit 4 (partial failure), and the table says which.
    let files: Vec<String> = ["rsa.p8.pem", "id_ed25519", "junk.pem", "leaf.p12"].iter().map(|f| w.join(f).display().to_string()).collect();
    let mut args = vec!["keys", "import", "--passphrase-file"];
    let pass = w.join("pass").display().to_string();
    args.push(&pass);
    args.extend(files.iter().map(String::as_str));
    let out = keyport(&d, &args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(4), "{text}{err}");
    assert!(text.lines().any(|l| l.contains("rsa.p8.pem") && l.contains("imported") && l.contains("rsa-2048")), "{text}");
    assert!(text.lines().any(|l| l.contains("id_ed25519") && l.contains("imported") && l.contains("ed25519")), "{text}");
    assert!(text.lines().any(|l| l.contains("junk.pem") && l.contains("failed")), "{text}");
    assert!(text.lines().any(|l| l.contains("leaf.p12") && l.contains("already present")), "{text}");
    // No progress drawing when output is not a terminal.
    assert!(!err.contains('\r') && !err.contains('\u{1b}'), "{err:?}");
    // A wrong passphrase changes nothing and says so.
    std::fs::write(w.join("wrong"), "nope\n").unwrap();
    let before = d.curl("GET", "/keyport/v1/keys", None, &[]).1["keys"].as_array().unwrap().len();
    let out = keyport(
        &d,
        &["keys", "import", w.join("rsa.p8.pem").to_str().unwrap(), "--passphrase-file", w.join("wrong").to_str().unwrap(), "--name", "x"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("pass"), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(d.curl("GET", "/keyport/v1/keys", None, &[]).1["keys"].as_array().unwrap().len(), before);

    // keys show by name.
    let out = keyport(&d, &["keys", "show", "soon.example"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains(r["id"].as_str().unwrap()), "{text}");

    // keys pubkey: an authorized_keys line ssh-keygen reads, and PEM openssl reads.
    let out = keyport(&d, &["keys", "pubkey", "soon.example"]);
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && line.starts_with("ecdsa-sha2-nistp256 ") && line.trim_end().ends_with(" default/soon.example"),
        "{line}"
    );
    std::fs::write(w.join("k.pub"), &line).unwrap();
    sh(w, "ssh-keygen -lf k.pub >/dev/null");
    let out = keyport(&d, &["keys", "pubkey", "soon.example", "--pem"]);
    std::fs::write(w.join("k.pem"), &out.stdout).unwrap();
    sh(w, "openssl pkey -pubin -in k.pem -noout && openssl x509 -in leaf.crt -pubkey -noout | cmp - k.pem");

    // status: tokens, counts, the certificate that expires in 10 days, sync off.
    let out = keyport(&d, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(": ok") && text.contains("keys: 3 (default 3)"), "{text}");
    assert!(text.contains("certificates expiring within 30 days: 1") && text.contains("CN=soon.example"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("soft") && l.contains("true")), "{text}");
    assert!(text.contains("sync: off"), "{text}");
    let out = keyport(&d, &["status", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["expiring_certificates"].as_array().map(Vec::len), Some(1), "{v}");
}

#[test]
fn liveness_needs_no_credentials() {
    let d = Daemon::start("");
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", "--cacert"])
        .arg(d.dir.path().join("state/tls-cert.pem"))
        .arg(format!("https://127.0.0.1:{}/keyport/v1/health/live", d.port))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n200") && text.contains("\"alive\""), "{text}");
    // The full health still needs a principal.
    let (s, _) = d.curl_https("GET", "/keyport/v1/health", None, &[]);
    assert_eq!(s, 401);
}
