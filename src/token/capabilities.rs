//! What a token can do, probed once when it is first opened and kept on the [`super::Token`]:
//! which key pairs it generates (mechanism list and C_GetMechanismInfo key sizes), whether it
//! can wrap private keys out (export, sync), whether it accepts private keys and secret keys
//! created from outside (import, the at-rest key), and whether it encrypts with AES-GCM or
//! decrypts RSA-OAEP (sealing keyport's own secrets). Operations branch on these, never on the
//! token's name; health shows them in plain words ([`Capabilities::describe`]).
//!
//! The mechanism list alone is not enough: tpm2-pkcs11 1.9 lists CKM_AES_KEY_GEN yet answers
//! C_GenerateKey with CKR_FUNCTION_NOT_SUPPORTED, and refuses C_CreateObject of private keys.
//! Those two are probed by trying, with session objects that are destroyed at once.

use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::{Mechanism, MechanismType as M};
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::Session;
use cryptoki::slot::Slot;

use super::module::Module;
use crate::material::algorithm::Algorithm;

/// A token's capabilities (see the module doc).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Capabilities {
    /// Key-pair algorithms the token generates (mechanism present, size within its range).
    pub generates: Vec<Algorithm>,
    /// RSA key-pair generation: smallest and largest modulus in bits.
    pub rsa_bits: Option<(usize, usize)>,
    /// EC key-pair generation: smallest and largest field size in bits.
    pub ec_bits: Option<(usize, usize)>,
    /// Ed25519 generation and signing (CKM_EC_EDWARDS_KEY_PAIR_GEN and CKM_EDDSA).
    pub ed25519: bool,
    /// Private keys can leave the token wrapped (an RFC 5649 key-wrap mechanism): keys here
    /// may be exportable and synced.
    pub wrap_private: bool,
    /// C_CreateObject of a private key works: keys can be imported into this token.
    pub create_private: bool,
    /// C_CreateObject of a secret (AES) key works: secret keys can be imported (the 004 face).
    pub create_secret: bool,
    /// C_GenerateKey of an AES key works.
    pub generate_secret: bool,
    /// C_Encrypt with CKM_AES_GCM works on such a key.
    pub aes_gcm: bool,
    /// CKM_RSA_PKCS_OAEP decryption is offered.
    pub rsa_oaep_decrypt: bool,
    /// Key-pair generation runs in hardware (CKF_HW): keys live in a device, which may hold
    /// only a few of them loaded at a time (a TPM).
    pub hardware: bool,
    /// The token is write-protected (CKF_WRITE_PROTECTED): nothing can be generated, imported
    /// or stored in it (p11-kit's trust module is one).
    pub read_only: bool,
    /// Every mechanism the token lists (names as cryptoki spells them).
    pub mechanisms: Vec<String>,
}

impl Capabilities {
    /// Probes the token on `slot`; `s` is a logged-in session (read-only on a `read_only`
    /// token, where every probe by trying fails).
    pub fn probe(module: &Module, slot: Slot, s: &Session, read_only: bool) -> Capabilities {
        let list = module.ctx.get_mechanism_list(slot).unwrap_or_default();
        let info = |m: M| list.contains(&m).then(|| module.ctx.get_mechanism_info(slot, m).ok()).flatten();
        let range = |m: M| info(m).map(|i| (i.min_key_size(), i.max_key_size()));
        let rsa_bits = range(M::RSA_PKCS_KEY_PAIR_GEN);
        let ec_bits = if list.contains(&M::ECDSA) { range(M::ECC_KEY_PAIR_GEN) } else { None };
        let ed25519 = list.contains(&M::ECC_EDWARDS_KEY_PAIR_GEN) && list.contains(&M::EDDSA);
        let within = |r: Option<(usize, usize)>, bits: usize| r.is_some_and(|(lo, hi)| lo <= bits && bits <= hi);
        let generates = Algorithm::ALL
            .into_iter()
            .filter(|a| match a {
                Algorithm::Rsa2048 | Algorithm::Rsa3072 | Algorithm::Rsa4096 => within(rsa_bits, a.rsa_bits().expect("rsa") as usize),
                Algorithm::EcP256 => within(ec_bits, 256),
                Algorithm::EcP384 => within(ec_bits, 384),
                Algorithm::EcP521 => within(ec_bits, 521),
                Algorithm::Ed25519 => ed25519,
            })
            .collect();
        let wrap_private = [super::CKM_AES_KEY_WRAP_KWP, super::CKM_AES_KEY_WRAP_PAD]
            .into_iter()
            .any(|m| module.raw.mechanism_flags(slot.id(), m).is_some());
        let (generate_secret, aes_gcm) = probe_aes(s);
        let rsa_oaep_decrypt = info(M::RSA_PKCS_OAEP).is_some_and(|i| i.decrypt());
        let hardware = [M::ECC_KEY_PAIR_GEN, M::RSA_PKCS_KEY_PAIR_GEN].into_iter().any(|m| info(m).is_some_and(|i| i.hardware()));
        Capabilities {
            generates,
            rsa_bits,
            ec_bits,
            ed25519,
            wrap_private,
            create_private: probe_create_private(s),
            create_secret: probe_create_secret(s),
            generate_secret,
            aes_gcm,
            rsa_oaep_decrypt,
            hardware,
            read_only,
            mechanisms: list.iter().map(|m| m.to_string()).collect(),
        }
    }

