//! `keyport restore`: brings keys back from the vault into this host's token (an empty one
//! after a disk loss, typically), with their certificates from KV.
//!
//! Path: OpenBao's `byok-export`, so the private key is never in the clear outside the token
//! or the vault. Checked on OpenBao 2.7.2 before writing this: `GET
//! transit/byok-export/:destination/:source/:version?hash=SHA1|SHA256` wraps an exportable key
//! for a destination transit key that may be a *public-key-only* RSA key
//! (`import {"public_key": PEM, "type": "rsa-4096"}`), in the import format
//! (`RSA-OAEP(aes) ‖ AES-KWP(aes, PKCS#8)`, OAEP and MGF1 with `hash`; SHA-256 by default);
//! a non-exportable source answers 400 `key is not exportable`. So the token makes a session
//! RSA-4096 unwrap key (`token::byok_restore`), the vault imports its public half under a
//! restore-only name (`<host>-restore-<random>`: no `.`, so it never collides with a key's
//! `<host>-<namespace>.<name>`), every key is exported to it and unwrapped inside the token.
//! The plaintext export (`transit/export/signing-key`) is never used. (Ed25519 on SoftHSM,
//! which cannot unwrap it, is finished in software inside the token layer, under the same rule
//! as its wrap: `token::byok_restore`.)
//!
//! What is restorable comes from the KV key records the worker writes (`keyrecord.rs`); the
//! vault's live `exportable` flag decides. A key comes back only when neither its name nor its
//! public key is in the store (same name, other key: refused and reported, nothing changes), so
//! re-running restore changes nothing. The key keeps its key id (the CKA_ID) when it is free,
//! so it keeps its transit name and the next sync finds its public key already there and pushes
//! nothing. Keys are created through `core::keys::create`, the one creation sequence.
//!
//! The restore destination key is deleted afterwards when the vault's policy allows it
//! (`transit/keys/<host>-restore-*/config` update and delete; `delete_restore_key` refuses any
//! other name); otherwise it stays, holds only a public key, and the report says so.
//!
//! The vault's records are not trusted: a record's namespace and name must pass the rules
//! `generate` applies (`core::names`), the namespace must be one this host syncs, the key id
//! must be 32 hex digits, the record must sit at the path the worker would write it to, and the
//! transit key is the name keyport computes (`Syncer::vault_name`), never the stored
//! `transit_key` (a different one fails the item). Names listed from KV go into URLs only when
//! they are plain path segments. A record marked `deleted_at`, and a key whose delete is still
//! pending in the outbox (or whose sync state is `deleted`), is `skipped` with the reason: a key
//! deleted in keyport does not come back.
//!
//! A restored key is exportable in the token when its namespace's policy allows exportable keys
//! (only exportable keys sync, and every restorable key was exportable on its first host);
//! otherwise it comes back non-exportable, the item's reason says so, and it stays in the token
//! (`not_syncable`). The key records carry no owner, so the restored key's owner is the caller
//! who ran restore. By the nature of C_UnwrapKey, a restored private key has CKA_LOCAL,
//! CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE false: the token did not generate it. Its
//! public key is checked against the record's fingerprint inside the creation step, so a
//! mismatch is undone with the objects and nothing is committed.
//!
//! A vault that becomes unusable for everything (sealed, unreachable, rate-limiting:
//! `RemoteError::Retry { stop_pass: true }`) stops the run: `RestoreError::VaultUnavailable`,
//! answered 503 by the API. Other vault errors fail the one item.

use crate::store::SyncStatus;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet};

use super::keyrecord::KeyEntry;
use super::openbao::{der_to_pem, is_restore_key_name, new_restore_key_name, ByokExport, TransitKey};
use super::remote::RemoteError;
use super::worker::{path_name, vault_type, Syncer};
use crate::config::Permission;
use crate::core::authz::Principal;
use crate::core::create::{create, NewKey};
use crate::core::names::{is_valid_key_name, is_valid_name};
use crate::core::{App, CoreError};
use crate::material::algorithm::Algorithm;
use crate::material::spki::PublicKey;
use crate::material::x509;
use crate::store::outbox::OP_DELETE;
use crate::token::byok_restore::{self, UnwrapKey};
use crate::token::{objects, Token, TokenError};

