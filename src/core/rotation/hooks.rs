//! Rotation hooks, in certbot's spirit: per hook stage, the policy's programs, then the
//! executables in `<hooks_dir>/<stage>/` in lexical order. Each runs without a shell, with a
//! clean environment (the variables below and a fixed `PATH`), stdin closed, no descriptor of
//! the daemon's but its stdout and stderr pipes, in its own process group, as the policy's
//! `hook_user`, and is killed (the whole group) at the timeout. Output is kept up to
//! [`OUTPUT_LIMIT`] bytes per stream (the rest is read and dropped, so a chatty hook never
//! blocks or grows the daemon) and goes to the log and the rotation's history.
//!
//! Environment: `KEYPORT_KEYSET`, `KEYPORT_NAMESPACE`, `KEYPORT_STAGE` (TPP's stage name),
//! `KEYPORT_STAGE_CODE`, `KEYPORT_HOOK` (the hook stage), `KEYPORT_KEY_ID` (the new version's
//! key), `KEYPORT_OLD_KEY_ID`, `KEYPORT_NEW_PUBLIC_KEY`, `KEYPORT_OLD_PUBLIC_KEY`
//! (authorized_keys lines), `KEYPORT_NEW_FINGERPRINT`, `KEYPORT_OLD_FINGERPRINT` (SHA256:…),
//! `KEYPORT_SOCKET`. Never private key material: a hook that needs the private key asks the
//! socket under its own uid's permissions. In a rollback, OLD is the version being restored and
//! NEW the one being removed.
//!
//! Exit status: 0 success; 75 (EX_TEMPFAIL) a connection error (retried under Options bit 2);
//! anything else an error. A timeout counts as a connection error.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// Bytes of each of stdout and stderr kept per hook run.
pub const OUTPUT_LIMIT: usize = 64 * 1024;

/// The exit status a hook uses for "could not reach the device; try again" (sysexits.h).
pub const EX_TEMPFAIL: i32 = 75;

/// What a hook is told.
#[derive(Debug, Clone, Default)]
pub struct HookEnv {
    pub keyset: String,
    pub namespace: String,
    pub hook: &'static str,
    pub stage_name: &'static str,
    pub stage_code: i64,
    pub key_id: String,
    pub old_key_id: String,
    pub new_public_key: String,
    pub old_public_key: String,
    pub new_fingerprint: String,
    pub old_fingerprint: String,
    pub socket: String,
}

impl HookEnv {
    fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KEYPORT_KEYSET", self.keyset.clone()),
            ("KEYPORT_NAMESPACE", self.namespace.clone()),
            ("KEYPORT_STAGE", self.stage_name.into()),
            ("KEYPORT_STAGE_CODE", self.stage_code.to_string()),
            ("KEYPORT_HOOK", self.hook.into()),
            ("KEYPORT_KEY_ID", self.key_id.clone()),
            ("KEYPORT_OLD_KEY_ID", self.old_key_id.clone()),
            ("KEYPORT_NEW_PUBLIC_KEY", self.new_public_key.clone()),
            ("KEYPORT_OLD_PUBLIC_KEY", self.old_public_key.clone()),
            ("KEYPORT_NEW_FINGERPRINT", self.new_fingerprint.clone()),
            ("KEYPORT_OLD_FINGERPRINT", self.old_fingerprint.clone()),
            ("KEYPORT_SOCKET", self.socket.clone()),
        ]
    }
}

/// How to run hooks: from the policy and the config.
#[derive(Debug, Clone)]
pub struct HookPlan {
    pub configured: Vec<PathBuf>,
    pub dir: Option<PathBuf>,
    pub user: Option<String>,
    pub timeout: Duration,
}

/// One hook's run, as kept in the history.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HookRun {
    pub program: String,
    /// The exit code; `None` when killed (timeout) or it could not start.
    pub exit: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    /// Bytes dropped past [`OUTPUT_LIMIT`] (both streams).
    pub dropped_bytes: u64,
    /// Why it could not run at all.
    pub refused: Option<String>,
}

impl HookRun {
    pub fn ok(&self) -> bool {
        self.exit == Some(0)
    }

    /// A failure TPP's Options bit 2 retries.
    pub fn connection_error(&self) -> bool {
        self.timed_out || self.exit == Some(EX_TEMPFAIL)
    }

    pub fn summary(&self) -> String {
        if let Some(r) = &self.refused {
            return format!("hook {:?} not run: {r}", self.program);
        }
        match (self.exit, self.timed_out) {
            (_, true) => format!("hook {:?} timed out and was killed", self.program),
            (Some(c), _) => format!("hook {:?} exited {c}", self.program),
            (None, _) => format!("hook {:?} was killed by a signal", self.program),
        }
    }
}

