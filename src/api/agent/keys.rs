//! Between keyport's key and signature types and the agent protocol's (`ssh-key`): public keys
//! go through the SSH wire blob `material::ssh` writes and reads, signatures are encoded as
//! RFC 4253 §6.6 / RFC 5656 §3.1.2 / RFC 8709 §6 say.

use ssh_agent_lib::ssh_encoding::{Decode, Encode};
use ssh_key::public::KeyData;
use ssh_key::{Algorithm, EcdsaCurve, HashAlg, Mpint};

use crate::core::sign::{HashAlg as Hash, Scheme, Signature};
use crate::material::spki::PublicKey;
use crate::material::ssh::try_public_key_blob;

/// The agent protocol's form of a public key; `None` for a key SSH has no name for.
pub fn key_data(pk: &PublicKey) -> Option<KeyData> {
    let blob = try_public_key_blob(pk).ok()?;
    KeyData::decode(&mut &blob[..]).ok()
}

/// The SSH signature for what the token made. `None` when the scheme has no SSH name (the
/// agent only asks for ones that do).
pub fn ssh_signature(sig: &Signature) -> Option<ssh_key::Signature> {
    match sig.scheme {
        Scheme::Rsa(Hash::Sha256) => ssh_key::Signature::new(Algorithm::Rsa { hash: Some(HashAlg::Sha256) }, sig.bytes.clone()).ok(),
        Scheme::Rsa(Hash::Sha512) => ssh_key::Signature::new(Algorithm::Rsa { hash: Some(HashAlg::Sha512) }, sig.bytes.clone()).ok(),
        Scheme::Ecdsa(_) => {
            let curve = match sig.bytes.len() {
                64 => EcdsaCurve::NistP256,
                96 => EcdsaCurve::NistP384,
                132 => EcdsaCurve::NistP521,
                _ => return None,
            };
            let (r, s) = sig.bytes.split_at(sig.bytes.len() / 2);
            let mut data = Vec::new();
            Mpint::from_positive_bytes(r).ok()?.encode(&mut data).ok()?;
            Mpint::from_positive_bytes(s).ok()?.encode(&mut data).ok()?;
            ssh_key::Signature::new(Algorithm::Ecdsa { curve }, data).ok()
        }
        Scheme::Ed25519 => ssh_key::Signature::new(Algorithm::Ed25519, sig.bytes.clone()).ok(),
        _ => None,
    }
}

/// What an SSH client asks for: RSA by the SSH_AGENT_RSA_SHA2_* flags (256 first, as OpenSSH's
/// agent), no flag being SHA-1 `ssh-rsa` (which the core refuses); ECDSA with the curve's hash;
/// Ed25519.
pub fn scheme_for(alg: crate::material::algorithm::Algorithm, flags: u32) -> Scheme {
    use crate::material::algorithm::Algorithm as A;
    match alg {
        A::Rsa2048 | A::Rsa3072 | A::Rsa4096 => {
            if flags & ssh_agent_lib::proto::RSA_SHA2_256 != 0 {
                Scheme::Rsa(Hash::Sha256)
            } else if flags & ssh_agent_lib::proto::RSA_SHA2_512 != 0 {
                Scheme::Rsa(Hash::Sha512)
            } else {
                Scheme::Rsa(Hash::Sha1)
            }
        }
        other => Scheme::default_for(other),
    }
}
