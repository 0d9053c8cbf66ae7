//! The token half of health: what a request needs, checked the way a request would use it.
//!
//! C_GetSessionInfo answers from memory and says nothing about storage. This reads the token's
//! own state (C_GetTokenInfo: SoftHSM re-reads its `token.object` and fails once it has marked
//! the token invalid after an I/O error), asks the device for random bytes (a TPM behind
//! tpm2-pkcs11 answers the reads from its own store even while the TPM is gone) and reads the
//! attributes of a known object (SoftHSM opens the object's file for every read). Any failure
//! is a token fault, never the caller's.

use cryptoki::object::{Attribute, AttributeType, ObjectHandle};

use super::{Ctx, Cure, TokenError};

/// Objects keyport keeps in its first token for the daemon's own use (the at-rest key of the
/// DEK, the TLS key): read first when present, as requests depend on them.
const KNOWN_IDS: [&[u8]; 2] = [b"keyport-at-rest", b"keyport-tls"];

fn fault(c: &Ctx, detail: String) -> TokenError {
    TokenError::Transient { token: c.token.into(), detail, cure: Cure::Reinitialize }
}

/// One known object of this token: a daemon object if there is one, else any indexed object.
fn known_object(c: &Ctx) -> Option<(Vec<u8>, ObjectHandle)> {
    let index = c.live.index.read().expect("poisoned");
    KNOWN_IDS
        .iter()
        .find_map(|id| index.get(id).and_then(|s| s.handles().next()).map(|h| (id.to_vec(), h)))
        .or_else(|| index.ids().find_map(|(id, s)| s.handles().next().map(|h| (id.clone(), h))))
}

/// Fails with a transient error (cure: re-initialize) when the token cannot serve requests.
pub fn check(c: &Ctx) -> Result<(), TokenError> {
    let info = c
        .live
        .module
        .ctx
        .get_token_info(c.live.slot)
        .map_err(|e| fault(c, format!("C_GetTokenInfo failed ({}): its storage cannot be read", short(&e))))?;
    if !info.token_initialized() {
        return Err(fault(c, "the token is no longer initialized".into()));
    }
    if info.serial_number() != c.live.serial {
        return Err(fault(
            c,
            format!("the token's serial changed from {} to {}: it is another token", c.live.serial, info.serial_number()),
        ));
    }
    // A TPM token answers the two reads below from its own store; its device is reached only
    // by an operation. C_GenerateRandom is the cheapest one that goes to the device (SoftHSM
    // answers it from memory).
    if info.rng() {
        let mut probe = [0u8; 8];
        c.session
            .generate_random_slice(&mut probe)
            .map_err(|e| fault(c, format!("C_GenerateRandom failed ({}): the device does not answer", short(&e))))?;
    }
    let Some((id, h)) = known_object(c) else { return Ok(()) };
    let attrs = c.session.get_attributes(h, &[AttributeType::Id]).map_err(|e| {
        fault(
            c,
            format!("reading object {} failed ({}): its storage cannot be read", String::from_utf8_lossy(&hex_or_text(&id)), short(&e)),
        )
    })?;
    match attrs.first() {
        Some(Attribute::Id(read)) if *read == id => Ok(()),
        _ => Err(fault(c, format!("object {} no longer has its CKA_ID", String::from_utf8_lossy(&hex_or_text(&id))))),
    }
}

fn short(e: &cryptoki::error::Error) -> String {
    match e {
        cryptoki::error::Error::Pkcs11(rv, _) => super::error::short_rv(*rv),
        other => other.to_string(),
    }
}

/// Ids keyport chose as text stay text; random ones are shown as hex.
fn hex_or_text(id: &[u8]) -> Vec<u8> {
    if id.iter().all(|b| b.is_ascii_graphic()) {
        id.to_vec()
    } else {
        hex::encode(id).into_bytes()
    }
}
