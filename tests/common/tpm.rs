//! A real TPM 2.0 token for tests: the software TPM `swtpm`, the resource manager
//! `tpm2-abrmd` on a private D-Bus session bus, and a `tpm2-pkcs11` token made with
//! `tpm2_ptool`, all in a temporary folder (docs/pkcs11.md §4). Without the resource manager
//! the TPM runs out of object contexts after a few operations.
//!
//! `Tpm::start()` brings it up (a missing tool fails the test); `Drop` stops the processes it
//! started, by their ids. `kill_swtpm`/`start_swtpm` take the TPM away and bring it back under a
//! running daemon.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{require, Daemon};

/// The tpm2-pkcs11 module.
pub fn module() -> PathBuf {
    for p in ["/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so", "/usr/lib/aarch64-linux-gnu/pkcs11/libtpm2_pkcs11.so"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("libtpm2_pkcs11.so not found: install libtpm2-pkcs11-1 (scripts/deps)");
}

pub const LABEL: &str = "tpmtok";

pub struct Tpm {
    pub dir: tempfile::TempDir,
    /// swtpm's server port; its control port is the next one (the swtpm TCTI assumes so).
    pub port: u16,
    pub bus: String,
    pub pin: String,
    max_transients: u32,
    swtpm: Option<Child>,
    dbus: Option<Child>,
    abrmd: Option<Child>,
}

/// Two free consecutive loopback ports.
fn port_pair() -> u16 {
    for _ in 0..200 {
        let p = super::free_port();
        if p < 65000 && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no two free consecutive ports");
}

impl Tpm {
    /// swtpm + a session bus + tpm2-abrmd + an initialized token `tpmtok` with a random PIN.
    pub fn start() -> Tpm {
        Tpm::start_with(100)
    }

    /// Like [`Tpm::start`], with tpm2-abrmd allowing `max_transients` loaded objects per client
    /// (its default is 27, its maximum 100).
    pub fn start_with(max_transients: u32) -> Tpm {
        for tool in ["swtpm", "dbus-daemon", "tpm2-abrmd", "tpm2_ptool", "tpm2_getcap"] {
            require(tool);
        }
        let _ = module();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        std::fs::create_dir_all(dir.path().join("store")).unwrap();
        let pin = hex::encode(rand_bytes());
        std::fs::write(dir.path().join("pin"), &pin).unwrap();
        let mut t = Tpm { dir, port: port_pair(), bus: String::new(), pin, max_transients, swtpm: None, dbus: None, abrmd: None };
        t.start_swtpm();
        // A private session bus in the temp folder; its address is printed on stdout.
        let mut dbus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .arg(format!("--address=unix:path={}", t.dir.path().join("bus").display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(dbus.stdout.take().unwrap()).read_line(&mut line).unwrap();
        t.bus = line.trim().to_string();
        assert!(!t.bus.is_empty(), "dbus-daemon printed no address");
        t.dbus = Some(dbus);
        t.start_abrmd();
        let out = t.tool("tpm2_ptool").arg("init").output().unwrap();
        assert!(out.status.success(), "tpm2_ptool init: {}", String::from_utf8_lossy(&out.stderr));
        let out = t
            .tool("tpm2_ptool")
            .args(["addtoken", "--pid=1", "--sopin=so-pin-5678"])
            .arg(format!("--userpin={}", t.pin))
            .arg(format!("--label={LABEL}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "tpm2_ptool addtoken: {}", String::from_utf8_lossy(&out.stderr));
        t
    }

    /// The variables the module (and the tools) need to reach this TPM.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("DBUS_SESSION_BUS_ADDRESS".into(), self.bus.clone()),
            ("TPM2_PKCS11_TCTI".into(), "tabrmd:bus_type=session".into()),
            ("TPM2TOOLS_TCTI".into(), "tabrmd:bus_type=session".into()),
            ("TPM2_PKCS11_STORE".into(), self.dir.path().join("store").display().to_string()),
            // tpm2-pkcs11 logs every refused probe to stderr otherwise.
            ("TPM2_PKCS11_LOG_LEVEL".into(), "0".into()),
        ]
    }

    fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(name);
        c.envs(self.env());
        c
    }

    /// The `[[tokens]]` block for this TPM under `name`.
    pub fn token_toml(&self, name: &str) -> String {
        format!(
            "[[tokens]]\nname = \"{name}\"\nmodule = \"{}\"\nlabel = \"{LABEL}\"\npin = {{ file = \"{}\" }}\n",
            module().display(),
            self.dir.path().join("pin").display()
        )
    }

    /// Starts (or restarts, on the same state and port) the software TPM.
    pub fn start_swtpm(&mut self) {
        let state = self.dir.path().join("state");
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--flags", "not-need-init,startup-clear"])
            .arg("--tpmstate")
            .arg(format!("dir={}", state.display()))
            .arg("--server")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", self.port))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", self.port + 1))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("swtpm.log")).unwrap())
            .spawn()
            .unwrap();
        self.swtpm = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "swtpm did not listen: {}", self.file("swtpm.log"));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL the software TPM (what a TPM reset or a crashed swtpm looks like).
    pub fn kill_swtpm(&mut self) {
        if let Some(mut c) = self.swtpm.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts (or restarts) the resource manager and waits until the TPM answers through it.
    pub fn start_abrmd(&mut self) {
        if let Some(mut c) = self.abrmd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let child = Command::new("tpm2-abrmd")
            // tpm2-pkcs11 keeps every key it has used loaded until C_Logout; the default of 27
            // transient objects per client ends after ~13 key pairs (keyport then logs in again).
            .args(["--session", "--allow-root", "--flush-all"])
            .arg(format!("--max-transients={}", self.max_transients))
            .arg(format!("--tcti=swtpm:host=127.0.0.1,port={}", self.port))
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("abrmd.log")).unwrap())
            .spawn()
            .unwrap();
        self.abrmd = Some(child);
        let start = Instant::now();
        loop {
            let out = self.tool("tpm2_getcap").args(["-T", "tabrmd:bus_type=session", "properties-fixed"]).output().unwrap();
            if out.status.success() {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(15), "tpm2-abrmd did not answer: {}", self.file("abrmd.log"));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the resource manager process still runs.
    pub fn abrmd_alive(&mut self) -> bool {
        self.abrmd.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// `pkcs11-tool` on this TPM's token, logged in.
    pub fn pkcs11_tool(&self, args: &[&str]) -> Output {
        require("pkcs11-tool");
        self.tool("pkcs11-tool")
            .arg("--module")
            .arg(module())
            .args(["--token-label", LABEL, "--login", "--pin", &self.pin])
            .args(args)
            .output()
            .unwrap()
    }

    /// The objects pkcs11-tool lists in the TPM token.
    pub fn objects(&self) -> String {
        let out = self.pkcs11_tool(&["--list-objects"]);
        assert!(out.status.success(), "pkcs11-tool: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn rand_bytes() -> [u8; 8] {
    let mut b = [0u8; 8];
    getrandom(&mut b);
    b
}

fn getrandom(b: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom").unwrap().read_exact(b).unwrap();
}

impl Drop for Tpm {
    fn drop(&mut self) {
        for c in [self.abrmd.take(), self.swtpm.take(), self.dbus.take()].into_iter().flatten() {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Which token a token-agnostic test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    Soft,
    Tpm,
}

/// A daemon on one token kind; the TPM (if any) outlives the daemon (fields drop in order).
pub struct OnToken {
    pub daemon: Daemon,
    pub tpm: Option<Tpm>,
    /// The token name requests use.
    pub token: &'static str,
}

impl std::ops::Deref for OnToken {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.daemon
    }
}

impl std::ops::DerefMut for OnToken {
    fn deref_mut(&mut self) -> &mut Daemon {
        &mut self.daemon
    }
}

impl OnToken {
    /// A daemon whose only token is `on` (SoftHSM as `soft`, or the TPM as `tpm`), started.
    pub fn start(on: On, extra: &str) -> OnToken {
        match on {
            On::Soft => OnToken { daemon: Daemon::start(extra), tpm: None, token: "soft" },
            On::Tpm => {
                let tpm = Tpm::start();
                let mut d = Daemon::config_tokens(&tpm.token_toml("tpm"), extra);
                d.env.extend(tpm.env());
                d.spawn();
                OnToken { daemon: d, tpm: Some(tpm), token: "tpm" }
            }
        }
    }

    /// A daemon with SoftHSM (`soft`, the first) and the TPM (`tpm`), started.
    pub fn start_both(extra: &str) -> OnToken {
        let tpm = Tpm::start();
        let mut d = Daemon::config(&format!("{}\n{extra}", tpm.token_toml("tpm")));
        d.env.extend(tpm.env());
        d.spawn();
        OnToken { daemon: d, tpm: Some(tpm), token: "tpm" }
    }

    /// The objects in the token under test, as pkcs11-tool lists them.
    pub fn token_objects(&self) -> String {
        match &self.tpm {
            Some(t) if self.token == "tpm" => t.objects(),
            _ => self.daemon.pkcs11_objects(),
        }
    }
}

/// The KPS project (its id) that [`faces_toml`] configures.
pub const KPS_PROJECT: &str = "0123456789abcdef0123456789abcdef";
/// The 004 project that [`faces_toml`] configures; its one environment is `Production`.
pub const APIOPS_KEYS: &str = "/apiops/projects/MyProject/keys/";

/// Config for the token-agnostic face tests: a KPS project (namespace `kps`, which allows
/// exportable keys and plain exports) and a 004 project (namespace `web`, environment
/// `Production`), both on token `token`. Callers reach them over the socket as root.
pub fn faces_toml(token: &str) -> String {
    format!(
        r#"
[namespaces.kps]
allow_exportable = true
allow_unencrypted_export = true

[namespaces.web]
allow_unencrypted_export = true

[kps.projects.{KPS_PROJECT}]
namespace = "kps"
token = "{token}"

[apiops]
exportable = false
[apiops.projects.MyProject]
namespace = "web"
[apiops.environments]
Production = "{token}"
"#
    )
}

/// Runs openssl in `dir`; its stdout.
pub fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}
