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
    /// The self-signed HTTPS certificate's P-256 key (`api::tls`).
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
            OwnKey::Tls => b"keyport-tls",
            OwnKey::AtRest => b"keyport-at-rest",
            OwnKey::VaultClient => b"keyport-vault-client",
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
                        "{} cannot be made: token '{}' (the first that may hold it) has not been opened yet; keyport tries again when it is back",
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
