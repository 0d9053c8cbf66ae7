//! Password-based decryption: PBES2 (RFC 8018: PBKDF2 or scrypt, AES-CBC or DES-EDE3-CBC),
//! the PKCS#12 PBE schemes (RFC 7292 Appendix B KDF with SHA-1; 3DES or RC2), and the PKCS#12
//! KDF shared with the PFX MAC. Parameters are checked against `limits` before any key
//! derivation runs.

use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockCipher, BlockDecryptMut, InnerIvInit, KeyInit};
use der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef, UintRef};
use der::{Decode, Reader, SliceReader, Tag};
use sha2::digest::core_api::BlockSizeUser;
use sha2::digest::Digest;
use spki::AlgorithmIdentifierRef;
use zeroize::Zeroizing;

use super::malformed;
use crate::material::key::{MaterialError, Secret};
use crate::material::limits;

const OID_PBES2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.5.13");
const OID_PBKDF2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.5.12");
const OID_SCRYPT: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11591.4.11");

const OID_HMAC_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.2.7");
const OID_HMAC_SHA224: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.2.8");
const OID_HMAC_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.2.9");
const OID_HMAC_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.2.10");
const OID_HMAC_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.2.11");

const OID_AES128_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.2");
const OID_AES192_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.22");
const OID_AES256_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.42");
const OID_AES128_GCM: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.6");
const OID_AES192_GCM: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.26");
const OID_AES256_GCM: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.46");
const OID_DES_EDE3_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.3.7");
const OID_DES_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.7");
const OID_RC2_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.3.2");

/// PKCS#5 v1.5 PBES1 schemes (pbeWithMD2AndDES … pbeWithSHA1AndRC2): arc 1.2.840.113549.1.5.{1,3,4,6,10,11}.
const PBES1_ARC: &str = "1.2.840.113549.1.5.";
/// PKCS#12 PBE schemes: 1.2.840.113549.1.12.1.{1..6}.
const PKCS12_PBE_ARC: &str = "1.2.840.113549.1.12.1.";

const REENCRYPT: &str = "re-encrypt the key with PBES2 (openssl pkcs8 -topk8 -v2 aes-256-cbc)";

/// The password in both forms the schemes want: raw bytes for PBES2, and the PKCS#12
/// BMPString form (UTF-16BE plus two zero bytes) for the PKCS#12 KDF.
pub(crate) struct Password {
    pub raw: Zeroizing<Vec<u8>>,
    pub bmp: Zeroizing<Vec<u8>>,
}

impl Password {
    /// UTF-8 passwords become UTF-16BE; bytes that are not UTF-8 are taken as Latin-1, one
    /// byte per code unit, as OpenSSL does.
    pub fn new(raw: &[u8]) -> Password {
        let mut bmp = Zeroizing::new(Vec::with_capacity(raw.len() * 2 + 2));
        match std::str::from_utf8(raw) {
            Ok(s) => {
                for unit in s.encode_utf16() {
                    bmp.extend_from_slice(&unit.to_be_bytes());
                }
            }
            Err(_) => {
                for &b in raw {
                    bmp.extend_from_slice(&[0, b]);
                }
            }
        }
        bmp.extend_from_slice(&[0, 0]);
        Password { raw: Zeroizing::new(raw.to_vec()), bmp }
    }

    /// The PKCS#12 form without the terminator: OpenSSL's encoding of a *missing* password,
    /// which some PFX files made with an empty password use.
    pub fn without_bmp_terminator(&self) -> Option<Password> {
        if !self.raw.is_empty() {
            return None;
        }
        Some(Password { raw: self.raw.clone(), bmp: Zeroizing::new(Vec::new()) })
    }
}

