//! Writing "traditional" PEM keys for consumers that want neither PKCS#8 nor an SSH format:
//! PKCS#1 `RSA PRIVATE KEY` and SEC1 `EC PRIVATE KEY` (named curve and public point included,
//! as OpenSSL writes them). Ed25519 has no traditional form (use PKCS#8 or OpenSSH).
//!
//! With a passphrase, OpenSSL's legacy PEM encryption: `Proc-Type: 4,ENCRYPTED`,
//! `DEK-Info: AES-128-CBC,<IV>` (what `ssh-keygen -m PEM` writes; PuTTY reads only this and
//! DES-EDE3-CBC), key = EVP_BytesToKey(MD5, salt = IV[..8], one iteration), PKCS#7 padding.
//! That KDF is a single MD5: it is offered only for legacy consumers; PKCS#8 (PBES2) is the
//! encrypted format to prefer.

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockEncryptMut, KeyIvInit};
use aes::Aes128;
use der::asn1::ObjectIdentifier;
use der::Decode;
use rand::RngCore;
use zeroize::Zeroizing;

use super::legacy::bytes_to_key;
use super::secret_der;
use crate::material::key::{MaterialError, PrivateKey, Secret};

/// The PEM label and the unencrypted DER of the key's traditional form.
pub fn traditional_der(key: &PrivateKey) -> Result<(&'static str, Secret), MaterialError> {
    match key {
        PrivateKey::Rsa(k) => Ok(("RSA PRIVATE KEY", super::keys::pkcs1_der(k)?)),
        PrivateKey::Ec { algorithm, d, point } => {
            let params = algorithm.ec_params().ok_or_else(|| MaterialError::Unsupported("not an EC curve".into()))?;
            let oid = ObjectIdentifier::from_der(params).map_err(|e| MaterialError::Malformed(format!("curve OID: {e}")))?;
            let sec1 =
                sec1::EcPrivateKey { private_key: d, parameters: Some(sec1::EcParameters::NamedCurve(oid)), public_key: Some(point) };
            Ok(("EC PRIVATE KEY", secret_der(&sec1)?))
        }
        PrivateKey::Ed25519 { .. } => {
            Err(MaterialError::Unsupported("Ed25519 keys have no PKCS#1/SEC1 form; export them as PKCS#8 or OpenSSH".into()))
        }
    }
}

/// PKCS#1 (RSA) or SEC1 (EC) PEM; encrypted with the legacy DEK-Info scheme when
/// `passphrase` is given and not empty.
pub fn write_traditional_pem(key: &PrivateKey, passphrase: Option<&[u8]>) -> Result<Zeroizing<String>, MaterialError> {
    let (label, der) = traditional_der(key)?;
    let mut headers = String::new();
    let body: Secret = match passphrase.filter(|p| !p.is_empty()) {
        None => der,
        Some(pw) => {
            let mut iv = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut iv);
            let k = bytes_to_key(pw, &iv[..8], 16);
            let mut buf: Secret = Zeroizing::new(vec![0u8; der.len() + 16]);
            buf[..der.len()].copy_from_slice(&der);
            let n = cbc::Encryptor::<Aes128>::new_from_slices(&k, &iv)
                .map_err(|_| MaterialError::Unsupported("bad cipher parameters".into()))?
                .encrypt_padded_mut::<Pkcs7>(&mut buf, der.len())
                .map_err(|_| MaterialError::Unsupported("bad cipher parameters".into()))?
                .len();
            buf.truncate(n);
            headers = format!("Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,{}\n\n", hex::encode_upper(iv));
            buf
        }
    };
    let out = super::pem::encode(label, &headers, &body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::material::pkcs::read_private_key;

    fn keys() -> Vec<PrivateKey> {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let sk = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let point = sk.public_key().to_encoded_point(false).as_bytes().to_vec();
        let mut out = vec![PrivateKey::Ec {
            algorithm: crate::material::algorithm::Algorithm::EcP256,
            d: Zeroizing::new(sk.to_bytes().to_vec()),
            point,
        }];
        let rsa = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ssh/rustcrypto-ssh-key/id_rsa_3072")).unwrap();
        out.push(crate::material::ssh::read_private_key(&rsa, None).unwrap().0);
        out
    }

    #[test]
    fn round_trips_plain_and_encrypted() {
        for key in keys() {
            let plain = write_traditional_pem(&key, None).unwrap();
            assert!(!plain.contains("ENCRYPTED"));
            assert_eq!(read_private_key(plain.as_bytes(), None).unwrap().public_key(), key.public_key());
            let enc = write_traditional_pem(&key, Some(b"pw")).unwrap();
            assert!(enc.contains("DEK-Info: AES-128-CBC,"));
            assert_eq!(read_private_key(enc.as_bytes(), Some(b"pw")).unwrap().public_key(), key.public_key());
            assert_eq!(read_private_key(enc.as_bytes(), Some(b"nope")).unwrap_err(), MaterialError::WrongPassword);
        }
        let ed = PrivateKey::Ed25519 { seed: Zeroizing::new([1; 32]), public: [0; 32] };
        assert!(matches!(write_traditional_pem(&ed, None), Err(MaterialError::Unsupported(_))));
    }
}
