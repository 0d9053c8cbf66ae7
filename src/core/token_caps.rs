//! Token capabilities as the operations see them: before a key is generated, imported or
//! exported, the token's probed [`Capabilities`](crate::token::Capabilities) say whether it can
//! be done there, and the refusal names the token, what it offers, and where else to go. A
//! token never opened (absent since start) has no capabilities yet; the operation then meets
//! the token's own 503.

use super::CoreError;
use crate::material::algorithm::Algorithm;
use crate::token::{Token, Tokens};

/// Names of the other tokens for which `fits` holds, for "use token 'x'" hints.
fn others(tokens: &Tokens, this: &Token, fits: impl Fn(&crate::token::Capabilities) -> bool) -> String {
    let names: Vec<String> = tokens
        .all()
        .iter()
        .filter(|t| t.name != this.name && t.capabilities().is_some_and(|c| fits(&c)))
        .map(|t| format!("'{}'", t.name))
        .collect();
    if names.is_empty() {
        "no other configured token can".into()
    } else {
        format!("token {} can", names.join(", "))
    }
}

/// What a token offers instead, ending so that "another token (…)" follows.
fn offers(c: &crate::token::Capabilities) -> String {
    if c.read_only {
        "it is a read-only token (keyport can make no key in it): use".into()
    } else if c.generates.is_empty() {
        "it generates no key pairs: use".into()
    } else {
        format!("it offers {}. Choose one of those, or", c.generates_list())
    }
}

/// The words every face shows for a key whose token cannot wrap it out: export and sync.
pub fn not_exportable_on_token(key_name: &str, token: &str) -> String {
    format!(
        "key '{key_name}' is not exportable on this token: token '{token}' cannot wrap private keys out (it has no AES key-wrap mechanism); the key stays in the token and is used in place (sign)"
    )
}

/// Whether the token `name` is known to be unable to wrap private keys out.
pub fn cannot_wrap(tokens: &Tokens, name: &str) -> bool {
    tokens.get(Some(name)).and_then(|t| t.capabilities()).is_some_and(|c| !c.wrap_private)
}

/// For faces whose keys are exportable whenever the namespace allows it (KPS): `allowed`,
/// unless the token the key goes to (`None`: the first) cannot wrap keys out; the key is then
/// made non-extractable and used in place rather than refused.
pub fn exportable_where_possible(tokens: &Tokens, token: Option<&str>, allowed: bool) -> bool {
    allowed && tokens.get(token).and_then(|t| t.capabilities()).is_none_or(|c| c.wrap_private)
}

/// Generation of `alg` (exportable or not) in `token`.
pub fn check_generate(tokens: &Tokens, token: &Token, alg: Algorithm, exportable: bool) -> Result<(), CoreError> {
    let Some(c) = token.capabilities() else { return Ok(()) };
    if !c.can_generate(alg) {
        return Err(CoreError::invalid(
            "unsupported_by_token",
            format!(
                "token '{}' cannot generate {} keys; {} another token ({})",
                token.name,
                alg.as_str(),
                offers(&c),
                others(tokens, token, |o| o.can_generate(alg))
            ),
        ));
    }
    check_exportable(tokens, token, exportable)
}

/// An exportable key needs a token that can wrap it out.
fn check_exportable(tokens: &Tokens, token: &Token, exportable: bool) -> Result<(), CoreError> {
    let Some(c) = token.capabilities() else { return Ok(()) };
    if exportable && !c.wrap_private {
        return Err(CoreError::invalid(
            "not_exportable_on_token",
            format!(
                "token '{}' cannot wrap private keys out, so keys there are not exportable on this token: ask for \"exportable\": false (the namespace's exportable_by_default may have asked for it), or use another token ({})",
                token.name,
                others(tokens, token, |o| o.wrap_private)
            ),
        ));
    }
    Ok(())
}

