//! BYOK wrapping for the remote vault (OpenBao/Vault transit `import`), done inside the token:
//! the vault's RSA wrapping key becomes a session public key with CKA_WRAP; a session AES-256
//! key (extractable, CKA_TOKEN=false) wraps the target private key with RFC 5649
//! (CKM_AES_KEY_WRAP_PAD); the AES key is wrapped with CKM_RSA_PKCS_OAEP under the vault key;
//! the result is `OAEP(aes) ‖ KWP(private key)`. The session objects are destroyed whatever
//! happens. The private key never exists outside the token in the clear
//! (docs/vault.md §2.1–2.2, docs/pkcs11.md §7.3).
//!
//! OAEP hash: SHA-256 where the token can, else SHA-1 (SoftHSM 2.6 refuses OAEP-SHA256 in
//! C_WrapKey with CKR_ARGUMENTS_BAD); the caller sends the one used as `hash_function`.
//!
//! One exception: Ed25519 on a token that cannot wrap it (SoftHSM: CKR_KEY_NOT_WRAPPABLE).
//! An *exportable* Ed25519 key there is readable by design (`objects.rs`: CKA_SENSITIVE=false,
//! the same path `export` already uses), so its seed is read into zeroized memory, put in a
//! PKCS#8 and wrapped in software the same way (OAEP-SHA256). That gives the key no exposure the
//! export path does not already give. Non-exportable keys are never wrapped.

use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use der::Decode;
use rand::RngCore;
use zeroize::Zeroizing;

use super::{Ctx, TokenError, CKM_AES_KEY_WRAP_PAD};

/// The OAEP hash a wrap used: the vault's `hash_function` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OaepHash {
    Sha256,
    Sha1,
}

impl OaepHash {
    pub fn vault_name(self) -> &'static str {
        match self {
            OaepHash::Sha256 => "SHA256",
            OaepHash::Sha1 => "SHA1",
        }
    }
}

pub struct Wrapped {
    pub ciphertext: Vec<u8>,
    pub hash: OaepHash,
    /// True when the key was wrapped in software (readable Ed25519 on SoftHSM).
    pub in_software: bool,
}

fn refused(c: &Ctx, detail: impl Into<String>) -> TokenError {
    TokenError::Refused { token: c.token.into(), operation: "wrapping for the vault", detail: detail.into() }
}

/// Modulus and exponent of an RSA SubjectPublicKeyInfo (DER).
fn rsa_parts(spki_der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
    let spki = spki::SubjectPublicKeyInfoRef::from_der(spki_der).map_err(|e| format!("the wrapping key is not an SPKI: {e}"))?;
    if spki.algorithm.oid != der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1") {
        return Err("the wrapping key is not an RSA key".into());
    }
    let bytes = spki.subject_public_key.as_bytes().ok_or("the wrapping key's bit string is not whole bytes")?;
    let k = pkcs1::RsaPublicKey::from_der(bytes).map_err(|e| format!("the wrapping key is not PKCS#1: {e}"))?;
    Ok((k.modulus.as_bytes().to_vec(), k.public_exponent.as_bytes().to_vec()))
}

pub(super) fn oaep(hash: OaepHash) -> Mechanism<'static> {
    let (h, mgf) = match hash {
        OaepHash::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
        OaepHash::Sha1 => (MechanismType::SHA1, PkcsMgfType::MGF1_SHA1),
    };
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(h, mgf, PkcsOaepSource::empty()))
}

