//! Test harness: each test gets its own SoftHSM token folder, its own config, and its own
//! `keyport serve` process on a temporary socket and a free port. Peer tools are real
//! (pkcs11-tool, curl, setpriv); a missing one fails the test.
#![allow(dead_code)]

pub mod bao;
pub mod proxy;
pub mod raft;
pub mod surface;
pub mod tlspc;
pub mod tpm;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const ROOT_PRINCIPALS: &str = r#"
[[principals]]
name = "root"
uids = [TEST_UID]
permissions = { "*" = ["admin"] }

[[principals]]
name = "reader"
# sha256("reader-key")
api_key_sha256 = ["READER_HASH"]
permissions = { default = ["read"] }

[[principals]]
name = "tlspc-client"
# sha256("tlspc-key")
api_key_sha256 = ["TLSPC_HASH"]
permissions = { default = ["import", "read"] }
"#;

/// Placeholder for the SoftHSM token's `[[tokens]]` block in [`Daemon::config_tokens`].
pub const SOFT_TOKEN: &str = "@SOFT_TOKEN@";

/// The few tests that need root say so twice: `#[ignore = "needs root: …"]`, so an
/// unprivileged `cargo test` lists them as ignored with the reason (`scripts/test`, run as root,
/// passes `--include-ignored`), and this check, so running one anyway says why it cannot work.
pub fn require_root(why: &str) {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root ({why}); run it as root, as scripts/test does");
}

/// Panics when `tool` is not on PATH: `scripts/test` installs every tool, so a missing one
/// is a failure, never a skip.
pub fn require(tool: &str) {
    let found = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().map(|o| o.status.success()).unwrap_or(false);
    assert!(found, "{tool} is required (scripts/deps installs it)");
}

/// The daemons' log filter: `KEYPORT_TEST_LOG` when set (e.g.
/// `info,cryptoki=off,keyport::api::listen=debug` to see why connections end), else info.
fn daemon_log_filter() -> String {
    std::env::var("KEYPORT_TEST_LOG").unwrap_or_else(|_| "info,cryptoki=off".into())
}

