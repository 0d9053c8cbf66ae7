//! When the sync worker runs a pass. A fleet must not hit the vault together, even when its
//! hosts were started together (a reboot, a package upgrade): each host has its own slot in the
//! interval, the hash of its host name (`[sync] host`) mapped onto the interval, so passes land
//! at `slot`, `slot + interval`, … of the wall clock, plus a small random `jitter`. N hosts with
//! one interval spread evenly over it whenever they started. A pass also comes sooner when a
//! waiting row's backoff ends, and at once on `sync now` (and at start). A trigger that arrives
//! while a pass runs is kept (a permit), so the next wait returns at once;
//! `trigger(Some(limit))` returns when a pass that started after the trigger has finished.
//! Tested with tokio's paused clock, not sleeps.

use rand::Rng;
use sha2::Digest;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{watch, Notify};

pub struct Schedule {
    interval: Duration,
    jitter: Duration,
    /// This host's offset into each interval (of Unix time).
    slot: Duration,
    /// Unix time at `started`: the wall clock read once and then followed on tokio's clock, so
    /// the slots are the fleet's shared wall-clock grid and tests can run on a paused clock.
    epoch_at_start: Duration,
    started: tokio::time::Instant,
    wake: Notify,
    /// Triggers asked for so far; a pass started when this exceeds `done` is forced.
    requested: AtomicU64,
    /// The trigger count a finished pass covered.
    done: watch::Sender<u64>,
}

/// A pass in progress: whether `sync now` forced it, and which triggers it answers.
pub struct Pass {
    pub forced: bool,
    ticket: u64,
}

/// `host`'s offset into an interval: the first 8 bytes of SHA-256(host) as a number, modulo the
/// interval (to the millisecond). Any two hosts are as likely to be near as random ones, and a
/// host keeps its slot across restarts.
pub fn slot(host: &str, interval: Duration) -> Duration {
    let ms = interval.as_millis() as u64;
    if ms == 0 {
        return Duration::ZERO;
    }
    let h = sha2::Sha256::digest(host.as_bytes());
    let n = u64::from_be_bytes(h[..8].try_into().expect("8 bytes"));
    Duration::from_millis(n % ms)
}

/// The time from `now` (since the Unix epoch) to the next instant that is `slot` into an
/// interval; strictly later than `now` (a whole interval when `now` is on the slot).
pub fn until_slot(now: Duration, interval: Duration, slot: Duration) -> Duration {
    let i = interval.as_millis();
    if i == 0 {
        return Duration::ZERO;
    }
    let into = now.as_millis() % i;
    let s = slot.as_millis() % i;
    let ms = if s > into { s - into } else { i - into + s };
    Duration::from_millis(ms as u64)
}

impl Schedule {
    pub fn new(interval: Duration, jitter: Duration, host: &str) -> Schedule {
        let epoch_at_start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Schedule::starting_at(interval, jitter, host, epoch_at_start)
    }

    /// [`Schedule::new`] as if the wall clock read `epoch_at_start` now (tests).
    fn starting_at(interval: Duration, jitter: Duration, host: &str, epoch_at_start: Duration) -> Schedule {
        Schedule {
            interval,
            jitter,
            slot: slot(host, interval),
            epoch_at_start,
            started: tokio::time::Instant::now(),
            wake: Notify::new(),
            requested: AtomicU64::new(0),
            done: watch::channel(0).0,
        }
    }

    /// This host's offset into each interval.
    pub fn slot(&self) -> Duration {
        self.slot
    }

