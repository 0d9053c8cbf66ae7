//! Key and certificate objects, following the conventions other PKCS#11 tools understand:
//! a private key, its public key and its certificate share one CKA_ID; CKA_LABEL is the key's
//! name; private keys are CKA_SENSITIVE and CKA_PRIVATE, and CKA_EXTRACTABLE only when the
//! caller asked for an exportable key.
//!
//! One exception, for Ed25519 on tokens that cannot wrap it (SoftHSM 2.6:
//! CKR_KEY_NOT_WRAPPABLE): an *exportable* Ed25519 private key is created with
//! CKA_SENSITIVE=false, so a logged-in session may read its value and export can still work.
//! On such a token that grants nothing that wrapping by any logged-in session would not (an
//! exportable key can be wrapped out by anyone holding the login). The key stays CKA_PRIVATE
//! (invisible without the login); non-exportable keys stay sensitive and unreadable.

/// CKA_SENSITIVE for a new private key (see the module comment).
pub(super) fn sensitive(c: &Ctx, alg: Algorithm, exportable: bool) -> bool {
    !(exportable && alg == Algorithm::Ed25519 && !c.live.mechanisms.ed25519_wrappable)
}

use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, CertificateType, KeyType, ObjectClass, ObjectHandle};

use super::index::Kind;
use super::{Ctx, TokenError};
use crate::material::algorithm::Algorithm;
use crate::material::key::PrivateKey;
use crate::material::spki::PublicKey;

/// Generates a key pair in the token under `id`/`label` and records it in the index.
pub fn generate_key_pair(c: &Ctx, alg: Algorithm, id: &[u8], label: &str, exportable: bool) -> Result<PublicKey, TokenError> {
    let common = |private: bool| {
        vec![Attribute::Token(true), Attribute::Private(private), Attribute::Id(id.to_vec()), Attribute::Label(label.as_bytes().to_vec())]
    };
    let mut public = common(false);
    let mut private = common(true);
    private.extend([Attribute::Sensitive(sensitive(c, alg, exportable)), Attribute::Extractable(exportable), Attribute::Sign(true)]);
    public.push(Attribute::Verify(true));
    let mech = match alg {
        Algorithm::Rsa2048 | Algorithm::Rsa3072 | Algorithm::Rsa4096 => {
            public.extend([
                Attribute::ModulusBits(alg.rsa_bits().expect("rsa").into()),
                Attribute::PublicExponent(vec![1, 0, 1]),
                Attribute::Encrypt(true),
            ]);
            private.push(Attribute::Decrypt(true));
            Mechanism::RsaPkcsKeyPairGen
        }
        Algorithm::EcP256 | Algorithm::EcP384 | Algorithm::EcP521 => {
            public.push(Attribute::EcParams(alg.ec_params().expect("ec").to_vec()));
            private.push(Attribute::Derive(true));
            Mechanism::EccKeyPairGen
        }
        Algorithm::Ed25519 => {
            if !c.live.mechanisms.ec_edwards_keygen {
                return Err(TokenError::Refused {
                    token: c.token.into(),
                    operation: "ed25519 key generation",
                    detail: "the token has no CKM_EC_EDWARDS_KEY_PAIR_GEN".into(),
                });
            }
            public.push(Attribute::EcParams(alg.ec_params().expect("ed").to_vec()));
            Mechanism::EccEdwardsKeyPairGen
        }
    };
    let (pub_h, priv_h) = c.ck("C_GenerateKeyPair", c.session.generate_key_pair(&mech, &public, &private))?;
    {
        let mut idx = c.live.index.write().expect("poisoned");
        idx.insert(id, Kind::Public, pub_h);
        idx.insert(id, Kind::Private, priv_h);
    }
    read_public(c, pub_h)
}

/// Reads a public key object's key material.
pub fn read_public(c: &Ctx, h: ObjectHandle) -> Result<PublicKey, TokenError> {
    let attrs = c.ck(
        "C_GetAttributeValue",
        c.session.get_attributes(
            h,
            &[
                AttributeType::KeyType,
                AttributeType::Modulus,
                AttributeType::PublicExponent,
                AttributeType::EcParams,
                AttributeType::EcPoint,
            ],
        ),
    )?;
    let (mut n, mut e, mut params, mut point) = (None, None, None, None);
    for a in attrs {
        match a {
            Attribute::Modulus(v) => n = Some(v),
            Attribute::PublicExponent(v) => e = Some(v),
            Attribute::EcParams(v) => params = Some(v),
            Attribute::EcPoint(v) => point = Some(v),
            _ => {}
        }
    }
    let refused = |d: String| TokenError::Refused { token: c.token.into(), operation: "reading a public key", detail: d };
    match (n, e, params, point) {
        (Some(modulus), Some(exponent), _, _) => Ok(PublicKey::Rsa { modulus, exponent }),
        (_, _, Some(p), Some(pt)) => PublicKey::from_ec_point(&p, &pt).map_err(|e| refused(e.to_string())),
        _ => Err(refused("the object has neither RSA nor EC public attributes".into())),
    }
}

