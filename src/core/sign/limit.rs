//! A token bucket per principal: `per_minute` signatures a minute on average, with a burst of
//! up to one minute's budget after a quiet spell.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// Takes one signature from `principal`'s budget, or says how long until one is free.
    pub fn take(&self, principal: &str, per_minute: u32) -> Result<(), Duration> {
        self.take_at(principal, per_minute, Instant::now())
    }

    fn take_at(&self, principal: &str, per_minute: u32, now: Instant) -> Result<(), Duration> {
        let cap = f64::from(per_minute.max(1));
        let per_sec = cap / 60.0;
        let mut all = self.buckets.lock().expect("poisoned");
        let b = all.entry(principal.to_string()).or_insert(Bucket { tokens: cap, at: now });
        b.tokens = (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_sec).min(cap);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / per_sec))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_per_principal() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..6 {
            l.take_at("a", 6, t0).unwrap();
        }
        let wait = l.take_at("a", 6, t0).unwrap_err();
        assert!((9..=10).contains(&wait.as_secs()), "{wait:?}");
        l.take_at("b", 6, t0).expect("another principal has its own budget");
        l.take_at("a", 6, t0 + Duration::from_secs(10)).expect("one signature back after 10 s");
        assert!(l.take_at("a", 6, t0 + Duration::from_secs(10)).is_err());
    }
}
