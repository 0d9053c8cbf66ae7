//! The TPP face's integer `KeyId`s (TPP names SSH keys by int64, keyport by string ids: one row
//! per keyport key, numbered on first sight and never reused) and its OAuth sessions (by the
//! SHA-256 of their tokens; the tokens themselves are never stored).

use rusqlite::{params, OptionalExtension, Row};

use super::{Store, StoreError};

impl Store {
    /// The TPP KeyId of keyport key `key_id`, assigned now if it has none.
    pub fn tpp_key_id(&self, key_id: &str) -> Result<i64, StoreError> {
        let conn = self.conn();
        conn.execute("INSERT OR IGNORE INTO tpp_keys(keyport_id) VALUES (?1)", [key_id])?;
        Ok(conn.query_row("SELECT key_id FROM tpp_keys WHERE keyport_id=?1", [key_id], |r| r.get(0))?)
    }

    /// The keyport key id behind a TPP KeyId.
    pub fn tpp_keyport_id(&self, tpp_key_id: i64) -> Result<Option<String>, StoreError> {
        Ok(self.conn().query_row("SELECT keyport_id FROM tpp_keys WHERE key_id=?1", [tpp_key_id], |r| r.get(0)).optional()?)
    }

    /// Stores a session, and drops the ones whose refresh token has run out.
    pub fn tpp_session_put(&self, s: &TppSession, now: u64) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM tpp_sessions WHERE refresh_until <= ?1", [now as i64])?;
        s.insert(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// The session of an access token (by its hash).
    pub fn tpp_session(&self, access_sha256: &[u8; 32]) -> Result<Option<TppSession>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                &format!("SELECT {} FROM tpp_sessions WHERE access_sha256=?1", TppSession::COLUMNS),
                [access_sha256.as_slice()],
                TppSession::from_row,
            )
            .optional()?)
    }

    /// The session of a refresh token issued to `client_id` (by its hash), left in place.
    pub fn tpp_session_by_refresh(&self, refresh_sha256: &[u8; 32], client_id: &str) -> Result<Option<TppSession>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                &format!("SELECT {} FROM tpp_sessions WHERE refresh_sha256=?1 AND client_id=?2", TppSession::COLUMNS),
                params![refresh_sha256.as_slice(), client_id],
                TppSession::from_row,
            )
            .optional()?)
    }

    /// Replaces the session of refresh token `old_refresh_sha256` (issued to `client_id`) by
    /// `new` in one transaction, and drops the sessions whose refresh token has run out. A
    /// refresh token is used once: of two rotations of the same token only the one whose DELETE
    /// removed the row stores its session; the other gets `None` and changes nothing. A failure
    /// changes nothing either, so the client keeps its old tokens. Returns the old session.
    pub fn tpp_session_rotate(
        &self,
        old_refresh_sha256: &[u8; 32],
        client_id: &str,
        new: &TppSession,
        now: u64,
    ) -> Result<Option<TppSession>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let Some(old) = tx
            .query_row(
                &format!("SELECT {} FROM tpp_sessions WHERE refresh_sha256=?1 AND client_id=?2", TppSession::COLUMNS),
                params![old_refresh_sha256.as_slice(), client_id],
                TppSession::from_row,
            )
            .optional()?
        else {
            return Ok(None);
        };
        let n = tx.execute(
            "DELETE FROM tpp_sessions WHERE refresh_sha256=?1 AND client_id=?2",
            params![old_refresh_sha256.as_slice(), client_id],
        )?;
        if n != 1 {
            return Ok(None); // dropping `tx` rolls back
        }
        tx.execute("DELETE FROM tpp_sessions WHERE refresh_until <= ?1", [now as i64])?;
        new.insert(&tx)?;
        tx.commit()?;
        Ok(Some(old))
    }

    pub fn tpp_session_delete(&self, access_sha256: &[u8; 32]) -> Result<(), StoreError> {
        self.conn().execute("DELETE FROM tpp_sessions WHERE access_sha256=?1", [access_sha256.as_slice()])?;
        Ok(())
    }
}

/// One OAuth grant of the TPP face; times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TppSession {
    pub access_sha256: [u8; 32],
    pub refresh_sha256: [u8; 32],
    pub username: String,
    pub principal: String,
    /// Hex SHA-256 of the user's configured `password_hash` (PHC string) when the session was granted.
    pub credential: String,
    pub client_id: String,
    pub scope: String,
    pub granted: u64,
    pub issued: u64,
    pub expires: u64,
    pub refresh_until: u64,
}

impl TppSession {
    const COLUMNS: &'static str =
        "access_sha256, refresh_sha256, username, principal, credential, client_id, scope, granted, issued, expires, refresh_until";

