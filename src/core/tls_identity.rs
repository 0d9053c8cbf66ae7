//! The HTTPS listener's own identity when `listen.tls` is self-signed: an ECDSA P-256 key
//! generated in a token (non-extractable, used through PKCS#11 for every handshake) and a
//! self-signed certificate kept in the token beside it, made at first start. The certificate
//! is also written to `<state_dir>/tls-cert.pem` for clients to trust, and its fingerprint is
//! logged. Which token holds them is [`placement`](super::placement)'s rule; `api::tls` only
//! turns the identity into a rustls configuration.

use sha2::{Digest, Sha256};
use std::sync::Arc;

use super::placement::{holds_id, token_for, OwnKey};
use super::App;
use crate::token::reserved::TLS_ID;
use crate::token::signer::TokenSigner;
use crate::token::{objects, Token};

/// The key (a rustls signer over the token) and its certificate.
pub struct TlsIdentity {
    pub signer: TokenSigner,
    pub cert_der: Vec<u8>,
}

/// Why there is no identity to serve HTTPS with.
#[derive(Debug, thiserror::Error)]
pub enum NoIdentity {
    /// The token that holds or may hold it is away: a fault; restart once it is back.
    #[error("{0}")]
    Away(String),
    /// No configured token can hold it: HTTPS is off with this configuration.
    #[error("{0}")]
    Off(String),
}

/// Loads the identity, making the key and the certificate on first start.
pub async fn self_signed(app: &App) -> Result<TlsIdentity, NoIdentity> {
    let token = match token_for(&app.tokens, OwnKey::Tls, |t| holds_id(t, TLS_ID)) {
        Ok(t) => t,
        Err(e) if e.retry => return Err(NoIdentity::Away(e.to_string())),
        Err(e) => return Err(NoIdentity::Off(e.to_string())),
    };
    let away = |m: String| NoIdentity::Away(format!("the self-signed certificate's key in token '{}' cannot be used ({m})", token.name));
    let identity = load_or_make(&token).await.map_err(away)?;
    let pem = format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", wrap64(&base64_std(&identity.cert_der)));
    let pem_path = app.config.state_dir.join("tls-cert.pem");
    std::fs::write(&pem_path, pem).map_err(|e| NoIdentity::Away(format!("cannot write {}: {e}", pem_path.display())))?;
    tracing::info!(sha256 = %hex::encode(Sha256::digest(&identity.cert_der)), file = %pem_path.display(), "TLS certificate (key in token)");
    Ok(identity)
}

async fn load_or_make(token: &Arc<Token>) -> Result<TlsIdentity, String> {
    let (signer, generated) = TokenSigner::load_or_generate(token, TLS_ID, "keyport-tls").await?;
    let stored = if generated { None } else { token.run(|c| objects::certificate_der(c, TLS_ID)).await.map_err(|e| e.to_string())? };
    let cert_der = match stored {
        Some(der) => der,
        None => {
            let mut params =
                rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]).map_err(|e| e.to_string())?;
            params.distinguished_name.push(rcgen::DnType::CommonName, "keyport local API");
            params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
            params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
            let key = signer.clone();
            // rcgen signs synchronously through the token: off the runtime's threads.
            let cert = tokio::task::spawn_blocking(move || params.self_signed(&key))
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
    Ok(TlsIdentity { signer, cert_der })
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
