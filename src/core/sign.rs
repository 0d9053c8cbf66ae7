//! Signing with a key that stays in the token: the one operation behind the ssh-agent
//! (`api::agent`) and `POST /keyport/v1/keys/{id}/sign` (`api::sign`).
//!
//! Authorize (the `sign` permission on the key's namespace, and the `allowed_uids` of
//! `[agent.namespaces.<ns>]` and `[agent.keys.<id>]` when set) → the per-principal rate limit →
//! the confirm hooks (namespace's, key's) → C_Sign in the token → an audit entry naming the principal, uid, pid, key, scheme and, when the data
//! is an SSH userauth request or an SSHSIG blob, what it signs (`context`). Refusals of
//! permission are audited too and spend the rate limit's budget; rate-limit refusals, and
//! refusals over the budget, are logged, not audited, so a flood cannot become a flood of
//! audit rows.

pub mod confirm;
mod context;
mod key_cache;
mod limit;
pub mod ssh_cert;

pub use context::describe as describe_data;
pub use limit::RateLimiter;

use sha2::Digest;

use super::authz::{Peer, Principal};
use super::keys::audit;
use super::{App, CoreError};
use crate::config::Permission;
use crate::material::algorithm::Algorithm;
use crate::material::spki::PublicKey;
use crate::store::KeyRecord;
pub use crate::token::sign::HashAlg;
use crate::token::sign::{self as token_sign, SignMechanism};

/// Who asks for a signature and through which door, for authorization and the audit.
#[derive(Debug, Clone, Copy)]
pub struct SignCaller<'a> {
    pub principal: &'a Principal,
    pub peer: Peer,
    /// `agent` or `api`.
    pub via: &'static str,
}

/// How a signature is made. The hash of ECDSA is chosen by the caller (SSH: the curve's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// RSASSA-PKCS1-v1_5.
    Rsa(HashAlg),
    /// ECDSA with this hash, raw r‖s from the token.
    Ecdsa(HashAlg),
    Ed25519,
}

impl Scheme {
    /// The scheme SSH and most verifiers expect for a key: RSA with SHA-256, ECDSA with the
    /// curve's hash (RFC 5656 §6.2.1), Ed25519.
    pub fn default_for(alg: Algorithm) -> Scheme {
        match alg {
            Algorithm::Rsa2048 | Algorithm::Rsa3072 | Algorithm::Rsa4096 => Scheme::Rsa(HashAlg::Sha256),
            Algorithm::EcP256 => Scheme::Ecdsa(HashAlg::Sha256),
            Algorithm::EcP384 => Scheme::Ecdsa(HashAlg::Sha384),
            Algorithm::EcP521 => Scheme::Ecdsa(HashAlg::Sha512),
            Algorithm::Ed25519 => Scheme::Ed25519,
        }
    }

    fn fits(self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (Scheme::Rsa(_), Algorithm::Rsa2048 | Algorithm::Rsa3072 | Algorithm::Rsa4096)
                | (Scheme::Ecdsa(_), Algorithm::EcP256 | Algorithm::EcP384 | Algorithm::EcP521)
                | (Scheme::Ed25519, Algorithm::Ed25519)
        )
    }

    /// The native API's name (also in audit entries).
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Rsa(HashAlg::Sha1) => "rsa-sha1",
            Scheme::Rsa(HashAlg::Sha256) => "rsa-sha256",
            Scheme::Rsa(HashAlg::Sha384) => "rsa-sha384",
            Scheme::Rsa(HashAlg::Sha512) => "rsa-sha512",
            Scheme::Ecdsa(HashAlg::Sha1) => "ecdsa-sha1",
            Scheme::Ecdsa(HashAlg::Sha256) => "ecdsa-sha256",
            Scheme::Ecdsa(HashAlg::Sha384) => "ecdsa-sha384",
            Scheme::Ecdsa(HashAlg::Sha512) => "ecdsa-sha512",
            Scheme::Ed25519 => "ed25519",
        }
    }

    /// Parses [`Scheme::name`]; SHA-1 is not offered by name.
    pub fn parse(s: &str) -> Option<Scheme> {
        [
            Scheme::Rsa(HashAlg::Sha256),
            Scheme::Rsa(HashAlg::Sha384),
            Scheme::Rsa(HashAlg::Sha512),
            Scheme::Ecdsa(HashAlg::Sha256),
            Scheme::Ecdsa(HashAlg::Sha384),
            Scheme::Ecdsa(HashAlg::Sha512),
            Scheme::Ed25519,
        ]
        .into_iter()
        .find(|x| x.name() == s)
    }
}

