//! The export writers (OpenSSH, PuTTY v3/v2, SSH2, Tectia, PKCS#1/SEC1) judged by the real
//! tools, per docs/ssh-formats.md §5: originals made by ssh-keygen, read by our
//! reader, written by our writers, then `puttygen -O text` of the export must equal the
//! original's, `ssh-keygen -y -P` must give the original public key, a signature made with the
//! export must verify against the original `.pub`, and a wrong passphrase must be refused by the
//! tool. Then hundreds of fresh P-256 and P-521 keys so short scalars (the minimal-mpint cases
//! PuTTY is strict about) appear on every run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use keyport::material::key::PrivateKey;
use keyport::material::ssh::write_ppk::PpkVersion;
use keyport::material::ssh::write_sshcom::Style;
use keyport::material::ssh::{read_private_key, write_openssh, write_ppk, write_sshcom};

const PASS: &str = "correct horse battery";

fn tools() {
    common::require("ssh-keygen");
    common::require("puttygen");
    common::require("openssl");
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).stdin(Stdio::null()).output().unwrap()
}

fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        let d = Dir { dir: tempfile::tempdir().unwrap() };
        std::fs::write(d.path("pw"), PASS).unwrap();
        std::fs::write(d.path("wrong"), "not the passphrase").unwrap();
        std::fs::write(d.path("empty"), "").unwrap();
        std::fs::write(d.path("msg"), "signed by the exported key").unwrap();
        d
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let f = self.path(name);
        std::fs::write(&f, text).unwrap();
        f
    }
}

/// `puttygen FILE -O text`, with the passphrase file when given.
fn puttygen_text(file: &Path, pw: Option<&Path>) -> Output {
    let mut args = vec![p(file)];
    if let Some(pw) = pw {
        args.extend(["--old-passphrase", p(pw)]);
    }
    args.extend(["-O", "text"]);
    run("puttygen", &args)
}

