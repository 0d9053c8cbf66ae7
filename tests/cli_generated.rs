//! What the CLI generates from its own definitions: shell completions that bash loads, and a
//! manual page that man renders, both naming every subcommand.

mod common;

use std::process::Command;

const KEYPORT: &str = env!("CARGO_BIN_EXE_keyport");

#[test]
fn bash_loads_the_completions_and_completes_subcommands() {
    common::require("bash");
    let script = format!(
        r#"source <("{KEYPORT}" completions bash) && complete -p keyport && COMP_WORDS=(keyport ke) COMP_CWORD=1 COMP_LINE="keyport ke" COMP_POINT=10 && _keyport keyport ke keyport && printf '%s\n' "${{COMPREPLY[@]}}""#
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("-F _keyport keyport"), "{text}");
    assert!(text.lines().any(|l| l == "keys"), "`keyport ke<TAB>` should offer keys: {text}");
}

#[test]
fn man_renders_the_manual_page() {
    common::require("man");
    let roff = Command::new(KEYPORT).arg("man").output().unwrap();
    assert!(roff.status.success());
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("keyport.1");
    std::fs::write(&page, &roff.stdout).unwrap();
    let out = Command::new("man").env("MANWIDTH", "100").arg("-l").arg(&page).output().unwrap();
    // Without a terminal man marks bold as `X\bX` (overstrike): drop each char + backspace.
    let mut text = String::new();
    for c in String::from_utf8_lossy(&out.stdout).chars() {
        if c == '\u{8}' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for want in ["NAME", "SYNOPSIS", "keyport", "serve", "keys", "completions", "--log-format"] {
        assert!(text.contains(want), "man page lacks {want}: {text}");
    }
}

#[test]
fn generators_survive_a_reader_that_stops_early() {
    let out = Command::new("sh")
        .args(["-c", &format!("'{KEYPORT}' completions zsh | head -c 10 >/dev/null; '{KEYPORT}' man | head -c 10 >/dev/null; echo done")])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"), "{}", String::from_utf8_lossy(&out.stderr));
}
