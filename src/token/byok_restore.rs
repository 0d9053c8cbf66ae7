//! The way back from the vault (`keyport restore`), done inside the token, the mirror of
//! `byok.rs`: a session RSA-4096 key pair is made here (private half CKA_UNWRAP only —
//! no decrypt, sign or derive —, sensitive, never extractable, gone with the session); the
//! vault gets its public half and wraps each key for it with `byok-export`, in the import
//! format `OAEP(aes) ‖ KWP(PKCS#8)`. Two C_UnwrapKey calls (RSA-OAEP into a session AES key
//! that can only unwrap, then CKM_AES_KEY_WRAP_PAD into a token private key with keyport's
//! attributes) put the key back; the clear private key never exists outside the token or the
//! vault.
//!
//! The pair lives across many `Token::run` calls, but its handles are only numbers in the
//! sessions of one connection: after a transient failure the token layer opens new sessions
//! (or re-initializes the module), the session objects are gone and the same numbers may name
//! other objects — a customer's key. So the pair carries a random CKA_ID and the
//! [`SessionEpoch`] it was made in; a handle is used (for C_UnwrapKey or C_DestroyObject) only
//! when the epoch is unchanged *and* the object behind it is a session object with that
//! CKA_ID. Otherwise the pair counts as gone (nothing to destroy: session objects die with
//! their sessions) and restore makes a new one.
//!
//! Every object made for a restored key enters the token index as soon as it exists, so
//! `objects::destroy` (creation's retry and undo) sees it. Unwrapped keys are, by the nature of
//! C_UnwrapKey, CKA_LOCAL=false, CKA_ALWAYS_SENSITIVE=false and CKA_NEVER_EXTRACTABLE=false,
//! whatever keyport sets: the token did not generate them.
//!
//! One exception, as in `byok.rs`: Ed25519 on a token that cannot wrap or unwrap it (SoftHSM);
//! see `ed25519_in_software`. There, and only there, the first-stage AES key is readable.
//!
//! Before the key counts as restored it must sign a challenge that its public key (taken from
//! the vault, fingerprint checked by the caller) verifies inside the token; otherwise the new
//! objects are destroyed.

use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use sha2::Digest;

use super::byok::{oaep, OaepHash};
use super::index::Kind;
use super::{objects, Ctx, SessionEpoch, TokenError, CKM_AES_KEY_WRAP_PAD};
use crate::material::algorithm::Algorithm;
use crate::material::spki::PublicKey;

/// The session key pair the vault wraps restored keys for.
#[derive(Debug, Clone)]
pub struct UnwrapKey {
    private: ObjectHandle,
    public: ObjectHandle,
    /// The pair's random CKA_ID, checked before a handle is used.
    id: [u8; 16],
    /// The sessions the handles belong to.
    epoch: SessionEpoch,
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

/// What `unwrap_from_vault` answers when the pair is gone (see the module comment).
fn gone(c: &Ctx) -> TokenError {
    TokenError::NotFound {
        token: c.token.into(),
        what: "the restore unwrap key (a session object; the token connection was reopened)".into(),
    }
}

const LABEL: &[u8] = b"keyport restore unwrap key (session)";

/// Makes the session RSA-4096 unwrap key pair.
pub fn create_unwrap_key(c: &Ctx) -> Result<UnwrapKey, TokenError> {
    if c.live.mechanisms.kwp != Some(CKM_AES_KEY_WRAP_PAD) {
        return Err(refused(c, "the token has no CKM_AES_KEY_WRAP_PAD (RFC 5649) that keyport can call"));
    }
    if !c.live.mechanisms.rsa_oaep {
        return Err(refused(c, "the token has no CKM_RSA_PKCS_OAEP"));
    }
    let mut id = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
    let epoch = c.live.session_epoch();
    let public = [
        Attribute::Token(false),
        Attribute::Private(false),
        Attribute::Id(id.to_vec()),
        Attribute::Label(LABEL.to_vec()),
        Attribute::ModulusBits(4096.into()),
        Attribute::PublicExponent(vec![1, 0, 1]),
        // Only for the OAEP probe (`oaep_hash`), which wraps a throw-away key with it.
        Attribute::Wrap(true),
        Attribute::Encrypt(false),
        Attribute::Verify(false),
    ];
    let private = [
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Id(id.to_vec()),
        Attribute::Label(LABEL.to_vec()),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Unwrap(true),
        Attribute::Decrypt(false),
        Attribute::Sign(false),
        Attribute::Derive(false),
    ];
    let (pub_h, priv_h) = c.ck("C_GenerateKeyPair", c.session.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private))?;
    let made = [pub_h, priv_h];
    let r = (|| {
        let pk = objects::read_public(c, pub_h)?;
        let modulus_len = match &pk {
            PublicKey::Rsa { modulus, .. } => modulus.iter().skip_while(|b| **b == 0).count(),
            _ => return Err(refused(c, "the unwrap key pair is not RSA")),
        };
        let spki_der = pk.spki_der().map_err(|e| refused(c, e.to_string()))?;
        let hash = oaep_hash(c, pub_h, priv_h)?;
        Ok(UnwrapKey { private: priv_h, public: pub_h, id, epoch, spki_der, modulus_len, hash })
    })();
    if r.is_err() {
        for h in made {
            let _ = c.session.destroy_object(h);
        }
    }
    r
}

