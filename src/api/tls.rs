//! TLS for the loopback port. The vendors' SDKs speak HTTPS only, so the default is a
//! self-signed certificate made at first start whose ECDSA P-256 key is generated in the first
//! token (non-extractable) and used through PKCS#11 for every handshake. The certificate is
//! kept in the token beside its key and written to `<state_dir>/tls-cert.pem` for clients to
//! trust; its fingerprint is logged.

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use sha2::{Digest, Sha256};
use std::sync::Arc;

use crate::token::signer::TokenSigner;
use crate::token::{objects, Token};

/// CKA_ID and CKA_LABEL of the TLS key and certificate.
pub const TLS_ID: &[u8] = crate::core::placement::OwnKey::Tls.id();

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The self-signed certificate and its token key, made on first start.
pub async fn self_signed(token: &Arc<Token>, state_dir: &std::path::Path) -> Result<rustls::ServerConfig, String> {
    let (key, generated) = TokenSigner::load_or_generate(token, TLS_ID, "keyport-tls").await?;
    let cert = if generated { None } else { token.run(|c| objects::certificate_der(c, TLS_ID)).await.map_err(|e| e.to_string())? };
    let cert = match cert {
        Some(der) => der,
        None => {
            let mut params =
                rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]).map_err(|e| e.to_string())?;
            params.distinguished_name.push(rcgen::DnType::CommonName, "keyport local API");
            params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
            params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
            let signer = key.clone();
            let cert = tokio::task::spawn(async move { params.self_signed(&signer) })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("cannot sign the TLS certificate: {e}"))?;
            let der = cert.der().to_vec();
            let subject = x509_subject(&der)?;
            let d = der.clone();
            token.run(move |c| objects::create_certificate(c, TLS_ID, "keyport-tls", &d, &subject)).await.map_err(|e| e.to_string())?;
            der
        }
    };
    let pem = format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", wrap64(&base64_std(&cert)));
    let pem_path = state_dir.join("tls-cert.pem");
    std::fs::write(&pem_path, pem).map_err(|e| format!("cannot write {}: {e}", pem_path.display()))?;
    tracing::info!(sha256 = %hex::encode(Sha256::digest(&cert)), file = %pem_path.display(), "TLS certificate (key in token)");
    let certified = CertifiedKey::new(vec![CertificateDer::from(cert)], Arc::new(key));
    Ok(rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified))))
}

/// TLS from PEM files (certificate chain and key).
pub fn from_files(cert: &std::path::Path, key: &std::path::Path) -> Result<rustls::ServerConfig, String> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).map_err(|e| format!("listen.tls.cert {}: {e}", cert.display()))?,
    ))
    .collect::<Result<_, _>>()
    .map_err(|e| format!("listen.tls.cert {}: {e}", cert.display()))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).map_err(|e| format!("listen.tls.key {}: {e}", key.display()))?,
    ))
    .map_err(|e| format!("listen.tls.key {}: {e}", key.display()))?
    .ok_or_else(|| format!("listen.tls.key {}: no private key in the file", key.display()))?;
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("listen.tls: {e}"))
}

fn x509_subject(der: &[u8]) -> Result<Vec<u8>, String> {
    use der::{Decode, Encode};
    let c = x509_cert::Certificate::from_der(der).map_err(|e| e.to_string())?;
    c.tbs_certificate.subject.to_der().map_err(|e| e.to_string())
}

fn base64_std(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn wrap64(s: &str) -> String {
    s.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("base64 is ascii")).collect::<Vec<_>>().join("\n")
}
