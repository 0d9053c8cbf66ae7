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
    require("curl");
    let mut d = Daemon::config("");
    let t = std::fs::read_to_string(&d.config).unwrap().replace("max_body_bytes = 1048576", "max_body_bytes = 65536\nmax_connections = 2");
    std::fs::write(&d.config, t).unwrap();
    d.spawn();
    // Wait until the start-up probe connection is released.
    std::thread::sleep(Duration::from_millis(200));
    let a = UnixStream::connect(&d.socket).unwrap();
    let b = UnixStream::connect(&d.socket).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // A third caller is told at once to come back: 503 with Retry-After, not left hanging.
    let out = std::process::Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", "--max-time", "5", "--unix-socket"])
        .arg(&d.socket)
        .arg("http://localhost/keyport/v1/health")
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 503") && head.contains("retry-after: 1"), "{head}");
    drop(a);
    drop(b);
    std::thread::sleep(Duration::from_millis(100));
    let (s, _) = d.curl("GET", "/keyport/v1/health", None, &["--max-time", "20"]);
    assert_eq!(s, 200, "served again once connections closed");
}

/// Opens `n` connections to the socket as uid 65534 (not a principal), half sending the
/// headers of a KPS POST and one byte of its body, half an unfinished head, and holds them;
/// returns once all are open.
fn slow_bodies_as_nobody(d: &Daemon, n: usize) -> std::process::Child {
    let script = r#"
import socket, sys, time
path, n = sys.argv[1], int(sys.argv[2])
held, refused = [], 0
for i in range(n):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    try:
        # Half send a KPS body slowly, half never finish their headers.
        if i % 2:
            s.sendall(b"POST /v3/p/keypairs HTTP/1.1\r\nHost: x\r\n")
        else:
            s.sendall(b"POST /v3/p/keypairs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
    except OSError:
        pass
    held.append(s)
print(len(held), flush=True)
time.sleep(60)
"#;
    let mut c = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", script])
        .arg(&d.socket)
        .arg(n.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(c.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), n.to_string(), "the slow client opened its connections");
    c
}

#[test]
#[ignore = "needs root: clients of another uid through setpriv; scripts/test runs it"]
fn slow_bodies_from_one_uid_never_lock_root_out_of_the_socket() {
    common::require_root("clients of another uid through setpriv");
    require("curl");
    require("setpriv");
    require("python3");
    let d = Daemon::start("");
    let mut nobody = slow_bodies_as_nobody(&d, 256);
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        let start = Instant::now();
        let (s, v) = d.curl("GET", "/keyport/v1/health", None, &["--max-time", "10"]);
        assert_eq!(s, 200, "{v}");
        assert!(start.elapsed() < Duration::from_secs(2), "root's health took {:?}", start.elapsed());
    }
    // Another uid (with no principal) is not locked out either: it gets its 401 at once.
    let start = Instant::now();
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65533",
            "--regid=65533",
            "--clear-groups",
            "curl",
            "-sS",
            "-w",
            "\n%{http_code}",
            "--max-time",
            "10",
            "--unix-socket",
        ])
        .arg(&d.socket)
        .arg("http://localhost/keyport/v1/keys")
        .output()
        .unwrap();
    assert_eq!(parse_curl(out).0, 401);
    assert!(start.elapsed() < Duration::from_secs(2), "uid 65533 waited {:?}", start.elapsed());
    let _ = nobody.kill();
    let _ = nobody.wait();
}