/// Decrypts `ciphertext` with the scheme in `alg` (PBES2 or PKCS#12 PBE). A padding failure
/// is `WrongPassword`; unsupported schemes, PRFs and ciphers say what to use instead.
pub(crate) fn decrypt(alg: &AlgorithmIdentifierRef<'_>, password: &Password, ciphertext: &[u8]) -> Result<Secret, MaterialError> {
    if alg.oid == OID_PBES2 {
        let params = alg.parameters.ok_or_else(|| MaterialError::Malformed("PBES2 without parameters".into()))?;
        return pbes2_decrypt(params, &password.raw, ciphertext);
    }
    let oid = alg.oid.to_string();
    if let Some(n) = oid.strip_prefix(PKCS12_PBE_ARC) {
        let cipher = match n {
            "3" => P12Cipher::TripleDes3,
            "4" => P12Cipher::TripleDes2,
            "5" => P12Cipher::Rc2 { key_len: 16 },
            "6" => P12Cipher::Rc2 { key_len: 5 },
            "1" | "2" => return Err(MaterialError::Unsupported(format!("PKCS#12 PBE with RC4 ({oid}); {REENCRYPT}"))),
            _ => return Err(MaterialError::Unsupported(format!("encryption scheme {oid}; {REENCRYPT}"))),
        };
        let params = alg.parameters.ok_or_else(|| MaterialError::Malformed("PKCS#12 PBE without parameters".into()))?;
        return pkcs12_pbe_decrypt(cipher, params, &password.bmp, ciphertext);
    }
    if oid.starts_with(PBES1_ARC) {
        return Err(MaterialError::Unsupported(format!("PKCS#5 v1.5 PBES1 encryption ({oid}) is obsolete; {REENCRYPT}")));
    }
    Err(MaterialError::Unsupported(format!("encryption scheme {oid}; {REENCRYPT}")))
}

