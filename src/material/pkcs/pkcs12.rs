//! PKCS#12 / PFX (RFC 7292) in password-integrity mode: the MAC is checked first (a mismatch is
//! a wrong password), then the key bags and certificate bags are read from plain and
//! password-encrypted parts. Handles what `openssl pkcs12 -export` writes (PBES2/PBKDF2/AES-256-CBC,
//! HMAC-SHA-256) and what `-legacy` writes (PBE-SHA1-3DES keys, PBE-SHA1-RC2-40 certificates,
//! HMAC-SHA-1).

use der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef};
use der::{Decode, Reader, SliceReader, Tag, TagMode, TagNumber};
use hmac::digest::core_api::BlockSizeUser;
use hmac::{Mac, SimpleHmac};
use spki::AlgorithmIdentifierRef;

use super::pbe::{self, check_iterations, pkcs12_kdf, read_u64, Password};
use super::{check_size, decrypt_pkcs8, explicit_any, keys, malformed, secret_der};
use crate::material::key::{MaterialError, PrivateKey};
use crate::material::x509;

const OID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const OID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const OID_ENVELOPED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.3");
const OID_ENCRYPTED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.6");

const OID_KEY_BAG: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.1");
const OID_SHROUDED_KEY_BAG: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.2");
const OID_CERT_BAG: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.3");
const OID_SAFE_CONTENTS_BAG: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.6");
const OID_X509_CERT: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.22.1");

const OID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const OID_SHA224: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.4");
const OID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const OID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const OID_PBMAC1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.5.14");

/// How deep safeContentsBag nesting may go.
const MAX_NESTING: usize = 4;
/// At most this many certificates are read from one file.
const MAX_CERTS: usize = 64;
/// At most this many password-based decryptions (each a capped KDF run) per file: one
/// request must not multiply the per-KDF cap by stuffing the file with encrypted parts.
const MAX_DECRYPTIONS: usize = 4;

/// Reads a PFX holding one private key and its certificates. Returns the key and the
/// certificate DERs, leaf first (the certificate whose public key is the key's), then the
/// issuers in chain order, then any others in file order.
pub fn read_pkcs12(data: &[u8], password: &[u8]) -> Result<(PrivateKey, Vec<Vec<u8>>), MaterialError> {
    check_size(data)?;
    let pfx = parse_pfx(data)?;
    let password = match &pfx.mac {
        Some(mac) => verify_mac(mac, pfx.auth_safe, password)?,
        None => Password::new(password),
    };
    let verified = pfx.mac.is_some();

    let parts = parse_seq_of_content_info(pfx.auth_safe).map_err(|e| malformed("PKCS#12 authenticated safe", e))?;
    let encrypted_parts = parts.iter().filter(|(t, _)| *t == OID_ENCRYPTED_DATA).count();
    if encrypted_parts >= MAX_DECRYPTIONS {
        return Err(MaterialError::KdfTooExpensive(format!(
            "{encrypted_parts} password-encrypted parts in one PKCS#12 file; at most {} are read",
            MAX_DECRYPTIONS - 1
        )));
    }
    let mut found = Found::default();
    for (content_type, content) in parts {
        match content_type {
            OID_DATA => {
                let bytes = explicit_octets(content).map_err(|e| malformed("PKCS#12 data part", e))?;
                read_safe_contents(bytes, &password, &mut found, 0)?;
            }
            OID_ENCRYPTED_DATA => {
                let content = content.ok_or_else(|| MaterialError::Malformed("PKCS#12 encrypted part without content".into()))?;
                let (alg, ciphertext) = parse_encrypted_data(content).map_err(|e| malformed("PKCS#12 encrypted part", e))?;
                found.count_decryption()?;
                let plain = pbe::decrypt(&alg, &password, ciphertext)?;
                // The contents must be SafeContents; garbage means the password was wrong
                // (possible only without a MAC, or with a MAC password that differs).
                read_safe_contents(&plain, &password, &mut found, 0).map_err(|e| match e {
                    MaterialError::Malformed(_) if !verified => MaterialError::WrongPassword,
                    e => e,
                })?;
            }
            OID_ENVELOPED_DATA => {
                return Err(MaterialError::Unsupported(
                    "PKCS#12 parts encrypted to a public key (envelopedData); export with password encryption".into(),
                ))
            }
            other => return Err(MaterialError::Unsupported(format!("PKCS#12 content type {other}"))),
        }
    }

    let key = found.keys.pop().ok_or_else(|| MaterialError::Malformed("the PKCS#12 file holds no private key".into()))?;
    let certs = order_chain(&key, found.certs)?;
    Ok((key, certs))
}

