//! What the benchmarks share: the SoftHSM module and a raw token of their own, set up the way
//! the research measured it (no daemon involved).
#![allow(dead_code)]

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A whole-number setting from the environment (`KEYPORT_BENCH_ROUNDS`, …), or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Store sizes from `KEYPORT_BENCH_SIZES` (comma-separated), or 100, 1,000 and 10,000.
pub fn env_sizes() -> Vec<usize> {
    std::env::var("KEYPORT_BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1000, 10_000])
}

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
        // KEYPORT_BENCH_BIN: another keyport build (an earlier commit's), for before/after runs.
        let bin = std::env::var("KEYPORT_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_keyport").to_string());
        let child = Command::new(bin).args(["serve", "--config"]).arg(&config).env("KEYPORT_LOG", "warn,cryptoki=off").spawn().unwrap();
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

/// One keep-alive HTTP/1.1 connection over keyport's Unix socket (the benches' client).
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<hyper::body::Bytes>>,
}

impl Conn {
    pub async fn open(socket: &Path) -> Conn {
        let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        Conn { sender }
    }

    /// `method path` with a JSON `body` (empty: none); the status and the whole body.
    pub async fn request(&mut self, method: &str, path: &str, body: String) -> (u16, hyper::body::Bytes) {
        use http_body_util::BodyExt;
        self.sender.ready().await.unwrap();
        let mut req = hyper::Request::builder().method(method).uri(path).header("host", "localhost");
        if !body.is_empty() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(http_body_util::Full::new(hyper::body::Bytes::from(body))).unwrap();
        let resp = self.sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.into_body().collect().await.unwrap().to_bytes())
    }

    pub async fn get(&mut self, path: &str) -> (u16, hyper::body::Bytes) {
        self.request("GET", path, String::new()).await
    }
}
