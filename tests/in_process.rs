//! The server run in-process (`server::start`, `server::bind`, `server::run`), as a test that
//! wants the core and the API in one process does it: its own temp socket and port 0, a stop
//! future it resolves itself, no signals. This file holds one test: `prepare_env` sets
//! `SOFTHSM2_CONF` for the process, before any runtime thread exists.

mod common;

use std::process::Command;

#[test]
fn the_server_runs_in_process_on_a_temp_socket_and_drains_when_its_stop_future_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let socket = d.join("api.sock");
    let config = d.join("keyport.toml");
    std::fs::write(
        &config,
        format!(
            r#"state_dir = "{state}"
[listen]
socket = "{socket}"
tcp = "127.0.0.1:0"
tls = {{ mode = "self-signed" }}

[[tokens]]
name = "soft"
module = "{module}"
label = "inproc"
pin = {{ file = "{pin}" }}
softhsm = {{ dir = "{softhsm}" }}

[[principals]]
name = "root"
uids = [{uid}]
permissions = {{ "*" = ["admin"] }}
"#,
            state = d.join("state").display(),
            socket = socket.display(),
            module = common::softhsm_module().display(),
            pin = d.join("pin").display(),
            softhsm = d.join("softhsm").display(),
            uid = nix::unistd::getuid().as_raw(),
        ),
    )
    .unwrap();
    let cfg = keyport::config::load(Some(&config)).unwrap_or_else(|ps| panic!("config: {ps:?}"));
    keyport::token::softhsm::prepare_env(&cfg).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let started = keyport::server::start(cfg, Some(&config)).await.unwrap();
        let app = started.app.clone();
        let listeners = keyport::server::bind(&started, Default::default()).await.unwrap();
        let port = listeners.tcp.as_ref().expect("HTTPS bound").0.local_addr().unwrap().port();
        assert_ne!(port, 0);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(keyport::server::run(started, listeners, async {
            let _ = stopped.await;
        }));

        // Over the temp socket, as any caller: a key is made in the token.
        let sock = socket.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new("curl")
                .args(["-sS", "-w", "\n%{http_code}", "--unix-socket"])
                .arg(&sock)
                .args(["-X", "POST", "-H", "content-type: application/json", "--data-binary"])
                .arg(r#"{"name":"in-process","algorithm":"ed25519"}"#)
                .arg("http://keyport/keyport/v1/keys")
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.ends_with("\n201"), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
        // The same process's core sees it: no second daemon, no IPC.
        let keys = app.store.list_keys(None, Some("in-process")).unwrap();
        assert_eq!(keys.len(), 1, "{keys:?}");
        // HTTPS answers on the port the test's listener got.
        let health = tokio::task::spawn_blocking(move || {
            Command::new("curl")
                .args(["-sSk", "-o", "/dev/null", "-w", "%{http_code}"])
                .arg(format!("https://127.0.0.1:{port}/keyport/v1/health"))
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let code = String::from_utf8_lossy(&health.stdout).into_owned();
        assert!(code == "200" || code == "401", "HTTPS answered {code}: {}", String::from_utf8_lossy(&health.stderr));

        // Resolving the stop future drains and returns; the socket file is gone with it.
        stop.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(30), server).await.expect("run returned").unwrap().unwrap();
        assert!(!socket.exists(), "the socket file is removed when run returns");
        assert!(app.background.is_stopping(), "the background loops were told to stop");
        assert_eq!(app.background.running(), 0, "every background task returned");
    });
}
