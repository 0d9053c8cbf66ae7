//! The TPP face's integer `KeyId`s: TPP names SSH keys by int64, keyport by string ids. One row
//! per keyport key, numbered on first sight and never reused.

use rusqlite::OptionalExtension;

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
}
