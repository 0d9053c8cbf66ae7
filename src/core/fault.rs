//! Which errors are the caller's and which are the daemon's, decided once for every face: a
//! fault of the token or the store that may pass is answered 503 with `Retry-After` in each
//! face's shape (and wakes the health probe); one that will not pass is 500; the rest are the
//! request's own (4xx).

use super::CoreError;
use crate::store::StoreError;
use crate::token::TokenError;

/// Seconds a caller should wait after a 503: the health probe's cadence, by when a fault that
/// passed has been noticed and the token or store recovered.
pub const RETRY_AFTER_SECS: u64 = super::probe::EVERY.as_secs();

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request is wrong, refused or unknown: 4xx.
    Request,
    /// The token or store cannot serve now but may soon: 503 + Retry-After.
    Unavailable,
    /// A bug or a damaged store: 500.
    Internal,
}

impl CoreError {
    pub fn fault(&self) -> Fault {
        match self {
            CoreError::Token(TokenError::Transient { .. } | TokenError::Config { .. }) => Fault::Unavailable,
            CoreError::Token(TokenError::Refused { .. } | TokenError::NotFound { .. }) => Fault::Request,
            CoreError::Store(StoreError::NameTaken { .. }) => Fault::Request,
            CoreError::Store(e) if e.is_unavailable() => Fault::Unavailable,
            CoreError::Store(_) => Fault::Internal,
            _ => Fault::Request,
        }
    }

    /// True for an infrastructure fault that may pass; also asks the health probe to look now,
    /// so `GET health` shows the fault without waiting for the next round.
    pub fn is_unavailable(&self) -> bool {
        let yes = self.fault() == Fault::Unavailable;
        if yes {
            super::probe::request_failed();
        }
        yes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Cure;

    fn sqlite(code: std::ffi::c_int) -> CoreError {
        CoreError::Store(StoreError::Sqlite(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)))
    }

    #[test]
    fn faults_by_kind() {
        let t = |e| CoreError::Token(e);
        assert_eq!(t(TokenError::Transient { token: "t".into(), detail: "d".into(), cure: Cure::Reopen }).fault(), Fault::Unavailable);
        assert_eq!(
            t(TokenError::Refused { token: "t".into(), operation: "o", detail: "CKR_MECHANISM_INVALID".into() }).fault(),
            Fault::Request
        );
        assert_eq!(sqlite(rusqlite::ffi::SQLITE_FULL).fault(), Fault::Unavailable);
        assert_eq!(sqlite(rusqlite::ffi::SQLITE_READONLY).fault(), Fault::Unavailable);
        assert_eq!(sqlite(rusqlite::ffi::SQLITE_BUSY).fault(), Fault::Unavailable);
        assert_eq!(sqlite(rusqlite::ffi::SQLITE_IOERR).fault(), Fault::Unavailable);
        assert_eq!(sqlite(rusqlite::ffi::SQLITE_CORRUPT).fault(), Fault::Internal);
        assert_eq!(sqlite(rusqlite::ffi::SQLITE_CONSTRAINT).fault(), Fault::Internal);
        assert_eq!(CoreError::Store(StoreError::NameTaken { namespace: "n".into(), name: "k".into() }).fault(), Fault::Request);
        assert_eq!(CoreError::invalid("x", "y").fault(), Fault::Request);
    }
}
