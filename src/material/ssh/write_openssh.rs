//! Writing OpenSSH private keys (`openssh-key-v1`, OpenSSH's PROTOCOL.key), hand-written so
//! every integer is a *minimal* mpint (PuTTY rejects an ECDSA scalar with a leading zero byte,
//! which fixed-width writers produce for ~1/2 of P-521 and ~1/256 of P-256 keys).
//!
//! Encrypted: `aes256-ctr` with `bcrypt` (bcrypt_pbkdf, 16-byte salt, 16 rounds), what
//! `ssh-keygen` writes and what PuTTY 0.78 can read (it cannot read the GCM/ChaCha ciphers).
//! Unencrypted: cipher and KDF `none`. Base64 in 70-column lines, LF.

use aes::cipher::{KeyIvInit, StreamCipher};
use aes::Aes256;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use zeroize::Zeroizing;

use super::super::key::{MaterialError, PrivateKey};
use super::keys::Curve;
use super::openssh::{BEGIN, END};
use super::public::try_public_key_blob;
use super::wire::Writer;

/// bcrypt_pbkdf rounds ssh-keygen uses by default.
pub const BCRYPT_ROUNDS: u32 = 16;
const MAGIC: &[u8] = b"openssh-key-v1\0";

/// Base64 of `data` in lines of `width` characters, each ending in LF, in a zeroizing buffer.
pub(super) fn base64_lines(data: &[u8], width: usize) -> Zeroizing<String> {
    let b64 = Zeroizing::new(STANDARD.encode(data));
    let mut out = Zeroizing::new(String::with_capacity(b64.len() + b64.len() / width + 1));
    for chunk in b64.as_bytes().chunks(width) {
        // Base64 is ASCII, so every chunk is UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// A writer whose buffer is wiped when dropped (the private section is secret).
pub(super) struct SecretWriter(pub Writer);

impl Drop for SecretWriter {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0.buf);
    }
}

/// The RSA q⁻¹ mod p every SSH format calls iqmp: `RsaKey::qinv`.
fn write_private_fields(key: &PrivateKey, w: &mut Writer) -> Result<(), MaterialError> {
    match key {
        PrivateKey::Rsa(k) => {
            w.string(b"ssh-rsa").mpint(&k.n).mpint(&k.e).mpint(&k.d).mpint(&k.qinv).mpint(&k.p).mpint(&k.q);
        }
        PrivateKey::Ec { algorithm, d, point } => {
            let curve = Curve::from_algorithm(*algorithm).ok_or_else(|| MaterialError::Unsupported("not an SSH curve".into()))?;
            w.string(curve.key_type().as_bytes()).string(curve.name().as_bytes()).string(point).mpint(d);
        }
        PrivateKey::Ed25519 { seed, public } => {
            let mut both = Zeroizing::new([0u8; 64]);
            both[..32].copy_from_slice(&seed[..]);
            both[32..].copy_from_slice(public);
            w.string(b"ssh-ed25519").string(public).string(&both[..]);
        }
    }
    Ok(())
}

/// The key as an OpenSSH private key file. `passphrase` `None` (or empty) writes an
/// unencrypted file; callers decide whether that is allowed. bcrypt_pbkdf takes ~0.1-0.2 s
/// of CPU: call this off the async runtime.
pub fn write(key: &PrivateKey, comment: &str, passphrase: Option<&[u8]>) -> Result<Zeroizing<String>, MaterialError> {
    write_with_rounds(key, comment, passphrase, BCRYPT_ROUNDS)
}

/// [`write`] with a chosen number of bcrypt rounds (tests and benchmarks).
pub fn write_with_rounds(
    key: &PrivateKey,
    comment: &str,
    passphrase: Option<&[u8]>,
    rounds: u32,
) -> Result<Zeroizing<String>, MaterialError> {
    let passphrase = passphrase.filter(|p| !p.is_empty());
    let public = try_public_key_blob(&key.public_key())?;
    let block = if passphrase.is_some() { 16 } else { 8 };

    let mut private = SecretWriter(Writer::new());
    let check = rand::rngs::OsRng.next_u32();
    private.0.u32(check).u32(check);
    write_private_fields(key, &mut private.0)?;
    private.0.string(comment.as_bytes());
    let mut pad = 1u8;
    while private.0.buf.len() % block != 0 {
        private.0.buf.push(pad);
        pad += 1;
    }

    let mut out = SecretWriter(Writer::new());
    out.0.buf.extend_from_slice(MAGIC);
    match passphrase {
        None => {
            out.0.string(b"none").string(b"none").string(b"");
        }
        Some(pw) => {
            let mut salt = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut salt);
            let mut key_iv = Zeroizing::new([0u8; 48]);
            bcrypt_pbkdf::bcrypt_pbkdf(pw, &salt, rounds, &mut key_iv[..])
                .map_err(|_| MaterialError::Unsupported("bad bcrypt_pbkdf parameters".into()))?;
            let mut cipher = ctr::Ctr128BE::<Aes256>::new_from_slices(&key_iv[..32], &key_iv[32..])
                .map_err(|_| MaterialError::Unsupported("bad cipher parameters".into()))?;
            cipher.apply_keystream(&mut private.0.buf);
            let mut options = Writer::new();
            options.string(&salt).u32(rounds);
            out.0.string(b"aes256-ctr").string(b"bcrypt").string(&options.buf);
        }
    }
    out.0.u32(1).string(&public).string(&private.0.buf);

    let body = base64_lines(&out.0.buf, 70);
    let mut text = Zeroizing::new(String::with_capacity(body.len() + 80));
    text.push_str(BEGIN);
    text.push('\n');
    text.push_str(&body);
    text.push_str(END);
    text.push('\n');
    Ok(text)
}

