//! SSH certificates attached to keys: the ssh-agent offers a key that has one also as its
//! `*-cert-v01@openssh.com` identity (see [`super::identities`]), and a sign request naming
//! the certificate signs with the key.
//!
//! Attaching needs `import` on the key's namespace (as importing an X.509 certificate does),
//! detaching `manage` (as deleting one). A certificate is accepted only if it certifies this
//! key's public key, its CA signature verifies, and it has not expired; who issued it is the
//! server's business (`TrustedUserCAKeys`, `@cert-authority`), not keyport's.

use serde::Serialize;
use ssh_key::{Certificate, HashAlg};

use super::super::authz::Principal;
use super::super::keys::audit;
use super::super::{App, CoreError};
use crate::config::Permission;
use crate::material::spki::PublicKey;
use crate::store::records::now;
use crate::store::{KeyRecord, SshCertificateRow};

/// Longest certificate line accepted (OpenSSH certificates of RSA-4096 keys signed by an
/// RSA-4096 CA, with principals and extensions, stay far below).
const MAX_LINE: usize = 64 * 1024;

/// What the native API shows of an attached certificate.
#[derive(Debug, Clone, Serialize)]
pub struct SshCertView {
    pub key_id: String,
    /// The OpenSSH line (`<type> <base64> [comment]`).
    pub certificate: String,
    /// e.g. `ssh-ed25519-cert-v01@openssh.com`.
    #[serde(rename = "type")]
    pub cert_type: String,
    /// `user` or `host`.
    pub kind: &'static str,
    /// The certificate's key identity (`ssh-keygen -s … -I`).
    pub identity: String,
    pub serial: u64,
    pub principals: Vec<String>,
    /// Unix seconds; `valid_before` 18446744073709551615 is "forever".
    pub valid_after: u64,
    pub valid_before: u64,
    /// The CA's key, `SHA256:…` as `ssh-keygen -l` shows it.
    pub ca_fingerprint: String,
    pub attached_by: String,
    pub attached_at: crate::clock::Timestamp,
}

fn view(row: &SshCertificateRow, c: &Certificate) -> SshCertView {
    SshCertView {
        key_id: row.key_id.clone(),
        certificate: row.certificate.clone(),
        cert_type: c.algorithm().to_certificate_type().to_string(),
        kind: if c.cert_type().is_host() { "host" } else { "user" },
        identity: c.key_id().to_string(),
        serial: c.serial(),
        principals: c.valid_principals().to_vec(),
        valid_after: c.valid_after(),
        valid_before: c.valid_before(),
        ca_fingerprint: c.signature_key().fingerprint(HashAlg::Sha256).to_string(),
        attached_by: row.attached_by.clone(),
        attached_at: row.attached_at,
    }
}

fn unix_now() -> u64 {
    crate::clock::Timestamp::now().unix().max(0) as u64
}

/// keyport's form of the certified public key.
pub fn certified_key(c: &Certificate) -> Option<PublicKey> {
    use ssh_agent_lib::ssh_encoding::Encode;
    let mut blob = Vec::new();
    c.public_key().encode(&mut blob).ok()?;
    crate::material::ssh::parse_public_blob(&blob).ok()
}

/// Whether `c` may be offered now: inside its validity window.
pub fn current(c: &Certificate) -> bool {
    let now = unix_now();
    c.valid_after() <= now && now < c.valid_before()
}

/// Reads and checks a certificate for `rec`; the error says what is wrong.
fn check(rec: &KeyRecord, line: &str) -> Result<Certificate, CoreError> {
    let line = line.trim();
    if line.len() > MAX_LINE {
        return Err(CoreError::invalid("invalid_certificate", format!("the certificate is longer than {MAX_LINE} bytes")));
    }
    let c = Certificate::from_openssh(line).map_err(|e| {
        CoreError::invalid(
            "invalid_certificate",
            format!("certificate must be one OpenSSH certificate line as `ssh-keygen -s` writes it (`<type>-cert-v01@openssh.com <base64> [comment]`): {e}"),
        )
    })?;
    let certified = certified_key(&c).and_then(|pk| pk.fingerprint().ok());
    if certified.as_deref() != Some(rec.fingerprint.as_str()) {
        return Err(CoreError::invalid(
            "certificate_key_mismatch",
            format!("the certificate certifies another public key than key '{}'s; sign this key's public key (`keyport keys show`, or `ssh-add -L`)", rec.id),
        ));
    }
    let now = unix_now();
    if c.valid_before() <= now {
        return Err(CoreError::invalid(
            "certificate_expired",
            format!("the certificate expired at {} (Unix time); issue a new one", c.valid_before()),
        ));
    }
    // The CA's signature over the certificate, checked against the CA key it names (a
    // corrupted or hand-edited certificate is refused here, not by every server later). A
    // certificate valid only from a later time may be attached ahead of it.
    let ca = c.signature_key().fingerprint(HashAlg::Sha256);
    c.validate_at(now.max(c.valid_after()), [&ca]).map_err(|_| {
        CoreError::invalid(
            "invalid_certificate",
            "the certificate's CA signature does not verify; attach the certificate exactly as the CA issued it",
        )
    })?;
    Ok(c)
}

