//! Client-side pacing per mount (`transit`, `secret`, …): OpenBao's rate-limit quotas are token
//! buckets per client address and node, usually on one mount (docs/vault.md §6), so a client that
//! learns the rate and spaces its calls spends no budget on 429s and gets close to the bound.
//!
//! - `X-Ratelimit-Limit` (sent when `sys/quotas/config` turns headers on): the mount's rate per
//!   second; calls are spaced 1/limit apart (5 % slack). `X-Ratelimit-Remaining: 0` on a success
//!   holds the next call until the reset.
//! - Without headers (OpenBao's default), a 429 teaches the rate: the calls that got through in
//!   the last second. A lane that meets no 429 for [`RELAX_AFTER`] halves its spacing per step,
//!   so a lifted quota is noticed within about a minute (10 % per step took minutes from the
//!   5 s cap: a backlog of four keys needed 100 s after the quota went, issue 16's
//!   `faults_vault`); a quota still in force costs at most one 429 per step to find again.
//!
//! Mounts without a quota are never slowed: they see neither headers nor 429s.

use rand::Rng;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

use super::http::VaultHeaders;

/// How long a lane must go without a 429 before it speeds up one step.
pub const RELAX_AFTER: Duration = Duration::from_secs(10);

/// The most answers remembered per second and mount (a bound on memory, far above any quota
/// worth learning).
const MAX_RECENT: usize = 10_000;

/// Slack on a learned rate: quota windows do not line up with the client's clock.
const SLACK: f64 = 1.05;

#[derive(Debug)]
struct Lane {
    /// Spacing between calls; zero: unpaced.
    gap: Duration,
    /// When the next call may start.
    next: Instant,
    /// Answers that were not 429 in the last second (to learn a rate without headers): kept
    /// for every mount, since the first 429 is the moment it is needed.
    recent: VecDeque<Instant>,
    /// The last 429 or speed-up step.
    last_change: Instant,
    /// The rate came from `X-Ratelimit-Limit` (exact: never relaxed).
    from_header: bool,
}

#[derive(Default)]
pub struct Pacer {
    lanes: Mutex<HashMap<String, Lane>>,
}

/// The mount a vault path belongs to: its first segment (`transit/keys/x` → `transit`).
pub fn mount_of(path: &str) -> &str {
    path.trim_start_matches('/').trim_start_matches("v1/").split('/').next().unwrap_or("")
}

impl Pacer {
    /// Waits for this mount's next slot and takes it.
    pub async fn wait(&self, mount: &str) {
        let sleep_until = {
            let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
            let Some(lane) = lanes.get_mut(mount).filter(|l| !l.gap.is_zero() || l.next > Instant::now()) else { return };
            let now = Instant::now();
            let at = lane.next.max(now);
            lane.next = at + lane.gap;
            at
        };
        tokio::time::sleep_until(sleep_until).await;
    }

    /// The spacing this mount's calls get now (zero: unpaced).
    pub fn gap(&self, mount: &str) -> Duration {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner()).get(mount).map_or(Duration::ZERO, |l| l.gap)
    }

    /// Learns from one answer. For a 429, returns how long to wait before sending it again.
    pub fn observe(&self, mount: &str, status: u16, retry_after: Option<Duration>, h: &VaultHeaders) -> Option<Duration> {
        let limited = status == 429;
        let now = Instant::now();
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let lane = lanes.entry(mount.to_string()).or_insert_with(|| Lane {
            gap: Duration::ZERO,
            next: now,
            recent: VecDeque::new(),
            last_change: now,
            from_header: false,
        });
        if let Some(limit) = h.ratelimit_limit.filter(|l| *l > 0) {
            lane.gap = Duration::from_secs_f64(SLACK / f64::from(limit));
            lane.from_header = true;
        }
        if !limited {
            lane.success(now);
            if h.ratelimit_remaining == Some(0) {
                // The bucket is empty: the next call waits for the refill.
                let reset = h.ratelimit_reset.map(Duration::from_secs).filter(|r| !r.is_zero()).unwrap_or(lane.gap);
                lane.next = lane.next.max(now + reset);
            }
            return None;
        }
        // A 429: learn the rate when no header gave it, and wait for the bucket.
        lane.recent.retain(|t| now.duration_since(*t) < Duration::from_secs(1));
        if !lane.from_header {
            let learned = Duration::from_secs_f64(SLACK / lane.recent.len().max(1) as f64);
            lane.gap = learned.max(lane.gap.mul_f64(1.25)).min(Duration::from_secs(5));
        }
        lane.last_change = now;
        // Retry-After 0 (or none) means "under a second": wait for a refill, jittered.
        let wait = retry_after
            .filter(|d| !d.is_zero())
            .or(h.ratelimit_reset.filter(|r| *r > 0).map(Duration::from_secs))
            .unwrap_or_else(|| Duration::from_millis(rand::thread_rng().gen_range(500..1000)));
        lane.next = lane.next.max(now + wait);
        Some(wait)
    }
}

