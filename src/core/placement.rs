//! Which token holds each of keyport's own keys: the HTTPS server key, the at-rest key that
//! seals the DEK, the vault client key. The rule, the same for all three: the token that
//! already holds it; else the first configured token whose capabilities can make it. A token
//! that has never been opened (absent since start) stops the walk, so a key is never made on a
//! later token only because an earlier one is away for a moment. With no such token the one
//! feature is off, and [`NoToken`] says why in the log and in health; keyport still starts.

use std::sync::Arc;

use crate::material::algorithm::Algorithm;
use crate::token::{Capabilities, Token, Tokens};

/// One of keyport's own keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnKey {
    /// The self-signed HTTPS certificate's P-256 key (`core::tls_identity`).
    Tls,
    /// The key that seals the DEK at rest (`core::dek`, `token::at_rest`).
    AtRest,
    /// The vault client key for certificate login (`sync::client_cert`).
    VaultClient,
}

impl OwnKey {
    /// Its CKA_ID (and CKA_LABEL) in the token.
    pub const fn id(self) -> &'static [u8] {
        match self {
            OwnKey::Tls => crate::token::reserved::TLS_ID,
            OwnKey::AtRest => crate::token::reserved::AT_REST_KEY_ID,
            OwnKey::VaultClient => crate::token::reserved::CLIENT_KEY_ID,
        }
    }

    fn what(self) -> &'static str {
        match self {
            OwnKey::Tls => "the HTTPS server key",
            OwnKey::AtRest => "the at-rest key that seals the edge encryption key (DEK)",
            OwnKey::VaultClient => "the vault client key",
        }
    }

    fn needs(self) -> &'static str {
        match self {
            OwnKey::Tls | OwnKey::VaultClient => "ECDSA P-256 key generation",
            OwnKey::AtRest => "AES key generation with AES-GCM, or RSA-2048 generation with RSA-OAEP decryption",
        }
    }

    fn fits(self, c: &Capabilities) -> bool {
        match self {
            OwnKey::Tls | OwnKey::VaultClient => c.can_generate(Algorithm::EcP256),
            OwnKey::AtRest => c.at_rest().is_some(),
        }
    }
}

/// Why no token can hold one of keyport's own keys.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct NoToken {
    pub message: String,
    /// The walk stopped at a token that is away: it may pass.
    pub retry: bool,
}

/// The token for `key` (see the module doc). `holds` says whether a token already holds it.
pub fn token_for(tokens: &Tokens, key: OwnKey, holds: impl Fn(&Token) -> bool) -> Result<Arc<Token>, NoToken> {
    if let Some(t) = tokens.all().iter().find(|t| holds(t)) {
        return Ok(t.clone());
    }
    let mut passed = Vec::new();
    for t in tokens.all() {
        match t.capabilities() {
            None => {
                return Err(NoToken {
                    message: format!(
                        "{} cannot be made or found: token '{}' (the first that may hold it) has not been opened since start",
                        key.what(),
                        t.name
                    ),
                    retry: true,
                })
            }
            Some(c) if key.fits(&c) => return Ok(t.clone()),
            Some(c) => passed.push(format!(
                "token '{}' generates {}{}",
                t.name,
                c.generates_list(),
                if key == OwnKey::AtRest { format!(" and {}", c.describe().last().cloned().unwrap_or_default()) } else { String::new() }
            )),
        }
    }
    Err(NoToken {
        message: format!(
            "no configured token can hold {}: it needs {}, and {}; add a token that can (SoftHSM, an HSM) to [[tokens]]",
            key.what(),
            key.needs(),
            if passed.is_empty() { "no token is configured".into() } else { passed.join("; ") }
        ),
        retry: false,
    })
}

/// Whether `t` holds an object under `id` now (its index; no token call).
pub fn holds_id(t: &Token, id: &[u8]) -> bool {
    t.has_object(id)
}

