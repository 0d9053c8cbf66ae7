//! Public keys as the token hands them out, turned into a SubjectPublicKeyInfo (SPKI) DER and
//! a fingerprint. The fingerprint (SHA-256 over the SPKI DER) is what duplicate detection and
//! the inventory use; it equals `openssl pkey -pubin -outform DER | sha256sum`.

use der::asn1::{BitString, ObjectIdentifier, OctetStringRef};
use der::{Decode, Encode};
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

use super::algorithm::Algorithm;

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// A public key in the raw pieces PKCS#11 stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    Rsa {
        modulus: Vec<u8>,
        exponent: Vec<u8>,
    },
    /// `point` is the uncompressed SEC1 point (04‖X‖Y); `params` the curve OID in DER.
    Ec {
        params: Vec<u8>,
        point: Vec<u8>,
    },
    Ed25519 {
        key: [u8; 32],
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpkiError {
    #[error("the token returned a malformed public key: {0}")]
    Malformed(&'static str),
    #[error("the curve is not one keyport supports (P-256, P-384, P-521, Ed25519)")]
    UnknownCurve,
}

impl PublicKey {
    /// From CKA_EC_POINT, which PKCS#11 defines as a DER OCTET STRING (SoftHSM follows that;
    /// some tokens hand out the raw point, which is accepted too).
    pub fn from_ec_point(params: &[u8], ec_point: &[u8]) -> Result<PublicKey, SpkiError> {
        let alg = Algorithm::from_ec_params(params).ok_or(SpkiError::UnknownCurve)?;
        let raw = match OctetStringRef::from_der(ec_point) {
            Ok(os) => os.as_bytes().to_vec(),
            Err(_) => ec_point.to_vec(),
        };
        if alg == Algorithm::Ed25519 {
            let key: [u8; 32] = raw.as_slice().try_into().map_err(|_| SpkiError::Malformed("Ed25519 key is not 32 bytes"))?;
            Ok(PublicKey::Ed25519 { key })
        } else {
            if raw.first() != Some(&0x04) {
                return Err(SpkiError::Malformed("EC point is not uncompressed"));
            }
            Ok(PublicKey::Ec { params: params.to_vec(), point: raw })
        }
    }

    pub fn algorithm(&self) -> Result<Algorithm, SpkiError> {
        match self {
            PublicKey::Rsa { modulus, .. } => {
                let m = strip_zeros(modulus);
                let bits = m.len() * 8 - m.first().map_or(8, |b| b.leading_zeros() as usize);
                Algorithm::from_rsa_bits(bits).ok_or(SpkiError::Malformed("RSA modulus size is not 2048, 3072 or 4096 bits"))
            }
            PublicKey::Ec { params, .. } => Algorithm::from_ec_params(params).ok_or(SpkiError::UnknownCurve),
            PublicKey::Ed25519 { .. } => Ok(Algorithm::Ed25519),
        }
    }

    /// DER of the SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Result<Vec<u8>, SpkiError> {
        let bad = |_| SpkiError::Malformed("cannot encode");
        let spki = match self {
            PublicKey::Rsa { modulus, exponent } => {
                let rsa = pkcs1::RsaPublicKey {
                    modulus: der::asn1::UintRef::new(strip_zeros(modulus)).map_err(bad)?,
                    public_exponent: der::asn1::UintRef::new(strip_zeros(exponent)).map_err(bad)?,
                };
                SubjectPublicKeyInfoOwned {
                    algorithm: AlgorithmIdentifierOwned { oid: RSA_ENCRYPTION, parameters: Some(der::asn1::Null.into()) },
                    subject_public_key: BitString::from_bytes(&rsa.to_der().map_err(bad)?).map_err(bad)?,
                }
            }
            PublicKey::Ec { params, point } => SubjectPublicKeyInfoOwned {
                algorithm: AlgorithmIdentifierOwned { oid: EC_PUBLIC_KEY, parameters: Some(der::Any::from_der(params).map_err(bad)?) },
                subject_public_key: BitString::from_bytes(point).map_err(bad)?,
            },
            PublicKey::Ed25519 { key } => SubjectPublicKeyInfoOwned {
                algorithm: AlgorithmIdentifierOwned { oid: ED25519, parameters: None },
                subject_public_key: BitString::from_bytes(key).map_err(bad)?,
            },
        };
        spki.to_der().map_err(bad)
    }

    /// `sha256:<hex>` over the SPKI DER.
    pub fn fingerprint(&self) -> Result<String, SpkiError> {
        Ok(format!("sha256:{}", hex::encode(Sha256::digest(self.spki_der()?))))
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|&x| x != 0).unwrap_or(b.len().saturating_sub(1));
    &b[i..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::material::algorithm::{OID_ED25519, OID_P256};

    #[test]
    fn ed25519_spki_is_the_rfc8410_form() {
        // RFC 8410 §10.1 example public key.
        let key = hex::decode("19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1").unwrap();
        let pk = PublicKey::from_ec_point(OID_ED25519, &[&[0x04, 0x20][..], &key].concat()).unwrap();
        assert_eq!(
            hex::encode(pk.spki_der().unwrap()),
            "302a300506032b657003210019bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1"
        );
    }

    #[test]
    fn ec_point_must_be_uncompressed_and_known_curve() {
        let compressed = [&[0x04, 0x21, 0x02][..], &[7u8; 32]].concat();
        assert!(PublicKey::from_ec_point(OID_P256, &compressed).is_err());
        assert_eq!(PublicKey::from_ec_point(&[0x06, 0x01, 0x00], &[4]), Err(SpkiError::UnknownCurve));
    }

    #[test]
    fn rsa_size_comes_from_the_modulus() {
        let mut modulus = vec![0u8; 256];
        modulus[0] = 0xc1;
        let pk = PublicKey::Rsa { modulus, exponent: vec![1, 0, 1] };
        assert_eq!(pk.algorithm().unwrap(), Algorithm::Rsa2048);
        assert!(pk.fingerprint().unwrap().starts_with("sha256:"));
    }
}
