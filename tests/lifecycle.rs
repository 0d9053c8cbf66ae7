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
    if !require("curl") || !require("pkcs11-tool") {
        return;
    }
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
    assert!(d.log().contains("key marked missing"), "{}", d.log());
    let (_, h) = d.curl("GET", "/keyport/v1/health", None, &[]);
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(h.to_string().contains("missing"), "{h}");
    // DELETE removes the row of a missing key.
    assert_eq!(d.curl("DELETE", &format!("/keyport/v1/keys/{orphan}"), None, &[]).0, 200);
    assert_eq!(names(&d), vec!["kept"]);
}

#[test]
fn two_daemons_refuse_to_share_one_socket_and_a_stale_socket_is_replaced() {
    if !require("curl") {
        return;
    }
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
    if !require("systemd-socket-activate") || !require("curl") {
        return;
    }
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
    if !require("curl") {
        return;
    }
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
