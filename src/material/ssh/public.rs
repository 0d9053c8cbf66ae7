//! SSH public keys: the wire blob (RFC 4253 §6.6, RFC 5656 §3.1, RFC 8709 §4), the one-line
//! `.pub` / authorized_keys form, and the `SHA256:` fingerprint `ssh-keygen -lf` prints.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::super::algorithm::Algorithm;
use super::super::key::MaterialError;
use super::super::spki::PublicKey;
use super::keys::{unsupported_key_type, Curve};
use super::wire::{Reader, Writer};

/// The SSH key-type name of a public key (`ssh-rsa`, `ecdsa-sha2-nistp256`, `ssh-ed25519`).
pub fn key_type(pk: &PublicKey) -> Result<&'static str, MaterialError> {
    match pk {
        PublicKey::Rsa { .. } => Ok("ssh-rsa"),
        PublicKey::Ec { params, .. } => Ok(ec_curve(params)?.key_type()),
        PublicKey::Ed25519 { .. } => Ok("ssh-ed25519"),
    }
}

fn ec_curve(params: &[u8]) -> Result<Curve, MaterialError> {
    Algorithm::from_ec_params(params)
        .and_then(Curve::from_algorithm)
        .ok_or_else(|| MaterialError::Unsupported("an EC curve SSH has no name for (P-256, P-384 and P-521 only)".into()))
}

/// The SSH wire public-key blob, or an error for an EC key on a curve SSH cannot name.
pub fn try_public_key_blob(pk: &PublicKey) -> Result<Vec<u8>, MaterialError> {
    let mut w = Writer::new();
    match pk {
        PublicKey::Rsa { modulus, exponent } => {
            w.string(b"ssh-rsa").mpint(exponent).mpint(modulus);
        }
        PublicKey::Ec { params, point } => {
            let curve = ec_curve(params)?;
            w.string(curve.key_type().as_bytes()).string(curve.name().as_bytes()).string(point);
        }
        PublicKey::Ed25519 { key } => {
            w.string(b"ssh-ed25519").string(key);
        }
    }
    Ok(w.into_bytes())
}

/// The SSH wire public-key blob (what `.pub` files carry in base64). A `PublicKey::Ec` whose
/// `params` are not P-256/384/521 has no SSH form and gives an empty blob; use
/// [`try_public_key_blob`] to get an error instead.
pub fn public_key_blob(pk: &PublicKey) -> Vec<u8> {
    try_public_key_blob(pk).unwrap_or_default()
}

/// `<type> <base64 blob> <comment>`, as in a `.pub` file (no newline; no trailing space
/// when the comment is empty). Line breaks in the comment become spaces.
pub fn public_key_line(pk: &PublicKey, comment: &str) -> String {
    let kind = key_type(pk).unwrap_or("unknown");
    let blob = STANDARD.encode(public_key_blob(pk));
    let comment = comment.replace(['\r', '\n'], " ");
    if comment.is_empty() {
        format!("{kind} {blob}")
    } else {
        format!("{kind} {blob} {comment}")
    }
}

/// `SHA256:` and the unpadded base64 of SHA-256 over the blob: what `ssh-keygen -lf` shows.
pub fn fingerprint_sha256(pk: &PublicKey) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(public_key_blob(pk))))
}

/// Parses an SSH wire public-key blob. The whole blob must be used.
pub fn parse_public_blob(blob: &[u8]) -> Result<PublicKey, MaterialError> {
    let mut r = Reader::new(blob);
    let kind = r.text("public key type")?;
    let pk = read_public_fields(kind, &mut r)?;
    if !r.is_empty() {
        return Err(MaterialError::Malformed("extra bytes after the public key".into()));
    }
    Ok(pk)
}