    /// Asks for a pass now; with `wait`, returns whether one finished within it.
    pub async fn trigger(&self, wait: Option<Duration>) -> bool {
        let target = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.wake.notify_one();
        let Some(limit) = wait else { return true };
        let mut rx = self.done.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|d| *d >= target)).await.is_ok_and(|r| r.is_ok())
    }

    pub fn begin(&self) -> Pass {
        let ticket = self.requested.load(Ordering::SeqCst);
        Pass { forced: ticket > *self.done.borrow(), ticket }
    }

    pub fn finish(&self, pass: Pass) {
        self.done.send_replace(pass.ticket);
    }

    /// The pause before the next pass: to this host's next slot that is at least half an
    /// interval away (a pass at start, or a retry, is not followed by a scheduled one moments
    /// later), plus a random part of `jitter`; or `next_retry` when that is sooner.
    pub fn delay(&self, next_retry: Option<Duration>) -> Duration {
        let now = self.epoch_at_start + self.started.elapsed();
        let jitter = self.jitter.mul_f64(rand::thread_rng().gen_range(0.0..=1.0));
        let mut until = until_slot(now, self.interval, self.slot);
        if until < self.interval / 2 {
            until += self.interval;
        }
        let scheduled = until + jitter;
        next_retry.map_or(scheduled, |r| r.min(scheduled))
    }

    /// Sleeps until the next pass is due, or a trigger arrives.
    pub async fn wait(&self, next_retry: Option<Duration>) {
        let sleep = self.delay(next_retry);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = self.wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::time::Instant;

    fn schedule() -> Arc<Schedule> {
        // The wall clock 1 s past this host's slot: the next slot is 299 s away.
        let interval = Duration::from_secs(300);
        let epoch = Duration::from_secs(1_800_000_000) + slot("web01", interval) + Duration::from_secs(1);
        Arc::new(Schedule::starting_at(interval, Duration::from_secs(30), "web01", epoch))
    }

    #[tokio::test(start_paused = true)]
    async fn scheduled_passes_land_on_the_hosts_slot_plus_jitter_every_interval() {
        let s = schedule();
        let into_interval = || (s.epoch_at_start + s.started.elapsed()).as_millis() % 300_000;
        let first = Instant::now();
        s.wait(None).await;
        assert!(first.elapsed() >= Duration::from_secs(299) && first.elapsed() <= Duration::from_secs(329), "{:?}", first.elapsed());
        let mut seen = Vec::new();
        for _ in 0..20 {
            let at = into_interval();
            let slot = s.slot().as_millis();
            assert!((at + 300_000 - slot) % 300_000 <= 30_000, "a pass starts at the slot ({slot} ms) plus jitter, not at {at} ms");
            let t = Instant::now();
            s.wait(None).await;
            seen.push(t.elapsed());
        }
        assert!(seen.iter().all(|d| *d >= Duration::from_secs(270) && *d <= Duration::from_secs(330)), "{seen:?}");
        assert!(seen.iter().any(|d| *d != seen[0]), "jitter moves the passes a little: {seen:?}");
    }

    /// Started (a pass at start) 10 s before its slot: the first scheduled pass is the slot
    /// after that one, not 10 s later.
    #[tokio::test(start_paused = true)]
    async fn a_slot_moments_away_is_skipped_for_the_next() {
        let interval = Duration::from_secs(300);
        let epoch = Duration::from_secs(1_800_000_000) + slot("web01", interval) + interval - Duration::from_secs(10);
        let s = Schedule::starting_at(interval, Duration::ZERO, "web01", epoch);
        let t = Instant::now();
        s.wait(None).await;
        assert_eq!(t.elapsed(), Duration::from_secs(310));
    }

    /// A fleet's slots spread evenly over the interval, and each host keeps its own.
    #[test]
    fn slots_of_a_fleet_spread_over_the_interval() {
        let interval = Duration::from_secs(300);
        assert_eq!(slot("web01", interval), slot("web01", interval), "stable across restarts");
        assert_ne!(slot("web01", interval), slot("web02", interval));
        let mut buckets = [0usize; 10];
        for i in 0..2000 {
            let s = slot(&format!("host-{i:04}"), interval);
            assert!(s < interval);
            buckets[(s.as_millis() * 10 / interval.as_millis()) as usize] += 1;
        }
        assert!(buckets.iter().all(|&b| (140..=260).contains(&b)), "each tenth of the interval holds ~200 of 2000 hosts: {buckets:?}");
    }

    #[test]
    fn until_slot_is_strictly_later_and_at_most_one_interval() {
        let (i, s) = (Duration::from_secs(300), Duration::from_secs(100));
        assert_eq!(until_slot(Duration::from_secs(3000 + 40), i, s), Duration::from_secs(60));
        assert_eq!(until_slot(Duration::from_secs(3000 + 100), i, s), Duration::from_secs(300), "on the slot: the next one");
        assert_eq!(until_slot(Duration::from_secs(3000 + 250), i, s), Duration::from_secs(150));
        assert_eq!(until_slot(Duration::from_secs(7), Duration::ZERO, s), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_backoff_wakes_the_loop_sooner() {
        let s = schedule();
        let t = Instant::now();
        s.wait(Some(Duration::from_secs(7))).await;
        assert_eq!(t.elapsed(), Duration::from_secs(7));
        let t = Instant::now();
        s.wait(Some(Duration::from_secs(9000))).await;
        assert!(t.elapsed() <= Duration::from_secs(330), "never later than the schedule");
    }

    #[tokio::test(start_paused = true)]
    async fn sync_now_wakes_a_sleeping_loop_and_waits_for_its_pass() {
        let s = schedule();
        let worker = {
            let s = s.clone();
            tokio::spawn(async move {
                assert!(!s.begin().forced, "the first pass is a scheduled one");
                let t = Instant::now();
                s.wait(None).await;
                let slept = t.elapsed();
                let pass = s.begin();
                assert!(pass.forced, "a triggered pass is forced");
                tokio::time::sleep(Duration::from_secs(2)).await; // the pass itself
                s.finish(pass);
                slept
            })
        };
        tokio::time::sleep(Duration::from_secs(60)).await;
        let t = Instant::now();
        assert!(s.trigger(Some(Duration::from_secs(10))).await, "the pass finished within the limit");
        assert_eq!(t.elapsed(), Duration::from_secs(2), "it waited for the pass, not longer");
        assert_eq!(worker.await.unwrap(), Duration::from_secs(60), "woken at the trigger, not at 300 s");
        assert!(!s.begin().forced, "that trigger is answered");
    }

    #[tokio::test(start_paused = true)]
    async fn a_trigger_during_a_pass_is_not_lost_and_a_wait_can_time_out() {
        let s = schedule();
        let pass = s.begin();
        assert!(s.trigger(None).await);
        s.finish(pass); // this pass started before the trigger: it does not answer it
        assert!(s.begin().forced);
        let t = Instant::now();
        s.wait(None).await;
        assert_eq!(t.elapsed(), Duration::ZERO, "the permit wakes the next wait at once");
        // Nobody runs passes: a waiting trigger gives up at its limit.
        let t = Instant::now();
        assert!(!s.trigger(Some(Duration::from_secs(5))).await);
        assert_eq!(t.elapsed(), Duration::from_secs(5));
    }
}