impl Lane {
    fn success(&mut self, now: Instant) {
        if self.recent.len() < MAX_RECENT {
            self.recent.push_back(now);
        }
        while self.recent.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
            self.recent.pop_front();
        }
        if !self.from_header && !self.gap.is_zero() && now.duration_since(self.last_change) >= RELAX_AFTER {
            self.gap = self.gap.mul_f64(0.5);
            if self.gap < Duration::from_millis(1) {
                self.gap = Duration::ZERO;
            }
            self.last_change = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(limit: Option<u32>, remaining: Option<u32>) -> VaultHeaders {
        VaultHeaders { ratelimit_limit: limit, ratelimit_remaining: remaining, ..VaultHeaders::default() }
    }

    #[test]
    fn mounts_from_paths() {
        assert_eq!(mount_of("transit/keys/a"), "transit");
        assert_eq!(mount_of("/v1/secret/data/x"), "secret");
        assert_eq!(mount_of("sys/health"), "sys");
    }

    #[tokio::test(start_paused = true)]
    async fn a_header_sets_the_pace_and_other_mounts_stay_free() {
        let p = Pacer::default();
        assert_eq!(p.observe("transit", 200, None, &headers(Some(20), Some(19))), None);
        assert_eq!(p.gap("transit"), Duration::from_secs_f64(1.05 / 20.0));
        let t = Instant::now();
        for _ in 0..21 {
            p.wait("transit").await;
            p.wait("secret").await;
        }
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(1000) && took <= Duration::from_millis(1100), "{took:?}");
        assert_eq!(p.gap("secret"), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_without_headers_teaches_the_rate_and_a_quiet_lane_relaxes() {
        let p = Pacer::default();
        // 10 answers in a second, then a 429.
        for _ in 0..10 {
            tokio::time::advance(Duration::from_millis(90)).await;
            p.observe("transit", 204, None, &VaultHeaders::default());
        }
        let wait = p.observe("transit", 429, Some(Duration::from_secs(2)), &VaultHeaders::default());
        assert_eq!(wait, Some(Duration::from_secs(2)), "Retry-After is honoured");
        let gap = p.gap("transit");
        assert!(gap >= Duration::from_millis(100) && gap <= Duration::from_millis(140), "{gap:?}");
        tokio::time::advance(RELAX_AFTER).await;
        p.observe("transit", 204, None, &VaultHeaders::default());
        assert!(p.gap("transit") < gap, "speeds up after a quiet spell");
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_bucket_holds_the_next_call() {
        let p = Pacer::default();
        let h =
            VaultHeaders { ratelimit_limit: Some(5), ratelimit_remaining: Some(0), ratelimit_reset: Some(1), ..VaultHeaders::default() };
        p.observe("transit", 200, None, &h);
        let t = Instant::now();
        p.wait("transit").await;
        assert_eq!(t.elapsed(), Duration::from_secs(1));
    }
}
