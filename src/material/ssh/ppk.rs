//! PuTTY private keys, PPK v2 and v3 (PuTTY manual, appendix C):
//!
//! ```text
//! PuTTY-User-Key-File-3: <key type>
//! Encryption: none | aes256-cbc
//! Comment: <text>
//! Public-Lines: N        + N lines of base64 (the public blob)
//! Key-Derivation: Argon2id | Argon2i | Argon2d     (v3, encrypted only; then
//! Argon2-Memory: KiB, Argon2-Passes, Argon2-Parallelism, Argon2-Salt: hex)
//! Private-Lines: M       + M lines of base64 (the private blob, AES-256-CBC when encrypted)
//! Private-MAC: hex
//! ```
//! v3: Argon2 → 80 bytes = AES key ‖ IV ‖ MAC key, MAC = HMAC-SHA-256. v2: AES key from
//! SHA-1(0,0,0,0 ‖ pw) ‖ SHA-1(0,0,0,1 ‖ pw), zero IV, MAC = HMAC-SHA-1 keyed with
//! SHA-1("putty-private-key-file-mac-key" ‖ pw). The MAC covers type, encryption, comment,
//! public blob and decrypted private blob (with its padding), each as an SSH `string`.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::super::key::{MaterialError, PrivateKey};
use super::super::limits::{MAX_ARGON2_MEMORY_KIB, MAX_ARGON2_PARALLELISM, MAX_ARGON2_PASSES, MAX_ARGON2_WORK_KIB};
use super::super::spki::PublicKey;
use super::cipher::Cipher;
use super::keys::{self, Curve};
use super::public::{key_type, parse_public_blob};
use super::wire::{Reader, Writer};

const MAGIC: &[u8] = b"PuTTY-User-Key-File-";

fn malformed(msg: &str) -> MaterialError {
    MaterialError::Malformed(format!("PuTTY key: {msg}"))
}

/// The header lines of a PPK file, read strictly in order as PuTTY does.
struct Lines<'a> {
    it: Box<dyn Iterator<Item = &'a [u8]> + 'a>,
}

impl<'a> Lines<'a> {
    fn next_line(&mut self, what: &str) -> Result<&'a [u8], MaterialError> {
        self.it.next().ok_or_else(|| malformed(&format!("truncated before {what}")))
    }

    /// The value of the next line, which must be `name: value`.
    fn header(&mut self, name: &str) -> Result<&'a [u8], MaterialError> {
        let line = self.next_line(name)?;
        line.strip_prefix(name.as_bytes())
            .and_then(|rest| rest.strip_prefix(b":"))
            .map(|v| v.strip_prefix(b" ").unwrap_or(v))
            .ok_or_else(|| malformed(&format!("expected the {name} line")))
    }

    fn text(&mut self, name: &str) -> Result<&'a str, MaterialError> {
        std::str::from_utf8(self.header(name)?).map_err(|_| malformed(&format!("{name} is not text")))
    }

    /// `<name>-Lines: N` then N lines of base64, decoded.
    fn base64_block(&mut self, name: &str) -> Result<Zeroizing<Vec<u8>>, MaterialError> {
        let n = number(self.header(name)?, name)?;
        let mut b64 = Zeroizing::new(Vec::new());
        for _ in 0..n {
            b64.extend_from_slice(self.next_line(name)?);
        }
        super::decode_base64(&b64)
    }
}

/// A decimal header value; an all-digit value too large for u64 reads as u64::MAX (so caps
/// report it as too expensive rather than malformed).
fn number(v: &[u8], name: &str) -> Result<u64, MaterialError> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(malformed(&format!("{name} is not a number")));
    }
    Ok(std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX))
}

struct Argon2Params {
    flavour: argon2::Algorithm,
    memory: u32,
    passes: u32,
    parallelism: u32,
    salt: Vec<u8>,
}

/// The raw Argon2 header values, in file order.
struct Argon2Lines<'a> {
    flavour: &'a [u8],
    memory: &'a [u8],
    passes: &'a [u8],
    parallelism: &'a [u8],
    salt: &'a [u8],
}