/// `POST /keyport/v1/sync/restore`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// Report what would happen; touch neither the token nor the vault.
    #[serde(default)]
    pub dry_run: bool,
}

/// One key of the vault and what restore did with it.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreItem {
    pub namespace: String,
    pub name: String,
    pub key_id: String,
    pub algorithm: String,
    pub fingerprint: String,
    pub transit_key: String,
    /// `restored`, `would_restore` (dry run), `skipped` or `failed`.
    pub outcome: &'static str,
    pub reason: Option<String>,
    /// SHA-256 of the certificate restored with the key.
    pub certificate: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RestoreReport {
    pub dry_run: bool,
    /// How keys travel: always `byok-export` (see the module comment).
    pub path: &'static str,
    /// The restore-only transit key, when one was made.
    pub destination: Option<String>,
    /// Why the destination key is still in the vault, if it is.
    pub destination_left: Option<String>,
    pub items: Vec<RestoreItem>,
}

/// Why a restore as a whole did not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The vault is unusable for every key right now (sealed, unreachable, rate-limiting):
    /// the API answers 503.
    #[error("{0}")]
    VaultUnavailable(String),
}

impl From<crate::store::StoreError> for RestoreError {
    fn from(e: crate::store::StoreError) -> Self {
        RestoreError::Core(e.into())
    }
}

impl From<TokenError> for RestoreError {
    fn from(e: TokenError) -> Self {
        RestoreError::Core(e.into())
    }
}

fn vault_err(e: RemoteError) -> RestoreError {
    match e {
        RemoteError::Retry { message, stop_pass: true, .. } => RestoreError::VaultUnavailable(format!("the vault is unusable: {message}")),
        e => RestoreError::Core(CoreError::Conflict(format!("the vault: {}", e.message()))),
    }
}

/// Why one item did not come back.
enum ItemError {
    Failed(String),
    /// The vault is unusable for every key: the run stops.
    VaultDown(String),
}

impl From<String> for ItemError {
    fn from(s: String) -> Self {
        ItemError::Failed(s)
    }
}

fn item_vault_err(e: RemoteError) -> ItemError {
    match e {
        RemoteError::Retry { message, stop_pass: true, .. } => ItemError::VaultDown(message),
        e => ItemError::Failed(e.message().to_string()),
    }
}

/// One restore at a time: two would race for the same names.
static RUNNING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Restores every restorable key of this host's opted-in namespaces. Needs `admin` on each.
pub async fn restore(
    app: &App,
    syncer: Option<std::sync::Arc<Syncer>>,
    who: &Principal,
    dry_run: bool,
) -> Result<RestoreReport, RestoreError> {
    let Some(syncer) = syncer else {
        // Only a caller that could restore learns that sync is off.
        who.require_somewhere(Permission::Admin)?;
        return Err(CoreError::Conflict("sync is not configured: add a [sync] section".into()).into());
    };
    if syncer.remote.openbao().is_none() {
        return Err(CoreError::Conflict(format!(
            "restore reads keys back from an OpenBao vault; this host syncs to a {} remote",
            syncer.remote.kind()
        ))
        .into());
    }
    for ns in &syncer.cfg.namespaces {
        who.require(ns, Permission::Admin)?;
    }
    let _one = RUNNING.lock().await;
    let listed = key_entries(&syncer).await?;
    // Deleted in keyport, delete not yet in the vault: the record has no `deleted_at` yet.
    let deleting: HashSet<String> = app.store.sync_rows()?.into_iter().filter(|r| r.op == OP_DELETE).map(|r| r.key_id).collect();
    // The first token that can take keys in by unwrapping (not a TPM: it can neither unwrap
    // nor create private keys); the first token otherwise, which then says what it lacks.
    let token = app
        .tokens
        .all()
        .iter()
        .find(|t| t.capabilities().is_some_and(|c| c.wrap_private && c.create_private && c.rsa_oaep_decrypt))
        .or_else(|| app.tokens.get(None))
        .ok_or_else(|| CoreError::Conflict("no token is configured".into()))?
        .clone();
    let mut run = Run { syncer: &syncer, token, unwrap: None, destination: None, stale: Vec::new() };
    let mut items = Vec::new();
    let mut down = None;
    for entry in listed {
        let entry = match entry {
            Listed::Entry(e) => e,
            Listed::Item(item) => {
                items.push(item);
                continue;
            }
        };
        let mut item = RestoreItem {
            namespace: entry.namespace.clone(),
            name: entry.name.clone(),
            key_id: entry.key_id.clone(),
            algorithm: entry.algorithm.clone(),
            fingerprint: entry.fingerprint.clone(),
            transit_key: syncer.vault_name(&entry.namespace, &entry.name, &entry.key_id),
            outcome: "failed",
            reason: None,
            certificate: None,
        };
        match run.one(app, who, &entry, &deleting, dry_run).await {
            Ok((outcome, reason, cert)) => (item.outcome, item.reason, item.certificate) = (outcome, reason, cert),
            Err(ItemError::Failed(why)) => item.reason = Some(why),
            Err(ItemError::VaultDown(why)) => {
                down = Some(why);
                break;
            }
        }
        if item.outcome == "failed" {
            tracing::warn!(namespace = %item.namespace, name = %item.name, reason = ?item.reason, "restore: key not restored");
        }
        items.push(item);
    }
    let destination_left = run.finish().await;
    if let Some(why) = down {
        let done = items.iter().filter(|i| i.outcome == "restored").count();
        tracing::warn!(reason = %why, restored = done, "restore: stopped, the vault is unusable");
        return Err(RestoreError::VaultUnavailable(format!(
            "the vault is unusable ({why}); restore stopped after restoring {done} key(s) — run it again when the vault is back"
        )));
    }
    Ok(RestoreReport { dry_run, path: "byok-export", destination: run.destination, destination_left, items })
}

