//! OpenSSH private keys, `openssh-key-v1` (OpenSSH's PROTOCOL.key):
//!
//! ```text
//! "openssh-key-v1\0" string cipher, string kdf, string kdfoptions, uint32 nkeys (= 1),
//! string public-blob, string private-section [, 16-byte tag for *-gcm@openssh.com]
//! private section: uint32 check, uint32 check, string type, <fields>, string comment, 1 2 3…
//! ```
//! kdfoptions for `bcrypt`: string salt, uint32 rounds; bcrypt_pbkdf gives key ‖ IV.

use zeroize::Zeroizing;

use super::super::key::{MaterialError, PrivateKey};
use super::super::limits::MAX_BCRYPT_ROUNDS;
use super::cipher::Cipher;
use super::keys::{self, Curve};
use super::public::{parse_public_blob, read_ec_public};
use super::wire::Reader;

pub const BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";
pub const END: &str = "-----END OPENSSH PRIVATE KEY-----";
const MAGIC: &[u8] = b"openssh-key-v1\0";
/// A bcrypt_pbkdf salt longer than this is not something ssh-keygen writes (it uses 16).
const MAX_SALT: usize = 1024;

/// The base64 between the BEGIN and END lines, decoded.
fn body(data: &[u8]) -> Result<Zeroizing<Vec<u8>>, MaterialError> {
    let mut lines = super::lines(data).map(|l| l.trim_ascii());
    if lines.next() != Some(BEGIN.as_bytes()) {
        return Err(MaterialError::UnknownFormat("no OpenSSH BEGIN line".into()));
    }
    let mut b64 = Zeroizing::new(Vec::new());
    for line in lines {
        if line == END.as_bytes() {
            return super::decode_base64(&b64);
        }
        b64.extend_from_slice(line);
    }
    Err(MaterialError::Malformed("the OpenSSH key has no END line (truncated?)".into()))
}

/// Reads an OpenSSH private key file. `passphrase` is `None` or non-empty.
pub fn read(data: &[u8], passphrase: Option<&[u8]>) -> Result<(PrivateKey, String), MaterialError> {
    let blob = body(data)?;
    let mut r = Reader::new(&blob);
    if r.bytes(MAGIC.len(), "magic")? != MAGIC {
        return Err(MaterialError::Malformed("not an openssh-key-v1 key".into()));
    }
    let cipher_name = r.text("cipher name")?;
    let kdf_name = r.text("KDF name")?;
    let kdf_options = r.string("KDF options")?;
    let nkeys = r.u32("key count")?;
    if nkeys != 1 {
        return Err(if nkeys == 0 {
            MaterialError::Malformed("the file holds no key".into())
        } else {
            MaterialError::Unsupported(format!("a file holding {nkeys} keys; import one key per file"))
        });
    }
    let outer_public = parse_public_blob(r.string("public key")?)?;
    let sealed = r.string("private section")?;
    let cipher = Cipher::by_name(cipher_name)?;
    let tag = r.bytes(cipher.tag_len, "authentication tag")?;
    if !r.is_empty() {
        return Err(MaterialError::Malformed("extra bytes after the private section".into()));
    }
    if sealed.len() % cipher.block != 0 {
        return Err(MaterialError::Malformed("the private section is not a whole number of cipher blocks".into()));
    }

    let mut private = Zeroizing::new(sealed.to_vec());
    let encrypted = !cipher.is_none();
    if !encrypted {
        if kdf_name != "none" || !kdf_options.is_empty() {
            return Err(MaterialError::Malformed("a KDF is named but the key is not encrypted".into()));
        }
    } else {
        if kdf_name != "bcrypt" {
            return Err(if kdf_name == "none" {
                MaterialError::Malformed("the key is encrypted but names no KDF".into())
            } else {
                MaterialError::Unsupported(format!(
                    "key derivation {:?}; re-encrypt the key with `ssh-keygen -p -f KEY` (bcrypt)",
                    kdf_name.chars().take(64).collect::<String>()
                ))
            });
        }
        let mut o = Reader::new(kdf_options);
        let salt = o.string("bcrypt salt")?;
        let rounds = o.u32("bcrypt rounds")?;
        if !o.is_empty() || salt.is_empty() || salt.len() > MAX_SALT || rounds == 0 {
            return Err(MaterialError::Malformed("bad bcrypt KDF options".into()));
        }
        if u64::from(rounds) > MAX_BCRYPT_ROUNDS {
            return Err(MaterialError::KdfTooExpensive(format!("bcrypt_pbkdf with {rounds} rounds, at most {MAX_BCRYPT_ROUNDS} accepted")));
        }
        let passphrase = passphrase.ok_or(MaterialError::PasswordRequired)?;
        let mut key_iv = Zeroizing::new(vec![0u8; cipher.key_len + cipher.iv_len]);
        bcrypt_pbkdf::bcrypt_pbkdf(passphrase, salt, rounds, &mut key_iv)
            .map_err(|_| MaterialError::Malformed("bad bcrypt KDF options".into()))?;
        let (key, iv) = key_iv.split_at(cipher.key_len);
        cipher.decrypt(key, iv, &mut private, tag)?;
    }

    let (key, comment) = read_private_section(&private, cipher.block, encrypted)?;
    if key.public_key() != outer_public {
        return Err(MaterialError::Malformed("the public key in the file does not match its private key".into()));
    }
    Ok((key, comment))
}

