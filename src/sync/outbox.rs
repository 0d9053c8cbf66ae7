//! Reading the outbox (`store::outbox` holds the rows): which rows are due, in order per key,
//! and when a failed row is tried again (exponential backoff with jitter).

use crate::clock::Timestamp;
use rand::Rng;
use std::time::Duration;

use crate::store::outbox::{OutboxRow, OP_DELETE};

/// One key's pending rows, oldest first; `deleted` when a later row deletes the key (earlier
/// pushes are then moot: the token objects are gone).
pub struct KeyRows {
    pub key_id: String,
    pub rows: Vec<OutboxRow>,
}

impl KeyRows {
    pub fn deleted_after(&self, seq: i64) -> bool {
        self.rows.iter().any(|r| r.seq > seq && r.op == OP_DELETE)
    }
}

/// Groups rows by key, keys ordered by their oldest row.
pub fn by_key(rows: Vec<OutboxRow>) -> Vec<KeyRows> {
    let mut out: Vec<KeyRows> = Vec::new();
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for r in rows {
        match at.get(&r.key_id) {
            Some(&i) => out[i].rows.push(r),
            None => {
                at.insert(r.key_id.clone(), out.len());
                out.push(KeyRows { key_id: r.key_id.clone(), rows: vec![r] });
            }
        }
    }
    out
}

/// Whether `row` may be tried now. A forced pass (`sync now`) tries everything, permanent
/// failures included (the operator may have fixed the policy).
pub fn due(row: &OutboxRow, now: Timestamp, force: bool) -> bool {
    force || (!row.permanent && row.next_attempt_at.is_none_or(|t| t <= now))
}

/// Delay before attempt `attempts + 1`: base·2^attempts capped at `max`, times 0.5–1.5 (so
/// hosts that failed together do not retry together); at least a vault's Retry-After, which
/// counts only up to `max` (the remote does not get to park keyport longer than the interval).
/// At least one second: a zero `base` must not make a hot loop.
pub fn backoff(attempts: i64, base: Duration, max: Duration, retry_after: Option<Duration>) -> Duration {
    let floor = Duration::from_secs(1);
    let max = max.max(floor);
    let exp = base.max(floor).saturating_mul(1u32 << attempts.clamp(0, 16) as u32).min(max);
    let jittered = exp.mul_f64(rand::thread_rng().gen_range(0.5..1.5));
    // Retry-After: 0 means "soon", which the jitter already gives.
    retry_after.map_or(jittered, |a| jittered.max(a.min(max)))
}

/// How long a row that is not due yet still waits (`None` for a permanent failure, which waits
/// for `sync now`): a pass must wake up then even when nothing failed in it.
pub fn waits(row: &OutboxRow) -> Option<Duration> {
    row.next_attempt_at.filter(|_| !row.permanent).map(Timestamp::until)
}

/// The farthest ahead [`at`] looks: any bigger offset is a remote's nonsense.
pub const FAR: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Now + `d` (at most [`FAR`] ahead): never panics, whatever number a remote sent.
pub fn at(d: Duration) -> Timestamp {
    Timestamp::now().plus(d.min(FAR))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, key: &str, op: &str) -> OutboxRow {
        OutboxRow {
            seq,
            key_id: key.into(),
            namespace: "default".into(),
            name: key.into(),
            op: op.into(),
            cert_sha256: None,
            created_at: Timestamp::now(),
            attempts: 0,
            last_error: None,
            permanent: false,
            next_attempt_at: None,
        }
    }

    #[test]
    fn rows_group_by_key_in_order() {
        let g = by_key(vec![row(1, "a", "key"), row(2, "b", "key"), row(3, "a", "certificate"), row(4, "a", "delete")]);
        assert_eq!(g.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(g[0].rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 3, 4]);
        assert!(g[0].deleted_after(1) && !g[0].deleted_after(4) && !g[1].deleted_after(2));
    }

    #[test]
    fn due_and_backoff() {
        let mut r = row(1, "a", "key");
        let (y2030, y2031): (Timestamp, Timestamp) = ("2030-01-01".parse().unwrap(), "2031-01-01".parse().unwrap());
        assert!(due(&r, y2030, false));
        r.next_attempt_at = Some(y2031);
        assert!(!due(&r, y2030, false) && due(&r, y2030, true));
        r.next_attempt_at = None;
        r.permanent = true;
        assert!(!due(&r, y2030, false) && due(&r, y2030, true));
        let (base, max) = (Duration::from_secs(5), Duration::from_secs(300));
        for _ in 0..50 {
            let d = backoff(0, base, max, None);
            assert!(d >= Duration::from_millis(2500) && d <= Duration::from_millis(7500), "{d:?}");
            assert!(backoff(30, base, max, None) <= Duration::from_secs(450));
            assert!(backoff(0, base, max, Some(Duration::from_secs(60))) >= Duration::from_secs(60));
        }
        // A zero base still waits; a huge Retry-After counts only up to `max`.
        assert!(backoff(0, Duration::ZERO, max, None) >= Duration::from_millis(500));
        assert!(backoff(3, base, max, Some(Duration::from_secs(u64::MAX))) <= Duration::from_secs(450));
        let d = at(Duration::from_secs(30)).until();
        assert!(d > Duration::from_secs(28) && d <= Duration::from_secs(30), "{d:?}");
        assert_eq!(at(Duration::from_secs(60)).age(), Duration::ZERO);
    }

    #[test]
    fn at_never_panics() {
        let far = at(Duration::MAX).until();
        assert!(far > Duration::from_secs(99 * 365 * 86_400) && far <= FAR, "{far:?}");
        assert!(at(Duration::from_secs(u64::MAX)) > Timestamp::now());
    }
}
