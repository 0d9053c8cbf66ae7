//! Issue 11 item 17: the documented environment overrides (`KEYPORT_STATE_DIR`, as the systemd
//! unit sets it, and `KEYPORT_LISTEN__TCP`) reach a real daemon; other `KEYPORT_…` variables
//! (`KEYPORT_LOG`, a PIN variable) are not taken for config.

mod common;
use common::*;

#[test]
fn documented_env_overrides_move_the_state_dir_and_the_tcp_port() {
    require("curl");
    let mut d = Daemon::config("");
    let dir = d.dir.path().to_path_buf();
    let other_port = free_port();
    let text = std::fs::read_to_string(&d.config).unwrap();
    let changed = text
        .replace(&format!("state_dir = \"{}\"", dir.join("state").display()), &format!("state_dir = \"{}\"", dir.join("unused").display()))
        .replace(&format!("tcp = \"127.0.0.1:{}\"", d.port), &format!("tcp = \"127.0.0.1:{other_port}\""));
    assert_ne!(text, changed);
    std::fs::write(&d.config, changed).unwrap();
    d.env.push(("KEYPORT_STATE_DIR".into(), dir.join("state").display().to_string()));
    d.env.push(("KEYPORT_LISTEN__TCP".into(), format!("127.0.0.1:{}", d.port)));
    d.env.push(("KEYPORT_STAGING_PIN".into(), "not config".into()));
    // spawn() waits for the store's TLS certificate under <dir>/state and for d.port.
    d.spawn();
    assert!(dir.join("state/keyport.db").exists(), "the store is where KEYPORT_STATE_DIR says");
    assert!(!dir.join("unused").exists(), "the config file's state_dir was overridden");
    let (s, v) = d.curl_https("GET", "/keyport/v1/health", None, &["-H", "X-Api-Key: reader-key"]);
    assert_eq!(s, 200, "HTTPS on the KEYPORT_LISTEN__TCP port: {v}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", other_port)).is_err(), "nothing on the config file's port");

    // `keyport config check` sees the same overrides.
    let out = d.command().args(["config", "check"]).arg(&d.config).env("KEYPORT_LISTEN__TCP", "0.0.0.0:1").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen.tcp"), "{}", String::from_utf8_lossy(&out.stderr));
}