/// Import (C_CreateObject of a private key) of an `alg` key into `token`.
pub fn check_import(tokens: &Tokens, token: &Token, alg: Algorithm, exportable: bool) -> Result<(), CoreError> {
    let Some(c) = token.capabilities() else { return Ok(()) };
    if !c.create_private {
        return Err(CoreError::invalid(
            "unsupported_by_token",
            format!(
                "token '{}' cannot import private keys ({}); import into another token ({})",
                token.name,
                if c.read_only {
                    "it is a read-only token".to_string()
                } else {
                    format!("it refuses to create private key objects; it only generates keys: {}", c.generates_list())
                },
                others(tokens, token, |o| o.create_private)
            ),
        ));
    }
    if alg == Algorithm::Ed25519 && !c.ed25519 {
        return Err(CoreError::invalid(
            "unsupported_by_token",
            format!(
                "token '{}' cannot hold Ed25519 keys; it offers {}; import into another token ({})",
                token.name,
                c.generates_list(),
                others(tokens, token, |o| o.ed25519 && o.create_private)
            ),
        ));
    }
    check_exportable(tokens, token, exportable)
}

/// Import (C_CreateObject) of a secret key into `token` (the 004 face's SECRET_KEY).
pub fn check_import_secret(tokens: &Tokens, token: &Token) -> Result<(), CoreError> {
    let Some(c) = token.capabilities() else { return Ok(()) };
    if !c.create_secret {
        return Err(CoreError::invalid(
            "unsupported_by_token",
            format!(
                "token '{}' cannot import secret keys (it refuses to create secret key objects); deploy it to an environment on another token ({})",
                token.name,
                others(tokens, token, |o| o.create_secret)
            ),
        ));
    }
    Ok(())
}

/// One key as `GET /keyport/v1/health/keys` shows it: the token's own flags, and keyport's
/// verdict on whether the key was ever outside the token.
#[derive(Debug, serde::Serialize)]
pub struct KeyHistory {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub token: String,
    pub origin: String,
    #[serde(flatten)]
    pub facts: crate::token::key_facts::KeyFacts,
    /// Generated in the token (CKA_LOCAL) and never extractable, and keyport generated it: the
    /// private key has never existed outside the token. An imported key is never counted so,
    /// whatever its flags say (a token may mark an imported key "never extractable").
    pub never_outside_token: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The history of every key `who` may read, one token call per token.
pub async fn key_histories(app: &super::App, who: &super::authz::Principal) -> Result<Vec<KeyHistory>, CoreError> {
    let keys = super::keys::list(app, who, None, None)?;
    let mut out = Vec::new();
    for t in app.tokens.all() {
        let mine: Vec<_> = keys.iter().filter(|k| k.token == t.name).collect();
        if mine.is_empty() {
            continue;
        }
        let ids: Vec<Vec<u8>> = mine.iter().map(|k| k.cka_id.clone()).collect();
        let read = t.run(move |c| ids.iter().map(|id| crate::token::key_facts::read(c, id)).collect::<Result<Vec<_>, _>>()).await;
        for (i, k) in mine.iter().enumerate() {
            let (facts, note) = match &read {
                Ok(v) => match &v[i] {
                    Some(f) => (f.clone(), None),
                    None => (Default::default(), Some("the token holds no private key for it (status missing)".to_string())),
                },
                Err(e) => (Default::default(), Some(e.to_string())),
            };
            let generated = k.origin == "generated";
            let never_outside_token = generated && facts.local == Some(true) && facts.never_extractable == Some(true);
            let note = note.or_else(|| {
                (!generated && facts.never_extractable == Some(true))
                    .then(|| format!("{}: the key existed outside the token before, whatever CKA_NEVER_EXTRACTABLE says", k.origin))
            });
            out.push(KeyHistory {
                id: k.id.clone(),
                name: k.name.clone(),
                namespace: k.namespace.clone(),
                token: k.token.clone(),
                origin: k.origin.clone(),
                facts,
                never_outside_token,
                note,
            });
        }
    }
    Ok(out)
}
