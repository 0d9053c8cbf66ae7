//! Where `keyport serve` puts things: under systemd, `$STATE_DIRECTORY`, `$RUNTIME_DIRECTORY`
//! and `$CREDENTIALS_DIRECTORY` give the embedded default's paths; run from any folder, the
//! daemon says where its store and token are (and warns when it just made them), and
//! `config check` reports every schema problem with its key path.

mod common;

use common::free_port;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn serve(cwd: &Path, env: &[(&str, &Path)], log: &Path) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keyport"));
    c.arg("serve")
        .current_dir(cwd)
        .env_remove("KEYPORT_CONFIG")
        .env_remove("STATE_DIRECTORY")
        .env_remove("RUNTIME_DIRECTORY")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env("KEYPORT_LOG", "info,cryptoki=off")
        .env("KEYPORT_LISTEN__TCP", format!("127.0.0.1:{}", free_port()))
        // No vault here: a port nothing answers on (sync waits and retries).
        .env("KEYPORT_SYNC__ADDRESS", "http://127.0.0.1:9")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

fn wait_for(socket: &Path, child: &mut Child, log: &Path) {
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        if let Some(s) = child.try_wait().unwrap() {
            panic!("keyport exited ({s}):\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no socket at {}:\n{}", socket.display(), std::fs::read_to_string(log).unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop(mut child: Child) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    child.wait().unwrap();
}

#[test]
fn systemd_folders_are_the_defaults() {
    common::require("softhsm2-util");
    let t = tempfile::tempdir().unwrap();
    let (cwd, state, run, creds) = (t.path().join("cwd"), t.path().join("state"), t.path().join("rt"), t.path().join("creds"));
    for d in [&cwd, &state, &run, &creds] {
        std::fs::create_dir_all(d).unwrap();
    }
    let log = t.path().join("serve.log");
    let env = [("STATE_DIRECTORY", state.as_path()), ("RUNTIME_DIRECTORY", run.as_path()), ("CREDENTIALS_DIRECTORY", creds.as_path())];
    let mut child = serve(&cwd, &env, &log);
    wait_for(&run.join("keyport.sock"), &mut child, &log);
    wait_for(&run.join("agent.sock"), &mut child, &log);
    assert!(state.join("keyport.db").exists() && state.join("softhsm").is_dir() && state.join("token.pin").exists());
    assert!(!cwd.join("run").exists(), "nothing under the working folder");
    let out = Command::new("curl")
        .arg("-sS")
        .arg("--unix-socket")
        .arg(run.join("keyport.sock"))
        .arg("http://localhost/keyport/v1/health")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"ok\""), "{}", String::from_utf8_lossy(&out.stdout));
    stop(child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains(&format!("state_dir=\"{}\"", state.display())), "{text}");
}

#[test]
fn serve_from_another_folder_says_where_it_put_the_state() {
    common::require("softhsm2-util");
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("serve.log");
    let mut child = serve(t.path(), &[], &log);
    wait_for(&t.path().join("run/keyport.sock"), &mut child, &log);
    stop(child);
    let text = std::fs::read_to_string(&log).unwrap();
    let abs = t.path().join("run");
    assert!(text.contains(&format!("state_dir=\"{}\"", abs.display())) && text.contains("embedded default"), "{text}");
    assert!(text.contains(&format!("softhsm_dir=\"{}\"", abs.join("softhsm").display())), "{text}");
    assert!(text.contains("a new, empty state folder was created"), "{text}");
    // A second start finds the same state: no warning.
    let mut child = serve(t.path(), &[], &log);
    wait_for(&t.path().join("run/keyport.sock"), &mut child, &log);
    stop(child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("new, empty state folder"), "{text}");
}

#[test]
fn config_check_reports_every_schema_problem_with_its_path() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("bad.toml");
    std::fs::write(
        &f,
        "zzz = 1\n[limits]\nmax_connections = \"many\"\n[[tokens]]\nname = \"soft\"\nmodule = \"/x.so\"\nlabel = \"k\"\npin = { file = \"/p\" }\nbogus = 1\n[[principals]]\nname = \"a\"\n[[principals]]\nname = 5\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keyport")).args(["config", "check"]).arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    for want in [
        ": zzz: unknown top-level key",
        ": limits.max_connections: invalid type",
        ": tokens[0].bogus: unknown field",
        ": principals[1].name: invalid type",
    ] {
        assert!(text.contains(want), "{want}:\n{text}");
    }
}