fn key_for(app: &App, who: &Principal, key_id: &str) -> Result<KeyRecord, CoreError> {
    super::super::keys::get(app, who, key_id)
}

/// Attaches `line` to key `key_id` (replacing one it had), audited.
pub fn attach(app: &App, who: &Principal, key_id: &str, line: &str) -> Result<SshCertView, CoreError> {
    let rec = key_for(app, who, key_id)?;
    who.require(&rec.namespace, Permission::Import)?;
    let c = check(&rec, line)?;
    let row = SshCertificateRow {
        key_id: rec.id.clone(),
        certificate: c.to_openssh().map_err(|e| CoreError::invalid("invalid_certificate", e.to_string()))?,
        attached_by: who.name.clone(),
        attached_at: now(),
    };
    let detail = serde_json::json!({
        "ssh_certificate": c.algorithm().to_certificate_type(),
        "identity": c.key_id(),
        "serial": c.serial(),
        "ca_fingerprint": c.signature_key().fingerprint(HashAlg::Sha256).to_string(),
    });
    let entry = audit(who, "key.ssh_certificate.attach", &rec.namespace, &rec.id, "ok", Some(detail.to_string()));
    if !app.store.set_ssh_certificate(&row, &entry)? {
        return Err(CoreError::NotFound(format!("no key with id '{key_id}'")));
    }
    tracing::info!(key = %rec.id, principal = ?who.name, identity = ?c.key_id(), serial = c.serial(), "SSH certificate attached");
    Ok(view(&row, &c))
}

/// The certificate attached to key `key_id` (`read` on its namespace, or the owner).
pub fn show(app: &App, who: &Principal, key_id: &str) -> Result<SshCertView, CoreError> {
    let rec = key_for(app, who, key_id)?;
    let row = app.store.ssh_certificate(&rec.id)?.ok_or_else(|| CoreError::NotFound(format!("key '{key_id}' has no SSH certificate")))?;
    let c = Certificate::from_openssh(&row.certificate)
        .map_err(|e| CoreError::Conflict(format!("the stored SSH certificate of key '{key_id}' cannot be read ({e}); attach it again")))?;
    Ok(view(&row, &c))
}

/// Detaches key `key_id`'s certificate, audited (`manage`).
pub fn detach(app: &App, who: &Principal, key_id: &str) -> Result<(), CoreError> {
    let rec = key_for(app, who, key_id)?;
    who.require(&rec.namespace, Permission::Manage)?;
    let entry = audit(who, "key.ssh_certificate.detach", &rec.namespace, &rec.id, "ok", None);
    if !app.store.remove_ssh_certificate(&rec.id, &entry)? {
        return Err(CoreError::NotFound(format!("key '{key_id}' has no SSH certificate")));
    }
    tracing::info!(key = %rec.id, principal = ?who.name, "SSH certificate detached");
    Ok(())
}

/// Every attached certificate that is valid now, by key id. One that cannot be read any more
/// is logged and left out (its key is still offered).
pub(super) fn attached(app: &App) -> Result<std::collections::HashMap<String, Certificate>, CoreError> {
    let mut out = std::collections::HashMap::new();
    for (key_id, line) in app.store.ssh_certificates()? {
        match Certificate::from_openssh(&line) {
            Ok(c) if current(&c) => {
                out.insert(key_id, c);
            }
            Ok(_) => tracing::debug!(key = %key_id, "an expired or not yet valid SSH certificate is not offered"),
            Err(e) => tracing::warn!(key = %key_id, error = %e, "a stored SSH certificate cannot be read; not offered"),
        }
    }
    Ok(out)
}
