//! The way back from the vault (`keyport restore`), done inside the token, the mirror of
//! `byok.rs`: a session RSA-4096 key pair is made here (private half CKA_UNWRAP, sensitive,
//! never extractable, gone with the session); the vault gets its public half and wraps each
//! key for it with `byok-export`, in the import format `OAEP(aes) ‖ KWP(PKCS#8)`. Two
//! C_UnwrapKey calls (RSA-OAEP into a session AES key, then CKM_AES_KEY_WRAP_PAD into a token
//! private key with keyport's attributes) put the key back; the clear private key never exists
//! outside the token or the vault.
//!
//! One exception, as in `byok.rs`: Ed25519 on a token that cannot wrap or unwrap it (SoftHSM);
//! see `ed25519_in_software`.
//!
//! Before the key counts as restored it must sign a challenge that its public key (taken from
//! the vault, fingerprint checked by the caller) verifies inside the token; otherwise the new
//! objects are destroyed.

use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use sha2::Digest;

use super::byok::{oaep, OaepHash};
use super::index::Kind;
use super::{objects, Ctx, TokenError, CKM_AES_KEY_WRAP_PAD};
use crate::material::algorithm::Algorithm;
use crate::material::spki::PublicKey;

/// The session key pair the vault wraps restored keys for.
#[derive(Debug, Clone)]
pub struct UnwrapKey {
    pub private: ObjectHandle,
    pub public: ObjectHandle,
    /// SubjectPublicKeyInfo DER of the public half (what the vault imports).
    pub spki_der: Vec<u8>,
    /// Bytes of the RSA-OAEP part of a wrapped key (the modulus length).
    pub modulus_len: usize,
    /// The OAEP hash the token can unwrap with: the vault's `hash` parameter.
    pub hash: OaepHash,
}

fn refused(c: &Ctx, detail: impl Into<String>) -> TokenError {
    TokenError::Refused { token: c.token.into(), operation: "unwrapping from the vault", detail: detail.into() }
}

/// Makes the session RSA-4096 unwrap key pair.
pub fn create_unwrap_key(c: &Ctx) -> Result<UnwrapKey, TokenError> {
    if c.live.mechanisms.kwp != Some(CKM_AES_KEY_WRAP_PAD) {
        return Err(refused(c, "the token has no CKM_AES_KEY_WRAP_PAD (RFC 5649) that keyport can call"));
    }
    if !c.live.mechanisms.rsa_oaep {
        return Err(refused(c, "the token has no CKM_RSA_PKCS_OAEP"));
    }
    let public = [
        Attribute::Token(false),
        Attribute::Private(false),
        Attribute::ModulusBits(4096.into()),
        Attribute::PublicExponent(vec![1, 0, 1]),
        Attribute::Wrap(true),
        Attribute::Encrypt(true),
    ];
    let private = [
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Unwrap(true),
        Attribute::Decrypt(true),
    ];
    let (pub_h, priv_h) = c.ck("C_GenerateKeyPair", c.session.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private))?;
    let pk = objects::read_public(c, pub_h)?;
    let modulus_len = match &pk {
        PublicKey::Rsa { modulus, .. } => modulus.iter().skip_while(|b| **b == 0).count(),
        _ => 0,
    };
    let spki_der = pk.spki_der().map_err(|e| refused(c, e.to_string()))?;
    let hash = oaep_hash(c, pub_h, priv_h);
    Ok(UnwrapKey { private: priv_h, public: pub_h, spki_der, modulus_len, hash })
}

/// SHA-256 when the token can wrap and unwrap with OAEP-SHA256, else SHA-1 (SoftHSM 2.6 refuses
/// OAEP with SHA-256: CKR_ARGUMENTS_BAD). Tried on a throw-away session AES key.
fn oaep_hash(c: &Ctx, public: ObjectHandle, private: ObjectHandle) -> OaepHash {
    let aes = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Sensitive(true),
        Attribute::Extractable(true),
    ];
    let Ok(probe) = c.session.generate_key(&Mechanism::AesKeyGen, &[&aes[..], &[Attribute::ValueLen(32.into())]].concat()) else {
        return OaepHash::Sha1;
    };
    let works = c
        .session
        .wrap_key(&oaep(OaepHash::Sha256), public, probe)
        .is_ok_and(|w| c.session.unwrap_key(&oaep(OaepHash::Sha256), private, &w, &aes).is_ok_and(|h| c.session.destroy_object(h).is_ok()));
    let _ = c.session.destroy_object(probe);
    if works {
        OaepHash::Sha256
    } else {
        OaepHash::Sha1
    }
}

/// Destroys the unwrap key pair (best effort: session objects also go with their session).
pub fn destroy_unwrap_key(c: &Ctx, k: &UnwrapKey) {
    let _ = c.session.destroy_object(k.private);
    let _ = c.session.destroy_object(k.public);
}

