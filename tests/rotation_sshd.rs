//! Rotation against a real OpenSSH server: the shipped `config/hooks/authorized-keys` hook keeps
//! sshd's AuthorizedKeysFile in step (the old key logs in before, both during the rotation's
//! wait, only the new one after 10600); and the shipped agentless device script
//! (`config/hooks/device-rotate.sh`, curl and sh only), run as another uid, installs the new key
//! at 10350 through the TPP face and confirms.

mod common;

use common::{phc, require, Daemon};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

struct Sshd {
    child: Child,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// sshd on a free loopback port with its own host key and `authorized_keys` as the only
/// AuthorizedKeysFile.
fn sshd(dir: &Path, authorized_keys: &Path) -> Sshd {
    require("ssh-keygen");
    assert!(Path::new("/usr/sbin/sshd").exists(), "openssh-server is required (scripts/deps installs it)");
    std::fs::create_dir_all("/run/sshd").unwrap();
    let host = dir.join("host_ed25519");
    assert!(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&host).status().unwrap().success());
    let port = common::free_port();
    let cfg = dir.join("sshd_config");
    std::fs::write(
        &cfg,
        format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nAuthorizedKeysFile {}\nPidFile none\nStrictModes no\nUsePAM no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nLogLevel VERBOSE\n",
            host.display(),
            authorized_keys.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("sshd.log")).unwrap();
    let child = Command::new("/usr/sbin/sshd").args(["-D", "-e", "-f"]).arg(&cfg).stderr(log).spawn().unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "sshd did not start: {}",
            std::fs::read_to_string(dir.join("sshd.log")).unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Sshd { child, port }
}

