//! Private-key readers for the PKCS family, pure functions with no I/O:
//!
//! * PEM or DER, detected: PKCS#1 `RSA PRIVATE KEY`, SEC1 `EC PRIVATE KEY` (PEM ones also with
//!   OpenSSL's legacy `Proc-Type`/`DEK-Info` encryption: AES-128/192/256-CBC, DES-EDE3-CBC),
//!   PKCS#8 `PRIVATE KEY`, and encrypted PKCS#8 `ENCRYPTED PRIVATE KEY` with PBES2 (PBKDF2 with
//!   HMAC-SHA-1/224/256/384/512, or scrypt; AES-128/192/256-CBC or DES-EDE3-CBC) or the PKCS#12
//!   PBE schemes (SHA-1 with 3-key/2-key 3DES, RC2-128, RC2-40).
//! * PKCS#12 / PFX files ([`read_pkcs12`]) with one key and its certificate chain.
//!
//! Not supported, with an error saying so: AES-GCM inside PBES2 (OpenSSL 3.0 refuses to write
//! it: "AEAD ciphers not supported"), PBES1, RC4, single DES, PBMAC1, public-key-protected
//! (envelopedData) PFX parts, BER (indefinite-length) encodings.
//!
//! Every key-derivation parameter is checked against [`crate::material::limits`] before the
//! KDF runs. Error messages never contain key bytes.

mod encrypt;
pub(crate) mod keys;
mod legacy;
pub(crate) mod pbe;
pub mod pem;
mod pkcs12;
pub mod write_traditional;

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;

use der::asn1::OctetStringRef;
use der::{Decode, Encode, Reader, SliceReader};
use spki::AlgorithmIdentifierRef;
use zeroize::Zeroizing;

use crate::material::key::{MaterialError, PrivateKey, Secret};
use crate::material::limits::MAX_KEY_FILE_BYTES;

pub use pkcs12::read_pkcs12;

/// Reads a private key from PEM or DER (see the module docs for the formats). `password` is
/// needed only for encrypted keys and ignored otherwise.
pub fn read_private_key(data: &[u8], password: Option<&[u8]>) -> Result<PrivateKey, MaterialError> {
    check_size(data)?;
    let trimmed = trim_start(data);
    if trimmed.first() == Some(&0x30) {
        return read_der(strip_der_padding(trimmed)?, password);
    }
    if pem::looks_like_pem(data) {
        return read_pem(data, password);
    }
    Err(MaterialError::UnknownFormat("the data is neither PEM nor a DER private key".into()))
}

pub use encrypt::{encrypt_pkcs8_pem, PBKDF2_ITERATIONS};

/// An unencrypted PKCS#8 PrivateKeyInfo in DER (trailing zero padding is tolerated, see
/// [`pkcs8_der_strip_padding`]).
pub fn private_key_from_pkcs8_der(der: &[u8]) -> Result<PrivateKey, MaterialError> {
    check_size(der)?;
    keys::from_pkcs8_der(pkcs8_der_strip_padding(der)?)
}

/// The key as unencrypted PKCS#8 (v1) DER, in a zeroizing buffer.
pub fn to_pkcs8_der(key: &PrivateKey) -> Result<Zeroizing<Vec<u8>>, MaterialError> {
    keys::to_pkcs8_der(key)
}

/// Cuts a DER structure to the length its outer SEQUENCE states and requires everything
/// after it to be zero bytes. SoftHSM pads unwrapped PKCS#8 keys to a multiple of 8 that way.
pub fn pkcs8_der_strip_padding(der: &[u8]) -> Result<&[u8], MaterialError> {
    strip_der_padding(der)
}

fn strip_der_padding(der: &[u8]) -> Result<&[u8], MaterialError> {
    let truncated = || MaterialError::Malformed("the DER data is truncated".into());
    if der.first() != Some(&0x30) {
        return Err(MaterialError::Malformed("the DER data does not start with a SEQUENCE".into()));
    }
    let first = *der.get(1).ok_or_else(truncated)?;
    let (header, len) = match first {
        0..=0x7f => (2usize, usize::from(first)),
        0x81..=0x84 => {
            let n = usize::from(first & 0x7f);
            let bytes = der.get(2..2 + n).ok_or_else(truncated)?;
            (2 + n, bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b)))
        }
        _ => return Err(MaterialError::Malformed("the DER SEQUENCE length is not definite".into())),
    };
    let total = header.checked_add(len).ok_or_else(truncated)?;
    if total > der.len() {
        return Err(truncated());
    }
    if der[total..].iter().any(|&b| b != 0) {
        return Err(MaterialError::Malformed("unexpected data after the DER structure".into()));
    }
    Ok(&der[..total])
}

fn check_size(data: &[u8]) -> Result<(), MaterialError> {
    if data.len() > MAX_KEY_FILE_BYTES {
        return Err(MaterialError::Malformed(format!(
            "the data is {} bytes; key files over {MAX_KEY_FILE_BYTES} bytes are refused",
            data.len()
        )));
    }
    if data.is_empty() {
        return Err(MaterialError::Malformed("the data is empty".into()));
    }
    Ok(())
}

fn trim_start(data: &[u8]) -> &[u8] {
    let data = data.strip_prefix(b"\xef\xbb\xbf").unwrap_or(data);
    let i = data.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(data.len());
    &data[i..]
}

