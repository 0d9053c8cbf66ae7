//! The ssh.com private-key container (SSH Communications Security's format, which Tectia
//! and PuTTYgen `-O private-sshcom` write; TPP calls it `SSH2` or `Tectia`). RSA only.
//!
//! ```text
//! ---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----     (also when the cipher is "none")
//! Subject: …  Comment: "…"                        (RFC 4716 headers; "\" continues a line)
//! base64 of: uint32 0x3f6ff9eb, uint32 total length, string key type, string cipher,
//!            string payload = cipher( string(inner) ‖ padding )
//! inner (RSA): mp e, mp d, mp n, mp u (= p⁻¹ mod q), mp p, mp q
//!              mp = uint32 bit count ‖ ⌈bits/8⌉ bytes big-endian
//! ```
//! `3des-cbc`: key = (MD5(pw) ‖ MD5(pw ‖ MD5(pw)))[..24], IV = 0. There is no MAC: a wrong
//! passphrase shows only as an inner length or RSA consistency failure.

use md5::{Digest, Md5};
use zeroize::Zeroizing;

use super::super::key::{MaterialError, PrivateKey};
use super::cipher::Cipher;
use super::keys;
use super::wire::Reader;

pub const BEGIN: &str = "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----";
pub const END: &str = "---- END SSH2 ENCRYPTED PRIVATE KEY ----";
const MAGIC: u32 = 0x3f6f_f9eb;

fn malformed(msg: &str) -> MaterialError {
    MaterialError::Malformed(format!("ssh.com key: {msg}"))
}

/// The decoded body and the Comment header (quotes removed, continuations joined).
fn armor(data: &[u8]) -> Result<(Zeroizing<Vec<u8>>, String), MaterialError> {
    let mut lines = super::lines(data).map(|l| l.trim_ascii());
    if lines.next() != Some(BEGIN.as_bytes()) {
        return Err(MaterialError::UnknownFormat("no ssh.com BEGIN line".into()));
    }
    let mut headers: Vec<Vec<u8>> = Vec::new();
    let mut continued = false;
    let mut in_headers = true;
    let mut b64 = Zeroizing::new(Vec::new());
    for line in lines {
        if line == END.as_bytes() {
            if continued {
                return Err(malformed("a header continues into the END line"));
            }
            let comment = headers.iter().find_map(|h| comment_value(h)).unwrap_or_default();
            return Ok((super::decode_base64(&b64)?, comment));
        }
        if continued {
            let (text, more) = strip_continuation(line);
            if let Some(h) = headers.last_mut() {
                h.extend_from_slice(text);
            }
            continued = more;
        } else if in_headers && line.contains(&b':') {
            let (text, more) = strip_continuation(line);
            headers.push(text.to_vec());
            continued = more;
        } else {
            in_headers = false;
            b64.extend_from_slice(line);
        }
    }
    Err(malformed("no END line (truncated?)"))
}

fn strip_continuation(line: &[u8]) -> (&[u8], bool) {
    match line.strip_suffix(b"\\") {
        Some(text) => (text, true),
        None => (line, false),
    }
}

/// `Comment: value` → value, without surrounding double quotes.
fn comment_value(header: &[u8]) -> Option<String> {
    let colon = header.iter().position(|&b| b == b':')?;
    if !header[..colon].trim_ascii().eq_ignore_ascii_case(b"comment") {
        return None;
    }
    let v = header[colon + 1..].trim_ascii();
    let v = v.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(v);
    Some(String::from_utf8_lossy(v).into_owned())
}

/// ssh.com's 3DES key: MD5(pw) ‖ MD5(pw ‖ MD5(pw)), first 24 bytes.
fn des_key(passphrase: &[u8]) -> Zeroizing<Vec<u8>> {
    let h1 = Md5::digest(passphrase);
    let mut h = Md5::new();
    h.update(passphrase);
    h.update(h1);
    let h2 = h.finalize();
    let mut key = Zeroizing::new(Vec::with_capacity(32));
    key.extend_from_slice(&h1);
    key.extend_from_slice(&h2);
    key.truncate(24);
    key
}

