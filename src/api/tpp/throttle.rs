//! Failed-login throttling for the TPP face, and the bound on Argon2 work.
//!
//! Per configured user and per source (the uid on the socket, the address on TCP): the first
//! [`FREE_FAILURES`] failures cost nothing; each one after blocks that user or source for
//! 1, 2, 4, … s (at most [`MAX_DELAY`]). A blocked attempt is refused before its password is
//! checked, so it costs no Argon2 work; a success clears the user's and the source's count.
//! Per-user counts exist only for configured users (an attacker's made-up names cannot grow
//! the table); sources are capped at [`MAX_SOURCES`], forgetting the stalest first.
//!
//! Independently, at most [`verify_slots`] Argon2 checks run at once and at most
//! [`MAX_WAITING`] wait for a slot; beyond that a login is answered 503 at once, so a flood
//! from many sources costs at most those cores.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::core::authz::Peer;

/// Failures allowed before delays start.
pub const FREE_FAILURES: u32 = 3;
/// The longest block.
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// Sources remembered at once.
pub const MAX_SOURCES: usize = 10_000;
/// Logins that may wait for an Argon2 slot.
pub const MAX_WAITING: usize = 16;

/// Where a login comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Uid(u32),
    Ip(IpAddr),
}

impl Source {
    pub fn of(peer: &Peer) -> Source {
        match peer {
            Peer::Unix { uid, .. } => Source::Uid(*uid),
            Peer::Tcp { addr } => Source::Ip(addr.ip()),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Uid(u) => write!(f, "uid {u}"),
            Source::Ip(a) => write!(f, "{a}"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    blocked_until: Option<Instant>,
    last: Instant,
}

impl Entry {
    fn remaining(&self, now: Instant) -> Option<Duration> {
        self.blocked_until.filter(|t| *t > now).map(|t| t - now)
    }
}

#[derive(Default)]
struct State {
    users: HashMap<String, Entry>,
    sources: HashMap<Source, Entry>,
}

/// The delay the `failures`-th failure imposes.
pub fn delay(failures: u32) -> Duration {
    if failures <= FREE_FAILURES {
        return Duration::ZERO;
    }
    let exp = (failures - FREE_FAILURES - 1).min(20);
    Duration::from_secs(1u64 << exp).min(MAX_DELAY)
}

/// How many Argon2 checks may run at once: half the cores, at least one.
pub fn verify_slots() -> usize {
    std::thread::available_parallelism().map(|n| n.get() / 2).unwrap_or(1).max(1)
}

pub struct LoginThrottle {
    state: Mutex<State>,
    slots: Semaphore,
    waiting: AtomicUsize,
}

/// A new block that a failure started, for the audit log.
#[derive(Debug, PartialEq, Eq)]
pub enum Blocked {
    User(Duration),
    Source(Duration),
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle { state: Mutex::default(), slots: Semaphore::new(verify_slots()), waiting: AtomicUsize::new(0) }
    }
}

impl LoginThrottle {
    /// `Err(retry_after)` while `user` (a configured user's lower-cased name) or `source` is
    /// blocked.
    pub fn check(&self, user: Option<&str>, source: Source) -> Result<(), Duration> {
        let now = Instant::now();
        let st = self.state.lock().expect("poisoned");
        let u = user.and_then(|u| st.users.get(u)).and_then(|e| e.remaining(now));
        let s = st.sources.get(&source).and_then(|e| e.remaining(now));
        match u.max(s) {
            Some(d) => Err(d),
            None => Ok(()),
        }
    }

    /// Counts a failure; returns the blocks it started.
    pub fn failed(&self, user: Option<&str>, source: Source) -> Vec<Blocked> {
        let now = Instant::now();
        let mut st = self.state.lock().expect("poisoned");
        let mut out = Vec::new();
        let bump = |e: &mut Entry| {
            // A count long past its block starts over.
            if now.duration_since(e.last) > MAX_DELAY * 2 {
                e.failures = 0;
            }
            e.failures = e.failures.saturating_add(1);
            e.last = now;
            let d = delay(e.failures);
            e.blocked_until = (!d.is_zero()).then(|| now + d);
            d
        };
        if let Some(u) = user {
            let e = st.users.entry(u.to_string()).or_insert(Entry { failures: 0, blocked_until: None, last: now });
            let d = bump(e);
            if !d.is_zero() {
                out.push(Blocked::User(d));
            }
        }
        if !st.sources.contains_key(&source) && st.sources.len() >= MAX_SOURCES {
            st.sources.retain(|_, e| now.duration_since(e.last) <= MAX_DELAY * 2);
            if st.sources.len() >= MAX_SOURCES {
                if let Some(stalest) = st.sources.iter().min_by_key(|(_, e)| e.last).map(|(k, _)| *k) {
                    st.sources.remove(&stalest);
                }
            }
        }
        let e = st.sources.entry(source).or_insert(Entry { failures: 0, blocked_until: None, last: now });
        let d = bump(e);
        if !d.is_zero() {
            out.push(Blocked::Source(d));
        }
        out
    }

    /// A good password: the user's and the source's counts start over.
    pub fn succeeded(&self, user: &str, source: Source) {
        let mut st = self.state.lock().expect("poisoned");
        st.users.remove(user);
        st.sources.remove(&source);
    }

    /// A slot for one Argon2 check, or `None` when too many logins already wait for one.
    pub async fn slot(&self) -> Option<SemaphorePermit<'_>> {
        if let Ok(p) = self.slots.try_acquire() {
            return Some(p);
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let p = self.slots.acquire().await.ok();
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_a_success_clears() {
        assert_eq!((1..=3).map(delay).collect::<Vec<_>>(), [Duration::ZERO; 3]);
        assert_eq!(delay(4), Duration::from_secs(1));
        assert_eq!(delay(6), Duration::from_secs(4));
        assert_eq!(delay(1000), MAX_DELAY);
        let t = LoginThrottle::default();
        let (a, b) = (Source::Uid(1000), Source::Uid(1001));
        for _ in 0..3 {
            assert!(t.failed(Some("alice"), a).is_empty());
        }
        assert_eq!(t.failed(Some("alice"), a), [Blocked::User(Duration::from_secs(1)), Blocked::Source(Duration::from_secs(1))]);
        assert!(t.check(Some("alice"), b).is_err(), "the user is blocked from every source");
        assert!(t.check(Some("bob"), a).is_err(), "the source is blocked for every user");
        assert!(t.check(Some("bob"), b).is_ok());
        t.succeeded("alice", a);
        assert!(t.check(Some("alice"), a).is_ok());
    }

    #[test]
    fn sources_are_bounded() {
        let t = LoginThrottle::default();
        for i in 0..(MAX_SOURCES as u32 + 50) {
            t.failed(None, Source::Uid(i));
        }
        assert!(t.state.lock().unwrap().sources.len() <= MAX_SOURCES);
    }
}
