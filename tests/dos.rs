//! Denial of service by costly input (issue 11, items 2 and 3): a hostile multipart upload on
//! the 004 face, and key files whose KDF parameters ask for minutes of CPU or much memory,
//! sent through the TPP face's ImportPrivateKey (the synchronous import that takes a
//! passphrase). Each test measures what the daemon spends (time of another caller's request,
//! peak RSS from /proc) while the hostile input is refused.

mod common;
use base64::Engine;
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PW: &str = "kdf test passphrase";

/// VmHWM (peak resident set) of the daemon, in MiB.
fn peak_mib(d: &Daemon) -> u64 {
    let pid = d.child.as_ref().unwrap().id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
}

/// Root's health over the socket answers within `limit`.
fn health_within(d: &Daemon, limit: Duration) {
    let start = Instant::now();
    let (s, v) = d.curl("GET", "/keyport/v1/health", None, &["--max-time", "30"]);
    assert_eq!(s, 200, "{v}");
    assert!(start.elapsed() < limit, "root's health took {:?}", start.elapsed());
}

// --- 004 import-file ---------------------------------------------------------------------------

#[test]
fn a_huge_multipart_boundary_is_refused_quickly_and_the_daemon_stays_responsive() {
    require("curl");
    let mut d = Daemon::config(&format!(
        r#"
[[principals]]
name = "root"
uids = [TEST_UID]
permissions = {{ "*" = ["admin"] }}

[[principals]]
name = "ops"
api_key_sha256 = ["{ops}"]
permissions = {{ web = ["import", "deploy", "manage"] }}

[apiops.projects.P]
namespace = "web"
[apiops.environments]
Production = "soft"
"#,
        ops = sha256_hex("ops-key"),
    ));
    let t = std::fs::read_to_string(&d.config).unwrap().replace("max_body_bytes = 1048576", "max_body_bytes = 4194304");
    std::fs::write(&d.config, t).unwrap();
    d.spawn();
    let dir = d.dir.path();
    // The request from the issue: a 300 KB boundary of '-' and a 4 MB body of runs of '-' one
    // longer than the delimiter. A naive search compares ~300 KB at every position.
    let boundary = "-".repeat(300_000);
    let mut body = Vec::with_capacity(4 * 1024 * 1024);
    while body.len() + 300_002 < 4 * 1024 * 1024 {
        body.extend(std::iter::repeat_n(b'-', 300_001));
        body.push(b'x');
    }
    std::fs::write(dir.join("body"), &body).unwrap();
    std::fs::write(dir.join("headers"), format!("Content-Type: multipart/form-data; boundary={boundary}\nAuthorization: Bearer ops-key\n"))
        .unwrap();
    let start = Instant::now();
    let uploads: Vec<_> = (0..2)
        .map(|_| {
            Command::new("curl")
                .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time", "120", "-X", "POST", "-H"])
                .arg(format!("@{}", dir.join("headers").display()))
                .arg("--data-binary")
                .arg(format!("@{}", dir.join("body").display()))
                .arg("--unix-socket")
                .arg(&d.socket)
                .arg("http://localhost/apiops/projects/P/keys/import-file/")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    health_within(&d, Duration::from_secs(2));
    for u in uploads {
        let (s, v) = parse_curl(u.wait_with_output().unwrap());
        assert_eq!((s, v["status"].as_str()), (400, Some("FAILURE")), "{v}");
        assert!(v["resultMessage"].as_str().unwrap().contains("boundary"), "{v}");
    }
    assert!(start.elapsed() < Duration::from_secs(10), "the uploads took {:?}", start.elapsed());
    health_within(&d, Duration::from_secs(2));
}

// --- KDF caps and the KDF pool ---------------------------------------------------------------

fn tpp_daemon(limits: &str) -> Daemon {
    let mut d = Daemon::config(&format!(
        r#"
[[principals]]
name = "root"
uids = [TEST_UID]
permissions = {{ "*" = ["admin"] }}

[[principals]]
name = "importer"
permissions = {{ default = ["import", "read"] }}

[[tpp.users]]
username = "importer"
password_hash = "{pw}"
principal = "importer"
"#,
        pw = common::phc("importer-secret"),
    ));
    let t = std::fs::read_to_string(&d.config).unwrap().replace("max_body_bytes = 1048576", &format!("max_body_bytes = 1048576\n{limits}"));
    std::fs::write(&d.config, t).unwrap();
    d.spawn();
    d
}

fn tpp_token(d: &Daemon) -> String {
    let body = json!({"client_id": "keyport-test", "username": "importer", "password": "importer-secret", "scope": "ssh:manage,discover"});
    let (s, v) = d.curl_https("POST", "/vedauth/authorize/oauth", Some(&body.to_string()), &[]);
    assert_eq!(s, 200, "{v}\n{}", d.log());
    v["access_token"].as_str().unwrap().to_string()
}

/// ImportPrivateKey through the TPP face: curl's child process, so several run at once.
fn import(d: &Daemon, tok: &str, key: &[u8]) -> std::process::Child {
    let body = json!({"KeyContentBase64": base64::engine::general_purpose::STANDARD.encode(key), "Passphrase": PW}).to_string();
    let file = d.dir.path().join(format!("import-{}.json", rand_suffix()));
    std::fs::write(&file, body).unwrap();
    Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-D", "-", "--max-time", "120", "--cacert"])
        .arg(d.dir.path().join("state/tls-cert.pem"))
        .args(["-X", "POST", "-H", "content-type: application/json", "-H", &format!("Authorization: Bearer {tok}"), "--data-binary"])
        .arg(format!("@{}", file.display()))
        .arg(format!("https://127.0.0.1:{}/vedsdk/SSH/ImportPrivateKey", d.port))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::SeqCst).to_string()
}

/// (status, headers, JSON body) of an `import` child.
fn answer(c: std::process::Child) -> (u16, String, Value) {
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (rest, code) = text.rsplit_once('\n').unwrap();
    let (head, body) = rest.split_once("\r\n\r\n").unwrap();
    (code.trim().parse().unwrap(), head.to_ascii_lowercase(), serde_json::from_str(body).unwrap_or(Value::String(body.into())))
}

fn run(dir: &Path, prog: &str, args: &[&str]) {
    let out = Command::new(prog).current_dir(dir).args(args).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{prog} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A PuTTY PPK v3 key protected with `PW` and the given Argon2 parameters.
fn ppk(dir: &Path, name: &str, params: &str) -> Vec<u8> {
    std::fs::write(dir.join("pw"), PW).unwrap();
    run(dir, "puttygen", &["-q", "-t", "ed25519", "-o", name, "--new-passphrase", "pw", "--ppk-param", params]);
    std::fs::read(dir.join(name)).unwrap()
}

/// An OpenSSH key written by ssh-keygen, with its bcrypt rounds field rewritten to `rounds`.
fn openssh_with_rounds(dir: &Path, rounds: u32) -> Vec<u8> {
    run(dir, "ssh-keygen", &["-q", "-t", "ed25519", "-N", PW, "-f", "ossh"]);
    let text = std::fs::read_to_string(dir.join("ossh")).unwrap();
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut raw = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    // "openssh-key-v1\0", string cipher, string kdfname, string kdfoptions(string salt, u32 rounds)
    let mut at = 15;
    let skip = |raw: &[u8], at: &mut usize| {
        let n = u32::from_be_bytes(raw[*at..*at + 4].try_into().unwrap()) as usize;
        *at += 4 + n;
    };
    skip(&raw, &mut at); // cipher
    skip(&raw, &mut at); // kdf name
    at += 4; // kdfoptions length
    skip(&raw, &mut at); // salt
    raw[at..at + 4].copy_from_slice(&rounds.to_be_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
    let mut out = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
    for c in b64.as_bytes().chunks(70) {
        out.push_str(std::str::from_utf8(c).unwrap());
        out.push('\n');
    }
    out.push_str("-----END OPENSSH PRIVATE KEY-----\n");
    out.into_bytes()
}

#[test]
fn kdf_parameters_past_the_caps_are_refused_before_any_work() {
    require("curl");
    require("puttygen");
    require("ssh-keygen");
    require("openssl");
    let d = tpp_daemon("");
    let dir = d.dir.path();
    let tok = tpp_token(&d);
    // What the issue sent: Argon2 256 MiB × 200 passes (46 s of CPU each, accepted before).
    let good = String::from_utf8(ppk(dir, "k.ppk", "kdf=argon2id,memory=8192,passes=8,parallelism=1")).unwrap();
    let crafted = good.replace("Argon2-Memory: 8192", "Argon2-Memory: 262144").replace("Argon2-Passes: 8", "Argon2-Passes: 200");
    // bcrypt_pbkdf with 1000 rounds (ssh-keygen writes 16); PBKDF2 with 1,000,000 iterations
    // (openssl writes 2,048).
    let ossh = openssh_with_rounds(dir, 1000);
    run(dir, "openssl", &["genpkey", "-algorithm", "ed25519", "-out", "plain.pem"]);
    run(
        dir,
        "openssl",
        &[
            "pkcs8",
            "-topk8",
            "-in",
            "plain.pem",
            "-v2",
            "aes-256-cbc",
            "-iter",
            "1000000",
            "-passout",
            &format!("pass:{PW}"),
            "-out",
            "p8.pem",
        ],
    );
    let p8 = std::fs::read(dir.join("p8.pem")).unwrap();
    let peak = peak_mib(&d);
    for (what, key) in [("Argon2 256 MiB × 200", crafted.into_bytes()), ("bcrypt 1000 rounds", ossh), ("PBKDF2 1,000,000", p8)] {
        let start = Instant::now();
        let (s, _, v) = answer(import(&d, &tok, &key));
        assert_eq!(s, 200, "{what}: {v}");
        assert_eq!(v["SshWebResponse"]["Success"], false, "{what}: {v}");
        let msg = v["SshWebResponse"]["ErrorMessage"].as_str().unwrap_or_default();
        assert!(msg.contains("too expensive"), "{what}: {v}");
        assert!(start.elapsed() < Duration::from_secs(3), "{what}: refused after {:?}", start.elapsed());
    }
    assert!(peak_mib(&d) < peak + 40, "peak RSS grew from {peak} MiB to {} MiB", peak_mib(&d));
    // At the caps, a real key still imports.
    let (s, _, v) = answer(import(&d, &tok, good.as_bytes()));
    assert_eq!((s, v["SshWebResponse"]["Success"].as_bool()), (200, Some(true)), "{v}\n{}", d.log());
}

#[test]
fn key_derivations_run_a_bounded_number_at_once_and_the_rest_get_503() {
    require("curl");
    require("puttygen");
    let d = tpp_daemon("kdf_concurrency = 1\nkdf_queue = 1\nkdf_per_principal = 2");
    let dir = d.dir.path();
    let tok = tpp_token(&d);
    // Keys at the cap: 64 MiB × 8 passes each.
    let keys: Vec<Vec<u8>> = (0..5).map(|i| ppk(dir, &format!("big{i}.ppk"), "kdf=argon2id,memory=65536,passes=8,parallelism=1")).collect();
    let peak = peak_mib(&d);
    let calls: Vec<_> = keys.iter().map(|k| import(&d, &tok, k)).collect();
    std::thread::sleep(Duration::from_millis(200));
    health_within(&d, Duration::from_secs(2));
    let answers: Vec<_> = calls.into_iter().map(answer).collect();
    let served = answers.iter().filter(|(s, _, v)| *s == 200 && v["SshWebResponse"]["Success"] == true).count();
    let busy: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 503).collect();
    assert_eq!(served + busy.len(), 5, "{answers:?}\n{}", d.log());
    assert!(busy.len() >= 3, "one principal may have 2 running or waiting: {answers:?}");
    for (_, head, v) in &busy {
        assert!(head.contains("retry-after:"), "{head}");
        assert_eq!(v["SshWebResponse"]["Success"], false, "the face's own shape: {v}");
        assert!(v["SshWebResponse"]["ErrorMessage"].as_str().unwrap().contains("kdf_per_principal"), "{v}");
    }
    // One 64 MiB derivation at a time (five at once would need 320 MiB).
    let grown = peak_mib(&d).saturating_sub(peak);
    eprintln!("five 64 MiB derivations: {served} served, {} refused 503, peak RSS grew {grown} MiB", busy.len());
    assert!(grown < 140, "peak RSS grew by {grown} MiB");
}

#[test]
fn a_queued_derivation_whose_client_left_never_runs() {
    require("curl");
    require("puttygen");
    let d = tpp_daemon("kdf_concurrency = 1\nkdf_queue = 4\nkdf_per_principal = 4");
    let dir = d.dir.path();
    let tok = tpp_token(&d);
    let keys: Vec<Vec<u8>> = (0..3).map(|i| ppk(dir, &format!("q{i}.ppk"), "kdf=argon2id,memory=65536,passes=8,parallelism=1")).collect();
    // Two run one after the other; the third waits behind them and its client hangs up.
    let first = import(&d, &tok, &keys[0]);
    let second = import(&d, &tok, &keys[1]);
    std::thread::sleep(Duration::from_millis(150));
    let body = json!({"KeyContentBase64": base64::engine::general_purpose::STANDARD.encode(&keys[2]), "Passphrase": PW}).to_string();
    let gone = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "--max-time", "0.3", "--cacert"])
        .arg(dir.join("state/tls-cert.pem"))
        .args(["-X", "POST", "-H", "content-type: application/json", "-H", &format!("Authorization: Bearer {tok}"), "--data-binary", &body])
        .arg(format!("https://127.0.0.1:{}/vedsdk/SSH/ImportPrivateKey", d.port))
        .output()
        .unwrap();
    assert!(!gone.status.success(), "the impatient client gave up");
    for c in [first, second] {
        let (s, _, v) = answer(c);
        assert_eq!((s, v["SshWebResponse"]["Success"].as_bool()), (200, Some(true)), "{v}");
    }
    std::thread::sleep(Duration::from_secs(2));
    let (s, v) = d.curl("GET", "/keyport/v1/keys", None, &[]);
    assert_eq!(s, 200);
    let n = v.as_array().or_else(|| v["keys"].as_array()).map(|a| a.len()).unwrap_or(0);
    assert_eq!(n, 2, "the abandoned import did not run: {v}");
}
