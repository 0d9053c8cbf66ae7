//! A key file as a person has it (`keyport keys import FILE`, `POST /keyport/v1/keys/import`),
//! decoded into what `import::import_key` takes: any private-key format keyport reads (PEM/DER
//! PKCS#1, SEC1, PKCS#8 plain or encrypted, OpenSSH, PuTTY PPK, ssh.com), or a PKCS#12 file
//! with its certificates; certificates in the same PEM file, or given apart, come along (the
//! one that matches the key first). The passphrase derivation runs in the KDF pool
//! (`kdf`), on behalf of the caller.

use zeroize::Zeroizing;

use super::authz::Principal;
use super::kdf::Cancel;
use super::{App, CoreError};
use crate::material::key::{MaterialError, PrivateKey};
use crate::material::pkcs::pem::looks_like_pem;
use crate::material::{pkcs, x509};

/// PFX: `SEQUENCE { INTEGER 3, … }` (RFC 7292), which no bare private key starts with.
fn looks_like_pkcs12(data: &[u8]) -> bool {
    let header = match data {
        [0x30, 0x80, ..] => 2,
        [0x30, l, ..] if *l < 0x80 => 2,
        [0x30, l, ..] if (0x81..=0x84).contains(l) => 2 + usize::from(l - 0x80),
        _ => return false,
    };
    data.get(header..header + 3) == Some(&[0x02, 0x01, 0x03])
}

/// Decodes `data` (and `certificate`, PEM or DER, when given) into a key and its chain.
pub async fn decode(
    app: &App,
    who: &Principal,
    cancel: &Cancel,
    data: Vec<u8>,
    passphrase: Option<Zeroizing<Vec<u8>>>,
    certificate: Option<Vec<u8>>,
) -> Result<(PrivateKey, Vec<x509::CertInfo>), CoreError> {
    let pkcs12 = looks_like_pkcs12(&data);
    let pem_certs = if !pkcs12 && looks_like_pem(&data) && data.windows(11).any(|w| w == b"CERTIFICATE") {
        x509::parse_certificates(&data).map_err(super::import::material_error)?
    } else {
        Vec::new()
    };
    let (key, der_certs) = app
        .kdf
        .run(&who.name, cancel, move || {
            if pkcs12 {
                let pw = passphrase.ok_or(MaterialError::PasswordRequired)?;
                pkcs::read_pkcs12(&data, &pw)
            } else {
                crate::material::read_private_key(&data, passphrase.as_ref().map(|p| p.as_slice())).map(|k| (k, Vec::new()))
            }
        })
        .await?;
    let mut chain = der_certs
        .iter()
        .map(|d| x509::parse_certificate(d))
        .collect::<Result<Vec<_>, MaterialError>>()
        .map_err(super::import::material_error)?;
    chain.extend(pem_certs);
    if let Some(c) = certificate {
        let given = x509::parse_certificates(&c).map_err(super::import::material_error)?;
        if !given.is_empty() {
            chain = given;
        }
    }
    if let Some(pos) = chain.iter().position(|c| x509::check_matches(c, &key).is_ok()) {
        let leaf = chain.remove(pos);
        chain.insert(0, leaf);
    } else if !chain.is_empty() {
        return Err(super::import::material_error(MaterialError::CertificateMismatch));
    }
    Ok((key, chain))
}

#[cfg(test)]
mod tests {
    #[test]
    fn pkcs12_is_told_from_der_keys() {
        assert!(super::looks_like_pkcs12(&[0x30, 0x82, 0x09, 0x10, 0x02, 0x01, 0x03, 0x30]));
        assert!(super::looks_like_pkcs12(&[0x30, 0x40, 0x02, 0x01, 0x03]));
        // PKCS#1 RSAPrivateKey and PKCS#8 start with version 0.
        assert!(!super::looks_like_pkcs12(&[0x30, 0x82, 0x04, 0xa4, 0x02, 0x01, 0x00]));
        assert!(!super::looks_like_pkcs12(b"-----BEGIN"));
    }
}
