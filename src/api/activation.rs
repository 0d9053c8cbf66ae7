//! systemd socket activation: when `keyport.socket` holds the Unix socket, systemd passes it
//! as fd 3 (LISTEN_FDS=1, LISTEN_PID=our pid) and keyport serves it instead of binding.
#![allow(unsafe_code)]

use std::os::fd::FromRawFd;
use std::os::unix::net::UnixListener;

const SD_LISTEN_FDS_START: i32 = 3;

/// The activated Unix listener, if systemd handed us one. Clears the variables so children
/// (hooks) do not think the fd is theirs.
pub fn unix_listener() -> Option<UnixListener> {
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    let fds: i32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    if pid != std::process::id() || fds < 1 {
        return None;
    }
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    let fd = SD_LISTEN_FDS_START;
    // Only a Unix stream socket is accepted; anything else is left alone.
    let is_unix_stream = nix::sys::socket::getsockname::<nix::sys::socket::UnixAddr>(fd).is_ok()
        && nix::sys::socket::getsockopt(&unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }, nix::sys::socket::sockopt::SockType)
            .is_ok_and(|t| t == nix::sys::socket::SockType::Stream);
    if !is_unix_stream {
        tracing::warn!("LISTEN_FDS set but fd 3 is not a Unix stream socket; ignoring it");
        return None;
    }
    // SAFETY: systemd passed fd 3 to this process (LISTEN_PID matched) and nothing else owns it.
    let l = unsafe { UnixListener::from_raw_fd(fd) };
    l.set_nonblocking(true).ok()?;
    Some(l)
}