/// Keys for the writers' unit tests: the RSA fixture and fresh ECDSA/Ed25519 keys.
#[cfg(test)]
pub(super) mod testkeys {
    use super::super::super::algorithm::Algorithm;
    use super::super::super::key::PrivateKey;
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use zeroize::Zeroizing;

    pub fn rsa() -> PrivateKey {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ssh/rustcrypto-ssh-key/id_rsa_3072");
        super::super::read_private_key(&std::fs::read(path).unwrap(), None).unwrap().0
    }

    pub fn p256() -> PrivateKey {
        let sk = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let point = sk.public_key().to_encoded_point(false).as_bytes().to_vec();
        PrivateKey::Ec { algorithm: Algorithm::EcP256, d: Zeroizing::new(sk.to_bytes().to_vec()), point }
    }

    pub fn p384() -> PrivateKey {
        let sk = p384::SecretKey::random(&mut rand::rngs::OsRng);
        let point = sk.public_key().to_encoded_point(false).as_bytes().to_vec();
        PrivateKey::Ec { algorithm: Algorithm::EcP384, d: Zeroizing::new(sk.to_bytes().to_vec()), point }
    }

    pub fn p521() -> PrivateKey {
        let sk = p521::SecretKey::random(&mut rand::rngs::OsRng);
        let point = sk.public_key().to_encoded_point(false).as_bytes().to_vec();
        PrivateKey::Ec { algorithm: Algorithm::EcP521, d: Zeroizing::new(sk.to_bytes().to_vec()), point }
    }

    pub fn ed25519() -> PrivateKey {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
        PrivateKey::Ed25519 { seed: Zeroizing::new(sk.to_bytes()), public: sk.verifying_key().to_bytes() }
    }

    /// A P-256 key whose scalar is 31 bytes as a minimal mpint (top byte 0, next below 0x80).
    pub fn short_p256() -> PrivateKey {
        loop {
            let k = p256();
            if let PrivateKey::Ec { d, .. } = &k {
                if d[0] == 0 && d[1] < 0x80 {
                    return k;
                }
            }
        }
    }

    pub fn all() -> Vec<(&'static str, PrivateKey)> {
        vec![("rsa", rsa()), ("p256", p256()), ("p384", p384()), ("p521", p521()), ("ed25519", ed25519()), ("short-p256", short_p256())]
    }
}

#[cfg(test)]
mod tests {
    use super::super::{openssh, read_private_key};
    use super::testkeys;
    use super::*;

    #[test]
    fn round_trips_every_key_type_plain_and_encrypted() {
        for (name, key) in testkeys::all() {
            let plain = write(&key, "me@host", None).unwrap();
            assert!(plain.starts_with(BEGIN) && plain.ends_with(&format!("{END}\n")), "{name}");
            assert!(plain.lines().all(|l| l.len() <= 70), "{name}");
            let (back, comment) = read_private_key(plain.as_bytes(), None).unwrap();
            assert_eq!((back.public_key(), comment.as_str()), (key.public_key(), "me@host"), "{name}");
            let enc = write_with_rounds(&key, "c", Some(b"pw"), 2).unwrap();
            assert_eq!(openssh::read(enc.as_bytes(), Some(b"pw")).unwrap().0.public_key(), key.public_key(), "{name}");
            assert_eq!(openssh::read(enc.as_bytes(), Some(b"px")).unwrap_err(), MaterialError::WrongPassword, "{name}");
            assert_eq!(openssh::read(enc.as_bytes(), None).unwrap_err(), MaterialError::PasswordRequired, "{name}");
        }
    }

    #[test]
    fn scalars_are_minimal_mpints() {
        let key = testkeys::short_p256();
        let text = write(&key, "", None).unwrap();
        let blob = super::super::decode_base64(text.lines().filter(|l| !l.starts_with("-----")).collect::<String>().as_bytes()).unwrap();
        // The scalar is the last mpint before the comment: its length must be 31 (or 32 with
        // the top bit set, never 32 with a leading zero).
        let d = match &key {
            PrivateKey::Ec { d, .. } => d.clone(),
            _ => unreachable!(),
        };
        assert_eq!(d[0], 0);
        let mut needle = (31u32).to_be_bytes().to_vec();
        needle.extend_from_slice(&d[1..]);
        assert!(blob.windows(needle.len()).any(|w| w == needle.as_slice()));
    }
}
