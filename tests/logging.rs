//! Log lines as collectors and people get them: `--log-format json` (or KEYPORT_LOG_FORMAT)
//! writes one JSON object per line; text written to a file or pipe has no ANSI colour codes.

mod common;

use common::Daemon;

#[test]
fn json_log_lines_are_json_objects() {
    let mut d = Daemon::config("");
    d.env.push(("KEYPORT_LOG_FORMAT".into(), "json".into()));
    d.spawn();
    let (status, _) = d.curl("GET", "/keyport/v1/health", None, &[]);
    assert_eq!(status, 200);
    d.stop();
    let log = d.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "too few log lines: {log}");
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string() && v["message"].is_string(), "{l}");
    }
    assert!(lines.iter().any(|l| l.contains("\"listening\"") || l.contains("listening")), "{log}");
}

/// The store probe (every `GET health`, and the background round) writes an audit row and
/// rolls it back: the log must not show it as an audit entry, 17,000 times a day.
#[test]
fn health_probes_leave_no_audit_line_in_the_log() {
    let mut d = Daemon::start("");
    for _ in 0..3 {
        let (status, _) = d.curl("GET", "/keyport/v1/health", None, &[]);
        assert_eq!(status, 200);
    }
    d.stop();
    let log = d.log();
    assert!(log.contains("keyport ready"), "{log}");
    assert!(!log.contains("health.probe"), "a rolled-back probe row reached the log: {log}");
}

/// A native read runs in its connection's task (`api::listen`), so a client that hangs up drops
/// it mid-way: its access line is still written, with status 499, at once, and the daemon
/// answers the next caller.
#[test]
fn a_read_the_client_hangs_up_on_is_logged_as_499() {
    common::require("curl");
    let mut d = Daemon::config("");
    d.env.push(("KEYPORT_TEST_PAUSE_HEALTH_PROBE_MS".into(), "1500".into()));
    d.spawn();
    let mark = d.log().len();
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "0.3", "--unix-socket"])
        .arg(&d.socket)
        .arg("http://localhost/keyport/v1/health")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(28), "curl gave up (timed out): {}", String::from_utf8_lossy(&out.stderr));
    let cut = |log: &str| log.lines().any(|l| l.contains("route=\"/keyport/v1/health\"") && l.contains("status=499"));
    let start = std::time::Instant::now();
    while !cut(&d.log()[mark..]) {
        assert!(start.elapsed() < std::time::Duration::from_secs(1), "no 499 line for the read cut short: {}", d.log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (status, v) = d.curl("GET", "/keyport/v1/health", None, &[]);
    assert_eq!(status, 200, "the next read is answered: {v}");
    assert!(d.log()[mark..].lines().any(|l| l.contains("route=\"/keyport/v1/health\"") && l.contains("status=200")), "{}", d.log());
}

/// A read that runs past the request time-out is answered 503 by the listener; its access line
/// says 503 too (what the client got), not 499.
#[test]
fn a_read_past_its_time_out_is_logged_as_the_503_the_client_got() {
    common::require("curl");
    let mut d = Daemon::config("");
    let t = std::fs::read_to_string(&d.config)
        .unwrap()
        .replace("max_body_bytes = 1048576", "max_body_bytes = 1048576\nrequest_timeout_secs = 1");
    std::fs::write(&d.config, t).unwrap();
    d.env.push(("KEYPORT_TEST_PAUSE_HEALTH_PROBE_MS".into(), "2500".into()));
    d.spawn();
    let mark = d.log().len();
    let out = std::process::Command::new("curl")
        .args(["-sS", "-i", "-H", "x-request-id: slow-read-1", "--unix-socket"])
        .arg(&d.socket)
        .arg("http://localhost/keyport/v1/health")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("\"timeout\""), "{text}");
    assert!(text.to_ascii_lowercase().contains("x-request-id: slow-read-1"), "the listener's own answer carries the request id: {text}");
    let line = |log: &str, status: &str| log.lines().any(|l| l.contains("route=\"/keyport/v1/health\"") && l.contains(status));
    let start = std::time::Instant::now();
    while !line(&d.log()[mark..], "status=503") {
        assert!(start.elapsed() < std::time::Duration::from_secs(1), "no 503 line for the timed-out read: {}", d.log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!line(&d.log()[mark..], "status=499"), "{}", d.log());
}

#[test]
fn text_logs_to_a_file_have_no_colour_codes() {
    let mut d = Daemon::start("");
    d.stop();
    let log = d.log();
    assert!(log.contains("INFO"), "{log}");
    assert!(!log.contains('\u{1b}'), "ANSI escape in a log written to a file: {log:?}");
}

/// `$JOURNAL_STREAM` naming stderr means "use journald's protocol"; where no journald answers
/// (this container), the lines still go to stderr as text rather than nowhere.
#[test]
fn journal_stream_without_a_journal_falls_back_to_stderr() {
    use std::os::unix::fs::MetadataExt;
    let mut d = Daemon::config("");
    let log = d.dir.path().join("serve.log");
    std::fs::write(&log, "").unwrap();
    let m = std::fs::metadata(&log).unwrap();
    // spawn() truncates the same file (same device and inode).
    d.env.push(("JOURNAL_STREAM".into(), format!("{}:{}", m.dev(), m.ino())));
    d.spawn();
    d.stop();
    assert!(d.log().contains("keyport ready"), "{}", d.log());
}