/// An ssh.com multiple-precision integer: uint32 bit count, then ⌈bits/8⌉ bytes.
fn mp<'a>(r: &mut Reader<'a>, what: &str) -> Result<&'a [u8], MaterialError> {
    let bits = u64::from(r.u32(what)?);
    let len = usize::try_from(bits.div_ceil(8)).map_err(|_| malformed("a number is too long"))?;
    r.bytes(len, what)
}

/// Reads an ssh.com private key file. `passphrase` is `None` or non-empty.
pub fn read(data: &[u8], passphrase: Option<&[u8]>) -> Result<(PrivateKey, String), MaterialError> {
    let (blob, comment) = armor(data)?;
    let mut r = Reader::new(&blob);
    if r.u32("magic")? != MAGIC {
        return Err(malformed("bad magic number"));
    }
    let total = r.u32("total length")? as usize;
    if total != blob.len() {
        return Err(malformed("the length field does not match the data (truncated?)"));
    }
    let kind = r.text("key type")?;
    let cipher_name = r.text("cipher name")?;
    let payload = r.string("key data")?;
    if !r.is_empty() {
        return Err(malformed("extra bytes after the key data"));
    }
    if kind.starts_with("dl-modp{sign{dsa") {
        return Err(keys::unsupported_key_type("ssh-dss"));
    }
    if !kind.starts_with("if-modn{sign{rsa") {
        return Err(MaterialError::Unsupported(format!(
            "ssh.com key type {:?}; keyport reads RSA keys in this format (convert others to OpenSSH format)",
            kind.chars().take(64).collect::<String>()
        )));
    }
    let encrypted = match cipher_name {
        "none" => false,
        "3des-cbc" => true,
        other => {
            return Err(MaterialError::Unsupported(format!(
                "ssh.com key cipher {:?}; convert the key to OpenSSH format with PuTTYgen",
                other.chars().take(32).collect::<String>()
            )))
        }
    };
    let mut plain = Zeroizing::new(payload.to_vec());
    if encrypted {
        let passphrase = passphrase.ok_or(MaterialError::PasswordRequired)?;
        Cipher::by_name("3des-cbc")?.decrypt(&des_key(passphrase), &[0u8; 8], &mut plain, &[])?;
    }
    let key = read_inner(&plain).map_err(|e| match e {
        MaterialError::Malformed(_) if encrypted => MaterialError::WrongPassword,
        e => e,
    })?;
    Ok((key, comment))
}

fn read_inner(plain: &[u8]) -> Result<PrivateKey, MaterialError> {
    let mut r = Reader::new(plain);
    let inner = r.string("key data")?;
    let mut r = Reader::new(inner);
    let e = mp(&mut r, "RSA public exponent")?;
    let d = mp(&mut r, "RSA private exponent")?;
    let n = mp(&mut r, "RSA modulus")?;
    let _u = mp(&mut r, "RSA coefficient")?;
    let p = mp(&mut r, "RSA prime p")?;
    let q = mp(&mut r, "RSA prime q")?;
    Ok(PrivateKey::Rsa(keys::rsa(n, e, d, p, q)?))
}

