//! The README's quick start works when pasted in order: its shell blocks (after "## Quick
//! start", up to the next section) run with `sh -e` against a fresh daemon, from a folder laid
//! out as `./scripts/run` leaves it (`run/keyport.sock`, `target/release/keyport`).

mod common;

use common::Daemon;
use std::process::Command;

/// The fenced `sh` blocks of the README's quick start.
fn quick_start() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme.split("\n## Quick start\n").nth(1).expect("a Quick start section");
    let section = section.split("\n## ").next().unwrap();
    let mut blocks = Vec::new();
    let mut cur: Option<String> = None;
    for line in section.lines() {
        match (&mut cur, line.trim_end()) {
            (None, "```sh") => cur = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                cur = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            _ => {}
        }
    }
    assert!(!blocks.is_empty(), "no sh block in the quick start");
    blocks
}

#[test]
fn the_readme_quick_start_runs_as_pasted() {
    common::require("curl");
    let d = Daemon::start("");
    let cwd = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(cwd.path().join("run")).unwrap();
    std::fs::create_dir_all(cwd.path().join("target/release")).unwrap();
    std::os::unix::fs::symlink(&d.socket, cwd.path().join("run/keyport.sock")).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_keyport"), cwd.path().join("target/release/keyport")).unwrap();
    for block in quick_start() {
        let out = Command::new("sh")
            .arg("-ec")
            .arg(&block)
            .current_dir(cwd.path())
            .env_remove("KEYPORT_SOCKET")
            .env_remove("KEYPORT_API_KEY")
            .output()
            .unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "README block failed ({}):\n{block}\n---\n{said}\n---\n{}", out.status, d.log());
    }
    // What the block did is in the daemon.
    let (s, v) = d.curl("GET", "/keyport/v1/keys?name=web", None, &[]);
    assert_eq!((s, v["keys"].as_array().map(Vec::len)), (200, Some(1)), "{v}");
}