struct Pfx<'a> {
    auth_safe: &'a [u8],
    mac: Option<MacData<'a>>,
}

struct MacData<'a> {
    digest_alg: ObjectIdentifier,
    digest: &'a [u8],
    salt: &'a [u8],
    iterations: u64,
}

#[derive(Default)]
struct Found {
    keys: Vec<PrivateKey>,
    certs: Vec<Vec<u8>>,
    decryptions: usize,
}

impl Found {
    fn count_decryption(&mut self) -> Result<(), MaterialError> {
        self.decryptions += 1;
        if self.decryptions > MAX_DECRYPTIONS {
            return Err(MaterialError::KdfTooExpensive(format!(
                "more than {MAX_DECRYPTIONS} password-encrypted parts in one PKCS#12 file"
            )));
        }
        Ok(())
    }

    /// Refuses a second key before any work is spent on it.
    fn expect_first_key(&self) -> Result<(), MaterialError> {
        if self.keys.is_empty() {
            Ok(())
        } else {
            Err(MaterialError::Unsupported("the PKCS#12 file holds more than one private key; export one per file".into()))
        }
    }
}

fn parse_pfx(data: &[u8]) -> Result<Pfx<'_>, MaterialError> {
    let (version, content_type, content, mac) = SliceReader::new(data)
        .and_then(|mut r| {
            let v = r.sequence(|r| {
                let version = read_u64(r)?;
                let (content_type, content) = r.sequence(|r| {
                    let oid = ObjectIdentifier::decode(r)?;
                    Ok((oid, explicit_any(r, TagNumber::N0)?))
                })?;
                let mac = if r.is_finished() {
                    None
                } else {
                    Some(r.sequence(|r| {
                        let (digest_alg, digest) = r.sequence(|r| {
                            let alg = AlgorithmIdentifierRef::decode(r)?;
                            if alg.parameters.is_some_and(|p| !p.is_null()) {
                                return Err(Tag::Null.value_error());
                            }
                            Ok((alg.oid, OctetStringRef::decode(r)?.as_bytes()))
                        })?;
                        let salt = OctetStringRef::decode(r)?.as_bytes();
                        let iterations = if r.is_finished() { 1 } else { read_u64(r)? };
                        Ok(MacData { digest_alg, digest, salt, iterations })
                    })?)
                };
                Ok((version, content_type, content, mac))
            })?;
            r.finish(v)
        })
        .map_err(|e| match e.kind() {
            der::ErrorKind::Length { .. } | der::ErrorKind::Incomplete { .. } => malformed("PKCS#12 file", e),
            _ => MaterialError::Malformed(format!(
                "not a DER PKCS#12 file ({}); BER-encoded files are not supported, re-export with openssl pkcs12",
                e.kind()
            )),
        })?;
    if version != 3 {
        return Err(MaterialError::Unsupported(format!("PKCS#12 version {version}; only version 3 exists")));
    }
    match content_type {
        OID_DATA => {}
        OID_SIGNED_DATA => {
            return Err(MaterialError::Unsupported("PKCS#12 in public-key integrity mode (signedData); export with a password MAC".into()))
        }
        other => return Err(MaterialError::Unsupported(format!("PKCS#12 authenticated-safe type {other}"))),
    }
    let auth_safe = explicit_octets(content).map_err(|e| malformed("PKCS#12 authenticated safe", e))?;
    Ok(Pfx { auth_safe, mac })
}

