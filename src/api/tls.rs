//! TLS for the loopback port. The vendors' SDKs speak HTTPS only, so the default is a
//! self-signed certificate whose key lives in a token (`core::tls_identity` makes and loads
//! both); `listen.tls = { cert, key }` serves PEM files instead. This file only turns either
//! into a rustls configuration.

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use std::sync::Arc;

use crate::core::tls_identity::TlsIdentity;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS with the token-held key and its self-signed certificate.
pub fn self_signed(identity: TlsIdentity) -> Result<rustls::ServerConfig, String> {
    let certified = CertifiedKey::new(vec![CertificateDer::from(identity.cert_der)], Arc::new(identity.signer));
    Ok(rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified))))
}

/// TLS from PEM files (certificate chain and key).
pub fn from_files(cert: &std::path::Path, key: &std::path::Path) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("listen.tls.cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("listen.tls.cert {}: no PEM certificate in the file", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("listen.tls.key {}: {e}", key.display()))?;
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("listen.tls: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn certificate_and_key_files_are_read_and_bad_ones_named() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
        let (c, k) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        assert!(super::from_files(&c, &k).is_ok());
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        assert!(super::from_files(&empty, &k).unwrap_err().contains("no PEM certificate"));
        assert!(super::from_files(&c, &empty).unwrap_err().starts_with("listen.tls.key"));
        assert!(super::from_files(&dir.path().join("none"), &k).unwrap_err().starts_with("listen.tls.cert"));
    }
}