/// What `keyport config check` adds once the file is valid: each token opened (never created)
/// and its capabilities, then where each of keyport's own keys this configuration needs would
/// live, or that its feature would be off and why. One line each.
pub fn check_config(cfg: &crate::config::Config) -> Vec<String> {
    use crate::config::TlsConfig;
    let mut out = Vec::new();
    if let Err(m) = crate::token::softhsm::prepare_env(cfg) {
        out.push(format!("tokens: {m}"));
        return out;
    }
    let mut list = Vec::new();
    for t in &cfg.tokens {
        match Token::open_with(t.clone(), false) {
            Ok(tok) => {
                for line in tok.capabilities().map(|c| c.describe()).unwrap_or_default() {
                    out.push(format!("token '{}': {line}", t.name));
                }
                list.push(tok);
            }
            Err(e) => {
                out.push(format!("token '{}': not opened ({}); its capabilities are checked at start", t.name, e.error()));
                list.push(Token::absent(t.clone()));
            }
        }
    }
    let tokens = Tokens::new(list);
    let mut needed = vec![OwnKey::AtRest];
    if cfg.listen.tcp.is_some() && matches!(cfg.listen.tls, TlsConfig::SelfSigned) {
        needed.push(OwnKey::Tls);
    }
    if cfg.sync.enabled() && cfg.sync.cert.is_some() {
        needed.push(OwnKey::VaultClient);
    }
    for key in needed {
        match token_for(&tokens, key, |t| holds_id(t, key.id())) {
            Ok(t) => out.push(format!("{}: token '{}'", key.what(), t.name)),
            Err(e) if e.retry => out.push(format!("{}: {e}", key.what())),
            Err(e) => out.push(format!("off: {e}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PinSource, TokenConfig};
    use crate::token::Capabilities;

    fn err(r: Result<Arc<Token>, NoToken>) -> NoToken {
        match r {
            Ok(t) => panic!("placed on '{}'", t.name),
            Err(e) => e,
        }
    }

    fn cfg(name: &str) -> TokenConfig {
        TokenConfig {
            name: name.into(),
            module: "/nonexistent.so".into(),
            label: Some(name.into()),
            serial: None,
            pin: PinSource::Env("X".into()),
            sessions: None,
            softhsm: None,
        }
    }

    /// A token that generates only RSA, cannot seal (no AES-GCM, no RSA-OAEP), cannot wrap.
    fn poor() -> Capabilities {
        Capabilities {
            generates: vec![Algorithm::Rsa2048],
            rsa_bits: Some((2048, 2048)),
            ec_bits: None,
            ed25519: false,
            wrap_private: false,
            create_private: false,
            create_secret: false,
            generate_secret: false,
            aes_gcm: false,
            rsa_oaep_decrypt: false,
            hardware: true,
            read_only: false,
            mechanisms: vec![],
        }
    }

    fn tpm_like() -> Capabilities {
        Capabilities { generates: vec![Algorithm::Rsa2048, Algorithm::EcP256], ec_bits: Some((256, 384)), rsa_oaep_decrypt: true, ..poor() }
    }

    #[test]
    fn the_first_token_that_can_make_it_and_off_with_a_reason_when_none_can() {
        let tokens = Tokens::new(vec![Token::with_capabilities(cfg("poor"), poor()), Token::with_capabilities(cfg("tpm"), tpm_like())]);
        let none = |_: &Token| false;
        assert_eq!(token_for(&tokens, OwnKey::Tls, none).unwrap().name, "tpm");
        assert_eq!(token_for(&tokens, OwnKey::AtRest, none).unwrap().name, "tpm");
        // The token that already holds it wins, capable or not.
        assert_eq!(token_for(&tokens, OwnKey::Tls, |t: &Token| t.name == "poor").unwrap().name, "poor");

        let only_poor = Tokens::new(vec![Token::with_capabilities(cfg("poor"), poor())]);
        let e = err(token_for(&only_poor, OwnKey::AtRest, none));
        assert!(!e.retry);
        assert!(e.message.contains("no configured token can hold the at-rest key"), "{e}");
        assert!(e.message.contains("token 'poor' generates rsa-2048"), "{e}");
        let e = err(token_for(&only_poor, OwnKey::Tls, none));
        assert!(e.message.contains("ECDSA P-256"), "{e}");

        // A token never opened stops the walk: the key waits for it, never moves on.
        let first_away = Tokens::new(vec![Token::absent(cfg("away")), Token::with_capabilities(cfg("tpm"), tpm_like())]);
        let e = err(token_for(&first_away, OwnKey::Tls, none));
        assert!(e.retry && e.message.contains("'away'"), "{e}");
    }

    #[test]
    fn refusals_name_the_token_what_it_offers_and_who_can() {
        use crate::core::token_caps::{check_generate, check_import};
        let soft = Capabilities {
            generates: Algorithm::ALL.to_vec(),
            ed25519: true,
            wrap_private: true,
            create_private: true,
            hardware: false,
            ..tpm_like()
        };
        let tokens = Tokens::new(vec![Token::with_capabilities(cfg("soft"), soft), Token::with_capabilities(cfg("tpm"), tpm_like())]);
        let tpm = tokens.get(Some("tpm")).unwrap();
        let e = check_generate(&tokens, tpm, Algorithm::Ed25519, false).unwrap_err().to_string();
        assert!(
            e.contains("token 'tpm' cannot generate ed25519") && e.contains("rsa-2048, ec-p256") && e.contains("token 'soft' can"),
            "{e}"
        );
        let e = check_generate(&tokens, tpm, Algorithm::EcP256, true).unwrap_err().to_string();
        assert!(e.contains("not exportable on this token"), "{e}");
        assert!(check_generate(&tokens, tpm, Algorithm::EcP256, false).is_ok());
        let e = check_import(&tokens, tpm, Algorithm::EcP256, false).unwrap_err().to_string();
        assert!(e.contains("token 'tpm' cannot import private keys") && e.contains("token 'soft' can"), "{e}");
        assert!(check_import(&tokens, tokens.get(Some("soft")).unwrap(), Algorithm::Ed25519, true).is_ok());

        // A read-only token offers nothing, and says why.
        let ro = Capabilities { generates: vec![], rsa_bits: None, read_only: true, ..poor() };
        let tokens = Tokens::new(vec![Token::with_capabilities(cfg("trust"), ro), Token::with_capabilities(cfg("tpm"), tpm_like())]);
        let trust = tokens.get(Some("trust")).unwrap();
        let e = check_generate(&tokens, trust, Algorithm::EcP256, false).unwrap_err().to_string();
        assert!(e.contains("it is a read-only token") && e.contains("token 'tpm' can"), "{e}");
        let e = check_import(&tokens, trust, Algorithm::EcP256, false).unwrap_err().to_string();
        assert!(e.contains("cannot import private keys (it is a read-only token)"), "{e}");
        assert!(crate::core::token_caps::check_import_secret(&tokens, trust).is_err());
        assert_eq!(token_for(&tokens, OwnKey::Tls, |_: &Token| false).unwrap().name, "tpm", "own keys skip it");
    }
}