fn read_argon2_lines<'a>(lines: &mut Lines<'a>) -> Result<Argon2Lines<'a>, MaterialError> {
    Ok(Argon2Lines {
        flavour: lines.header("Key-Derivation")?,
        memory: lines.header("Argon2-Memory")?,
        passes: lines.header("Argon2-Passes")?,
        parallelism: lines.header("Argon2-Parallelism")?,
        salt: lines.header("Argon2-Salt")?,
    })
}

/// Checks the Argon2 parameters against the caps; nothing expensive runs here.
fn argon2_params(a: &Argon2Lines<'_>) -> Result<Argon2Params, MaterialError> {
    let flavour = match a.flavour {
        b"Argon2id" => argon2::Algorithm::Argon2id,
        b"Argon2i" => argon2::Algorithm::Argon2i,
        b"Argon2d" => argon2::Algorithm::Argon2d,
        other => {
            return Err(MaterialError::Unsupported(format!(
                "PuTTY key derivation {:?}; re-save the key with PuTTYgen 0.75 or later",
                String::from_utf8_lossy(&other[..other.len().min(32)])
            )))
        }
    };
    let memory = number(a.memory, "Argon2-Memory")?;
    let passes = number(a.passes, "Argon2-Passes")?;
    let parallelism = number(a.parallelism, "Argon2-Parallelism")?;
    let salt = hex::decode(a.salt).map_err(|_| malformed("Argon2-Salt is not hex"))?;
    if memory > MAX_ARGON2_MEMORY_KIB {
        return Err(MaterialError::KdfTooExpensive(format!("Argon2 memory {memory} KiB, at most {MAX_ARGON2_MEMORY_KIB} accepted")));
    }
    if passes > MAX_ARGON2_PASSES {
        return Err(MaterialError::KdfTooExpensive(format!("Argon2 passes {passes}, at most {MAX_ARGON2_PASSES} accepted")));
    }
    if parallelism > MAX_ARGON2_PARALLELISM {
        return Err(MaterialError::KdfTooExpensive(format!("Argon2 parallelism {parallelism}, at most {MAX_ARGON2_PARALLELISM} accepted")));
    }
    if memory.saturating_mul(passes) > MAX_ARGON2_WORK_KIB {
        return Err(MaterialError::KdfTooExpensive(format!(
            "Argon2 memory {memory} KiB × passes {passes}, at most {MAX_ARGON2_WORK_KIB} KiB·passes accepted (puttygen writes 8192 KiB and about 10 to 40 passes)"
        )));
    }
    // The caps keep all three far below u32::MAX.
    let p = Argon2Params { flavour, memory: memory as u32, passes: passes as u32, parallelism: parallelism as u32, salt };
    argon2::Params::new(p.memory, p.passes, p.parallelism, Some(80)).map_err(|_| malformed("bad Argon2 parameters"))?;
    Ok(p)
}

/// Key material for the AES-256-CBC layer and the MAC.
struct Keys {
    aes: Zeroizing<Vec<u8>>,
    iv: Zeroizing<Vec<u8>>,
    mac: Zeroizing<Vec<u8>>,
}

fn v3_keys(passphrase: &[u8], a: &Argon2Params) -> Result<Keys, MaterialError> {
    let params = argon2::Params::new(a.memory, a.passes, a.parallelism, Some(80)).map_err(|_| malformed("bad Argon2 parameters"))?;
    let mut out = Zeroizing::new([0u8; 80]);
    argon2::Argon2::new(a.flavour, argon2::Version::V0x13, params)
        .hash_password_into(passphrase, &a.salt, &mut *out)
        .map_err(|_| malformed("bad Argon2 parameters"))?;
    Ok(Keys { aes: Zeroizing::new(out[..32].to_vec()), iv: Zeroizing::new(out[32..48].to_vec()), mac: Zeroizing::new(out[48..].to_vec()) })
}

fn v2_mac_key(passphrase: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut h = Sha1::new();
    h.update(b"putty-private-key-file-mac-key");
    h.update(passphrase);
    Zeroizing::new(h.finalize().to_vec())
}

