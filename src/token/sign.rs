//! Signing with a key pair's private half, in the token (C_Sign), for `core::sign`: the key
//! never leaves, so non-extractable keys sign like any other.

use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;

use super::{objects, Ctx, TokenError};
use crate::material::spki::PublicKey;

/// The hash of a signature (for RSA the token hashes the message itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

/// What C_Sign computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignMechanism {
    /// RSASSA-PKCS1-v1_5 over the message (CKM_SHAx_RSA_PKCS).
    RsaPkcs1(HashAlg),
    /// ECDSA over a digest the caller computed (CKM_ECDSA, which every token has): raw r‖s,
    /// each the curve's size.
    EcdsaDigest,
    /// Pure Ed25519 over the message (CKM_EDDSA): 64 bytes.
    Ed25519,
}

/// Signs `data` with the private key `id`.
pub fn sign(c: &Ctx, id: &[u8], mech: SignMechanism, data: &[u8]) -> Result<Vec<u8>, TokenError> {
    let h = c.live.index.read().expect("poisoned").get(id).and_then(|s| s.private);
    let h = h.ok_or_else(|| TokenError::NotFound { token: c.token.into(), what: format!("private key {}", hex::encode(id)) })?;
    let m = match mech {
        SignMechanism::RsaPkcs1(HashAlg::Sha1) => Mechanism::Sha1RsaPkcs,
        SignMechanism::RsaPkcs1(HashAlg::Sha256) => Mechanism::Sha256RsaPkcs,
        SignMechanism::RsaPkcs1(HashAlg::Sha384) => Mechanism::Sha384RsaPkcs,
        SignMechanism::RsaPkcs1(HashAlg::Sha512) => Mechanism::Sha512RsaPkcs,
        SignMechanism::EcdsaDigest => Mechanism::Ecdsa,
        SignMechanism::Ed25519 => Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
    };
    c.ck("C_Sign", c.session.sign(&m, h, data))
}

/// For each CKA_ID: its public key when the token holds both halves of the pair (a key that
/// can sign), else `None`. One call per listing, so an agent's key list costs one trip.
pub fn signing_public_keys(c: &Ctx, ids: &[Vec<u8>]) -> Result<Vec<Option<PublicKey>>, TokenError> {
    let handles: Vec<_> = {
        let idx = c.live.index.read().expect("poisoned");
        ids.iter().map(|id| idx.get(id).filter(|s| s.private.is_some()).and_then(|s| s.public)).collect()
    };
    let mut out = Vec::with_capacity(ids.len());
    for h in handles {
        out.push(match h {
            None => None,
            Some(h) => match objects::read_public(c, h) {
                Ok(pk) => Some(pk),
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    tracing::warn!(token = %c.token, error = %e, "a public key object could not be read; its key is not offered for signing");
                    None
                }
            },
        });
    }
    Ok(out)
}