/// A signature as the token made it: RSA PKCS#1 v1.5 bytes, ECDSA raw r‖s (each half the
/// curve's size), Ed25519 64 bytes. Faces encode it (SSH blob, DER).
#[derive(Debug)]
pub struct Signature {
    pub algorithm: Algorithm,
    pub scheme: Scheme,
    pub bytes: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error(transparent)]
    Core(#[from] CoreError),
    /// `[agent] signatures_per_minute` is used up for this principal.
    #[error("principal '{principal}' made more than {per_minute} signatures in the last minute ([agent] signatures_per_minute); retry in {retry_after_secs} s")]
    RateLimited { principal: String, per_minute: u32, retry_after_secs: u64 },
}

impl From<crate::token::TokenError> for SignError {
    fn from(e: crate::token::TokenError) -> Self {
        SignError::Core(e.into())
    }
}

impl From<crate::store::StoreError> for SignError {
    fn from(e: crate::store::StoreError) -> Self {
        SignError::Core(e.into())
    }
}

/// Per-daemon signing state (in `App`): the rate limiter and the key lookup cache.
#[derive(Debug, Default)]
pub struct Signing {
    limiter: RateLimiter,
    keys: key_cache::KeyCache,
}

fn uid_of(peer: &Peer) -> Option<u32> {
    match peer {
        Peer::Unix { uid, .. } => Some(*uid),
        Peer::Tcp { .. } => None,
    }
}

/// Why `caller` may not sign with `rec`, or `None` when it may: the `sign` permission on its
/// namespace, then every `allowed_uids` list that applies (the namespace's, the key's).
fn refusal(app: &App, caller: &SignCaller, rec: &KeyRecord) -> Option<String> {
    let who = caller.principal;
    let namespace = &rec.namespace;
    if !who.allows(namespace, Permission::Sign) {
        return Some(format!(
            "principal '{}' lacks the 'sign' permission on namespace '{namespace}'; grant it in [[principals]] permissions",
            who.name
        ));
    }
    for (path, uids) in app.config.agent.allowed_uids(namespace, &rec.id) {
        match uid_of(&caller.peer) {
            Some(uid) if uids.contains(&uid) => {}
            Some(uid) => return Some(format!("uid {uid} may not sign with key '{}' ({path})", rec.id)),
            None => return Some(format!("key '{}' signs only for local uids ({path}); call over the Unix socket", rec.id)),
        }
    }
    None
}

/// The structured part of a signing audit entry (JSON, so caller-supplied strings stay
/// escaped).
fn audit_detail(caller: &SignCaller, extra: serde_json::Map<String, serde_json::Value>) -> String {
    let mut m = serde_json::Map::new();
    m.insert("via".into(), caller.via.into());
    match caller.peer {
        Peer::Unix { uid, gid, pid } => {
            m.insert("uid".into(), uid.into());
            m.insert("gid".into(), gid.into());
            m.insert("pid".into(), pid.into());
        }
        Peer::Tcp { addr } => {
            m.insert("addr".into(), addr.to_string().into());
        }
    }
    m.extend(extra);
    serde_json::Value::Object(m).to_string()
}