/// A key record to restore, or an item already decided (invalid, deleted).
enum Listed {
    Entry(KeyEntry),
    Item(RestoreItem),
}

fn listed_item(namespace: &str, name: &str, outcome: &'static str, reason: String) -> Listed {
    Listed::Item(RestoreItem {
        namespace: namespace.into(),
        name: name.into(),
        key_id: String::new(),
        algorithm: String::new(),
        fingerprint: String::new(),
        transit_key: String::new(),
        outcome,
        reason: Some(reason),
        certificate: None,
    })
}

/// Whether a name listed from KV may go into a URL as one path segment.
fn is_path_segment(s: &str) -> bool {
    !s.is_empty() && s.len() <= 200 && s != "." && s != ".." && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}

/// Whether a key id is what keyport makes: 16 bytes, lowercase hex.
fn is_key_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks a key record found at `<root>/<folder>/<segment>` against the rules keyport's own
/// keys follow (see the module comment).
fn check_entry(s: &Syncer, folder: &str, segment: &str, e: &KeyEntry) -> Result<(), String> {
    check_record(e, folder, segment, &s.cfg.namespaces, &s.vault_name(&e.namespace, &e.name, &e.key_id))
}

/// `check_entry` without the syncer: `synced` are the configured namespaces, `transit` the
/// transit name keyport computes for the record's namespace, name and key id.
fn check_record(e: &KeyEntry, folder: &str, segment: &str, synced: &[String], transit: &str) -> Result<(), String> {
    if !is_valid_name(&e.namespace) {
        return Err(format!("the record's namespace '{}' is not a valid namespace name", e.namespace));
    }
    if e.namespace != folder {
        return Err(format!("the record's namespace '{}' is not its folder's ('{folder}')", e.namespace));
    }
    if !synced.iter().any(|n| n == "*" || *n == e.namespace) {
        return Err(format!("namespace '{}' is not synced by this host", e.namespace));
    }
    if !is_valid_key_name(&e.name) {
        return Err(format!("the record's name '{}' is not a valid key name", e.name));
    }
    if !is_key_id(&e.key_id) {
        return Err(format!("the record's key id '{}' is not 32 hex digits", e.key_id));
    }
    if path_name(&e.name, &e.key_id) != segment {
        return Err(format!("the record for '{}' is stored under '{segment}', not where keyport writes it", e.name));
    }
    if e.transit_key != transit {
        return Err(format!("the record names transit key '{}', keyport's name for this key is '{transit}'", e.transit_key));
    }
    Ok(())
}

