//! Writing PuTTY private keys (PuTTY manual appendix C): PPK v3 by default (Argon2id, fixed
//! parameters m = 8192 KiB, t = 21, p = 1 as puttygen 0.78 chose them here; AES-256-CBC;
//! HMAC-SHA-256) and PPK v2 on request (SHA-1 key derivation, HMAC-SHA-1) for PuTTY < 0.75.
//!
//! Private blob: RSA `mpint d, p, q, iqmp` (q⁻¹ mod p), ECDSA `mpint d`, Ed25519 `string seed`
//! (a string, not an mpint). Encrypted blobs are padded to 16 bytes with random bytes (PuTTY
//! accepts any padding: the MAC covers it). Base64 in 64-column lines, LF.

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockEncryptMut, KeyIvInit};
use aes::Aes256;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::super::key::{MaterialError, PrivateKey};
use super::public::{key_type, try_public_key_blob};
use super::wire::Writer;
use super::write_openssh::{base64_lines, SecretWriter};

/// Which PPK version to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PpkVersion {
    V2,
    V3,
}

/// Argon2id parameters written into v3 files.
pub const ARGON2_MEMORY_KIB: u32 = 8192;
pub const ARGON2_PASSES: u32 = 21;
pub const ARGON2_PARALLELISM: u32 = 1;

fn private_blob(key: &PrivateKey) -> SecretWriter {
    let mut w = SecretWriter(Writer::new());
    match key {
        PrivateKey::Rsa(k) => {
            w.0.mpint(&k.d).mpint(&k.p).mpint(&k.q).mpint(&k.qinv);
        }
        PrivateKey::Ec { d, .. } => {
            w.0.mpint(d);
        }
        PrivateKey::Ed25519 { seed, .. } => {
            w.0.string(&seed[..]);
        }
    }
    w
}

fn mac_input(alg: &str, encryption: &str, comment: &str, public: &[u8], private: &[u8]) -> SecretWriter {
    let mut w = SecretWriter(Writer::new());
    w.0.string(alg.as_bytes()).string(encryption.as_bytes()).string(comment.as_bytes()).string(public).string(private);
    w
}

fn bad(_: impl std::fmt::Debug) -> MaterialError {
    MaterialError::Unsupported("bad key-derivation or cipher parameters".into())
}

/// The key as a PuTTY `.ppk` file. `passphrase` `None` (or empty) writes `Encryption: none`.
/// Argon2 takes ~0.1 s of CPU: call this off the async runtime.
pub fn write(key: &PrivateKey, comment: &str, passphrase: Option<&[u8]>, version: PpkVersion) -> Result<Zeroizing<String>, MaterialError> {
    write_with_params(key, comment, passphrase, version, ARGON2_PASSES)
}

