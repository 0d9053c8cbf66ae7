//! X.509 certificates: what the inventory shows about one (names, serial, validity,
//! fingerprints, public key) and whether it belongs to a private key.

use der::asn1::ObjectIdentifier;
use der::{Decode, Encode, Tag, Tagged};
use sha2::{Digest, Sha256};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::Certificate;

use super::algorithm::Algorithm;
use super::key::{MaterialError, PrivateKey};
use super::pkcs::pem;
use super::spki::PublicKey;

/// Largest certificate file (PEM bundle or DER) accepted.
pub const MAX_CERT_FILE_BYTES: usize = 1024 * 1024;
/// Most certificates read from one bundle.
pub const MAX_CERTS: usize = 100;

const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub der: Vec<u8>,
    /// RFC 4514 string.
    pub subject: String,
    pub issuer: String,
    /// DER of the subject Name, for matching issuers.
    pub subject_der: Vec<u8>,
    /// Lowercase hex of the serial number's magnitude.
    pub serial_hex: String,
    /// RFC 3339 UTC, e.g. `2025-01-31T12:00:00Z`.
    pub not_before: String,
    pub not_after: String,
    /// Lowercase hex digests of the DER.
    pub sha1: String,
    pub sha256: String,
    pub public_key: PublicKey,
}

/// One DER certificate (nothing may follow it).
pub fn parse_certificate(der: &[u8]) -> Result<CertInfo, MaterialError> {
    if der.len() > MAX_CERT_FILE_BYTES {
        return Err(MaterialError::Malformed(format!("the certificate is over {MAX_CERT_FILE_BYTES} bytes")));
    }
    let cert = Certificate::from_der(der).map_err(|e| MaterialError::Malformed(format!("X.509 certificate: {}", e.kind())))?;
    let tbs = &cert.tbs_certificate;
    let enc = |e: der::Error| MaterialError::Malformed(format!("X.509 certificate: {}", e.kind()));
    let serial = tbs.serial_number.as_bytes();
    let serial = match serial.iter().position(|&b| b != 0) {
        Some(i) => &serial[i..],
        None => &serial[serial.len().saturating_sub(1)..],
    };
    Ok(CertInfo {
        der: der.to_vec(),
        subject: tbs.subject.to_string(),
        issuer: tbs.issuer.to_string(),
        subject_der: tbs.subject.to_der().map_err(enc)?,
        serial_hex: hex::encode(serial),
        not_before: rfc3339(tbs.validity.not_before)?,
        not_after: rfc3339(tbs.validity.not_after)?,
        sha1: hex::encode(sha1::Sha1::digest(der)),
        sha256: hex::encode(Sha256::digest(der)),
        public_key: public_key_from_spki(&tbs.subject_public_key_info)?,
    })
}

/// One or more PEM `CERTIFICATE` blocks (other blocks are skipped), or one DER certificate.
pub fn parse_certificates(data: &[u8]) -> Result<Vec<CertInfo>, MaterialError> {
    if data.len() > MAX_CERT_FILE_BYTES {
        return Err(MaterialError::Malformed(format!("certificate files over {MAX_CERT_FILE_BYTES} bytes are refused")));
    }
    if data.first() == Some(&0x30) {
        return Ok(vec![parse_certificate(data)?]);
    }
    if !pem::looks_like_pem(data) {
        return Err(MaterialError::UnknownFormat("the data is neither PEM nor a DER certificate".into()));
    }
    let blocks = pem::parse(data)?;
    let certs: Vec<_> = blocks.iter().filter(|b| b.label == "CERTIFICATE" || b.label == "X509 CERTIFICATE").collect();
    if certs.is_empty() {
        return Err(MaterialError::UnknownFormat("no CERTIFICATE block in the PEM data".into()));
    }
    if certs.len() > MAX_CERTS {
        return Err(MaterialError::Unsupported(format!("more than {MAX_CERTS} certificates in one file")));
    }
    certs.into_iter().map(|b| parse_certificate(&b.der)).collect()
}

/// `CertificateMismatch` unless the certificate's public key is the key's.
pub fn check_matches(cert: &CertInfo, key: &PrivateKey) -> Result<(), MaterialError> {
    let bad = |e: super::spki::SpkiError| MaterialError::Malformed(e.to_string());
    if cert.public_key.spki_der().map_err(bad)? == key.public_key().spki_der().map_err(bad)? {
        Ok(())
    } else {
        Err(MaterialError::CertificateMismatch)
    }
}

