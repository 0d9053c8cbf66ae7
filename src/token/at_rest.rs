//! Secrets keyport must keep outside the token (the DEK's X25519 private key) are sealed at
//! rest with AES-256-GCM under a non-extractable AES key that never leaves the token. The
//! store holds only `iv ‖ ciphertext ‖ tag`; the clear secret exists only in zeroized memory.
//!
//! Tokens that cannot make or use such a key (tpm2-pkcs11: no C_GenerateKey, no AES-GCM) seal
//! with an envelope instead ([`AtRestKind::RsaOaepEnvelope`]): the key under the same CKA_ID is
//! a non-extractable RSA-2048 pair; each blob gets a fresh AES-256 key, encrypted with RSA-OAEP
//! in the token, and AES-256-GCM runs in software. Which form a blob has follows from the
//! object under the id (a secret key, or a private key), so older blobs keep opening.

use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use zeroize::Zeroizing;

use super::index::Kind;
use super::{AtRestKind, Ctx, TokenError};
use crate::material::algorithm::Algorithm;

/// The envelope blob: `MAGIC ‖ hash (1 = SHA-1, 2 = SHA-256) ‖ u16 BE length ‖ RSA-OAEP(aes
/// key) ‖ iv ‖ AES-GCM ciphertext ‖ tag`.
const MAGIC: &[u8; 4] = b"KPE1";

const IV_LEN: usize = 12;
const TAG_BITS: u64 = 128;

