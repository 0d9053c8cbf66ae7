//! The export formats every face offers, in one place: which names mean which encoding, which
//! key types each can hold, the passphrase policy, and the encoding itself (off the async
//! runtime: the KDFs cost 0.05-0.2 s of CPU).

use zeroize::Zeroizing;

use super::authz::Principal;
use super::export::Protection;
use super::{App, CoreError};
use crate::material::key::PrivateKey;
use crate::material::pkcs;
use crate::material::ssh::write_ppk::PpkVersion;
use crate::material::ssh::write_sshcom::Style;
use crate::material::ssh::{write_openssh, write_ppk, write_sshcom};
use crate::store::KeyRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// PKCS#8 PEM: PBES2 (PBKDF2-SHA256, AES-256-CBC) with a passphrase, plain without.
    Pkcs8,
    /// PKCS#1 (RSA) or SEC1 (EC) PEM; legacy DEK-Info AES-128-CBC with a passphrase.
    Traditional,
    /// openssh-key-v1, aes256-ctr + bcrypt_pbkdf (16 rounds).
    OpenSsh,
    /// PuTTY PPK v3 (Argon2id) or v2.
    Putty(PpkVersion),
    /// ssh.com container, PuTTYgen header style.
    Ssh2,
    /// ssh.com container with a `Subject:` header.
    Tectia,
}

/// The names the native API and the CLI accept.
pub const NATIVE_NAMES: &str = "pkcs8, pkcs1, sec1, openssh, putty, putty-v2, ssh2, tectia";

impl ExportFormat {
    /// A native API / CLI format name (lower case).
    pub fn parse_native(name: &str) -> Option<ExportFormat> {
        Some(match name {
            "pkcs8" => ExportFormat::Pkcs8,
            "pkcs1" | "sec1" => ExportFormat::Traditional,
            "openssh" => ExportFormat::OpenSsh,
            "putty" | "putty-v3" => ExportFormat::Putty(PpkVersion::V3),
            "putty-v2" => ExportFormat::Putty(PpkVersion::V2),
            "ssh2" => ExportFormat::Ssh2,
            "tectia" => ExportFormat::Tectia,
            _ => return None,
        })
    }

    /// A TPP `Format` value (`OpenSSH`, `PuTTY`, `SSH2`, `Tectia`; case-insensitive as TPP's
    /// enum parsing is).
    pub fn parse_tpp(name: &str) -> Option<ExportFormat> {
        Some(match name.to_ascii_lowercase().as_str() {
            "openssh" => ExportFormat::OpenSsh,
            "putty" => ExportFormat::Putty(PpkVersion::V3),
            "ssh2" => ExportFormat::Ssh2,
            "tectia" => ExportFormat::Tectia,
            _ => return None,
        })
    }

    pub fn native_name(self) -> &'static str {
        match self {
            ExportFormat::Pkcs8 => "pkcs8",
            ExportFormat::Traditional => "pkcs1",
            ExportFormat::OpenSsh => "openssh",
            ExportFormat::Putty(PpkVersion::V3) => "putty",
            ExportFormat::Putty(PpkVersion::V2) => "putty-v2",
            ExportFormat::Ssh2 => "ssh2",
            ExportFormat::Tectia => "tectia",
        }
    }

    /// Whether this format can hold a key of `algorithm` (the inventory's name, e.g.
    /// `rsa-2048`, `ed25519`); the refusal says what to use instead.
    pub fn check_algorithm(self, algorithm: &str) -> Result<(), CoreError> {
        let rsa = algorithm.starts_with("rsa");
        match self {
            ExportFormat::Ssh2 | ExportFormat::Tectia if !rsa => Err(CoreError::invalid(
                "format_key_mismatch",
                "the SSH2/Tectia (ssh.com) format holds RSA keys only; export ECDSA and Ed25519 keys as OpenSSH or PuTTY",
            )),
            ExportFormat::Traditional if algorithm == "ed25519" => {
                Err(CoreError::invalid("format_key_mismatch", "Ed25519 keys have no PKCS#1/SEC1 form; export them as pkcs8 or openssh"))
            }
            _ => Ok(()),
        }
    }

    pub fn check_key(self, key: &PrivateKey) -> Result<(), CoreError> {
        let alg = match key {
            PrivateKey::Rsa(_) => "rsa",
            PrivateKey::Ec { .. } => "ec",
            PrivateKey::Ed25519 { .. } => "ed25519",
        };
        self.check_algorithm(alg)
    }
}

