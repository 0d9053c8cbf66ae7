//! Identifiers keyport hands out. Clients paste them into URL paths without encoding, so every
//! one is URL-safe: lowercase hex, dashes, or base64url without padding.

/// A random (version 4) UUID, lowercase, as the vendors' ids look.
pub fn uuid_v4() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A UUID derived from `seed` (SHA-256, version and variant nibbles set as version 4): the
/// same seed gives the same id across restarts and upgrades.
pub fn derived_uuid(seed: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut b: [u8; 16] = Sha256::digest(seed.as_bytes())[..16].try_into().expect("16 of 32 bytes");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x0f) | 0x80;
    uuid::Uuid::from_bytes(b).to_string()
}

/// base64url without padding: URL-safe, unlike the standard alphabet's `+`, `/` and `=`.
pub fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_url_safe() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(u.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-'));
        // The derived ids clients already hold (account and division of the certificate face).
        assert_eq!(derived_uuid("keyport iot account"), derived_uuid("keyport iot account"));
        let h = hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(b"keyport iot account")[..16]);
        let old = format!("{}-{}-4{}-8{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32]);
        assert_eq!(derived_uuid("keyport iot account"), old);
        let b = b64url(&[0xfb, 0xff, 0xfe]);
        assert!(b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'), "{b}");
    }
}