fn refuse(app: &App, caller: &SignCaller, rec: &KeyRecord, why: String) -> CoreError {
    let mut extra = serde_json::Map::new();
    extra.insert("reason".into(), why.clone().into());
    // A caller sending refused requests in a loop must not fill the disk: refusals spend the
    // principal's `signatures_per_minute` too, and over it they are logged only. Unsynced like
    // the signatures, so none costs an fsync either.
    if let Some(per_minute) = app.config.agent.signatures_per_minute {
        if app.signing.limiter.take(&caller.principal.name, per_minute).is_err() {
            tracing::warn!(key = %rec.id, principal = ?caller.principal.name, via = caller.via, "signature refused (not audited: over the rate limit): {why}");
            return CoreError::Forbidden(why);
        }
    }
    let _ = app.store.audit_unsynced(&audit(
        caller.principal,
        "key.sign",
        &rec.namespace,
        &rec.id,
        "refused",
        Some(audit_detail(caller, extra)),
    ));
    tracing::info!(key = %rec.id, principal = ?caller.principal.name, via = caller.via, "signature refused: {why}");
    CoreError::Forbidden(why)
}

fn ssh_capable(rec: &KeyRecord) -> Option<Algorithm> {
    rec.algorithm.pair()
}

/// One identity the ssh-agent offers: a key pair in a token, as its plain public key or as an
/// SSH certificate of it (`ssh_cert`).
#[derive(Debug, Clone)]
pub struct SignIdentity {
    pub key: KeyRecord,
    pub public: PublicKey,
    /// `Some`: offered as this `*-cert-v01@openssh.com` certificate of `public`.
    pub certificate: Option<Box<ssh_key::Certificate>>,
}

/// What `caller`'s ssh-agent `REQUEST_IDENTITIES` lists, in order: **the one place that
/// decides which identities are offered** (a keyset's versions by its rotation: [`by_rotation`]).
///
/// Key pairs whose private half is in a configured token, in namespaces where the caller has
/// `sign` and passes `allowed_uids` (and the key's own `allowed_uids`), oldest first; a key
/// with a current SSH certificate is offered as the certificate first, then as its plain key
/// (a server that trusts the CA accepts the first try). A token that cannot be reached is
/// skipped (logged), so one token away hides only its keys.
pub async fn identities(app: &App, caller: &SignCaller<'_>) -> Result<Vec<SignIdentity>, CoreError> {
    let keys = by_rotation(signable_keys(app, caller).await?, &app.store.keyset_version_offers()?);
    let mut certs = if keys.is_empty() { Default::default() } else { ssh_cert::attached(app)? };
    let mut out = Vec::with_capacity(keys.len());
    for (key, public) in keys {
        if let Some(c) = certs.remove(&key.id) {
            out.push(SignIdentity { key: key.clone(), public: public.clone(), certificate: Some(Box::new(c)) });
        }
        out.push(SignIdentity { key, public, certificate: None });
    }
    Ok(out)
}

/// SSH keysets (`core::rotation`): a keyset's active version is offered; its new (pending)
/// version only from the grace period on (10355: the new private key is in place and both are
/// trusted) and then **first**, so clients try it before the old one; retired and abandoned
/// versions never (after the rotation only the new key is offered). A rollback offers only
/// the version it keeps. Keys that are no keyset's version are left as they are.
fn by_rotation(keys: Vec<(KeyRecord, PublicKey)>, offers: &[crate::store::keysets::VersionOffer]) -> Vec<(KeyRecord, PublicKey)> {
    use std::collections::HashMap;
    let of: HashMap<&str, &crate::store::keysets::VersionOffer> = offers.iter().map(|o| (o.key_id.as_str(), o)).collect();
    let offered = |o: &crate::store::keysets::VersionOffer| match o.state.as_str() {
        "active" => true,
        "pending" => o.open_kind.as_deref() == Some("rotate") && o.open_stage.is_some_and(|s| (10355..10600).contains(&s)),
        _ => false,
    };
    let kept: Vec<(KeyRecord, PublicKey)> = keys.into_iter().filter(|(k, _)| of.get(k.id.as_str()).is_none_or(|o| offered(o))).collect();
    // A keyset's versions together, at the place of its first, newest version first.
    let mut out: Vec<(KeyRecord, PublicKey)> = Vec::with_capacity(kept.len());
    let mut placed = std::collections::HashSet::new();
    for (i, (k, _)) in kept.iter().enumerate() {
        match of.get(k.id.as_str()) {
            None => out.push(kept[i].clone()),
            Some(o) if placed.insert(o.keyset_id.clone()) => {
                let mut group: Vec<&(KeyRecord, PublicKey)> =
                    kept.iter().filter(|(k2, _)| of.get(k2.id.as_str()).is_some_and(|o2| o2.keyset_id == o.keyset_id)).collect();
                group.sort_by_key(|(k2, _)| std::cmp::Reverse(of[k2.id.as_str()].version));
                out.extend(group.into_iter().cloned());
            }
            Some(_) => {}
        }
    }
    out
}