/// Whether a failed OAEP call means "this token cannot do OAEP with that hash" (SoftHSM 2.6
/// answers CKR_ARGUMENTS_BAD for SHA-256) rather than something else going wrong.
fn oaep_unsupported(e: &cryptoki::error::Error) -> bool {
    use cryptoki::error::{Error, RvError};
    matches!(e, Error::Pkcs11(RvError::MechanismInvalid | RvError::MechanismParamInvalid | RvError::ArgumentsBad, _))
}

/// SHA-256 when the token can wrap and unwrap with OAEP-SHA256, SHA-1 when it says it cannot
/// (mechanism or parameter not supported; SoftHSM 2.6: CKR_ARGUMENTS_BAD); any other failure
/// is an error, not a reason to weaken the hash. Tried on a throw-away session AES key.
fn oaep_hash(c: &Ctx, public: ObjectHandle, private: ObjectHandle) -> Result<OaepHash, TokenError> {
    let aes = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Sensitive(true),
        Attribute::Extractable(true),
    ];
    let probe = c.ck(
        "C_GenerateKey (OAEP probe)",
        c.session.generate_key(&Mechanism::AesKeyGen, &[&aes[..], &[Attribute::ValueLen(32.into())]].concat()),
    )?;
    let r = (|| {
        let wrapped = match c.session.wrap_key(&oaep(OaepHash::Sha256), public, probe) {
            Ok(w) => w,
            Err(e) if oaep_unsupported(&e) => return Ok(OaepHash::Sha1),
            Err(e) => return Err(TokenError::from_ck(c.token, "C_WrapKey (OAEP probe)", e)),
        };
        let template = [&aes[..2], &[Attribute::Token(false), Attribute::Sensitive(true), Attribute::Extractable(false)]].concat();
        match c.session.unwrap_key(&oaep(OaepHash::Sha256), private, &wrapped, &template) {
            Ok(h) => {
                let _ = c.session.destroy_object(h);
                Ok(OaepHash::Sha256)
            }
            Err(e) if oaep_unsupported(&e) => Ok(OaepHash::Sha1),
            Err(e) => Err(TokenError::from_ck(c.token, "C_UnwrapKey (OAEP probe)", e)),
        }
    })();
    let _ = c.session.destroy_object(probe);
    r
}

/// Whether `h` is, in this connection, the session object of class `class` with the pair's
/// CKA_ID (a handle of a dead session may name another object now).
fn is_ours(c: &Ctx, k: &UnwrapKey, h: ObjectHandle, class: ObjectClass) -> Result<bool, TokenError> {
    if c.live.session_epoch() != k.epoch {
        return Ok(false);
    }
    let attrs = match c.session.get_attributes(h, &[AttributeType::Class, AttributeType::Token, AttributeType::Id]) {
        Ok(a) => a,
        Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::ObjectHandleInvalid, _)) => return Ok(false),
        Err(e) => return Err(TokenError::from_ck(c.token, "C_GetAttributeValue", e)),
    };
    let (mut class_ok, mut session, mut id) = (false, false, false);
    for a in attrs {
        match a {
            Attribute::Class(x) => class_ok = x == class,
            Attribute::Token(t) => session = !t,
            Attribute::Id(v) => id = v == k.id,
            _ => {}
        }
    }
    Ok(class_ok && session && id)
}

/// Whether the unwrap key pair still exists (same sessions, same objects).
pub fn unwrap_key_alive(c: &Ctx, k: &UnwrapKey) -> Result<bool, TokenError> {
    Ok(is_ours(c, k, k.private, ObjectClass::PRIVATE_KEY)? && is_ours(c, k, k.public, ObjectClass::PUBLIC_KEY)?)
}

/// Destroys the unwrap key pair, each half only after `is_ours` says the handle is still
/// it. Best effort: session objects also go with their session.
pub fn destroy_unwrap_key(c: &Ctx, k: &UnwrapKey) {
    for (h, class) in [(k.private, ObjectClass::PRIVATE_KEY), (k.public, ObjectClass::PUBLIC_KEY)] {
        if is_ours(c, k, h, class).unwrap_or(false) {
            let _ = c.session.destroy_object(h);
        }
    }
}

