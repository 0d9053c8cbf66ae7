//! What a new key is made from when a face brings the material itself (the 004 project-key
//! face: secret keys, private keys, RSA public keys), and how it goes into a token.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::create::{Made, Make};
use crate::material::key::PrivateKey;
use crate::material::kind::{KeyKind, SecretKind};
use crate::material::spki::PublicKey;
use crate::token::secret::{self, SecretType};
use crate::token::{objects, TokenError};

/// Decoded material for one key.
pub enum Material {
    Secret { kind: SecretType, value: Zeroizing<Vec<u8>> },
    Private(PrivateKey),
    Public(PublicKey),
}

impl std::fmt::Debug for Material {
    /// Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Material({})", self.inventory_algorithm())
    }
}

impl Material {
    /// What the inventory row's `algorithm` says. An RSA size keyport does not name (the 004
    /// face takes any) is `rsa` / `rsa-public`, as the column always said.
    pub fn inventory_algorithm(&self) -> KeyKind {
        match self {
            Material::Secret { kind: SecretType::Aes, value } => KeyKind::Secret(SecretKind::Aes { bits: value.len() as u16 * 8 }),
            Material::Secret { kind: SecretType::Des, .. } => KeyKind::Secret(SecretKind::Des),
            Material::Secret { kind: SecretType::Des3, .. } => KeyKind::Secret(SecretKind::Des3),
            Material::Private(k) => k.algorithm().map(KeyKind::Pair).unwrap_or_else(|_| KeyKind::Other("rsa".into())),
            Material::Public(p) => p.algorithm().map(KeyKind::Public).unwrap_or_else(|_| KeyKind::Other("rsa-public".into())),
        }
    }

    /// A public key alone has nothing to protect: it is always exportable.
    pub fn exportable(&self, policy: bool) -> bool {
        policy || matches!(self, Material::Public(_))
    }

    /// The token objects of this material; the fingerprint of a secret key is its CKA_ID's.
    pub(crate) fn make(self: Arc<Self>, exportable: bool) -> Make {
        Arc::new(move |c, cka_id, label| {
            let refused = |operation: &'static str, detail: String| TokenError::Refused { token: c.token.into(), operation, detail };
            match &*self {
                Material::Secret { kind, value } => {
                    secret::create_secret_key(c, *kind, value, cka_id, label, exportable)?;
                    Ok(Made { fingerprint: format!("secret:{}", hex::encode(cka_id)), public: None })
                }
                Material::Private(k) => Made::from_public(c, objects::import_private_key(c, k, cka_id, label, exportable)?),
                Material::Public(pk) => {
                    let PublicKey::Rsa { modulus, exponent } = pk else {
                        return Err(refused("public key import", "only RSA".into()));
                    };
                    secret::create_rsa_public_key(c, modulus, exponent, cka_id, label)?;
                    Made::from_public(c, pk.clone())
                }
            }
        })
    }
}