/// An unsigned INTEGER as u64, saturating: a value too large for u64 is over every cap anyway.
pub(crate) fn read_u64<'a, R: Reader<'a>>(r: &mut R) -> der::Result<u64> {
    let v = UintRef::decode(r)?;
    let bytes = v.as_bytes();
    if bytes.len() > 8 {
        return Ok(u64::MAX);
    }
    Ok(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

pub(crate) fn check_iterations(what: &str, iterations: u64) -> Result<(), MaterialError> {
    if iterations == 0 {
        return Err(MaterialError::Malformed(format!("{what} with zero iterations")));
    }
    if iterations > limits::MAX_PBKDF2_ITERATIONS {
        return Err(MaterialError::KdfTooExpensive(format!(
            "{what} with {iterations} iterations; the limit is {}",
            limits::MAX_PBKDF2_ITERATIONS
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// PBES2

#[derive(Clone, Copy)]
enum Prf {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

enum Kdf<'a> {
    Pbkdf2 { salt: &'a [u8], iterations: u64, key_len: Option<u64>, prf: Prf },
    Scrypt { salt: &'a [u8], log_n: u8, r: u32, p: u32, key_len: Option<u64> },
}

#[derive(Clone, Copy)]
enum Cipher<'a> {
    Aes128(&'a [u8]),
    Aes192(&'a [u8]),
    Aes256(&'a [u8]),
    TripleDes(&'a [u8]),
}

impl Cipher<'_> {
    fn key_len(self) -> usize {
        match self {
            Cipher::Aes128(_) => 16,
            Cipher::Aes192(_) | Cipher::TripleDes(_) => 24,
            Cipher::Aes256(_) => 32,
        }
    }
}

fn pbes2_decrypt(params: AnyRef<'_>, password: &[u8], ciphertext: &[u8]) -> Result<Secret, MaterialError> {
    let (kdf_alg, enc_alg) = params
        .sequence(|r: &mut SliceReader<'_>| Ok((AlgorithmIdentifierRef::decode(r)?, AlgorithmIdentifierRef::decode(r)?)))
        .map_err(|e| malformed("PBES2 parameters", e))?;
    let cipher = parse_cipher(&enc_alg)?;
    let kdf = parse_kdf(&kdf_alg)?;

    // Caps first, then the work.
    let key_len = cipher.key_len();
    let mut key: Secret = Zeroizing::new(vec![0u8; key_len]);
    match kdf {
        Kdf::Pbkdf2 { salt, iterations, key_len: stated, prf } => {
            check_key_len(stated, key_len)?;
            check_iterations("PBKDF2", iterations)?;
            let rounds = u32::try_from(iterations).expect("capped");
            match prf {
                Prf::Sha1 => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, rounds, &mut key),
                Prf::Sha224 => pbkdf2::pbkdf2_hmac::<sha2::Sha224>(password, salt, rounds, &mut key),
                Prf::Sha256 => pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, rounds, &mut key),
                Prf::Sha384 => pbkdf2::pbkdf2_hmac::<sha2::Sha384>(password, salt, rounds, &mut key),
                Prf::Sha512 => pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, salt, rounds, &mut key),
            }
        }
        Kdf::Scrypt { salt, log_n, r, p, key_len: stated } => {
            check_key_len(stated, key_len)?;
            let params =
                scrypt::Params::new(log_n, r, p, key_len).map_err(|_| MaterialError::Malformed("invalid scrypt parameters".into()))?;
            scrypt::scrypt(password, salt, &params, &mut key).map_err(|_| MaterialError::Malformed("invalid scrypt parameters".into()))?;
        }
    }
    match cipher {
        Cipher::Aes128(iv) => cbc_decrypt(aes::Aes128Dec::new_from_slice(&key).expect("key size"), iv, ciphertext),
        Cipher::Aes192(iv) => cbc_decrypt(aes::Aes192Dec::new_from_slice(&key).expect("key size"), iv, ciphertext),
        Cipher::Aes256(iv) => cbc_decrypt(aes::Aes256Dec::new_from_slice(&key).expect("key size"), iv, ciphertext),
        Cipher::TripleDes(iv) => cbc_decrypt(des::TdesEde3::new_from_slice(&key).expect("key size"), iv, ciphertext),
    }
}

fn check_key_len(stated: Option<u64>, needed: usize) -> Result<(), MaterialError> {
    match stated {
        Some(n) if n != needed as u64 => {
            Err(MaterialError::Malformed(format!("the KDF key length {n} does not fit the cipher's {needed}-byte key")))
        }
        _ => Ok(()),
    }
}

fn parse_cipher<'a>(alg: &AlgorithmIdentifierRef<'a>) -> Result<Cipher<'a>, MaterialError> {
    let iv = |len: usize| -> Result<&'a [u8], MaterialError> {
        let iv = alg
            .parameters
            .ok_or_else(|| MaterialError::Malformed("cipher without an IV".into()))?
            .decode_as::<OctetStringRef<'a>>()
            .map_err(|e| malformed("cipher IV", e))?
            .as_bytes();
        if iv.len() != len {
            return Err(MaterialError::Malformed(format!("the cipher IV is {} bytes, expected {len}", iv.len())));
        }
        Ok(iv)
    };
    match alg.oid {
        OID_AES128_CBC => Ok(Cipher::Aes128(iv(16)?)),
        OID_AES192_CBC => Ok(Cipher::Aes192(iv(16)?)),
        OID_AES256_CBC => Ok(Cipher::Aes256(iv(16)?)),
        OID_DES_EDE3_CBC => Ok(Cipher::TripleDes(iv(8)?)),
        OID_AES128_GCM | OID_AES192_GCM | OID_AES256_GCM => Err(MaterialError::Unsupported(format!("AES-GCM inside PBES2; {REENCRYPT}"))),
        OID_DES_CBC => Err(MaterialError::Unsupported(format!("single DES (DES-CBC) is insecure; {REENCRYPT}"))),
        OID_RC2_CBC => Err(MaterialError::Unsupported(format!("RC2-CBC inside PBES2; {REENCRYPT}"))),
        other => Err(MaterialError::Unsupported(format!("PBES2 cipher {other}; {REENCRYPT}"))),
    }
}

fn parse_kdf<'a>(alg: &AlgorithmIdentifierRef<'a>) -> Result<Kdf<'a>, MaterialError> {
    let params = alg.parameters.ok_or_else(|| MaterialError::Malformed("PBES2 KDF without parameters".into()))?;
    match alg.oid {
        OID_PBKDF2 => {
            let (salt, iterations, key_len, prf) = params
                .sequence(|r: &mut SliceReader<'_>| {
                    if r.peek_tag()? != Tag::OctetString {
                        // PBKDF2-params salt CHOICE otherSource: never used in practice.
                        return Err(Tag::OctetString.value_error());
                    }
                    let salt = OctetStringRef::decode(r)?.as_bytes();
                    let iterations = read_u64(r)?;
                    let key_len = if !r.is_finished() && r.peek_tag()? == Tag::Integer { Some(read_u64(r)?) } else { None };
                    let prf = if r.is_finished() { None } else { Some(AlgorithmIdentifierRef::decode(r)?) };
                    Ok((salt, iterations, key_len, prf))
                })
                .map_err(|e| malformed("PBKDF2 parameters", e))?;
            let prf = match prf.map(|p| p.oid) {
                None | Some(OID_HMAC_SHA1) => Prf::Sha1,
                Some(OID_HMAC_SHA224) => Prf::Sha224,
                Some(OID_HMAC_SHA256) => Prf::Sha256,
                Some(OID_HMAC_SHA384) => Prf::Sha384,
                Some(OID_HMAC_SHA512) => Prf::Sha512,
                Some(other) => {
                    return Err(MaterialError::Unsupported(format!(
                        "PBKDF2 PRF {other}; use hmacWithSHA256 (openssl pkcs8 -topk8 -v2 aes-256-cbc -v2prf hmacWithSHA256)"
                    )))
                }
            };
            Ok(Kdf::Pbkdf2 { salt, iterations, key_len, prf })
        }
        OID_SCRYPT => {
            let (salt, n, r, p, key_len) = params
                .sequence(|r: &mut SliceReader<'_>| {
                    let salt = OctetStringRef::decode(r)?.as_bytes();
                    let n = read_u64(r)?;
                    let block = read_u64(r)?;
                    let p = read_u64(r)?;
                    let key_len = if r.is_finished() { None } else { Some(read_u64(r)?) };
                    Ok((salt, n, block, p, key_len))
                })
                .map_err(|e| malformed("scrypt parameters", e))?;
            if n < 2 || !n.is_power_of_two() || r == 0 || p == 0 {
                return Err(MaterialError::Malformed("scrypt parameters out of range (N must be a power of two > 1, r and p > 0)".into()));
            }
            let memory = 128u128 * u128::from(r) * u128::from(n);
            if memory > u128::from(limits::MAX_SCRYPT_MEMORY) {
                return Err(MaterialError::KdfTooExpensive(format!(
                    "scrypt N={n}, r={r} needs {} MiB; the limit is {} MiB",
                    memory / (1024 * 1024),
                    limits::MAX_SCRYPT_MEMORY / (1024 * 1024)
                )));
            }
            if p > limits::MAX_SCRYPT_P {
                return Err(MaterialError::KdfTooExpensive(format!("scrypt p={p}; the limit is {}", limits::MAX_SCRYPT_P)));
            }
            if memory * u128::from(p) > u128::from(limits::MAX_SCRYPT_WORK) {
                return Err(MaterialError::KdfTooExpensive(format!(
                    "scrypt N={n}, r={r}, p={p} is more than 8 times the work of openssl's default (N=16384, r=8, p=1)"
                )));
            }
            let log_n = n.trailing_zeros() as u8;
            Ok(Kdf::Scrypt { salt, log_n, r: r as u32, p: p as u32, key_len })
        }
        other => Err(MaterialError::Unsupported(format!("PBES2 key derivation {other}; use PBKDF2 or scrypt"))),
    }
}

// ---------------------------------------------------------------------------------------------
// PKCS#12 PBE

#[derive(Clone, Copy)]
enum P12Cipher {
    TripleDes3,
    TripleDes2,
    /// RC2-CBC with a key of `key_len` bytes and as many effective bits.
    Rc2 {
        key_len: usize,
    },
}

fn pkcs12_pbe_decrypt(cipher: P12Cipher, params: AnyRef<'_>, bmp_password: &[u8], ciphertext: &[u8]) -> Result<Secret, MaterialError> {
    let (salt, iterations) = params
        .sequence(|r: &mut SliceReader<'_>| Ok((OctetStringRef::decode(r)?.as_bytes(), read_u64(r)?)))
        .map_err(|e| malformed("PKCS#12 PBE parameters", e))?;
    check_iterations("PKCS#12 key derivation", iterations)?;
    let key_len = match cipher {
        P12Cipher::TripleDes3 => 24,
        P12Cipher::TripleDes2 => 16,
        P12Cipher::Rc2 { key_len } => key_len,
    };
    let key = pkcs12_kdf::<sha1::Sha1>(bmp_password, salt, 1, iterations, key_len);
    let iv = pkcs12_kdf::<sha1::Sha1>(bmp_password, salt, 2, iterations, 8);
    match cipher {
        P12Cipher::TripleDes3 => cbc_decrypt(des::TdesEde3::new_from_slice(&key).expect("key size"), &iv, ciphertext),
        P12Cipher::TripleDes2 => cbc_decrypt(des::TdesEde2::new_from_slice(&key).expect("key size"), &iv, ciphertext),
        P12Cipher::Rc2 { key_len } => cbc_decrypt(rc2::Rc2::new_with_eff_key_len(&key, key_len * 8), &iv, ciphertext),
    }
}

/// The RFC 7292 Appendix B.2 key derivation. `password` is already in BMPString form; `id` is
/// 1 for keys, 2 for IVs and 3 for MAC keys. Callers cap `iterations` first.
pub(crate) fn pkcs12_kdf<D: Digest + BlockSizeUser>(password: &[u8], salt: &[u8], id: u8, iterations: u64, n: usize) -> Secret {
    let u = <D as Digest>::output_size();
    let v = <D as BlockSizeUser>::block_size();
    let fill = |x: &[u8]| -> Vec<u8> {
        if x.is_empty() {
            Vec::new()
        } else {
            (0..v * x.len().div_ceil(v)).map(|i| x[i % x.len()]).collect()
        }
    };
    let mut i_block: Secret = Zeroizing::new(fill(salt));
    i_block.extend_from_slice(&Zeroizing::new(fill(password)));
    let diversifier = vec![id; v];
    let mut out: Secret = Zeroizing::new(Vec::with_capacity(n + u));
    loop {
        let mut hasher = D::new();
        hasher.update(&diversifier);
        hasher.update(i_block.as_slice());
        let mut a: Zeroizing<Vec<u8>> = Zeroizing::new(hasher.finalize().to_vec());
        for _ in 1..iterations {
            let next = D::digest(a.as_slice());
            a.copy_from_slice(&next);
        }
        let take = u.min(n - out.len());
        out.extend_from_slice(&a[..take]);
        if out.len() >= n {
            return out;
        }
        // I_j = (I_j + B + 1) mod 2^(8v), B = A repeated to v bytes.
        for chunk in i_block.chunks_mut(v) {
            let mut carry = 1u16;
            for k in (0..v).rev() {
                let sum = u16::from(chunk[k]) + u16::from(a[k % u]) + carry;
                chunk[k] = sum as u8;
                carry = sum >> 8;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CBC

/// CBC decryption with PKCS#7 padding into a zeroizing buffer. Bad padding means the key,
/// hence the password, was wrong.
pub(crate) fn cbc_decrypt<C: BlockDecryptMut + BlockCipher>(cipher: C, iv: &[u8], ciphertext: &[u8]) -> Result<Secret, MaterialError> {
    let block = C::block_size();
    if ciphertext.is_empty() || ciphertext.len() % block != 0 {
        return Err(MaterialError::Malformed("the encrypted data is not a whole number of cipher blocks".into()));
    }
    let dec = cbc::Decryptor::<C>::inner_iv_slice_init(cipher, iv)
        .map_err(|_| MaterialError::Malformed("the cipher IV has the wrong length".into()))?;
    let mut buf: Secret = Zeroizing::new(ciphertext.to_vec());
    let len = dec.decrypt_padded_mut::<Pkcs7>(&mut buf).map_err(|_| MaterialError::WrongPassword)?.len();
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs12_kdf_matches_known_vectors() {
        // Password "smeg", salt 0A58CF64530D823F, 1 iteration, SHA-1: the classic test vector
        // set published with OpenSSL's PKCS#12 KDF (also used by BouncyCastle's tests).
        let pw = Password::new(b"smeg");
        let salt = hex::decode("0A58CF64530D823F").unwrap();
        let key = pkcs12_kdf::<sha1::Sha1>(&pw.bmp, &salt, 1, 1, 24);
        assert_eq!(hex::encode(key.as_slice()), "8aaae6297b6cb04642ab5b077851284eb7128f1a2a7fbca3");
        let iv = pkcs12_kdf::<sha1::Sha1>(&pw.bmp, &salt, 2, 1, 8);
        assert_eq!(hex::encode(iv.as_slice()), "79993dfe048d3b76");
    }

    #[test]
    fn bmp_password_forms() {
        assert_eq!(Password::new(b"ab").bmp.as_slice(), &[0, b'a', 0, b'b', 0, 0]);
        assert_eq!(Password::new("é".as_bytes()).bmp.as_slice(), &[0, 0xe9, 0, 0]);
        assert_eq!(Password::new(&[0xe9]).bmp.as_slice(), &[0, 0xe9, 0, 0]);
        assert_eq!(Password::new(b"").bmp.as_slice(), &[0, 0]);
        assert!(Password::new(b"").without_bmp_terminator().unwrap().bmp.is_empty());
        assert!(Password::new(b"x").without_bmp_terminator().is_none());
    }

    #[test]
    fn caps_are_checked() {
        assert!(matches!(check_iterations("x", 1_000_001), Err(MaterialError::KdfTooExpensive(_))));
        assert!(matches!(check_iterations("x", 0), Err(MaterialError::Malformed(_))));
        assert!(check_iterations("x", 2048).is_ok());
    }
}