fn read_private_section(private: &[u8], block: usize, encrypted: bool) -> Result<(PrivateKey, String), MaterialError> {
    let mut r = Reader::new(private);
    let check1 = r.u32("check value")?;
    let check2 = r.u32("check value")?;
    if check1 != check2 {
        return Err(if encrypted {
            MaterialError::WrongPassword
        } else {
            MaterialError::Malformed("the check values of the private section differ".into())
        });
    }
    let kind = r.text("key type")?;
    let key = read_private_fields(kind, &mut r)?;
    let comment = String::from_utf8_lossy(r.string("comment")?).into_owned();
    let padding = r.rest();
    if padding.len() >= block || padding.iter().enumerate().any(|(i, &b)| usize::from(b) != i + 1) {
        return Err(MaterialError::Malformed("bad padding after the private key".into()));
    }
    Ok((key, comment))
}

/// The key of an ssh-agent SSH_AGENTC_ADD_IDENTITY message (draft-miller-ssh-agent §3.2): the
/// message after its type byte, `string type, <the private section's fields>, string comment`
/// (constraints, if any, follow and are left to the caller).
pub fn read_agent_key(data: &[u8]) -> Result<(PrivateKey, String), MaterialError> {
    let mut r = Reader::new(data);
    let kind = r.text("key type")?;
    let key = read_private_fields(kind, &mut r)?;
    let comment = String::from_utf8_lossy(r.string("comment")?).into_owned();
    Ok((key, comment))
}

fn read_private_fields(kind: &str, r: &mut Reader<'_>) -> Result<PrivateKey, MaterialError> {
    if kind == "ssh-rsa" {
        let n = r.mpint("RSA modulus")?;
        let e = r.mpint("RSA public exponent")?;
        let d = r.mpint("RSA private exponent")?;
        let _iqmp = r.mpint("RSA iqmp")?;
        let p = r.mpint("RSA prime p")?;
        let q = r.mpint("RSA prime q")?;
        return Ok(PrivateKey::Rsa(keys::rsa(n, e, d, p, q)?));
    }
    if let Some(curve) = Curve::from_key_type(kind) {
        let public = read_ec_public(curve, r)?;
        let d = r.mpint("ECDSA private scalar")?;
        let point = match &public {
            super::super::spki::PublicKey::Ec { point, .. } => point.as_slice(),
            _ => &[],
        };
        return keys::ec(curve, d, point);
    }
    if kind == "ssh-ed25519" {
        let public = r.string("Ed25519 public key")?;
        let both = r.string("Ed25519 private key")?;
        if both.len() != 64 || public.len() != 32 || both[32..] != *public {
            return Err(MaterialError::Malformed("the Ed25519 private key is not seed ‖ public key".into()));
        }
        return keys::ed25519(&both[..32], public);
    }
    Err(keys::unsupported_key_type(kind))
}