/// `type base64` of a public key line (comment dropped).
fn public_words(line: &str) -> String {
    line.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// Signs with `key` (OpenSSH format, passphrase `pw` or none) and verifies with `pub_file`.
fn signature_verifies(d: &Dir, key: &Path, pw: &str, pub_file: &Path) {
    let sig = d.path("msg.sig");
    let _ = std::fs::remove_file(&sig);
    // ssh-keygen refuses private keys readable by others.
    std::fs::set_permissions(key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    ok("ssh-keygen", &["-Y", "sign", "-q", "-f", p(key), "-P", pw, "-n", "file", p(&d.path("msg"))]);
    let out = Command::new("ssh-keygen")
        .args(["-Y", "check-novalidate", "-n", "file", "-f", p(pub_file), "-s", p(&sig)])
        .stdin(std::fs::File::open(d.path("msg")).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Good \"file\" signature"), "{out:?}");
}

/// Checks an encrypted OpenSSH export: public key, signature, puttygen text, wrong passphrase.
fn check_openssh(d: &Dir, file: &Path, orig_pub: &Path, orig_text: &str, what: &str) {
    std::fs::set_permissions(file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let public = ok("ssh-keygen", &["-y", "-P", PASS, "-f", p(file)]);
    assert_eq!(public_words(&public), public_words(&std::fs::read_to_string(orig_pub).unwrap()), "{what}");
    let wrong = run("ssh-keygen", &["-y", "-P", "wrong", "-f", p(file)]);
    assert_eq!(wrong.status.code(), Some(255), "{what}: ssh-keygen must refuse a wrong passphrase");
    signature_verifies(d, file, PASS, orig_pub);
    let text = puttygen_text(file, Some(&d.path("pw")));
    assert!(text.status.success(), "{what}: puttygen: {}", String::from_utf8_lossy(&text.stderr));
    assert_eq!(String::from_utf8(text.stdout).unwrap(), orig_text, "{what}: puttygen sees other key material");
}

/// Checks a PPK or ssh.com export: puttygen text equal, wrong passphrase refused, converted to
/// OpenSSH it signs for the original public key.
fn check_via_puttygen(d: &Dir, file: &Path, orig_pub: &Path, orig_text: &str, what: &str) {
    let text = puttygen_text(file, Some(&d.path("pw")));
    assert!(text.status.success(), "{what}: puttygen: {}", String::from_utf8_lossy(&text.stderr));
    assert_eq!(String::from_utf8(text.stdout).unwrap(), orig_text, "{what}: puttygen sees other key material");
    let wrong = puttygen_text(file, Some(&d.path("wrong")));
    assert!(!wrong.status.success(), "{what}: puttygen accepted a wrong passphrase");
    let converted = d.path("converted");
    let _ = std::fs::remove_file(&converted);
    ok(
        "puttygen",
        &[
            p(file),
            "--old-passphrase",
            p(&d.path("pw")),
            "-O",
            "private-openssh-new",
            "-o",
            p(&converted),
            "--new-passphrase",
            p(&d.path("empty")),
        ],
    );
    signature_verifies(d, &converted, "", orig_pub);
}

/// (ssh-keygen -t, -b) for each key type keyport keeps.
const TYPES: &[(&str, &str, &str)] =
    &[("rsa", "rsa", "2048"), ("p256", "ecdsa", "256"), ("p384", "ecdsa", "384"), ("p521", "ecdsa", "521"), ("ed25519", "ed25519", "256")];

#[test]
fn every_format_and_key_type_is_read_by_the_real_tools() {
    tools();
    let d = Dir::new();
    for (name, t, bits) in TYPES {
        let orig = d.path(name);
        ok("ssh-keygen", &["-q", "-t", t, "-b", bits, "-N", "", "-C", "orig@host", "-f", p(&orig)]);
        let orig_pub = d.path(&format!("{name}.pub"));
        let orig_text = ok("puttygen", &[p(&orig), "-O", "text"]);
        let (key, comment) = read_private_key(&std::fs::read(&orig).unwrap(), None).unwrap();
        assert_eq!(comment, "orig@host");
        let pw = Some(PASS.as_bytes());

        // OpenSSH, encrypted and plain.
        let f = d.write(&format!("{name}.openssh"), &write_openssh::write(&key, "exported", pw).unwrap());
        check_openssh(&d, &f, &orig_pub, &orig_text, &format!("{name} openssh"));
        let f = d.write(&format!("{name}.openssh-plain"), &write_openssh::write(&key, "exported", None).unwrap());
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        assert_eq!(public_words(&ok("ssh-keygen", &["-y", "-f", p(&f)])), public_words(&std::fs::read_to_string(&orig_pub).unwrap()));
        assert_eq!(ok("puttygen", &[p(&f), "-O", "text"]), orig_text, "{name} openssh plain");

        // PuTTY v3 and v2.
        for (v, label) in [(PpkVersion::V3, "ppk3"), (PpkVersion::V2, "ppk2")] {
            let text = write_ppk::write(&key, "exported", pw, v).unwrap();
            assert!(text.starts_with(&format!("PuTTY-User-Key-File-{}: ", if v == PpkVersion::V3 { 3 } else { 2 })));
            let f = d.write(&format!("{name}.{label}"), &text);
            check_via_puttygen(&d, &f, &orig_pub, &orig_text, &format!("{name} {label}"));
            let plain = d.write(&format!("{name}.{label}-plain"), &write_ppk::write(&key, "exported", None, v).unwrap());
            assert_eq!(ok("puttygen", &[p(&plain), "-O", "text"]), orig_text, "{name} {label} plain");
        }

        // SSH2 and Tectia: RSA only.
        for (style, label) in [(Style::Ssh2, "ssh2"), (Style::Tectia { subject: "alice".into() }, "tectia")] {
            let written = write_sshcom::write(&key, "exported", pw, &style);
            if *name != "rsa" {
                assert!(written.is_err(), "{name} {label} must be refused");
                continue;
            }
            let text = written.unwrap();
            let mut lines = text.lines();
            assert_eq!(lines.next(), Some("---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----"));
            if label == "tectia" {
                assert_eq!(lines.next(), Some("Subject: alice"));
            }
            assert_eq!(lines.next(), Some("Comment: \"exported\""));
            let f = d.write(&format!("{name}.{label}"), &text);
            check_via_puttygen(&d, &f, &orig_pub, &orig_text, &format!("{name} {label}"));
            // Unencrypted: ssh-keygen -i reads it and prints PKCS#1.
            let plain = d.write(&format!("{name}.{label}-plain"), &write_sshcom::write(&key, "exported", None, &style).unwrap());
            let pem = ok("ssh-keygen", &["-i", "-f", p(&plain)]);
            assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "{pem}");
            assert_eq!(ok("puttygen", &[p(&plain), "-O", "text"]), orig_text, "{name} {label} plain");
        }

        // PKCS#1 / SEC1 PEM: OpenSSL must give the same public key, and only with the passphrase.
        if *name != "ed25519" {
            let pem = keyport::material::pkcs::write_traditional::write_traditional_pem(&key, pw).unwrap();
            let f = d.write(&format!("{name}.pem"), &pem);
            assert_eq!(ok("puttygen", &[p(&f), "--old-passphrase", p(&d.path("pw")), "-O", "text"]), orig_text, "{name} pem");
            let wrong = run("openssl", &["pkey", "-in", p(&f), "-passin", "pass:nope", "-noout"]);
            assert!(!wrong.status.success(), "{name}: openssl accepted a wrong passphrase");
        }
    }
}

fn scalar(key: &PrivateKey) -> Vec<u8> {
    match key {
        PrivateKey::Ec { d, .. } => d.to_vec(),
        _ => unreachable!(),
    }
}

fn fresh(curve: &str) -> PrivateKey {
    use keyport::material::algorithm::Algorithm;
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use zeroize::Zeroizing;
    match curve {
        "p256" => {
            let sk = p256::SecretKey::random(&mut rand::rngs::OsRng);
            let point = sk.public_key().to_encoded_point(false).as_bytes().to_vec();
            PrivateKey::Ec { algorithm: Algorithm::EcP256, d: Zeroizing::new(sk.to_bytes().to_vec()), point }
        }
        _ => {
            let sk = p521::SecretKey::random(&mut rand::rngs::OsRng);
            let point = sk.public_key().to_encoded_point(false).as_bytes().to_vec();
            PrivateKey::Ec { algorithm: Algorithm::EcP521, d: Zeroizing::new(sk.to_bytes().to_vec()), point }
        }
    }
}

/// Hundreds of fresh keys through our writers and readers; every short-scalar key (and a
/// sample of the others) through puttygen and ssh-keygen, which must print our scalar.
#[test]
fn many_p256_and_p521_keys_including_short_scalars() {
    tools();
    let d = Dir::new();
    let started = std::time::Instant::now();
    let mut for_tools: Vec<(String, PrivateKey)> = Vec::new();
    let (mut short256, mut short521, mut n256, mut n521) = (0, 0, 0, 0);
    // At least 300 P-256 keys and until 2 short ones (a leading zero byte: 1 in 256) appear.
    while n256 < 300 || short256 < 2 {
        let key = fresh("p256");
        n256 += 1;
        let short = scalar(&key)[0] == 0;
        let text = write_openssh::write(&key, "", None).unwrap();
        assert_eq!(read_private_key(text.as_bytes(), None).unwrap().0.public_key(), key.public_key());
        let ppk = write_ppk::write(&key, "", None, PpkVersion::V3).unwrap();
        assert_eq!(read_private_key(ppk.as_bytes(), None).unwrap().0.public_key(), key.public_key());
        if short {
            short256 += 1;
            if short256 <= 3 {
                for_tools.push((format!("p256-short-{short256}"), key));
            }
        } else if n256 <= 3 {
            for_tools.push((format!("p256-{n256}"), key));
        }
        assert!(n256 < 20_000, "no short P-256 scalar in 20000 keys");
    }
    while n521 < 200 {
        let key = fresh("p521");
        n521 += 1;
        let text = write_openssh::write(&key, "", None).unwrap();
        assert_eq!(read_private_key(text.as_bytes(), None).unwrap().0.public_key(), key.public_key());
        let ppk = write_ppk::write(&key, "", None, PpkVersion::V3).unwrap();
        assert_eq!(read_private_key(ppk.as_bytes(), None).unwrap().0.public_key(), key.public_key());
        // The top byte of a P-521 scalar holds one bit: it is zero for half of all keys, and
        // two leading zero bytes happen once in 512.
        if scalar(&key)[0] == 0 {
            short521 += 1;
            if short521 <= 6 {
                for_tools.push((format!("p521-short-{short521}"), key));
            }
        }
    }
    assert!(short521 > 0 && short256 >= 2);
    for (name, key) in &for_tools {
        let want = hex::encode(scalar(key)).trim_start_matches('0').to_string();
        let exponent =
            |text: &str| text.lines().find_map(|l| l.strip_prefix("private_exponent=0x")).map(|h| h.trim_start_matches('0').to_string());
        let f = d.write(&format!("{name}.openssh"), &write_openssh::write(key, "", None).unwrap());
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let text = ok("puttygen", &[p(&f), "-O", "text"]);
        assert_eq!(exponent(&text).as_deref(), Some(want.as_str()), "{name}: puttygen read another scalar:\n{text}");
        let public = ok("ssh-keygen", &["-y", "-f", p(&f)]);
        assert_eq!(public_words(&public), public_words(&keyport::material::ssh::public_key_line(&key.public_key(), "")), "{name}");
        let f = d.write(&format!("{name}.ppk"), &write_ppk::write(key, "", None, PpkVersion::V3).unwrap());
        let text = ok("puttygen", &[p(&f), "-O", "text"]);
        assert_eq!(exponent(&text).as_deref(), Some(want.as_str()), "{name} ppk: puttygen read another scalar:\n{text}");
    }
    eprintln!("{n256} P-256 keys ({short256} short), {n521} P-521 keys ({short521} short) in {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------
// Through the daemon: the native export and the CLI.

fn generated_pub(d: &common::Daemon, id: &str) -> String {
    // The public key as an OpenSSH line, from a passphrase-protected OpenSSH export.
    let (s, v) =
        d.curl("POST", &format!("/keyport/v1/keys/{id}/export"), Some(&format!(r#"{{"format":"openssh","passphrase":"{PASS}"}}"#)), &[]);
    assert_eq!(s, 200, "{v}");
    let f = d.dir.path().join(format!("{id}.openssh"));
    std::fs::write(&f, v["private_key"].as_str().unwrap()).unwrap();
    std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    public_words(&ok("ssh-keygen", &["-y", "-P", PASS, "-f", p(&f)]))
}

#[test]
fn native_export_formats_policy_and_cli() {
    tools();
    common::require("curl");
    let d = common::Daemon::start("[namespaces.open]\nallow_unencrypted_export = true\n");
    let pw = d.dir.path().join("pw");
    std::fs::write(&pw, format!("{PASS}\n")).unwrap();
    let ed = d.generate("ed", "ed25519", true);
    let ed_id = ed["id"].as_str().unwrap();
    let public = generated_pub(&d, ed_id);

    // Every SSH format an Ed25519 key can take, checked by puttygen against the same public key.
    for format in ["putty", "putty-v2", "openssh"] {
        let (s, v) = d.curl(
            "POST",
            &format!("/keyport/v1/keys/{ed_id}/export"),
            Some(&format!(r#"{{"format":"{format}","passphrase":"{PASS}"}}"#)),
            &[],
        );
        assert_eq!((s, v["encrypted"].as_bool()), (200, Some(true)), "{format}: {v}");
        let f = d.dir.path().join(format!("ed.{format}"));
        std::fs::write(&f, v["private_key"].as_str().unwrap()).unwrap();
        let conv = d.dir.path().join(format!("ed.{format}.pub"));
        ok("puttygen", &[p(&f), "--old-passphrase", p(&pw), "-O", "public-openssh", "-o", p(&conv)]);
        assert_eq!(public_words(&std::fs::read_to_string(&conv).unwrap()), public, "{format}");
        std::fs::write(d.dir.path().join("nope"), "nope").unwrap();
        assert!(!puttygen_text(&f, Some(&d.dir.path().join("nope"))).status.success(), "{format}: wrong passphrase accepted");
    }
    // Refusals: SSH2 of Ed25519, Ed25519 as PKCS#1, no passphrase where the policy forbids it, bad name.
    for (body, code) in [
        (format!(r#"{{"format":"ssh2","passphrase":"{PASS}"}}"#), "format_key_mismatch"),
        (format!(r#"{{"format":"tectia","passphrase":"{PASS}"}}"#), "format_key_mismatch"),
        (format!(r#"{{"format":"sec1","passphrase":"{PASS}"}}"#), "format_key_mismatch"),
        (r#"{"format":"openssh"}"#.to_string(), "passphrase_required"),
        (r#"{"format":"putty","passphrase":""}"#.to_string(), "passphrase_required"),
        (format!(r#"{{"format":"jks","passphrase":"{PASS}"}}"#), "invalid_format"),
    ] {
        let (s, v) = d.curl("POST", &format!("/keyport/v1/keys/{ed_id}/export"), Some(&body), &[]);
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some(code)), "{body}: {v}");
    }

    // RSA in ssh.com form, and PKCS#1 PEM that openssl reads with the passphrase.
    let rsa = d.generate("rsa", "rsa-2048", true);
    let rsa_id = rsa["id"].as_str().unwrap();
    let rsa_public = generated_pub(&d, rsa_id);
    for format in ["ssh2", "tectia", "pkcs1"] {
        let (s, v) = d.curl(
            "POST",
            &format!("/keyport/v1/keys/{rsa_id}/export"),
            Some(&format!(r#"{{"format":"{format}","passphrase":"{PASS}"}}"#)),
            &[],
        );
        assert_eq!(s, 200, "{format}: {v}");
        let text = v["private_key"].as_str().unwrap();
        assert_eq!(text.contains("\nSubject: root\n"), format == "tectia", "{text}");
        let f = d.dir.path().join(format!("rsa.{format}"));
        std::fs::write(&f, text).unwrap();
        let conv = d.dir.path().join(format!("rsa.{format}.pub"));
        ok("puttygen", &[p(&f), "--old-passphrase", p(&pw), "-O", "public-openssh", "-o", p(&conv)]);
        assert_eq!(public_words(&std::fs::read_to_string(&conv).unwrap()), rsa_public, "{format}");
    }

    // The CLI: a file with mode 0600, never overwritten; by name.
    let out = d.dir.path().join("ed.ppk");
    let cli = |args: &[&str]| d.command().args(["export", "--socket", p(&d.socket)]).args(args).output().unwrap();
    let r = cli(&["ed", "--format", "putty", "--passphrase-file", p(&pw), "--out", p(&out)]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(std::fs::read_to_string(&out).unwrap().starts_with("PuTTY-User-Key-File-3: ssh-ed25519"));
    assert!(puttygen_text(&out, Some(&pw)).status.success());
    let before = std::fs::read(&out).unwrap();
    let r = cli(&["ed", "--format", "openssh", "--passphrase-file", p(&pw), "--out", p(&out)]);
    assert!(!r.status.success() && String::from_utf8_lossy(&r.stderr).contains("never overwrites"));
    assert_eq!(std::fs::read(&out).unwrap(), before);
    let r = cli(&["ed", "--format", "openssh"]);
    assert!(!r.status.success() && String::from_utf8_lossy(&r.stderr).contains("passphrase is required"), "{r:?}");

    // A namespace whose policy allows unencrypted exports.
    let (s, v) =
        d.curl("POST", "/keyport/v1/keys", Some(r#"{"name":"plain","algorithm":"ec-p384","namespace":"open","exportable":true}"#), &[]);
    assert_eq!(s, 201, "{v}");
    let (s, v) = d.curl("POST", &format!("/keyport/v1/keys/{}/export", v["id"].as_str().unwrap()), Some(r#"{"format":"openssh"}"#), &[]);
    assert_eq!((s, v["encrypted"].as_bool()), (200, Some(false)), "{v}");
    let f = d.dir.path().join("plain.openssh");
    std::fs::write(&f, v["private_key"].as_str().unwrap()).unwrap();
    std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    assert!(ok("ssh-keygen", &["-y", "-f", p(&f)]).starts_with("ecdsa-sha2-nistp384 "));
}