fn v2_keys(passphrase: &[u8]) -> Keys {
    let mut aes = Zeroizing::new(Vec::with_capacity(40));
    for counter in [0u32, 1] {
        let mut h = Sha1::new();
        h.update(counter.to_be_bytes());
        h.update(passphrase);
        aes.extend_from_slice(&h.finalize());
    }
    aes.truncate(32);
    Keys { aes, iv: Zeroizing::new(vec![0u8; 16]), mac: v2_mac_key(passphrase) }
}

/// Reads a PPK v2 or v3 file. `passphrase` is `None` or non-empty.
pub fn read(data: &[u8], passphrase: Option<&[u8]>) -> Result<(PrivateKey, String), MaterialError> {
    let mut lines = Lines { it: Box::new(super::lines(data)) };
    let first = lines.next_line("the first line")?;
    let rest = first.strip_prefix(MAGIC).ok_or_else(|| MaterialError::UnknownFormat("not a PuTTY key".into()))?;
    let colon = rest.iter().position(|&b| b == b':').ok_or_else(|| malformed("bad first line"))?;
    let version = match &rest[..colon] {
        b"3" => 3,
        b"2" => 2,
        b"1" => {
            return Err(MaterialError::Unsupported("PPK version 1 (PuTTY before 0.52); re-save the key with a current PuTTYgen".into()))
        }
        _ => {
            return Err(MaterialError::Unsupported(
                "an unknown PPK version; re-save the key with PuTTYgen 0.78 or earlier format (v3)".into(),
            ))
        }
    };
    let algorithm = std::str::from_utf8(&rest[colon + 1..]).map_err(|_| malformed("the key type is not text"))?.trim();
    let encryption = lines.text("Encryption")?;
    // Read every line before judging any value, so that a cut file is always Malformed.
    let comment = lines.header("Comment")?;
    let public = lines.base64_block("Public-Lines")?;
    let argon2_lines = if version == 3 && encryption != "none" { Some(read_argon2_lines(&mut lines)?) } else { None };
    let mut private = lines.base64_block("Private-Lines")?;
    let mac = hex::decode(lines.header("Private-MAC")?).map_err(|_| malformed("Private-MAC is not hex"))?;

    let encrypted = match encryption {
        "none" => false,
        "aes256-cbc" => true,
        other => {
            return Err(MaterialError::Unsupported(format!(
                "PuTTY key encryption {:?}; re-save the key with PuTTYgen",
                other.chars().take(32).collect::<String>()
            )))
        }
    };
    let argon2 = argon2_lines.as_ref().map(argon2_params).transpose()?;
    let keys = match (encrypted, passphrase, &argon2) {
        (true, None, _) => return Err(MaterialError::PasswordRequired),
        (true, Some(pw), Some(a)) => v3_keys(pw, a)?,
        (true, Some(pw), None) => v2_keys(pw),
        (false, _, _) if version == 3 => Keys { aes: Zeroizing::default(), iv: Zeroizing::default(), mac: Zeroizing::default() },
        (false, _, _) => Keys { aes: Zeroizing::default(), iv: Zeroizing::default(), mac: v2_mac_key(b"") },
    };
    if encrypted {
        if private.len() % 16 != 0 {
            return Err(malformed("the encrypted private blob is not a whole number of AES blocks"));
        }
        Cipher::by_name("aes256-cbc")?.decrypt(&keys.aes, &keys.iv, &mut private, &[])?;
    }

    let mut input = Writer::new();
    input.string(algorithm.as_bytes()).string(encryption.as_bytes()).string(comment).string(&public).string(&private);
    let input = Zeroizing::new(input.into_bytes());
    let mac_ok = if version == 3 {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&keys.mac).map_err(|_| malformed("bad MAC key"))?;
        m.update(&input);
        m.verify_slice(&mac).is_ok()
    } else {
        let mut m = <Hmac<Sha1> as Mac>::new_from_slice(&keys.mac).map_err(|_| malformed("bad MAC key"))?;
        m.update(&input);
        m.verify_slice(&mac).is_ok()
    };
    if !mac_ok {
        return Err(if encrypted {
            MaterialError::WrongPassword
        } else {
            malformed("the MAC does not match: the file was altered or damaged")
        });
    }

    let pk = parse_public_blob(&public)?;
    if key_type(&pk)? != algorithm {
        return Err(malformed("the key type line does not match the public key"));
    }
    let key = read_private(&pk, &private)?;
    Ok((key, String::from_utf8_lossy(comment).into_owned()))
}