/// Seals `plaintext` under the token key `id` (made on first use, in the form the token
/// offers); `aad` binds the blob to its purpose.
pub fn seal(c: &Ctx, id: &[u8], label: &str, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, TokenError> {
    let existing = c.live.index.read().expect("poisoned").get(id).map(|s| (s.secret, s.private, s.public));
    match existing {
        Some((Some(k), _, _)) => seal_gcm(c, k, plaintext, aad),
        Some((None, Some(_), Some(public))) => seal_envelope(c, public, plaintext, aad),
        _ => match c.live.capabilities.at_rest() {
            Some(AtRestKind::AesGcm) => {
                let k = key(c, id, label)?;
                seal_gcm(c, k, plaintext, aad)
            }
            Some(AtRestKind::RsaOaepEnvelope) => {
                super::objects::destroy(c, id)?;
                super::objects::generate_key_pair(c, Algorithm::Rsa2048, id, label, false)?;
                let public = c.live.index.read().expect("poisoned").get(id).and_then(|s| s.public);
                let public =
                    public.ok_or_else(|| TokenError::NotFound { token: c.token.into(), what: format!("public half of {label}") })?;
                seal_envelope(c, public, plaintext, aad)
            }
            None => Err(TokenError::Refused {
                token: c.token.into(),
                operation: "sealing a secret at rest",
                detail: "the token can neither generate an AES key for AES-GCM nor decrypt with RSA-OAEP".into(),
            }),
        },
    }
}

/// Opens a blob made by [`seal`]. A blob that was altered, or sealed under another token's
/// key, fails the GCM tag check.
pub fn open(c: &Ctx, id: &[u8], blob: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, TokenError> {
    let set = c.live.index.read().expect("poisoned").get(id).map(|s| (s.secret, s.private));
    match set {
        Some((Some(k), _)) => open_gcm(c, k, blob, aad),
        Some((None, Some(private))) => open_envelope(c, private, blob, aad),
        _ => Err(TokenError::NotFound { token: c.token.into(), what: format!("at-rest key {}", String::from_utf8_lossy(id)) }),
    }
}

/// The AES-256 key with CKA_ID `id`, generated in the token on first use.
fn key(c: &Ctx, id: &[u8], label: &str) -> Result<ObjectHandle, TokenError> {
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
    c.live.index.write().expect("poisoned").insert(id, Kind::Secret, h);
    Ok(h)
}

fn seal_gcm(c: &Ctx, k: ObjectHandle, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, TokenError> {
    let mut iv = [0u8; IV_LEN];
    c.ck("C_GenerateRandom", c.session.generate_random_slice(&mut iv))?;
    let mut iv_param = iv;
    let params = GcmParams::new(&mut iv_param, aad, TAG_BITS.into()).map_err(|e| TokenError::from_ck(c.token, "GCM parameters", e))?;
    let ct = c.ck("C_Encrypt", c.session.encrypt(&Mechanism::AesGcm(params), k, plaintext))?;
    Ok([&iv[..], &ct].concat())
}

fn open_gcm(c: &Ctx, k: ObjectHandle, blob: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, TokenError> {
    if blob.len() < IV_LEN + 16 {
        return Err(TokenError::Refused { token: c.token.into(), operation: "opening a sealed secret", detail: "blob too short".into() });
    }
    let mut iv = [0u8; IV_LEN];
    iv.copy_from_slice(&blob[..IV_LEN]);
    let params = GcmParams::new(&mut iv, aad, TAG_BITS.into()).map_err(|e| TokenError::from_ck(c.token, "GCM parameters", e))?;
    Ok(Zeroizing::new(c.ck("C_Decrypt", c.session.decrypt(&Mechanism::AesGcm(params), k, &blob[IV_LEN..]))?))
}

fn oaep(hash: u8) -> Mechanism<'static> {
    use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
    use cryptoki::mechanism::MechanismType;
    let (h, mgf) =
        if hash == 1 { (MechanismType::SHA1, PkcsMgfType::MGF1_SHA1) } else { (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256) };
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(h, mgf, PkcsOaepSource::empty()))
}

fn refused(c: &Ctx, detail: &str) -> TokenError {
    TokenError::Refused { token: c.token.into(), operation: "opening a sealed secret", detail: detail.into() }
}

/// A fresh AES-256 key encrypted with RSA-OAEP by the token (SHA-256, else SHA-1 where the
/// token offers only that); AES-256-GCM over the secret in software.
fn seal_envelope(c: &Ctx, public: ObjectHandle, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, TokenError> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let mut dek = Zeroizing::new([0u8; 32]);
    c.ck("C_GenerateRandom", c.session.generate_random_slice(&mut dek[..]))?;
    let mut iv = [0u8; IV_LEN];
    c.ck("C_GenerateRandom", c.session.generate_random_slice(&mut iv))?;
    let (hash, wrapped) = match c.session.encrypt(&oaep(2), public, &dek[..]) {
        Ok(w) => (2u8, w),
        Err(_) => (1u8, c.ck("C_Encrypt", c.session.encrypt(&oaep(1), public, &dek[..]))?),
    };
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(&dek[..]).expect("32-byte key");
    let ct = cipher.encrypt(&aes_gcm::Nonce::from(iv), Payload { msg: plaintext, aad }).map_err(|_| TokenError::Refused {
        token: c.token.into(),
        operation: "sealing a secret at rest",
        detail: "AES-GCM failed".into(),
    })?;
    let len = u16::try_from(wrapped.len()).map_err(|_| refused(c, "RSA-OAEP output too long"))?;
    Ok([&MAGIC[..], &[hash], &len.to_be_bytes(), &wrapped, &iv, &ct].concat())
}

fn open_envelope(c: &Ctx, private: ObjectHandle, blob: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, TokenError> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let rest = blob.strip_prefix(&MAGIC[..]).ok_or_else(|| refused(c, "not an envelope blob"))?;
    let (&hash, rest) = rest.split_first().ok_or_else(|| refused(c, "blob too short"))?;
    if rest.len() < 2 {
        return Err(refused(c, "blob too short"));
    }
    let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
    let rest = &rest[2..];
    if rest.len() < len + IV_LEN + 16 {
        return Err(refused(c, "blob too short"));
    }
    let (wrapped, rest) = rest.split_at(len);
    let (iv, ct) = rest.split_at(IV_LEN);
    let dek = Zeroizing::new(c.ck("C_Decrypt", c.session.decrypt(&oaep(hash), private, wrapped))?);
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(&dek).map_err(|_| refused(c, "the sealed key has the wrong length"))?;
    cipher
        .decrypt(&aes_gcm::Nonce::from(<[u8; IV_LEN]>::try_from(iv).expect("split at IV_LEN")), Payload { msg: ct, aad })
        .map(Zeroizing::new)
        .map_err(|_| refused(c, "the blob fails its integrity check (altered, or sealed under another key)"))
}
