//! A private key as every reader produces it and the token layer consumes it: the raw
//! components PKCS#11's C_CreateObject wants, each secret in a zeroizing buffer.
//!
//! Readers (`pkcs`, `ssh`, …) turn bytes into a [`PrivateKey`]; the core checks it and hands
//! it to the token. Big integers are unsigned big-endian without leading zeros.

use zeroize::Zeroizing;

use super::algorithm::Algorithm;
use super::spki::PublicKey;

pub type Secret = Zeroizing<Vec<u8>>;

#[derive(Clone)]
pub enum PrivateKey {
    Rsa(RsaKey),
    /// P-256, P-384 or P-521: `d` is the scalar (big-endian, padded to the field size),
    /// `point` the uncompressed public point 04‖X‖Y.
    Ec {
        algorithm: Algorithm,
        d: Secret,
        point: Vec<u8>,
    },
    /// `seed` is the 32-byte RFC 8032 private key; `public` its public key.
    Ed25519 {
        seed: Zeroizing<[u8; 32]>,
        public: [u8; 32],
    },
}

#[derive(Clone)]
pub struct RsaKey {
    pub n: Vec<u8>,
    pub e: Vec<u8>,
    pub d: Secret,
    pub p: Secret,
    pub q: Secret,
    pub dp: Secret,
    pub dq: Secret,
    pub qinv: Secret,
}

impl std::fmt::Debug for PrivateKey {
    /// Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({})", self.algorithm().map(|a| a.as_str()).unwrap_or("unsupported"))
    }
}

impl PrivateKey {
    pub fn algorithm(&self) -> Result<Algorithm, MaterialError> {
        match self {
            PrivateKey::Rsa(_) => {
                self.public_key().algorithm().map_err(|_| MaterialError::Unsupported("RSA keys must be 2048, 3072 or 4096 bits".into()))
            }
            PrivateKey::Ec { algorithm, .. } => Ok(*algorithm),
            PrivateKey::Ed25519 { .. } => Ok(Algorithm::Ed25519),
        }
    }

    pub fn public_key(&self) -> PublicKey {
        match self {
            PrivateKey::Rsa(k) => PublicKey::Rsa { modulus: k.n.clone(), exponent: k.e.clone() },
            PrivateKey::Ec { algorithm, point, .. } => {
                PublicKey::Ec { params: algorithm.ec_params().expect("EC algorithm").to_vec(), point: point.clone() }
            }
            PrivateKey::Ed25519 { public, .. } => PublicKey::Ed25519 { key: *public },
        }
    }
}

/// Why material could not be read. Messages say what is wrong and what to do, and never
/// contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaterialError {
    #[error("wrong password: the key could not be decrypted with the password given")]
    WrongPassword,
    #[error("the key is encrypted; a password is required")]
    PasswordRequired,
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("the data is truncated or malformed: {0}")]
    Malformed(String),
    #[error("key derivation parameters are too expensive ({0}); re-encrypt the key with standard parameters")]
    KdfTooExpensive(String),
    #[error("the certificate does not match the private key")]
    CertificateMismatch,
    #[error("not a recognised key format: {0}")]
    UnknownFormat(String),
}