pub fn softhsm_module() -> PathBuf {
    for p in [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("libsofthsm2.so not found: install softhsm2 (scripts/deps)");
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub port: u16,
    pub child: Option<Child>,
    pub env: Vec<(String, String)>,
}

impl Daemon {
    /// Writes a config for a fresh token in a temporary folder. `extra` is appended TOML.
    pub fn config(extra: &str) -> Daemon {
        Daemon::config_tokens(SOFT_TOKEN, extra)
    }

    /// Like [`Daemon::config`] with `tokens` (TOML `[[tokens]]` blocks) in place of the SoftHSM
    /// token; `SOFT_TOKEN` in it stands for that token's block.
    pub fn config_tokens(tokens: &str, extra: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let port = free_port();
        let socket = d.join("keyport.sock");
        let principals = if extra.contains("[[principals]]") {
            String::new()
        } else {
            ROOT_PRINCIPALS.replace("READER_HASH", &sha256_hex("reader-key")).replace("TLSPC_HASH", &sha256_hex("tlspc-key"))
        };
        let text = format!(
            r#"state_dir = "{state}"
[listen]
socket = "{socket}"
socket_mode = "0666"
tcp = "127.0.0.1:{port}"
tls = {{ mode = "self-signed" }}

[limits]
max_body_bytes = 1048576

{tokens}
{principals}
{extra}
"#,
            state = d.join("state").display(),
            socket = socket.display(),
            tokens = tokens.replace(
                SOFT_TOKEN,
                &format!(
                    "[[tokens]]\nname = \"soft\"\nmodule = \"{}\"\nlabel = \"test\"\npin = {{ file = \"{}\" }}\nsofthsm = {{ dir = \"{}\" }}\n",
                    softhsm_module().display(),
                    d.join("pin").display(),
                    d.join("softhsm").display()
                )
            ),
        );
        let config = d.join("keyport.toml");
        std::fs::write(&config, text.replace("TEST_UID", &nix::unistd::getuid().as_raw().to_string())).unwrap();
        Daemon { dir, config, socket, port, child: None, env: Vec::new() }
    }

    pub fn start(extra: &str) -> Daemon {
        let mut d = Daemon::config(extra);
        d.spawn();
        d
    }

    pub fn command(&self) -> Command {
        self.fix_test_uid();
        let mut c = Command::new(env!("CARGO_BIN_EXE_keyport"));
        c.env_remove("KEYPORT_CONFIG").env("KEYPORT_LOG", daemon_log_filter());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// [`free_port`] releases the port before keyport binds it; another test (or a client's
    /// outgoing connection) can take it in between. When that is why the start failed, the
    /// config gets a new free port and the caller starts again. Any other failure stays one.
    fn take_another_port_if_ours_was_taken(&mut self) -> bool {
        let taken = format!("cannot listen on 127.0.0.1:{}: Address already in use", self.port);
        let Ok(text) = std::fs::read_to_string(&self.config) else { return false };
        let ours = format!("tcp = \"127.0.0.1:{}\"", self.port);
        if !self.log().contains(&taken) || !text.contains(&ours) {
            return false;
        }
        self.port = free_port();
        std::fs::write(&self.config, text.replace(&ours, &format!("tcp = \"127.0.0.1:{}\"", self.port))).unwrap();
        eprintln!("port taken by someone else between free_port() and keyport's bind: retrying on {}", self.port);
        true
    }

    /// Starts `keyport serve` and waits until health answers.
    /// `uids = [TEST_UID]`: the uid running the tests (root in CI; any user elsewhere), in
    /// whatever config the test wrote; done before every start and every CLI call.
    pub fn fix_test_uid(&self) {
        let Ok(text) = std::fs::read_to_string(&self.config) else { return };
        if text.contains("TEST_UID") {
            std::fs::write(&self.config, text.replace("TEST_UID", &nix::unistd::getuid().as_raw().to_string())).unwrap();
        }
    }

    pub fn spawn(&mut self) {
        self.launch(None)
    }

    /// Like [`Daemon::spawn`], with `keyport serve` running as `uid` (and its gid) through
    /// `setpriv`: for faults only an unprivileged daemon meets (file modes).
    pub fn spawn_as(&mut self, uid: u32) {
        require("setpriv");
        self.launch(Some(uid))
    }

    /// For restart loops: starts `keyport serve` appending to its log and waits until it says
    /// it is ready and both listeners answer; `Err` with this start's log when it does not come
    /// up (the caller decides whether that is a violation).
    pub fn try_spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("serve.log")).unwrap();
        let mark = self.log().len();
        let child = self.command().args(["serve", "--config"]).arg(&self.config).stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("exited ({status}): {}", &self.log()[mark..]));
            }
            if self.log()[mark..].contains("keyport ready")
                && std::os::unix::net::UnixStream::connect(&self.socket).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err(format!("not ready in 60 s: {}", &self.log()[mark..]));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts `keyport serve` and waits until it says it is ready and the socket answers: for a
    /// daemon whose HTTPS listener is off (no token can hold its key).
    pub fn spawn_socket_only(&mut self) {
        self.fix_test_uid();
        let log = std::fs::File::create(self.dir.path().join("serve.log")).unwrap();
        let child = self.command().args(["serve", "--config"]).arg(&self.config).stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.child = Some(child);
        let start = Instant::now();
        while !(self.log().contains("keyport ready") && std::os::unix::net::UnixStream::connect(&self.socket).is_ok()) {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("keyport exited ({status}) at start:\n{}", self.log());
            }
            assert!(start.elapsed() < Duration::from_secs(60), "keyport did not start in 60 s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn launch(&mut self, as_uid: Option<u32>) {
        self.fix_test_uid();
        let log = std::fs::File::create(self.dir.path().join("serve.log")).unwrap();
        let mut c = match as_uid {
            None => self.command(),
            Some(uid) => {
                let mut c = Command::new("setpriv");
                c.args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into()])
                    .arg(env!("CARGO_BIN_EXE_keyport"))
                    .env_remove("KEYPORT_CONFIG")
                    .env("KEYPORT_LOG", daemon_log_filter())
                    .envs(self.env.iter().map(|(k, v)| (k.clone(), v.clone())));
                c
            }
        };
        let child = c.args(["serve", "--config"]).arg(&self.config).stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                if self.take_another_port_if_ours_was_taken() {
                    return self.launch(as_uid);
                }
                panic!("keyport exited ({status}) at start:\n{}", self.log());
            }
            // Both listeners: after a restart the socket may answer before the TCP port does.
            if self.socket.exists()
                && std::os::unix::net::UnixStream::connect(&self.socket).is_ok()
                && self.dir.path().join("state/tls-cert.pem").exists()
                && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "keyport did not start in 60 s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    pub fn pin(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pin")).unwrap().trim().to_string()
    }

    pub fn softhsm_conf(&self) -> PathBuf {
        self.dir.path().join("softhsm/softhsm2.conf")
    }

    /// SIGKILL, no cleanup: what a crash or the OOM killer does.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait: a clean stop.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let c = self.child.take().expect("running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
        let mut c = c;
        c.wait().unwrap()
    }

    /// `curl --unix-socket`: status and parsed JSON body. `args` come before the URL.
    pub fn curl(&self, method: &str, path: &str, body: Option<&str>, args: &[&str]) -> (u16, Value) {
        let mut c = Command::new("curl");
        c.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--unix-socket"]).arg(&self.socket).args(["-X", method]);
        if let Some(b) = body {
            c.args(["-H", "content-type: application/json", "--data-binary", b]);
        }
        c.args(args).arg(format!("http://localhost{path}"));
        parse_curl(c.output().unwrap())
    }

    /// curl over the HTTPS port, trusting the daemon's own certificate.
    pub fn curl_https(&self, method: &str, path: &str, body: Option<&str>, args: &[&str]) -> (u16, Value) {
        let mut c = Command::new("curl");
        c.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert"]).arg(self.dir.path().join("state/tls-cert.pem")).args(["-X", method]);
        if let Some(b) = body {
            c.args(["-H", "content-type: application/json", "--data-binary", b]);
        }
        c.args(args).arg(format!("https://127.0.0.1:{}{path}", self.port));
        parse_curl(c.output().unwrap())
    }

    pub fn generate(&self, name: &str, algorithm: &str, exportable: bool) -> Value {
        let (status, v) = self.curl(
            "POST",
            "/keyport/v1/keys",
            Some(&serde_json::json!({"name": name, "algorithm": algorithm, "exportable": exportable}).to_string()),
            &[],
        );
        assert_eq!(status, 201, "generate {name} {algorithm}: {v}\n{}", self.log());
        v
    }

    /// `pkcs11-tool --list-objects` on this daemon's token, logged in.
    pub fn pkcs11_objects(&self) -> String {
        let out = Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", self.softhsm_conf())
            .args(["--module"])
            .arg(softhsm_module())
            .args(["--token-label", "test", "--login", "--pin", &self.pin(), "--list-objects"])
            .output()
            .unwrap();
        assert!(out.status.success(), "pkcs11-tool: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn pkcs11_tool(&self, args: &[&str]) -> Output {
        Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", self.softhsm_conf())
            .args(["--module"])
            .arg(softhsm_module())
            .args(["--token-label", "test", "--login", "--pin", &self.pin()])
            .args(args)
            .output()
            .unwrap()
    }
}

