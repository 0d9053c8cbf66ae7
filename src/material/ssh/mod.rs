//! SSH private-key files (import side) and SSH public keys.
//!
//! [`read_private_key`] detects and reads the three SSH-specific private-key containers:
//!
//! - OpenSSH `openssh-key-v1` (`-----BEGIN OPENSSH PRIVATE KEY-----`), plain or bcrypt_pbkdf +
//!   aes{128,192,256}-{ctr,cbc}, aes{128,256}-gcm@openssh.com or 3des-cbc ([`openssh`]);
//! - PuTTY PPK v2 and v3 (`PuTTY-User-Key-File-N:`), plain or aes256-cbc ([`ppk`]);
//! - the ssh.com / SSH2 / Tectia container (`---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----`),
//!   RSA, plain or 3des-cbc ([`sshcom`]).
//!
//! PEM (PKCS#1/SEC1/PKCS#8) keys are not read here. Everything is parsed from untrusted bytes:
//! lengths are checked, KDF parameters are capped (see [`super::limits`]) before any KDF runs,
//! and no error message carries key bytes. Every key is checked for internal consistency (the
//! public half a file stores must be the one its private half gives).

mod cipher;
mod keys;
pub mod openssh;
pub mod ppk;
mod public;
pub mod sshcom;
pub mod wire;
pub mod write_openssh;
pub mod write_ppk;
pub mod write_sshcom;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use zeroize::Zeroizing;

use super::key::{MaterialError, PrivateKey};
use super::limits::MAX_KEY_FILE_BYTES;

pub use public::{
    fingerprint_sha256, key_type, parse_public_blob, parse_public_line, public_key_blob, public_key_line, try_public_key_blob,
};

/// The SSH private-key containers [`read_private_key`] understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshFormat {
    OpenSsh,
    Ppk,
    SshCom,
}

const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

fn trim_start(data: &[u8]) -> &[u8] {
    let data = data.strip_prefix(UTF8_BOM).unwrap_or(data);
    let i = data.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(data.len());
    &data[i..]
}

/// Which SSH private-key container `data` is, from its first line; `None` for anything else
/// (PEM keys included).
pub fn detect(data: &[u8]) -> Option<SshFormat> {
    let d = trim_start(data);
    if d.starts_with(openssh::BEGIN.as_bytes()) {
        Some(SshFormat::OpenSsh)
    } else if d.starts_with(b"PuTTY-User-Key-File-") {
        Some(SshFormat::Ppk)
    } else if d.starts_with(sshcom::BEGIN.as_bytes()) {
        Some(SshFormat::SshCom)
    } else {
        None
    }
}

/// Reads an OpenSSH, PuTTY (PPK v2/v3) or ssh.com private key; returns the key and the
/// comment stored with it (empty when none; bytes that are not UTF-8 are replaced).
///
/// `passphrase` is used only for encrypted files; `None` or an empty passphrase on an
/// encrypted file gives `PasswordRequired`. The KDF (bcrypt_pbkdf, Argon2) takes up to a few
/// hundred milliseconds of CPU: call this off the async runtime.
pub fn read_private_key(data: &[u8], passphrase: Option<&[u8]>) -> Result<(PrivateKey, String), MaterialError> {
    if data.len() > MAX_KEY_FILE_BYTES {
        return Err(MaterialError::Malformed(format!("the key file is larger than {MAX_KEY_FILE_BYTES} bytes")));
    }
    let passphrase = passphrase.filter(|p| !p.is_empty());
    match detect(data) {
        Some(SshFormat::OpenSsh) => openssh::read(data, passphrase),
        Some(SshFormat::Ppk) => ppk::read(data, passphrase),
        Some(SshFormat::SshCom) => sshcom::read(data, passphrase),
        None => {
            let d = trim_start(data);
            let public = [&b"ssh-"[..], b"ecdsa-", b"sk-", b"---- BEGIN SSH2 PUBLIC KEY"].iter().any(|p| d.starts_with(p));
            Err(MaterialError::UnknownFormat(if public {
                "this is an SSH public key; the private key file is needed".into()
            } else {
                "not an OpenSSH, PuTTY (PPK) or ssh.com private key".into()
            }))
        }
    }
}

/// The non-empty lines of `data`, split at LF, CRLF or CR.
pub(crate) fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == b'\n' || b == b'\r').filter(|l| !l.is_empty())
}

/// Base64 (standard alphabet), ignoring whitespace, padding optional.
pub(crate) fn decode_base64(text: &[u8]) -> Result<Zeroizing<Vec<u8>>, MaterialError> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let clean: Zeroizing<Vec<u8>> = Zeroizing::new(text.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect());
    LENIENT.decode(&*clean).map(Zeroizing::new).map_err(|_| MaterialError::Malformed("invalid base64".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection() {
        assert_eq!(detect(b"\xef\xbb\xbf\n-----BEGIN OPENSSH PRIVATE KEY-----\n"), Some(SshFormat::OpenSsh));
        assert_eq!(detect(b"PuTTY-User-Key-File-3: ssh-ed25519\r\n"), Some(SshFormat::Ppk));
        assert_eq!(detect(b"---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----\n"), Some(SshFormat::SshCom));
        assert_eq!(detect(b"-----BEGIN RSA PRIVATE KEY-----\n"), None);
        assert!(matches!(read_private_key(b"-----BEGIN PRIVATE KEY-----", None), Err(MaterialError::UnknownFormat(_))));
        assert!(matches!(read_private_key(b"ssh-ed25519 AAAA x", None), Err(MaterialError::UnknownFormat(m)) if m.contains("public")));
        assert!(matches!(read_private_key(b"", None), Err(MaterialError::UnknownFormat(_))));
        let huge = vec![b' '; MAX_KEY_FILE_BYTES + 1];
        assert!(matches!(read_private_key(&huge, None), Err(MaterialError::Malformed(_))));
    }

    #[test]
    fn line_splitting_and_base64() {
        let got: Vec<&[u8]> = lines(b"a\r\nb\rc\n\nd").collect();
        assert_eq!(got, [&b"a"[..], b"b", b"c", b"d"]);
        assert_eq!(&decode_base64(b"AAEC\n Aw").unwrap()[..], [0, 1, 2, 3]);
        assert_eq!(&decode_base64(b"AAECAw==").unwrap()[..], [0, 1, 2, 3]);
        assert!(decode_base64(b"AA*C").is_err());
    }
}
