//! OpenSSL's traditional PEM encryption: `Proc-Type: 4,ENCRYPTED` and
//! `DEK-Info: <cipher>,<hex IV>` headers, key = EVP_BytesToKey(MD5, salt = first 8 bytes of
//! the IV, one iteration).

use cbc::cipher::KeyInit;
use md5::{Digest, Md5};
use zeroize::Zeroizing;

use super::pbe::cbc_decrypt;
use super::pem::PemBlock;
use crate::material::key::{MaterialError, Secret};

const USE_INSTEAD: &str = "re-encrypt the key with AES-256-CBC (openssl pkcs8 -topk8 -v2 aes-256-cbc)";

/// True when the block carries `Proc-Type: 4,ENCRYPTED`.
pub(crate) fn is_encrypted(block: &PemBlock) -> Result<bool, MaterialError> {
    match block.header("Proc-Type") {
        None => Ok(false),
        Some(v) => {
            let kind = v.split_once(',').map(|(_, k)| k.trim()).unwrap_or("");
            if kind.eq_ignore_ascii_case("ENCRYPTED") {
                Ok(true)
            } else {
                Err(MaterialError::Unsupported(format!("PEM Proc-Type {v:?}; only 4,ENCRYPTED is understood")))
            }
        }
    }
}

/// Decrypts a `Proc-Type: 4,ENCRYPTED` block's contents.
pub(crate) fn decrypt(block: &PemBlock, password: &[u8]) -> Result<Secret, MaterialError> {
    let dek = block.header("DEK-Info").ok_or_else(|| MaterialError::Malformed("encrypted PEM block without a DEK-Info header".into()))?;
    let (cipher, iv_hex) = dek.split_once(',').ok_or_else(|| MaterialError::Malformed("the DEK-Info header has no IV".into()))?;
    let cipher = cipher.trim().to_ascii_uppercase();
    let iv = hex::decode(iv_hex.trim()).map_err(|_| MaterialError::Malformed("the DEK-Info IV is not hex".into()))?;
    let (key_len, iv_len) = match cipher.as_str() {
        "AES-128-CBC" => (16, 16),
        "AES-192-CBC" => (24, 16),
        "AES-256-CBC" => (32, 16),
        "DES-EDE3-CBC" => (24, 8),
        "DES-CBC" => return Err(MaterialError::Unsupported(format!("single DES (DES-CBC) is insecure; {USE_INSTEAD}"))),
        _ => return Err(MaterialError::Unsupported(format!("PEM encryption cipher {cipher}; {USE_INSTEAD}"))),
    };
    if iv.len() != iv_len {
        return Err(MaterialError::Malformed(format!("the DEK-Info IV is {} bytes, {cipher} needs {iv_len}", iv.len())));
    }
    let key = bytes_to_key(password, &iv[..8], key_len);
    let data = block.der.as_slice();
    match cipher.as_str() {
        "AES-128-CBC" => cbc_decrypt(aes::Aes128Dec::new_from_slice(&key).expect("key size"), &iv, data),
        "AES-192-CBC" => cbc_decrypt(aes::Aes192Dec::new_from_slice(&key).expect("key size"), &iv, data),
        "AES-256-CBC" => cbc_decrypt(aes::Aes256Dec::new_from_slice(&key).expect("key size"), &iv, data),
        _ => cbc_decrypt(des::TdesEde3::new_from_slice(&key).expect("key size"), &iv, data),
    }
}

/// EVP_BytesToKey with MD5 and one iteration: D_1 = MD5(pw ‖ salt), D_i = MD5(D_{i−1} ‖ pw ‖ salt),
/// key = D_1 ‖ D_2 ‖ … cut to `len`.
pub(crate) fn bytes_to_key(password: &[u8], salt: &[u8], len: usize) -> Secret {
    let mut out: Secret = Zeroizing::new(Vec::with_capacity(len + 16));
    let mut prev: Option<Zeroizing<[u8; 16]>> = None;
    while out.len() < len {
        let mut h = Md5::new();
        if let Some(p) = &prev {
            h.update(p.as_slice());
        }
        h.update(password);
        h.update(salt);
        let d: Zeroizing<[u8; 16]> = Zeroizing::new(h.finalize().into());
        out.extend_from_slice(d.as_slice());
        prev = Some(d);
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_to_key_is_md5_chained() {
        let salt = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let k = bytes_to_key(b"pw", &salt, 24);
        let d1 = Md5::new().chain_update(b"pw").chain_update(salt).finalize();
        let d2 = Md5::new().chain_update(d1).chain_update(b"pw").chain_update(salt).finalize();
        assert_eq!(&k[..16], &d1[..]);
        assert_eq!(&k[16..], &d2[..8]);
    }
}