/// Every key record under `<kv_prefix>/<host>/keys/<namespace>/` of the opted-in namespaces,
/// each checked, or the item saying why it is not restored.
async fn key_entries(s: &Syncer) -> Result<Vec<Listed>, RestoreError> {
    let root = s.key_records_root();
    let mut out = Vec::new();
    let namespaces: BTreeSet<String> = if s.cfg.namespaces.iter().any(|n| n == "*") {
        let mut names = BTreeSet::new();
        for n in s.vault().kv_list(&root).await.map_err(vault_err)? {
            let Some(n) = n.strip_suffix('/') else { continue };
            if is_valid_name(n) {
                names.insert(n.to_string());
            } else {
                out.push(listed_item(n, "", "failed", format!("{root}/{n}/: not a valid namespace name; not read")));
            }
        }
        names
    } else {
        s.cfg.namespaces.iter().cloned().collect()
    };
    for ns in namespaces {
        for name in s.vault().kv_list(&format!("{root}/{ns}")).await.map_err(vault_err)? {
            if name.ends_with('/') {
                continue;
            }
            if !is_path_segment(&name) {
                out.push(listed_item(&ns, &name, "failed", format!("{root}/{ns}/{name}: not a valid key record name; not read")));
                continue;
            }
            let path = format!("{root}/{ns}/{name}");
            let kv = s.vault().kv_read(&path).await.map_err(vault_err)?;
            let entry = KeyEntry::from_kv(&kv);
            if let Some(at) = kv.custom_metadata.get("deleted_at") {
                // Deleted in keyport; the vault keeps its copy by design.
                let why = format!("deleted in keyport at {at}");
                match entry.filter(|e| check_entry(s, &ns, &name, e).is_ok()) {
                    Some(e) => out.push(Listed::Item(RestoreItem {
                        transit_key: s.vault_name(&e.namespace, &e.name, &e.key_id),
                        namespace: e.namespace,
                        name: e.name,
                        key_id: e.key_id,
                        algorithm: e.algorithm,
                        fingerprint: e.fingerprint,
                        outcome: "skipped",
                        reason: Some(why),
                        certificate: None,
                    })),
                    None => out.push(listed_item(&ns, &name, "skipped", why)),
                }
                continue;
            }
            match entry {
                Some(e) => match check_entry(s, &ns, &name, &e) {
                    Ok(()) => out.push(Listed::Entry(e)),
                    Err(why) => {
                        tracing::warn!(%path, reason = %why, "restore: key record refused");
                        out.push(listed_item(&ns, &name, "failed", format!("{path}: {why}")));
                    }
                },
                None => {
                    tracing::warn!(%path, "restore: not a keyport key record");
                    out.push(listed_item(&ns, &name, "failed", format!("{path}: not a keyport key record")));
                }
            }
        }
    }
    Ok(out)
}

/// The state of one restore: the unwrap key and its vault destination, made on first need.
struct Run<'a> {
    syncer: &'a Syncer,
    token: std::sync::Arc<Token>,
    unwrap: Option<UnwrapKey>,
    destination: Option<String>,
    /// Destinations whose unwrap key died with its sessions; deleted at the end.
    stale: Vec<String>,
}

