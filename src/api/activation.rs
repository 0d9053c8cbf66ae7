//! systemd socket activation: when `keyport.socket` holds the Unix socket, systemd passes it
//! as fd 3 (LISTEN_FDS=1, LISTEN_PID=our pid) and keyport serves it instead of binding; with
//! `keyport-agent.socket` too, the agent's socket comes as the fd named `agent`.
#![allow(unsafe_code)]

use std::os::fd::FromRawFd;
use std::os::unix::net::UnixListener;

const SD_LISTEN_FDS_START: i32 = 3;

/// The Unix listeners systemd handed us: the agent's is the one named `agent`
/// (`FileDescriptorName=agent` in `keyport-agent.socket`), the API's any other.
#[derive(Default)]
pub struct Activated {
    pub api: Option<UnixListener>,
    pub agent: Option<UnixListener>,
}

/// The activated API listener, if systemd handed us one (see [`take`] for both sockets).
pub fn unix_listener() -> Option<UnixListener> {
    take().api
}

/// Every Unix stream listener systemd passed (LISTEN_FDS from fd 3, named by LISTEN_FDNAMES).
/// Clears the variables so children (hooks) do not think the fds are theirs; call it once,
/// before the runtime starts (changing the environment is unsound once other threads run).
pub fn take() -> Activated {
    let mut out = Activated::default();
    let (Some(pid), Some(fds)) = (
        std::env::var("LISTEN_PID").ok().and_then(|v| v.parse::<u32>().ok()),
        std::env::var("LISTEN_FDS").ok().and_then(|v| v.parse::<i32>().ok()),
    ) else {
        return out;
    };
    if pid != std::process::id() || fds < 1 {
        return out;
    }
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES").unwrap_or_default().split(':').map(String::from).collect();
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    for i in 0..fds.min(16) {
        let fd = SD_LISTEN_FDS_START + i;
        // Only a Unix stream socket is accepted; anything else is left alone.
        let is_unix_stream = nix::sys::socket::getsockname::<nix::sys::socket::UnixAddr>(fd).is_ok()
            && nix::sys::socket::getsockopt(&unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }, nix::sys::socket::sockopt::SockType)
                .is_ok_and(|t| t == nix::sys::socket::SockType::Stream);
        if !is_unix_stream {
            tracing::warn!(fd, "LISTEN_FDS names an fd that is not a Unix stream socket; ignoring it");
            continue;
        }
        // SAFETY: systemd passed this fd to this process (LISTEN_PID matched) and nothing else owns it.
        let l = unsafe { UnixListener::from_raw_fd(fd) };
        if l.set_nonblocking(true).is_err() {
            continue;
        }
        let slot = if names.get(i as usize).map(String::as_str) == Some("agent") { &mut out.agent } else { &mut out.api };
        if slot.is_none() {
            *slot = Some(l);
        }
    }
    out
}