/// The public key of the key pair with `id`.
pub fn public_key(c: &Ctx, id: &[u8]) -> Result<PublicKey, TokenError> {
    let h = c.live.index.read().expect("poisoned").get(id).and_then(|s| s.public);
    let h = h.ok_or_else(|| TokenError::NotFound { token: c.token.into(), what: format!("public key {}", hex::encode(id)) })?;
    read_public(c, h)
}

/// Destroys every object with `id`. Missing objects are not an error: destroy is idempotent
/// so a retried or repeated delete converges.
pub fn destroy(c: &Ctx, id: &[u8]) -> Result<usize, TokenError> {
    let set = c.live.index.read().expect("poisoned").get(id).cloned();
    let Some(set) = set else { return Ok(0) };
    let (mut n, mut invalid) = (0, 0);
    for h in set.handles() {
        match c.session.destroy_object(h) {
            Ok(()) => n += 1,
            Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::ObjectHandleInvalid, _)) => invalid += 1,
            Err(e) => return Err(TokenError::from_ck(c.token, "C_DestroyObject", e)),
        }
    }
    if invalid > 0 {
        storage_readable(c, id)?;
    }
    c.live.index.write().expect("poisoned").remove(id);
    Ok(n)
}

/// A handle that is suddenly invalid means "already gone" only while the token can still read
/// its other objects. SoftHSM whose token folder went away (unreadable, moved, wiped) answers
/// CKR_OBJECT_HANDLE_INVALID for every object, and the files come back with the folder: a
/// delete that believed that would be acknowledged while its objects stay. So one other
/// indexed object is read; if that fails too, the token's storage is unavailable.
fn storage_readable(c: &Ctx, except: &[u8]) -> Result<(), TokenError> {
    let probe =
        c.live.index.read().expect("poisoned").ids().filter(|(id, _)| id.as_slice() != except).find_map(|(_, s)| s.handles().next());
    let Some(h) = probe else { return Ok(()) };
    match c.session.get_attributes(h, &[AttributeType::Class]) {
        Ok(_) => Ok(()),
        Err(e) => Err(TokenError::Transient {
            token: c.token.into(),
            cure: super::error::Cure::Reinitialize,
            detail: format!(
                "the token cannot read its objects (C_GetAttributeValue: {}): its storage is unavailable",
                match e {
                    cryptoki::error::Error::Pkcs11(rv, _) => super::error::short_rv(rv),
                    other => other.to_string(),
                }
            ),
        }),
    }
}

/// Destroys only the certificate object under `id` (a key sharing the id stays). `false` when
/// there is none.
pub fn destroy_certificate(c: &Ctx, id: &[u8]) -> Result<bool, TokenError> {
    let h = c.live.index.read().expect("poisoned").get(id).and_then(|s| s.certificate);
    let Some(h) = h else { return Ok(false) };
    match c.session.destroy_object(h) {
        Ok(()) | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::ObjectHandleInvalid, _)) => {}
        Err(e) => return Err(TokenError::from_ck(c.token, "C_DestroyObject", e)),
    }
    c.live.index.write().expect("poisoned").remove_certificate(id);
    Ok(true)
}

/// Stores an X.509 certificate next to the key with the same `id`.
pub fn create_certificate(c: &Ctx, id: &[u8], label: &str, der: &[u8], subject_der: &[u8]) -> Result<(), TokenError> {
    let h = c.ck(
        "C_CreateObject",
        c.session.create_object(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Value(der.to_vec()),
            Attribute::Subject(subject_der.to_vec()),
            Attribute::Id(id.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
        ]),
    )?;
    c.live.index.write().expect("poisoned").insert(id, Kind::Certificate, h);
    Ok(())
}

/// The DER of the certificate with `id`, if the token holds one.
pub fn certificate_der(c: &Ctx, id: &[u8]) -> Result<Option<Vec<u8>>, TokenError> {
    let h = c.live.index.read().expect("poisoned").get(id).and_then(|s| s.certificate);
    let Some(h) = h else { return Ok(None) };
    let attrs = c.ck("C_GetAttributeValue", c.session.get_attributes(h, &[AttributeType::Value]))?;
    Ok(attrs.into_iter().find_map(|a| if let Attribute::Value(v) = a { Some(v) } else { None }))
}

/// Signs with the private key `id`: ECDSA over a prehashed digest (raw r‖s), or Ed25519.
pub fn sign(c: &Ctx, id: &[u8], alg: Algorithm, data: &[u8]) -> Result<Vec<u8>, TokenError> {
    let h = c.live.index.read().expect("poisoned").get(id).and_then(|s| s.private);
    let h = h.ok_or_else(|| TokenError::NotFound { token: c.token.into(), what: format!("private key {}", hex::encode(id)) })?;
    let mech = match alg {
        Algorithm::Ed25519 => Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
        Algorithm::EcP256 | Algorithm::EcP384 | Algorithm::EcP521 => Mechanism::Ecdsa,
        _ => Mechanism::Sha256RsaPkcs,
    };
    c.ck("C_Sign", c.session.sign(&mech, h, data))
}

