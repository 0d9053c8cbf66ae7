//! What kind of key an inventory row holds: a key pair of a known algorithm, a public key
//! alone, a secret (symmetric) key, or something this keyport does not know. Parsed once where
//! the row is read, so no face guesses from a string (an AES key once showed up in a list of
//! SSH key pairs as Ed25519). Written back as the same strings the column always held
//! (`ec-p256`, `rsa-2048-public`, `aes-256`, `des3`), so old stores and wire formats stay.

use super::algorithm::Algorithm;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// A private key and its public half: signs, exports (if allowed), syncs.
    Pair(Algorithm),
    /// A public key alone (the 004 face imports RSA public keys).
    Public(Algorithm),
    /// A secret key: AES of `bits`, single DES or three-key triple DES.
    Secret(SecretKind),
    /// What this version cannot name (an RSA size keyport does not generate: `rsa`, a row from
    /// a newer keyport): shown as stored, never used as a key pair.
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecretKind {
    Aes { bits: u16 },
    Des,
    Des3,
}

impl KeyKind {
    /// Reads the inventory column; never fails (unknown names are [`KeyKind::Other`]).
    pub fn parse(s: &str) -> KeyKind {
        if let Some(a) = Algorithm::parse(s) {
            return KeyKind::Pair(a);
        }
        if let Some(a) = s.strip_suffix("-public").and_then(Algorithm::parse) {
            return KeyKind::Public(a);
        }
        match s {
            "des" => return KeyKind::Secret(SecretKind::Des),
            "des3" => return KeyKind::Secret(SecretKind::Des3),
            _ => {}
        }
        if let Some(bits) = s.strip_prefix("aes-").and_then(|b| b.parse().ok()).filter(|b| [128, 192, 256].contains(b)) {
            return KeyKind::Secret(SecretKind::Aes { bits });
        }
        KeyKind::Other(s.to_string())
    }

    /// The algorithm of a key pair; `None` for anything that cannot sign or be a pair.
    pub fn pair(&self) -> Option<Algorithm> {
        match self {
            KeyKind::Pair(a) => Some(*a),
            _ => None,
        }
    }

    /// The key's algorithm whether pair or public key alone.
    pub fn asymmetric(&self) -> Option<Algorithm> {
        match self {
            KeyKind::Pair(a) | KeyKind::Public(a) => Some(*a),
            _ => None,
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyKind::Pair(a) => f.write_str(a.as_str()),
            KeyKind::Public(a) => write!(f, "{}-public", a.as_str()),
            KeyKind::Secret(SecretKind::Aes { bits }) => write!(f, "aes-{bits}"),
            KeyKind::Secret(SecretKind::Des) => f.write_str("des"),
            KeyKind::Secret(SecretKind::Des3) => f.write_str("des3"),
            KeyKind::Other(s) => f.write_str(s),
        }
    }
}

impl serde::Serialize for KeyKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stored_name_reads_back_as_itself_and_only_pairs_are_pairs() {
        for a in Algorithm::ALL {
            assert_eq!(KeyKind::parse(a.as_str()), KeyKind::Pair(a));
            assert_eq!(KeyKind::parse(&format!("{}-public", a.as_str())), KeyKind::Public(a));
        }
        for s in ["ec-p256", "rsa-2048-public", "aes-128", "aes-192", "aes-256", "des", "des3", "rsa", "rsa-public", "unknown"] {
            assert_eq!(KeyKind::parse(s).to_string(), s);
        }
        assert_eq!(KeyKind::parse("aes-256"), KeyKind::Secret(SecretKind::Aes { bits: 256 }));
        assert_eq!(KeyKind::parse("aes-100"), KeyKind::Other("aes-100".into()));
        assert_eq!(KeyKind::parse("aes-256").pair(), None);
        assert_eq!(KeyKind::parse("rsa-2048-public").pair(), None);
        assert_eq!(KeyKind::parse("rsa").pair(), None);
        assert_eq!(serde_json::to_value(KeyKind::parse("ed25519")).unwrap(), "ed25519");
    }
}
