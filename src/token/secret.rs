//! Objects the project-key face (seed 004) adds: secret keys (AES, DES, DES3) created from
//! their value, and public keys without a private half (RSA). The conventions are those of
//! `objects.rs`: one CKA_ID per key, CKA_LABEL = the key's name, the in-memory index kept
//! current. Secret keys are CKA_SENSITIVE and CKA_PRIVATE, CKA_EXTRACTABLE only when the key
//! is exportable (then it can be wrapped out, never read in the clear).

use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use zeroize::Zeroize;

use super::index::Kind;
use super::{Ctx, TokenError};

/// The symmetric key types PKCS#11 tokens hold and the vendor names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretType {
    /// 16, 24 or 32 bytes.
    Aes,
    /// 8 bytes (parity bits as given).
    Des,
    /// Three-key triple DES, 24 bytes.
    Des3,
}

impl SecretType {
    pub fn key_type(self) -> KeyType {
        match self {
            SecretType::Aes => KeyType::AES,
            SecretType::Des => KeyType::DES,
            SecretType::Des3 => KeyType::DES3,
        }
    }

    /// Whether `len` bytes is a valid value for this type.
    pub fn valid_len(self, len: usize) -> bool {
        match self {
            SecretType::Aes => matches!(len, 16 | 24 | 32),
            SecretType::Des => len == 8,
            SecretType::Des3 => len == 24,
        }
    }
}

/// Creates a secret key object holding `value` under `id`/`label`. The attribute buffer
/// holding the value is zeroized whatever the outcome.
pub fn create_secret_key(c: &Ctx, kind: SecretType, value: &[u8], id: &[u8], label: &str, exportable: bool) -> Result<(), TokenError> {
    if !kind.valid_len(value.len()) {
        return Err(TokenError::Refused {
            token: c.token.into(),
            operation: "secret key import",
            detail: format!("{} bytes is not a valid {kind:?} key length", value.len()),
        });
    }
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(kind.key_type()),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(exportable),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Id(id.to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Value(value.to_vec()),
    ];
    let made = c.session.create_object(&template);
    for a in template.iter_mut() {
        if let Attribute::Value(v) = a {
            v.zeroize();
        }
    }
    let h = c.ck("C_CreateObject", made)?;
    c.live.index.write().expect("poisoned").insert(id, Kind::Secret, h);
    Ok(())
}

/// Creates an RSA public key object (no private half) under `id`/`label`.
pub fn create_rsa_public_key(c: &Ctx, modulus: &[u8], exponent: &[u8], id: &[u8], label: &str) -> Result<(), TokenError> {
    let h = c.ck(
        "C_CreateObject",
        c.session.create_object(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Encrypt(true),
            Attribute::Modulus(modulus.to_vec()),
            Attribute::PublicExponent(exponent.to_vec()),
            Attribute::Id(id.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
        ]),
    )?;
    c.live.index.write().expect("poisoned").insert(id, Kind::Public, h);
    Ok(())
}

/// The key type and length of the secret key `id`, if the token holds one (what an inventory
/// check needs; never the value).
pub fn secret_key_info(c: &Ctx, id: &[u8]) -> Result<Option<(KeyType, u64)>, TokenError> {
    let h = c.live.index.read().expect("poisoned").get(id).and_then(|s| s.secret);
    let Some(h) = h else { return Ok(None) };
    let attrs = c.ck("C_GetAttributeValue", c.session.get_attributes(h, &[AttributeType::KeyType, AttributeType::ValueLen]))?;
    let (mut kt, mut len) = (None, 0u64);
    for a in attrs {
        match a {
            Attribute::KeyType(k) => kt = Some(k),
            Attribute::ValueLen(l) => len = l.into(),
            _ => {}
        }
    }
    Ok(kt.map(|k| (k, len)))
}