type Outcome = (&'static str, Option<String>, Option<String>);

impl Run<'_> {
    async fn one(
        &mut self,
        app: &App,
        who: &Principal,
        e: &KeyEntry,
        deleting: &HashSet<String>,
        dry_run: bool,
    ) -> Result<Outcome, ItemError> {
        let skipped = |why: String| Ok(("skipped", Some(why), None));
        let store = |x: crate::store::StoreError| ItemError::Failed(x.to_string());
        if deleting.contains(&e.key_id) {
            return skipped("deleted in keyport; the delete has not reached the vault yet (pending in the sync outbox)".into());
        }
        if app.store.sync_state(&e.key_id).map_err(store)?.is_some_and(|st| st.status == SyncStatus::Deleted) {
            return skipped("deleted in keyport (sync state 'deleted')".into());
        }
        if let Some(k) = app.store.key_by_name(&e.namespace, &e.name).map_err(store)? {
            if k.fingerprint == e.fingerprint {
                return skipped(format!("already present (key id {})", k.id));
            }
            return Err(format!(
                "a different key named '{}' is in the store (fingerprint {}); nothing changed — rename or delete it to restore this one",
                e.name, k.fingerprint
            )
            .into());
        }
        if let Some(k) = app.store.keys_by_fingerprint(&e.fingerprint).map_err(store)?.into_iter().find(|k| k.namespace == e.namespace) {
            return skipped(format!("already present as '{}' (key id {})", k.name, k.id));
        }
        let transit = self.syncer.vault_name(&e.namespace, &e.name, &e.key_id);
        let source = match self.syncer.vault().read_key(&transit).await.map_err(item_vault_err)? {
            None => return Err(format!("transit key '{transit}' is not in the vault").into()),
            Some(s) if !s.exportable => return skipped("not exportable in the vault (synced with sync.vault_exportable = false)".into()),
            Some(s) => s,
        };
        let alg = Algorithm::parse(&e.algorithm).ok_or_else(|| format!("unknown algorithm '{}'", e.algorithm))?;
        let public = vault_public_key(e, &transit, alg, &source)?;
        if alg == Algorithm::Ed25519 && !self.token.supports_ed25519().await {
            return Err(format!("token '{}' cannot hold Ed25519 keys", self.token.name).into());
        }
        let cka_id = free_cka_id(app, &self.token, &e.key_id).await.map_err(|x| x.to_string())?;
        let certificate = self.certificate(app, e, &hex::encode(cka_id)).await?;
        let cert_sha = certificate.as_ref().map(|(r, _)| r.sha256.clone());
        let exportable = app.config.policy(&e.namespace).allow_exportable;
        let note = (!exportable).then(|| {
            format!(
                "non-exportable in the token: namespace '{}' does not allow exportable keys, so this key will not sync (not_syncable)",
                e.namespace
            )
        });
        if dry_run {
            return Ok(("would_restore", note, cert_sha));
        }
        // Twice at most: a token reconnect between the export and the unwrap kills the
        // session unwrap key; then a new one, a new destination and a new export.
        let mut last = String::new();
        for _ in 0..2 {
            let unwrap = self.unwrap_key().await?;
            let destination = self.destination.clone().expect("made with the unwrap key");
            let wrapped = match self
                .syncer
                .vault()
                .byok_export(&destination, &transit, e.version, unwrap.hash.vault_name())
                .await
                .map_err(item_vault_err)?
            {
                ByokExport::Wrapped(w) => w,
                ByokExport::NotExportable => return skipped("not exportable in the vault".into()),
                ByokExport::Missing => return Err(format!("transit key '{transit}' is not in the vault").into()),
            };
            let cert_objects = certificate.as_ref().map(|(r, subject)| (r.der.clone(), subject.clone()));
            let (public, expected) = (public.clone(), e.fingerprint.clone());
            let make = crate::core::create::from_public(move |c, id, label| {
                byok_restore::unwrap_from_vault(c, &unwrap, &wrapped, alg, &public, id, label, exportable)?;
                // What the token now holds, checked before anything is committed: a mismatch
                // is undone by `create` with the objects.
                let pk = objects::public_key(c, id)?;
                let fingerprint = pk.fingerprint().ok();
                if fingerprint.as_deref() != Some(expected.as_str()) {
                    return Err(TokenError::Refused {
                        token: c.token.into(),
                        operation: "restore",
                        detail: format!("restored with fingerprint {}, expected {expected}", fingerprint.unwrap_or_default()),
                    });
                }
                if let Some((der, subject)) = &cert_objects {
                    objects::create_certificate(c, id, label, der, subject)?;
                }
                Ok(pk)
            });
            let mut new = NewKey::new(
                e.namespace.clone(),
                e.name.clone(),
                self.token.clone(),
                cka_id,
                crate::material::kind::KeyKind::Pair(alg),
                exportable,
                "restored",
                "restore",
                make,
            );
            new.certificates = certificate.iter().map(|(r, _)| r.clone()).collect();
            let made = create(app, who, new).await;
            match made {
                Ok(rec) => {
                    tracing::info!(key = %rec.id, namespace = %rec.namespace, name = %rec.name, "restore: key restored from the vault");
                    return Ok(("restored", note, cert_sha));
                }
                Err(x) => last = x.to_string(),
            }
            if self.unwrap_alive().await {
                break;
            }
            tracing::warn!(error = %last, "restore: the session unwrap key is gone (token reconnected); making a new one");
        }
        Err(last.into())
    }

    /// The key certificate from KV, when there is one that matches the key and the store does
    /// not hold it yet: its inventory row (linked to `key_id`) and the DER of its subject.
    async fn certificate(
        &self,
        app: &App,
        e: &KeyEntry,
        key_id: &str,
    ) -> Result<Option<(crate::store::CertificateRecord, Vec<u8>)>, ItemError> {
        let path = self.syncer.kv_path(&e.namespace, &e.name, &e.key_id);
        let kv = self.syncer.vault().kv_read(&path).await.map_err(item_vault_err)?;
        let Some(pem) = kv.data.as_ref().and_then(|d| d["cert_pem"].as_str().map(String::from)) else { return Ok(None) };
        let der = super::openbao::pem_to_der(&pem).ok_or_else(|| format!("{path}: cert_pem is not PEM"))?;
        let info = x509::parse_certificate(&der).map_err(|x| format!("{path}: {x}"))?;
        if info.public_key.fingerprint().ok().as_deref() != Some(e.fingerprint.as_str()) {
            return Err(format!("{path}: the certificate is not for this key").into());
        }
        if app.store.stored_certificate(&info.sha256).map_err(|x| x.to_string())?.is_some() {
            return Ok(None);
        }
        let subject = info.subject_der.clone();
        Ok(Some((crate::core::import::cert_record(&info, Some(key_id), &e.namespace), subject)))
    }

    /// Whether the unwrap key (if any) still exists in the token's current sessions.
    async fn unwrap_alive(&self) -> bool {
        let Some(k) = self.unwrap.clone() else { return false };
        self.token.run(move |c| byok_restore::unwrap_key_alive(c, &k)).await.unwrap_or(false)
    }

    /// The unwrap key in the token and its public half in the vault, made on first need and
    /// again when the token's sessions were replaced (the old destination is then deleted at
    /// the end).
    async fn unwrap_key(&mut self) -> Result<UnwrapKey, ItemError> {
        if self.unwrap.is_some() && !self.unwrap_alive().await {
            self.unwrap = None;
            self.stale.extend(self.destination.take());
        }
        let k = match &self.unwrap {
            Some(k) => k.clone(),
            None => {
                let k = self.token.run(byok_restore::create_unwrap_key).await.map_err(|x| x.to_string())?;
                self.unwrap = Some(k.clone());
                k
            }
        };
        if self.destination.is_none() {
            let name = new_restore_key_name(&self.syncer.host);
            self.syncer.vault().import_public_key(&name, "rsa-4096", &der_to_pem("PUBLIC KEY", &k.spki_der)).await.map_err(
                |x| match x {
                    RemoteError::Retry { stop_pass: true, message, .. } => ItemError::VaultDown(message),
                    x => ItemError::Failed(format!("the vault refused the restore key: {}", x.message())),
                },
            )?;
            tracing::info!(destination = %name, oaep = k.hash.vault_name(), "restore: unwrap key made in the token, its public half imported into transit");
            self.destination = Some(name);
        }
        Ok(k)
    }

    /// Drops the unwrap key; deletes the destination(s) in the vault if the policy allows.
    async fn finish(&mut self) -> Option<String> {
        if let Some(k) = self.unwrap.take() {
            let _ = self
                .token
                .run(move |c| {
                    byok_restore::destroy_unwrap_key(c, &k);
                    Ok(())
                })
                .await;
        }
        let mut left = Vec::new();
        for name in self.stale.iter().chain(self.destination.iter()) {
            debug_assert!(is_restore_key_name(&self.syncer.host, name));
            if let Err(e) = self.syncer.vault().delete_restore_key(&self.syncer.host, name).await {
                let why =
                    format!("transit key '{name}' (a public key only, useless without this token's session key) stays: {}", e.message());
                tracing::warn!("restore: {why}");
                left.push(why);
            }
        }
        (!left.is_empty()).then(|| left.join("; "))
    }
}