/// Whether a private key is marked extractable in the token (what pkcs11-tool shows).
pub fn is_extractable(c: &Ctx, id: &[u8]) -> Result<Option<bool>, TokenError> {
    let h = c.live.index.read().expect("poisoned").get(id).and_then(|s| s.private);
    let Some(h) = h else { return Ok(None) };
    let attrs = c.ck("C_GetAttributeValue", c.session.get_attributes(h, &[AttributeType::Extractable]))?;
    Ok(attrs.into_iter().find_map(|a| if let Attribute::Extractable(b) = a { Some(b) } else { None }))
}

/// Creates a private key (from its components) and its public key in the token under `id`.
/// Every secret attribute buffer is zeroized after the call, whatever its outcome.
pub fn import_private_key(c: &Ctx, key: &PrivateKey, id: &[u8], label: &str, exportable: bool) -> Result<PublicKey, TokenError> {
    let alg = key.algorithm().map_err(|e| TokenError::Refused { token: c.token.into(), operation: "import", detail: e.to_string() })?;
    let mut private = vec![
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(sensitive(c, alg, exportable)),
        Attribute::Extractable(exportable),
        Attribute::Sign(true),
        Attribute::Id(id.to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    let public = public_template(&key.public_key(), id, label);
    match key {
        PrivateKey::Rsa(k) => {
            private.extend([
                Attribute::KeyType(KeyType::RSA),
                Attribute::Decrypt(true),
                Attribute::Modulus(k.n.clone()),
                Attribute::PublicExponent(k.e.clone()),
                Attribute::PrivateExponent(k.d.to_vec()),
                Attribute::Prime1(k.p.to_vec()),
                Attribute::Prime2(k.q.to_vec()),
                Attribute::Exponent1(k.dp.to_vec()),
                Attribute::Exponent2(k.dq.to_vec()),
                Attribute::Coefficient(k.qinv.to_vec()),
            ]);
        }
        PrivateKey::Ec { d, .. } => {
            let params = alg.ec_params().expect("EC").to_vec();
            private.extend([
                Attribute::KeyType(KeyType::EC),
                Attribute::Derive(true),
                Attribute::EcParams(params),
                Attribute::Value(d.to_vec()),
            ]);
        }
        PrivateKey::Ed25519 { seed, .. } => {
            let params = alg.ec_params().expect("Ed25519").to_vec();
            private.extend([Attribute::KeyType(KeyType::EC_EDWARDS), Attribute::EcParams(params), Attribute::Value(seed.to_vec())]);
        }
    }
    let made = c.session.create_object(&private);
    zeroize_template(&mut private);
    let priv_h = c.ck("C_CreateObject", made)?;
    let pub_h = match c.session.create_object(&public) {
        Ok(h) => h,
        Err(e) => {
            let _ = c.session.destroy_object(priv_h);
            return Err(TokenError::from_ck(c.token, "C_CreateObject", e));
        }
    };
    let mut idx = c.live.index.write().expect("poisoned");
    idx.insert(id, Kind::Private, priv_h);
    idx.insert(id, Kind::Public, pub_h);
    Ok(key.public_key())
}

/// The token public key object for `pk` under `id`/`label` (keyport's attributes).
fn public_template(pk: &PublicKey, id: &[u8], label: &str) -> Vec<Attribute> {
    let mut t = vec![
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Id(id.to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    match pk {
        PublicKey::Rsa { modulus, exponent } => t.extend([
            Attribute::KeyType(KeyType::RSA),
            Attribute::Encrypt(true),
            Attribute::Modulus(modulus.clone()),
            Attribute::PublicExponent(exponent.clone()),
        ]),
        PublicKey::Ec { params, point } => {
            t.extend([Attribute::KeyType(KeyType::EC), Attribute::EcParams(params.clone()), Attribute::EcPoint(der_octet_string(point))])
        }
        PublicKey::Ed25519 { key } => t.extend([
            Attribute::KeyType(KeyType::EC_EDWARDS),
            Attribute::EcParams(Algorithm::Ed25519.ec_params().expect("Ed25519").to_vec()),
            Attribute::EcPoint(der_octet_string(key)),
        ]),
    }
    t
}

/// Creates the public key object of a key pair whose private half is already in the token.
pub fn create_public_key(c: &Ctx, pk: &PublicKey, id: &[u8], label: &str) -> Result<ObjectHandle, TokenError> {
    c.ck("C_CreateObject", c.session.create_object(&public_template(pk, id, label)))
}

/// DER OCTET STRING around a short value (CKA_EC_POINT's encoding).
fn der_octet_string(v: &[u8]) -> Vec<u8> {
    use der::Encode;
    der::asn1::OctetStringRef::new(v).and_then(|o| o.to_der()).expect("an EC point fits a DER OCTET STRING")
}

fn zeroize_template(t: &mut [Attribute]) {
    use zeroize::Zeroize;
    for a in t.iter_mut() {
        match a {
            Attribute::PrivateExponent(v)
            | Attribute::Prime1(v)
            | Attribute::Prime2(v)
            | Attribute::Exponent1(v)
            | Attribute::Exponent2(v)
            | Attribute::Coefficient(v)
            | Attribute::Value(v) => v.zeroize(),
            _ => {}
        }
    }
}
