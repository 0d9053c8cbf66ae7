//! Writing the ssh.com private-key container (TPP's `SSH2` and `Tectia` formats). RSA only:
//! the format's ECDSA/Ed25519 encodings are undocumented and no public tool reads them, so
//! asking for them is an `Unsupported` error.
//!
//! `SSH2` is written as PuTTYgen writes it (a `Comment:` header only); `Tectia` adds the
//! `Subject: <login>` header ssh.com/Tectia's own tools write before the comment. Readers
//! ignore `Subject:`, so both are the same key file. Encrypted: `3des-cbc`, key =
//! (MD5(pw) ‖ MD5(pw ‖ MD5(pw)))[..24], IV = 0; unencrypted: cipher `none`. The RSA primes are
//! ordered p < q and the coefficient is u = p⁻¹ mod q, as ssh.com stores them.

use crypto_bigint::{Encoding, NonZero, U4096};
use des::cipher::block_padding::NoPadding;
use des::cipher::{BlockEncryptMut, KeyIvInit};
use md5::{Digest, Md5};
use rand::RngCore;
use zeroize::Zeroizing;

use super::super::key::{MaterialError, PrivateKey};
use super::sshcom::{BEGIN, END};
use super::wire::{strip_zeros, Writer};
use super::write_openssh::{base64_lines, SecretWriter};

const MAGIC: u32 = 0x3f6f_f9eb;
const RSA_TYPE: &str = "if-modn{sign{rsa-pkcs1-sha1},encrypt{rsa-pkcs1v2-oaep}}";

/// The header style: `SSH2` (PuTTYgen: Comment only) or `Tectia` (Subject, then Comment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Style {
    Ssh2,
    Tectia { subject: String },
}

fn unsupported_key() -> MaterialError {
    MaterialError::Unsupported(
        "the SSH2/Tectia (ssh.com) format holds RSA keys only; export ECDSA and Ed25519 keys as OpenSSH or PuTTY".into(),
    )
}

fn bad(_: impl std::fmt::Debug) -> MaterialError {
    MaterialError::Malformed("the RSA key components are inconsistent".into())
}

fn u4096(b: &[u8]) -> Result<Zeroizing<U4096>, MaterialError> {
    let b = strip_zeros(b);
    if b.len() > 512 {
        return Err(bad(()));
    }
    let mut buf = Zeroizing::new([0u8; 512]);
    buf[512 - b.len()..].copy_from_slice(b);
    Ok(Zeroizing::new(U4096::from_be_slice(&buf[..])))
}

/// ssh.com multiple-precision integer: uint32 bit count, then ⌈bits/8⌉ big-endian bytes.
fn mp(w: &mut Writer, magnitude: &[u8]) {
    let m = strip_zeros(magnitude);
    let bits = (m.len() * 8).saturating_sub(m.first().map_or(0, |b| b.leading_zeros() as usize));
    w.u32(u32::try_from(bits).unwrap_or(u32::MAX));
    w.buf.extend_from_slice(m);
}

/// One RFC 4716 header, split into lines of at most 72 bytes with `\` continuations.
fn header(out: &mut String, name: &str, value: &str) {
    let line: String = format!("{name}: {value}").chars().filter(|c| *c != '\r' && *c != '\n').collect();
    let mut rest = line.as_str();
    while rest.len() > 70 {
        let mut cut = 70;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(&rest[..cut]);
        out.push_str("\\\n");
        rest = &rest[cut..];
    }
    out.push_str(rest);
    out.push('\n');
}

