//! The confirm hook (`[agent.namespaces.<ns>] confirm`, like `ssh-add -c`): a program that must
//! exit 0 before each signature with the namespace's keys. It runs without a shell, stdin
//! closed, with what it needs to decide in its environment (`KEYPORT_PRINCIPAL`,
//! `KEYPORT_KEY_ID`, `KEYPORT_KEY_NAME`, `KEYPORT_NAMESPACE`, `KEYPORT_VIA`, `KEYPORT_UID`,
//! `KEYPORT_PID`, `KEYPORT_DATA_KIND`, `KEYPORT_SSH_USER`); its output is captured into the
//! log, and it is killed after `[agent] confirm_timeout_secs`.

use std::process::{Command, Stdio};
use std::time::Duration;

/// Ok when the hook said yes; otherwise why not (for the refusal and its audit row).
pub async fn ask(argv: &[String], env: Vec<(&'static str, String)>, timeout: Duration) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else { return Err("the confirm hook is empty".into()) };
    let mut c = Command::new(program);
    c.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).env_clear();
    c.env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for (k, v) in env {
        c.env(k, v);
    }
    // Its own process group, so a timeout kills whatever it started too (a grandchild holding
    // its output open would otherwise keep the signer waiting).
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    crate::core::spawn::close_inherited_fds(&mut c);
    let child = c.spawn().map_err(|e| format!("the confirm hook {program:?} could not start: {e}"))?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let waiting = tokio::task::spawn_blocking(move || child.wait_with_output());
    tokio::pin!(waiting);
    let out = match tokio::time::timeout(timeout, &mut waiting).await {
        Ok(r) => r,
        Err(_) => {
            // Not reaped yet (the waiting thread reaps it), so the group is still the hook's.
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = waiting.await;
            return Err(format!("the confirm hook {program:?} did not answer within {} s; killed", timeout.as_secs()));
        }
    };
    let out =
        out.map_err(|e| format!("the confirm hook failed: {e}")).and_then(|o| o.map_err(|e| format!("the confirm hook failed: {e}")))?;
    let text = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(2048)]).trim().to_string();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    if out.status.success() {
        tracing::info!(hook = ?program, stdout = ?stdout, stderr = ?stderr, "confirm hook said yes");
        Ok(())
    } else {
        tracing::info!(hook = ?program, status = %out.status, stdout = ?stdout, stderr = ?stderr, "confirm hook said no");
        Err(format!("the confirm hook {program:?} refused ({})", out.status))
    }
}
