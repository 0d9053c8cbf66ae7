//! Getting an exportable key out of the token: C_WrapKey under a one-time AES-256 session key
//! with RFC 5649 (CKM_AES_KEY_WRAP_PAD on SoftHSM), then unwrapping in software into zeroized
//! memory. Nothing is ever written anywhere in the clear.
//!
//! Token quirks handled here (docs/pkcs11.md §1.2, §7):
//! - SoftHSM zero-pads what it wraps to a multiple of 8 and puts the padded length in the RFC
//!   5649 header: a PKCS#8 is cut to its outer DER length (the rest must be zeros), a secret key
//!   to its CKA_VALUE_LEN read before wrapping.
//! - SoftHSM cannot wrap Ed25519 (CKR_KEY_NOT_WRAPPABLE). Exportable Ed25519 keys on such a
//!   token are created readable (see `objects.rs`), and their seed is read as CKA_VALUE.
//! - PKCS#11 3.0 tokens name RFC 5649 0x210B, which cryptoki 0.12 cannot express; those tokens
//!   get a clear error here until the raw call is added.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use rand::RngCore;
use zeroize::Zeroizing;

use super::{Ctx, TokenError, CKM_AES_KEY_WRAP_PAD};

fn refused(c: &Ctx, detail: impl Into<String>) -> TokenError {
    TokenError::Refused { token: c.token.into(), operation: "export", detail: detail.into() }
}

struct KeyFacts {
    key_type: Option<KeyType>,
    extractable: bool,
    sensitive: bool,
    value_len: Option<u64>,
}

fn facts(c: &Ctx, h: ObjectHandle) -> Result<KeyFacts, TokenError> {
    let attrs = c.ck(
        "C_GetAttributeValue",
        c.session
            .get_attributes(h, &[AttributeType::KeyType, AttributeType::Extractable, AttributeType::Sensitive, AttributeType::ValueLen]),
    )?;
    let mut f = KeyFacts { key_type: None, extractable: false, sensitive: true, value_len: None };
    for a in attrs {
        match a {
            Attribute::KeyType(t) => f.key_type = Some(t),
            Attribute::Extractable(b) => f.extractable = b,
            Attribute::Sensitive(b) => f.sensitive = b,
            Attribute::ValueLen(n) => f.value_len = Some(u64::from(n)),
            _ => {}
        }
    }
    Ok(f)
}

/// Wraps `target` under a fresh one-time KEK and unwraps it in software.
fn wrap_out(c: &Ctx, target: ObjectHandle) -> Result<Zeroizing<Vec<u8>>, TokenError> {
    match c.live.mechanisms.kwp {
        Some(CKM_AES_KEY_WRAP_PAD) => {}
        Some(other) => {
            return Err(refused(c, format!("the token's RFC 5649 mechanism is 0x{other:X}, which this keyport cannot call yet")))
        }
        None => return Err(refused(c, "the token has no RFC 5649 key-wrap mechanism")),
    }
    let mut kek = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(&mut kek[..]);
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Wrap(true),
        Attribute::Value(kek.to_vec()),
    ];
    let made = c.session.create_object(&template);
    if let Some(Attribute::Value(v)) = template.last_mut() {
        zeroize::Zeroize::zeroize(v);
    }
    let kek_h = c.ck("C_CreateObject", made)?;
    let wrapped = c.session.wrap_key(&Mechanism::AesKeyWrapPad, kek_h, target);
    let _ = c.session.destroy_object(kek_h);
    let wrapped = c.ck("C_WrapKey", wrapped)?;
    let kw = aes_kw::KekAes256::new(kek.as_ref().into());
    kw.unwrap_with_padding_vec(&wrapped)
        .map(Zeroizing::new)
        .map_err(|_| refused(c, "the wrapped key did not unwrap (RFC 5649 integrity check failed)"))
}

/// The private key `id` as PKCS#8 DER (padding already cut).
pub fn private_key_pkcs8(c: &Ctx, id: &[u8]) -> Result<Zeroizing<Vec<u8>>, TokenError> {
    let set = c.live.index.read().expect("poisoned").get(id).cloned();
    let h = set
        .as_ref()
        .and_then(|s| s.private)
        .ok_or_else(|| TokenError::NotFound { token: c.token.into(), what: format!("private key {}", hex::encode(id)) })?;
    let f = facts(c, h)?;
    if !f.extractable {
        return Err(refused(c, "the private key is not extractable (CKA_EXTRACTABLE=false)"));
    }
    if f.key_type == Some(KeyType::EC_EDWARDS) && !c.live.mechanisms.ed25519_wrappable {
        if f.sensitive {
            return Err(refused(c, "this token cannot wrap Ed25519 keys and the key is sensitive"));
        }
        let attrs = c.ck("C_GetAttributeValue", c.session.get_attributes(h, &[AttributeType::Value]))?;
        let seed = attrs.into_iter().find_map(|a| if let Attribute::Value(v) = a { Some(Zeroizing::new(v)) } else { None });
        let seed = seed.filter(|s| s.len() == 32).ok_or_else(|| refused(c, "the Ed25519 key's value is not a 32-byte seed"))?;
        // RFC 8410 OneAsymmetricKey v1: SEQUENCE { 0, { id-Ed25519 }, OCTET STRING { OCTET STRING seed } }.
        let mut der = Zeroizing::new(hex::decode("302e020100300506032b657004220420").expect("constant"));
        der.extend_from_slice(&seed);
        return Ok(der);
    }
    let blob = wrap_out(c, h)?;
    let der =
        crate::material::pkcs::pkcs8_der_strip_padding(&blob).map_err(|e| refused(c, format!("the unwrapped key is not PKCS#8: {e}")))?;
    Ok(Zeroizing::new(der.to_vec()))
}

/// The secret key `id`'s value, cut to its true length.
pub fn secret_key_value(c: &Ctx, id: &[u8]) -> Result<Zeroizing<Vec<u8>>, TokenError> {
    let set = c.live.index.read().expect("poisoned").get(id).cloned();
    let h = set
        .as_ref()
        .and_then(|s| s.secret)
        .ok_or_else(|| TokenError::NotFound { token: c.token.into(), what: format!("secret key {}", hex::encode(id)) })?;
    let f = facts(c, h)?;
    if !f.extractable {
        return Err(refused(c, "the secret key is not extractable (CKA_EXTRACTABLE=false)"));
    }
    let len = match f.key_type {
        Some(KeyType::DES) => 8,
        Some(KeyType::DES2) => 16,
        Some(KeyType::DES3) => 24,
        _ => f.value_len.ok_or_else(|| refused(c, "the secret key has no CKA_VALUE_LEN"))? as usize,
    };
    let mut v = wrap_out(c, h)?;
    if v.len() < len || v[len..].iter().any(|b| *b != 0) {
        return Err(refused(c, "the unwrapped secret has an unexpected length"));
    }
    v.truncate(len);
    Ok(v)
}