fn explicit_octets<'a>(content: Option<AnyRef<'a>>) -> der::Result<&'a [u8]> {
    let content =
        content.ok_or_else(|| der::Error::from(der::ErrorKind::TagUnexpected { expected: Some(Tag::OctetString), actual: Tag::Null }))?;
    Ok(content.decode_as::<OctetStringRef<'a>>()?.as_bytes())
}

/// Checks the MAC and returns the password form that verified it (for an empty password,
/// OpenSSL may have used either a two-zero-byte BMPString or none at all).
fn verify_mac(mac: &MacData<'_>, auth_safe: &[u8], password: &[u8]) -> Result<Password, MaterialError> {
    check_iterations("PKCS#12 MAC key derivation", mac.iterations)?;
    let first = Password::new(password);
    let alt = first.without_bmp_terminator();
    for candidate in std::iter::once(first).chain(alt) {
        let ok = match mac.digest_alg {
            OID_SHA1 => mac_ok::<sha1::Sha1>(mac, auth_safe, &candidate),
            OID_SHA224 => mac_ok::<sha2::Sha224>(mac, auth_safe, &candidate),
            OID_SHA256 => mac_ok::<sha2::Sha256>(mac, auth_safe, &candidate),
            OID_SHA384 => mac_ok::<sha2::Sha384>(mac, auth_safe, &candidate),
            OID_SHA512 => mac_ok::<sha2::Sha512>(mac, auth_safe, &candidate),
            OID_PBMAC1 => {
                return Err(MaterialError::Unsupported(
                    "PKCS#12 PBMAC1 integrity (RFC 9579); export with an HMAC-SHA-256 MAC (openssl pkcs12 -export -macalg sha256)".into(),
                ))
            }
            other => return Err(MaterialError::Unsupported(format!("PKCS#12 MAC digest {other}; use SHA-256"))),
        };
        if ok {
            return Ok(candidate);
        }
    }
    Err(MaterialError::WrongPassword)
}

fn mac_ok<D>(mac: &MacData<'_>, auth_safe: &[u8], password: &Password) -> bool
where
    D: sha2::Digest + BlockSizeUser,
{
    let key = pkcs12_kdf::<D>(&password.bmp, mac.salt, 3, mac.iterations, <D as sha2::Digest>::output_size());
    let Ok(mut hmac) = <SimpleHmac<D> as hmac::digest::KeyInit>::new_from_slice(&key) else { return false };
    hmac.update(auth_safe);
    hmac.verify_slice(mac.digest).is_ok()
}

fn parse_seq_of_content_info(der: &[u8]) -> der::Result<Vec<(ObjectIdentifier, Option<AnyRef<'_>>)>> {
    let mut r = SliceReader::new(der)?;
    let v = r.sequence(|r| {
        let mut out = Vec::new();
        while !r.is_finished() {
            out.push(r.sequence(|r| {
                let oid = ObjectIdentifier::decode(r)?;
                Ok((oid, explicit_any(r, TagNumber::N0)?))
            })?);
        }
        Ok(out)
    })?;
    r.finish(v)
}

/// EncryptedData → (content-encryption algorithm, ciphertext).
fn parse_encrypted_data(content: AnyRef<'_>) -> der::Result<(AlgorithmIdentifierRef<'_>, &[u8])> {
    content.sequence(|r: &mut SliceReader<'_>| {
        let _version = read_u64(r)?;
        let v = r.sequence(|r| {
            let _content_type = ObjectIdentifier::decode(r)?;
            let alg = AlgorithmIdentifierRef::decode(r)?;
            let ct = r
                .context_specific::<OctetStringRef<'_>>(TagNumber::N0, TagMode::Implicit)?
                .ok_or_else(|| der::Error::from(der::ErrorKind::TagUnexpected { expected: Some(Tag::OctetString), actual: Tag::Null }))?;
            Ok((alg, ct.as_bytes()))
        })?;
        // Unprotected attributes may follow; nothing in them matters here.
        while !r.is_finished() {
            r.tlv_bytes()?;
        }
        Ok(v)
    })
}

