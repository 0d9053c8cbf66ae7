//! Secrets keyport must keep outside the token (the DEK's X25519 private key) are sealed at
//! rest with AES-256-GCM under a non-extractable AES key that never leaves the token. The
//! store holds only `iv ‖ ciphertext ‖ tag`; the clear secret exists only in zeroized memory.

use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use zeroize::Zeroizing;

use super::index::Kind;
use super::{Ctx, TokenError};

const IV_LEN: usize = 12;
const TAG_BITS: u64 = 128;

/// The AES-256 key with CKA_ID `id`, generated in the token on first use.
fn key(c: &Ctx, id: &[u8], label: &str) -> Result<ObjectHandle, TokenError> {
    if let Some(h) = c.live.index.read().expect("poisoned").get(id).and_then(|s| s.secret) {
        return Ok(h);
    }
    let h = c.ck(
        "C_GenerateKey",
        c.session.generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Id(id.to_vec()),
                Attribute::Label(label.as_bytes().to_vec()),
            ],
        ),
    )?;
    c.live.index.write().expect("poisoned").insert(id, label, Kind::Secret, h);
    Ok(h)
}

/// Seals `plaintext` under the token key `id`; `aad` binds the blob to its purpose.
pub fn seal(c: &Ctx, id: &[u8], label: &str, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, TokenError> {
    let k = key(c, id, label)?;
    let mut iv = [0u8; IV_LEN];
    c.ck("C_GenerateRandom", c.session.generate_random_slice(&mut iv))?;
    let mut iv_param = iv;
    let params = GcmParams::new(&mut iv_param, aad, TAG_BITS.into()).map_err(|e| TokenError::from_ck(c.token, "GCM parameters", e))?;
    let ct = c.ck("C_Encrypt", c.session.encrypt(&Mechanism::AesGcm(params), k, plaintext))?;
    Ok([&iv[..], &ct].concat())
}

/// Opens a blob made by [`seal`]. A blob that was altered, or sealed under another token's
/// key, fails the GCM tag check.
pub fn open(c: &Ctx, id: &[u8], blob: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, TokenError> {
    let k = c.live.index.read().expect("poisoned").get(id).and_then(|s| s.secret);
    let k =
        k.ok_or_else(|| TokenError::NotFound { token: c.token.into(), what: format!("at-rest key {}", String::from_utf8_lossy(id)) })?;
    if blob.len() < IV_LEN + 16 {
        return Err(TokenError::Refused { token: c.token.into(), operation: "opening a sealed secret", detail: "blob too short".into() });
    }
    let mut iv = [0u8; IV_LEN];
    iv.copy_from_slice(&blob[..IV_LEN]);
    let params = GcmParams::new(&mut iv, aad, TAG_BITS.into()).map_err(|e| TokenError::from_ck(c.token, "GCM parameters", e))?;
    Ok(Zeroizing::new(c.ck("C_Decrypt", c.session.decrypt(&Mechanism::AesGcm(params), k, &blob[IV_LEN..]))?))
}