/// The key as an ssh.com private key file. `passphrase` `None` (or empty) writes cipher
/// `none`. Cheap: the format's KDF is two MD5 calls.
pub fn write(key: &PrivateKey, comment: &str, passphrase: Option<&[u8]>, style: &Style) -> Result<Zeroizing<String>, MaterialError> {
    let PrivateKey::Rsa(k) = key else { return Err(unsupported_key()) };
    let passphrase = passphrase.filter(|p| !p.is_empty());
    let (p, q) = (u4096(&k.p)?, u4096(&k.q)?);
    let (small, large) = if *p < *q { (&k.p, &k.q) } else { (&k.q, &k.p) };
    let (ps, ql) = (u4096(small)?, u4096(large)?);
    let modulus = Option::<NonZero<U4096>>::from(NonZero::new(*ql)).ok_or_else(|| bad(()))?;
    let reduced = Zeroizing::new(ps.rem(&modulus));
    let (u, ok) = reduced.inv_odd_mod(&ql);
    let u = Zeroizing::new(u);
    if !bool::from(ok) {
        return Err(bad(()));
    }
    let u_bytes = Zeroizing::new(u.to_be_bytes());

    let mut inner = SecretWriter(Writer::new());
    mp(&mut inner.0, &k.e);
    mp(&mut inner.0, &k.d);
    mp(&mut inner.0, &k.n);
    mp(&mut inner.0, &u_bytes[..]);
    mp(&mut inner.0, small);
    mp(&mut inner.0, large);
    let mut payload = SecretWriter(Writer::new());
    payload.0.string(&inner.0.buf);
    drop(inner);
    let cipher = match passphrase {
        None => "none",
        Some(pw) => {
            let n = (8 - payload.0.buf.len() % 8) % 8;
            let mut pad = [0u8; 8];
            rand::rngs::OsRng.fill_bytes(&mut pad[..n]);
            payload.0.buf.extend_from_slice(&pad[..n]);
            let h1 = Md5::digest(pw);
            let mut h = Md5::new();
            h.update(pw);
            h.update(h1);
            let h2 = h.finalize();
            let mut key = Zeroizing::new([0u8; 32]);
            key[..16].copy_from_slice(&h1);
            key[16..].copy_from_slice(&h2);
            let len = payload.0.buf.len();
            cbc::Encryptor::<des::TdesEde3>::new_from_slices(&key[..24], &[0u8; 8])
                .map_err(bad)?
                .encrypt_padded_mut::<NoPadding>(&mut payload.0.buf, len)
                .map_err(bad)?;
            "3des-cbc"
        }
    };
    drop((p, q));

    let mut blob = SecretWriter(Writer::new());
    blob.0.u32(MAGIC).u32(0).string(RSA_TYPE.as_bytes()).string(cipher.as_bytes()).string(&payload.0.buf);
    let total = u32::try_from(blob.0.buf.len()).unwrap_or(u32::MAX);
    blob.0.buf[4..8].copy_from_slice(&total.to_be_bytes());

    let mut text = Zeroizing::new(String::new());
    text.push_str(BEGIN);
    text.push('\n');
    if let Style::Tectia { subject } = style {
        header(&mut text, "Subject", subject);
    }
    header(&mut text, "Comment", &format!("\"{}\"", comment.replace('"', "'")));
    text.push_str(&base64_lines(&blob.0.buf, 70));
    text.push_str(END);
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::super::write_openssh::testkeys;
    use super::super::{read_private_key, sshcom};
    use super::*;

    #[test]
    fn round_trips_rsa_in_both_styles() {
        let key = testkeys::rsa();
        for style in [Style::Ssh2, Style::Tectia { subject: "alice".into() }] {
            let plain = write(&key, "rsa key", None, &style).unwrap();
            assert_eq!(plain.contains("\nSubject: alice\n"), style != Style::Ssh2);
            assert!(plain.contains("\nComment: \"rsa key\"\n"));
            let (back, comment) = read_private_key(plain.as_bytes(), None).unwrap();
            assert_eq!((back.public_key(), comment.as_str()), (key.public_key(), "rsa key"));
            let enc = write(&key, "x", Some(b"pw"), &style).unwrap();
            assert_eq!(sshcom::read(enc.as_bytes(), Some(b"pw")).unwrap().0.public_key(), key.public_key());
            assert_eq!(sshcom::read(enc.as_bytes(), Some(b"px")).unwrap_err(), MaterialError::WrongPassword);
        }
    }

    #[test]
    fn long_comments_continue_and_other_keys_are_refused() {
        let key = testkeys::rsa();
        let long = "c".repeat(150);
        let text = write(&key, &long, None, &Style::Ssh2).unwrap();
        assert!(text.lines().all(|l| l.len() <= 72));
        assert_eq!(read_private_key(text.as_bytes(), None).unwrap().1, long);
        for key in [testkeys::ed25519(), testkeys::p256()] {
            assert!(matches!(write(&key, "", None, &Style::Ssh2), Err(MaterialError::Unsupported(m)) if m.contains("RSA keys only")));
        }
    }
}
