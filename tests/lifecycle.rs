//! Start-up, crash and shutdown behaviour of the daemon process.

mod common;
use common::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn wait_exit(c: &mut std::process::Child, secs: u64) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s;
        }
        assert!(start.elapsed() < Duration::from_secs(secs), "process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn statuses(d: &Daemon) -> Vec<String> {
    let (s, v) = d.curl("GET", "/keyport/v1/keys", None, &[]);
    assert_eq!(s, 200);
    v["keys"].as_array().unwrap().iter().map(|k| k["status"].as_str().unwrap().to_string()).collect()
}

fn names(d: &Daemon) -> Vec<String> {
    let (s, v) = d.curl("GET", "/keyport/v1/keys", None, &[]);
    assert_eq!(s, 200);
    v["keys"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn sigkill_between_token_write_and_store_commit_is_repaired_at_next_start() {
    require("curl");
    require("pkcs11-tool");
    let mut d = Daemon::start("");
    d.generate("survivor", "ec-p256", false);
    assert!(d.stop().success());

    // Restart with the test hook that pauses after the token write, before the commit.
    d.env.push(("KEYPORT_TEST_PAUSE_BEFORE_COMMIT_MS".into(), "60000".into()));
    d.spawn();
    let mut pending = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "90", "--unix-socket"])
        .arg(&d.socket)
        .args(["-X", "POST", "-H", "content-type: application/json", "--data-binary", r#"{"name":"crashy","algorithm":"rsa-2048"}"#])
        .arg("http://localhost/keyport/v1/keys")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !object_blocks(&d.pkcs11_objects()).iter().any(|b| b.1 == "crashy") {
        assert!(start.elapsed() < Duration::from_secs(60), "the token write never happened:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    d.kill9();
    let _ = pending.kill();
    let _ = pending.wait();
    assert!(object_blocks(&d.pkcs11_objects()).iter().any(|b| b.1 == "crashy"), "the crash left objects behind");

    d.env.clear();
    d.spawn();
    assert!(!object_blocks(&d.pkcs11_objects()).iter().any(|b| b.1 == "crashy"), "reconciliation removed the unacknowledged objects");
    assert_eq!(names(&d), vec!["survivor"], "the committed key is untouched");
    assert!(d.log().contains("repaired: removed an unfinished key creation"), "{}", d.log());
    d.generate("crashy", "ec-p256", false); // the name is free again
}

#[test]
fn an_inventory_row_whose_objects_are_gone_is_marked_missing_at_start() {
    require("curl");
    require("pkcs11-tool");
    let mut d = Daemon::start("");
    let orphan = d.generate("orphan", "ec-p256", false)["id"].as_str().unwrap().to_string();
    d.generate("kept", "ed25519", false);
    assert!(d.stop().success());
    for t in ["privkey", "pubkey"] {
        let out = d.pkcs11_tool(&["--delete-object", "--type", t, "--label", "orphan"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    d.spawn();
    // Never removed from the inventory because its objects went away: listed as missing.
    assert_eq!(names(&d), vec!["orphan", "kept"]);
    assert_eq!(statuses(&d), vec!["missing", "active"]);
    assert!(d.log().contains(" marked_missing=1 "), "one line with the counts: {}", d.log());
    let (_, h) = d.curl("GET", "/keyport/v1/health", None, &[]);
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(h.to_string().contains("missing"), "{h}");
    // DELETE removes the row of a missing key.
    assert_eq!(d.curl("DELETE", &format!("/keyport/v1/keys/{orphan}"), None, &[]).0, 200);
    assert_eq!(names(&d), vec!["kept"]);
}

/// A large inventory whose token objects are all gone (a wiped or replaced token): the start
/// marks every row missing in one transaction and logs one line with the counts, not a line per
/// key (a 100,000-row store used to take over 30 s: a linear search per row and 200,000 lines).
#[test]
fn a_large_inventory_whose_objects_are_gone_is_reconciled_in_one_pass_with_one_log_line() {
    require("curl");
    const N: usize = 20_000;
    let mut d = Daemon::start("");
    d.generate("real", "ec-p256", false);
    assert!(d.stop().success());
    fill_store(&d.dir.path().join("state/keyport.db"), N);
    d.spawn();
    let log = d.log();
    assert_eq!(log.matches("key marked missing").count(), 0, "no line per key at info level");
    assert_eq!(log.matches("reconcile.mark-missing").count(), 0, "no audit line per key at info level");
    assert_eq!(log.matches(&format!(" marked_missing={N} ")).count(), 1, "one summary line: {}", &log[..log.len().min(4000)]);
    let (_, h) = d.curl("GET", "/keyport/v1/health", None, &[]);
    assert!(h.to_string().contains(&format!("{N} in token 'soft'")), "{h}");
    // Every row is missing, the real key is active, and each change is in the audit log.
    let (s, v) = d.curl("GET", "/keyport/v1/keys?limit=1", None, &[]);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["keys"][0]["name"], "real");
    assert_eq!(v["keys"][0]["status"], "active");
    let (s, v) = d.curl("GET", "/keyport/v1/keys?name=bulk-019999", None, &[]);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["keys"][0]["status"], "missing", "{v}");
    let store = keyport::store::Store::open(&d.dir.path().join("state/keyport.db")).unwrap();
    assert_eq!(store.missing_keys().unwrap(), vec![("soft".to_string(), N)]);
    // A second start has nothing to change.
    drop(store);
    assert!(d.stop().success());
    d.spawn();
    assert!(!d.log().contains(" marked_missing="), "nothing changed the second time: {}", d.log());
}

/// `n` inventory rows (no token objects) written straight into a stopped daemon's store.
fn fill_store(db: &std::path::Path, n: usize) {
    use keyport::store::{fixtures, records, Store};
    let store = Store::open(db).unwrap();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|&i| {
                fixtures::generated_key(
                    format!("{:032x}", 0xb000_0000_0000_0000u128 + i as u128),
                    format!("bulk-{i:06}"),
                    i,
                    records::now(),
                )
            })
            .collect();
        fixtures::commit(&store, &rows);
    }
}

#[test]
fn two_daemons_refuse_to_share_one_socket_and_a_stale_socket_is_replaced() {
    require("curl");
    let mut first = Daemon::start("");
    let second = Daemon::config("");
    let text =
        std::fs::read_to_string(&second.config).unwrap().replace(&second.socket.display().to_string(), &first.socket.display().to_string());
    std::fs::write(&second.config, text).unwrap();
    let mut c = second.command().args(["serve", "--config"]).arg(&second.config).stderr(Stdio::piped()).spawn().unwrap();
    let status = wait_exit(&mut c, 60);
    let mut err = String::new();
    std::io::Read::read_to_string(c.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(err.contains("another keyport is already listening"), "{err}");
    assert_eq!(first.curl("GET", "/keyport/v1/health", None, &[]).0, 200, "the first daemon still serves");

    // A crash leaves the socket file; the next start replaces it.
    first.kill9();
    assert!(first.socket.exists());
    first.spawn();
    assert_eq!(first.curl("GET", "/keyport/v1/health", None, &[]).0, 200);

    // A clean stop removes it.
    assert!(first.stop().success());
    assert!(!first.socket.exists());
}

#[test]
fn a_regular_file_at_the_socket_path_is_never_removed() {
    let d = Daemon::config("");
    std::fs::write(&d.socket, "precious").unwrap();
    let out = d.command().args(["serve", "--config"]).arg(&d.config).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a socket"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&d.socket).unwrap(), "precious");
}

#[test]
fn a_wrong_pin_stops_start_up_with_one_clear_line() {
    let mut d = Daemon::start("");
    assert!(d.stop().success());
    std::fs::write(d.dir.path().join("pin"), "0000\n").unwrap();
    let out = d.command().args(["serve", "--config"]).arg(&d.config).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.starts_with("keyport: ")).expect("an error line");
    assert!(line.contains("token 'soft'") && line.contains("wrong PIN"), "{err}");
}

#[test]
fn config_check_names_the_key_and_the_fix() {
    let d = Daemon::config("");
    let bin = env!("CARGO_BIN_EXE_keyport");
    let ok = std::process::Command::new(bin).args(["config", "check"]).arg(&d.config).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));

    let unknown = d.dir.path().join("unknown.toml");
    std::fs::write(&unknown, std::fs::read_to_string(&d.config).unwrap().replace("[limits]", "[limits]\nmax_bodyy_bytes = 1")).unwrap();
    let out = std::process::Command::new(bin).args(["config", "check"]).arg(&unknown).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_bodyy_bytes") && err.contains("fix its spelling"), "{err}");

    let nopin = d.dir.path().join("nopin.toml");
    let text = std::fs::read_to_string(&d.config).unwrap();
    let text = text.replace(&format!("softhsm = {{ dir = \"{}\" }}", d.dir.path().join("softhsm").display()), "");
    std::fs::write(&nopin, text.replace(&d.dir.path().join("pin").display().to_string(), "/nonexistent/keyport.pin")).unwrap();
    let out = std::process::Command::new(bin).args(["config", "check"]).arg(&nopin).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tokens[0].pin.file") && err.contains("/nonexistent/keyport.pin does not exist"), "{err}");
}

#[test]
fn the_cli_speaks_to_the_daemon_over_the_socket() {
    let d = Daemon::start("");
    let bin = env!("CARGO_BIN_EXE_keyport");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin).args(args).arg("--socket").arg(&d.socket).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, out, _) = run(&["keys", "generate", "--name", "cli-key", "--algorithm", "ec-p384", "--json"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    let (code, out, _) = run(&["keys", "list"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("ID") && out.contains("cli-key") && out.contains("ec-p384"), "{out}");
    let (code, out, _) = run(&["health"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("status: ok"), "{out}");
    let (code, _, err) = run(&["keys", "generate", "--name", "cli-key", "--algorithm", "ec-p256"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("error (409)") && err.contains("already exists"), "{err}");
    let (code, out, _) = run(&["keys", "delete", &id]);
    assert_eq!(code, Some(0), "{out}");
    let (code, _, err) = run(&["keys", "show", &id]);
    assert_eq!(code, Some(1));
    assert!(err.contains("404"), "{err}");
}

#[test]
fn systemd_socket_activation_serves_the_passed_socket() {
    require("systemd-socket-activate");
    require("curl");
    let mut d = Daemon::config("");
    let activated = d.dir.path().join("activated.sock");
    let child = std::process::Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&activated)
        .arg(env!("CARGO_BIN_EXE_keyport"))
        .args(["serve", "--config"])
        .arg(&d.config)
        .env("KEYPORT_LOG", "info,cryptoki=off")
        .stderr(std::fs::File::create(d.dir.path().join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    d.child = Some(child);
    let start = Instant::now();
    while !activated.exists() {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    d.socket = activated;
    let (s, v) = d.curl("GET", "/keyport/v1/health", None, &["--max-time", "60"]);
    assert_eq!(s, 200, "{v}\n{}", d.log());
    assert!(d.log().contains("passed by systemd"), "{}", d.log());
    assert!(!d.dir.path().join("keyport.sock").exists(), "the configured path is not bound when activated");
}

#[test]
fn a_client_that_hangs_up_mid_request_does_not_leave_half_a_key() {
    require("curl");
    let mut d = Daemon::config("");
    // Pause between the token write and the store commit, longer than the client waits.
    d.env.push(("KEYPORT_TEST_PAUSE_BEFORE_COMMIT_MS".into(), "1500".into()));
    d.spawn();
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "0.3", "--unix-socket"])
        .arg(&d.socket)
        .args(["-X", "POST", "-H", "content-type: application/json", "--data-binary", r#"{"name":"hangup","algorithm":"ec-p256"}"#])
        .arg("http://localhost/keyport/v1/keys")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(28), "curl gave up (timeout) before the daemon answered");
    let start = std::time::Instant::now();
    loop {
        let (s, v) = d.curl("GET", "/keyport/v1/keys?name=hangup", None, &[]);
        assert_eq!(s, 200, "{v}");
        if v["keys"].as_array().is_some_and(|k| k.len() == 1) {
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(20), "the key was never committed:\n{}", d.log());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The name is taken by a real key, not by a stale creation intent.
    let (s, v) =
        d.curl("POST", "/keyport/v1/keys", Some(r#"{"name":"hangup","algorithm":"ec-p256"}"#), &["-H", "content-type: application/json"]);
    assert_eq!(s, 409, "{v}");
    assert!(!v.to_string().contains("intent"), "{v}");
}

// --- issue 19: restarts that fail, deletes that half-happen ----------------------------------

/// Starts `keyport serve` and waits for the socket only (HTTPS needs the token's TLS key, which
/// a wiped token no longer has).
fn spawn_socket_only(d: &mut Daemon) {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(d.dir.path().join("serve.log")).unwrap();
    let child = d.command().args(["serve", "--config"]).arg(&d.config).stdout(Stdio::null()).stderr(log).spawn().unwrap();
    d.child = Some(child);
    let start = Instant::now();
    loop {
        if let Some(status) = d.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("keyport exited ({status}) at start:\n{}", d.log());
        }
        if d.log().contains("keyport ready") && std::os::unix::net::UnixStream::connect(&d.socket).is_ok() {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "keyport did not start in 60 s:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn health(d: &Daemon) -> serde_json::Value {
    d.curl("GET", "/keyport/v1/health", None, &[]).1
}

/// The reason health gives for `component`, if any.
fn problem(h: &serde_json::Value, component: &str) -> Option<String> {
    h["problems"].as_array()?.iter().find(|p| p["component"] == component).map(|p| p["reason"].as_str().unwrap().to_string())
}

/// The one token folder under the daemon's SoftHSM token directory.
fn token_folder(d: &Daemon) -> std::path::PathBuf {
    let dirs: Vec<_> = std::fs::read_dir(d.dir.path().join("softhsm/tokens")).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

fn audit_count(d: &Daemon, action: &str, key_id: &str) -> i64 {
    let db = rusqlite::Connection::open(d.dir.path().join("state/keyport.db")).unwrap();
    db.query_row("SELECT COUNT(*) FROM audit WHERE action=?1 AND key_id=?2", [action, key_id], |r| r.get(0)).unwrap()
}

#[test]
fn a_torn_token_object_is_reported_and_start_up_goes_on() {
    require("curl");
    let mut d = Daemon::start("");
    let before = d.generate("before", "ec-p256", false)["id"].as_str().unwrap().to_string();
    assert!(d.stop().success());
    // What a kill leaves while SoftHSM writes an object: the 8-byte generation counter and no
    // attribute (C_GetAttributeValue(CKA_CLASS) answers CKR_ATTRIBUTE_VALUE_INVALID), and an
    // empty file.
    let folder = token_folder(&d);
    let torn = folder.join("0badc0de-0000-4000-8000-000000000008.object");
    std::fs::write(&torn, 1u64.to_be_bytes()).unwrap();
    std::fs::write(folder.join("0badc0de-0000-4000-8000-000000000008.lock"), b"").unwrap();
    std::fs::write(folder.join("0badc0de-0000-4000-8000-000000000000.object"), b"").unwrap();

    d.spawn();
    let h = health(&d);
    assert_eq!(h["status"], "degraded", "{h}");
    let reason = problem(&h, "token:soft:objects").unwrap_or_else(|| panic!("no problem reported: {h}"));
    assert!(reason.contains("1 unreadable object") && reason.contains("CKR_ATTRIBUTE_VALUE_INVALID"), "{reason}");
    assert!(reason.contains(&torn.display().to_string()) && reason.contains("move the file"), "{reason}");
    assert!(d.log().contains("unreadable token object"), "{}", d.log());
    // Keys still work: list, generate, delete.
    assert_eq!(names(&d), vec!["before"]);
    d.generate("after", "ed25519", false);
    assert_eq!(d.curl("DELETE", &format!("/keyport/v1/keys/{before}"), None, &[]).0, 200);
    assert_eq!(names(&d), vec!["after"]);
}

#[test]
fn a_wiped_token_is_never_re_created_and_its_keys_are_kept_as_missing() {
    require("curl");
    require("softhsm2-util");
    let mut d = Daemon::start("");
    let a = d.generate("a", "ec-p256", false)["id"].as_str().unwrap().to_string();
    d.generate("b", "ed25519", false);
    let (s, _) = d.curl_https("GET", "/v1/edgeinstances", None, &["-H", "tppl-api-key: tlspc-key"]);
    assert_eq!(s, 200);
    let old_serial = health(&d)["tokens"][0]["serial"].as_str().unwrap().to_string();

    // Wipe the token folder under the running daemon, then restart.
    std::fs::remove_dir_all(token_folder(&d)).unwrap();
    d.kill9();
    spawn_socket_only(&mut d);
    let tokens = std::fs::read_dir(d.dir.path().join("softhsm/tokens")).unwrap().count();
    assert_eq!(tokens, 0, "keyport must not create a new token in place of one that held keys");
    let h = health(&d);
    assert_eq!(h["status"], "degraded", "{h}");
    let reason = problem(&h, "token:soft").unwrap_or_else(|| panic!("{h}"));
    assert!(reason.contains("is not there") && reason.contains("does not create") && reason.contains(&old_serial), "{reason}");
    assert_eq!(names(&d), vec!["a", "b"], "the inventory is not emptied because the token went away");
    let (s, v) = d.curl("POST", "/keyport/v1/keys", Some(r#"{"name":"c","algorithm":"ec-p256"}"#), &[]);
    assert_eq!(s, 503, "{v}");

    // The operator makes a new token with the same label: a different token, said loudly.
    let out = std::process::Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", d.softhsm_conf())
        .args(["--init-token", "--free", "--label", "test", "--so-pin", "12345678", "--pin", &d.pin()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    d.kill9();
    d.spawn();
    assert!(d.log().contains("TOKEN REPLACED"), "{}", d.log());
    let h = health(&d);
    let reason = problem(&h, "token:soft:identity").unwrap_or_else(|| panic!("{h}"));
    assert!(reason.contains("different token") && reason.contains(&old_serial), "{reason}");
    assert_eq!(names(&d), vec!["a", "b"]);
    assert_eq!(statuses(&d), vec!["missing", "missing"]);
    // Without its at-rest key the DEK cannot open: started without it, imports answer 503.
    let reason = problem(&h, "dek").unwrap_or_else(|| panic!("{h}"));
    assert!(reason.contains("at-rest key") && reason.contains("503"), "{reason}");
    let body = r#"{"edgeInstanceId":"x","encryptionKeyId":"y","importInformation":[]}"#;
    let (s, v) = d.curl_https("POST", "/outagedetection/v1/certificates/imports", Some(body), &["-H", "tppl-api-key: tlspc-key"]);
    assert_eq!(s, 503, "{v}");
    assert!(v["errors"][0]["message"].as_str().unwrap().contains("edge encryption key"), "{v}");
    // The new token works for new keys; a missing key's row goes with DELETE.
    d.generate("c", "ec-p256", false);
    assert_eq!(d.curl("DELETE", &format!("/keyport/v1/keys/{a}"), None, &[]).0, 200);
    assert_eq!(names(&d), vec!["b", "c"]);
}

/// A tmpfs at `path`, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount tmpfs (tests run as root): {}", String::from_utf8_lossy(&out.stderr));
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros into `file` until the file system is full.
fn fill(file: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(file).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}

#[test]
#[ignore = "needs root: mounts a small tmpfs; scripts/test runs it"]
fn a_full_disk_at_start_gives_a_read_only_daemon_not_a_failed_start() {
    common::require_root("mounts a small tmpfs");
    require("curl");
    require("pkcs11-tool");
    require("mount");
    let mut d = Daemon::config("");
    let state = d.dir.path().join("state");
    let _fs = Tmpfs::mount(&state, "8m");
    d.spawn();
    d.generate("a", "ec-p256", false);
    d.generate("b", "ec-p256", false);
    assert!(d.stop().success());
    // Something for reconciliation to write: b's objects are gone (it is marked missing).
    for t in ["privkey", "pubkey"] {
        assert!(d.pkcs11_tool(&["--delete-object", "--type", t, "--label", "b"]).status.success());
    }
    fill(&state.join("filler"));

    d.spawn();
    let h = health(&d);
    assert_eq!(h["status"], "degraded", "{h}");
    let reason = problem(&h, "store").unwrap_or_else(|| panic!("{h}\n{}", d.log()));
    assert!(reason.contains("full") && reason.contains("read-only") && reason.contains("free space"), "{reason}");
    assert!(d.log().contains("running read-only"), "{}", d.log());
    // Reads work.
    assert_eq!(names(&d), vec!["a", "b"]);
    let (s, v) = d.curl("POST", "/keyport/v1/keys", Some(r#"{"name":"c","algorithm":"ec-p256"}"#), &[]);
    assert!(s >= 500, "a write fails as a server fault while the disk is full: {s} {v}");
    // Space freed: writes work again without a restart.
    std::fs::remove_file(state.join("filler")).unwrap();
    d.generate("c", "ec-p256", false);
    d.kill9();
}

#[test]
fn a_delete_the_token_cannot_finish_answers_503_and_finishes_later() {
    require("curl");
    require("pkcs11-tool");
    let mut d = Daemon::start("");
    let gone = d.generate("gone", "rsa-2048", false)["id"].as_str().unwrap().to_string();
    d.generate("stays", "ec-p256", false);
    // The token goes away (its folder moved), a DELETE arrives.
    let folder = token_folder(&d);
    let away = d.dir.path().join("away");
    std::fs::rename(&folder, &away).unwrap();
    let (s, v) = d.curl("DELETE", &format!("/keyport/v1/keys/{gone}"), None, &[]);
    assert_eq!(s, 503, "never acknowledged while the objects are still there: {v}\n{}", d.log());
    // Recorded: no longer listed or usable; a second DELETE finds nothing.
    assert_eq!(names(&d), vec!["stays"]);
    assert_eq!(d.curl("GET", &format!("/keyport/v1/keys/{gone}"), None, &[]).0, 404);
    assert_eq!(d.curl("DELETE", &format!("/keyport/v1/keys/{gone}"), None, &[]).0, 404);
    std::thread::sleep(Duration::from_millis(1500));
    let h = health(&d);
    assert!(problem(&h, "deletes").is_some_and(|r| r.contains("1 recorded delete")), "{h}");
    // The token comes back: the background retry finishes the delete, without a restart.
    std::fs::rename(&away, &folder).unwrap();
    let start = Instant::now();
    while audit_count(&d, "key.delete", &gone) == 0 {
        assert!(start.elapsed() < Duration::from_secs(40), "the delete never finished:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let objects = object_blocks(&d.pkcs11_objects());
    assert!(!objects.iter().any(|b| b.1 == "gone"), "{objects:?}");
    assert!(objects.iter().any(|b| b.1 == "stays"), "{objects:?}");
    assert!(problem(&health(&d), "deletes").is_none());
    // And nothing is left for the next start.
    d.kill9();
    d.spawn();
    assert_eq!(names(&d), vec!["stays"]);
    assert_eq!(audit_count(&d, "key.delete", &gone), 1);
}

#[test]
fn an_interrupted_delete_is_finished_at_the_next_start() {
    require("curl");
    require("pkcs11-tool");
    let mut d = Daemon::start("");
    let id = d.generate("half", "ec-p256", false)["id"].as_str().unwrap().to_string();
    assert!(d.stop().success());
    // What a kill in the middle of a delete leaves: the intent recorded, the private key gone,
    // the public key still there.
    {
        let db = rusqlite::Connection::open(d.dir.path().join("state/keyport.db")).unwrap();
        db.execute(
            "INSERT INTO delete_intents(key_id, token, cka_id, namespace, name, principal, created_at)
             SELECT id, token, cka_id, namespace, name, 'root', created_at FROM keys WHERE id=?1",
            [&id],
        )
        .unwrap();
        db.execute("UPDATE keys SET status='deleting' WHERE id=?1", [&id]).unwrap();
    }
    assert!(d.pkcs11_tool(&["--delete-object", "--type", "privkey", "--label", "half"]).status.success());
    d.spawn();
    assert!(names(&d).is_empty(), "no half key is listed");
    assert!(!object_blocks(&d.pkcs11_objects()).iter().any(|b| b.1 == "half"), "the public key went too");
    assert!(d.log().contains("finished an interrupted delete"), "{}", d.log());
    assert_eq!(audit_count(&d, "key.delete", &id), 1);
}

#[test]
fn of_twenty_concurrent_deletes_of_one_key_exactly_one_wins() {
    require("curl");
    let d = Daemon::start("");
    let id = d.generate("contested", "ec-p256", false)["id"].as_str().unwrap().to_string();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(20));
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..20)
            .map(|_| {
                let (b, d, id) = (barrier.clone(), &d, &id);
                s.spawn(move || {
                    b.wait();
                    d.curl("DELETE", &format!("/keyport/v1/keys/{id}"), None, &[]).0
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 404).count(), 19, "{statuses:?}");
    assert_eq!(audit_count(&d, "key.delete", &id), 1);
}

/// A key object SoftHSM half-wrote: the generation counter and CKA_CLASS = CKO_PUBLIC_KEY, no
/// id, no label (what a kill inside C_GenerateKeyPair leaves).
fn write_half_made(folder: &std::path::Path, n: u8) {
    let bytes = [1u64.to_be_bytes(), 0u64.to_be_bytes(), 2u64.to_be_bytes(), 2u64.to_be_bytes()].concat();
    std::fs::write(folder.join(format!("4a1f0000-0000-4000-8000-0000000000{n:02x}.object")), bytes).unwrap();
    std::fs::write(folder.join(format!("4a1f0000-0000-4000-8000-0000000000{n:02x}.lock")), b"").unwrap();
}

fn key_objects_without_id(d: &Daemon) -> usize {
    object_blocks(&d.pkcs11_objects())
        .iter()
        .filter(|(kind, label, id)| kind.contains("Key Object") && label.is_empty() && id.is_empty())
        .count()
}

#[test]
fn half_made_key_objects_are_removed_after_an_interrupted_creation_and_only_reported_otherwise() {
    require("curl");
    require("pkcs11-tool");
    let mut d = Daemon::start("");
    d.generate("whole", "ec-p256", false);
    assert!(d.stop().success());
    let folder = token_folder(&d);
    write_half_made(&folder, 1);
    assert_eq!(key_objects_without_id(&d), 1);

    // No creation was interrupted: it might be another application's object; reported only.
    d.spawn();
    let h = health(&d);
    assert!(problem(&h, "token:soft:half-made").is_some_and(|r| r.contains("neither id nor label")), "{h}");
    assert!(d.stop().success());
    assert_eq!(key_objects_without_id(&d), 1);

    // keyport was killed inside a creation (its intent is left): the half-made object is its own.
    {
        let db = rusqlite::Connection::open(d.dir.path().join("state/keyport.db")).unwrap();
        db.execute(
            "INSERT INTO intents(key_id, token, cka_id, namespace, name, op, created_at)
             VALUES ('00112233445566778899aabbccddeeff', 'soft', x'00112233445566778899aabbccddeeff', 'default', 'killed', 'generate', '2026-01-01T00:00:00.000000Z')",
            [],
        )
        .unwrap();
    }
    d.spawn();
    assert!(d.log().contains("removed key objects half-made by an interrupted creation"), "{}", d.log());
    assert_eq!(key_objects_without_id(&d), 0);
    assert_eq!(names(&d), vec!["whole"]);
}