/// The DER of a certificate's subject and issuer Names.
pub(crate) fn subject_and_issuer_der(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), MaterialError> {
    let cert = Certificate::from_der(der).map_err(|e| MaterialError::Malformed(format!("X.509 certificate: {}", e.kind())))?;
    let enc = |e: der::Error| MaterialError::Malformed(format!("X.509 certificate: {}", e.kind()));
    Ok((cert.tbs_certificate.subject.to_der().map_err(enc)?, cert.tbs_certificate.issuer.to_der().map_err(enc)?))
}

/// A SubjectPublicKeyInfo as the raw pieces the token uses. RSA of any size; EC on P-256,
/// P-384 and P-521 (compressed points are expanded); Ed25519.
pub fn public_key_from_spki(spki: &SubjectPublicKeyInfoOwned) -> Result<PublicKey, MaterialError> {
    let bits =
        spki.subject_public_key.as_bytes().ok_or_else(|| MaterialError::Malformed("the public key BIT STRING has unused bits".into()))?;
    match spki.algorithm.oid {
        OID_RSA => {
            let rsa = pkcs1::RsaPublicKey::from_der(bits).map_err(|e| MaterialError::Malformed(format!("RSA public key: {}", e.kind())))?;
            Ok(PublicKey::Rsa { modulus: rsa.modulus.as_bytes().to_vec(), exponent: rsa.public_exponent.as_bytes().to_vec() })
        }
        OID_EC => {
            let params = spki
                .algorithm
                .parameters
                .as_ref()
                .filter(|p| p.tag() == Tag::ObjectIdentifier)
                .ok_or_else(|| MaterialError::Unsupported("EC public keys without a named curve".into()))?;
            let params = params.to_der().map_err(|e| MaterialError::Malformed(format!("EC parameters: {}", e.kind())))?;
            let alg = Algorithm::from_ec_params(&params)
                .filter(|a| *a != Algorithm::Ed25519)
                .ok_or_else(|| MaterialError::Unsupported("EC curve other than P-256, P-384, P-521".into()))?;
            let point = uncompressed_point(alg, bits)?;
            Ok(PublicKey::Ec { params, point })
        }
        OID_ED25519 => {
            let key: [u8; 32] = bits.try_into().map_err(|_| MaterialError::Malformed("the Ed25519 public key is not 32 bytes".into()))?;
            Ok(PublicKey::Ed25519 { key })
        }
        other => Err(MaterialError::Unsupported(format!("public key algorithm {other}"))),
    }
}

fn uncompressed_point(alg: Algorithm, bytes: &[u8]) -> Result<Vec<u8>, MaterialError> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let bad = |_| MaterialError::Malformed("the EC public point is not on the curve".into());
    Ok(match alg {
        Algorithm::EcP256 => p256::PublicKey::from_sec1_bytes(bytes).map_err(bad)?.to_encoded_point(false).as_bytes().to_vec(),
        Algorithm::EcP384 => p384::PublicKey::from_sec1_bytes(bytes).map_err(bad)?.to_encoded_point(false).as_bytes().to_vec(),
        _ => p521::PublicKey::from_sec1_bytes(bytes).map_err(bad)?.to_encoded_point(false).as_bytes().to_vec(),
    })
}

