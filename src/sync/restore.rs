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
//! (`transit/keys/<host>-restore-*/config` update and delete); otherwise it stays, holds only a
//! public key, and the report says so.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

use super::keyrecord::KeyEntry;
use super::openbao::{der_to_pem, ByokExport, VaultError};
use super::worker::{vault_type, Syncer};
use crate::config::Permission;
use crate::core::authz::Principal;
use crate::core::keys::{create, NewKey};
use crate::core::{App, CoreError};
use crate::material::algorithm::Algorithm;
use crate::material::spki::PublicKey;
use crate::material::x509;
use crate::token::byok_restore::{self, UnwrapKey};
use crate::token::{objects, Token};

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

/// One restore at a time: two would race for the same names.
static RUNNING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn vault_err(e: VaultError) -> CoreError {
    CoreError::Conflict(format!("the vault: {}", e.message()))
}

/// Restores every restorable key of this host's opted-in namespaces. Needs `admin` on each.
pub async fn restore(app: &App, who: &Principal, dry_run: bool) -> Result<RestoreReport, CoreError> {
    let syncer = app.sync.get().cloned().ok_or_else(|| CoreError::Conflict("sync is not configured: add a [sync] section".into()))?;
    if syncer.remote.openbao().is_none() {
        return Err(CoreError::Conflict(format!(
            "restore reads keys back from an OpenBao vault; this host syncs to a {} remote",
            syncer.remote.kind()
        )));
    }
    for ns in &syncer.cfg.namespaces {
        who.require(ns, Permission::Admin)?;
    }
    let _one = RUNNING.lock().await;
    let entries = key_entries(&syncer).await?;
    let token = app.tokens.get(None).ok_or_else(|| CoreError::Conflict("no token is configured".into()))?.clone();
    let mut run = Run { syncer: &syncer, token, unwrap: None, destination: None };
    let mut items = Vec::new();
    for entry in entries {
        let mut item = RestoreItem {
            namespace: entry.namespace.clone(),
            name: entry.name.clone(),
            key_id: entry.key_id.clone(),
            algorithm: entry.algorithm.clone(),
            fingerprint: entry.fingerprint.clone(),
            transit_key: entry.transit_key.clone(),
            outcome: "failed",
            reason: None,
            certificate: None,
        };
        match run.one(app, who, &entry, dry_run).await {
            Ok((outcome, reason, cert)) => (item.outcome, item.reason, item.certificate) = (outcome, reason, cert),
            Err(why) => item.reason = Some(why),
        }
        if item.outcome == "failed" {
            tracing::warn!(namespace = %item.namespace, name = %item.name, reason = ?item.reason, "restore: key not restored");
        }
        items.push(item);
    }
    let destination_left = run.finish().await;
    Ok(RestoreReport { dry_run, path: "byok-export", destination: run.destination, destination_left, items })
}