/// The programs for hook stage `stage`: the configured ones, then the directory's executables in
/// lexical order (names starting with '.' or ending in '~' are skipped, as editors leave them).
pub fn programs(plan: &HookPlan, stage: &str) -> Vec<PathBuf> {
    let mut out = plan.configured.clone();
    if let Some(dir) = &plan.dir {
        if let Ok(rd) = std::fs::read_dir(dir.join(stage)) {
            let mut found: Vec<PathBuf> = rd
                .filter_map(|e| e.ok())
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    !n.starts_with('.') && !n.ends_with('~')
                })
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            found.sort();
            out.extend(found);
        }
    }
    out
}

/// Why `p` may not run as a hook: it must be a regular file, executable, owned by root or the
/// daemon's user, and not writable by group or others (anyone who can change a hook runs code
/// as the hook user with the rotation's timing).
fn refuse(p: &Path) -> Option<String> {
    let m = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(e) => return Some(format!("cannot read it: {e}")),
    };
    let me = nix::unistd::geteuid().as_raw();
    if !m.is_file() {
        return Some("not a regular file".into());
    }
    if m.permissions().mode() & 0o111 == 0 {
        return Some("not executable; chmod +x it".into());
    }
    if m.uid() != 0 && m.uid() != me {
        return Some(format!("owned by uid {}, not root or keyport's uid {me}; chown it", m.uid()));
    }
    if m.permissions().mode() & 0o022 != 0 {
        return Some("writable by group or others; chmod go-w it".into());
    }
    None
}

/// Runs the stage's hooks in order and stops at the first failure. Returns every run.
pub async fn run_stage(plan: &HookPlan, stage: &str, env: &HookEnv) -> Vec<HookRun> {
    let mut runs = Vec::new();
    for p in programs(plan, stage) {
        let r = run_one(plan, &p, env).await;
        let ok = r.ok();
        tracing::info!(
            hook = ?r.program, keyset = ?env.keyset, namespace = ?env.namespace, stage = env.stage_code, exit = ?r.exit,
            timed_out = r.timed_out, stdout = ?r.stdout, stderr = ?r.stderr, dropped_bytes = r.dropped_bytes, refused = ?r.refused,
            "rotation hook ran"
        );
        runs.push(r);
        if !ok {
            break;
        }
    }
    runs
}

async fn run_one(plan: &HookPlan, program: &Path, env: &HookEnv) -> HookRun {
    let mut run = HookRun {
        program: program.display().to_string(),
        exit: None,
        timed_out: false,
        stdout: String::new(),
        stderr: String::new(),
        dropped_bytes: 0,
        refused: None,
    };
    if let Some(why) = refuse(program) {
        run.refused = Some(why);
        return run;
    }
    let mut c = tokio::process::Command::new(program);
    c.env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.vars())
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    if let Some(u) = &plan.user {
        match nix::unistd::User::from_name(u) {
            Ok(Some(user)) => {
                c.uid(user.uid.as_raw()).gid(user.gid.as_raw()).env("HOME", user.dir).env("USER", u).env("LOGNAME", u);
            }
            _ => {
                run.refused = Some(format!("hook_user '{u}' does not exist on this host"));
                return run;
            }
        }
    }
    crate::core::spawn::close_inherited_fds(c.as_std_mut());
    let mut child = match c.spawn() {
        Ok(ch) => ch,
        Err(e) => {
            run.refused = Some(format!("could not start: {e}"));
            return run;
        }
    };
    let pgid = child.id().map(|p| nix::unistd::Pid::from_raw(p as i32));
    let out = tokio::spawn(read_bounded(child.stdout.take()));
    let err = tokio::spawn(read_bounded(child.stderr.take()));
    let status = match tokio::time::timeout(plan.timeout, child.wait()).await {
        Ok(s) => s.ok(),
        Err(_) => {
            run.timed_out = true;
            None
        }
    };
    // Kill the group either way: whatever the hook left running (a daemonised grandchild
    // holding the pipes) would otherwise keep the readers waiting.
    if let Some(pg) = pgid {
        let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL);
    }
    if run.timed_out {
        let _ = child.wait().await;
    }
    run.exit = status.and_then(|s| s.code());
    let grace = Duration::from_secs(2);
    let (o, d1) = tokio::time::timeout(grace, out).await.ok().and_then(|r| r.ok()).unwrap_or_default();
    let (e, d2) = tokio::time::timeout(grace, err).await.ok().and_then(|r| r.ok()).unwrap_or_default();
    run.stdout = o;
    run.stderr = e;
    run.dropped_bytes = d1 + d2;
    run
}