/// The keys `caller` may sign with, with their public keys, oldest first (see [`identities`]).
async fn signable_keys(app: &App, caller: &SignCaller<'_>) -> Result<Vec<(KeyRecord, PublicKey)>, CoreError> {
    let rows: Vec<KeyRecord> =
        app.store.list_keys(None, None)?.into_iter().filter(|k| ssh_capable(k).is_some() && refusal(app, caller, k).is_none()).collect();
    let mut out = Vec::with_capacity(rows.len());
    for token in app.tokens.all() {
        let mine: Vec<&KeyRecord> = rows.iter().filter(|k| k.token == token.name).collect();
        if mine.is_empty() {
            continue;
        }
        let ids: Vec<Vec<u8>> = mine.iter().map(|k| k.cka_id.clone()).collect();
        // A token that is away hides its keys, not every token's.
        let pks = match token.run(move |c| token_sign::signing_public_keys(c, &ids)).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(token = %token.name, error = %e, "keys of an unavailable token are not offered for signing");
                continue;
            }
        };
        out.extend(mine.into_iter().zip(pks).filter_map(|(k, pk)| pk.map(|pk| (k.clone(), pk))));
    }
    out.sort_by(|a, b| (&a.0.created_at, &a.0.id).cmp(&(&b.0.created_at, &b.0.id)));
    Ok(out)
}

/// The key whose SSH public key blob is `blob` that `caller` may sign with. A key that exists
/// but is not the caller's to use is refused (and audited); none at all is NotFound.
pub fn key_for_blob(app: &App, caller: &SignCaller<'_>, blob: &[u8]) -> Result<KeyRecord, CoreError> {
    let found = app.signing.keys.lookup(app, blob)?;
    if let Some(k) = found.iter().find(|k| ssh_capable(k).is_some() && refusal(app, caller, k).is_none()) {
        return Ok(k.clone());
    }
    match found.first() {
        Some(k) => {
            let why = refusal(app, caller, k).unwrap_or_else(|| format!("key '{}' is not a signing key pair", k.id));
            Err(refuse(app, caller, k, why))
        }
        None => Err(CoreError::NotFound("no key in keyport has the public key the request names".into())),
    }
}

/// The key `id` for signing: hidden (NotFound) from a caller who may not even read it, refused
/// (and audited) for one who may read but not sign.
pub fn key_by_id(app: &App, caller: &SignCaller<'_>, id: &str) -> Result<KeyRecord, CoreError> {
    let rec = super::keys::get(app, caller.principal, id).or_else(|e| match e {
        // Someone with `sign` but not `read` still finds the key.
        CoreError::NotFound(_) => match app.store.key(id)? {
            Some(r) if caller.principal.allows(&r.namespace, Permission::Sign) => Ok(r),
            _ => Err(e),
        },
        e => Err(e),
    })?;
    if let Some(why) = refusal(app, caller, &rec) {
        return Err(refuse(app, caller, &rec, why));
    }
    Ok(rec)
}

