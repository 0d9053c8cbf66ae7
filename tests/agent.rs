//! keyport as an ssh-agent, exercised with OpenSSH's own tools: `ssh-add`, `ssh-keygen -Y`,
//! `ssh` against a real `sshd`, and raw agent messages for bad input.

mod common;
use common::*;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// uid 65534 is the principal `svc` (sign on namespace `svc` only); 65533 is no principal.
const SVC_UID: u32 = 65534;
const STRANGER_UID: u32 = 65533;

fn principals() -> String {
    r#"
[[principals]]
name = "root"
uids = [TEST_UID]
permissions = { "*" = ["admin"] }

[[principals]]
name = "svc"
uids = [65534]
permissions = { svc = ["sign"], default = ["read"] }

[[principals]]
name = "svc-api"
api_key_sha256 = ["SVC_API_HASH"]
permissions = { svc = ["sign"] }
"#
    .replace("SVC_API_HASH", &sha256_hex("svc-api-key"))
}

/// A daemon with the agent on `<dir>/agent.sock` (mode 0666 so test uids can connect).
fn agent_daemon(agent_extra: &str, extra: &str) -> (Daemon, PathBuf) {
    let d = Daemon::config("");
    let sock = d.dir.path().join("agent.sock");
    let text = std::fs::read_to_string(&d.config).unwrap();
    // Daemon::config wrote the default principals (no [[principals]] in extra): replace them.
    let text = text.split("\n[[principals]]").next().unwrap().to_string();
    let text =
        format!("{text}\n{}\n[agent]\nsocket = \"{}\"\nsocket_mode = \"0666\"\n{agent_extra}\n{extra}\n", principals(), sock.display());
    std::fs::write(&d.config, text).unwrap();
    let mut d = d;
    d.spawn();
    let start = Instant::now();
    while UnixStream::connect(&sock).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "agent socket did not appear:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    (d, sock)
}

fn generate_in(d: &Daemon, ns: &str, name: &str, alg: &str) -> String {
    let (s, v) = d.curl(
        "POST",
        "/keyport/v1/keys",
        Some(&serde_json::json!({"name": name, "namespace": ns, "algorithm": alg, "exportable": false}).to_string()),
        &[],
    );
    assert_eq!(s, 201, "{v}\n{}", d.log());
    assert_eq!(v["exportable"], false);
    v["id"].as_str().unwrap().to_string()
}

/// Runs `args` with SSH_AUTH_SOCK=sock, as root or (with `uid`) as that uid via setpriv.
fn with_agent(sock: &Path, uid: Option<u32>, args: &[&str]) -> Output {
    let mut c = match uid {
        None => Command::new(args[0]),
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.args([format!("--reuid={u}"), format!("--regid={u}"), "--clear-groups".into()]).arg(args[0]);
            c
        }
    };
    c.args(&args[1..]).env("SSH_AUTH_SOCK", sock).env_remove("SSH_AGENT_PID").stdin(Stdio::null());
    c.output().unwrap()
}

