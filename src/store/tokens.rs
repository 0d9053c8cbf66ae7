//! Which token each configured name was when keyport last saw it: a token whose serial
//! changed is a different token (wiped and re-initialized, or replaced), and a token the store
//! has seen is never silently re-created.

use rusqlite::{params, OptionalExtension};

use super::{Store, StoreError};

/// A configured token's label and serial as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIdentity {
    pub label: String,
    pub serial: String,
    pub first_seen: String,
}

impl Store {
    pub fn token_identity(&self, token: &str) -> Result<Option<TokenIdentity>, StoreError> {
        Ok(self
            .conn()
            .query_row("SELECT label, serial, first_seen FROM token_identity WHERE token=?1", [token], |r| {
                Ok(TokenIdentity { label: r.get(0)?, serial: r.get(1)?, first_seen: r.get(2)? })
            })
            .optional()?)
    }

    /// Records (or replaces) what `token` is now.
    pub fn record_token_identity(&self, token: &str, label: &str, serial: &str) -> Result<(), StoreError> {
        let now = super::records::now();
        self.conn().execute(
            "INSERT INTO token_identity(token, label, serial, first_seen, last_seen) VALUES (?1,?2,?3,?4,?4)
             ON CONFLICT(token) DO UPDATE SET label=excluded.label, serial=excluded.serial, last_seen=excluded.last_seen,
               first_seen=CASE WHEN token_identity.serial=excluded.serial THEN token_identity.first_seen ELSE excluded.first_seen END",
            params![token, label, serial, now],
        )?;
        Ok(())
    }

    /// Whether keyport ever held anything in `token`: a recorded identity, or rows from before
    /// identities were recorded. Such a token is never created by keyport.
    pub fn has_seen_token(&self, token: &str) -> Result<bool, StoreError> {
        Ok(self.conn().query_row(
            "SELECT EXISTS(SELECT 1 FROM token_identity WHERE token=?1) OR EXISTS(SELECT 1 FROM keys WHERE token=?1)
                 OR EXISTS(SELECT 1 FROM dek WHERE token=?1)",
            [token],
            |r| r.get(0),
        )?)
    }
}
