//! The daemon's process hardening (`src/server/hardening.rs`), checked from outside the way
//! another process of its user would try. The daemon, a control process and the reader run as
//! the same uid with the same capabilities and never CAP_SYS_PTRACE, so the kernel's only
//! reason to refuse the reader is that the daemon is not dumpable. With CAP_IPC_LOCK the daemon
//! locks its memory; without it (and the default RLIMIT_MEMLOCK) it does not, and says so.

mod common;

use common::{require, Daemon};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// No capabilities at all, as the unit's `CapabilityBoundingSet=` gives.
const NONE: &str = "-all";
/// Only CAP_IPC_LOCK (what `LimitMEMLOCK=infinity` allows without a capability; this
/// container cannot raise the limit, so the capability stands in for it).
const IPC_LOCK: &str = "-all,+ipc_lock";

/// Runs `program args` as the same uid (root) with only the capabilities `caps` leaves.
fn capless(caps: &str, program: &str, args: &[&str]) -> Command {
    let mut c = Command::new("setpriv");
    c.args([&format!("--bounding-set={caps}"), "--inh-caps=-all", "--", program]).args(args);
    c
}

fn read(caps: &str, pid: u32, file: &str) -> Output {
    capless(caps, "cat", &[&format!("/proc/{pid}/{file}")]).output().unwrap()
}

/// Starts `keyport serve` without capabilities and waits for its socket.
fn start_capless(caps: &str) -> Daemon {
    let mut d = Daemon::config("");
    let log = std::fs::File::create(d.dir.path().join("serve.log")).unwrap();
    let config = d.config.to_str().unwrap().to_string();
    let mut c = capless(caps, env!("CARGO_BIN_EXE_keyport"), &["serve", "--config", &config]);
    c.env_remove("KEYPORT_CONFIG").env("KEYPORT_LOG", "info,cryptoki=off").stdout(Stdio::null()).stderr(log);
    d.child = Some(c.spawn().unwrap());
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(&d.socket).is_err() {
        if let Some(status) = d.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("keyport exited ({status}) at start:\n{}", d.log());
        }
        assert!(start.elapsed() < Duration::from_secs(60), "keyport did not start in 60 s:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(25));
    }
    d
}

fn vm_locked_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmLck:")).expect("VmLck in /proc/<pid>/status");
    line["VmLck:".len()..].split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
#[ignore = "needs root: drops capabilities from root with setpriv; scripts/test runs it"]
fn daemon_is_not_dumpable_and_locks_its_memory_where_allowed() {
    common::require_root("drops capabilities from root with setpriv");
    require("setpriv");

    // The control: an ordinary (dumpable) process started the same way is readable by a
    // same-uid process without CAP_SYS_PTRACE, so a refusal below is the daemon's doing.
    let mut control = capless(IPC_LOCK, "sleep", &["60"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let open = read(IPC_LOCK, control.id(), "environ");
    control.kill().unwrap();
    control.wait().unwrap();
    assert!(open.status.success(), "the control process should be readable: {}", String::from_utf8_lossy(&open.stderr));

    let d = start_capless(IPC_LOCK);
    let pid = d.child.as_ref().unwrap().id();
    for file in ["environ", "mem"] {
        let out = read(IPC_LOCK, pid, file);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "/proc/{pid}/{file} was readable by the same uid without CAP_SYS_PTRACE");
        assert!(err.contains("Permission denied") || err.contains("Operation not permitted"), "/proc/{pid}/{file}: {err}");
    }
    let log = d.log();
    assert_eq!(log.matches("process hardening").count(), 1, "one hardening line at start:\n{log}");
    assert!(log.contains("not dumpable") && log.contains("memory locked"), "{log}");
    assert!(vm_locked_kb(pid) > 0, "VmLck is 0: the daemon's memory is not locked");

    // Under a finite RLIMIT_MEMLOCK and no CAP_IPC_LOCK, locking every future page could make
    // allocations fail later: the daemon does not lock, runs, and says how to allow it.
    let d = start_capless(NONE);
    let pid = d.child.as_ref().unwrap().id();
    let log = d.log();
    assert!(log.contains("memory NOT locked") && log.contains("LimitMEMLOCK=infinity"), "{log}");
    assert_eq!(vm_locked_kb(pid), 0);
    assert!(!read(NONE, pid, "environ").status.success(), "still not dumpable");
    let (status, _) = d.curl("GET", "/keyport/v1/health", None, &[]);
    assert_eq!(status, 200);
}

/// Aborts (SIGABRT: Rust handles SIGSEGV itself, for stack overflows) with the core size unlimited and the directory writable: the kernel writes a core
/// for an ordinary process (the control) but none for keyport, which held a PIN, a DEK and a
/// just-exported private key. Checked by the kernel's own verdict (the wait status's
/// core-dumped bit, whatever `core_pattern` says) and by the files left in its directories.
#[test]
fn a_crash_leaves_no_core_dump() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use std::os::unix::process::ExitStatusExt;
    require("prlimit");
    let unlimited = |pid: u32| {
        let out = Command::new("prlimit").args(["--pid", &pid.to_string(), "--core=unlimited:unlimited"]).output().unwrap();
        assert!(out.status.success(), "prlimit: {}", String::from_utf8_lossy(&out.stderr));
    };
    let cores_in = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("core"))
            .collect()
    };

    // The control: `sleep` in its own folder, killed the same way, dumps core.
    let control_dir = tempfile::tempdir().unwrap();
    let mut control = Command::new("sleep").arg("60").current_dir(control_dir.path()).spawn().unwrap();
    unlimited(control.id());
    kill(Pid::from_raw(control.id() as i32), Signal::SIGABRT).unwrap();
    let status = control.wait().unwrap();
    assert!(status.core_dumped(), "this machine writes no core for an ordinary process ({status}); the test cannot tell");

    let mut d = Daemon::config("");
    d.spawn();
    let pid = d.child.as_ref().unwrap().id();
    unlimited(pid);
    let (s, v) = d.curl("POST", "/keyport/v1/keys", Some(r#"{"name":"k","algorithm":"ec-p256","exportable":true}"#), &[]);
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap();
    let (s, v) = d.curl("POST", &format!("/keyport/v1/keys/{id}/export"), Some(r#"{"format":"pkcs8","passphrase":"correct horse"}"#), &[]);
    assert_eq!(s, 200, "{v}");
    kill(Pid::from_raw(pid as i32), Signal::SIGABRT).unwrap();
    let status = d.child.as_mut().unwrap().wait().unwrap();
    d.child = None;
    assert_eq!(status.signal(), Some(Signal::SIGABRT as i32), "{status}");
    assert!(!status.core_dumped(), "the kernel dumped keyport's memory ({status})");
    let cwd = std::env::current_dir().unwrap();
    for dir in [cwd.as_path(), d.dir.path(), &d.dir.path().join("state")] {
        assert!(cores_in(dir).is_empty(), "a core file in {}: {:?}", dir.display(), cores_in(dir));
    }
}
