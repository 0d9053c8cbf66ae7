//! The one `unsafe` the hooks need: closing every descriptor above stderr in the child between
//! fork and exec. Rust opens its own files close-on-exec, but a PKCS#11 module or another
//! library may not; a hook must never hold the token's, the store's or a listener's
//! descriptors.
#![allow(unsafe_code)]

/// Makes the child close every descriptor from 3 up before it runs the hook.
pub fn close_inherited_fds(c: &mut tokio::process::Command) {
    // SAFETY: the closure runs in the forked child before exec and only makes the
    // close_range(2) system call (Linux 5.11 for CLOSE_RANGE_CLOEXEC), which is async-signal-safe; it touches no memory of the
    // parent's. An older kernel makes it fail with ENOSYS, which is
    // reported as a failure to start the hook rather than running it with inherited fds.
    unsafe {
        c.pre_exec(|| {
            // CLOSE_RANGE_CLOEXEC: marked close-on-exec rather than closed now, so the pipe
            // the standard library reports an exec failure through still works.
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
