//! A TCP proxy in the test process, between keyport and a real vault, that misbehaves on
//! demand: pass bytes through, delay each chunk, reset connections, cut the vault's answers
//! after K bytes, or refuse connections (the listener closed, as a stopped vault). Plain
//! threads; a mode change applies to new connections at once and to open ones at their next
//! chunk (or within 50 ms), so a kept-alive connection does not outlive the fault.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bytes go through unchanged.
    Pass,
    /// Each chunk (either direction) waits this many milliseconds first.
    Delay(u64),
    /// Every connection is reset (RST) at once, open ones at their next chunk.
    Reset,
    /// The vault's answer bytes on each connection stop after this many, then the connection
    /// is closed: a response cut mid-way.
    Truncate(usize),
    /// Nothing listens on the port: connections are refused; open ones are closed.
    Refuse,
    /// Requests pass, but the answer to a request whose bytes contain this pattern is dropped
    /// and the connection reset: the vault did the work, the client never hears of it.
    LoseAnswerTo(&'static str),
}

struct Shared {
    mode: Mutex<Mode>,
    stop: AtomicBool,
    /// Connections accepted, for the test's figures.
    accepted: AtomicU64,
    /// Answers dropped by `LoseAnswerTo`.
    lost: AtomicU64,
}

pub struct Proxy {
    pub port: u16,
    shared: Arc<Shared>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

fn bind(port: u16) -> std::io::Result<TcpListener> {
    // std sets SO_REUSEADDR on Unix, so the port can be bound again after a `Refuse`.
    let l = TcpListener::bind(("127.0.0.1", port))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Closes with RST instead of FIN (SO_LINGER 0).
fn reset(s: &TcpStream) {
    let _ = nix::sys::socket::setsockopt(&s.as_fd(), nix::sys::socket::sockopt::Linger, &libc_linger());
    let _ = s.shutdown(Shutdown::Both);
}

fn libc_linger() -> nix::libc::linger {
    nix::libc::linger { l_onoff: 1, l_linger: 0 }
}

impl Proxy {
    /// A proxy on a free port in front of `127.0.0.1:upstream`, passing bytes through.
    pub fn start(upstream: u16) -> Proxy {
        let listener = bind(0).unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Pass),
            stop: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        });
        let s = shared.clone();
        let acceptor = std::thread::spawn(move || {
            let mut listener = Some(listener);
            while !s.stop.load(Ordering::SeqCst) {
                let mode = *s.mode.lock().unwrap();
                if mode == Mode::Refuse {
                    listener = None;
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                if listener.is_none() {
                    match bind(port) {
                        Ok(l) => listener = Some(l),
                        Err(_) => {
                            std::thread::sleep(Duration::from_millis(10));
                            continue;
                        }
                    }
                }
                match listener.as_ref().unwrap().accept() {
                    Ok((client, _)) => {
                        s.accepted.fetch_add(1, Ordering::SeqCst);
                        let _ = client.set_nonblocking(false);
                        if mode == Mode::Reset {
                            reset(&client);
                            continue;
                        }
                        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                            reset(&client);
                            continue;
                        };
                        pump_pair(s.clone(), client, server);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy { port, shared, acceptor: Some(acceptor) }
    }

    pub fn set(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
        if mode == Mode::Refuse {
            // Until the acceptor dropped the listener, a connect would still succeed.
            let start = std::time::Instant::now();
            while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                assert!(start.elapsed() < Duration::from_secs(5), "the proxy did not close its port");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    pub fn lost(&self) -> u64 {
        self.shared.lost.load(Ordering::SeqCst)
    }

    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

/// Two threads per connection: client → vault and vault → client. `lose`: the client just
/// sent a request whose answer is to be lost (`LoseAnswerTo`).
fn pump_pair(s: Arc<Shared>, client: TcpStream, server: TcpStream) {
    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let sh = s.clone();
    let lose = Arc::new(AtomicBool::new(false));
    let l2 = lose.clone();
    std::thread::spawn(move || pump(sh, client, server, false, l2));
    std::thread::spawn(move || pump(s, s2, c2, true, lose));
}

/// Copies `from` → `to` until either side closes or the mode says otherwise. `answers`: this
/// direction carries the vault's answers (what `Truncate` cuts).
fn pump(s: Arc<Shared>, mut from: TcpStream, mut to: TcpStream, answers: bool, lose: Arc<AtomicBool>) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 4096];
    let mut sent = 0usize;
    let close = |from: &TcpStream, to: &TcpStream, rst: bool| {
        if rst {
            reset(from);
            reset(to);
        } else {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        }
    };
    loop {
        if s.stop.load(Ordering::SeqCst) {
            return close(&from, &to, false);
        }
        let mode = *s.mode.lock().unwrap();
        match mode {
            Mode::Refuse => return close(&from, &to, false),
            Mode::Reset => return close(&from, &to, true),
            _ => {}
        }
        let n = match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => return close(&from, &to, true),
        };
        let mode = *s.mode.lock().unwrap();
        let mut chunk = &buf[..n];
        match mode {
            Mode::Delay(ms) => std::thread::sleep(Duration::from_millis(ms)),
            Mode::Reset | Mode::Refuse => return close(&from, &to, mode == Mode::Reset),
            Mode::LoseAnswerTo(pattern) if !answers && chunk.windows(pattern.len()).any(|w| w == pattern.as_bytes()) => {
                lose.store(true, Ordering::SeqCst);
            }
            Mode::LoseAnswerTo(_) if answers && lose.load(Ordering::SeqCst) => {
                s.lost.fetch_add(1, Ordering::SeqCst);
                return close(&from, &to, true);
            }
            Mode::Truncate(k) if answers => {
                let room = k.saturating_sub(sent);
                if room < chunk.len() {
                    chunk = &chunk[..room];
                    let _ = to.write_all(chunk);
                    return close(&from, &to, false);
                }
            }
            _ => {}
        }
        sent += chunk.len();
        if to.write_all(chunk).is_err() {
            return close(&from, &to, true);
        }
    }
}