fn listed(out: &Output) -> Vec<String> {
    assert!(out.status.success(), "ssh-add -L failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

fn comments(lines: &[String]) -> Vec<String> {
    let mut c: Vec<String> = lines.iter().map(|l| l.rsplit(' ').next().unwrap().to_string()).collect();
    c.sort();
    c
}

fn audit_rows(d: &Daemon, action: &str) -> Vec<(String, Option<String>, String, Option<String>)> {
    let db = rusqlite::Connection::open(d.dir.path().join("state/keyport.db")).unwrap();
    let mut st = db.prepare("SELECT principal, key_id, outcome, detail FROM audit WHERE action=?1 ORDER BY seq").unwrap();
    let rows = st.query_map([action], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap();
    rows.collect::<Result<Vec<_>, _>>().unwrap()
}

#[test]
#[ignore = "needs root: callers of other uids through setpriv; scripts/test runs it"]
fn ssh_add_lists_exactly_the_callers_keys() {
    common::require_root("callers of other uids through setpriv");
    require("ssh-add");
    require("setpriv");
    require("ssh-keygen");
    require("pkcs11-tool");
    let (d, sock) = agent_daemon("", "");
    let web = generate_in(&d, "default", "web", "ec-p256");
    generate_in(&d, "default", "deploy", "ed25519");
    generate_in(&d, "svc", "svc-key", "ed25519");

    // Root (admin) may sign with everything.
    let root = listed(&with_agent(&sock, None, &["ssh-add", "-L"]));
    assert_eq!(comments(&root), vec!["default/deploy", "default/web", "svc/svc-key"], "{root:?}");
    // The listed P-256 key is the token's: pkcs11-tool's SPKI, converted by ssh-keygen.
    let der = d.dir.path().join("web.der");
    let out = d.pkcs11_tool(&["--read-object", "--type", "pubkey", "--id", &web, "-o", der.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pem = d.dir.path().join("web.pem");
    let st = Command::new("openssl").args(["pkey", "-pubin", "-inform", "DER", "-in"]).arg(&der).arg("-out").arg(&pem).status().unwrap();
    assert!(st.success());
    let conv = Command::new("ssh-keygen").args(["-i", "-m", "PKCS8", "-f"]).arg(&pem).output().unwrap();
    let token_line = String::from_utf8_lossy(&conv.stdout).trim().to_string();
    assert!(!token_line.is_empty(), "{}", String::from_utf8_lossy(&conv.stderr));
    let blob = token_line.split(' ').nth(1).unwrap();
    assert!(root.iter().any(|l| l.contains(blob) && l.ends_with("default/web")), "{root:?} vs {token_line}");

    // uid 65534 is `svc`: only the svc namespace (it may read `default` but not sign there).
    let svc = listed(&with_agent(&sock, Some(SVC_UID), &["ssh-add", "-L"]));
    assert_eq!(comments(&svc), vec!["svc/svc-key"], "{svc:?}");

    // A uid with no principal is refused.
    let out = with_agent(&sock, Some(STRANGER_UID), &["ssh-add", "-L"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("agent refused operation"), "{err}");
    assert!(d.log().contains("uid 65533"), "the refusal is logged with the uid:\n{}", d.log());
}

/// `ssh-keygen -Y sign` through the agent, `ssh-keygen -Y verify` against the listed key, for
/// every algorithm, with non-exportable keys.
#[test]
fn sshsig_with_every_algorithm_and_non_exportable_keys() {
    require("ssh-keygen");
    let (d, sock) = agent_daemon("", "");
    let algs = ["rsa-2048", "rsa-3072", "ec-p256", "ec-p384", "ec-p521", "ed25519"];
    let mut ids = Vec::new();
    for alg in algs {
        ids.push(generate_in(&d, "default", alg, alg));
    }
    let lines = listed(&with_agent(&sock, None, &["ssh-add", "-L"]));
    assert_eq!(lines.len(), algs.len(), "{lines:?}");
    let dir = d.dir.path();
    let data = dir.join("data.txt");
    std::fs::write(&data, b"signed in the token\n").unwrap();
    for alg in algs {
        let line = lines.iter().find(|l| l.ends_with(&format!("default/{alg}"))).unwrap_or_else(|| panic!("{alg} not listed: {lines:?}"));
        let pubf = dir.join(format!("{alg}.pub"));
        std::fs::write(&pubf, format!("{line}\n")).unwrap();
        let sig = dir.join("data.txt.sig");
        let _ = std::fs::remove_file(&sig);
        let out =
            with_agent(&sock, None, &["ssh-keygen", "-Y", "sign", "-f", pubf.to_str().unwrap(), "-n", "file", data.to_str().unwrap()]);
        assert!(out.status.success(), "{alg}: ssh-keygen -Y sign: {}\n{}", String::from_utf8_lossy(&out.stderr), d.log());
        let allowed = dir.join("allowed_signers");
        let key = line.rsplit_once(' ').unwrap().0;
        std::fs::write(&allowed, format!("signer@example {key}\n")).unwrap();
        let verify = Command::new("ssh-keygen")
            .args(["-Y", "verify", "-f"])
            .arg(&allowed)
            .args(["-I", "signer@example", "-n", "file", "-s"])
            .arg(&sig)
            .stdin(std::fs::File::open(&data).unwrap())
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "{alg}: verify: {}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
        // The same signature does not verify for other data.
        let bad = Command::new("ssh-keygen")
            .args(["-Y", "verify", "-f"])
            .arg(&allowed)
            .args(["-I", "signer@example", "-n", "file", "-s"])
            .arg(&sig)
            .stdin(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(b"other data\n")?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(!bad.status.success(), "{alg}: a signature must not verify other data");
    }
    // Every signature is audited with the caller's uid and pid and what was signed.
    let rows = audit_rows(&d, "key.sign");
    let ok: Vec<_> = rows.iter().filter(|r| r.2 == "ok").collect();
    assert_eq!(ok.len(), algs.len(), "{rows:?}");
    for (i, r) in ok.iter().enumerate() {
        assert_eq!(r.0, "root");
        assert_eq!(r.1.as_deref(), Some(ids[i].as_str()));
        let detail: serde_json::Value = serde_json::from_str(r.3.as_deref().unwrap()).unwrap();
        assert_eq!(detail["via"], "agent");
        assert_eq!(detail["uid"], nix::unistd::getuid().as_raw());
        assert!(detail["pid"].as_i64().unwrap() > 0, "{detail}");
        assert_eq!(detail["kind"], "sshsig");
        assert_eq!(detail["sshsig_namespace"], "file");
    }
    // The keys stayed non-exportable in the token.
    let listing = d.pkcs11_objects();
    let private: Vec<_> =
        object_blocks(&listing).into_iter().filter(|b| b.0.starts_with("Private Key Object") && algs.contains(&b.1.as_str())).collect();
    assert_eq!(private.len(), algs.len(), "{listing}");
    assert!(private.iter().all(|b| b.0.contains("never extractable")), "{private:?}");
}

/// A real `sshd -D` on a loopback port with a generated config; killed when dropped.
struct Sshd {
    child: std::process::Child,
    port: u16,
    log: PathBuf,
}

impl Sshd {
    fn start(dir: &Path, config: &str) -> Sshd {
        require("/usr/sbin/sshd");
        // sshd refuses to start without its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let port = free_port();
        let cfg = dir.join("sshd_config");
        let log = dir.join("sshd.log");
        std::fs::write(
            &cfg,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nPidFile {pid}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nLogLevel VERBOSE\n{config}\n",
                pid = dir.join("sshd.pid").display()
            ),
        )
        .unwrap();
        let child =
            Command::new("/usr/sbin/sshd").args(["-D", "-e", "-f"]).arg(&cfg).stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap();
        let mut s = Sshd { child, port, log };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(st) = s.child.try_wait().unwrap() {
                panic!("sshd exited ({st}):\n{}", s.log());
            }
            assert!(start.elapsed() < Duration::from_secs(10), "sshd did not start:\n{}", s.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ssh(sock: &Path, port: u16, known_hosts: Option<&Path>, identity: &Path) -> Output {
    let mut c = Command::new("ssh");
    c.args(["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o"])
        .arg(format!("IdentityAgent={}", sock.display()))
        .arg("-o")
        .arg(format!("IdentityFile={}", identity.display()))
        .args(["-o", "ConnectTimeout=10", "-p", &port.to_string()]);
    match known_hosts {
        Some(k) => c.args(["-o", "StrictHostKeyChecking=yes", "-o"]).arg(format!("UserKnownHostsFile={}", k.display())),
        None => c.args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]),
    };
    c.args(["root@127.0.0.1", "echo", "logged-in-as-$(id -un)"]).stdin(Stdio::null()).output().unwrap()
}

/// `ssh` logs in to a real sshd with a non-exportable token key through the agent; the
/// signature's audit entry names the SSH user and the session identifier's hash.
#[test]
#[ignore = "needs root: a real sshd that logs in as root; scripts/test runs it"]
fn ssh_logs_in_to_a_real_sshd_with_a_token_key() {
    common::require_root("a real sshd that logs in as root");
    require("ssh");
    require("ssh-keygen");
    let (d, sock) = agent_daemon("", "");
    let dir = d.dir.path().to_path_buf();
    for alg in ["ed25519", "rsa-2048", "ec-p384"] {
        let id = generate_in(&d, "default", &format!("login-{alg}"), alg);
        let lines = listed(&with_agent(&sock, None, &["ssh-add", "-L"]));
        let line = lines.iter().find(|l| l.ends_with(&format!("default/login-{alg}"))).unwrap().clone();
        let pubf = dir.join(format!("login-{alg}.pub"));
        std::fs::write(&pubf, format!("{line}\n")).unwrap();
        let hostkey = dir.join(format!("hostkey-{alg}"));
        let _ = std::fs::remove_file(&hostkey);
        let st = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&hostkey).status().unwrap();
        assert!(st.success());
        let authorized = dir.join(format!("authorized_keys-{alg}"));
        std::fs::write(&authorized, format!("{line}\n")).unwrap();
        let sshd_dir = dir.join(format!("sshd-{alg}"));
        std::fs::create_dir_all(&sshd_dir).unwrap();
        let sshd = Sshd::start(&sshd_dir, &format!("HostKey {}\nAuthorizedKeysFile {}\n", hostkey.display(), authorized.display()));
        let out = ssh(&sock, sshd.port, None, &pubf);
        assert!(
            out.status.success(),
            "{alg}: ssh failed: {}\nsshd:\n{}\nkeyport:\n{}",
            String::from_utf8_lossy(&out.stderr),
            sshd.log(),
            d.log()
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "logged-in-as-root");
        assert!(sshd.log().contains("Accepted publickey for root"), "{}", sshd.log());
        let rows = audit_rows(&d, "key.sign");
        let r = rows.iter().rev().find(|r| r.1.as_deref() == Some(id.as_str())).expect("the login signature is audited");
        assert_eq!(r.2, "ok");
        let detail: serde_json::Value = serde_json::from_str(r.3.as_deref().unwrap()).unwrap();
        assert_eq!(detail["kind"], "ssh-userauth", "{detail}");
        assert_eq!(detail["ssh_user"], "root");
        assert_eq!(detail["ssh_service"], "ssh-connection");
        assert_eq!(detail["session_sha256"].as_str().unwrap().len(), 64);
        if alg == "rsa-2048" {
            assert_eq!(detail["scheme"], "rsa-sha512", "OpenSSH asks for rsa-sha2-512: {detail}");
        }
    }
}

/// An sshd whose host key lives in keyport (`HostKeyAgent`): ssh-keyscan sees the token's
/// key, and a client that pins it logs in.
#[test]
#[ignore = "needs root: a real sshd that logs in as root; scripts/test runs it"]
fn sshd_host_key_agent_presents_the_token_host_key() {
    common::require_root("a real sshd that logs in as root");
    require("ssh-keyscan");
    let (d, sock) = agent_daemon("", "");
    let dir = d.dir.path().to_path_buf();
    generate_in(&d, "default", "host", "ed25519");
    generate_in(&d, "default", "user", "ec-p256");
    let lines = listed(&with_agent(&sock, None, &["ssh-add", "-L"]));
    let host = lines.iter().find(|l| l.ends_with("default/host")).unwrap().clone();
    let user = lines.iter().find(|l| l.ends_with("default/user")).unwrap().clone();
    let host_pub = dir.join("host.pub");
    std::fs::write(&host_pub, format!("{host}\n")).unwrap();
    let user_pub = dir.join("user.pub");
    std::fs::write(&user_pub, format!("{user}\n")).unwrap();
    let authorized = dir.join("authorized_keys");
    std::fs::write(&authorized, format!("{user}\n")).unwrap();
    let sshd_dir = dir.join("sshd");
    std::fs::create_dir_all(&sshd_dir).unwrap();
    let sshd = Sshd::start(
        &sshd_dir,
        &format!("HostKey {}\nHostKeyAgent {}\nAuthorizedKeysFile {}\n", host_pub.display(), sock.display(), authorized.display()),
    );
    let scan = Command::new("ssh-keyscan").args(["-t", "ed25519", "-p", &sshd.port.to_string(), "127.0.0.1"]).output().unwrap();
    let scanned = String::from_utf8_lossy(&scan.stdout).to_string();
    let host_key = host.rsplit_once(' ').unwrap().0;
    assert!(scanned.contains(host_key), "ssh-keyscan: {scanned}\n{}\nsshd:\n{}", String::from_utf8_lossy(&scan.stderr), sshd.log());
    let known = dir.join("known_hosts");
    std::fs::write(&known, format!("[127.0.0.1]:{} {host_key}\n", sshd.port)).unwrap();
    let out = ssh(&sock, sshd.port, Some(&known), &user_pub);
    assert!(out.status.success(), "ssh: {}\nsshd:\n{}\nkeyport:\n{}", String::from_utf8_lossy(&out.stderr), sshd.log(), d.log());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "logged-in-as-root");
    // The host signatures were made by sshd's own processes (uid 0), audited as opaque data.
    let rows = audit_rows(&d, "key.sign");
    assert!(rows.iter().any(|r| r.3.as_deref().is_some_and(|d| !d.contains("\"kind\""))), "a KEX hash signature is audited: {rows:?}");
}

/// The SubjectPublicKeyInfo PEM of a listed key, for openssl (`ssh-keygen -e -m PKCS8`; by
/// hand for Ed25519, which it cannot export). That the listed keys are the token's is checked
/// in `ssh_add_lists_exactly_the_callers_keys`.
fn public_pem(d: &Daemon, id: &str, ssh_line: &str) -> PathBuf {
    let dir = d.dir.path();
    let pem = dir.join(format!("{id}.pem"));
    if ssh_line.starts_with("ssh-ed25519 ") {
        use base64::Engine;
        let blob = base64::engine::general_purpose::STANDARD.decode(ssh_line.split(' ').nth(1).unwrap()).unwrap();
        let mut spki = hex::decode("302a300506032b6570032100").unwrap();
        spki.extend_from_slice(&blob[blob.len() - 32..]);
        let der = dir.join(format!("{id}.der"));
        std::fs::write(&der, spki).unwrap();
        let st =
            Command::new("openssl").args(["pkey", "-pubin", "-inform", "DER", "-in"]).arg(&der).arg("-out").arg(&pem).status().unwrap();
        assert!(st.success());
    } else {
        let pubf = dir.join(format!("{id}.pub"));
        std::fs::write(&pubf, format!("{ssh_line}\n")).unwrap();
        let out = Command::new("ssh-keygen").args(["-e", "-m", "PKCS8", "-f"]).arg(&pubf).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::write(&pem, out.stdout).unwrap();
    }
    pem
}

fn openssl_verifies(pem: &Path, hash: Option<&str>, data: &Path, sig: &Path) -> bool {
    let out = match hash {
        Some(h) => {
            Command::new("openssl").args(["dgst", &format!("-{h}"), "-verify"]).arg(pem).arg("-signature").arg(sig).arg(data).output()
        }
        None => Command::new("openssl")
            .args(["pkeyutl", "-verify", "-pubin", "-rawin", "-inkey"])
            .arg(pem)
            .arg("-in")
            .arg(data)
            .arg("-sigfile")
            .arg(sig)
            .output(),
    }
    .unwrap();
    out.status.success()
}

/// `POST /keyport/v1/keys/{id}/sign`: every algorithm, verified by openssl; clear errors.
#[test]
#[ignore = "needs root: callers of other uids through setpriv; scripts/test runs it"]
fn native_sign_endpoint_verified_by_openssl() {
    common::require_root("callers of other uids through setpriv");
    require("openssl");
    require("curl");
    let (d, sock) = agent_daemon("", "");
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let dir = d.dir.path();
    let data = dir.join("message.bin");
    let message = b"a message for a local service";
    std::fs::write(&data, message).unwrap();
    let cases = [
        ("rsa-2048", None, "rsa-sha256", Some("sha256")),
        ("rsa-2048", Some("rsa-sha512"), "rsa-sha512", Some("sha512")),
        ("ec-p256", None, "ecdsa-sha256", Some("sha256")),
        ("ec-p384", None, "ecdsa-sha384", Some("sha384")),
        ("ec-p521", None, "ecdsa-sha512", Some("sha512")),
        ("ec-p256", Some("ecdsa-sha512"), "ecdsa-sha512", Some("sha512")),
        ("ed25519", None, "ed25519", None),
    ];
    let mut ids = std::collections::HashMap::new();
    for (alg, _, _, _) in cases {
        if !ids.contains_key(alg) {
            ids.insert(alg, generate_in(&d, "default", alg, alg));
        }
    }
    let lines = listed(&with_agent(&sock, None, &["ssh-add", "-L"]));
    for (alg, asked, scheme, hash) in cases {
        let id = &ids[alg];
        let mut body = serde_json::json!({"data": b64.encode(message)});
        if let Some(a) = asked {
            body["algorithm"] = a.into();
        }
        let (s, v) = d.curl("POST", &format!("/keyport/v1/keys/{id}/sign"), Some(&body.to_string()), &[]);
        assert_eq!(s, 200, "{alg}: {v}");
        assert_eq!(v["algorithm"], scheme);
        let sig = dir.join("sig.bin");
        std::fs::write(&sig, b64.decode(v["signature"].as_str().unwrap()).unwrap()).unwrap();
        let line = lines.iter().find(|l| l.ends_with(&format!("default/{alg}"))).unwrap();
        let pem = public_pem(&d, id, line);
        assert!(openssl_verifies(&pem, hash, &data, &sig), "{alg} {scheme}: openssl does not verify {v}");
        let other = dir.join("other.bin");
        std::fs::write(&other, b"another message").unwrap();
        assert!(!openssl_verifies(&pem, hash, &other, &sig), "{alg}: verifies other data");
    }
    // Bad input: clear 400s that say what to do.
    let id = &ids["ec-p256"];
    let path = format!("/keyport/v1/keys/{id}/sign");
    let (s, v) = d.curl("POST", &path, Some(r#"{"data":"not base64!"}"#), &[]);
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_data")), "{v}");
    let (s, v) = d.curl("POST", &path, Some(r#"{"data":"AA==","algorithm":"rsa-sha256"}"#), &[]);
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_algorithm")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("ecdsa-sha256"), "{v}");
    let (s, v) = d.curl("POST", &path, Some(r#"{"data":"AA==","algorithm":"md5"}"#), &[]);
    assert_eq!(s, 400, "{v}");
    let (s, _) = d.curl("POST", "/keyport/v1/keys/00000000000000000000000000000000/sign", Some(r#"{"data":"AA=="}"#), &[]);
    assert_eq!(s, 404);
    // svc may read `default` but not sign there: 403 naming the permission, audited.
    let out = Command::new("setpriv")
        .args([format!("--reuid={SVC_UID}"), format!("--regid={SVC_UID}"), "--clear-groups".into()])
        .args(["curl", "-sS", "-w", "\n%{http_code}", "--unix-socket"])
        .arg(&d.socket)
        .args(["-H", "content-type: application/json", "--data-binary", r#"{"data":"AA=="}"#])
        .arg(format!("http://localhost{path}"))
        .output()
        .unwrap();
    let (s, v) = parse_curl(out);
    assert_eq!(s, 403, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("'sign'"), "{v}");
    let refused: Vec<_> = audit_rows(&d, "key.sign").into_iter().filter(|r| r.2 == "refused").collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0, "svc");
    assert_eq!(refused[0].1.as_deref(), Some(id.as_str()));
    assert!(refused[0].3.as_deref().unwrap().contains(&format!("\"uid\":{SVC_UID}")), "{refused:?}");
}

/// A folder any test uid may write in (for ssh-keygen's .sig files).
fn shared_dir(d: &Daemon) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = d.dir.path().join("shared");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
    p
}

fn sshsig_as(sock: &Path, uid: Option<u32>, pubf: &Path, data: &Path) -> Output {
    let _ = std::fs::remove_file(data.with_extension("txt.sig"));
    with_agent(sock, uid, &["ssh-keygen", "-Y", "sign", "-f", pubf.to_str().unwrap(), "-n", "file", data.to_str().unwrap()])
}

/// `[agent.namespaces.<ns>] allowed_uids` and `signatures_per_minute`, through the agent and
/// the native API alike.
#[test]
#[ignore = "needs root: callers of other uids through setpriv; scripts/test runs it"]
fn allowed_uids_and_the_signature_rate_limit() {
    common::require_root("callers of other uids through setpriv");
    let (d, sock) = agent_daemon("signatures_per_minute = 3\n[agent.namespaces.svc]\nallowed_uids = [65534]\n", "");
    let svc_id = generate_in(&d, "svc", "svc-key", "ed25519");
    generate_in(&d, "default", "root-key", "ed25519");
    // Root is admin, but uid 0 is not in svc's allowed_uids: not listed, refused, audited.
    let root = listed(&with_agent(&sock, None, &["ssh-add", "-L"]));
    assert_eq!(comments(&root), vec!["default/root-key"], "{root:?}");
    let (s, v) = d.curl("POST", &format!("/keyport/v1/keys/{svc_id}/sign"), Some(r#"{"data":"AA=="}"#), &[]);
    assert_eq!(s, 403, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("allowed_uids"), "{v}");
    // Over TCP (an API key, no uid) the namespace is closed too.
    let (s, v) =
        d.curl_https("POST", &format!("/keyport/v1/keys/{svc_id}/sign"), Some(r#"{"data":"AA=="}"#), &["-H", "X-Api-Key: svc-api-key"]);
    assert_eq!(s, 403, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("Unix socket"), "{v}");
    let svc = listed(&with_agent(&sock, Some(SVC_UID), &["ssh-add", "-L"]));
    assert_eq!(comments(&svc), vec!["svc/svc-key"]);
    let shared = shared_dir(&d);
    let pubf = shared.join("svc.pub");
    std::fs::write(&pubf, format!("{}\n", svc[0])).unwrap();
    let data = shared.join("data.txt");
    std::fs::write(&data, b"x").unwrap();
    // Three signatures a minute for svc: the fourth is refused.
    for i in 0..3 {
        let out = sshsig_as(&sock, Some(SVC_UID), &pubf, &data);
        assert!(out.status.success(), "signature {i}: {}\n{}", String::from_utf8_lossy(&out.stderr), d.log());
    }
    let out = sshsig_as(&sock, Some(SVC_UID), &pubf, &data);
    assert!(!out.status.success(), "the fourth signature in a minute must be refused");
    assert!(d.log().contains("rate limit"), "{}", d.log());
    // Root's budget is its own; its refusal above spent one of its three.
    for _ in 0..2 {
        let (s, v) = d.curl("POST", &format!("/keyport/v1/keys/{}/sign", root_key_id(&d)), Some(r#"{"data":"AA=="}"#), &[]);
        assert_eq!(s, 200, "{v}");
    }
    let out = Command::new("curl")
        .args(["-sS", "-D", "-", "-o", "/dev/null", "--unix-socket"])
        .arg(&d.socket)
        .args(["-H", "content-type: application/json", "--data-binary", r#"{"data":"AA=="}"#])
        .arg(format!("http://localhost/keyport/v1/keys/{}/sign", root_key_id(&d)))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(head.starts_with("http/1.1 429"), "{head}");
    let retry: u64 = head.lines().find_map(|l| l.strip_prefix("retry-after: ")).unwrap().trim().parse().unwrap();
    assert!((1..=20).contains(&retry), "{head}");
    // Over its budget, a refused request is still refused but no longer audited: a loop of
    // refused requests cannot fill the disk.
    let refused_before = audit_rows(&d, "key.sign").iter().filter(|r| r.2 == "refused").count();
    for _ in 0..20 {
        let (s, _) = d.curl("POST", &format!("/keyport/v1/keys/{svc_id}/sign"), Some(r#"{"data":"AA=="}"#), &[]);
        assert_eq!(s, 403);
    }
    assert_eq!(audit_rows(&d, "key.sign").iter().filter(|r| r.2 == "refused").count(), refused_before);
}

fn root_key_id(d: &Daemon) -> String {
    let (_, v) = d.curl("GET", "/keyport/v1/keys?name=root-key", None, &[]);
    v["keys"][0]["id"].as_str().unwrap().to_string()
}

/// One agent message: its length and `body`.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut m = (body.len() as u32).to_be_bytes().to_vec();
    m.extend_from_slice(body);
    m
}

/// Reads one answer: (type, payload), or None at EOF.
fn answer(s: &mut UnixStream) -> Option<(u8, Vec<u8>)> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Some((body[0], body[1..].to_vec()))
}

const FAILURE: u8 = 5;
const IDENTITIES_ANSWER: u8 = 12;

fn connect(sock: &Path) -> UnixStream {
    let s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches(" kB").trim().parse().unwrap()
}

/// Truncated, oversized, empty, unknown and malformed messages: a clear SSH_AGENT_FAILURE (or
/// a closed connection where the frame itself is broken), never a hang or a crash, and the
/// connection stays usable after a bad message whose frame was whole.
#[test]
fn bad_agent_messages() {
    let (d, sock) = agent_daemon("message_timeout_secs = 1\nmax_message_bytes = 65536\n", "");
    generate_in(&d, "default", "k", "ed25519");
    let mut s = connect(&sock);
    // Unknown type, empty message, malformed sign request, ADD_IDENTITY without [agent] add,
    // LOCK and REMOVE_ALL: each a failure, and the connection goes on.
    for body in [&[200u8][..], &[], &[13, 0, 0, 0, 9, 1], &[17, 0, 0, 0, 3, b'a', b'b', b'c'], &[22, 0, 0, 0, 1, b'x'], &[19]] {
        s.write_all(&frame(body)).unwrap();
        assert_eq!(answer(&mut s).map(|a| a.0), Some(FAILURE), "for {body:?}");
    }
    s.write_all(&frame(&[11])).unwrap();
    let (t, payload) = answer(&mut s).unwrap();
    assert_eq!(t, IDENTITIES_ANSWER);
    assert_eq!(&payload[..4], &1u32.to_be_bytes(), "one key listed");
    // Oversized: answered with a failure, then closed without reading the body.
    let mut s = connect(&sock);
    s.write_all(&(1u32 << 30).to_be_bytes()).unwrap();
    // The daemon may already have answered and closed: a broken pipe here is the point.
    let _ = s.write_all(&[11; 100]);
    assert_eq!(answer(&mut s).map(|a| a.0), Some(FAILURE));
    assert_eq!(answer(&mut s), None, "closed after an oversized message");
    // Truncated: the length promises more than ever comes; closed after message_timeout_secs.
    let mut s = connect(&sock);
    s.write_all(&[0, 0, 0, 50, 11, 1, 2]).unwrap();
    let t0 = Instant::now();
    assert_eq!(answer(&mut s), None);
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "{waited:?}");
    // Truncated then EOF: closed at once.
    let mut s = connect(&sock);
    s.write_all(&[0, 0, 0, 50, 13]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(answer(&mut s), None);
    // The daemon is fine.
    let lines = listed(&with_agent(&sock, None, &["ssh-add", "-L"]));
    assert_eq!(lines.len(), 1);
}

/// A sign request for a key the caller may not use is refused and audited; one for a key
/// keyport does not hold is refused.
#[test]
#[ignore = "needs root: callers of other uids through setpriv; scripts/test runs it"]
fn a_sign_request_for_someone_elses_key_is_refused_and_audited() {
    common::require_root("callers of other uids through setpriv");
    let (d, sock) = agent_daemon("", "");
    let id = generate_in(&d, "default", "root-only", "ec-p256");
    let line = listed(&with_agent(&sock, None, &["ssh-add", "-L"]))[0].clone();
    let shared = shared_dir(&d);
    let pubf = shared.join("root-only.pub");
    std::fs::write(&pubf, format!("{line}\n")).unwrap();
    let data = shared.join("data.txt");
    std::fs::write(&data, b"x").unwrap();
    // ssh-keygen would not even ask (the key is not in svc's list): send the SIGN_REQUEST by
    // hand, as uid 65534.
    // The system python (a pyenv shim under /root is not reachable for uid 65534).
    require("/usr/bin/python3");
    use base64::Engine;
    let blob = base64::engine::general_purpose::STANDARD.decode(line.split(' ').nth(1).unwrap()).unwrap();
    let mut req = vec![13u8];
    req.extend((blob.len() as u32).to_be_bytes());
    req.extend(&blob);
    req.extend(4u32.to_be_bytes());
    req.extend(b"data");
    req.extend(0u32.to_be_bytes());
    let msg = shared.join("sign.msg");
    std::fs::write(&msg, frame(&req)).unwrap();
    let script = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ns.sendall(open(sys.argv[2],'rb').read())\nprint(s.recv(5)[4])";
    let out = Command::new("setpriv")
        .args([format!("--reuid={SVC_UID}"), format!("--regid={SVC_UID}"), "--clear-groups".into()])
        .args(["/usr/bin/python3", "-c", script])
        .arg(&sock)
        .arg(&msg)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "5", "SSH_AGENT_FAILURE: {}", String::from_utf8_lossy(&out.stderr));
    let refused: Vec<_> = audit_rows(&d, "key.sign").into_iter().filter(|r| r.2 == "refused").collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!((refused[0].0.as_str(), refused[0].1.as_deref()), ("svc", Some(id.as_str())));
    let detail: serde_json::Value = serde_json::from_str(refused[0].3.as_deref().unwrap()).unwrap();
    assert_eq!(detail["via"], "agent");
    assert_eq!(detail["uid"], SVC_UID);
    assert!(detail["reason"].as_str().unwrap().contains("'sign'"), "{detail}");
    // A key keyport does not hold at all (root asks, by hand).
    let other = shared.join("other");
    let st = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&other).status().unwrap();
    assert!(st.success());
    let other_line = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let blob = base64::engine::general_purpose::STANDARD.decode(other_line.split(' ').nth(1).unwrap()).unwrap();
    let mut req = vec![13u8];
    req.extend((blob.len() as u32).to_be_bytes());
    req.extend(&blob);
    req.extend(4u32.to_be_bytes());
    req.extend(b"data");
    req.extend(0u32.to_be_bytes());
    let mut s = connect(&sock);
    s.write_all(&frame(&req)).unwrap();
    assert_eq!(answer(&mut s).map(|a| a.0), Some(FAILURE));
    assert!(audit_rows(&d, "key.sign").iter().all(|r| r.2 != "ok"), "nothing was signed");
}

/// 500 connections at once from one uid: its share is served, the rest are closed at once,
/// another uid is served meanwhile, memory stays bounded, and every slot comes back.
#[test]
#[ignore = "needs root: callers of other uids through setpriv; scripts/test runs it"]
fn five_hundred_concurrent_agent_connections() {
    common::require_root("callers of other uids through setpriv");
    let (d, sock) = agent_daemon("max_connections = 64\nmax_connections_per_uid = 16\n", "");
    generate_in(&d, "default", "k", "ed25519");
    generate_in(&d, "svc", "s", "ed25519");
    let pid = d.child.as_ref().unwrap().id();
    let rss_before = rss_kib(pid);
    let mut conns: Vec<UnixStream> = (0..500).map(|_| connect(&sock)).collect();
    // Each asks for the key list: exactly the uid's share answers, the rest see EOF.
    for c in conns.iter_mut() {
        let _ = c.write_all(&frame(&[11]));
    }
    let mut answered = 0;
    for c in conns.iter_mut() {
        if let Some((t, _)) = answer(c) {
            assert_eq!(t, IDENTITIES_ANSWER);
            answered += 1;
        }
    }
    assert_eq!(answered, 16, "agent.max_connections_per_uid");
    // Another uid is served at once while root's share is held.
    let t0 = Instant::now();
    let svc = listed(&with_agent(&sock, Some(SVC_UID), &["ssh-add", "-L"]));
    assert_eq!(svc.len(), 1);
    assert!(t0.elapsed() < Duration::from_secs(3), "another uid waited {:?}", t0.elapsed());
    let grown = rss_kib(pid).saturating_sub(rss_before);
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB for 500 connections");
    // Root is still over its share until it lets go; then it is served again.
    drop(conns);
    let t0 = Instant::now();
    loop {
        let out = with_agent(&sock, None, &["ssh-add", "-L"]);
        if out.status.success() {
            assert_eq!(listed(&out).len(), 2);
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "root's slots did not come back: {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// With `[agent] add = "<namespace>"`, `ssh-add FILE` imports the key into the token (not
/// exportable) and the agent then signs with it; constraints are refused; without `add`,
/// ssh-add is refused.
#[test]
#[ignore = "needs root: a caller of another uid through setpriv and chown; scripts/test runs it"]
fn ssh_add_imports_into_the_token_when_enabled() {
    common::require_root("a caller of another uid through setpriv and chown");
    require("ssh-add");
    let (d, sock) = agent_daemon("add = \"imported\"\n", "");
    let dir = d.dir.path();
    for (t, bits) in [("ed25519", None), ("ecdsa", Some("384")), ("rsa", Some("2048"))] {
        let f = dir.join(format!("id_{t}"));
        let mut c = Command::new("ssh-keygen");
        c.args(["-q", "-t", t, "-N", "", "-C", &format!("me@{t}"), "-f"]).arg(&f);
        if let Some(b) = bits {
            c.args(["-b", b]);
        }
        assert!(c.status().unwrap().success());
        let out = with_agent(&sock, None, &["ssh-add", f.to_str().unwrap()]);
        assert!(out.status.success(), "{t}: ssh-add: {}\n{}", String::from_utf8_lossy(&out.stderr), d.log());
        // Twice is fine: the key is already there.
        let out = with_agent(&sock, None, &["ssh-add", f.to_str().unwrap()]);
        assert!(out.status.success(), "{t}: second ssh-add: {}", String::from_utf8_lossy(&out.stderr));
        // The agent lists it and signs with it; the original public key verifies.
        let original = std::fs::read_to_string(f.with_extension("pub")).unwrap();
        let blob = original.split(' ').nth(1).unwrap();
        let lines = listed(&with_agent(&sock, None, &["ssh-add", "-L"]));
        assert!(lines.iter().any(|l| l.contains(blob) && l.ends_with(&format!("imported/me@{t}"))), "{lines:?}");
        std::fs::remove_file(&f).unwrap();
        let data = dir.join("data.txt");
        std::fs::write(&data, b"x").unwrap();
        let out = sshsig_as(&sock, None, &f.with_extension("pub"), &data);
        assert!(out.status.success(), "{t}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let (_, v) = d.curl("GET", "/keyport/v1/keys?namespace=imported", None, &[]);
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3, "{v}");
    assert!(keys.iter().all(|k| k["exportable"] == false && k["origin"] == "imported"), "{v}");
    let listing = d.pkcs11_objects();
    let imported: Vec<_> =
        object_blocks(&listing).into_iter().filter(|b| b.0.starts_with("Private Key Object") && b.1.starts_with("me@")).collect();
    assert_eq!(imported.len(), 3, "{listing}");
    assert!(imported.iter().all(|b| b.0.contains("sensitive") && !b.0.contains(", extractable")), "{imported:?}");
    assert_eq!(audit_rows(&d, "key.import").len(), 3);
    // A constraint (lifetime) cannot hold for a key written into the token: refused.
    let f = dir.join("id_constrained");
    assert!(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&f).status().unwrap().success());
    let out = with_agent(&sock, None, &["ssh-add", "-t", "60", f.to_str().unwrap()]);
    assert!(!out.status.success(), "ssh-add -t must be refused");
    // A uid whose principal lacks `import` there is refused.
    let shared = shared_dir(&d);
    let g = shared.join("id_svc");
    assert!(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&g).status().unwrap().success());
    let st = Command::new("chown").arg(format!("{SVC_UID}:{SVC_UID}")).arg(&g).status().unwrap();
    assert!(st.success());
    let out = with_agent(&sock, Some(SVC_UID), &["ssh-add", g.to_str().unwrap()]);
    assert!(!out.status.success(), "svc has no import permission");
    let (_, v) = d.curl("GET", "/keyport/v1/keys?namespace=imported", None, &[]);
    assert_eq!(v["keys"].as_array().unwrap().len(), 3, "nothing else was imported: {v}");
}

/// `git commit -S` with an SSH signing key that lives in the token, verified by
/// `git verify-commit`.
#[test]
fn git_signs_commits_through_the_agent() {
    require("git");
    let (d, sock) = agent_daemon("", "");
    generate_in(&d, "default", "git", "ed25519");
    let line = listed(&with_agent(&sock, None, &["ssh-add", "-L"]))[0].clone();
    let key = line.rsplit_once(' ').unwrap().0.to_string();
    let repo = d.dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let allowed = d.dir.path().join("git_allowed_signers");
    std::fs::write(&allowed, format!("dev@example {key}\n")).unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .current_dir(&repo)
            .env("SSH_AUTH_SOCK", &sock)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args(["-c", "user.name=dev", "-c", "user.email=dev@example", "-c", "gpg.format=ssh"])
            .arg("-c")
            .arg(format!("user.signingkey=key::{key}"))
            .arg("-c")
            .arg(format!("gpg.ssh.allowedSignersFile={}", allowed.display()))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    git(&["init", "-q"]);
    std::fs::write(repo.join("f"), "x").unwrap();
    git(&["add", "f"]);
    git(&["commit", "-q", "-S", "-m", "signed in the token"]);
    let v = git(&["verify-commit", "-v", "HEAD"]);
    assert!(v.contains("Good \"git\" signature for dev@example"), "{v}");
    let rows = audit_rows(&d, "key.sign");
    assert!(rows.iter().any(|r| r.3.as_deref().is_some_and(|x| x.contains("\"sshsig_namespace\":\"git\""))), "{rows:?}");
}

/// `[agent.namespaces.<ns>] confirm`: a program that must exit 0 before each signature; a no,
/// or no answer in time, refuses the signature (audited).
#[test]
fn the_confirm_hook_decides_each_signature() {
    let base = tempfile::tempdir().unwrap();
    let asked = base.path().join("asked");
    let allow = base.path().join("allow");
    let hook = format!(
        "confirm = [\"/bin/sh\", \"-c\", \"echo $KEYPORT_PRINCIPAL $KEYPORT_KEY_NAME $KEYPORT_UID $KEYPORT_DATA_KIND >> {}; sleep \\\"$(cat {} 2>/dev/null || echo x)\\\" 2>/dev/null; test -e {}\"]",
        asked.display(),
        allow.display(),
        allow.display()
    );
    let (d, sock) = agent_daemon(&format!("confirm_timeout_secs = 2\n[agent.namespaces.guarded]\n{hook}\n"), "");
    let id = generate_in(&d, "guarded", "g", "ed25519");
    let line = listed(&with_agent(&sock, None, &["ssh-add", "-L"]))[0].clone();
    let pubf = d.dir.path().join("g.pub");
    std::fs::write(&pubf, format!("{line}\n")).unwrap();
    let data = d.dir.path().join("data.txt");
    std::fs::write(&data, b"x").unwrap();
    // No: refused, and the hook was asked with the caller's details.
    let out = sshsig_as(&sock, None, &pubf, &data);
    assert!(!out.status.success(), "the hook said no");
    assert_eq!(std::fs::read_to_string(&asked).unwrap(), format!("root g {} sshsig\n", nix::unistd::getuid().as_raw()));
    // Yes.
    std::fs::write(&allow, "0").unwrap();
    let out = sshsig_as(&sock, None, &pubf, &data);
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), d.log());
    // No answer within confirm_timeout_secs: killed, refused.
    std::fs::write(&allow, "30").unwrap();
    let t0 = Instant::now();
    let (s, v) = d.curl("POST", &format!("/keyport/v1/keys/{id}/sign"), Some(r#"{"data":"AA=="}"#), &[]);
    assert_eq!(s, 403, "{v}");
    assert!(t0.elapsed() < Duration::from_secs(6), "the hook and its children are killed at the timeout: {:?}", t0.elapsed());
    assert!(v["error"]["message"].as_str().unwrap().contains("did not answer within 2 s"), "{v}");
    let rows = audit_rows(&d, "key.sign");
    let outcomes: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(outcomes, vec!["refused", "ok", "refused"], "{rows:?}");
    assert!(rows[0].3.as_deref().unwrap().contains("confirm hook"), "{rows:?}");
}

/// systemd socket activation of both sockets: the fd named `agent` is the agent's, served
/// instead of binding `[agent] socket`.
#[test]
fn systemd_passes_the_agent_socket_by_name() {
    require("systemd-socket-activate");
    let mut d = Daemon::config("");
    let configured = d.dir.path().join("agent.sock");
    std::fs::write(&d.config, std::fs::read_to_string(&d.config).unwrap() + &format!("\n[agent]\nsocket = \"{}\"\n", configured.display()))
        .unwrap();
    let (api, agent) = (d.dir.path().join("api-activated.sock"), d.dir.path().join("agent-activated.sock"));
    let child = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&api)
        .arg("-l")
        .arg(&agent)
        .arg("--fdname=api:agent")
        .arg(env!("CARGO_BIN_EXE_keyport"))
        .args(["serve", "--config"])
        .arg(&d.config)
        .env("KEYPORT_LOG", "info,cryptoki=off")
        .stderr(std::fs::File::create(d.dir.path().join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    d.child = Some(child);
    let start = Instant::now();
    while !agent.exists() || !api.exists() {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    d.socket = api;
    // The first connection starts keyport (systemd-socket-activate waits for one).
    let (s, v) = d.curl("POST", "/keyport/v1/keys", Some(r#"{"name":"k","algorithm":"ed25519"}"#), &["--max-time", "60"]);
    assert_eq!(s, 201, "{v}\n{}", d.log());
    let lines = listed(&with_agent(&agent, None, &["ssh-add", "-L"]));
    assert_eq!(comments(&lines), vec!["default/k"]);
    assert!(d.log().contains("ssh-agent listening on the Unix socket passed by systemd"), "{}", d.log());
    assert!(!configured.exists(), "the configured agent path is not bound when activated");
}

/// A connection that says nothing is closed after `idle_timeout_secs`, and its slot comes back:
/// holding connections open cannot keep a uid's share (here 1) forever.
#[test]
fn idle_connections_are_closed_and_their_slot_returns() {
    let (d, sock) = agent_daemon("idle_timeout_secs = 1\nmax_connections_per_uid = 1\n", "");
    generate_in(&d, "default", "k", "ed25519");
    let mut idle = connect(&sock);
    std::thread::sleep(Duration::from_millis(200));
    // The uid's one slot is taken: a second connection is closed at once.
    let mut second = connect(&sock);
    let t0 = Instant::now();
    let _ = second.write_all(&frame(&[11]));
    assert_eq!(answer(&mut second), None);
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    // The idle one is closed after about a second…
    let t0 = Instant::now();
    assert_eq!(answer(&mut idle), None);
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    // …and its slot serves the next connection.
    let t0 = Instant::now();
    loop {
        let mut s = connect(&sock);
        let _ = s.write_all(&frame(&[11]));
        if let Some((t, _)) = answer(&mut s) {
            assert_eq!(t, IDENTITIES_ANSWER);
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(3), "the idle connection's slot did not come back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `ssh` without IdentitiesOnly: every agent identity, in the agent's order.
fn ssh_any_identity(sock: &Path, port: u16) -> Output {
    Command::new("ssh")
        .args(["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=no", "-o"])
        .arg(format!("IdentityAgent={}", sock.display()))
        .args(["-o", "ConnectTimeout=10", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
        .args(["-p", &port.to_string(), "root@127.0.0.1", "echo", "logged-in-as-$(id -un)"])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ssh_keygen(args: &[&str]) {
    let out = Command::new("ssh-keygen").args(args).output().unwrap();
    assert!(out.status.success(), "ssh-keygen {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// An SSH certificate from a real `ssh-keygen -s` CA, attached to a token key
/// (`PUT keys/{id}/ssh-certificate`): `ssh-add -L` lists it as a `*-cert-v01@openssh.com`
/// identity, and an sshd that trusts only the CA (`TrustedUserCAKeys`, no authorized keys)
/// lets `ssh` in with it — the sign request names the certificate and the key signs. Bad
/// certificates are refused with what is wrong and change nothing.
#[test]
#[ignore = "needs root: a real sshd that logs in as root; scripts/test runs it"]
fn ssh_certificates_are_offered_and_log_in_to_an_sshd_trusting_the_ca() {
    common::require_root("a real sshd that logs in as root");
    require("ssh");
    require("ssh-keygen");
    let (d, sock) = agent_daemon("", "");
    let dir = d.dir.path().to_path_buf();
    let ca = dir.join("ca");
    ssh_keygen(&["-q", "-t", "ed25519", "-N", "", "-C", "test-ca", "-f", ca.to_str().unwrap()]);
    let hostkey = dir.join("hostkey");
    ssh_keygen(&["-q", "-t", "ed25519", "-N", "", "-f", hostkey.to_str().unwrap()]);
    let other = generate_in(&d, "default", "other", "ed25519");
    for alg in ["ec-p256", "rsa-2048"] {
        let id = generate_in(&d, "default", &format!("cert-{alg}"), alg);
        let comment = format!("default/cert-{alg}");
        let lines = listed(&with_agent(&sock, None, &["ssh-add", "-L"]));
        let line = lines.iter().find(|l| l.ends_with(&comment)).unwrap().clone();
        let pubf = dir.join(format!("{alg}.pub"));
        std::fs::write(&pubf, format!("{line}\n")).unwrap();
        ssh_keygen(&["-q", "-s", ca.to_str().unwrap(), "-I", &format!("id-{alg}"), "-n", "root", "-V", "-5m:+1h", pubf.to_str().unwrap()]);
        let cert = std::fs::read_to_string(dir.join(format!("{alg}-cert.pub"))).unwrap();
        let put = |id: &str, c: &str| {
            d.curl(
                "PUT",
                &format!("/keyport/v1/keys/{id}/ssh-certificate"),
                Some(&serde_json::json!({ "certificate": c }).to_string()),
                &[],
            )
        };

        // Bad certificates first: each refused with what is wrong, nothing attached.
        let (s, v) = put(&other, &cert);
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("certificate_key_mismatch")), "{v}");
        let (s, v) = put(&id, "ssh-ed25519-cert-v01@openssh.com AAAA not-base64");
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_certificate")), "{v}");
        let (s, v) = put(&id, &line);
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_certificate")), "a plain key is no certificate: {v}");
        // One byte of the signed part changed (the key id), re-encoded: the CA signature fails.
        let tampered = {
            use base64::Engine;
            let b64 = cert.split_whitespace().nth(1).unwrap();
            let mut raw = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
            let needle = format!("id-{alg}");
            let at = raw.windows(needle.len()).position(|w| w == needle.as_bytes()).unwrap();
            raw[at] = b'X';
            format!("{} {}", cert.split_whitespace().next().unwrap(), base64::engine::general_purpose::STANDARD.encode(raw))
        };
        let (s, v) = put(&id, &tampered);
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_certificate")), "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("CA signature"), "{v}");
        let expired_pub = dir.join(format!("{alg}-old.pub"));
        std::fs::copy(&pubf, &expired_pub).unwrap();
        ssh_keygen(&[
            "-q",
            "-s",
            ca.to_str().unwrap(),
            "-I",
            "old",
            "-n",
            "root",
            "-V",
            "20200101:20200102",
            expired_pub.to_str().unwrap(),
        ]);
        let expired = std::fs::read_to_string(dir.join(format!("{alg}-old-cert.pub"))).unwrap();
        let (s, v) = put(&id, &expired);
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("certificate_expired")), "{v}");
        let (s, _) = d.curl("GET", &format!("/keyport/v1/keys/{id}/ssh-certificate"), None, &[]);
        assert_eq!(s, 404, "nothing attached by the refused requests");
        assert!(!listed(&with_agent(&sock, None, &["ssh-add", "-L"])).iter().any(|l| l.contains("-cert-v01@")));

        // The real one.
        let (s, v) = put(&id, &cert);
        assert_eq!(s, 200, "{v}\n{}", d.log());
        assert_eq!(v["identity"], format!("id-{alg}"));
        assert_eq!(v["kind"], "user");
        assert_eq!(v["principals"], serde_json::json!(["root"]));
        assert!(v["type"].as_str().unwrap().ends_with("-cert-v01@openssh.com"), "{v}");
        let ca_fp = Command::new("ssh-keygen").args(["-l", "-f"]).arg(ca.with_extension("pub")).output().unwrap();
        assert!(String::from_utf8_lossy(&ca_fp.stdout).contains(v["ca_fingerprint"].as_str().unwrap()), "{v}");
        let (s, g) = d.curl("GET", &format!("/keyport/v1/keys/{id}/ssh-certificate"), None, &[]);
        assert_eq!((s, &g["identity"]), (200, &v["identity"]));

        // Listed: the certificate (right before its plain key), with the CA's bytes.
        let lines = listed(&with_agent(&sock, None, &["ssh-add", "-L"]));
        let cert_b64 = cert.split_whitespace().nth(1).unwrap();
        let at = lines.iter().position(|l| l.split(' ').nth(1) == Some(cert_b64)).unwrap_or_else(|| panic!("{lines:?}"));
        assert!(lines[at].split(' ').next().unwrap().ends_with("-cert-v01@openssh.com"), "{lines:?}");
        assert_eq!(lines[at + 1], line, "then the plain key: {lines:?}");

        // An sshd that trusts only the CA: the login can only be the certificate's.
        let sshd_dir = dir.join(format!("sshd-{alg}"));
        std::fs::create_dir_all(&sshd_dir).unwrap();
        let sshd = Sshd::start(
            &sshd_dir,
            &format!("HostKey {}\nTrustedUserCAKeys {}\nAuthorizedKeysFile none\n", hostkey.display(), ca.with_extension("pub").display()),
        );
        let out = ssh_any_identity(&sock, sshd.port);
        assert!(
            out.status.success(),
            "{alg}: ssh failed: {}\nsshd:\n{}\nkeyport:\n{}",
            String::from_utf8_lossy(&out.stderr),
            sshd.log(),
            d.log()
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "logged-in-as-root");
        assert!(sshd.log().contains(&format!("Accepted certificate ID \"id-{alg}\"")), "{}", sshd.log());
        let rows = audit_rows(&d, "key.sign");
        let r = rows.iter().rev().find(|r| r.1.as_deref() == Some(id.as_str())).expect("the login signature is audited");
        assert_eq!(r.2, "ok");
        assert!(r.3.as_deref().unwrap().contains("ssh-userauth"), "{r:?}");
        assert!(!audit_rows(&d, "key.ssh_certificate.attach").is_empty());

        // Detached: no longer offered, and the CA-only sshd lets no one in.
        let (s, _) = d.curl("DELETE", &format!("/keyport/v1/keys/{id}/ssh-certificate"), None, &[]);
        assert_eq!(s, 200);
        assert!(!listed(&with_agent(&sock, None, &["ssh-add", "-L"])).iter().any(|l| l.contains("-cert-v01@")));
        assert!(!ssh_any_identity(&sock, sshd.port).status.success(), "without the certificate the CA-only sshd refuses");
        let (s, _) = d.curl("DELETE", &format!("/keyport/v1/keys/{id}/ssh-certificate"), None, &[]);
        assert_eq!(s, 404);
    }
    // Attaching needs `import` (and finding the key `read`): svc-api (sign on svc only) may not.
    let (s, v) = d.curl(
        "PUT",
        &format!("/keyport/v1/keys/{other}/ssh-certificate"),
        Some(r#"{"certificate":"x"}"#),
        &["-H", "X-Api-Key: svc-api-key"],
    );
    assert_eq!(s, 404, "svc-api may not even read the key: {v}");
}

/// `[agent.keys.<id>]`: restrictions on one key on top of its namespace's. Here key `a` is
/// only for uid 0 and key `b` needs a confirm hook that says no; the other keys of the
/// namespace are untouched.
#[test]
#[ignore = "needs root: callers of other uids through setpriv; scripts/test runs it"]
fn per_key_allowed_uids_and_confirm() {
    common::require_root("callers of other uids through setpriv");
    let (mut d, sock) = agent_daemon("", "");
    let a = generate_in(&d, "svc", "a", "ed25519");
    let b = generate_in(&d, "svc", "b", "ec-p256");
    generate_in(&d, "svc", "c", "ed25519");
    // Restrictions are read at start: add them and restart.
    d.stop();
    let text = std::fs::read_to_string(&d.config).unwrap();
    // agent_daemon wrote [agent] last: its subtables can follow.
    let text = format!("{text}\n[agent.keys.{a}]\nallowed_uids = [0]\n\n[agent.keys.{b}]\nconfirm = [\"/bin/false\"]\n");
    std::fs::write(&d.config, text).unwrap();
    d.spawn();
    let start = Instant::now();
    while UnixStream::connect(&sock).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "agent socket did not come back:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let root = listed(&with_agent(&sock, None, &["ssh-add", "-L"]));
    assert_eq!(comments(&root), vec!["svc/a", "svc/b", "svc/c"], "{root:?}");
    let svc = listed(&with_agent(&sock, Some(SVC_UID), &["ssh-add", "-L"]));
    assert_eq!(comments(&svc), vec!["svc/b", "svc/c"], "key a is for uid 0 only: {svc:?}");

    let shared = shared_dir(&d);
    let data = shared.join("data.txt");
    std::fs::write(&data, b"x").unwrap();
    let pub_of = |lines: &[String], name: &str| {
        let f = shared.join(format!("{name}.pub"));
        std::fs::write(&f, format!("{}\n", lines.iter().find(|l| l.ends_with(&format!("svc/{name}"))).unwrap())).unwrap();
        f
    };
    // svc over TCP (no uid) asks for key a: refused, audited, naming the config path.
    let (s, v) = d.curl_https("POST", &format!("/keyport/v1/keys/{a}/sign"), Some(r#"{"data":"AA=="}"#), &["-H", "X-Api-Key: svc-api-key"]);
    assert_eq!(s, 403, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains(&format!("agent.keys.{a}.allowed_uids")), "{v}");
    // Key b: its hook says no, for every caller.
    for uid in [None, Some(SVC_UID)] {
        let out = sshsig_as(&sock, uid, &pub_of(&root, "b"), &data);
        assert!(!out.status.success(), "key b's hook says no ({uid:?})");
    }
    // Key c: no restriction of its own.
    let out = sshsig_as(&sock, Some(SVC_UID), &pub_of(&root, "c"), &data);
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), d.log());
    let out = sshsig_as(&sock, None, &pub_of(&root, "a"), &data);
    assert!(out.status.success(), "uid 0 may use key a: {}", String::from_utf8_lossy(&out.stderr));

    let rows = audit_rows(&d, "key.sign");
    let refused: Vec<_> = rows.iter().filter(|r| r.2 == "refused").collect();
    assert_eq!(refused.len(), 3, "{rows:?}");
    assert!(refused[0].3.as_deref().unwrap().contains(&format!("agent.keys.{a}.allowed_uids")), "{refused:?}");
    assert!(
        refused[1..]
            .iter()
            .all(|r| r.1.as_deref() == Some(b.as_str()) && r.3.as_deref().unwrap().contains(&format!("agent.keys.{b}.confirm"))),
        "{refused:?}"
    );
}

/// The agent finds a sign request's key through a cache: a deleted key stops signing at once,
/// and a key made after the cache filled is found.
#[test]
fn the_key_cache_follows_the_inventory() {
    let (d, sock) = agent_daemon("", "");
    let id = generate_in(&d, "default", "cached", "ec-p256");
    let line = listed(&with_agent(&sock, None, &["ssh-add", "-L"]))[0].clone();
    use base64::Engine;
    let blob = base64::engine::general_purpose::STANDARD.decode(line.split(' ').nth(1).unwrap()).unwrap();
    let mut req = vec![13u8];
    req.extend((blob.len() as u32).to_be_bytes());
    req.extend(&blob);
    req.extend(4u32.to_be_bytes());
    req.extend(b"data");
    req.extend(0u32.to_be_bytes());
    let mut s = connect(&sock);
    for _ in 0..3 {
        s.write_all(&frame(&req)).unwrap();
        assert_eq!(answer(&mut s).map(|a| a.0), Some(14), "SSH_AGENT_SIGN_RESPONSE");
    }
    let (st, v) = d.curl("DELETE", &format!("/keyport/v1/keys/{id}"), None, &[]);
    assert_eq!(st, 200, "{v}");
    s.write_all(&frame(&req)).unwrap();
    assert_eq!(answer(&mut s).map(|a| a.0), Some(FAILURE), "a deleted key no longer signs");
    let signed: Vec<_> = audit_rows(&d, "key.sign").into_iter().filter(|r| r.2 == "ok").collect();
    assert_eq!(signed.len(), 3, "{signed:?}");
    // A new key: found although the (empty) answer for the old blob was cached.
    let id2 = generate_in(&d, "default", "fresh", "ed25519");
    let fresh = listed(&with_agent(&sock, None, &["ssh-add", "-L"]))[0].clone();
    let blob = base64::engine::general_purpose::STANDARD.decode(fresh.split(' ').nth(1).unwrap()).unwrap();
    let mut req = vec![13u8];
    req.extend((blob.len() as u32).to_be_bytes());
    req.extend(&blob);
    req.extend(4u32.to_be_bytes());
    req.extend(b"data");
    req.extend(0u32.to_be_bytes());
    s.write_all(&frame(&req)).unwrap();
    assert_eq!(answer(&mut s).map(|a| a.0), Some(14));
    assert_eq!(audit_rows(&d, "key.sign").last().unwrap().1.as_deref(), Some(id2.as_str()));
}
