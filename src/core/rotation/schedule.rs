//! When a keyset is due for an automatic rotation: the policy's interval (from the last
//! rotation, or the keyset's creation) or maximum age (of the active version), whichever comes
//! first, plus a jitter fixed per keyset (a hash of its id, so a fleet spreads out and a
//! restart does not move the date), moved to the next start of the window. Pure functions of
//! Unix seconds; the runner sleeps on tokio's clock until the earliest one.

use sha2::{Digest, Sha256};

use crate::config::{RotationPolicy, Window, DAYS};

/// Unix seconds on the runner's clock: the wall clock when first asked, then advanced by
/// tokio's monotonic clock, so a schedule is immune to wall-clock jumps and tests drive it with
/// a paused tokio clock (`tokio::time::advance`), never with sleeps.
pub fn now() -> i64 {
    static BASE: std::sync::OnceLock<(i64, tokio::time::Instant)> = std::sync::OnceLock::new();
    let (wall, at) = BASE.get_or_init(|| (crate::clock::Timestamp::now().unix(), tokio::time::Instant::now()));
    wall + tokio::time::Instant::now().saturating_duration_since(*at).as_secs() as i64
}

/// Sleeps on tokio's clock until [`now`] reaches `due` (the runner's wait, at most `cap`).
pub async fn sleep_until(due: i64, cap: std::time::Duration) {
    let left = std::time::Duration::from_secs(due.saturating_sub(now()).max(0) as u64);
    tokio::time::sleep(left.min(cap)).await;
}

/// This keyset's share of the jitter: 0..=jitter, the same on every call.
pub fn jitter(keyset_id: &str, jitter_secs: u64) -> i64 {
    if jitter_secs == 0 {
        return 0;
    }
    let h = Sha256::digest(keyset_id.as_bytes());
    (u64::from_be_bytes(h[..8].try_into().expect("8 bytes")) % (jitter_secs + 1)) as i64
}

/// When the keyset is next due, or `None` when the policy schedules nothing.
pub fn next_due(p: &RotationPolicy, keyset_id: &str, last_rotation: i64, active_since: i64) -> Option<i64> {
    let by_interval = p.interval_secs.map(|i| last_rotation + i as i64);
    let by_age = p.max_age_secs.map(|a| active_since + a as i64);
    let due = match (by_interval, by_age) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    } + jitter(keyset_id, p.jitter_secs);
    Some(match &p.window {
        Some(w) => next_in_window(w, due),
        None => due,
    })
}

/// Whether `t` lies in the window (UTC).
pub fn in_window(w: &Window, t: i64) -> bool {
    let Ok(dt) = time::OffsetDateTime::from_unix_timestamp(t) else { return false };
    let day = DAYS[dt.weekday().number_days_from_monday() as usize];
    let day_ok = w.days.is_empty() || w.days.iter().any(|d| d.eq_ignore_ascii_case(day));
    let h = dt.hour();
    let hour_ok = if w.start_hour < w.end_hour { h >= w.start_hour && h < w.end_hour } else { h >= w.start_hour || h < w.end_hour };
    day_ok && hour_ok
}

/// The first second at or after `t` inside the window (`t` itself when it is inside); a window
/// that never opens (checked by `config check`) leaves `t`.
pub fn next_in_window(w: &Window, t: i64) -> i64 {
    if in_window(w, t) {
        return t;
    }
    // Whole hours from the start of t's hour, for eight days.
    let hour = t - t.rem_euclid(3600);
    (1..=8 * 24).map(|i| hour + i * 3600).find(|&c| in_window(w, c)).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RotationConfig;

    /// A keyset due in an hour (plus its jitter): the waiter is still asleep a second before,
    /// awake a second after, on tokio's paused clock.
    #[tokio::test(start_paused = true)]
    async fn the_runner_wakes_when_a_keyset_is_due() {
        let p = policy("interval_secs = 3600\njitter_secs = 120");
        let t0 = now();
        let due = next_due(&p, "keyset-b", t0, t0).unwrap();
        assert!((t0 + 3600..=t0 + 3720).contains(&due));
        let waiter = tokio::spawn(sleep_until(due, std::time::Duration::from_secs(86400)));
        tokio::task::yield_now().await;
        tokio::time::advance(std::time::Duration::from_secs((due - t0 - 1) as u64)).await;
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "woke before the keyset was due");
        assert_eq!(now(), due - 1);
        tokio::time::advance(std::time::Duration::from_secs(2)).await;
        tokio::task::yield_now().await;
        waiter.await.unwrap();
        assert!(now() > due);
        // The runner's cap: it looks again after at most a minute even when nothing is due.
        let t1 = now();
        let capped = tokio::spawn(sleep_until(t1 + 86400, std::time::Duration::from_secs(60)));
        tokio::task::yield_now().await;
        tokio::time::advance(std::time::Duration::from_secs(59)).await;
        tokio::task::yield_now().await;
        assert!(!capped.is_finished());
        tokio::time::advance(std::time::Duration::from_secs(2)).await;
        tokio::task::yield_now().await;
        assert!(capped.is_finished());
    }

    fn policy(toml: &str) -> RotationPolicy {
        let c: RotationConfig = toml::from_str(&format!("[namespaces.default]\n{toml}")).unwrap();
        c.policy("default", "k")
    }

    // 2026-12-07 is a Monday; 00:00 UTC.
    const MONDAY: i64 = 1_796_601_600;

    #[test]
    fn interval_max_age_jitter_and_window() {
        assert_eq!(time::OffsetDateTime::from_unix_timestamp(MONDAY).unwrap().weekday(), time::Weekday::Monday);
        assert_eq!(next_due(&policy(""), "k", MONDAY, MONDAY), None, "no schedule by default");
        assert_eq!(next_due(&policy("interval_secs = 3600"), "k", MONDAY, MONDAY), Some(MONDAY + 3600));
        assert_eq!(next_due(&policy("interval_secs = 7200\nmax_age_secs = 3600"), "k", MONDAY, MONDAY - 600), Some(MONDAY + 3000));
        let j = policy("interval_secs = 3600\njitter_secs = 600");
        let a = next_due(&j, "keyset-a", MONDAY, MONDAY).unwrap();
        assert!((MONDAY + 3600..=MONDAY + 4200).contains(&a));
        assert_eq!(next_due(&j, "keyset-a", MONDAY, MONDAY), Some(a), "the jitter is fixed per keyset");
        let spread: std::collections::HashSet<i64> = (0..50).map(|i| next_due(&j, &format!("k{i}"), MONDAY, MONDAY).unwrap()).collect();
        assert!(spread.len() > 40, "50 keysets should spread out: {}", spread.len());
        // Due Monday 01:00; the window is weekends 02-05 → Saturday 02:00.
        let w = policy("interval_secs = 3600\nwindow = { days = [\"sat\", \"sun\"], start_hour = 2, end_hour = 5 }");
        assert_eq!(next_due(&w, "k", MONDAY, MONDAY), Some(MONDAY + 5 * 86400 + 2 * 3600));
        // A window that wraps midnight: 22-02; due 23:30 is inside.
        let wrap = Window { days: vec![], start_hour: 22, end_hour: 2 };
        assert!(in_window(&wrap, MONDAY + 23 * 3600 + 1800) && in_window(&wrap, MONDAY + 3600) && !in_window(&wrap, MONDAY + 12 * 3600));
    }
}