fn read_der(der: &[u8], password: Option<&[u8]>) -> Result<PrivateKey, MaterialError> {
    match keys::classify(der)? {
        keys::DerKind::Pkcs8 => keys::from_pkcs8_der(der),
        keys::DerKind::Pkcs1 => keys::from_pkcs1_der(der),
        keys::DerKind::Sec1 => keys::from_sec1_der(der, None),
        keys::DerKind::EncryptedPkcs8 => {
            let password = password.ok_or(MaterialError::PasswordRequired)?;
            decrypt_pkcs8(der, &pbe::Password::new(password))
        }
    }
}

fn read_pem(data: &[u8], password: Option<&[u8]>) -> Result<PrivateKey, MaterialError> {
    let blocks = pem::parse(data)?;
    let mut found = Vec::new();
    let mut others = Vec::new();
    for block in &blocks {
        match block.label.as_str() {
            "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" => found.push(block),
            "OPENSSH PRIVATE KEY" | "SSH2 ENCRYPTED PRIVATE KEY" => {
                return Err(MaterialError::UnknownFormat("an SSH private key; read it with the SSH key reader".into()))
            }
            "DSA PRIVATE KEY" => return Err(MaterialError::Unsupported("DSA keys; keyport accepts RSA, EC and Ed25519".into())),
            label if label.ends_with("PRIVATE KEY") => {
                return Err(MaterialError::Unsupported(format!("PEM {label}; keyport accepts RSA, EC and Ed25519 keys")))
            }
            label => others.push(label),
        }
    }
    let block = match found.as_slice() {
        [one] => *one,
        [] if others.is_empty() => return Err(MaterialError::UnknownFormat("no PEM block found".into())),
        [] => return Err(MaterialError::UnknownFormat(format!("no private key in the PEM data (found: {})", others.join(", ")))),
        many => return Err(MaterialError::Unsupported(format!("{} private keys in one file; give one at a time", many.len()))),
    };
    let label = block.label.as_str();
    if legacy::is_encrypted(block)? {
        if label == "PRIVATE KEY" || label == "ENCRYPTED PRIVATE KEY" {
            return Err(MaterialError::Unsupported(format!("PEM header encryption on {label}")));
        }
        let password = password.ok_or(MaterialError::PasswordRequired)?;
        let plain = legacy::decrypt(block, password)?;
        // A wrong password passes the padding check about once in 256 tries; then the
        // plaintext is not the DER structure the label promises.
        let der = strip_der_padding(&plain).map_err(|_| MaterialError::WrongPassword)?;
        let structurally_ok = match label {
            "RSA PRIVATE KEY" => pkcs1::RsaPrivateKey::from_der(der).is_ok(),
            _ => keys::classify(der) == Ok(keys::DerKind::Sec1),
        };
        if !structurally_ok {
            return Err(MaterialError::WrongPassword);
        }
        return key_from_labelled_der(label, der);
    }
    match label {
        "ENCRYPTED PRIVATE KEY" => {
            let password = password.ok_or(MaterialError::PasswordRequired)?;
            decrypt_pkcs8(strip_der_padding(&block.der)?, &pbe::Password::new(password))
        }
        _ => key_from_labelled_der(label, strip_der_padding(&block.der)?),
    }
}

fn key_from_labelled_der(label: &str, der: &[u8]) -> Result<PrivateKey, MaterialError> {
    match label {
        "RSA PRIVATE KEY" => keys::from_pkcs1_der(der),
        "EC PRIVATE KEY" => keys::from_sec1_der(der, None),
        _ => keys::from_pkcs8_der(der),
    }
}

/// EncryptedPrivateKeyInfo DER → the key inside.
pub(crate) fn decrypt_pkcs8(der: &[u8], password: &pbe::Password) -> Result<PrivateKey, MaterialError> {
    let plain = decrypt_pkcs8_to_der(der, password)?;
    keys::from_pkcs8_der(&plain)
}

/// EncryptedPrivateKeyInfo DER → the PrivateKeyInfo DER inside, checked to be one.
pub(crate) fn decrypt_pkcs8_to_der(der: &[u8], password: &pbe::Password) -> Result<Secret, MaterialError> {
    let (alg, ciphertext) = SliceReader::new(der)
        .and_then(|mut r| {
            let v = r.sequence(|r| Ok((AlgorithmIdentifierRef::decode(r)?, OctetStringRef::decode(r)?.as_bytes())))?;
            r.finish(v)
        })
        .map_err(|e| malformed("encrypted PKCS#8 key", e))?;
    let plain = pbe::decrypt(&alg, password, ciphertext)?;
    if pkcs8::PrivateKeyInfo::from_der(&plain).is_err() {
        return Err(MaterialError::WrongPassword);
    }
    Ok(plain)
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the submodules and x509.

pub(crate) fn malformed(what: &str, err: der::Error) -> MaterialError {
    MaterialError::Malformed(format!("{what}: {}", err.kind()))
}

/// An `[n] EXPLICIT ANY` field, if present.
pub(crate) fn explicit_any<'a, R: Reader<'a>>(r: &mut R, n: der::TagNumber) -> der::Result<Option<der::asn1::AnyRef<'a>>> {
    Ok(der::asn1::ContextSpecific::<der::asn1::AnyRef<'a>>::decode_explicit(r, n)?.map(|f| f.value))
}

pub(crate) fn strip_zeros(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[i..]
}

/// DER-encodes a value straight into a zeroizing buffer of the exact size.
pub(crate) fn secret_der(value: &impl Encode) -> Result<Secret, MaterialError> {
    let enc = |e: der::Error| MaterialError::Malformed(format!("cannot encode the key: {e}"));
    let len = usize::try_from(value.encoded_len().map_err(enc)?).map_err(enc)?;
    let mut buf: Secret = Zeroizing::new(vec![0u8; len]);
    value.encode_to_slice(&mut buf).map_err(enc)?;
    Ok(buf)
}
