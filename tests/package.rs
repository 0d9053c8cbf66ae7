//! The Debian package: `scripts/package --dev` builds it with cargo-deb from the debug build
//! the tests already made (no release build: the test costs seconds, not minutes), `dpkg -i
//! --root` installs it into a scratch root (its postinst makes the keyport user there), and
//! `systemd-analyze verify` passes on the installed units.

mod common;

use common::require;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn run(c: &mut Command) -> String {
    let out = c.output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{c:?}: {said}");
    said
}

#[test]
fn the_package_installs_into_a_scratch_root_and_its_units_verify() {
    require("dpkg");
    require("systemd-analyze");
    require("systemd-sysusers");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let has_deb = Command::new(&cargo).args(["deb", "--version"]).output().map(|o| o.status.success()).unwrap_or(false);
    assert!(has_deb, "cargo-deb is missing: run scripts/deps-test (cargo install --locked cargo-deb)");
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let deb = work.path().join("keyport.deb");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The binary cargo-deb packages is this build's (target/debug/keyport).
    let bin = Path::new(env!("CARGO_BIN_EXE_keyport"));
    assert!(bin.ends_with("debug/keyport"), "{}", bin.display());
    run(Command::new("sh").arg(manifest.join("scripts/package")).args(["--dev", "--output"]).arg(&deb));
    let built = started.elapsed();

    let root = work.path().join("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    // Scripts run outside a chroot (the scratch root has no shell) with DPKG_ROOT set; the
    // scratch root has no libc6 package to depend on.
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-script-chrootless", "--force-depends", "--log=/dev/null", "-i"])
        .arg(&deb));
    for f in [
        "usr/bin/keyport",
        "usr/lib/systemd/system/keyport.service",
        "usr/lib/systemd/system/keyport.socket",
        "usr/lib/systemd/system/keyport-agent.socket",
        "usr/lib/sysusers.d/keyport.conf",
        "usr/lib/tmpfiles.d/keyport.conf",
        "usr/share/doc/keyport/examples/keyport.toml",
        "usr/share/doc/keyport/examples/hooks/confirm-log-and-allow.sh",
        "usr/share/bash-completion/completions/keyport",
        "usr/share/zsh/vendor-completions/_keyport",
        "usr/share/fish/vendor_completions.d/keyport.fish",
        "usr/share/man/man1/keyport.1.gz",
    ] {
        assert!(root.join(f).is_file(), "{f} is not in the package");
    }
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    assert!(passwd.lines().any(|l| l.starts_with("keyport:")), "postinst made no keyport user: {passwd}");
    let version = run(Command::new(root.join("usr/bin/keyport")).arg("--version"));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    let status = std::fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
    assert!(status.contains("Package: keyport") && status.contains("Status: install ok installed"), "{status}");

    // The installed units, as systemd reads them from that root. The root gets what any
    // Debian system has around them: the OS's own units (sysinit.target, network-online.target,
    // …) and /bin/kill (ExecReload); never over the package's files.
    let units = root.join("usr/lib/systemd/system");
    run(Command::new("cp").args(["-an", "/usr/lib/systemd/system/."]).arg(&units));
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::copy("/usr/bin/kill", root.join("usr/bin/kill")).unwrap();
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    let out = Command::new("systemd-analyze")
        .arg(format!("--root={}", root.display()))
        .args(["verify"])
        .arg(units.join("keyport.service"))
        .arg(units.join("keyport.socket"))
        .arg(units.join("keyport-agent.socket"))
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && !said.contains("keyport"), "systemd-analyze verify: {said}");
    eprintln!("package built in {:.1} s, whole test {:.1} s", built.as_secs_f64(), started.elapsed().as_secs_f64());
    assert!(started.elapsed().as_secs() < 120, "the package test should stay cheap");
}
