//! A non-extractable ECDSA P-256 key pair that keyport keeps in the token for its own use (the
//! HTTPS server's key, the vault client key), as rustls and rcgen want a signer: every TLS
//! handshake and every certificate or CSR it signs goes through PKCS#11.

use rustls::sign::Signer;
use rustls::{SignatureAlgorithm, SignatureScheme};
use sha2::{Digest, Sha256};
use std::sync::Arc;

use super::{objects, Token, TokenError};
use crate::material::algorithm::Algorithm;
use crate::material::spki::PublicKey;

/// A P-256 private key in the token, found by its CKA_ID.
#[derive(Clone)]
pub struct TokenSigner {
    token: Arc<Token>,
    id: Vec<u8>,
    /// Uncompressed SEC1 point, for rcgen's SubjectPublicKeyInfo.
    point: Vec<u8>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenSigner({}, {})", self.token.name, String::from_utf8_lossy(&self.id))
    }
}

impl TokenSigner {
    /// The key pair under `id`, generated (non-extractable, `label`) when the token has none;
    /// `true` when it was generated now. A half pair (one object lost) is replaced, together
    /// with whatever else carried the id (a certificate of the old key).
    ///
    /// Serialized per token and CKA_ID within the process: two callers at once (two `sync csr`
    /// requests, a CSR during startup) would otherwise both see no key and each destroy the
    /// other's fresh one.
    pub async fn load_or_generate(token: &Arc<Token>, id: &'static [u8], label: &'static str) -> Result<(TokenSigner, bool), String> {
        type Locks = std::sync::Mutex<std::collections::HashMap<(String, &'static [u8]), Arc<tokio::sync::Mutex<()>>>>;
        static LOCKS: std::sync::LazyLock<Locks> = std::sync::LazyLock::new(Default::default);
        let lock = LOCKS.lock().unwrap_or_else(|e| e.into_inner()).entry((token.name.clone(), id)).or_default().clone();
        let _one_at_a_time = lock.lock().await;
        if let Some(s) = TokenSigner::load(token, id).await? {
            return Ok((s, false));
        }
        let pk = token
            .run(move |c| {
                objects::destroy(c, id)?;
                objects::generate_key_pair(c, Algorithm::EcP256, id, label, false)
            })
            .await
            .map_err(|e| format!("cannot generate the {label} key in token '{}': {e}", token.name))?;
        let PublicKey::Ec { point, .. } = pk else { return Err(format!("the {label} key in token '{}' is not an EC key", token.name)) };
        Ok((TokenSigner { token: token.clone(), id: id.to_vec(), point }, true))
    }

    /// The P-256 key pair under `id` if the token holds one (never generates).
    pub async fn load(token: &Arc<Token>, id: &'static [u8]) -> Result<Option<TokenSigner>, String> {
        let pk = token
            .run(move |c| {
                let has = c.live.index.read().expect("poisoned").get(id).is_some_and(|s| s.private.is_some() && s.public.is_some());
                if has {
                    objects::public_key(c, id).map(Some)
                } else {
                    Ok(None)
                }
            })
            .await
            .map_err(|e| e.to_string())?;
        Ok(match pk {
            Some(PublicKey::Ec { point, .. }) => Some(TokenSigner { token: token.clone(), id: id.to_vec(), point }),
            _ => None,
        })
    }

    pub fn token(&self) -> &Arc<Token> {
        &self.token
    }

    /// The public key's SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> Result<Vec<u8>, String> {
        PublicKey::Ec { params: Algorithm::EcP256.ec_params().expect("ec").to_vec(), point: self.point.clone() }
            .spki_der()
            .map_err(|e| e.to_string())
    }

    /// ECDSA-SHA256 through the token, DER-encoded as TLS and X.509 both want it. Blocks this
    /// runtime worker (rustls and rcgen ask synchronously); needs the multi-threaded runtime.
    fn sign_der(&self, message: &[u8]) -> Result<Vec<u8>, TokenError> {
        let digest = Sha256::digest(message).to_vec();
        let id = self.id.clone();
        let rs = self.token.run_in_place(move |c| objects::sign(c, &id, Algorithm::EcP256, &digest))?;
        let sig = p256::ecdsa::Signature::from_slice(&rs).map_err(|e| TokenError::Refused {
            token: self.token.name.clone(),
            operation: "ECDSA signature",
            detail: e.to_string(),
        })?;
        Ok(sig.to_der().as_bytes().to_vec())
    }
}

impl rustls::sign::SigningKey for TokenSigner {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered.contains(&SignatureScheme::ECDSA_NISTP256_SHA256).then(|| Box::new(self.clone()) as Box<dyn Signer>)
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

impl Signer for TokenSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.sign_der(message).map_err(|e| rustls::Error::General(e.to_string()))
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP256_SHA256
    }
}

impl rcgen::PublicKeyData for TokenSigner {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for TokenSigner {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.sign_der(msg).map_err(|_| rcgen::Error::RemoteKeyError)
    }
}