/// The first C_UnwrapKey: the vault's RSA-OAEP part into a session AES key that can only
/// unwrap (sensitive, not extractable, no encrypt/decrypt/wrap/derive). `readable` only for
/// `ed25519_in_software`: then it can do nothing at all but be read once.
fn unwrap_aes(c: &Ctx, k: &UnwrapKey, head: &[u8], readable: bool) -> Result<ObjectHandle, TokenError> {
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Wrap(false),
        Attribute::Derive(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Unwrap(!readable),
        Attribute::Sensitive(!readable),
        Attribute::Extractable(readable),
    ];
    c.ck("C_UnwrapKey (RSA-OAEP)", c.session.unwrap_key(&oaep(k.hash), k.private, head, &template))
}

/// Unwraps a `byok-export` answer into a token private key under `id`/`label` with keyport's
/// attributes, creates its public key object from `public`, and checks that the pair signs
/// and verifies. Returns the public key. A gone unwrap key is `TokenError::NotFound`.
#[allow(clippy::too_many_arguments)]
pub fn unwrap_from_vault(
    c: &Ctx,
    k: &UnwrapKey,
    wrapped: &[u8],
    alg: Algorithm,
    public: &PublicKey,
    id: &[u8],
    label: &str,
    exportable: bool,
) -> Result<PublicKey, TokenError> {
    if !unwrap_key_alive(c, k)? {
        return Err(gone(c));
    }
    if wrapped.len() <= k.modulus_len {
        return Err(refused(c, "the vault's answer is shorter than its RSA-OAEP part"));
    }
    let (head, body) = wrapped.split_at(k.modulus_len);
    if alg == Algorithm::Ed25519 && !c.live.mechanisms.ed25519_wrappable {
        return ed25519_in_software(c, k, head, body, public, id, label, exportable);
    }
    let aes = unwrap_aes(c, k, head, false)?;
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
    c.live.index.write().expect("poisoned").insert(id, Kind::Private, private);
    let r = (|| {
        let public_h = objects::create_public_key(c, public, id, label)?;
        c.live.index.write().expect("poisoned").insert(id, Kind::Public, public_h);
        check_pair(c, private, public_h, alg)
    })();
    if let Err(e) = r {
        let _ = objects::destroy(c, id);
        return Err(e);
    }
    Ok(public.clone())
}

/// Ed25519 on a token that cannot wrap it (SoftHSM 2.6 also fails C_UnwrapKey of an Ed25519
/// PKCS#8 with CKR_FUNCTION_FAILED): the AES key is unwrapped inside the token but readable
/// (the one exception to "the AES key can only unwrap": here it can do nothing but be read),
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
    public: &PublicKey,
    id: &[u8],
    label: &str,
    exportable: bool,
) -> Result<PublicKey, TokenError> {
    if !exportable {
        return Err(refused(c, "this token cannot unwrap Ed25519 keys, and the namespace does not allow exportable keys"));
    }
    let aes = unwrap_aes(c, k, head, true)?;
    let value = c.session.get_attributes(aes, &[AttributeType::Value]);
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
    let pair = set.and_then(|s| Some((s.private?, s.public?)));
    let checked = match pair {
        Some((private, public_h)) => check_pair(c, private, public_h, Algorithm::Ed25519),
        None => Err(refused(c, "the imported key pair is not in the index")),
    };
    if let Err(e) = checked {
        let _ = objects::destroy(c, id);
        return Err(e);
    }
    Ok(pk)
}

/// Signs a challenge with the new private key and verifies it with the new public key.
fn check_pair(c: &Ctx, private: ObjectHandle, public: ObjectHandle, alg: Algorithm) -> Result<(), TokenError> {
    let challenge = b"keyport restore: does the unwrapped key match the vault's public key?";
    let (mech, data) = match alg {
        Algorithm::Ed25519 => (Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)), challenge.to_vec()),
        // SoftHSM has no CKM_ECDSA_SHA256: sign the digest (docs/vault.md §2.2).
        Algorithm::EcP256 | Algorithm::EcP384 | Algorithm::EcP521 => (Mechanism::Ecdsa, sha2::Sha256::digest(challenge).to_vec()),
        _ => (Mechanism::Sha256RsaPkcs, challenge.to_vec()),
    };
    let sig = c.ck("C_Sign", c.session.sign(&mech, private, &data))?;
    c.session.verify(&mech, public, &data, &sig).map_err(|_| refused(c, "the unwrapped private key does not match the vault's public key"))
}
