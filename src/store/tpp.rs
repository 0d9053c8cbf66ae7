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
        tx.execute(
            &format!("INSERT INTO tpp_sessions({}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)", TppSession::COLUMNS),
            params![
                s.access_sha256.as_slice(),
                s.refresh_sha256.as_slice(),
                s.username,
                s.principal,
                s.client_id,
                s.scope,
                s.granted as i64,
                s.issued as i64,
                s.expires as i64,
                s.refresh_until as i64
            ],
        )?;
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

    /// Takes (removes and returns) the session of a refresh token issued to `client_id`: a
    /// refresh token is used once.
    pub fn tpp_session_take_refresh(&self, refresh_sha256: &[u8; 32], client_id: &str) -> Result<Option<TppSession>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let s = tx
            .query_row(
                &format!("SELECT {} FROM tpp_sessions WHERE refresh_sha256=?1 AND client_id=?2", TppSession::COLUMNS),
                params![refresh_sha256.as_slice(), client_id],
                TppSession::from_row,
            )
            .optional()?;
        if let Some(s) = &s {
            tx.execute("DELETE FROM tpp_sessions WHERE access_sha256=?1", [s.access_sha256.as_slice()])?;
        }
        tx.commit()?;
        Ok(s)
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
    pub client_id: String,
    pub scope: String,
    pub granted: u64,
    pub issued: u64,
    pub expires: u64,
    pub refresh_until: u64,
}

impl TppSession {
    const COLUMNS: &'static str =
        "access_sha256, refresh_sha256, username, principal, client_id, scope, granted, issued, expires, refresh_until";

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
            client_id: r.get(4)?,
            scope: r.get(5)?,
            granted: r.get::<_, i64>(6)? as u64,
            issued: r.get::<_, i64>(7)? as u64,
            expires: r.get::<_, i64>(8)? as u64,
            refresh_until: r.get::<_, i64>(9)? as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_survive_reopening_and_refresh_tokens_are_used_once() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("k.db");
        let s = TppSession {
            access_sha256: [1; 32],
            refresh_sha256: [2; 32],
            username: "alice".into(),
            principal: "ops".into(),
            client_id: "c".into(),
            scope: "ssh:manage".into(),
            granted: 100,
            issued: 100,
            expires: 200,
            refresh_until: 1000,
        };
        Store::open(&path).unwrap().tpp_session_put(&s, 100).unwrap();
        let store = Store::open(&path).unwrap();
        assert_eq!(store.tpp_session(&[1; 32]).unwrap().as_ref(), Some(&s), "a restart keeps the session");
        assert!(store.tpp_session_take_refresh(&[2; 32], "other").unwrap().is_none(), "bound to its client");
        assert_eq!(store.tpp_session_take_refresh(&[2; 32], "c").unwrap(), Some(s.clone()));
        assert!(store.tpp_session_take_refresh(&[2; 32], "c").unwrap().is_none(), "used once");
        let old = TppSession { access_sha256: [3; 32], refresh_sha256: [4; 32], refresh_until: 50, ..s.clone() };
        store.tpp_session_put(&old, 10).unwrap();
        store.tpp_session_put(&TppSession { access_sha256: [5; 32], refresh_sha256: [6; 32], ..s }, 60).unwrap();
        assert!(store.tpp_session(&[3; 32]).unwrap().is_none(), "sessions past their refresh time are dropped");
        store.tpp_session_delete(&[5; 32]).unwrap();
        assert!(store.tpp_session(&[5; 32]).unwrap().is_none());
    }
}