/// Reads the fields that follow the type name in a public blob (and, for OpenSSH's private
/// section, that open each key's private fields: the same order for ECDSA and Ed25519).
pub(super) fn read_public_fields(kind: &str, r: &mut Reader<'_>) -> Result<PublicKey, MaterialError> {
    if kind == "ssh-rsa" {
        let e = r.mpint("RSA public exponent")?;
        let n = r.mpint("RSA modulus")?;
        if n.is_empty() || e.is_empty() {
            return Err(MaterialError::Malformed("the RSA public key is zero".into()));
        }
        return Ok(PublicKey::Rsa { modulus: n.to_vec(), exponent: e.to_vec() });
    }
    if let Some(curve) = Curve::from_key_type(kind) {
        return read_ec_public(curve, r);
    }
    if kind == "ssh-ed25519" {
        let key = r.string("Ed25519 public key")?;
        let key: [u8; 32] = key.try_into().map_err(|_| MaterialError::Malformed("the Ed25519 public key is not 32 bytes".into()))?;
        return Ok(PublicKey::Ed25519 { key });
    }
    Err(unsupported_key_type(kind))
}

/// `string curve-name, string Q` after an `ecdsa-sha2-*` type name.
pub(super) fn read_ec_public(curve: Curve, r: &mut Reader<'_>) -> Result<PublicKey, MaterialError> {
    let name = r.string("ECDSA curve name")?;
    if name != curve.name().as_bytes() {
        return Err(MaterialError::Malformed(format!("the curve name does not match the key type {}", curve.key_type())));
    }
    let point = r.string("ECDSA public point")?;
    curve.check_point(point)?;
    let params = curve.algorithm().ec_params().unwrap_or_default().to_vec();
    Ok(PublicKey::Ec { params, point: point.to_vec() })
}

/// Parses one `.pub` / authorized_keys line: `<type> <base64> [comment]`. Options before
/// the type (authorized_keys) are not accepted. The type word must match the blob's.
pub fn parse_public_line(line: &str) -> Result<PublicKey, MaterialError> {
    let mut words = line.split_ascii_whitespace();
    let kind = words.next().ok_or_else(|| MaterialError::Malformed("an empty public key line".into()))?;
    let b64 = words.next().ok_or_else(|| MaterialError::Malformed("no base64 key after the key type".into()))?;
    let blob = super::decode_base64(b64.as_bytes())?;
    let pk = parse_public_blob(&blob)?;
    if key_type(&pk)? != kind {
        return Err(MaterialError::Malformed("the key type word does not match the encoded key".into()));
    }
    Ok(pk)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The RFC 8032 test key 1 as an OpenSSH line; fingerprint from `ssh-keygen -lf`.
    const ED_LINE: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINdamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea test";

    #[test]
    fn line_round_trips_and_fingerprints() {
        let pk = parse_public_line(ED_LINE).unwrap();
        assert_eq!(public_key_line(&pk, "test"), ED_LINE);
        assert_eq!(public_key_line(&pk, ""), ED_LINE.trim_end_matches(" test"));
        assert_eq!(fingerprint_sha256(&pk), "SHA256:bbXpuKG6zhzdmnxq256TlqzFBzRl2f6OOg722cYNbU8");
        assert_eq!(parse_public_line(&format!("  {ED_LINE}\n")).unwrap(), pk);
    }

    #[test]
    fn rejects_mismatch_and_junk() {
        let bad = ED_LINE.replacen("ssh-ed25519", "ssh-rsa", 1);
        assert!(matches!(parse_public_line(&bad), Err(MaterialError::Malformed(_))));
        assert!(parse_public_line("").is_err());
        assert!(parse_public_line("ssh-ed25519").is_err());
        assert!(parse_public_line("ssh-ed25519 !!!!").is_err());
        let mut blob = public_key_blob(&parse_public_line(ED_LINE).unwrap());
        blob.push(0);
        assert!(parse_public_blob(&blob).is_err());
        let dss = Writer::new().string(b"ssh-dss").buf.clone();
        assert!(matches!(parse_public_blob(&dss), Err(MaterialError::Unsupported(m)) if m.contains("DSA")));
    }

    #[test]
    fn unknown_curve_has_no_blob() {
        let pk = PublicKey::Ec { params: vec![6, 1, 0], point: vec![4] };
        assert!(try_public_key_blob(&pk).is_err());
        assert!(public_key_blob(&pk).is_empty());
    }
}