/// Every key record under `<kv_prefix>/<host>/keys/<namespace>/` of the opted-in namespaces.
async fn key_entries(s: &Syncer) -> Result<Vec<KeyEntry>, CoreError> {
    let root = s.key_records_root();
    let namespaces: BTreeSet<String> = if s.cfg.namespaces.iter().any(|n| n == "*") {
        s.vault().kv_list(&root).await.map_err(vault_err)?.into_iter().filter_map(|n| n.strip_suffix('/').map(String::from)).collect()
    } else {
        s.cfg.namespaces.iter().cloned().collect()
    };
    let mut out = Vec::new();
    for ns in namespaces {
        for name in s.vault().kv_list(&format!("{root}/{ns}")).await.map_err(vault_err)? {
            if name.ends_with('/') {
                continue;
            }
            let kv = s.vault().kv_read(&format!("{root}/{ns}/{name}")).await.map_err(vault_err)?;
            if kv.custom_metadata.contains_key("deleted_at") {
                continue; // deleted in keyport; the vault keeps its copy by design
            }
            match KeyEntry::from_kv(&kv) {
                Some(e) if e.namespace == ns => out.push(e),
                _ => tracing::warn!(path = %format!("{root}/{ns}/{name}"), "restore: not a keyport key record; ignored"),
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
}

type Outcome = (&'static str, Option<String>, Option<String>);

impl Run<'_> {
    async fn one(&mut self, app: &App, who: &Principal, e: &KeyEntry, dry_run: bool) -> Result<Outcome, String> {
        let skipped = |why: String| Ok(("skipped", Some(why), None));
        let store = |x: crate::store::StoreError| x.to_string();
        let vault = |x: VaultError| x.message().to_string();
        if let Some(k) = app.store.key_by_name(&e.namespace, &e.name).map_err(store)? {
            if k.fingerprint == e.fingerprint {
                return skipped(format!("already present (key id {})", k.id));
            }
            return Err(format!(
                "a different key named '{}' is in the store (fingerprint {}); nothing changed — rename or delete it to restore this one",
                e.name, k.fingerprint
            ));
        }
        if let Some(k) = app.store.keys_by_fingerprint(&e.fingerprint).map_err(store)?.into_iter().find(|k| k.namespace == e.namespace) {
            return skipped(format!("already present as '{}' (key id {})", k.name, k.id));
        }
        match self.syncer.vault().key_exportable(&e.transit_key).await.map_err(vault)? {
            None => return Err(format!("transit key '{}' is not in the vault", e.transit_key)),
            Some(false) => return skipped("not exportable in the vault (synced with sync.vault_exportable = false)".into()),
            Some(true) => {}
        }
        let alg = Algorithm::parse(&e.algorithm).ok_or_else(|| format!("unknown algorithm '{}'", e.algorithm))?;
        let public = self.vault_public_key(e, alg).await?;
        if alg == Algorithm::Ed25519 && !self.token.supports_ed25519().await {
            return Err(format!("token '{}' cannot hold Ed25519 keys", self.token.name));
        }
        let cka_id = free_cka_id(app, &self.token, &e.key_id).await.map_err(|x| x.to_string())?;
        let certificate = self.certificate(app, e, &hex::encode(cka_id)).await?;
        let cert_sha = certificate.as_ref().map(|(r, _)| r.sha256.clone());
        if dry_run {
            return Ok(("would_restore", None, cert_sha));
        }
        let unwrap = self.unwrap_key().await?;
        let wrapped = match self
            .syncer
            .vault()
            .byok_export(
                self.destination.as_deref().expect("made with the unwrap key"),
                &e.transit_key,
                e.version,
                unwrap.hash.vault_name(),
            )
            .await
            .map_err(vault)?
        {
            ByokExport::Wrapped(w) => w,
            ByokExport::NotExportable => return skipped("not exportable in the vault".into()),
            ByokExport::Missing => return Err(format!("transit key '{}' is not in the vault", e.transit_key)),
        };
        let exportable = app.config.policy(&e.namespace).allow_exportable;
        let cert_objects = certificate.as_ref().map(|(r, subject)| (r.der.clone(), subject.clone()));
        let new = NewKey {
            namespace: e.namespace.clone(),
            name: e.name.clone(),
            token: self.token.clone(),
            cka_id,
            algorithm: alg,
            exportable,
            origin: "restored",
            op: "restore",
            certificates: certificate.into_iter().map(|(r, _)| r).collect(),
            job_item: None,
        };
        let rec = create(app, who, new, move |c, id, label| {
            let pk = byok_restore::unwrap_from_vault(c, &unwrap.key, &wrapped, unwrap.hash, alg, &public, id, label, exportable)?;
            if let Some((der, subject)) = &cert_objects {
                objects::create_certificate(c, id, label, der, subject)?;
            }
            Ok(pk)
        })
        .await
        .map_err(|x| x.to_string())?;
        if rec.fingerprint != e.fingerprint {
            return Err(format!("restored with fingerprint {}, expected {}", rec.fingerprint, e.fingerprint));
        }
        tracing::info!(key = %rec.id, namespace = %rec.namespace, name = %rec.name, "restore: key restored from the vault");
        Ok(("restored", None, cert_sha))
    }

    /// The key version's public key in transit, which must have the recorded fingerprint.
    async fn vault_public_key(&self, e: &KeyEntry, alg: Algorithm) -> Result<PublicKey, String> {
        let key = self.syncer.vault().read_key(&e.transit_key).await.map_err(|x| x.message().to_string())?;
        let version = key.as_ref().and_then(|k| k.versions.get(&e.version));
        let text = version
            .map(|v| v.public_key.trim().to_string())
            .ok_or_else(|| format!("transit key '{}' has no version {}", e.transit_key, e.version))?;
        let public = if alg == Algorithm::Ed25519 {
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD.decode(&text).map_err(|x| format!("the vault's Ed25519 key: {x}"))?;
            PublicKey::Ed25519 { key: raw.try_into().map_err(|_| "the vault's Ed25519 key is not 32 bytes".to_string())? }
        } else {
            use der::Decode;
            let der = super::openbao::pem_to_der(&text).ok_or("the vault's public key is not PEM")?;
            let spki = spki::SubjectPublicKeyInfoOwned::from_der(&der).map_err(|x| format!("the vault's public key: {x}"))?;
            x509::public_key_from_spki(&spki).map_err(|x| x.to_string())?
        };
        if public.fingerprint().ok().as_deref() != Some(e.fingerprint.as_str()) || public.algorithm().ok() != Some(alg) {
            return Err(format!(
                "the vault's public key of '{}' is not the recorded {} key {}",
                e.transit_key,
                vault_type(alg),
                e.fingerprint
            ));
        }
        Ok(public)
    }

    /// The key's certificate from KV, when there is one that matches the key and the store does
    /// not hold it yet: its inventory row (linked to `key_id`) and the DER of its subject.
    async fn certificate(
        &self,
        app: &App,
        e: &KeyEntry,
        key_id: &str,
    ) -> Result<Option<(crate::store::CertificateRecord, Vec<u8>)>, String> {
        let path = self.syncer.kv_path(&e.namespace, &e.name, &e.key_id);
        let kv = self.syncer.vault().kv_read(&path).await.map_err(|x| x.message().to_string())?;
        let Some(pem) = kv.data.as_ref().and_then(|d| d["cert_pem"].as_str().map(String::from)) else { return Ok(None) };
        let der = super::openbao::pem_to_der(&pem).ok_or_else(|| format!("{path}: cert_pem is not PEM"))?;
        let info = x509::parse_certificate(&der).map_err(|x| format!("{path}: {x}"))?;
        if info.public_key.fingerprint().ok().as_deref() != Some(e.fingerprint.as_str()) {
            return Err(format!("{path}: the certificate is not for this key"));
        }
        if app.store.stored_certificate(&info.sha256).map_err(|x| x.to_string())?.is_some() {
            return Ok(None);
        }
        let subject = info.subject_der.clone();
        Ok(Some((crate::core::import::cert_record(&info, Some(key_id), &e.namespace), subject)))
    }

    /// The unwrap key in the token and its public half in the vault, made on first need.
    async fn unwrap_key(&mut self) -> Result<Restorer, String> {
        let k = match &self.unwrap {
            Some(k) => k.clone(),
            None => {
                let k = self.token.run(byok_restore::create_unwrap_key).await.map_err(|x| x.to_string())?;
                self.unwrap = Some(k.clone());
                k
            }
        };
        if self.destination.is_none() {
            let mut suffix = [0u8; 6];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut suffix);
            let name = format!("{}-restore-{}", self.syncer.host, hex::encode(suffix));
            self.syncer
                .vault()
                .import_public_key(&name, "rsa-4096", &der_to_pem("PUBLIC KEY", &k.spki_der))
                .await
                .map_err(|x| format!("the vault refused the restore key: {}", x.message()))?;
            tracing::info!(destination = %name, oaep = k.hash.vault_name(), "restore: unwrap key made in the token, its public half imported into transit");
            self.destination = Some(name);
        }
        Ok(Restorer { hash: k.hash, key: k })
    }

    /// Drops the unwrap key; deletes the destination in the vault if the policy allows.
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
        let name = self.destination.as_ref()?;
        match self.syncer.vault().delete_key(name).await {
            Ok(()) => None,
            Err(e) => {
                let why =
                    format!("transit key '{name}' (a public key only, useless without this token's session key) stays: {}", e.message());
                tracing::warn!("restore: {why}");
                Some(why)
            }
        }
    }
}

/// What the token-side unwrap needs, moved into the creation closure.
#[derive(Clone)]
struct Restorer {
    key: UnwrapKey,
    hash: crate::token::byok::OaepHash,
}

/// The recorded key id as CKA_ID when it is free in the store and the token (so the transit
/// name stays the same), else a fresh random one. Creation starts by clearing its CKA_ID, so
/// an id the token still uses (a lost store, a kept token) must not be taken.
async fn free_cka_id(app: &App, token: &std::sync::Arc<Token>, key_id: &str) -> Result<[u8; 16], CoreError> {
    if let Some(id) = hex::decode(key_id).ok().and_then(|b| <[u8; 16]>::try_from(b).ok()) {
        let in_token = token.run(move |c| Ok(c.live.index.read().expect("poisoned").get(&id).is_some())).await?;
        if !in_token && app.store.key(key_id)?.is_none() {
            return Ok(id);
        }
    }
    let mut id = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
    Ok(id)
}
