//! Connection-level limits: slow clients are cut off, the connection cap holds.

mod common;
use common::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

#[test]
fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let mut d = Daemon::config("");
    let t =
        std::fs::read_to_string(&d.config).unwrap().replace("max_body_bytes = 1048576", "max_body_bytes = 65536\nheader_timeout_secs = 1");
    std::fs::write(&d.config, t).unwrap();
    d.spawn();

    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /keyport/v1/health HTTP/1.1\r\nHost: x\r\n").unwrap(); // no final CRLF
    let start = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(start.elapsed() < Duration::from_secs(15), "the server closed the connection (header timeout 1 s)");
    let text = String::from_utf8_lossy(&buf);
    assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
}

#[test]
fn the_connection_cap_holds_and_frees_up() {
    if !require("curl") {
        return;
    }
    let mut d = Daemon::config("");
    let t = std::fs::read_to_string(&d.config).unwrap().replace("max_body_bytes = 1048576", "max_body_bytes = 65536\nmax_connections = 2");
    std::fs::write(&d.config, t).unwrap();
    d.spawn();
    // Wait until the start-up probe connection is released.
    std::thread::sleep(Duration::from_millis(200));
    let a = UnixStream::connect(&d.socket).unwrap();
    let b = UnixStream::connect(&d.socket).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // A third caller waits in the backlog: not served while two connections are open.
    let mut c = std::process::Command::new("curl");
    c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", "--unix-socket"])
        .arg(&d.socket)
        .arg("http://localhost/keyport/v1/health");
    let out = c.output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "000", "the third connection was not served while the cap was reached");
    drop(a);
    drop(b);
    let (s, _) = d.curl("GET", "/keyport/v1/health", None, &["--max-time", "20"]);
    assert_eq!(s, 200, "served again once connections closed");
}