/// [`write`] with a chosen number of Argon2 passes (tests and benchmarks).
pub fn write_with_params(
    key: &PrivateKey,
    comment: &str,
    passphrase: Option<&[u8]>,
    version: PpkVersion,
    passes: u32,
) -> Result<Zeroizing<String>, MaterialError> {
    let passphrase = passphrase.filter(|p| !p.is_empty());
    // A comment is one header line.
    let comment: String = comment.chars().map(|c| if c == '\r' || c == '\n' { ' ' } else { c }).collect();
    let public_key = key.public_key();
    let alg = key_type(&public_key)?;
    let public = try_public_key_blob(&public_key)?;
    let mut private = private_blob(key);
    let encryption = if passphrase.is_some() { "aes256-cbc" } else { "none" };
    if passphrase.is_some() {
        let n = (16 - private.0.buf.len() % 16) % 16;
        let mut pad = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut pad[..n]);
        private.0.buf.extend_from_slice(&pad[..n]);
    }

    // (AES key, IV, MAC key) and the extra v3 header lines.
    type Secret = Zeroizing<Vec<u8>>;
    let mut kdf_lines = String::new();
    let (aes_key, iv, mac_key): (Secret, Secret, Secret) = match (version, passphrase) {
        (PpkVersion::V3, None) => (Zeroizing::default(), Zeroizing::default(), Zeroizing::default()),
        (PpkVersion::V3, Some(pw)) => {
            let mut salt = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut salt);
            let params = argon2::Params::new(ARGON2_MEMORY_KIB, passes, ARGON2_PARALLELISM, Some(80)).map_err(bad)?;
            let mut out = Zeroizing::new([0u8; 80]);
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password_into(pw, &salt, &mut out[..])
                .map_err(bad)?;
            kdf_lines = format!(
                "Key-Derivation: Argon2id\nArgon2-Memory: {ARGON2_MEMORY_KIB}\nArgon2-Passes: {passes}\nArgon2-Parallelism: {ARGON2_PARALLELISM}\nArgon2-Salt: {}\n",
                hex::encode(salt)
            );
            (Zeroizing::new(out[..32].to_vec()), Zeroizing::new(out[32..48].to_vec()), Zeroizing::new(out[48..].to_vec()))
        }
        (PpkVersion::V2, pw) => {
            let pw = pw.unwrap_or_default();
            let mut aes = Zeroizing::new(Vec::with_capacity(40));
            for counter in [0u32, 1] {
                let mut h = Sha1::new();
                h.update(counter.to_be_bytes());
                h.update(pw);
                aes.extend_from_slice(&h.finalize());
            }
            aes.truncate(32);
            let mut h = Sha1::new();
            h.update(b"putty-private-key-file-mac-key");
            h.update(pw);
            (aes, Zeroizing::new(vec![0u8; 16]), Zeroizing::new(h.finalize().to_vec()))
        }
    };

    let input = mac_input(alg, encryption, &comment, &public, &private.0.buf);
    let mac = match version {
        PpkVersion::V3 => {
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&mac_key).map_err(bad)?;
            m.update(&input.0.buf);
            hex::encode(m.finalize().into_bytes())
        }
        PpkVersion::V2 => {
            let mut m = <Hmac<Sha1> as Mac>::new_from_slice(&mac_key).map_err(bad)?;
            m.update(&input.0.buf);
            hex::encode(m.finalize().into_bytes())
        }
    };
    drop(input);

    if passphrase.is_some() {
        let len = private.0.buf.len();
        cbc::Encryptor::<Aes256>::new_from_slices(&aes_key, &iv)
            .map_err(bad)?
            .encrypt_padded_mut::<NoPadding>(&mut private.0.buf, len)
            .map_err(bad)?;
    }

    let public_lines = base64_lines(&public, 64);
    let private_lines = base64_lines(&private.0.buf, 64);
    let n = |s: &str| s.lines().count();
    let v = match version {
        PpkVersion::V2 => 2,
        PpkVersion::V3 => 3,
    };
    let mut text = Zeroizing::new(String::with_capacity(public_lines.len() + private_lines.len() + 512));
    text.push_str(&format!(
        "PuTTY-User-Key-File-{v}: {alg}\nEncryption: {encryption}\nComment: {comment}\nPublic-Lines: {}\n",
        n(&public_lines)
    ));
    text.push_str(&public_lines);
    text.push_str(&kdf_lines);
    text.push_str(&format!("Private-Lines: {}\n", n(&private_lines)));
    text.push_str(&private_lines);
    text.push_str(&format!("Private-MAC: {mac}\n"));
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::super::write_openssh::testkeys;
    use super::super::{ppk, read_private_key};
    use super::*;

    #[test]
    fn round_trips_v2_and_v3_plain_and_encrypted() {
        for (name, key) in testkeys::all() {
            for version in [PpkVersion::V2, PpkVersion::V3] {
                let plain = write(&key, "a comment", None, version).unwrap();
                let (back, comment) = read_private_key(plain.as_bytes(), None).unwrap();
                assert_eq!((back.public_key(), comment.as_str()), (key.public_key(), "a comment"), "{name} {version:?}");
                let enc = write_with_params(&key, "x", Some(b"pw"), version, 1).unwrap();
                assert!(enc.contains("Encryption: aes256-cbc"));
                assert_eq!(ppk::read(enc.as_bytes(), Some(b"pw")).unwrap().0.public_key(), key.public_key(), "{name} {version:?}");
                assert_eq!(ppk::read(enc.as_bytes(), Some(b"pq")).unwrap_err(), MaterialError::WrongPassword, "{name} {version:?}");
            }
        }
    }

    #[test]
    fn v3_header_lines_are_puttys() {
        let enc = write_with_params(&testkeys::ed25519(), "c", Some(b"pw"), PpkVersion::V3, 1).unwrap();
        let heads: Vec<&str> = enc.lines().filter_map(|l| l.split_once(':').map(|(k, _)| k)).collect();
        assert_eq!(
            heads,
            [
                "PuTTY-User-Key-File-3",
                "Encryption",
                "Comment",
                "Public-Lines",
                "Key-Derivation",
                "Argon2-Memory",
                "Argon2-Passes",
                "Argon2-Parallelism",
                "Argon2-Salt",
                "Private-Lines",
                "Private-MAC"
            ]
        );
    }
}
