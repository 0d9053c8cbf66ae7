//! What the benchmarks share: the SoftHSM module and a raw token of their own, set up the way
//! the research measured it (no daemon involved).
#![allow(dead_code)]

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub fn module() -> PathBuf {
    ["/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("softhsm2 installed (scripts/deps)")
}

/// A fresh SoftHSM token under `dir/raw` (softhsm2-util), initialized with OS locking and
/// logged in: the physical limit the daemon is compared against. Sets SOFTHSM2_CONF for this
/// process until [`close_raw_token`].
pub fn raw_token(dir: &Path) -> (Pkcs11, Slot, Session) {
    let hsm = dir.join("raw");
    std::fs::create_dir_all(hsm.join("tokens")).unwrap();
    let conf = hsm.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", hsm.join("tokens").display()),
    )
    .unwrap();
    let st = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args(["--init-token", "--free", "--label", "raw", "--pin", "1234", "--so-pin", "5678"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let p = Pkcs11::new(module()).unwrap();
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)).unwrap();
    let slot = p.get_slots_with_initialized_token().unwrap()[0];
    let s0 = p.open_rw_session(slot).unwrap();
    s0.login(UserType::User, Some(&AuthPin::new("1234".into()))).unwrap();
    (p, slot, s0)
}

pub fn close_raw_token(p: Pkcs11) {
    p.finalize().unwrap();
    std::env::remove_var("SOFTHSM2_CONF");
}

/// `keyport serve` (the bench build) on its own SoftHSM token under `dir`, with a root
/// principal, answering on `dir/keyport.sock`; stopped with SIGTERM when dropped.
/// `listen`, `token` and `extra` are TOML lines added to `[listen]`, `[[tokens]]` and the end.
pub struct BenchDaemon {
    child: std::process::Child,
    pub socket: PathBuf,
}

impl BenchDaemon {
    pub fn start(dir: &Path, listen: &str, token: &str, extra: &str) -> BenchDaemon {
        std::fs::create_dir_all(dir).unwrap();
        let socket = dir.join("keyport.sock");
        let config = dir.join("keyport.toml");
        std::fs::write(
            &config,
            format!(
                r#"state_dir = "{d}/state"
[listen]
socket = "{s}"
{listen}
[[tokens]]
name = "soft"
module = "{m}"
label = "bench"
pin = {{ file = "{d}/pin" }}
softhsm = {{ dir = "{d}/softhsm" }}
{token}
[[principals]]
name = "root"
uids = [0]
permissions = {{ "*" = ["admin"] }}
{extra}
"#,
                d = dir.display(),
                s = socket.display(),
                m = module().display()
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_keyport"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("KEYPORT_LOG", "warn,cryptoki=off")
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(start.elapsed() < std::time::Duration::from_secs(30), "keyport did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        BenchDaemon { child, socket }
    }
}

impl Drop for BenchDaemon {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}
