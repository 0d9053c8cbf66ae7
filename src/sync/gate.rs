//! One backoff for the whole vault. When the vault is down, sealed, without an active node or
//! rate-limiting past what a call waits out, every key would meet the same error: the pass
//! stops, no row is charged an attempt (a row's attempts count its own failures only), and the
//! next pass first probes the vault (`sys/health` on its nodes) before it touches any key. The
//! wait doubles per failed probe (0.5 s, 1 s, 2 s … up to `max`, jittered, at least a
//! Retry-After), so an outage costs a bounded number of passes and two log lines: one when the
//! vault goes, one when it is back.

use rand::Rng;
use std::sync::Mutex;
use std::time::Duration;

use super::outbox;

/// The first wait after the vault became unusable.
pub const FIRST_WAIT: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
struct Down {
    reason: String,
    failures: u32,
    since: std::time::Instant,
    /// RFC 3339 time of the next probe (status shows it as each pending key's next attempt).
    next_at: crate::clock::Timestamp,
}

#[derive(Default)]
pub struct Gate {
    down: Mutex<Option<Down>>,
}

/// The vault's state as status shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GateStatus {
    pub reason: String,
    pub failures: u32,
    pub down_secs: u64,
    pub next_probe_at: crate::clock::Timestamp,
}

impl Gate {
    pub fn status(&self) -> Option<GateStatus> {
        self.down.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|d| GateStatus {
            reason: d.reason.clone(),
            failures: d.failures,
            down_secs: d.since.elapsed().as_secs(),
            next_probe_at: d.next_at,
        })
    }

    pub fn is_down(&self) -> bool {
        self.down.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// The vault is unusable: returns how long to wait before the next probe.
    pub fn close(&self, reason: &str, retry_after: Option<Duration>, max: Duration) -> Duration {
        let mut g = self.down.lock().unwrap_or_else(|e| e.into_inner());
        let failures = g.as_ref().map_or(0, |d| d.failures) + 1;
        let max = max.max(FIRST_WAIT);
        let exp = FIRST_WAIT.saturating_mul(1u32 << (failures - 1).min(16)).min(max);
        let wait = exp.mul_f64(rand::thread_rng().gen_range(0.5..1.5)).max(retry_after.unwrap_or_default().min(max));
        if g.is_none() {
            tracing::warn!(error = %reason, "sync: the vault is unusable; pausing sync for the whole vault, probing before resuming");
        }
        let since = g.as_ref().map_or_else(std::time::Instant::now, |d| d.since);
        *g = Some(Down { reason: reason.to_string(), failures, since, next_at: outbox::at(wait) });
        wait
    }

    /// The vault served a key again.
    pub fn open(&self) {
        if let Some(d) = self.down.lock().unwrap_or_else(|e| e.into_inner()).take() {
            tracing::info!(down_secs = d.since.elapsed().as_secs(), probes = d.failures, "sync: the vault is back; resuming");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_honour_retry_after() {
        let g = Gate::default();
        let max = Duration::from_secs(16);
        let waits: Vec<Duration> = (0..10).map(|_| g.close("down", None, max)).collect();
        assert!(waits[0] >= Duration::from_millis(250) && waits[0] <= Duration::from_millis(750), "{waits:?}");
        assert!(waits[3] >= Duration::from_secs(2) && waits[3] <= Duration::from_secs(6), "{waits:?}");
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(24)), "{waits:?}");
        assert_eq!(g.status().unwrap().failures, 10);
        assert!(g.close("limited", Some(Duration::from_secs(12)), max) >= Duration::from_secs(12));
        g.open();
        assert!(!g.is_down() && g.status().is_none());
        assert!(g.close("again", None, max) <= Duration::from_millis(750), "starts over");
    }
}
