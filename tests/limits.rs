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

#[test]
fn a_body_trickled_past_the_request_deadline_frees_its_connection() {
    if !require("curl") {
        return;
    }
    let mut d = Daemon::config("");
    let t = std::fs::read_to_string(&d.config)
        .unwrap()
        .replace("max_body_bytes = 1048576", "max_body_bytes = 65536\nmax_connections = 1\nrequest_timeout_secs = 2");
    std::fs::write(&d.config, t).unwrap();
    d.spawn();
    // One slot: the trickler takes it, and the next client waits for it to come back.
    std::thread::sleep(Duration::from_millis(200)); // the start-up probes' connections go

    // A client declares 1000 bytes and sends one every 300 ms for 12 s.
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.write_all(b"POST /keyport/v1/keys HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{").unwrap();
    let trickler = std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(12) {
            if s.write_all(b" ").is_err() {
                return true; // the server closed the connection
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        false
    });
    // The only connection slot comes back once the deadline cuts the body off.
    let start = Instant::now();
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "--unix-socket"])
        .arg(&d.socket)
        .arg("http://localhost/keyport/v1/health")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{}\n{}", String::from_utf8_lossy(&out.stderr), d.log());
    assert!(start.elapsed() < Duration::from_secs(8), "served after {:?}", start.elapsed());
    assert!(trickler.join().unwrap(), "the trickling connection was closed");
}
