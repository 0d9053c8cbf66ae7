//! The key algorithms keyport creates and names in its API.

use serde::{Deserialize, Serialize};

/// A key-pair algorithm, named as the native API and the store spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    #[serde(rename = "rsa-4096")]
    Rsa4096,
    #[serde(rename = "ec-p256")]
    EcP256,
    #[serde(rename = "ec-p384")]
    EcP384,
    #[serde(rename = "ec-p521")]
    EcP521,
    #[serde(rename = "ed25519")]
    Ed25519,
}

/// DER of the named-curve OIDs, as PKCS#11's CKA_EC_PARAMS wants them.
pub const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
pub const OID_P521: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];
pub const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

impl Algorithm {
    pub const ALL: [Algorithm; 7] = [
        Algorithm::Rsa2048,
        Algorithm::Rsa3072,
        Algorithm::Rsa4096,
        Algorithm::EcP256,
        Algorithm::EcP384,
        Algorithm::EcP521,
        Algorithm::Ed25519,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Rsa2048 => "rsa-2048",
            Algorithm::Rsa3072 => "rsa-3072",
            Algorithm::Rsa4096 => "rsa-4096",
            Algorithm::EcP256 => "ec-p256",
            Algorithm::EcP384 => "ec-p384",
            Algorithm::EcP521 => "ec-p521",
            Algorithm::Ed25519 => "ed25519",
        }
    }

    pub fn parse(s: &str) -> Option<Algorithm> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// RSA modulus size in bits, for RSA algorithms.
    pub fn rsa_bits(self) -> Option<u64> {
        match self {
            Algorithm::Rsa2048 => Some(2048),
            Algorithm::Rsa3072 => Some(3072),
            Algorithm::Rsa4096 => Some(4096),
            _ => None,
        }
    }

    /// CKA_EC_PARAMS (the curve OID in DER) for EC and EdDSA algorithms.
    pub fn ec_params(self) -> Option<&'static [u8]> {
        match self {
            Algorithm::EcP256 => Some(OID_P256),
            Algorithm::EcP384 => Some(OID_P384),
            Algorithm::EcP521 => Some(OID_P521),
            Algorithm::Ed25519 => Some(OID_ED25519),
            _ => None,
        }
    }

    pub fn from_ec_params(params: &[u8]) -> Option<Algorithm> {
        [Algorithm::EcP256, Algorithm::EcP384, Algorithm::EcP521, Algorithm::Ed25519].into_iter().find(|a| a.ec_params() == Some(params))
    }

    pub fn from_rsa_bits(bits: usize) -> Option<Algorithm> {
        match bits {
            2048 => Some(Algorithm::Rsa2048),
            3072 => Some(Algorithm::Rsa3072),
            4096 => Some(Algorithm::Rsa4096),
            _ => None,
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::parse(a.as_str()), Some(a));
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{}\"", a.as_str()));
        }
        assert_eq!(Algorithm::parse("rsa-1024"), None);
    }

    #[test]
    fn curve_oids_map_back() {
        for a in [Algorithm::EcP256, Algorithm::EcP384, Algorithm::EcP521, Algorithm::Ed25519] {
            assert_eq!(Algorithm::from_ec_params(a.ec_params().unwrap()), Some(a));
        }
    }
}
