//! Writing encrypted PKCS#8: PBES2 with PBKDF2-HMAC-SHA256 (10,000 iterations, 8-byte salt)
//! and AES-256-CBC, the parameters vcert writes and every OpenSSL reads.

use pkcs8::der::pem::LineEnding;
use pkcs8::der::Decode;
use rand::RngCore;
use zeroize::Zeroizing;

use crate::material::key::MaterialError;

pub const PBKDF2_ITERATIONS: u32 = 10_000;

/// `-----BEGIN ENCRYPTED PRIVATE KEY-----` PEM of a PKCS#8 DER under `password`.
pub fn encrypt_pkcs8_pem(der: &[u8], password: &[u8]) -> Result<Zeroizing<String>, MaterialError> {
    if password.is_empty() {
        return Err(MaterialError::PasswordRequired);
    }
    let info = pkcs8::PrivateKeyInfo::from_der(der).map_err(|e| MaterialError::Malformed(format!("PKCS#8: {e}")))?;
    let (mut salt, mut iv) = ([0u8; 8], [0u8; 16]);
    rand::rngs::OsRng.fill_bytes(&mut salt);
    rand::rngs::OsRng.fill_bytes(&mut iv);
    let params = pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(PBKDF2_ITERATIONS, &salt, &iv)
        .map_err(|e| MaterialError::Unsupported(format!("PBES2 parameters: {e}")))?;
    let doc = info.encrypt_with_params(params, password).map_err(|e| MaterialError::Unsupported(format!("PKCS#8 encryption: {e}")))?;
    let pem = doc.to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF).map_err(|e| MaterialError::Malformed(e.to_string()))?;
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::material::algorithm::Algorithm;

    #[test]
    fn round_trips_through_our_reader_and_refuses_an_empty_password() {
        let seed = [7u8; 32];
        let der = [hex::decode("302e020100300506032b657004220420").unwrap(), seed.to_vec()].concat();
        let pem = encrypt_pkcs8_pem(&der, b"pw").unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        let key = crate::material::pkcs::read_private_key(pem.as_bytes(), Some(b"pw")).unwrap();
        assert_eq!(key.algorithm().unwrap(), Algorithm::Ed25519);
        assert_eq!(crate::material::pkcs::read_private_key(pem.as_bytes(), Some(b"nope")).unwrap_err(), MaterialError::WrongPassword);
        assert_eq!(encrypt_pkcs8_pem(&der, b"").unwrap_err(), MaterialError::PasswordRequired);
    }
}