/// The forms a secret is checked in: as written, base64 (standard and URL-safe, with and
/// without padding) and hex (both cases).
pub fn secret_forms(secret: &str) -> Vec<(&'static str, Vec<u8>)> {
    use base64::Engine;
    let b = secret.as_bytes();
    let e = base64::engine::general_purpose::STANDARD.encode(b);
    vec![
        ("as written", b.to_vec()),
        ("base64", e.clone().into_bytes()),
        ("base64 unpadded", e.trim_end_matches('=').as_bytes().to_vec()),
        ("base64url", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b).into_bytes()),
        ("hex", hex::encode(b).into_bytes()),
        ("HEX", hex::encode_upper(b).into_bytes()),
    ]
}

/// Panics when `haystack` (named `what`) holds any secret in any of its [`secret_forms`]. A
/// PEM secret is checked by its base64 body lines (a log or store would re-wrap the rest).
pub fn assert_no_secret_in(what: &str, haystack: &[u8], secrets: &[&str]) {
    for secret in secrets {
        let mut needles: Vec<(&'static str, Vec<u8>)> = Vec::new();
        if secret.contains("-----BEGIN") {
            for line in secret.lines().filter(|l| !l.starts_with("-----") && l.len() >= 32 && !l.contains(':')) {
                needles.push(("a line of the PEM body", line.trim().as_bytes().to_vec()));
            }
        } else {
            assert!(secret.len() >= 6, "secret '{secret}' is too short to search for without false hits");
            needles = secret_forms(secret);
        }
        for (form, needle) in needles {
            if let Some(at) = haystack.windows(needle.len()).position(|w| w == needle.as_slice()) {
                let shown: String = secret.chars().take(12).collect();
                panic!("secret '{shown}…' ({form}) found in {what} at byte {at}");
            }
        }
    }
}

impl Daemon {
    /// Issue 16: no secret a test used (PINs, API keys, passwords, KPS SKs, vault tokens, the
    /// PEM bodies of private keys) appears in this daemon's log or in any file of its state
    /// folder — the store (`keyport.db`, its `-wal` and `-shm`, read as raw bytes, so freed
    /// pages count too), the TLS certificate, everything else there. The daemon's own PIN is
    /// always checked. Error bodies are the test's to pass to [`assert_no_secret_in`].
    pub fn assert_no_secret_leaked(&self, secrets: &[&str]) {
        let pin = std::fs::read_to_string(self.dir.path().join("pin")).ok().map(|p| p.trim().to_string()).filter(|p| p.len() >= 6);
        let mut all: Vec<&str> = secrets.to_vec();
        if let Some(p) = pin.as_deref() {
            all.push(p);
        }
        let mut files = vec![self.dir.path().join("serve.log")];
        let mut dirs = vec![self.dir.path().join("state")];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for e in entries.flatten() {
                let p = e.path();
                match e.file_type() {
                    Ok(t) if t.is_dir() => dirs.push(p),
                    Ok(t) if t.is_file() => files.push(p),
                    _ => {}
                }
            }
        }
        let mut checked = 0;
        for f in &files {
            let Ok(bytes) = std::fs::read(f) else { continue };
            assert_no_secret_in(&f.display().to_string(), &bytes, &all);
            checked += 1;
        }
        assert!(checked >= 2, "the log and the store were read: {files:?}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn parse_curl(out: Output) -> (u16, Value) {
    assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    let v = if body.trim().is_empty() { Value::Null } else { serde_json::from_str(body).unwrap_or(Value::String(body.to_string())) };
    (code.trim().parse().unwrap(), v)
}

/// Objects pkcs11-tool printed, one block per object, as (kind line, label, ID).
pub fn object_blocks(listing: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(String, String, String)> = None;
    for line in listing.lines() {
        if !line.starts_with(' ') && line.contains("Object;") {
            if let Some(c) = cur.take() {
                out.push(c);
            }
            cur = Some((line.to_string(), String::new(), String::new()));
        } else if let Some(c) = cur.as_mut() {
            let l = line.trim();
            if let Some(v) = l.strip_prefix("label:") {
                c.1 = v.trim().to_string();
            } else if let Some(v) = l.strip_prefix("ID:") {
                c.2 = v.trim().to_string();
            } else if l.starts_with("Access:") {
                c.0.push_str(" | ");
                c.0.push_str(l);
            }
        }
    }
    out.extend(cur);
    out
}

/// A PHC string for `password`, made by `keyport hash-password` reading it from stdin.
pub fn phc(password: &str) -> String {
    use std::io::Write;
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_keyport"))
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "hash-password: {}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(line.starts_with("$argon2id$"), "{line}");
    line
}