#[test]
fn an_unauthenticated_body_must_arrive_quickly() {
    require("curl");
    let mut d = Daemon::config("");
    let t = std::fs::read_to_string(&d.config)
        .unwrap()
        .replace("max_body_bytes = 1048576", "max_body_bytes = 65536\nunauthenticated_body_secs = 2");
    std::fs::write(&d.config, t).unwrap();
    d.spawn();
    // A KPS AK/SK request: the signature covers the body, so the body is read before the
    // caller is known; it must arrive within unauthenticated_body_secs, not the 120 s request
    // deadline.
    let date = {
        let out = std::process::Command::new("date").args(["-u", "+%Y%m%dT%H%M%SZ"]).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST /v3/p/keypairs HTTP/1.1\r\nHost: x\r\nX-Sdk-Date: {date}\r\nAuthorization: SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date, Signature={}\r\nContent-Length: 1000\r\n\r\n{{",
        "0".repeat(64)
    );
    s.write_all(head.as_bytes()).unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(start.elapsed() < Duration::from_secs(10), "cut off after {:?}", start.elapsed());
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("unauthenticated_body_secs") && text.contains("KPS.0002"), "{text}");
}

#[test]
fn a_body_trickled_past_the_request_deadline_frees_its_connection() {
    require("curl");
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
    // The slot is busy meanwhile: the client is told so (503, Retry-After) and retries.
    let out = std::process::Command::new("curl")
        .args(["-sS", "-w", "%{http_code}", "--max-time", "10", "--retry", "10", "--retry-delay", "1", "-o"])
        .arg(d.dir.path().join("health.out"))
        .arg("--unix-socket")
        .arg(&d.socket)
        .arg("http://localhost/keyport/v1/health")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{}\n{}", String::from_utf8_lossy(&out.stderr), d.log());
    assert!(start.elapsed() < Duration::from_secs(8), "served after {:?}", start.elapsed());
    assert!(trickler.join().unwrap(), "the trickling connection was closed");
}

/// Opens `n` connections to the socket as `uid`, each sending an unfinished request head, and
/// holds them (the header timeout would end them after 10 s); returns once all are open.
fn idle_heads_as(d: &Daemon, uid: u32, n: usize) -> std::process::Child {
    let script = r#"
import socket, sys, time
path, n = sys.argv[1], int(sys.argv[2])
held = []
for i in range(n):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    try:
        s.sendall(b"GET /keyport/v1/health HTTP/1.1\r\nHost: x\r\n")
    except OSError:
        pass
    held.append(s)
print(len(held), flush=True)
time.sleep(60)
"#;
    let mut c = std::process::Command::new("setpriv")
        .args([&format!("--reuid={uid}"), &format!("--regid={uid}"), "--clear-groups", "/usr/bin/python3", "-c", script])
        .arg(&d.socket)
        .arg(n.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(c.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), n.to_string());
    c
}

/// `curl` on the socket as `uid`: the HTTP status (0 when no answer came).
fn health_as(d: &Daemon, uid: u32) -> u16 {
    let out = std::process::Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["--max-time", "3", "--unix-socket"])
        .arg(&d.socket)
        .arg("http://localhost/keyport/v1/health")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

#[test]
#[ignore = "needs root: clients of another uid through setpriv; scripts/test runs it"]
fn each_listener_has_its_own_slots_and_the_socket_keeps_a_reserve_for_admins() {
    common::require_root("clients of another uid through setpriv");
    require("curl");
    require("setpriv");
    require("python3");
    let mut d = Daemon::config("");
    let t = std::fs::read_to_string(&d.config).unwrap().replace(
        "max_body_bytes = 1048576",
        "max_body_bytes = 65536\nmax_connections = 12\nmax_connections_per_peer = 6\nadmin_reserve_connections = 2",
    );
    std::fs::write(&d.config, t).unwrap();
    d.spawn();
    std::thread::sleep(Duration::from_millis(200));
    // Two non-admin uids take their shares (6 each asked, 10 non-admin slots in all).
    let mut a = idle_heads_as(&d, 65534, 6);
    let mut b = idle_heads_as(&d, 65533, 6);
    std::thread::sleep(Duration::from_millis(300));
    // A third non-admin uid finds no slot and is told so at once.
    let start = Instant::now();
    assert_eq!(health_as(&d, 65532), 503, "non-admin slots are full");
    assert!(start.elapsed() < Duration::from_secs(2));
    // Root still gets in, through the reserve.
    let start = Instant::now();
    let (s, v) = d.curl("GET", "/keyport/v1/health", None, &["--max-time", "5"]);
    assert_eq!(s, 200, "{v}");
    assert!(start.elapsed() < Duration::from_secs(2), "root waited {:?}", start.elapsed());
    // TCP connections that never start TLS take the TCP listener's slots (127.0.0.1's share
    // of 6), never the socket's.
    let tcp: Vec<_> = (0..12).map(|_| std::net::TcpStream::connect(("127.0.0.1", d.port)).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let (s, _) = d.curl("GET", "/keyport/v1/health", None, &["--max-time", "5"]);
    assert_eq!(s, 200);
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3", "--cacert"])
        .arg(d.dir.path().join("state/tls-cert.pem"))
        .arg(format!("https://127.0.0.1:{}/keyport/v1/health", d.port))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "000", "127.0.0.1 holds its share of TCP slots: the next connection is closed");
    drop(tcp);
    let _ = a.kill();
    let _ = b.kill();
    let _ = a.wait();
    let _ = b.wait();
}
