//! The agent names a key by its SSH public key blob in every sign request; this cache maps a
//! blob to the usable key rows with that public key, so a signature costs no blob parsing,
//! SPKI hashing or store read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::super::{App, CoreError};
use crate::store::KeyRecord;

/// SSH public key blob → the usable keys with that public key, as of one
/// `Store::keys_generation`: the agent names a key by its blob in every sign request, and
/// without this each one parsed the blob, hashed its SPKI and read the store. Any change to the
/// inventory empties it. Bounded: blobs up to 2 KiB (RSA-4096's is 535 bytes), 1,024 entries.
#[derive(Debug, Default)]
pub(super) struct KeyCache {
    map: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    /// The `Store::keys_generation` the entries were read at.
    generation: u64,
    by_blob: HashMap<Vec<u8>, Arc<[KeyRecord]>>,
}

impl KeyCache {
    const MAX_BLOB: usize = 2048;
    const MAX_ENTRIES: usize = 1024;

    pub(super) fn lookup(&self, app: &App, blob: &[u8]) -> Result<Arc<[KeyRecord]>, CoreError> {
        // Read before the rows: a change after it makes this entry stale at once.
        let generation = app.store.keys_generation();
        {
            let m = self.map.lock().expect("poisoned");
            if m.generation == generation {
                if let Some(found) = m.by_blob.get(blob) {
                    return Ok(found.clone());
                }
            }
        }
        let pk = crate::material::ssh::parse_public_blob(blob)
            .map_err(|e| CoreError::invalid("invalid_key", format!("the request names a public key keyport cannot read: {e}")))?;
        let fp = pk.fingerprint().map_err(|e| CoreError::invalid("invalid_key", e.to_string()))?;
        let found: Arc<[KeyRecord]> = app.store.keys_by_fingerprint(&fp)?.into();
        if blob.len() <= Self::MAX_BLOB {
            let mut m = self.map.lock().expect("poisoned");
            if generation > m.generation || m.by_blob.len() >= Self::MAX_ENTRIES {
                m.by_blob.clear();
                m.generation = m.generation.max(generation);
            }
            if generation == m.generation {
                m.by_blob.insert(blob.to_vec(), found.clone());
            }
        }
        Ok(found)
    }
}
