//! When the sync worker runs a pass: every `interval` plus a random `jitter` (so a fleet
//! started together does not hit the vault together), sooner when a waiting row's backoff ends,
//! and at once on `sync now`. A trigger that arrives while a pass runs is kept (a permit), so the
//! next wait returns at once; `trigger(Some(limit))` returns when a pass that started after the
//! trigger has finished. Tested with tokio's paused clock, not sleeps.

use rand::Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{watch, Notify};

pub struct Schedule {
    interval: Duration,
    jitter: Duration,
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

impl Schedule {
    pub fn new(interval: Duration, jitter: Duration) -> Schedule {
        Schedule { interval, jitter, wake: Notify::new(), requested: AtomicU64::new(0), done: watch::channel(0).0 }
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

    /// The pause before the next pass: `interval` + a random part of `jitter`, or `next_retry`
    /// when that is sooner.
    pub fn delay(&self, next_retry: Option<Duration>) -> Duration {
        let jitter = self.jitter.mul_f64(rand::thread_rng().gen_range(0.0..=1.0));
        let scheduled = self.interval + jitter;
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
        Arc::new(Schedule::new(Duration::from_secs(300), Duration::from_secs(30)))
    }

    #[tokio::test(start_paused = true)]
    async fn a_scheduled_pass_comes_after_the_interval_plus_jitter() {
        let s = schedule();
        let mut seen = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            s.wait(None).await;
            seen.push(t.elapsed());
        }
        assert!(seen.iter().all(|d| *d >= Duration::from_secs(300) && *d <= Duration::from_secs(330)), "{seen:?}");
        assert!(seen.iter().any(|d| *d != seen[0]), "jitter spreads the passes: {seen:?}");
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
