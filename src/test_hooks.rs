//! Failure and timing hooks the integration tests use to stop keyport at an exact point
//! (a SIGKILL between the token write and the commit, a rollback after the second of three
//! objects). They exist only in builds with the `test-hooks` feature, which the test build
//! turns on (`[dev-dependencies]` names keyport itself with it); a release build has none and
//! ignores the variables.

use std::time::Duration;

#[cfg(feature = "test-hooks")]
fn millis(var: &str) -> Duration {
    Duration::from_millis(std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// `KEYPORT_TEST_PAUSE_BEFORE_COMMIT_MS`: pause between the token write and the store commit.
pub fn pause_before_commit() -> Duration {
    #[cfg(feature = "test-hooks")]
    return millis("KEYPORT_TEST_PAUSE_BEFORE_COMMIT_MS");
    #[cfg(not(feature = "test-hooks"))]
    Duration::ZERO
}

/// `KEYPORT_TEST_PAUSE_HEALTH_PROBE_MS`: pause at the start of a token's health probe, so a
/// `GET health` is a slow read a test can hang up on or let time out.
pub fn pause_health_probe() -> Duration {
    #[cfg(feature = "test-hooks")]
    return millis("KEYPORT_TEST_PAUSE_HEALTH_PROBE_MS");
    #[cfg(not(feature = "test-hooks"))]
    Duration::ZERO
}

/// `KEYPORT_TEST_PAUSE_AFTER_REMOTE_POST_MS`: pause after a TLS Protect Cloud job was posted
/// and recorded.
pub fn pause_after_remote_post() -> Duration {
    #[cfg(feature = "test-hooks")]
    return millis("KEYPORT_TEST_PAUSE_AFTER_REMOTE_POST_MS");
    #[cfg(not(feature = "test-hooks"))]
    Duration::ZERO
}

/// `KEYPORT_TEST_PAUSE_KEYSET_DELETE_MS`: pause after a keyset delete was recorded (its
/// version keys' delete intents), before the first token object goes.
pub fn pause_keyset_delete() -> Duration {
    #[cfg(feature = "test-hooks")]
    return millis("KEYPORT_TEST_PAUSE_KEYSET_DELETE_MS");
    #[cfg(not(feature = "test-hooks"))]
    Duration::ZERO
}

/// `KEYPORT_TEST_FAIL_CREATE_SUFFIX`: the creation of a key whose inventory name ends with
/// this fails after its objects were made (so its rollback can be watched).
pub fn fail_create(name: &str) -> bool {
    #[cfg(feature = "test-hooks")]
    return std::env::var("KEYPORT_TEST_FAIL_CREATE_SUFFIX").is_ok_and(|s| !s.is_empty() && name.ends_with(&s));
    #[cfg(not(feature = "test-hooks"))]
    {
        let _ = name;
        false
    }
}