    pub fn can_generate(&self, alg: Algorithm) -> bool {
        self.generates.contains(&alg)
    }

    /// The algorithms it generates, as the API spells them ("rsa-2048, ec-p256").
    pub fn generates_list(&self) -> String {
        if self.generates.is_empty() {
            return "none".into();
        }
        self.generates.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// How keyport can keep its own secrets sealed in this token, if at all.
    pub fn at_rest(&self) -> Option<AtRestKind> {
        if self.generate_secret && self.aes_gcm {
            Some(AtRestKind::AesGcm)
        } else if self.rsa_oaep_decrypt && self.can_generate(Algorithm::Rsa2048) {
            Some(AtRestKind::RsaOaepEnvelope)
        } else {
            None
        }
    }

    /// One sentence per capability, for `GET health` and `keyport health`.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.read_only {
            out.push("read-only token (write-protected): keyport cannot make, import or store any key in it".into());
        }
        let mut gen = Vec::new();
        if let Some((lo, hi)) = self.rsa_bits {
            gen.push(format!("RSA {lo}–{hi} bits"));
        }
        if self.ec_bits.is_some() {
            let curves: Vec<&str> = [(Algorithm::EcP256, "P-256"), (Algorithm::EcP384, "P-384"), (Algorithm::EcP521, "P-521")]
                .into_iter()
                .filter(|(a, _)| self.can_generate(*a))
                .map(|(_, n)| n)
                .collect();
            gen.push(format!("ECDSA {}", curves.join("/")));
        }
        if self.ed25519 {
            gen.push("Ed25519".into());
        }
        out.push(format!(
            "generates {} (keyport algorithms: {}){}",
            if gen.is_empty() { "no key pairs".into() } else { gen.join(", ") },
            self.generates_list(),
            if self.ed25519 { "" } else { "; no Ed25519" }
        ));
        out.push(if self.wrap_private {
            "can wrap private keys out: keys here may be exportable and synced to the vault".into()
        } else {
            "cannot wrap private keys out: keys here are non-extractable, not exportable and not synced (they are used in place)".into()
        });
        out.push(match (self.create_private, self.create_secret) {
            (true, true) => "accepts imported private keys and secret keys".into(),
            (true, false) => "accepts imported private keys; cannot import secret keys (C_CreateObject of an AES key is refused)".into(),
            (false, true) => "cannot import private keys (C_CreateObject of a private key is refused): import into another token; accepts imported secret keys".into(),
            (false, false) => "cannot import private keys or secret keys (C_CreateObject of either is refused): import into another token".into(),
        });
        out.push(match self.at_rest() {
            Some(AtRestKind::AesGcm) => "can seal keyport's own secrets (AES-256-GCM key in the token)".into(),
            Some(AtRestKind::RsaOaepEnvelope) => {
                "no AES key generation with AES-GCM: keyport's own secrets are sealed with an RSA-OAEP key in the token instead".into()
            }
            None => "cannot seal keyport's own secrets (no AES-GCM key generation, no RSA-OAEP decryption)".into(),
        });
        out
    }
}

/// How a token seals keyport's secrets at rest (`at_rest.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AtRestKind {
    /// A non-extractable AES-256 key in the token, C_Encrypt with AES-GCM.
    AesGcm,
    /// A non-extractable RSA-2048 key pair in the token: a fresh AES-256 key per blob,
    /// encrypted with RSA-OAEP; AES-GCM in software.
    RsaOaepEnvelope,
}

/// Generates a session AES-256 key and encrypts 16 bytes with AES-GCM under it.
fn probe_aes(s: &Session) -> (bool, bool) {
    let key = s.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(32.into()),
            Attribute::Token(false),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
        ],
    );
    let Ok(key) = key else { return (false, false) };
    let mut iv = [0u8; 12];
    let gcm = GcmParams::new(&mut iv, b"probe", 128.into()).is_ok_and(|p| s.encrypt(&Mechanism::AesGcm(p), key, &[0u8; 16]).is_ok());
    let _ = s.destroy_object(key);
    (true, gcm)
}

/// Creates a session AES-128 key from a fixed throw-away value (not a secret: it exists only
/// to see whether the token accepts the object).
fn probe_create_secret(s: &Session) -> bool {
    let made = s.create_object(&[
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Encrypt(true),
        Attribute::Value(vec![7u8; 16]),
    ]);
    match made {
        Ok(h) => {
            let _ = s.destroy_object(h);
            true
        }
        Err(_) => false,
    }
}

/// Creates a session P-256 private key from a fixed throw-away scalar (not a secret: it exists
/// only to see whether the token accepts the object).
fn probe_create_private(s: &Session) -> bool {
    let mut d = [0u8; 32];
    d[31] = 7;
    let made = s.create_object(&[
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(KeyType::EC),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Sign(true),
        Attribute::EcParams(crate::material::algorithm::OID_P256.to_vec()),
        Attribute::Value(d.to_vec()),
    ]);
    match made {
        Ok(h) => {
            let _ = s.destroy_object(h);
            true
        }
        Err(_) => false,
    }
}