/// Wraps the private key `id` for a vault whose wrapping key is `wrapping_spki_der`.
pub fn wrap_for_vault(c: &Ctx, id: &[u8], wrapping_spki_der: &[u8]) -> Result<Wrapped, TokenError> {
    let h = c.live.index.read().expect("poisoned").get(id).and_then(|s| s.private);
    let h = h.ok_or_else(|| TokenError::NotFound { token: c.token.into(), what: format!("private key {}", hex::encode(id)) })?;
    let attrs = c.ck(
        "C_GetAttributeValue",
        c.session.get_attributes(h, &[AttributeType::KeyType, AttributeType::Extractable, AttributeType::Sensitive]),
    )?;
    let (mut key_type, mut extractable, mut sensitive) = (None, false, true);
    for a in attrs {
        match a {
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::Extractable(b) => extractable = b,
            Attribute::Sensitive(b) => sensitive = b,
            _ => {}
        }
    }
    if !extractable {
        return Err(refused(c, "the private key is not extractable (CKA_EXTRACTABLE=false)"));
    }
    if key_type == Some(KeyType::EC_EDWARDS) && !c.live.mechanisms.ed25519_wrappable {
        if sensitive {
            return Err(refused(c, "this token cannot wrap Ed25519 keys and the key is sensitive"));
        }
        return wrap_ed25519_in_software(c, h, wrapping_spki_der);
    }
    match c.live.mechanisms.kwp {
        Some(CKM_AES_KEY_WRAP_PAD) => {}
        Some(other) => {
            return Err(refused(c, format!("the token's RFC 5649 mechanism is 0x{other:X}, which this keyport cannot call yet")))
        }
        None => return Err(refused(c, "the token has no RFC 5649 key-wrap mechanism")),
    }
    if !c.live.mechanisms.rsa_oaep {
        return Err(refused(c, "the token has no CKM_RSA_PKCS_OAEP"));
    }
    let (modulus, exponent) = rsa_parts(wrapping_spki_der).map_err(|e| refused(c, e))?;
    let mut made: Vec<ObjectHandle> = Vec::new();
    let r = (|| {
        let vault_pub = c.ck(
            "C_CreateObject",
            c.session.create_object(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::RSA),
                Attribute::Token(false),
                Attribute::Private(false),
                Attribute::Wrap(true),
                Attribute::Encrypt(true),
                Attribute::Modulus(modulus.clone()),
                Attribute::PublicExponent(exponent.clone()),
            ]),
        )?;
        made.push(vault_pub);
        let eph = c.ck(
            "C_GenerateKey",
            c.session.generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::ValueLen(32.into()),
                    Attribute::Token(false),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(true),
                    Attribute::Wrap(true),
                ],
            ),
        )?;
        made.push(eph);
        let body = c.ck("C_WrapKey", c.session.wrap_key(&Mechanism::AesKeyWrapPad, eph, h))?;
        let mut last = None;
        for hash in [OaepHash::Sha256, OaepHash::Sha1] {
            match c.session.wrap_key(&oaep(hash), vault_pub, eph) {
                Ok(head) => return Ok(Wrapped { ciphertext: [head, body].concat(), hash, in_software: false }),
                Err(e) => last = Some(TokenError::from_ck(c.token, "C_WrapKey (RSA-OAEP)", e)),
            }
        }
        Err(last.expect("tried at least one hash"))
    })();
    for o in made {
        let _ = c.session.destroy_object(o);
    }
    r
}

/// See the module comment: a readable (exportable) Ed25519 key on a token that cannot wrap it.
fn wrap_ed25519_in_software(c: &Ctx, h: ObjectHandle, wrapping_spki_der: &[u8]) -> Result<Wrapped, TokenError> {
    use rsa::pkcs8::DecodePublicKey;
    let attrs = c.ck("C_GetAttributeValue", c.session.get_attributes(h, &[AttributeType::Value]))?;
    let seed = attrs.into_iter().find_map(|a| if let Attribute::Value(v) = a { Some(Zeroizing::new(v)) } else { None });
    let seed = seed.filter(|s| s.len() == 32).ok_or_else(|| refused(c, "the Ed25519 key's value is not a 32-byte seed"))?;
    // RFC 8410 OneAsymmetricKey v1: SEQUENCE { 0, { id-Ed25519 }, OCTET STRING { OCTET STRING seed } }.
    let mut pkcs8 = Zeroizing::new(hex::decode("302e020100300506032b657004220420").expect("constant"));
    pkcs8.extend_from_slice(&seed);
    let mut eph = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(&mut eph[..]);
    let body =
        aes_kw::KekAes256::new(eph.as_ref().into()).wrap_with_padding_vec(&pkcs8).map_err(|e| refused(c, format!("AES-KWP: {e:?}")))?;
    let vault = rsa::RsaPublicKey::from_public_key_der(wrapping_spki_der).map_err(|e| refused(c, format!("the wrapping key: {e}")))?;
    let head = vault
        .encrypt(&mut rand::rngs::OsRng, rsa::Oaep::new::<sha2::Sha256>(), &eph[..])
        .map_err(|e| refused(c, format!("RSA-OAEP: {e}")))?;
    Ok(Wrapped { ciphertext: [head, body].concat(), hash: OaepHash::Sha256, in_software: true })
}
