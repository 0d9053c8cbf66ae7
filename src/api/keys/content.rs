//! Key material as the vendor's bodies carry it: `content` is base64 (of PEM for private and
//! public keys, of the raw bytes for secret keys); raw PEM is accepted too. What the content
//! holds must match `keyType`, and for a secret key its length must fit `algorithm`.

use base64::Engine;
use der::Decode;
use zeroize::Zeroizing;

use crate::material::key::PrivateKey;
use crate::material::spki::PublicKey;
use crate::token::secret::SecretType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Secret,
    Private,
    Public,
}

impl KeyType {
    /// Case-sensitive, as the vendor's JSON bodies are.
    pub fn parse(s: &str) -> Option<KeyType> {
        match s {
            "SECRET_KEY" => Some(KeyType::Secret),
            "PRIVATE_KEY" => Some(KeyType::Private),
            "PUBLIC_KEY" => Some(KeyType::Public),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Secret => "SECRET_KEY",
            KeyType::Private => "PRIVATE_KEY",
            KeyType::Public => "PUBLIC_KEY",
        }
    }
}

pub const KEY_TYPES: &str = "SECRET_KEY, PRIVATE_KEY, PUBLIC_KEY";
pub const ALGORITHMS: &str = "AES, DES, DESede, RSA";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Aes,
    Des,
    DesEde,
    Rsa,
}

impl Alg {
    /// Case-sensitive for JSON bodies; `import-file`'s form field is case-insensitive.
    pub fn parse(s: &str, case_insensitive: bool) -> Option<Alg> {
        let all = [("AES", Alg::Aes), ("DES", Alg::Des), ("DESede", Alg::DesEde), ("RSA", Alg::Rsa)];
        all.into_iter().find(|(n, _)| if case_insensitive { n.eq_ignore_ascii_case(s) } else { *n == s }).map(|(_, a)| a)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Aes => "AES",
            Alg::Des => "DES",
            Alg::DesEde => "DESede",
            Alg::Rsa => "RSA",
        }
    }
}

pub use crate::core::material::Material;

/// The bytes of `content`: raw PEM as is, otherwise base64 (line breaks and spaces ignored, as
/// `base64` without `-w0` writes them).
pub fn decode(content: &str, key_type: KeyType) -> Result<Zeroizing<Vec<u8>>, String> {
    let t = content.trim();
    if t.starts_with("-----BEGIN") {
        return Ok(Zeroizing::new(t.as_bytes().to_vec()));
    }
    let compact: Zeroizing<String> = Zeroizing::new(t.chars().filter(|c| !c.is_whitespace()).collect());
    base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()).map(Zeroizing::new).map_err(|_| {
        format!("Key content is neither PEM nor valid Base64 for key type {}! Send the PEM content Base64-encoded.", key_type.as_str())
    })
}

fn looks_like_pem(b: &[u8]) -> bool {
    b.windows(11).any(|w| w == b"-----BEGIN ")
}

/// The algorithm a secret key of `len` bytes has when the request names none.
fn infer_secret(len: usize) -> Result<Alg, String> {
    match len {
        8 => Ok(Alg::Des),
        16 | 32 => Ok(Alg::Aes),
        24 => {
            Err("algorithm is required for SECRET_KEY! A 24-byte key is AES-192 or DESede. Supported values: AES, DES, DESede, RSA".into())
        }
        n => Err(format!("A SECRET_KEY of {n} bytes is neither AES (16, 24, 32), DES (8) nor DESede (24)!")),
    }
}

/// Reads one environment's material. `algorithm` is the request's (or the key's) when given.
pub fn read(key_type: KeyType, algorithm: Option<Alg>, bytes: &[u8]) -> Result<(Material, Alg), String> {
    match key_type {
        KeyType::Secret => {
            if looks_like_pem(bytes) {
                return Err("Key type SECRET_KEY does not match the content: it is PEM (a PRIVATE_KEY or PUBLIC_KEY?). A SECRET_KEY's content is the Base64 of the raw key bytes.".into());
            }
            let alg = match algorithm {
                Some(Alg::Rsa) => return Err("algorithm RSA does not fit keyType SECRET_KEY! Use AES, DES or DESede.".into()),
                Some(a) => a,
                None => infer_secret(bytes.len())?,
            };
            let kind = match alg {
                Alg::Aes => SecretType::Aes,
                Alg::Des => SecretType::Des,
                _ => SecretType::Des3,
            };
            if !kind.valid_len(bytes.len()) {
                let want = match kind {
                    SecretType::Aes => "16, 24 or 32",
                    SecretType::Des => "8",
                    SecretType::Des3 => "24",
                };
                return Err(format!("A {} key is {want} bytes; the content holds {} bytes!", alg.as_str(), bytes.len()));
            }
            Ok((Material::Secret { kind, value: Zeroizing::new(bytes.to_vec()) }, alg))
        }
        KeyType::Private => {
            check_rsa_algorithm(key_type, algorithm)?;
            match crate::material::read_private_key(bytes, None) {
                Ok(k @ PrivateKey::Rsa(_)) => {
                    k.algorithm().map_err(|e| format!("The private key is not usable: {e}"))?;
                    Ok((Material::Private(k), Alg::Rsa))
                }
                Ok(_) => Err("Only RSA private keys are supported for PRIVATE_KEY!".into()),
                Err(e) => {
                    if read_public(bytes).is_ok() {
                        Err("Key type PRIVATE_KEY does not match the content: it is a public key (use keyType PUBLIC_KEY).".into())
                    } else {
                        Err(format!("The content is not a readable private key: {e}"))
                    }
                }
            }
        }
        KeyType::Public => {
            check_rsa_algorithm(key_type, algorithm)?;
            match read_public(bytes) {
                Ok(p @ PublicKey::Rsa { .. }) => Ok((Material::Public(p), Alg::Rsa)),
                Ok(_) => Err("Only RSA public keys are supported for PUBLIC_KEY!".into()),
                Err(e) => {
                    if crate::material::read_private_key(bytes, None).is_ok() {
                        Err("Key type PUBLIC_KEY does not match the content: it is a private key (use keyType PRIVATE_KEY).".into())
                    } else {
                        Err(format!("The content is not a readable public key: {e}"))
                    }
                }
            }
        }
    }
}