/// Signs `data` with `rec` in its token. `scheme` defaults to [`Scheme::default_for`] the key.
pub async fn sign(
    app: &App,
    caller: &SignCaller<'_>,
    rec: &KeyRecord,
    scheme: Option<Scheme>,
    data: &[u8],
) -> Result<Signature, SignError> {
    if let Some(why) = refusal(app, caller, rec) {
        return Err(refuse(app, caller, rec, why).into());
    }
    let alg = ssh_capable(rec).ok_or_else(|| {
        CoreError::invalid("not_a_signing_key", format!("key '{}' ({}) is not a key pair keyport can sign with", rec.id, rec.algorithm))
    })?;
    let scheme = scheme.unwrap_or_else(|| Scheme::default_for(alg));
    if !scheme.fits(alg) {
        return Err(CoreError::invalid(
            "invalid_algorithm",
            format!("'{}' does not fit key '{}' ({}); use {}", scheme.name(), rec.id, alg, Scheme::default_for(alg).name()),
        )
        .into());
    }
    if scheme == Scheme::Rsa(HashAlg::Sha1) {
        return Err(refuse(
            app,
            caller,
            rec,
            "an RSA signature with SHA-1 (ssh-rsa, no rsa-sha2 flag) was asked for; keyport signs RSA with rsa-sha2-256 or rsa-sha2-512 only (OpenSSH 7.2 and later ask for them)".into(),
        )
        .into());
    }
    if let Some(per_minute) = app.config.agent.signatures_per_minute {
        if let Err(wait) = app.signing.limiter.take(&caller.principal.name, per_minute) {
            tracing::warn!(principal = ?caller.principal.name, key = %rec.id, via = caller.via, "signature refused: rate limit");
            return Err(SignError::RateLimited {
                principal: caller.principal.name.clone(),
                per_minute,
                retry_after_secs: wait.as_secs().max(1),
            });
        }
    }
    let described = context::describe(data);
    // The namespace's hook, then the key's: each must say yes.
    for (path, argv) in app.config.agent.confirms(&rec.namespace, &rec.id) {
        let env = confirm_env(caller, rec, &described);
        let timeout = std::time::Duration::from_secs(app.config.agent.confirm_timeout_secs);
        if let Err(why) = confirm::ask(argv, env, timeout).await {
            return Err(refuse(app, caller, rec, format!("{why} ({path})")).into());
        }
    }
    let token = super::keys::token_of(app, &rec.token)?;
    let (mech, input) = match scheme {
        Scheme::Rsa(h) => (SignMechanism::RsaPkcs1(h), data.to_vec()),
        Scheme::Ecdsa(h) => (SignMechanism::EcdsaDigest, digest(h, data)),
        Scheme::Ed25519 => (SignMechanism::Ed25519, data.to_vec()),
    };
    let cka_id = rec.cka_id.clone();
    let bytes = token.run(move |c| token_sign::sign(c, &cka_id, mech, &input)).await;
    app.telemetry.token_op(&token.name, "sign", bytes.is_ok());
    let bytes = bytes?;
    let mut extra = described;
    extra.insert("scheme".into(), scheme.name().into());
    // In the WAL before the signature goes out; not fsync'd per row (store::audit_log).
    app.store.audit_unsynced(&audit(caller.principal, "key.sign", &rec.namespace, &rec.id, "ok", Some(audit_detail(caller, extra))))?;
    Ok(Signature { algorithm: alg, scheme, bytes })
}

/// What the confirm hook is told (environment variables; no shell ever sees them).
fn confirm_env(
    caller: &SignCaller,
    rec: &KeyRecord,
    described: &serde_json::Map<String, serde_json::Value>,
) -> Vec<(&'static str, String)> {
    let text = |k: &str| described.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
    let mut env = vec![
        ("KEYPORT_PRINCIPAL", caller.principal.name.clone()),
        ("KEYPORT_KEY_ID", rec.id.clone()),
        ("KEYPORT_KEY_NAME", rec.name.clone()),
        ("KEYPORT_NAMESPACE", rec.namespace.clone()),
        ("KEYPORT_VIA", caller.via.to_string()),
        ("KEYPORT_DATA_KIND", text("kind")),
        ("KEYPORT_SSH_USER", text("ssh_user")),
    ];
    if let Peer::Unix { uid, pid, .. } = caller.peer {
        env.push(("KEYPORT_UID", uid.to_string()));
        env.push(("KEYPORT_PID", pid.to_string()));
    }
    env
}

fn digest(h: HashAlg, data: &[u8]) -> Vec<u8> {
    match h {
        HashAlg::Sha1 => sha1::Sha1::digest(data).to_vec(),
        HashAlg::Sha256 => sha2::Sha256::digest(data).to_vec(),
        HashAlg::Sha384 => sha2::Sha384::digest(data).to_vec(),
        HashAlg::Sha512 => sha2::Sha512::digest(data).to_vec(),
    }
}
