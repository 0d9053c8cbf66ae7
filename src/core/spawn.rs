//! The one `unsafe` the hooks need (rotation hooks, the agent's confirm hook): closing every
//! descriptor above stderr in the child between fork and exec. Rust opens its own files
//! close-on-exec, but a PKCS#11 module, another library or keyport's own parent may not (a
//! test runner's jobserver pipe was found in a confirm hook); a hook must never hold the
//! token's, the store's, a listener's or anyone else's descriptors.
#![allow(unsafe_code)]

/// Makes the child close every descriptor from 3 up before it runs the hook.
pub fn close_inherited_fds(c: &mut std::process::Command) {
    // SAFETY: the closure runs in the forked child before exec and only makes the
    // close_range(2) system call (Linux 5.11 for CLOSE_RANGE_CLOEXEC), which is async-signal-safe; it touches no memory of the
    // parent's. An older kernel makes it fail with ENOSYS, which is
    // reported as a failure to start the hook rather than running it with inherited fds.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(c, || {
            // CLOSE_RANGE_CLOEXEC: marked close-on-exec rather than closed now, so the pipe
            // the standard library reports an exec failure through still works.
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