/// The private blob, given the public key it belongs to. Encrypted blobs carry padding after
/// the fields; it is covered by the MAC and ignored here.
fn read_private(pk: &PublicKey, private: &[u8]) -> Result<PrivateKey, MaterialError> {
    let mut r = Reader::new(private);
    match pk {
        PublicKey::Rsa { modulus, exponent } => {
            let d = r.mpint("RSA private exponent")?;
            let p = r.mpint("RSA prime p")?;
            let q = r.mpint("RSA prime q")?;
            let _iqmp = r.mpint("RSA iqmp")?;
            Ok(PrivateKey::Rsa(keys::rsa(modulus, exponent, d, p, q)?))
        }
        PublicKey::Ec { params, point } => {
            let curve = super::super::algorithm::Algorithm::from_ec_params(params)
                .and_then(Curve::from_algorithm)
                .ok_or_else(|| malformed("unknown curve"))?;
            keys::ec(curve, r.mpint("ECDSA private scalar")?, point)
        }
        PublicKey::Ed25519 { key } => {
            // PuTTY stores the seed as a little-endian integer in a string: normally 32
            // bytes; a shorter one is zero-extended, a longer one may only add zero bytes.
            let s = r.string("Ed25519 private key")?;
            if s.len() > 32 && s[32..].iter().any(|&b| b != 0) {
                return Err(malformed("the Ed25519 private key is longer than 32 bytes"));
            }
            let mut seed = Zeroizing::new([0u8; 32]);
            let n = s.len().min(32);
            seed[..n].copy_from_slice(&s[..n]);
            keys::ed25519(&*seed, key)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::read_private_key;
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ssh/rustcrypto-ssh-key");

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()
    }

    fn public_of(name: &str) -> PublicKey {
        super::super::parse_public_line(&fixture(name)).unwrap()
    }

    #[test]
    fn reads_plain_v3_and_v2() {
        for (file, pubfile) in [
            ("id_ed25519.ppk", "id_ed25519.pub"),
            ("id_ecdsa_p256.ppk", "id_ecdsa_p256.pub"),
            ("id_rsa_3072.ppk", "id_rsa_3072.pub"),
            ("id_rsa_3072.ppk2", "id_rsa_3072.pub"),
        ] {
            let (key, comment) = read_private_key(fixture(file).as_bytes(), None).unwrap();
            assert_eq!(key.public_key(), public_of(pubfile), "{file}");
            assert_eq!(comment, "user@example.com");
        }
    }

    #[test]
    fn encrypted_v2_and_wrong_passphrases() {
        let data = fixture("id_rsa_3072_enc.ppk2");
        assert_eq!(read_private_key(data.as_bytes(), None).unwrap_err(), MaterialError::PasswordRequired);
        assert_eq!(read_private_key(data.as_bytes(), Some(b"124")).unwrap_err(), MaterialError::WrongPassword);
        let (key, _) = read_private_key(data.as_bytes(), Some(b"123")).unwrap();
        assert_eq!(key.public_key(), public_of("id_rsa_3072.pub"));
        let v3 = fixture("id_ed25519_enc.ppk");
        assert_eq!(read_private_key(v3.as_bytes(), Some(b"124")).unwrap_err(), MaterialError::WrongPassword);
    }

    #[test]
    fn altered_plain_file_fails_the_mac() {
        let data = fixture("id_ed25519.ppk").replace("Comment: user@example.com", "Comment: user@example.org");
        let err = read_private_key(data.as_bytes(), None).unwrap_err();
        assert!(matches!(err, MaterialError::Malformed(ref m) if m.contains("altered")), "{err:?}");
        // A flipped character in the public lines, too.
        let data = fixture("id_ecdsa_p256.ppk");
        let i = data.find("Public-Lines: 3\n").unwrap() + 20;
        let mut bytes = data.into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        assert!(matches!(read_private_key(&bytes, None), Err(MaterialError::Malformed(_))));
    }

    #[test]
    fn argon2_parameters_are_capped_before_the_kdf_runs() {
        let data = fixture("id_ed25519_enc.ppk");
        let started = std::time::Instant::now();
        for (from, to, word) in [
            ("Argon2-Memory: 8192", "Argon2-Memory: 4194304", "memory"),
            ("Argon2-Memory: 8192", "Argon2-Memory: 99999999999999999999999", "memory"),
            ("Argon2-Passes: ", "Argon2-Passes: 100000", "passes"),
            ("Argon2-Parallelism: 1", "Argon2-Parallelism: 64", "parallelism"),
            ("Argon2-Memory: 8192", "Argon2-Memory: 65536", "×"),
        ] {
            assert!(data.contains(from));
            let crafted = data.replacen(from, to, 1);
            let err = read_private_key(crafted.as_bytes(), Some(b"123")).unwrap_err();
            assert!(matches!(err, MaterialError::KdfTooExpensive(ref m) if m.contains(word)), "{to}: {err:?}");
            // Caps come before asking for a passphrase.
            assert!(matches!(read_private_key(crafted.as_bytes(), None), Err(MaterialError::KdfTooExpensive(_))));
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let crafted = data.replacen("Argon2-Memory: 8192", "Argon2-Memory: 0", 1);
        assert!(matches!(read_private_key(crafted.as_bytes(), Some(b"123")), Err(MaterialError::Malformed(_))));
        let crafted = data.replacen("Argon2-Memory: 8192", "Argon2-Memory: -1", 1);
        assert!(matches!(read_private_key(crafted.as_bytes(), Some(b"123")), Err(MaterialError::Malformed(_))));
    }

    #[test]
    fn every_truncation_fails_cleanly() {
        for name in ["id_ed25519.ppk", "id_ecdsa_p256.ppk", "id_rsa_3072.ppk2"] {
            let data = fixture(name);
            let end = data.trim_end().len();
            for len in 0..end {
                match read(&data.as_bytes()[..len], None) {
                    Err(MaterialError::Malformed(_)) => {}
                    Err(MaterialError::UnknownFormat(_)) if len < MAGIC.len() + 1 => {}
                    other => panic!("{name} cut at {len}: {other:?}"),
                }
            }
        }
        // Encrypted: a cut never panics (a cut in the MAC reads as a wrong passphrase).
        let data = fixture("id_rsa_3072_enc.ppk2");
        for len in 0..data.trim_end().len() {
            assert!(read(&data.as_bytes()[..len], Some(b"123")).is_err());
        }
    }

    #[test]
    fn private_blob_truncations_are_malformed() {
        // Re-MAC an unencrypted v3 file around a cut private blob: the field parser itself
        // must fail cleanly at every length.
        for name in ["id_ed25519.ppk", "id_ecdsa_p256.ppk", "id_rsa_3072.ppk"] {
            let data = fixture(name);
            let mut lines = Lines { it: Box::new(super::super::lines(data.as_bytes())) };
            lines.next_line("").unwrap();
            lines.header("Encryption").unwrap();
            lines.header("Comment").unwrap();
            let public = lines.base64_block("Public-Lines").unwrap();
            let private = lines.base64_block("Private-Lines").unwrap();
            let pk = parse_public_blob(&public).unwrap();
            assert!(read_private(&pk, &private).is_ok());
            for len in 0..private.len() {
                assert!(matches!(read_private(&pk, &private[..len]), Err(MaterialError::Malformed(_))), "{name} {len}");
            }
        }
    }

    #[test]
    fn old_and_unknown_versions() {
        let v1 = "PuTTY-User-Key-File-1: ssh-rsa\nEncryption: none\n";
        assert!(matches!(read_private_key(v1.as_bytes(), None), Err(MaterialError::Unsupported(_))));
        let data = fixture("id_rsa_3072.ppk2").replacen("Encryption: none", "Encryption: aes128-cbc", 1);
        assert!(matches!(read_private_key(data.as_bytes(), None), Err(MaterialError::Unsupported(_))));
    }
}
