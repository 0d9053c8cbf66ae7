//! SSH keyset rotation through the native API against a real daemon and SoftHSM token: the
//! default policy completes on its own; hooks see the keys; a failing hook rolls back; a
//! hanging one times out; confirmations wait; cancel rolls back (mid-rotation and after); a
//! SIGKILL at every stage resumes without a second active version or orphan token objects.

mod common;

use common::Daemon;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn create(d: &Daemon, name: &str) -> Value {
    let (s, v) =
        d.curl("POST", "/keyport/v1/keysets", Some(&json!({"name": name, "type": "User", "algorithm": "ed25519"}).to_string()), &[]);
    assert_eq!(s, 201, "{v}\n{}", d.log());
    v
}

fn show(d: &Daemon, name: &str) -> Value {
    let (s, v) = d.curl("GET", &format!("/keyport/v1/keysets/{name}"), None, &[]);
    assert_eq!(s, 200, "{v}");
    v
}

fn act(d: &Daemon, name: &str, action: &str) -> (u16, Value) {
    d.curl("POST", &format!("/keyport/v1/keysets/{name}/{action}"), None, &[])
}

/// Waits until `f` holds for the keyset (30 s).
fn wait_for(d: &Daemon, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let v = show(d, name);
        if f(&v) {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "keyset {name} never reached: {what}\n{v:#}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn states(v: &Value) -> Vec<String> {
    v["versions"].as_array().unwrap().iter().map(|x| x["state"].as_str().unwrap().to_string()).collect()
}

fn finished(v: &Value) -> bool {
    v["rotation"]["finished_at"].is_string()
}

/// Every key pair in the token belongs to an inventory row, and no two versions are active. A
/// key being made at this moment has its objects before its row (the crash-safe order), so an
/// object without a row must get one, or be gone, within a few seconds.
fn assert_consistent(d: &Daemon, v: &Value) {
    assert!(states(v).iter().filter(|s| *s == "active").count() == 1, "one active version: {v:#}");
    let start = Instant::now();
    loop {
        let (_, keys) = d.curl("GET", "/keyport/v1/keys", None, &[]);
        let ids: Vec<String> = keys["keys"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap().to_string()).collect();
        // The daemon's own objects (TLS key, DEK) have ASCII-named ids; keys have 16 random bytes.
        let orphans: Vec<String> = common::object_blocks(&d.pkcs11_objects())
            .into_iter()
            .map(|(_, _, id)| id)
            .filter(|id| !id.starts_with("6b6579706f7274") && !ids.contains(id))
            .collect();
        if orphans.is_empty() {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "token objects {orphans:?} have no inventory row (orphans); rows: {ids:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn default_policy_rotation_completes_by_itself_and_hooks_see_both_keys() {
    let mut d = Daemon::config("");
    let hooks = d.dir.path().join("hooks.d/provision-public");
    std::fs::create_dir_all(&hooks).unwrap();
    let seen = d.dir.path().join("seen");
    script(&hooks, "10-record", &format!("env | grep ^KEYPORT_ | sort > {}", seen.display()));
    d.spawn();
    let v = create(&d, "deploy");
    assert_eq!(states(&v), ["active"]);
    assert_eq!(v["id"].as_str().unwrap().len(), 40, "KeysetId is 40 hex: {v}");
    let old_key = v["versions"][0]["key_id"].as_str().unwrap().to_string();
    let (s, r) = act(&d, "deploy", "rotate");
    assert_eq!(s, 202, "{r}");
    let v = wait_for(&d, "deploy", "complete", finished);
    assert_eq!(v["rotation"]["outcome"], "complete", "{v:#}");
    assert_eq!((v["stage"].as_i64(), v["process_status"].as_i64()), (Some(10600), Some(0)));
    assert_eq!(states(&v), ["retired", "active"]);
    let new_key = v["versions"][1]["key_id"].as_str().unwrap().to_string();
    assert_consistent(&d, &v);
    let env = std::fs::read_to_string(&seen).unwrap();
    let (_, newpk) = d.curl("GET", &format!("/keyport/v1/keys/{new_key}/public"), None, &[]);
    let (_, oldpk) = d.curl("GET", &format!("/keyport/v1/keys/{old_key}/public"), None, &[]);
    // The same key blob as the public endpoint (the comment names the keyset version).
    let blob = |v: &Value| v["public_key"].as_str().unwrap().split(' ').take(2).collect::<Vec<_>>().join(" ");
    assert!(env.contains(&format!("KEYPORT_NEW_PUBLIC_KEY={} keyport:default/deploy/v2", blob(&newpk))), "{env}");
    assert!(env.contains(&format!("KEYPORT_OLD_PUBLIC_KEY={} keyport:default/deploy/v1", blob(&oldpk))), "{env}");
    assert!(env.contains("KEYPORT_STAGE=ProvisionNewPublicKeys") && env.contains("KEYPORT_STAGE_CODE=10200"), "{env}");
    assert!(env.contains(&format!("KEYPORT_KEY_ID={new_key}")) && env.contains("KEYPORT_KEYSET=deploy"), "{env}");
    assert!(!env.contains("PRIVATE"), "no private key material in a hook's environment: {env}");
    // The history holds the hook's result.
    assert!(v["history"].as_array().unwrap().iter().any(|e| e["event"] == "hook ok"), "{v:#}");
    // A second rotation while one is open is refused; the names go v1, v2, v3.
    act(&d, "deploy", "rotate");
    let (s, _) = act(&d, "deploy", "rotate");
    assert!(s == 409 || s == 202);
    let v = wait_for(&d, "deploy", "second complete", |v| finished(v) && states(v).len() == 3);
    assert_eq!(v["versions"][2]["key_name"], "deploy.v3");
    assert_consistent(&d, &v);
}

#[test]
fn a_failing_hook_rolls_back_and_the_old_key_stays_active() {
    let mut d = Daemon::config("");
    let fail = script(d.dir.path(), "fail", "echo 'cannot reach host' >&2; exit 1");
    let rollback_log = d.dir.path().join("rollback.log");
    let rb = script(d.dir.path(), "rb", &format!("echo $KEYPORT_STAGE_CODE >> {}", rollback_log.display()));
    let cfg = std::fs::read_to_string(&d.config).unwrap()
        + &format!("\n[rotation.namespaces.default]\nhooks = {{ verify = [\"{}\"], rollback = [\"{}\"] }}\n", fail.display(), rb.display());
    std::fs::write(&d.config, cfg).unwrap();
    d.spawn();
    let v = create(&d, "web");
    let old_key = v["versions"][0]["key_id"].as_str().unwrap().to_string();
    act(&d, "web", "rotate");
    let v = wait_for(&d, "web", "failed", finished);
    assert_eq!(v["rotation"]["outcome"], "failed", "{v:#}");
    assert_eq!((v["stage"].as_i64(), v["process_status"].as_i64()), (Some(10101), Some(6)));
    assert_eq!(v["rotation"]["failed_stage"], 10400);
    assert_eq!(states(&v), ["active", "abandoned"]);
    assert_eq!(v["versions"][0]["key_id"], old_key.as_str());
    assert!(v["versions"][1]["key_name"].is_null(), "the abandoned version's key is deleted: {v:#}");
    assert_eq!(std::fs::read_to_string(&rollback_log).unwrap(), "90200\n90300\n90400\n90500\n");
    let failed = v["history"].as_array().unwrap().iter().find(|e| e["event"] == "hook failed").unwrap();
    assert!(failed["detail"].as_str().unwrap().contains("cannot reach host"), "{failed}");
    assert_consistent(&d, &v);
    // Cancel of a failed rotation has nothing to undo; retry starts a new one (which fails too).
    assert_eq!(act(&d, "web", "cancel").0, 409);
    assert_eq!(act(&d, "web", "retry").0, 202);
    let v = wait_for(&d, "web", "failed again", |v| finished(v) && states(v).len() == 3);
    assert_eq!(states(&v), ["active", "abandoned", "abandoned"]);
}

#[test]
fn confirmations_wait_and_cancel_rolls_back_mid_rotation_and_after_completion() {
    let d = Daemon::start("[rotation.namespaces.default]\nconfirmations = \"both\"\n");
    create(&d, "db");
    assert_eq!(act(&d, "db", "confirm").0, 409, "nothing to confirm yet");
    act(&d, "db", "rotate");
    let v = wait_for(&d, "db", "10250", |v| v["stage"] == 10250);
    assert_eq!(v["process_status"], 8);
    assert_eq!(states(&v), ["active", "pending"]);
    // The pending key may not leave before 10350.
    let pending = v["versions"][1]["key_id"].as_str().unwrap().to_string();
    let (s, e) = d.curl("POST", &format!("/keyport/v1/keys/{pending}/export"), Some(r#"{"passphrase":"correct horse"}"#), &[]);
    assert_eq!(s, 403, "{e}");
    assert_eq!(act(&d, "db", "confirm").0, 202);
    let v = wait_for(&d, "db", "10350", |v| v["stage"] == 10350);
    assert_eq!(v["process_status"], 8);
    // Cancel mid-rotation: the pending version goes, v1 stays active.
    assert_eq!(act(&d, "db", "cancel").0, 202);
    let v = wait_for(&d, "db", "cancelled", finished);
    assert_eq!(v["rotation"]["outcome"], "cancelled");
    assert_eq!(states(&v), ["active", "abandoned"]);
    assert_consistent(&d, &v);
    // A full rotation, then cancel after completion: the previous version comes back.
    act(&d, "db", "rotate");
    wait_for(&d, "db", "10250", |v| v["stage"] == 10250);
    act(&d, "db", "confirm");
    wait_for(&d, "db", "10350", |v| v["stage"] == 10350);
    act(&d, "db", "confirm");
    let v = wait_for(&d, "db", "complete", finished);
    assert_eq!(states(&v), ["retired", "abandoned", "active"]);
    assert_eq!(act(&d, "db", "cancel").0, 202);
    let v = wait_for(&d, "db", "rolled back", |v| finished(v) && v["rotation"]["kind"] == "rollback");
    assert_eq!(v["rotation"]["outcome"], "rolled-back");
    assert_eq!(states(&v), ["active", "abandoned", "retired"]);
    assert_consistent(&d, &v);
}

#[test]
fn a_hanging_hook_times_out_and_a_loud_one_is_bounded() {
    let mut d = Daemon::config("");
    let hang = script(d.dir.path(), "hang", "sleep 600");
    let loud = script(d.dir.path(), "loud", "head -c 8000000 /dev/zero | tr '\\0' y; exit 0");
    let cfg = std::fs::read_to_string(&d.config).unwrap()
        + &format!(
            "\n[rotation.keysets.\"default/slow\"]\nhook_timeout_secs = 1\nhooks = {{ verify = [\"{}\"] }}\n[rotation.keysets.\"default/loud\"]\nhooks = {{ verify = [\"{}\"] }}\n",
            hang.display(),
            loud.display()
        );
    std::fs::write(&d.config, cfg).unwrap();
    d.spawn();
    create(&d, "slow");
    create(&d, "loud");
    let pid = d.child.as_ref().unwrap().id();
    let rss = || -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        s.lines().find(|l| l.starts_with("VmRSS:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let before = rss();
    let t = Instant::now();
    act(&d, "slow", "rotate");
    act(&d, "loud", "rotate");
    let v = wait_for(&d, "slow", "timed out", finished);
    assert!(t.elapsed() < Duration::from_secs(20), "the timeout did not end the hook: {:?}", t.elapsed());
    assert_eq!(v["rotation"]["outcome"], "failed");
    assert!(v["rotation"]["error"].as_str().unwrap().contains("timed out"), "{v:#}");
    let v = wait_for(&d, "loud", "complete", finished);
    assert_eq!(v["rotation"]["outcome"], "complete");
    let run: Value = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "hook ok")
        .map(|e| serde_json::from_str(e["detail"].as_str().unwrap()).unwrap())
        .unwrap();
    assert_eq!(run["stdout"].as_str().unwrap().len(), 64 * 1024);
    assert_eq!(run["dropped_bytes"], 8_000_000 - 64 * 1024);
    let grew = rss().saturating_sub(before);
    assert!(grew < 40 * 1024, "8 MB of hook output grew the daemon by {grew} KiB");
}

#[test]
fn sigkill_at_every_stage_resumes_without_two_active_versions_or_orphans() {
    // A hook that sleeps at each stage gives the test a moment to SIGKILL the daemon there.
    let mut d = Daemon::config("");
    let marker = d.dir.path().join("stages");
    let slow = script(d.dir.path(), "slow", &format!("echo $KEYPORT_STAGE_CODE >> {}; sleep 0.5", marker.display()));
    let mut hooks = String::new();
    for stage in ["pre", "provision-public", "provision-private", "verify", "remove-old", "post"] {
        hooks.push_str(&format!("\"{stage}\" = [\"{}\"], ", slow.display()));
    }
    let cfg = std::fs::read_to_string(&d.config).unwrap()
        + &format!("\n[rotation.namespaces.default]\nhooks = {{ {} }}\n", hooks.trim_end_matches(", "));
    std::fs::write(&d.config, cfg).unwrap();
    d.spawn();
    create(&d, "k");
    act(&d, "k", "rotate");
    // Once in every stage it is seen in: SIGKILL mid-hook, start again, check.
    let mut killed_at = std::collections::BTreeSet::new();
    let start = Instant::now();
    loop {
        let v = show(&d, "k");
        if finished(&v) {
            assert_eq!(v["rotation"]["outcome"], "complete", "{v:#}");
            assert_eq!(states(&v), ["retired", "active"]);
            assert_consistent(&d, &v);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "never finished\n{v:#}\n{}", d.log());
        let stage = v["stage"].as_i64().unwrap();
        if killed_at.insert(stage) {
            std::thread::sleep(Duration::from_millis(200));
            d.kill9();
            d.spawn();
            let v = show(&d, "k");
            assert!(states(&v).iter().filter(|s| *s == "active").count() == 1, "{v:#}");
            assert_consistent(&d, &v);
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let kills = killed_at.len();
    let seen = std::fs::read_to_string(&marker).unwrap();
    for code in ["0", "10200", "10300", "10400", "10500", "10600"] {
        assert!(seen.lines().any(|l| l == code), "stage {code} never ran its hook: {seen}");
    }
    assert!(kills >= 6, "the daemon was killed in {kills} stages only: {killed_at:?}");
}

#[test]
fn cli_rotate_wait_confirm_list_show_and_pubkey() {
    let d = Daemon::start("[rotation.keysets.\"default/cli\"]\nconfirmations = \"private-key\"\n");
    create(&d, "cli");
    let run = |args: &[&str]| {
        let out = d.command().args(args).arg("--socket").arg(&d.socket).output().unwrap();
        (out.status.code().unwrap(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, out, err) = run(&["rotate", "cli", "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("stage 10350 WaitManualPrivateKeyConfirmation") && out.contains("keyport confirm cli"), "{out}");
    let (code, out, _) = run(&["keysets", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("cli") && out.contains("10350"), "{out}");
    let (code, out, err) = run(&["confirm", "cli"]);
    assert_eq!(code, 0, "{out}{err}");
    wait_for(&d, "cli", "complete", finished);
    let (code, out, _) = run(&["keysets", "show", "cli"]);
    assert_eq!(code, 0);
    assert!(out.contains("10600 Complete") && out.contains("retired") && out.contains("confirmed"), "{out}");
    let (code, out, err) = run(&["keys", "pubkey", "cli.v2"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ssh-ed25519 AAAA") && out.trim_end().ends_with("cli.v2"), "{out}");
    let (code, out, _) = run(&["keys", "pubkey", "cli.v2", "--pem"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("-----BEGIN PUBLIC KEY-----\n") && out.ends_with("-----END PUBLIC KEY-----\n"), "{out}");
    // Confirm with nothing waiting: the daemon's refusal, exit 1.
    let (code, _, err) = run(&["confirm", "cli"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no rotation under way"), "{err}");
}

#[test]
fn adopting_a_key_and_refusals_change_nothing() {
    let d = Daemon::start("");
    let k = d.generate("existing", "ec-p256", false);
    let id = k["id"].as_str().unwrap();
    let (s, v) = d.curl("POST", "/keyport/v1/keysets", Some(&json!({"name": "adopted", "type": "Host", "key_id": id}).to_string()), &[]);
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        (v["versions"][0]["key_id"].as_str(), v["type"].as_str(), v["algorithm"].as_str()),
        (Some(id), Some("Host"), Some("ec-p256"))
    );
    // The same key cannot be a version of a second keyset; a name is unique per namespace; bad
    // input says what is wrong.
    let (s, v) = d.curl("POST", "/keyport/v1/keysets", Some(&json!({"name": "again", "type": "Host", "key_id": id}).to_string()), &[]);
    assert_eq!(s, 409, "{v}");
    let (s, v) =
        d.curl("POST", "/keyport/v1/keysets", Some(&json!({"name": "adopted", "type": "User", "algorithm": "ed25519"}).to_string()), &[]);
    assert_eq!(s, 409, "{v}");
    let (s, v) =
        d.curl("POST", "/keyport/v1/keysets", Some(&json!({"name": "x", "type": "Router", "algorithm": "ed25519"}).to_string()), &[]);
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_type")), "{v}");
    let (s, v) =
        d.curl("POST", "/keyport/v1/keysets", Some(&json!({"name": "bad/name", "type": "User", "algorithm": "ed25519"}).to_string()), &[]);
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_name")), "{v}");
    let (s, v) = d.curl("POST", "/keyport/v1/keysets/adopted/rotate", Some(r#"{"options": 9}"#), &[]);
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_options")), "{v}");
    // A reader sees keysets but may not rotate them.
    let (s, v) = d.curl("GET", "/keyport/v1/keysets", None, &["-H", "X-API-Key: reader-key"]);
    assert_eq!(s, 200, "{v}");
    let (s, _) = d.curl("POST", "/keyport/v1/keysets/adopted/rotate", None, &["-H", "X-API-Key: reader-key"]);
    assert_eq!(s, 403);
    let (_, all) = d.curl("GET", "/keyport/v1/keysets", None, &[]);
    assert_eq!(all["keysets"].as_array().unwrap().len(), 1, "{all}");
    // A rotation of the adopted key makes an ec-p256 Host version 2.
    assert_eq!(act(&d, "adopted", "rotate").0, 202);
    let v = wait_for(&d, "adopted", "complete", finished);
    assert_eq!((v["versions"][1]["algorithm"].as_str(), v["versions"][1]["key_name"].as_str()), (Some("ec-p256"), Some("adopted.v2")));
}

#[test]
fn config_check_names_a_bad_rotation_policy() {
    let d =
        Daemon::config("[rotation.namespaces.default]\nconfirmations = \"both\"\nretry_options = 12\nwindow = { days = [\"someday\"] }\n");
    let out = d.command().args(["config", "check"]).arg(&d.config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("rotation.namespaces.default.retry_options") && err.contains("rotation.namespaces.default.window.days"), "{err}");
    let d = Daemon::config("[rotation.namespaces.default]\nconfirmations = \"sometimes\"\n");
    let out = d.command().args(["config", "check"]).arg(&d.config).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sometimes"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Issue 14 with keysets: the ssh-agent offers a keyset's active key; its new key only from the
/// grace period on, and then first; after the rotation only the new key (`ssh-add -L`).
#[test]
fn the_agent_offers_the_new_key_first_during_grace_and_only_it_after() {
    common::require("ssh-add");
    let mut d = Daemon::config("[rotation.namespaces.default]\nconfirmations = \"private-key\"\ngrace_secs = 6\n");
    let sock = d.dir.path().join("agent.sock");
    let text = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(&d.config, format!("{text}\n[agent]\nsocket = \"{}\"\n", sock.display())).unwrap();
    d.spawn();
    let listed = || -> Vec<String> {
        let out = std::process::Command::new("ssh-add").arg("-L").env("SSH_AUTH_SOCK", &sock).output().unwrap();
        // "type base64 comment": the key is its first two fields.
        String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" ")).collect()
    };
    let public = |key_id: &str| -> String {
        let (s, v) = d.curl("GET", &format!("/keyport/v1/keys/{key_id}/public"), None, &[]);
        assert_eq!(s, 200, "{v}");
        v["public_key"].as_str().unwrap().split(' ').take(2).collect::<Vec<_>>().join(" ")
    };
    let v = create(&d, "ops");
    let old = public(v["versions"][0]["key_id"].as_str().unwrap());
    assert_eq!(listed(), vec![old.clone()], "{}", d.log());

    act(&d, "ops", "rotate");
    let v = wait_for(&d, "ops", "10350", |v| v["stage"] == 10350);
    let new = public(v["versions"][1]["key_id"].as_str().unwrap());
    assert_eq!(listed(), vec![old.clone()], "before the new private key is in place: only the old key");

    assert_eq!(act(&d, "ops", "confirm").0, 202);
    wait_for(&d, "ops", "grace", |v| v["stage"] == 10355);
    assert_eq!(listed(), [new.clone(), old.clone()], "during grace: both, the new one first");

    let v = wait_for(&d, "ops", "complete", finished);
    assert_eq!(states(&v), ["retired", "active"]);
    assert_eq!(listed(), [new], "after the rotation: only the new key");
}

fn key_ids(d: &Daemon) -> Vec<String> {
    let (_, keys) = d.curl("GET", "/keyport/v1/keys", None, &[]);
    keys["keys"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap().to_string()).collect()
}

/// CKA_IDs (hex) of the token's objects.
fn token_ids(d: &Daemon) -> Vec<String> {
    common::object_blocks(&d.pkcs11_objects()).into_iter().map(|(_, _, id)| id).collect()
}

/// `DELETE /keyport/v1/keys/{id}` of a keyset's active or pending version is a 409 that says to
/// delete or rotate the keyset; the key stays. A retired version's key may go.
#[test]
fn a_keysets_active_or_pending_version_is_not_deleted_as_a_plain_key() {
    let d = Daemon::start("[rotation.namespaces.default]\nconfirmations = \"authorized-key\"\n");
    let v = create(&d, "guarded");
    let active = v["versions"][0]["key_id"].as_str().unwrap().to_string();
    let (s, e) = d.curl("DELETE", &format!("/keyport/v1/keys/{active}"), None, &[]);
    assert_eq!((s, e["error"]["code"].as_str()), (409, Some("conflict")), "{e}");
    let m = e["error"]["message"].as_str().unwrap();
    assert!(m.contains("active version 1 of keyset 'guarded'") && m.contains("keyport keysets delete guarded"), "{m}");
    // The CLI says the same and exits non-zero.
    let out = d.command().args(["keys", "delete", &active, "--socket"]).arg(&d.socket).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("keysets delete"), "{}", String::from_utf8_lossy(&out.stderr));
    act(&d, "guarded", "rotate");
    let v = wait_for(&d, "guarded", "10250", |v| v["stage"] == 10250);
    let pending = v["versions"][1]["key_id"].as_str().unwrap().to_string();
    let (s, e) = d.curl("DELETE", &format!("/keyport/v1/keys/{pending}"), None, &[]);
    assert_eq!(s, 409, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("pending version 2"), "{e}");
    assert!(key_ids(&d).contains(&active) && key_ids(&d).contains(&pending), "refusals change nothing");
    // Finished: v1 retired, so its key may be deleted now; v2 (active) still may not.
    act(&d, "guarded", "confirm");
    let v = wait_for(&d, "guarded", "complete", finished);
    assert_eq!(states(&v), ["retired", "active"]);
    assert_eq!(d.curl("DELETE", &format!("/keyport/v1/keys/{pending}"), None, &[]).0, 409);
    let (s, e) = d.curl("DELETE", &format!("/keyport/v1/keys/{active}"), None, &[]);
    assert_eq!(s, 200, "a retired version's key is an ordinary key: {e}");
    assert!(!key_ids(&d).contains(&active));
}

/// `DELETE /keyport/v1/keysets/{name}` (and `keyport keysets delete`): refused while a rotation
/// is open, changing nothing; then every version's key leaves the token and the inventory, the
/// keyset is gone, and the audit log has the keyset's and each key's delete.
#[test]
fn keyset_delete_is_refused_mid_rotation_then_removes_every_version() {
    let d = Daemon::start("[rotation.namespaces.default]\nconfirmations = \"authorized-key\"\n");
    let v = create(&d, "gone");
    create(&d, "kept");
    let v1 = v["versions"][0]["key_id"].as_str().unwrap().to_string();
    act(&d, "gone", "rotate");
    let v = wait_for(&d, "gone", "10250", |v| v["stage"] == 10250);
    let v2 = v["versions"][1]["key_id"].as_str().unwrap().to_string();
    let objects = token_ids(&d);
    let (s, e) = d.curl("DELETE", "/keyport/v1/keysets/gone", None, &[]);
    assert_eq!(s, 409, "{e}");
    let m = e["error"]["message"].as_str().unwrap();
    assert!(m.contains("rotation under way") && m.contains("10250"), "{m}");
    assert_eq!(token_ids(&d), objects, "a refused delete touches no token object");
    assert_eq!(show(&d, "gone")["stage"], 10250, "and leaves the rotation where it was");
    // A reader may not delete it.
    let (s, _) = d.curl("DELETE", "/keyport/v1/keysets/gone", None, &["-H", "X-API-Key: reader-key"]);
    assert_eq!(s, 403);
    // Confirm and finish: v1 retired, v2 active, both keys present.
    act(&d, "gone", "confirm");
    wait_for(&d, "gone", "complete", finished);
    let out = d.command().args(["keysets", "delete", "gone", "--socket"]).arg(&d.socket).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("deleted keyset default/gone and 2 version key(s)"), "{:?}", out);
    let (s, _) = d.curl("GET", "/keyport/v1/keysets/gone", None, &[]);
    assert_eq!(s, 404);
    let ids = key_ids(&d);
    assert!(!ids.contains(&v1) && !ids.contains(&v2), "both versions' keys are gone: {ids:?}");
    let left = token_ids(&d);
    assert!(!left.contains(&v1) && !left.contains(&v2), "and their token objects: {left:?}");
    // The other keyset is untouched; a second delete is a 404.
    assert_eq!(show(&d, "kept")["versions"].as_array().unwrap().len(), 1);
    assert_eq!(d.curl("DELETE", "/keyport/v1/keysets/gone", None, &[]).0, 404);
    let (_, audit) = d.curl("GET", "/keyport/v1/audit?limit=50", None, &[]);
    let actions: Vec<&str> = audit["entries"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"keyset.delete"), "{audit}");
    assert!(actions.iter().filter(|a| **a == "key.delete").count() >= 2, "{audit}");
    // The name is free again.
    create(&d, "gone");
}

/// A keyset delete SIGKILLed after it was recorded (no token object gone yet) finishes at the
/// next start: keys, objects and rows gone, no orphans, the other keyset untouched.
#[test]
fn a_keyset_delete_killed_midway_finishes_at_the_next_start() {
    let mut d = Daemon::config("");
    d.env.push(("KEYPORT_TEST_PAUSE_KEYSET_DELETE_MS".into(), "5000".into()));
    d.spawn();
    let v = create(&d, "half");
    let keep = create(&d, "whole");
    let v1 = v["versions"][0]["key_id"].as_str().unwrap().to_string();
    act(&d, "half", "rotate");
    wait_for(&d, "half", "complete", finished);
    let socket = d.socket.clone();
    let caller = std::thread::spawn(move || {
        std::process::Command::new("curl")
            .args(["-s", "-m", "20", "-X", "DELETE", "--unix-socket"])
            .arg(&socket)
            .arg("http://localhost/keyport/v1/keysets/half")
            .output()
    });
    // Recorded: no longer listed, its keys no longer usable; then the daemon dies.
    let start = Instant::now();
    while d.curl("GET", "/keyport/v1/keysets/half", None, &[]).0 != 404 {
        assert!(start.elapsed() < Duration::from_secs(5), "the delete was never recorded");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!key_ids(&d).contains(&v1));
    assert!(token_ids(&d).contains(&v1), "the pause is before the first token object goes");
    d.kill9();
    let _ = caller.join();
    d.env.clear();
    d.spawn();
    let start = Instant::now();
    loop {
        let (_, all) = d.curl("GET", "/keyport/v1/keysets", None, &[]);
        let objects = token_ids(&d);
        let (_, audit) = d.curl("GET", "/keyport/v1/audit?limit=50", None, &[]);
        let audited = audit["entries"].as_array().unwrap().iter().any(|e| e["action"] == "keyset.delete");
        if !objects.contains(&v1) && audited && all["keysets"].as_array().unwrap().len() == 1 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the delete never finished: {all}\n{objects:?}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let v = show(&d, "whole");
    assert_eq!(v["versions"], keep["versions"]);
    assert_consistent(&d, &v);
}
