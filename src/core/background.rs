//! The daemon's background work — import jobs, health probes, unfinished deletes, the DEK
//! retry, certificate jobs, rotations, sync passes — tracked in one place so that a SIGTERM
//! stops it at a safe point and waits for it, instead of dropping it wherever it stands.
//!
//! A safe point is where a loop waits: every unit of work (a job item, a rotation stage, a
//! key's sync) is crash-safe on its own (intents, one transaction), so a loop checks
//! [`Background::stopping`] only between units and at its sleeps, and a unit already started
//! finishes. Work still running after [`DRAIN`] is dropped as a crash would drop it: the
//! next start finishes or undoes it. A `TaskTracker` rather than a `JoinSet`: tasks spawned
//! by tasks (a job's run, a rotation's stages, a sync pass) are tracked too, without handing
//! a set around.

use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a stopping daemon waits for background work after its connections are drained;
/// well inside the unit's `TimeoutStopSec=`.
pub const DRAIN: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Background {
    tasks: TaskTracker,
    stopping: CancellationToken,
}

impl Background {
    /// Runs `work` as tracked background work.
    pub fn spawn<F>(&self, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(work);
    }

    /// Whether the daemon is stopping: a loop returns at its next safe point.
    pub fn is_stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// Tracked tasks still running (health and tests; 0 after a clean stop).
    pub fn running(&self) -> usize {
        self.tasks.len()
    }

    /// Resolves once the daemon is stopping; for a loop's `select!` at its sleep.
    pub async fn stopping(&self) {
        self.stopping.cancelled().await
    }

    /// Sleeps for `d`; false when the daemon began to stop meanwhile (then at once).
    pub async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.is_stopping(),
            _ = self.stopping.cancelled() => false,
        }
    }

    /// Tells every loop to stop, then waits up to `within` for the work in flight. Returns
    /// how many tasks were still running when the wait ended (0: everything stopped cleanly).
    pub async fn stop(&self, within: Duration) -> usize {
        self.stopping.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(within, self.tasks.wait()).await;
        self.tasks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn stop_waits_for_work_in_flight_and_ends_sleeping_loops() {
        let bg = std::sync::Arc::new(Background::default());
        let (finished, looped) =
            (std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)), std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0)));
        // A unit of work that must finish once started.
        let f = finished.clone();
        bg.spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            f.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        // A loop that sleeps between rounds.
        let (b, l) = (bg.clone(), looped.clone());
        bg.spawn(async move {
            while b.pause(Duration::from_secs(3600)).await {
                l.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        assert_eq!(bg.stop(DRAIN).await, 0);
        assert!(finished.load(std::sync::atomic::Ordering::SeqCst), "the unit in flight finished");
        assert_eq!(looped.load(std::sync::atomic::Ordering::SeqCst), 0, "the loop returned at its sleep");
    }

    #[tokio::test(start_paused = true)]
    async fn work_that_outlasts_the_drain_is_counted() {
        let bg = Background::default();
        bg.spawn(async { tokio::time::sleep(Duration::from_secs(3600)).await });
        assert_eq!(bg.stop(Duration::from_secs(1)).await, 1);
    }
}