/// Unwraps a `byok-export` answer into a token private key under `id`/`label` with keyport's
/// attributes, creates its public key object from `public`, and checks that the pair signs
/// and verifies. Returns the public key.
#[allow(clippy::too_many_arguments)]
pub fn unwrap_from_vault(
    c: &Ctx,
    k: &UnwrapKey,
    wrapped: &[u8],
    hash: OaepHash,
    alg: Algorithm,
    public: &PublicKey,
    id: &[u8],
    label: &str,
    exportable: bool,
) -> Result<PublicKey, TokenError> {
    if wrapped.len() <= k.modulus_len {
        return Err(refused(c, "the vault's answer is shorter than its RSA-OAEP part"));
    }
    let (head, body) = wrapped.split_at(k.modulus_len);
    if alg == Algorithm::Ed25519 && !c.live.mechanisms.ed25519_wrappable {
        return ed25519_in_software(c, k, head, body, hash, public, id, label, exportable);
    }
    let aes = c.ck(
        "C_UnwrapKey (RSA-OAEP)",
        c.session.unwrap_key(
            &oaep(hash),
            k.private,
            head,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(false),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Unwrap(true),
            ],
        ),
    )?;
    let mut template = vec![
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(objects::sensitive(c, alg, exportable)),
        Attribute::Extractable(exportable),
        Attribute::Sign(true),
        Attribute::Id(id.to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    template.extend(match alg {
        Algorithm::Rsa2048 | Algorithm::Rsa3072 | Algorithm::Rsa4096 => vec![Attribute::KeyType(KeyType::RSA), Attribute::Decrypt(true)],
        Algorithm::EcP256 | Algorithm::EcP384 | Algorithm::EcP521 => vec![Attribute::KeyType(KeyType::EC), Attribute::Derive(true)],
        Algorithm::Ed25519 => vec![Attribute::KeyType(KeyType::EC_EDWARDS)],
    });
    let private = c.session.unwrap_key(&Mechanism::AesKeyWrapPad, aes, body, &template);
    let _ = c.session.destroy_object(aes);
    let private = c.ck("C_UnwrapKey (AES-KWP)", private)?;
    let public_h = match objects::create_public_key(c, public, id, label) {
        Ok(h) => h,
        Err(e) => {
            let _ = c.session.destroy_object(private);
            return Err(e);
        }
    };
    if let Err(e) = check_pair(c, private, public_h, alg) {
        let _ = c.session.destroy_object(private);
        let _ = c.session.destroy_object(public_h);
        return Err(e);
    }
    let mut idx = c.live.index.write().expect("poisoned");
    idx.insert(id, label, Kind::Private, private);
    idx.insert(id, label, Kind::Public, public_h);
    Ok(public.clone())
}

/// Ed25519 on a token that cannot wrap it (SoftHSM 2.6 also fails C_UnwrapKey of an Ed25519
/// PKCS#8 with CKR_FUNCTION_FAILED): the AES key is unwrapped inside the token but readable,
/// the PKCS#8 is unwrapped in zeroized memory and the key created with C_CreateObject, as
/// import does. Only for a key that will be exportable: on such a token that key is readable
/// by design (`objects.rs`), so this exposes nothing the export path does not (`byok.rs` wraps
/// it in software for the same reason).
#[allow(clippy::too_many_arguments)]
fn ed25519_in_software(
    c: &Ctx,
    k: &UnwrapKey,
    head: &[u8],
    body: &[u8],
    hash: OaepHash,
    public: &PublicKey,
    id: &[u8],
    label: &str,
    exportable: bool,
) -> Result<PublicKey, TokenError> {
    if !exportable {
        return Err(refused(c, "this token cannot unwrap Ed25519 keys, and the namespace does not allow exportable keys"));
    }
    let aes = c.ck(
        "C_UnwrapKey (RSA-OAEP)",
        c.session.unwrap_key(
            &oaep(hash),
            k.private,
            head,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(false),
                Attribute::Private(true),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
            ],
        ),
    )?;
    let value = c.session.get_attributes(aes, &[cryptoki::object::AttributeType::Value]);
    let _ = c.session.destroy_object(aes);
    let value = c.ck("C_GetAttributeValue", value)?;
    let kek = value.into_iter().find_map(|a| if let Attribute::Value(v) = a { Some(zeroize::Zeroizing::new(v)) } else { None });
    let kek = kek.filter(|v| v.len() == 32).ok_or_else(|| refused(c, "the unwrapped AES key is not 32 bytes"))?;
    let pkcs8 = aes_kw::KekAes256::new(kek.as_slice().into())
        .unwrap_with_padding_vec(body)
        .map(zeroize::Zeroizing::new)
        .map_err(|_| refused(c, "the vault's wrapped key did not unwrap (RFC 5649 integrity check failed)"))?;
    let key = crate::material::pkcs::private_key_from_pkcs8_der(&pkcs8).map_err(|e| refused(c, e.to_string()))?;
    if &key.public_key() != public {
        return Err(refused(c, "the unwrapped private key does not match the vault's public key"));
    }
    let pk = objects::import_private_key(c, &key, id, label, exportable)?;
    let set = c.live.index.read().expect("poisoned").get(id).cloned();
    if let Some((private, public_h)) = set.and_then(|s| Some((s.private?, s.public?))) {
        if let Err(e) = check_pair(c, private, public_h, Algorithm::Ed25519) {
            objects::destroy(c, id)?;
            return Err(e);
        }
    }
    Ok(pk)
}

/// Signs a challenge with the new private key and verifies it with the new public key.
fn check_pair(c: &Ctx, private: ObjectHandle, public: ObjectHandle, alg: Algorithm) -> Result<(), TokenError> {
    let challenge = b"keyport restore: does the unwrapped key match the vault's public key?";
    let (mech, data) = match alg {
        Algorithm::Ed25519 => (Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)), challenge.to_vec()),
        // SoftHSM has no CKM_ECDSA_SHA256: sign the digest (research/vault.md §2.2).
        Algorithm::EcP256 | Algorithm::EcP384 | Algorithm::EcP521 => (Mechanism::Ecdsa, sha2::Sha256::digest(challenge).to_vec()),
        _ => (Mechanism::Sha256RsaPkcs, challenge.to_vec()),
    };
    let sig = c.ck("C_Sign", c.session.sign(&mech, private, &data))?;
    c.session.verify(&mech, public, &data, &sig).map_err(|_| refused(c, "the unwrapped private key does not match the vault's public key"))
}