/// The key version's public key in transit, which must have the recorded fingerprint.
fn vault_public_key(e: &KeyEntry, transit: &str, alg: Algorithm, source: &TransitKey) -> Result<PublicKey, String> {
    let text = source
        .versions
        .get(&e.version)
        .map(|v| v.public_key.trim().to_string())
        .ok_or_else(|| format!("transit key '{transit}' has no version {}", e.version))?;
    // One parser for transit's public keys (SPKI PEM, or raw base64 for Ed25519).
    let der = super::openbao::transit_public_key_spki(&text).ok_or("the vault's public key is neither PEM nor a raw Ed25519 key")?;
    let spki = {
        use der::Decode;
        spki::SubjectPublicKeyInfoOwned::from_der(&der).map_err(|x| format!("the vault's public key: {x}"))?
    };
    let public = x509::public_key_from_spki(&spki).map_err(|x| x.to_string())?;
    if public.fingerprint().ok().as_deref() != Some(e.fingerprint.as_str()) || public.algorithm().ok() != Some(alg) {
        return Err(format!("the vault's public key of '{transit}' is not the recorded {} key {}", vault_type(alg), e.fingerprint));
    }
    Ok(public)
}

/// The recorded key id as CKA_ID when it is free in the store and the token (so the transit
/// name stays the same), else a fresh random one. Creation starts by clearing its CKA_ID, so
/// an id the token still uses (a lost store, a kept token) must not be taken.
async fn free_cka_id(app: &App, token: &std::sync::Arc<Token>, key_id: &str) -> Result<[u8; 16], CoreError> {
    if let Some(id) = hex::decode(key_id).ok().and_then(|b| <[u8; 16]>::try_from(b).ok()) {
        let in_token = token.run(move |c| Ok(c.live.index.read().expect("poisoned").get(&id).is_some())).await?;
        // A row marked missing (wiped token) is the key coming back: it keeps its id.
        if !in_token && app.store.key(key_id)?.is_none_or(|k| k.status == crate::store::KeyStatus::Missing) {
            return Ok(id);
        }
    }
    let mut id = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_names_and_key_ids() {
        for ok in ["web", "site.example.com", "a_b-c", "0123456789abcdef0123456789abcdef"] {
            assert!(is_path_segment(ok), "{ok}");
        }
        for bad in ["", ".", "..", "../x", "a/b", "a%2Fb", "a b", "a?list=true", "a#b", &"x".repeat(201)] {
            assert!(!is_path_segment(bad), "{bad}");
        }
        assert!(is_key_id("0123456789abcdef0123456789abcdef"));
        let good = KeyEntry {
            namespace: "default".into(),
            name: "web".into(),
            key_id: "0123456789abcdef0123456789abcdef".into(),
            algorithm: "ec-p256".into(),
            fingerprint: "sha256:00".into(),
            transit_key: "h1-default.web".into(),
            version: 1,
            vault_exportable: true,
            keyset: None,
        };
        let synced = vec!["default".to_string()];
        let check = |e: &KeyEntry, folder: &str, segment: &str| check_record(e, folder, segment, &synced, "h1-default.web");
        assert_eq!(check(&good, "default", "web"), Ok(()));
        let with = |f: &dyn Fn(&mut KeyEntry)| {
            let mut e = good.clone();
            f(&mut e);
            e
        };
        let cases: Vec<(KeyEntry, &str, &str, &str)> = vec![
            (with(&|e| e.name = "../x".into()), "default", "web", "not a valid key name"),
            (with(&|e| e.name = ".hidden".into()), "default", "web", "not a valid key name"),
            (with(&|e| e.namespace = "other".into()), "default", "web", "not its folder"),
            (with(&|e| e.namespace = "other".into()), "other", "web", "not synced by this host"),
            (with(&|e| e.namespace = "a/b".into()), "a/b", "web", "not a valid namespace"),
            (with(&|e| e.key_id = "../../etc".into()), "default", "web", "not 32 hex digits"),
            (with(&|e| e.transit_key = "h1-default.other".into()), "default", "web", "keyport's name for this key"),
            (good.clone(), "default", "other", "not where keyport writes it"),
        ];
        for (e, folder, segment, why) in cases {
            let r = check(&e, folder, segment);
            assert!(r.as_ref().is_err_and(|m| m.contains(why)), "{e:?} in {folder}/{segment}: {r:?}");
        }
        for bad in [
            "",
            "0123456789ABCDEF0123456789ABCDEF",
            "0123456789abcdef",
            "../0123456789abcdef0123456789abc",
            "g123456789abcdef0123456789abcdef",
        ] {
            assert!(!is_key_id(bad), "{bad}");
        }
    }
}
