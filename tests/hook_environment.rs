//! What a hook inherits from the daemon (issue 16: "secrets never appear in … hook
//! environments"). The rotation hooks and the agent's confirm hook are programs the operator
//! names; they run while keyport holds the token PIN (here from its own environment), API keys,
//! export passphrases and private keys in memory. Each hook here writes down its whole
//! environment (as `env` prints it and as the kernel holds it) and every descriptor it was
//! given; none may carry a secret, and none may be an open file of the daemon's (the store, the
//! token's files, a listening socket).

mod common;

use common::{assert_no_secret_in, Daemon, SOFT_TOKEN};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// A hook body that appends its environment and descriptors to `out`.
fn dump_to(out: &Path) -> String {
    format!(
        "{{ echo '== env'; env; echo '== environ'; tr '\\0' '\\n' < /proc/self/environ; echo; echo '== fds'; ls -l /proc/self/fd/; }} >> {} 2>&1",
        out.display()
    )
}

/// The descriptors `ls -l /proc/self/fd/` listed in one dump section: (number, target).
fn descriptors(section: &str) -> Vec<(u32, String)> {
    section
        .lines()
        .filter_map(|l| {
            let (left, target) = l.split_once(" -> ")?;
            let fd = left.rsplit(' ').next()?.parse().ok()?;
            Some((fd, target.to_string()))
        })
        .collect()
}

/// Each `== fds` section may hold stdin, stdout, stderr and the directory `ls` itself opened
/// (fd 3, `/proc/<pid>/fd`), nothing the daemon had open.
fn assert_only_own_descriptors(what: &str, dump: &str) {
    let sections: Vec<&str> = dump.split("== fds").skip(1).collect();
    assert!(!sections.is_empty(), "{what} listed its descriptors: {dump}");
    for s in sections {
        let s = s.split("== env").next().unwrap();
        for (fd, target) in descriptors(s) {
            let own = fd <= 2 || (fd == 3 && target.starts_with("/proc/") && target.ends_with("/fd"));
            assert!(own, "{what} inherited descriptor {fd} -> {target} from the daemon:\n{s}");
        }
    }
}

#[test]
fn hooks_inherit_no_secret_and_no_descriptor_of_the_daemon() {
    let pin = format!("pin-{}", hex::encode(rand_bytes()));
    let canary = format!("canary-{}", hex::encode(rand_bytes()));
    let token = format!(
        "[[tokens]]\nname = \"soft\"\nmodule = \"{}\"\nlabel = \"test\"\npin = {{ env = \"KEYPORT_HOOKTEST_PIN\" }}\nsofthsm = {{ dir = \"@DIR@/softhsm\" }}\n",
        common::softhsm_module().display()
    );
    let base = tempfile::tempdir().unwrap();
    let confirm_out = base.path().join("confirm.out");
    let rotate_out = base.path().join("rotate.out");
    let mut d = Daemon::config_tokens(&token, "");
    let dir = d.dir.path().to_path_buf();
    let text = std::fs::read_to_string(&d.config).unwrap().replace("@DIR@", &dir.display().to_string());
    assert!(!text.contains(SOFT_TOKEN));
    let text = format!(
        "{text}\n[agent]\nsocket = \"{}\"\n[agent.namespaces.default]\nconfirm = [\"/bin/sh\", \"-c\", {}]\n",
        dir.join("agent.sock").display(),
        serde_json::to_string(&dump_to(&confirm_out)).unwrap()
    );
    std::fs::write(&d.config, text).unwrap();
    let hooks = dir.join("hooks.d/provision-public");
    std::fs::create_dir_all(&hooks).unwrap();
    let hook = hooks.join("10-dump");
    std::fs::write(&hook, format!("#!/bin/sh\n{}\n", dump_to(&rotate_out))).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    d.env.push(("KEYPORT_HOOKTEST_PIN".into(), pin.clone()));
    d.env.push(("KEYPORT_HOOKTEST_CANARY".into(), canary.clone()));
    d.spawn();

    // Secrets in flight: an exportable key, exported under a passphrase (the private key is in
    // keyport's memory as it writes the file), then signed with (the confirm hook runs).
    let passphrase = "hook-test passphrase that must stay inside";
    let (s, v) =
        d.curl("POST", "/keyport/v1/keys", Some(&json!({"name": "signer", "algorithm": "ed25519", "exportable": true}).to_string()), &[]);
    assert_eq!(s, 201, "{v}\n{}", d.log());
    let id = v["id"].as_str().unwrap().to_string();
    let (s, v) = d.curl(
        "POST",
        &format!("/keyport/v1/keys/{id}/export"),
        Some(&json!({"format": "pkcs8", "passphrase": passphrase}).to_string()),
        &[],
    );
    assert_eq!(s, 200, "{v}");
    let (s, v) = d.curl("POST", &format!("/keyport/v1/keys/{id}/sign"), Some(r#"{"data":"AA=="}"#), &[]);
    assert_eq!(s, 200, "the confirm hook said yes: {v}\n{}", d.log());
    // A rotation: the provision hook runs with both public keys in its environment.
    let (s, v) =
        d.curl("POST", "/keyport/v1/keysets", Some(&json!({"name": "deploy", "type": "User", "algorithm": "ed25519"}).to_string()), &[]);
    assert_eq!(s, 201, "{v}");
    let (s, v) = d.curl("POST", "/keyport/v1/keysets/deploy/rotate", None, &[]);
    assert_eq!(s, 202, "{v}");
    let start = Instant::now();
    while !std::fs::read_to_string(&rotate_out).is_ok_and(|t| t.contains("== fds") && t.trim_end().ends_with("fd")) {
        assert!(start.elapsed() < Duration::from_secs(30), "the rotation hook never ran:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));

    let confirm = std::fs::read_to_string(&confirm_out).unwrap();
    let rotate = std::fs::read_to_string(&rotate_out).unwrap();
    // The hooks ran with what they are meant to see.
    assert!(confirm.contains("KEYPORT_KEY_NAME=signer") && confirm.contains("KEYPORT_PRINCIPAL=root"), "{confirm}");
    assert!(rotate.contains("KEYPORT_NEW_PUBLIC_KEY=ssh-ed25519 ") && rotate.contains("KEYPORT_KEYSET=deploy"), "{rotate}");
    // The daemon had both secrets in its environment (the test is not vacuous): it could not
    // have started without the PIN variable, which the harness passes with the canary. (Its
    // /proc environ is unreadable to its own uid: the daemon is not dumpable.)
    assert!(d.log().contains("keyport ready"), "{}", d.log());

    let secrets = [pin.as_str(), canary.as_str(), passphrase, "reader-key", "tlspc-key"];
    for (what, dump) in [("the confirm hook", &confirm), ("the rotation hook", &rotate)] {
        assert_no_secret_in(what, dump.as_bytes(), &secrets);
        assert!(!dump.contains("KEYPORT_HOOKTEST"), "{what} inherited the daemon's environment: {dump}");
        assert!(!dump.contains("SOFTHSM2_CONF"), "{what} inherited the token module's settings: {dump}");
        assert_only_own_descriptors(what, dump);
    }
    d.assert_no_secret_leaked(&secrets);
}

fn rand_bytes() -> [u8; 12] {
    let mut b = [0u8; 12];
    std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b)).unwrap();
    b
}
