//! The token's part of a key's push, done ahead: while one key's requests are with the vault,
//! the next key is wrapped for the vault's wrapping key (its public key is not read: the push
//! finds the key's transit version by its fingerprint). A pass is one key at a time (one
//! writer per vault key name), and between two keys' requests the token work was most of
//! keyport's time over a plain client (BENCHMARKS.md, "Issue 17's rows again on an idle
//! machine"); overlapping it changes nothing the vault sees.
//!
//! A prefetch has no effect anywhere: the wrap is made with session objects that are destroyed,
//! and its ciphertext is only for the wrapping key it names. Anything that goes wrong here is
//! dropped and the push does that step itself, with its own error handling.

use crate::core::App;
use crate::store::outbox::OutboxRow;
use crate::token::byok::{self, Wrapped};

use super::openbao::OpenBao;

/// A key's token work, done ahead of its push.
pub struct Prepared {
    pub key_id: String,
    /// The wrap, and the fingerprint of the wrapping key it was made for.
    pub wrapped: Option<(String, Wrapped)>,
}

impl Prepared {
    /// The wrap, if it was made for `fingerprint` (taken once: a retry wraps again).
    pub fn take_wrap(&mut self, fingerprint: &str) -> Option<Wrapped> {
        match self.wrapped.take() {
            Some((f, w)) if f == fingerprint => Some(w),
            _ => None,
        }
    }
}

/// Wraps `row`'s key for the wrapping key already fetched (no request to the vault). `None`
/// for a key the push would not wrap (gone, not exportable, not a key pair, on a token that
/// cannot wrap) or before the wrapping key was first fetched; `wrapped: None` when the token
/// failed (the push then wraps itself).
pub async fn prepare(app: &App, vault: &OpenBao, row: &OutboxRow) -> Option<Prepared> {
    let rec = app.store.key(&row.key_id).ok()??;
    // A pair of an algorithm keyport cannot name is refused by the push itself.
    if super::worker::not_syncable(app, &rec).is_some() || rec.algorithm.pair().is_none() {
        return None;
    }
    let wk = vault.wrapping_key_if_fetched()?;
    let token = crate::core::keys::token_of(app, &rec.token).ok()?;
    let (cka, spki) = (rec.cka_id.clone(), wk.spki_der.clone());
    let wrapped = token.run(move |c| byok::wrap_for_vault(c, &cka, &spki)).await.ok().map(|w| (wk.fingerprint, w));
    Some(Prepared { key_id: rec.id, wrapped })
}