    fn insert(&self, conn: &rusqlite::Connection) -> Result<(), StoreError> {
        conn.execute(
            &format!("INSERT INTO tpp_sessions({}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)", TppSession::COLUMNS),
            params![
                self.access_sha256.as_slice(),
                self.refresh_sha256.as_slice(),
                self.username,
                self.principal,
                self.credential,
                self.client_id,
                self.scope,
                self.granted as i64,
                self.issued as i64,
                self.expires as i64,
                self.refresh_until as i64
            ],
        )?;
        Ok(())
    }

    fn from_row(r: &Row) -> rusqlite::Result<TppSession> {
        let hash = |i: usize| -> rusqlite::Result<[u8; 32]> {
            let v: Vec<u8> = r.get(i)?;
            v.try_into().map_err(|_| rusqlite::Error::InvalidColumnType(i, "sha256".into(), rusqlite::types::Type::Blob))
        };
        Ok(TppSession {
            access_sha256: hash(0)?,
            refresh_sha256: hash(1)?,
            username: r.get(2)?,
            principal: r.get(3)?,
            credential: r.get(4)?,
            client_id: r.get(5)?,
            scope: r.get(6)?,
            granted: r.get::<_, i64>(7)? as u64,
            issued: r.get::<_, i64>(8)? as u64,
            expires: r.get::<_, i64>(9)? as u64,
            refresh_until: r.get::<_, i64>(10)? as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(access: u8, refresh: u8) -> TppSession {
        TppSession {
            access_sha256: [access; 32],
            refresh_sha256: [refresh; 32],
            username: "alice".into(),
            principal: "ops".into(),
            credential: "c0".repeat(32),
            client_id: "c".into(),
            scope: "ssh:manage".into(),
            granted: 100,
            issued: 100,
            expires: 200,
            refresh_until: 1000,
        }
    }

    #[test]
    fn sessions_survive_reopening_and_expired_ones_are_dropped() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("k.db");
        let s = session(1, 2);
        Store::open(&path).unwrap().tpp_session_put(&s, 100).unwrap();
        let store = Store::open(&path).unwrap();
        assert_eq!(store.tpp_session(&[1; 32]).unwrap().as_ref(), Some(&s), "a restart keeps the session");
        assert!(store.tpp_session_by_refresh(&[2; 32], "other").unwrap().is_none(), "bound to its client");
        assert_eq!(store.tpp_session_by_refresh(&[2; 32], "c").unwrap().as_ref(), Some(&s));
        let old = TppSession { refresh_until: 50, ..session(3, 4) };
        store.tpp_session_put(&old, 10).unwrap();
        store.tpp_session_put(&session(5, 6), 60).unwrap();
        assert!(store.tpp_session(&[3; 32]).unwrap().is_none(), "sessions past their refresh time are dropped");
        store.tpp_session_delete(&[5; 32]).unwrap();
        assert!(store.tpp_session(&[5; 32]).unwrap().is_none());
    }

    #[test]
    fn rotation_is_one_transaction_and_refresh_tokens_are_used_once() {
        let d = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(&d.path().join("k.db")).unwrap());
        let s = session(1, 2);
        store.tpp_session_put(&s, 100).unwrap();

        assert!(store.tpp_session_rotate(&[2; 32], "other", &session(3, 4), 100).unwrap().is_none(), "bound to its client");
        assert!(store.tpp_session(&[1; 32]).unwrap().is_some() && store.tpp_session(&[3; 32]).unwrap().is_none());

        // A rotation whose insert fails (here: the new access hash is taken) changes nothing:
        // the client keeps its old session and refresh token.
        store.tpp_session_put(&session(7, 8), 100).unwrap();
        assert!(store.tpp_session_rotate(&[2; 32], "c", &session(7, 9), 100).is_err());
        assert_eq!(store.tpp_session(&[1; 32]).unwrap().as_ref(), Some(&s), "the old session survives a failed rotation");
        assert!(store.tpp_session_by_refresh(&[9; 32], "c").unwrap().is_none());

        assert_eq!(store.tpp_session_rotate(&[2; 32], "c", &session(3, 4), 100).unwrap(), Some(s.clone()));
        assert!(store.tpp_session(&[1; 32]).unwrap().is_none(), "the old access token is gone");
        assert_eq!(store.tpp_session(&[3; 32]).unwrap(), Some(session(3, 4)));
        assert!(store.tpp_session_rotate(&[2; 32], "c", &session(5, 6), 100).unwrap().is_none(), "used once");
        assert!(store.tpp_session(&[5; 32]).unwrap().is_none());

        // Concurrent rotations of one refresh token: exactly one wins.
        let threads: Vec<_> = (0..8u8)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || store.tpp_session_rotate(&[4; 32], "c", &session(100 + i, 200 + i), 100).unwrap())
            })
            .collect();
        let won = threads.into_iter().map(|t| t.join().unwrap()).filter(Option::is_some).count();
        assert_eq!(won, 1);
        let live = (0..8u8).filter(|i| store.tpp_session(&[100 + i; 32]).unwrap().is_some()).count();
        assert_eq!(live, 1, "only the winner's session is stored");
    }
}
