//! Byte formats, pure functions with no I/O. Secret bytes live in zeroizing buffers.
//!
//! - [`algorithm`]: the key algorithms keyport names; [`kind`]: what an inventory row holds
//!   (pair, public key, secret key); [`key`]: the decoded private key every
//!   reader produces, and the errors; [`limits`]: caps on KDF parameters from untrusted input.
//! - [`spki`]: public keys as SubjectPublicKeyInfo and their fingerprints.
//! - [`pkcs`]: PEM/DER PKCS#1, SEC1 (with legacy DEK-Info), PKCS#8 (plain and encrypted),
//!   PKCS#12; [`x509`]: certificates; [`bundle`]: certificate bundles (zip of PEM or XML).
//! - [`archive`]: the ZIP writer for multi-key exports.
//! - [`ssh`]: OpenSSH, PuTTY PPK v2/v3 and ssh.com (SSH2/Tectia) keys, SSH public keys.

pub mod algorithm;
pub mod archive;
pub mod bundle;
pub mod key;
pub mod kind;
pub mod limits;
pub mod pkcs;
pub mod spki;
pub mod ssh;
pub mod x509;

use key::{MaterialError, PrivateKey};

/// Reads a private key in any format keyport knows: the SSH formats by their headers, else
/// PEM/DER PKCS#1, SEC1 or PKCS#8. `password` is ignored for a key that is not encrypted.
pub fn read_private_key(data: &[u8], password: Option<&[u8]>) -> Result<PrivateKey, MaterialError> {
    if ssh::detect(data).is_some() {
        return ssh::read_private_key(data, password).map(|(k, _comment)| k);
    }
    pkcs::read_private_key(data, password)
}
