//! Identifiers keyport hands out. Clients paste them into URL paths without encoding, so every
//! one is URL-safe: lowercase hex, dashes, or base64url without padding.

use rand::RngCore;

/// A random (version 4) UUID, lowercase, as the vendors' ids look.
pub fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
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
        let b = b64url(&[0xfb, 0xff, 0xfe]);
        assert!(b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'), "{b}");
    }
}