/// Whether `key` logs in to the sshd as root (`ssh -o BatchMode=yes -i key`).
fn logs_in(s: &Sshd, key: &Path) -> bool {
    Command::new("ssh")
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes"])
        .args(["-o", "ConnectTimeout=10", "-F", "/dev/null", "-i"])
        .arg(key)
        .args(["-p", &s.port.to_string(), "root@127.0.0.1", "true"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn export(d: &Daemon, key_id: &str, to: &Path) {
    let (s, v) = d.curl("POST", &format!("/keyport/v1/keys/{key_id}/export"), Some(r#"{"format":"openssh"}"#), &[]);
    assert_eq!(s, 200, "{v}");
    std::fs::write(to, v["private_key"].as_str().unwrap()).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn show(d: &Daemon, name: &str) -> Value {
    d.curl("GET", &format!("/keyport/v1/keysets/{name}"), None, &[]).1
}

fn wait(d: &Daemon, name: &str, f: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let v = show(d, name);
        if f(&v) {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{v:#}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn public_line(d: &Daemon, key_id: &str) -> String {
    d.curl("GET", &format!("/keyport/v1/keys/{key_id}/public"), None, &[]).1["public_key"].as_str().unwrap().to_string()
}

const POLICY: &str = r#"
[namespaces.default]
allow_unencrypted_export = true

[rotation.namespaces.default]
confirmations = "private-key"
exportable = true
"#;

/// A hooks.d wrapper that points the shipped hook at `file`.
fn install_hook(d: &Daemon, file: &Path) {
    for stage in ["provision-public", "remove-old", "rollback"] {
        let dir = d.dir.path().join("hooks.d").join(stage);
        std::fs::create_dir_all(&dir).unwrap();
        let w = dir.join("10-authorized-keys");
        std::fs::write(&w, format!("#!/bin/sh\nKEYPORT_AUTHORIZED_KEYS={} exec {REPO}/config/hooks/authorized-keys\n", file.display()))
            .unwrap();
        std::fs::set_permissions(&w, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
#[ignore = "needs root: a real sshd that logs in as root; scripts/test runs it"]
fn sshd_trusts_the_old_key_before_both_during_and_only_the_new_one_after() {
    common::require_root("a real sshd that logs in as root");
    let mut d = Daemon::config(POLICY);
    let ak = d.dir.path().join("authorized_keys");
    install_hook(&d, &ak);
    d.spawn();
    let (s, v) =
        d.curl("POST", "/keyport/v1/keysets", Some(&json!({"name": "login", "type": "User", "algorithm": "ed25519"}).to_string()), &[]);
    assert_eq!(s, 201, "{v}");
    let v1 = v["versions"][0]["key_id"].as_str().unwrap().to_string();
    let k1 = d.dir.path().join("id_v1");
    export(&d, &v1, &k1);
    std::fs::write(&ak, format!("# managed\nfrom=\"127.0.0.1\" {}\n", public_line(&d, &v1))).unwrap();
    std::fs::set_permissions(&ak, std::fs::Permissions::from_mode(0o600)).unwrap();
    let sshd = sshd(d.dir.path(), &ak);
    assert!(logs_in(&sshd, &k1), "the old key logs in before the rotation");

    assert_eq!(d.curl("POST", "/keyport/v1/keysets/login/rotate", None, &[]).0, 202);
    let v = wait(&d, "login", |v| v["stage"] == 10350);
    let v2 = v["versions"][1]["key_id"].as_str().unwrap().to_string();
    let k2 = d.dir.path().join("id_v2");
    export(&d, &v2, &k2);
    let text = std::fs::read_to_string(&ak).unwrap();
    assert!(
        text.contains(&format!("from=\"127.0.0.1\" {}", public_line(&d, &v2).split(' ').take(2).collect::<Vec<_>>().join(" "))),
        "{text}"
    );
    assert!(logs_in(&sshd, &k1) && logs_in(&sshd, &k2), "both keys log in while the rotation waits:\n{text}");

    assert_eq!(d.curl("POST", "/keyport/v1/keysets/login/confirm", None, &[]).0, 202);
    let v = wait(&d, "login", |v| v["rotation"]["finished_at"].is_string());
    assert_eq!(v["rotation"]["outcome"], "complete", "{v:#}");
    assert!(logs_in(&sshd, &k2), "the new key logs in after 10600");
    assert!(!logs_in(&sshd, &k1), "the old key is refused after 10600:\n{}", std::fs::read_to_string(&ak).unwrap());
    assert!(std::fs::read_to_string(&ak).unwrap().starts_with("# managed\n"), "other lines are kept");

    // A file the hook cannot parse is refused whole: the stage fails, and the rollback's hook
    // refuses it too, so the rollback stops (ProcessStatus 6) for an operator; the file and
    // the trusted key stay as they were. Fixed and retried, the rollback finishes.
    let good = std::fs::read_to_string(&ak).unwrap();
    std::fs::write(&ak, format!("{}\nthis is not a key\n", good.trim_end())).unwrap();
    let before = std::fs::read_to_string(&ak).unwrap();
    d.curl("POST", "/keyport/v1/keysets/login/rotate", None, &[]);
    let v = wait(&d, "login", |v| v["stage"] == 90200 && v["process_status"] == 6);
    assert!(v["rotation"]["error"].as_str().unwrap().contains("exited 1"), "{v:#}");
    assert_eq!(std::fs::read_to_string(&ak).unwrap(), before);
    assert!(logs_in(&sshd, &k2));
    std::fs::write(&ak, &good).unwrap();
    assert_eq!(d.curl("POST", "/keyport/v1/keysets/login/retry", None, &[]).0, 202);
    let v = wait(&d, "login", |v| v["rotation"]["finished_at"].is_string());
    assert_eq!((v["rotation"]["outcome"].as_str(), v["stage"].as_i64()), (Some("failed"), Some(10101)), "{v:#}");
    assert_eq!(std::fs::read_to_string(&ak).unwrap(), good);
    assert!(logs_in(&sshd, &k2));
}

#[test]
#[ignore = "needs root: runs the device script as another uid; scripts/test runs it"]
fn the_agentless_device_script_installs_the_new_key_as_another_uid() {
    common::require_root("runs the device script as another uid");
    require("setpriv");
    require("curl");
    let extra = format!(
        "{POLICY}\n[[principals]]\nname = \"root\"\nuids = [TEST_UID]\npermissions = {{ \"*\" = [\"admin\"] }}\n\n\
         [[principals]]\nname = \"device\"\npermissions = {{ default = [\"read\", \"export-private\"] }}\n\n\
         [[tpp.users]]\nusername = \"device\"\npassword_hash = \"{}\"\nprincipal = \"device\"\n",
        phc("device-secret")
    );
    let d = Daemon::start(&extra);
    let (s, v) =
        d.curl("POST", "/keyport/v1/keysets", Some(&json!({"name": "dev", "type": "User", "algorithm": "ed25519"}).to_string()), &[]);
    assert_eq!(s, 201, "{v}");
    let keyset_id = v["id"].as_str().unwrap().to_string();
    // The device's own folder, owned by nobody (65534).
    let dev = tempfile::Builder::new().prefix("keyport-device").tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(dev.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let own = |p: &Path| nix::unistd::chown(p, Some(nix::unistd::Uid::from_raw(65534)), Some(nix::unistd::Gid::from_raw(65534))).unwrap();
    let pw = dev.path().join("password");
    std::fs::write(&pw, "device-secret\n").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ca = dev.path().join("ca.pem");
    std::fs::copy(d.dir.path().join("state/tls-cert.pem"), &ca).unwrap();
    let ssh = dev.path().join("ssh");
    std::fs::create_dir(&ssh).unwrap();
    for p in [dev.path(), &pw, &ca, &ssh] {
        own(p);
    }
    let key: PathBuf = ssh.join("id_ed25519");
    let run = || {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "env", "-i", "PATH=/usr/bin:/bin"])
            .arg(format!("KEYPORT_TPP_URL=https://127.0.0.1:{}", d.port))
            .arg("KEYPORT_TPP_USER=device")
            .arg(format!("KEYPORT_TPP_PASSWORD_FILE={}", pw.display()))
            .arg(format!("KEYPORT_KEYSET_ID={keyset_id}"))
            .arg(format!("KEYPORT_KEY_FILE={}", key.display()))
            .arg(format!("KEYPORT_CA_FILE={}", ca.display()))
            .args(["sh", &format!("{REPO}/config/hooks/device-rotate.sh")])
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (code, out) = run();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("nothing to do") && !key.exists(), "{out}");
    assert_eq!(d.curl("POST", "/keyport/v1/keysets/dev/rotate", None, &[]).0, 202);
    let v = wait(&d, "dev", |v| v["stage"] == 10350);
    let v2 = v["versions"][1]["key_id"].as_str().unwrap().to_string();
    let (code, out) = run();
    assert_eq!(code, Some(0), "{out}\n{}", d.log());
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!((std::os::unix::fs::MetadataExt::uid(&meta), meta.permissions().mode() & 0o777), (65534, 0o600), "{out}");
    let derived = Command::new("ssh-keygen").args(["-y", "-f"]).arg(&key).output().unwrap();
    assert!(derived.status.success(), "{}", String::from_utf8_lossy(&derived.stderr));
    let words = |s: &str| s.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    assert_eq!(words(&String::from_utf8_lossy(&derived.stdout)), words(&public_line(&d, &v2)));
    let v = wait(&d, "dev", |v| v["rotation"]["finished_at"].is_string());
    assert_eq!((v["rotation"]["outcome"].as_str(), v["stage"].as_i64()), (Some("complete"), Some(10600)), "{v:#}");
    assert!(
        v["history"].as_array().unwrap().iter().any(|e| e["event"] == "confirmed" && e["detail"].as_str().unwrap().contains("device")),
        "{v:#}"
    );
    // No leftover temporary file in the key's folder.
    assert_eq!(std::fs::read_dir(&ssh).unwrap().count(), 1);
}
