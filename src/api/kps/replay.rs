//! Signatures already accepted, so a signed request is served once. A signature is valid while
//! its `X-Sdk-Date` is within `sign::MAX_SKEW_SECS` of the clock, so an entry is kept until
//! then and dropped after. The cache holds at most `MAX_ENTRIES` (about 150 bytes each, ~10 MiB);
//! when full, the entry that expires first is evicted and its expiry becomes a floor: a request
//! whose signature would expire at or before the floor is refused too, since the cache can no
//! longer tell whether it was seen. A flood can make old-dated requests fail; it can never
//! make a replay pass.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// Entries kept at most.
pub const MAX_ENTRIES: usize = 65_536;

pub struct ReplayCache {
    max: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    seen: HashMap<[u8; 32], i64>,
    by_expiry: BTreeSet<(i64, [u8; 32])>,
    /// Requests expiring at or before this may have been evicted: refused.
    floor: i64,
}

impl Default for ReplayCache {
    fn default() -> ReplayCache {
        ReplayCache::new(MAX_ENTRIES)
    }
}

impl ReplayCache {
    pub fn new(max: usize) -> ReplayCache {
        ReplayCache { max: max.max(1), inner: Mutex::default() }
    }

    /// Records `signature` (valid until `expires`, epoch seconds); false when it was seen
    /// before, or may have been.
    pub fn first_use(&self, signature: [u8; 32], expires: i64, now: i64) -> bool {
        let mut g = self.inner.lock().expect("poisoned");
        let inner = &mut *g;
        while let Some(&(at, sig)) = inner.by_expiry.first() {
            if at >= now {
                break;
            }
            inner.by_expiry.pop_first();
            inner.seen.remove(&sig);
        }
        if expires <= inner.floor || inner.seen.contains_key(&signature) {
            return false;
        }
        if inner.seen.len() >= self.max {
            if let Some((at, sig)) = inner.by_expiry.pop_first() {
                inner.seen.remove(&sig);
                inner.floor = inner.floor.max(at);
                if expires <= inner.floor {
                    return false;
                }
            }
        }
        inner.seen.insert(signature, expires);
        inner.by_expiry.insert((expires, signature));
        true
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().unwrap().seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_expiry_and_the_floor() {
        let c = ReplayCache::new(3);
        let s = |n: u8| [n; 32];
        assert!(c.first_use(s(1), 100, 0));
        assert!(!c.first_use(s(1), 100, 50), "a repeat is refused");
        assert!(c.first_use(s(2), 200, 50));
        assert!(c.first_use(s(3), 300, 50));
        // Full: the first to expire (100) goes and becomes the floor.
        assert!(c.first_use(s(4), 400, 50));
        assert_eq!(c.len(), 3);
        assert!(!c.first_use(s(1), 100, 60), "evicted, but still refused by the floor");
        assert!(!c.first_use(s(5), 90, 60), "anything expiring before the floor is refused");
        // Expired entries go by themselves.
        assert!(c.first_use(s(6), 500, 250));
        assert_eq!(c.len(), 3, "2 expired at 250; 3, 4 and 6 remain");
        assert!(!c.first_use(s(3), 300, 250));
    }
}