#[cfg(test)]
mod tests {
    use super::super::read_private_key;
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ssh/sshnet");

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()
    }

    #[test]
    fn reads_plain_and_3des() {
        let public = super::super::parse_public_line(&fixture("Key.SSH2.RSA.pub")).unwrap();
        let (key, comment) = read_private_key(fixture("Key.SSH2.RSA.txt").as_bytes(), None).unwrap();
        assert_eq!((key.public_key(), comment.as_str()), (public, "imported-openssh-key"));
        let enc = fixture("Key.SSH2.RSA.Encrypted.Des.CBC.12345.txt");
        assert_eq!(read_private_key(enc.as_bytes(), None).unwrap_err(), MaterialError::PasswordRequired);
        assert_eq!(read_private_key(enc.as_bytes(), Some(b"12346")).unwrap_err(), MaterialError::WrongPassword);
        let public = super::super::parse_public_line(&fixture("Key.SSH2.RSA.Encrypted.Des.CBC.12345.pub")).unwrap();
        let (key, _) = read_private_key(enc.as_bytes(), Some(b"12345")).unwrap();
        assert_eq!(key.public_key(), public);
    }

    #[test]
    fn headers_subject_and_continuations() {
        let plain = fixture("Key.SSH2.RSA.txt");
        let tectia = plain.replacen(
            "Comment: \"imported-openssh-key\"",
            "Subject: root\nComment: \"2048-bit rsa, root@host, Mon Jan 01 2024 \\\n00:00:00 +0000\"\nx-private: a:b",
            1,
        );
        let (_, comment) = read_private_key(tectia.as_bytes(), None).unwrap();
        assert_eq!(comment, "2048-bit rsa, root@host, Mon Jan 01 2024 00:00:00 +0000");
        let none = plain.replacen("Comment: \"imported-openssh-key\"\n", "", 1);
        assert_eq!(read_private_key(none.as_bytes(), None).unwrap().1, "");
    }

    #[test]
    fn every_truncation_fails_cleanly() {
        let data = fixture("Key.SSH2.RSA.txt");
        let (blob, _) = armor(data.as_bytes()).unwrap();
        for len in 0..data.trim_end().len() {
            assert!(read_private_key(&data.as_bytes()[..len], None).is_err(), "text cut at {len}");
        }
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        for len in 0..blob.len() {
            // Cut the blob and also fix the length field, so the inner parser sees the cut.
            let mut cut = blob[..len].to_vec();
            if len >= 8 {
                cut[4..8].copy_from_slice(&(len as u32).to_be_bytes());
            }
            let text = format!("{BEGIN}\n{}\n{END}\n", b64.encode(&cut));
            match read(text.as_bytes(), None) {
                Err(MaterialError::Malformed(_)) => {}
                other => panic!("blob cut at {len}: {other:?}"),
            }
        }
        let enc = fixture("Key.SSH2.RSA.Encrypted.Des.CBC.12345.txt");
        for len in 0..enc.trim_end().len() {
            assert!(read_private_key(&enc.as_bytes()[..len], Some(b"12345")).is_err(), "encrypted text cut at {len}");
        }
    }

    fn container(kind: &str, cipher: &str, payload: &[u8]) -> String {
        use base64::Engine;
        let mut w = super::super::wire::Writer::new();
        w.u32(MAGIC).u32(0).string(kind.as_bytes()).string(cipher.as_bytes()).string(payload);
        let len = w.buf.len() as u32;
        w.buf[4..8].copy_from_slice(&len.to_be_bytes());
        format!("{BEGIN}\n{}\n{END}\n", base64::engine::general_purpose::STANDARD.encode(&w.buf))
    }

    #[test]
    fn dsa_and_unknown_ciphers_are_unsupported() {
        let dsa = container("dl-modp{sign{dsa-nist-sha1},dh{plain}}", "none", b"");
        assert!(matches!(read(dsa.as_bytes(), None), Err(MaterialError::Unsupported(m)) if m.contains("DSA")));
        let rsa = "if-modn{sign{rsa-pkcs1-sha1},encrypt{rsa-pkcs1v2-oaep}}";
        let aes = container(rsa, "aes128-cbc", &[0; 16]);
        assert!(matches!(read(aes.as_bytes(), Some(b"x")), Err(MaterialError::Unsupported(_))));
        // Garbage that decrypts to nothing sensible is a wrong passphrase (there is no MAC).
        let des = container(rsa, "3des-cbc", &[0; 64]);
        assert_eq!(read(des.as_bytes(), Some(b"x")).unwrap_err(), MaterialError::WrongPassword);
        let odd = container(rsa, "3des-cbc", &[0; 63]);
        assert!(matches!(read(odd.as_bytes(), Some(b"x")), Err(MaterialError::Malformed(_))));
    }
}