/// Reads a stream to its end, keeping the first [`OUTPUT_LIMIT`] bytes; returns them (lossy
/// UTF-8) and how many bytes were dropped.
async fn read_bounded<R: tokio::io::AsyncRead + Unpin>(r: Option<R>) -> (String, u64) {
    let Some(mut r) = r else { return (String::new(), 0) };
    let mut kept = Vec::new();
    let mut dropped = 0u64;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = OUTPUT_LIMIT.saturating_sub(kept.len()).min(n);
                kept.extend_from_slice(&buf[..room]);
                dropped += (n - room) as u64;
            }
        }
    }
    (String::from_utf8_lossy(&kept).into_owned(), dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn plan(configured: Vec<PathBuf>, dir: Option<PathBuf>, timeout_ms: u64) -> HookPlan {
        HookPlan { configured, dir, user: None, timeout: Duration::from_millis(timeout_ms) }
    }

    #[tokio::test]
    async fn runs_configured_then_directory_in_lexical_order_with_a_clean_environment() {
        let d = tempfile::tempdir().unwrap();
        let stage = d.path().join("hooks.d/verify");
        std::fs::create_dir_all(&stage).unwrap();
        let log = d.path().join("log");
        let first = script(d.path(), "first", &format!("echo first >> {}", log.display()));
        script(&stage, "20-b", &format!("echo b >> {}", log.display()));
        script(&stage, "10-a", &format!("echo a >> {}; env | sort; ls /proc/self/fd | wc -l", log.display()));
        script(&stage, "05-skip~", "exit 1");
        std::env::set_var("KEYPORT_TEST_LEAK", "secret");
        let env = HookEnv { keyset: "deploy".into(), stage_code: 10400, stage_name: "ReconfigureServers", ..Default::default() };
        let runs = run_stage(&plan(vec![first], Some(d.path().join("hooks.d")), 10_000), "verify", &env).await;
        assert_eq!(runs.len(), 3);
        assert!(runs.iter().all(HookRun::ok), "{runs:?}");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "first\na\nb\n");
        let out = &runs[1].stdout;
        assert!(out.contains("KEYPORT_KEYSET=deploy") && out.contains("KEYPORT_STAGE_CODE=10400"), "{out}");
        assert!(!out.contains("KEYPORT_TEST_LEAK"), "the daemon's environment leaked: {out}");
        // ls's own fds: 0, 1, 2 and the directory it reads; nothing of the daemon's.
        let fds: usize = out.lines().last().unwrap().trim().parse().unwrap();
        assert!(fds <= 4, "descriptors leaked into the hook: {fds}\n{out}");
    }

    #[tokio::test]
    async fn a_failure_stops_the_stage_and_a_timeout_kills_the_group() {
        let d = tempfile::tempdir().unwrap();
        let fail = script(d.path(), "fail", "echo nope >&2; exit 3");
        let after = script(d.path(), "after", "exit 0");
        let runs = run_stage(&plan(vec![fail, after], None, 5_000), "verify", &HookEnv::default()).await;
        assert_eq!(runs.len(), 1);
        assert_eq!((runs[0].exit, runs[0].stderr.trim()), (Some(3), "nope"));
        let marker = d.path().join("survived");
        let hang = script(d.path(), "hang", &format!("(sleep 3; touch {}) & sleep 60", marker.display()));
        let t = std::time::Instant::now();
        let runs = run_stage(&plan(vec![hang], None, 300), "verify", &HookEnv::default()).await;
        assert!(runs[0].timed_out && runs[0].connection_error() && !runs[0].ok());
        assert!(t.elapsed() < Duration::from_secs(5), "the timeout did not end it: {:?}", t.elapsed());
        std::thread::sleep(Duration::from_millis(3500));
        assert!(!marker.exists(), "a child of the hook outlived the timeout");
    }

    /// As `hook_user`: the hook's uid, gid and groups are the user's.
    #[tokio::test]
    #[ignore = "needs root: switches to the user nobody; scripts/test runs it"]
    async fn runs_as_the_hook_user() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root (it switches to the user nobody); run it as root, as scripts/test does"
        );
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let who = script(d.path(), "who", "echo \"$(id -u) $(id -g) $(id -G) $USER\"");
        let p = HookPlan { user: Some("nobody".into()), ..plan(vec![who], None, 5_000) };
        let runs = run_stage(&p, "verify", &HookEnv::default()).await;
        assert!(runs[0].ok(), "{runs:?}");
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        assert_eq!(runs[0].stdout.trim(), format!("{} {} {} nobody", nobody.uid, nobody.gid, nobody.gid));
        let p = HookPlan { user: Some("no-such-user-here".into()), ..p };
        assert!(run_stage(&p, "verify", &HookEnv::default()).await[0].refused.is_some());
    }

    #[tokio::test]
    async fn output_is_bounded_and_unsafe_hooks_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let loud = script(d.path(), "loud", "head -c 5000000 /dev/zero | tr '\\0' x; exit 0");
        let runs = run_stage(&plan(vec![loud], None, 20_000), "verify", &HookEnv::default()).await;
        assert!(runs[0].ok());
        assert_eq!(runs[0].stdout.len(), OUTPUT_LIMIT);
        assert_eq!(runs[0].dropped_bytes, 5_000_000 - OUTPUT_LIMIT as u64);
        let open = script(d.path(), "open", "exit 0");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let runs = run_stage(&plan(vec![open], None, 5_000), "verify", &HookEnv::default()).await;
        assert!(!runs[0].ok() && runs[0].refused.as_deref().unwrap().contains("writable"), "{runs:?}");
    }
}
