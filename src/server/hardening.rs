//! Process hardening at the start of `keyport serve`, best effort, reported once:
//!
//! - **Not dumpable** (`prctl(PR_SET_DUMPABLE, 0)`): no core dump carries a PIN, a DEK or a
//!   key being imported; other processes of the same uid cannot ptrace the daemon or read its
//!   `/proc/<pid>/mem`, `environ` or `fd` (that takes CAP_SYS_PTRACE).
//! - **Memory locked** (`mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`): no secret page
//!   goes to swap. Only where it cannot fail later: with CAP_IPC_LOCK or an unlimited
//!   RLIMIT_MEMLOCK (`LimitMEMLOCK=infinity` in the systemd unit). Under a finite limit, locking
//!   every future page would make allocations fail once the daemon outgrows it, so keyport does
//!   not lock and says how to allow it. `MCL_ONFAULT` locks pages as they are used, so thread
//!   stacks and reserved heap are not made resident. The kernel refuses `MADV_DONTNEED` on
//!   locked pages, so glibc never returns what a thread arena freed: each arena keeps its
//!   high-water mark. keyport therefore keeps per-request allocations small (`GET keys` is
//!   written in chunks) rather than capping arenas — `M_ARENA_MAX=2` put both runtime workers
//!   on one arena and halved `GET keys/{id}` throughput (BENCHMARKS.md, 2026-12-04).
//!
//! Only `prctl` and `mlockall` are called (both in systemd's `@system-service` set); limits and
//! capabilities are read from `/proc/self`, so the unit's `SystemCallFilter` never kills the
//! daemon for a `setrlimit`/`prlimit64` it did not need. Core size is left to the unit's
//! `LimitCORE=0`: a non-dumpable process writes no core file anyway.

use nix::sys::mman::{mlockall, MlockAllFlags};

/// What [`harden`] achieved, for the one log line and for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hardening {
    /// `Ok` or why the process is still dumpable.
    pub non_dumpable: Result<(), String>,
    /// `Ok` or why memory is not locked (with what to do).
    pub memory_locked: Result<(), String>,
}

/// Makes the process non-dumpable and locks its memory where allowed; logs the outcome once.
pub fn harden() -> Hardening {
    let non_dumpable = nix::sys::prctl::set_dumpable(false).map_err(|e| format!("prctl(PR_SET_DUMPABLE, 0) failed: {e}"));
    let memory_locked = lock_memory();
    let h = Hardening { non_dumpable, memory_locked };
    match (&h.non_dumpable, &h.memory_locked) {
        (Ok(()), Ok(())) => {
            tracing::info!("process hardening: not dumpable (no core dumps, no ptrace by the same uid); memory locked (no swap)")
        }
        (Ok(()), Err(why)) => tracing::warn!(
            "process hardening: not dumpable (no core dumps, no ptrace by the same uid); memory NOT locked, secrets may reach swap: {why}"
        ),
        (Err(why), mem) => tracing::warn!(
            memory_locked = mem.is_ok(),
            "process hardening: the daemon is still dumpable, a core dump could hold secrets: {why}"
        ),
    }
    h
}

fn lock_memory() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let allowed = has_cap_ipc_lock(&status) || memlock_unlimited(&limits);
    if !allowed {
        return Err(
            "RLIMIT_MEMLOCK is limited and the process lacks CAP_IPC_LOCK; allow it with LimitMEMLOCK=infinity in the systemd unit (or `ulimit -l unlimited`)"
                .into(),
        );
    }
    let flags = MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE | MlockAllFlags::from_bits_retain(nix::libc::MCL_ONFAULT);
    mlockall(flags).map_err(|e| format!("mlockall failed: {e}"))
}

/// CAP_IPC_LOCK (bit 14) in the effective set of a `/proc/<pid>/status` text.
fn has_cap_ipc_lock(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 14) != 0)
}

/// Whether the soft "Max locked memory" limit of a `/proc/<pid>/limits` text is unlimited.
fn memlock_unlimited(limits: &str) -> bool {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max locked memory"))
        .and_then(|rest| rest.split_whitespace().next())
        .is_some_and(|soft| soft == "unlimited")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_and_limit_parsing() {
        assert!(has_cap_ipc_lock("Name:\tkeyport\nCapEff:\t000001ffffffffff\n"));
        assert!(has_cap_ipc_lock("CapEff:\t0000000000004000\n"));
        assert!(!has_cap_ipc_lock("CapEff:\t0000000000000000\n"));
        assert!(!has_cap_ipc_lock(""));
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max locked memory         8388608              8388608              bytes     \n";
        assert!(!memlock_unlimited(limits));
        assert!(memlock_unlimited("Max locked memory         unlimited            unlimited            bytes\n"));
        assert!(!memlock_unlimited(""));
    }
}