/// The whole export for a face: the key must exist for the caller and the format must hold its
/// type; then the core export (authorization, the passphrase rule, audit, non-exportable
/// refusal: `export::export_private_key`) and the encoding. Returns the key's record and the
/// file text.
pub async fn export_as(
    app: &App,
    who: &Principal,
    key_id: &str,
    format: ExportFormat,
    passphrase: Option<Zeroizing<Vec<u8>>>,
) -> Result<(KeyRecord, Zeroizing<String>), CoreError> {
    let rec = super::keys::get(app, who, key_id)?;
    format.check_algorithm(&rec.algorithm.to_string())?;
    let protection = Protection::from_optional(passphrase.as_deref().map(|p| p.as_slice()));
    let key = super::export::export_private_key(app, who, key_id, protection).await?;
    let text = encode(key, format, rec.name.clone(), rec.owner.clone(), passphrase).await?;
    Ok((rec, text))
}

/// Encodes `key` in `format`, encrypted under `passphrase` when one is given. `comment` goes
/// into formats that carry one; `subject` is Tectia's `Subject:` header.
pub async fn encode(
    key: PrivateKey,
    format: ExportFormat,
    comment: String,
    subject: String,
    passphrase: Option<Zeroizing<Vec<u8>>>,
) -> Result<Zeroizing<String>, CoreError> {
    format.check_key(&key)?;
    tokio::task::spawn_blocking(move || {
        let pw = passphrase.as_deref().map(|p| p.as_slice()).filter(|p| !p.is_empty());
        match format {
            ExportFormat::Pkcs8 => {
                let der = pkcs::to_pkcs8_der(&key)?;
                match pw {
                    Some(pw) => pkcs::encrypt_pkcs8_pem(&der, pw),
                    None => Ok(plain_pkcs8_pem(&der)),
                }
            }
            ExportFormat::Traditional => pkcs::write_traditional::write_traditional_pem(&key, pw),
            ExportFormat::OpenSsh => write_openssh::write(&key, &comment, pw),
            ExportFormat::Putty(v) => write_ppk::write(&key, &comment, pw, v),
            ExportFormat::Ssh2 => write_sshcom::write(&key, &comment, pw, &Style::Ssh2),
            ExportFormat::Tectia => write_sshcom::write(&key, &comment, pw, &Style::Tectia { subject }),
        }
    })
    .await
    .map_err(|e| CoreError::Internal(format!("the export task failed: {e}")))?
    .map_err(super::import::material_error)
}

fn plain_pkcs8_pem(der: &[u8]) -> Zeroizing<String> {
    use base64::Engine;
    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    let mut out = Zeroizing::new(String::from("-----BEGIN PRIVATE KEY-----\n"));
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for n in NATIVE_NAMES.split(", ") {
            let f = ExportFormat::parse_native(n).unwrap();
            assert_eq!(ExportFormat::parse_native(f.native_name()), Some(f));
        }
        assert_eq!(ExportFormat::parse_native("jks"), None);
        assert_eq!(ExportFormat::parse_tpp("PuTTY"), Some(ExportFormat::Putty(PpkVersion::V3)));
        assert_eq!(ExportFormat::parse_tpp("ssh2"), Some(ExportFormat::Ssh2));
        assert_eq!(ExportFormat::parse_tpp("SSH1"), None);
    }
}