#[cfg(test)]
mod tests {
    use super::super::read_private_key;
    use super::super::wire::Writer;
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ssh");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
    }

    /// Re-armors a binary openssh-key-v1 blob.
    fn armor(blob: &[u8]) -> Vec<u8> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(blob);
        format!("{BEGIN}\n{b64}\n{END}\n").into_bytes()
    }

    #[test]
    fn reads_plain_fixtures() {
        for name in ["id_ed25519", "id_ecdsa_p256", "id_rsa_3072"] {
            let (key, comment) = read_private_key(&fixture(&format!("rustcrypto-ssh-key/{name}")), None).unwrap();
            let line = String::from_utf8(fixture(&format!("rustcrypto-ssh-key/{name}.pub"))).unwrap();
            assert_eq!(key.public_key(), super::super::parse_public_line(&line).unwrap(), "{name}");
            assert!(line.trim_end().ends_with(&comment), "{name}: {comment}");
        }
    }

    #[test]
    fn every_truncation_is_malformed() {
        for name in ["rustcrypto-ssh-key/id_ed25519", "edge/p256-short-d", "rustcrypto-ssh-key/id_ed25519.aes256-ctr.enc"] {
            let data = fixture(name);
            let blob = body(&data).unwrap();
            for len in 0..blob.len() {
                match read(&armor(&blob[..len]), Some(b"x")) {
                    Err(MaterialError::Malformed(_)) => {}
                    other => panic!("{name} cut at {len}: {other:?}"),
                }
            }
            let text_end = data.trim_ascii_end().len();
            for len in 0..text_end {
                assert!(read_private_key(&data[..len], None).is_err(), "{name} text cut at {len}");
            }
        }
    }

    #[test]
    fn wrong_and_missing_passphrase() {
        let data = fixture("rustcrypto-ssh-key/id_ed25519.aes256-ctr.enc");
        assert_eq!(read_private_key(&data, None).unwrap_err(), MaterialError::PasswordRequired);
        assert_eq!(read_private_key(&data, Some(b"")).unwrap_err(), MaterialError::PasswordRequired);
        assert_eq!(read_private_key(&data, Some(b"hunter43")).unwrap_err(), MaterialError::WrongPassword);
        assert!(read_private_key(&data, Some(b"hunter42")).is_ok());
        let gcm = fixture("rustcrypto-ssh-key/id_ed25519.aes256-gcm.enc");
        assert_eq!(read_private_key(&gcm, Some(b"hunter43")).unwrap_err(), MaterialError::WrongPassword);
    }

    /// Rebuilds the encrypted fixture's header with other KDF options.
    fn with_kdf_options(rounds: u32) -> Vec<u8> {
        let blob = body(&fixture("rustcrypto-ssh-key/id_ed25519.aes256-ctr.enc")).unwrap();
        let mut r = Reader::new(&blob);
        r.bytes(MAGIC.len(), "").unwrap();
        let cipher = r.string("").unwrap();
        let kdf = r.string("").unwrap();
        let mut o = Reader::new(r.string("").unwrap());
        let salt = o.string("").unwrap();
        let mut opts = Writer::new();
        opts.string(salt).u32(rounds);
        let mut w = Writer::new();
        w.buf.extend_from_slice(MAGIC);
        w.string(cipher).string(kdf).string(&opts.buf);
        w.buf.extend_from_slice(r.rest());
        armor(&w.buf)
    }

    #[test]
    fn bcrypt_rounds_are_capped_before_the_kdf_runs() {
        let started = std::time::Instant::now();
        let err = read_private_key(&with_kdf_options(100_000), Some(b"hunter42")).unwrap_err();
        assert!(matches!(err, MaterialError::KdfTooExpensive(ref m) if m.contains("100000")), "{err:?}");
        assert!(read_private_key(&with_kdf_options(u32::MAX), None).unwrap_err().to_string().contains("too expensive"));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(matches!(read_private_key(&with_kdf_options(0), Some(b"hunter42")), Err(MaterialError::Malformed(_))));
    }

    #[test]
    fn outer_public_key_must_match() {
        let ed = body(&fixture("rustcrypto-ssh-key/id_ed25519")).unwrap();
        let other = body(&fixture("edge/p256-short-d")).unwrap();
        // Swap in the P-256 key's public blob.
        let split = |blob: &[u8]| {
            let mut r = Reader::new(blob);
            r.bytes(MAGIC.len(), "").unwrap();
            for _ in 0..3 {
                r.string("").unwrap();
            }
            r.u32("").unwrap();
            let head = blob.len() - r.remaining();
            let public = r.string("").unwrap().to_vec();
            (blob[..head].to_vec(), public, r.rest().to_vec())
        };
        let (head, _, tail) = split(&ed);
        let (_, p256_public, _) = split(&other);
        let mut w = Writer::new();
        w.buf = head;
        w.string(&p256_public);
        w.buf.extend_from_slice(&tail);
        let err = read_private_key(&armor(&w.buf), None).unwrap_err();
        assert!(matches!(err, MaterialError::Malformed(ref m) if m.contains("does not match")), "{err:?}");
    }

    #[test]
    fn errors_never_show_key_bytes() {
        // Flip every byte: whatever the error, its message is short fixed text, never a run of
        // hex or base64 that could be key material.
        let blob = body(&fixture("rustcrypto-ssh-key/id_ed25519")).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..blob.len() {
            let mut bad = blob.to_vec();
            bad[i] ^= 0x41;
            if let Err(e) = read(&armor(&bad), None) {
                seen.insert(e.to_string());
            }
        }
        assert!(seen.len() > 3, "{seen:?}");
        for msg in &seen {
            let longest_run = msg.split(|c: char| !c.is_ascii_alphanumeric() && c != '+' && c != '/').map(str::len).max();
            assert!(msg.len() < 250 && longest_run < Some(24), "{msg}");
        }
    }

    #[test]
    fn dsa_security_keys_and_several_keys_are_unsupported() {
        let file = |kind: &str, nkeys: u32| {
            let mut public = Writer::new();
            public.string(kind.as_bytes()).string(&[1; 32]);
            let mut w = Writer::new();
            w.buf.extend_from_slice(MAGIC);
            w.string(b"none").string(b"none").string(b"").u32(nkeys).string(&public.buf).string(&[0; 8]);
            armor(&w.buf)
        };
        let err = |kind, n| read_private_key(&file(kind, n), None).unwrap_err();
        assert!(matches!(err("ssh-dss", 1), MaterialError::Unsupported(m) if m.contains("DSA")));
        assert!(matches!(err("sk-ssh-ed25519@openssh.com", 1), MaterialError::Unsupported(m) if m.contains("security-key")));
        assert!(matches!(err("ssh-ed25519", 2), MaterialError::Unsupported(m) if m.contains("2 keys")));
        assert!(matches!(err("ssh-ed25519", 0), MaterialError::Malformed(_)));
    }
}