fn check_rsa_algorithm(key_type: KeyType, algorithm: Option<Alg>) -> Result<(), String> {
    match algorithm {
        None | Some(Alg::Rsa) => Ok(()),
        Some(a) => Err(format!("algorithm {} does not fit keyType {}! Use RSA (or leave it out).", a.as_str(), key_type.as_str())),
    }
}

/// A public key: PEM `PUBLIC KEY` (SPKI) or `RSA PUBLIC KEY` (PKCS#1), or the DER of either.
pub fn read_public(bytes: &[u8]) -> Result<PublicKey, String> {
    if looks_like_pem(bytes) {
        let blocks = crate::material::pkcs::pem::parse(bytes).map_err(|e| e.to_string())?;
        let [b] = blocks.as_slice() else { return Err(format!("expected one PEM block, found {}", blocks.len())) };
        return match b.label.as_str() {
            "PUBLIC KEY" => spki_der(&b.der),
            "RSA PUBLIC KEY" => pkcs1_der(&b.der),
            other => Err(format!("a PEM {other} is not a public key")),
        };
    }
    spki_der(bytes).or_else(|_| pkcs1_der(bytes)).map_err(|_| "neither a SubjectPublicKeyInfo nor a PKCS#1 RSA public key".into())
}

fn spki_der(der: &[u8]) -> Result<PublicKey, String> {
    let spki = spki::SubjectPublicKeyInfoOwned::from_der(der).map_err(|e| format!("SubjectPublicKeyInfo: {e}"))?;
    crate::material::x509::public_key_from_spki(&spki).map_err(|e| e.to_string())
}

fn pkcs1_der(der: &[u8]) -> Result<PublicKey, String> {
    let k = pkcs1::RsaPublicKey::from_der(der).map_err(|e| format!("PKCS#1 RSA public key: {e}"))?;
    Ok(PublicKey::Rsa { modulus: k.modulus.as_bytes().to_vec(), exponent: k.public_exponent.as_bytes().to_vec() })
}

/// PEM text of a public key (SPKI), as `openssl pkey -pubout` writes it.
pub fn public_pem(p: &PublicKey) -> Result<String, String> {
    Ok(crate::material::pkcs::pem::encode("PUBLIC KEY", "", &p.spki_der().map_err(|e| e.to_string())?).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_lengths_and_inference() {
        assert!(matches!(read(KeyType::Secret, None, &[1; 8]), Ok((_, Alg::Des))));
        assert!(matches!(read(KeyType::Secret, None, &[1; 32]), Ok((_, Alg::Aes))));
        assert!(read(KeyType::Secret, None, &[1; 24]).unwrap_err().contains("algorithm is required"));
        assert!(matches!(read(KeyType::Secret, Some(Alg::DesEde), &[1; 24]), Ok((_, Alg::DesEde))));
        assert!(read(KeyType::Secret, Some(Alg::Aes), &[1; 8]).is_err());
        assert!(read(KeyType::Secret, Some(Alg::Rsa), &[1; 16]).is_err());
        assert!(read(KeyType::Secret, None, b"-----BEGIN PUBLIC KEY-----\n").unwrap_err().contains("does not match"));
    }

    #[test]
    fn content_is_base64_or_pem() {
        assert_eq!(&decode("AAEC\nAw==", KeyType::Secret).unwrap()[..], &[0, 1, 2, 3]);
        assert!(decode("-----BEGIN X-----", KeyType::Public).unwrap().starts_with(b"-----BEGIN"));
        assert!(decode("%%%", KeyType::Private).unwrap_err().contains("neither PEM nor valid Base64"));
        assert_eq!(Alg::parse("desede", true), Some(Alg::DesEde));
        assert_eq!(Alg::parse("desede", false), None);
    }
}