fn rfc3339(t: x509_cert::time::Time) -> Result<String, MaterialError> {
    let secs =
        i64::try_from(t.to_unix_duration().as_secs()).map_err(|_| MaterialError::Malformed("certificate time out of range".into()))?;
    let dt =
        time::OffsetDateTime::from_unix_timestamp(secs).map_err(|_| MaterialError::Malformed("certificate time out of range".into()))?;
    dt.format(&time::format_description::well_known::Rfc3339).map_err(|_| MaterialError::Malformed("certificate time out of range".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::material::pkcs::read_private_key;
    use crate::material::pkcs::testutil::{Alg, Work};

    /// `key=value` lines of an `openssl x509 -noout …` run.
    fn fields(w: &Work, cert: &str, args: &[&str]) -> Vec<(String, String)> {
        let mut full = vec!["x509", "-in", cert, "-noout", "-nameopt", "RFC2253", "-dateopt", "iso_8601"];
        full.extend_from_slice(args);
        String::from_utf8(w.run(&full))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
            .collect()
    }

    fn field(fields: &[(String, String)], name: &str) -> String {
        fields.iter().find(|(k, _)| k == name).unwrap_or_else(|| panic!("no {name} in {fields:?}")).1.clone()
    }

    fn fingerprint(w: &Work, cert: &str, alg: &str) -> String {
        let f = fields(w, cert, &["-fingerprint", alg]);
        f[0].1.replace(':', "").to_lowercase()
    }

    #[test]
    fn certificate_fields_match_openssl() {
        let w = Work::new();
        for alg in [Alg::Rsa2048, Alg::P256, Alg::P521, Alg::Ed25519] {
            w.key(alg, "k.pem");
            w.self_signed("k.pem", "/CN=leaf.example/O=keyport test/C=DE", "c.pem");
            let der = w.cert_der("c.pem");
            let info = parse_certificate(&der).unwrap();
            let f = fields(&w, "c.pem", &["-subject", "-issuer", "-serial", "-startdate", "-enddate"]);
            assert_eq!(info.subject, field(&f, "subject"), "{alg:?}");
            assert_eq!(info.issuer, field(&f, "issuer"), "{alg:?}");
            assert_eq!(info.serial_hex, field(&f, "serial").to_lowercase(), "{alg:?}");
            assert_eq!(info.not_before, field(&f, "notBefore").replace(' ', "T"), "{alg:?}");
            assert_eq!(info.not_after, field(&f, "notAfter").replace(' ', "T"), "{alg:?}");
            assert_eq!(info.sha1, fingerprint(&w, "c.pem", "-sha1"));
            assert_eq!(info.sha256, fingerprint(&w, "c.pem", "-sha256"));
            assert_eq!(info.der, der);
            assert_eq!(info.public_key.spki_der().unwrap(), w.public_der("k.pem"), "{alg:?}");
            assert_eq!(info.subject_der, subject_and_issuer_der(&der).unwrap().0);
            let key = read_private_key(&w.read("k.pem"), None).unwrap();
            check_matches(&info, &key).unwrap();
            w.fresh_key(alg, "other.pem");
            let other = read_private_key(&w.read("other.pem"), None).unwrap();
            assert_eq!(check_matches(&info, &other), Err(MaterialError::CertificateMismatch));
        }
    }

    #[test]
    fn compressed_ec_points_are_expanded() {
        let w = Work::new();
        w.key(Alg::P384, "k.pem");
        w.run(&["ec", "-in", "k.pem", "-conv_form", "compressed", "-out", "comp.pem"]);
        w.self_signed("comp.pem", "/CN=compressed", "c.pem");
        let info = parse_certificate(&w.cert_der("c.pem")).unwrap();
        assert_eq!(info.public_key.spki_der().unwrap(), w.public_der("k.pem"));
        check_matches(&info, &read_private_key(&w.read("k.pem"), None).unwrap()).unwrap();
    }

    #[test]
    fn bundles_and_garbage() {
        let w = Work::new();
        w.key(Alg::P256, "root.key");
        w.key(Alg::Ed25519, "leaf.key");
        let root = w.self_signed("root.key", "/CN=Root", "root.crt");
        let leaf = w.issued("leaf.key", "/CN=Leaf", "root.crt", "root.key", false, "leaf.crt");
        // Key blocks and text around certificates are skipped.
        let mut bundle = b"leaf first\n".to_vec();
        bundle.extend(&leaf);
        bundle.extend(w.read("leaf.key"));
        bundle.extend(&root);
        let certs = parse_certificates(&bundle).unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0].subject, "CN=Leaf");
        assert_eq!(certs[0].issuer, "CN=Root");
        assert_eq!(certs[1].subject_der, subject_and_issuer_der(&certs[0].der).unwrap().1);
        let der = w.cert_der("root.crt");
        assert_eq!(parse_certificates(&der).unwrap()[0].der, der);

        for cut in (0..der.len()).step_by(7) {
            assert!(matches!(parse_certificates(&der[..cut]), Err(MaterialError::Malformed(_) | MaterialError::UnknownFormat(_))));
        }
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(parse_certificate(&trailing).is_err());
        assert!(matches!(parse_certificates(&w.read("leaf.key")), Err(MaterialError::UnknownFormat(_))));
        assert!(matches!(parse_certificates(b"hello"), Err(MaterialError::UnknownFormat(_))));
        assert!(matches!(
            parse_certificates(b"-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n"),
            Err(MaterialError::Malformed(_))
        ));
        assert!(matches!(
            parse_certificates(b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"),
            Err(MaterialError::Malformed(_))
        ));
        assert!(parse_certificates(&vec![b'A'; MAX_CERT_FILE_BYTES + 1]).is_err());
    }
}