fn read_safe_contents(der: &[u8], password: &Password, found: &mut Found, depth: usize) -> Result<(), MaterialError> {
    if depth > MAX_NESTING {
        return Err(MaterialError::Malformed("PKCS#12 bags nest too deeply".into()));
    }
    let bags = SliceReader::new(der)
        .and_then(|mut r| {
            let v = r.sequence(|r| {
                let mut bags = Vec::new();
                while !r.is_finished() {
                    bags.push(r.sequence(|r| {
                        let oid = ObjectIdentifier::decode(r)?;
                        let value = explicit_any(r, TagNumber::N0)?
                            .ok_or_else(|| der::Error::from(der::ErrorKind::TagUnexpected { expected: None, actual: Tag::Null }))?;
                        // bagAttributes (friendlyName, localKeyId) are not needed.
                        if !r.is_finished() {
                            r.tlv_bytes()?;
                        }
                        Ok((oid, value))
                    })?);
                }
                Ok(bags)
            })?;
            r.finish(v)
        })
        .map_err(|e| malformed("PKCS#12 safe contents", e))?;
    for (oid, value) in bags {
        match oid {
            OID_KEY_BAG => {
                found.expect_first_key()?;
                found.keys.push(keys::from_pkcs8_der(&secret_der(&value)?)?);
            }
            OID_SHROUDED_KEY_BAG => {
                found.expect_first_key()?;
                found.count_decryption()?;
                found.keys.push(decrypt_pkcs8(&secret_der(&value)?, password)?);
            }
            OID_CERT_BAG => {
                let (cert_type, cert) = value
                    .sequence(|r: &mut SliceReader<'_>| {
                        let oid = ObjectIdentifier::decode(r)?;
                        let value = explicit_any(r, TagNumber::N0)?;
                        Ok((oid, value))
                    })
                    .map_err(|e| malformed("PKCS#12 certificate bag", e))?;
                if cert_type != OID_X509_CERT {
                    continue;
                }
                let der = explicit_octets(cert).map_err(|e| malformed("PKCS#12 certificate bag", e))?;
                if found.certs.len() >= MAX_CERTS {
                    return Err(MaterialError::Unsupported(format!("more than {MAX_CERTS} certificates in one PKCS#12 file")));
                }
                found.certs.push(der.to_vec());
            }
            OID_SAFE_CONTENTS_BAG => {
                let inner = secret_der(&value)?;
                read_safe_contents(&inner, password, found, depth + 1)?;
            }
            // CRL, secret and unknown bags carry nothing keyport imports.
            _ => {}
        }
    }
    Ok(())
}

/// Leaf first (its public key is the key's), then each issuer found by subject name, then the
/// rest in file order. A file whose certificates all belong to other keys is refused.
fn order_chain(key: &PrivateKey, certs: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, MaterialError> {
    if certs.is_empty() {
        return Ok(certs);
    }
    let key_spki = key.public_key().spki_der().map_err(|e| MaterialError::Malformed(e.to_string()))?;
    let infos: Vec<Option<x509::CertInfo>> = certs.iter().map(|c| x509::parse_certificate(c).ok()).collect();
    let names: Vec<Option<(Vec<u8>, Vec<u8>)>> = certs.iter().map(|c| x509::subject_and_issuer_der(c).ok()).collect();
    let leaf = infos
        .iter()
        .position(|i| i.as_ref().and_then(|i| i.public_key.spki_der().ok()).as_deref() == Some(key_spki.as_slice()))
        .ok_or(MaterialError::CertificateMismatch)?;
    let mut used = vec![false; certs.len()];
    let mut order = vec![leaf];
    used[leaf] = true;
    let mut current = leaf;
    while let Some((subject, issuer)) = &names[current] {
        if subject == issuer {
            break;
        }
        let Some(next) = (0..certs.len()).find(|&i| !used[i] && names[i].as_ref().is_some_and(|(s, _)| s == issuer)) else {
            break;
        };
        used[next] = true;
        order.push(next);
        current = next;
    }
    order.extend((0..certs.len()).filter(|&i| !used[i]));
    let mut certs: Vec<Option<Vec<u8>>> = certs.into_iter().map(Some).collect();
    Ok(order.into_iter().map(|i| certs[i].take().expect("each index once")).collect())
}
