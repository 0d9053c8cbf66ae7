//! The CLI's exit codes, which scripts rely on: 0 done, 1 refused by the daemon, 2 usage or
//! config, 3 daemon unreachable (including permission denied on the socket), 4 partial failure.

mod common;

use common::{free_port, Daemon};
use std::process::{Command, Output};

fn cli(d: Option<&Daemon>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keyport"));
    c.env_remove("KEYPORT_SOCKET").args(args);
    if let Some(d) = d {
        c.arg("--socket").arg(&d.socket);
    }
    c.output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited")
}

#[test]
fn unreachable_usage_and_refused() {
    let none = cli(None, &["health", "--socket", "/nonexistent/keyport.sock"]);
    assert_eq!(code(&none), 3, "{}", String::from_utf8_lossy(&none.stderr));
    assert!(String::from_utf8_lossy(&none.stderr).contains("is `keyport serve` running?"));

    let usage = cli(None, &["keys", "generate", "--name"]);
    assert_eq!(code(&usage), 2);

    let d = Daemon::start("");
    let ok = cli(Some(&d), &["health"]);
    assert_eq!(code(&ok), 0, "{}", String::from_utf8_lossy(&ok.stderr));
    let refused = cli(Some(&d), &["keys", "show", "00112233445566778899aabbccddeeff"]);
    assert_eq!(code(&refused), 1, "{}", String::from_utf8_lossy(&refused.stderr));
}

#[test]
#[ignore = "needs root: runs the CLI as uid 65534 through setpriv; scripts/test runs it"]
fn permission_denied_on_the_socket_says_so() {
    common::require_root("runs the CLI as uid 65534 through setpriv");
    common::require("setpriv");
    let d = Daemon::start("");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The test folder is private too; open it so only the socket's own mode refuses.
    for dir in d.socket.ancestors().skip(1).take_while(|p| p.starts_with(d.dir.path())) {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_keyport"), "health", "--socket"])
        .arg(&d.socket)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), 3, "{err}");
    assert!(err.contains("permission denied on"), "{err}");
    assert!(!err.contains("is `keyport serve` running?"), "{err}");
}

#[test]
fn sync_now_with_the_vault_down_is_a_partial_failure() {
    let mut d = Daemon::config("");
    let token = d.dir.path().join("vault.token");
    std::fs::write(&token, "s.nothing\n").unwrap();
    let mut text = std::fs::read_to_string(&d.config).unwrap();
    text.push_str(&format!(
        "\n[sync]\naddress = \"http://127.0.0.1:{}\"\ntoken = {{ file = \"{}\" }}\nhost = \"h1\"\ninterval_secs = 3600\njitter_secs = 0\nretry_base_secs = 1\nnamespaces = [\"default\"]\n",
        free_port(),
        token.display()
    ));
    std::fs::write(&d.config, text).unwrap();
    d.spawn();
    let (s, v) = d.curl("POST", "/keyport/v1/keys", Some(r#"{"name":"k","algorithm":"ec-p256","exportable":true}"#), &[]);
    assert_eq!(s, 201, "{v}");
    let out = cli(Some(&d), &["sync", "now", "--wait", "20"]);
    assert_eq!(code(&out), 4, "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
