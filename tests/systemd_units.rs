//! The shipped systemd files, checked by systemd's own tools: the units verify, the service's
//! hardening rates at most 1.5 in `systemd-analyze security --offline=yes`, and the sysusers
//! and tmpfiles entries create the keyport user and /etc/keyport in a scratch root.

mod common;

use std::path::Path;
use std::process::Command;

fn units_in(dir: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    // `verify` checks that ExecStart names an existing binary: point it at this build.
    let service = std::fs::read_to_string(src.join("keyport.service")).unwrap();
    assert!(service.contains("ExecStart=/usr/bin/keyport serve"), "the unit runs the packaged binary");
    std::fs::write(dir.join("keyport.service"), service.replace("/usr/bin/keyport", env!("CARGO_BIN_EXE_keyport"))).unwrap();
    std::fs::copy(src.join("keyport.socket"), dir.join("keyport.socket")).unwrap();
}

#[test]
fn units_verify_cleanly() {
    common::require("systemd-analyze");
    let dir = tempfile::tempdir().unwrap();
    units_in(dir.path());
    let out =
        Command::new("systemd-analyze").current_dir(dir.path()).args(["verify", "./keyport.service", "./keyport.socket"]).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "systemd-analyze verify: {said}");
    assert!(!said.contains("keyport.s"), "verify printed warnings about our units: {said}");
}

#[test]
fn service_hardening_rates_at_most_1_5() {
    common::require("systemd-analyze");
    let dir = tempfile::tempdir().unwrap();
    units_in(dir.path());
    let out = Command::new("systemd-analyze")
        .current_dir(dir.path())
        .args(["security", "--offline=yes", "--no-pager", "./keyport.service"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let level: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for keyport.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {text}{}", String::from_utf8_lossy(&out.stderr)));
    assert!(level <= 1.5, "exposure {level} > 1.5:\n{text}");
}

#[test]
#[ignore = "needs root: systemd-tmpfiles chowns to the keyport user; scripts/test runs it"]
fn sysusers_and_tmpfiles_make_the_user_and_config_folder() {
    common::require_root("systemd-tmpfiles chowns to the keyport user");
    common::require("systemd-sysusers");
    common::require("systemd-tmpfiles");
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let run = |tool: &str, args: &[&str]| {
        let out = Command::new(tool).arg(format!("--root={}", root.path().display())).args(args).output().unwrap();
        assert!(out.status.success(), "{tool}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run("systemd-sysusers", &[src.join("keyport.sysusers").to_str().unwrap()]);
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let user = passwd.lines().find(|l| l.starts_with("keyport:")).unwrap_or_else(|| panic!("no keyport user: {passwd}"));
    assert!(user.ends_with(":/var/lib/keyport:/usr/sbin/nologin"), "{user}");
    assert!(std::fs::read_to_string(root.path().join("etc/group")).unwrap().lines().any(|l| l.starts_with("keyport:")));
    run("systemd-tmpfiles", &["--create", src.join("keyport.tmpfiles").to_str().unwrap()]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(root.path().join("etc/keyport")).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o750);
}
