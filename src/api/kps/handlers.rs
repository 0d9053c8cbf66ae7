//! The KPS operations. Decisions (also in README.md, "Huawei KPS face"):
//! - create without `public_key` or `key_protection.private_key` generates an RSA-2048 key in
//!   the token; the private key is always hosted (`is_key_protection: true`) and never returned
//!   by create: use `private-key/export`.
//! - `private-key/import` on an existing key pair requires the private key to match its public
//!   key (KPS.6011); on a name that does not exist it creates the key pair.
//! - an unknown `kms_key_name`/`kms_key_id` is 400 KPS.6008 ("Encrypt private key failed"):
//!   the vendor resolves the kms key when it encrypts the private key.
//! - key pairs are exportable whenever the project's namespace allows exportable keys and their
//!   token can wrap keys out (a TPM cannot: keys there are non-extractable, used in place).

use super::super::json::Json;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::{codes, encode, project, KpsError, KpsRequest};
use crate::config::{KpsProject, Permission};
use crate::core::authz::Principal;
use crate::core::import::{decrypt_blocking, import_key_with, ImportOutcome, ImportRequest};
use crate::core::keys::audit;
use crate::core::{CoreError, SharedApp};
use crate::material::spki::PublicKey;
use crate::material::ssh::{fingerprint_sha256, parse_public_line, public_key_line};
use crate::store::kps::now_ms;
use crate::store::{FaceRows, KeyRecord, KpsKeypair, StoreError};

/// The vendor's batch limits.
const MAX_BATCH_EXPORT: usize = 10;
const MAX_BATCH_IMPORT: usize = 100;
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 1000;

// --- request bodies -----------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct CreateBody {
    keypair: CreateAction,
}

#[derive(Deserialize)]
struct CreateAction {
    name: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    public_key: Option<String>,
    scope: Option<String>,
    user_id: Option<String>,
    key_protection: Option<Protection>,
}

#[derive(Deserialize)]
struct Protection {
    private_key: Option<String>,
    encryption: Option<Encryption>,
}

#[derive(Deserialize)]
struct Encryption {
    #[serde(rename = "type")]
    kind: String,
    kms_key_name: Option<String>,
    kms_key_id: Option<String>,
}

#[derive(Deserialize)]
struct ImportBody {
    keypair: ImportBean,
}

#[derive(Deserialize)]
struct ImportBean {
    name: String,
    user_id: Option<String>,
    key_protection: Protection,
}

#[derive(Deserialize)]
struct NameBody {
    keypair: NameOnly,
}

#[derive(Deserialize)]
struct NameOnly {
    name: String,
}

#[derive(Deserialize)]
struct UpdateBody {
    keypair: Description,
}

#[derive(Deserialize)]
struct Description {
    description: Option<String>,
}

// --- helpers --------------------------------------------------------------------------------------

/// `^[A-Za-z0-9_-]{1,64}$`.
pub fn is_valid_keypair_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn check_name(name: &str) -> Result<(), KpsError> {
    if is_valid_keypair_name(name) {
        Ok(())
    } else {
        Err(KpsError::param(format!("invalid key pair name '{name}': use 1-64 letters, digits, '_' or '-'")))
    }
}

fn not_exist(name: &str) -> KpsError {
    KpsError::bad(codes::NOT_EXIST, format!("The key pair is not exist: '{name}'"))
}

fn duplicate(name: &str) -> KpsError {
    KpsError::param(format!("a key pair named '{name}' already exists in this project; choose another name"))
}

/// Where a private key goes: the protection written back, and the token.
struct Target {
    protection: &'static str,
    kms_key_name: Option<String>,
    kms_key_id: Option<String>,
    token: Option<String>,
}

fn target(proj: &KpsProject, enc: Option<&Encryption>) -> Result<Target, KpsError> {
    let default = Target { protection: "default", kms_key_name: None, kms_key_id: None, token: proj.token.clone() };
    let Some(enc) = enc else { return Ok(default) };
    match enc.kind.as_str() {
        "default" => Ok(default),
        "kms" => {
            let name = enc.kms_key_name.as_deref().filter(|s| !s.is_empty());
            let id = enc.kms_key_id.as_deref().filter(|s| !s.is_empty());
            if name.is_none() && id.is_none() {
                return Err(KpsError::param("encryption.type is kms: give kms_key_name or kms_key_id"));
            }
            let key = proj
                .kms_keys
                .iter()
                .find(|k| name.is_some_and(|n| n == k.name) || id.is_some_and(|i| k.id.as_deref() == Some(i)))
                .ok_or_else(|| {
                    KpsError::bad(
                        codes::ENCRYPT_FAILED,
                        format!(
                            "Encrypt private key failed: kms key '{}' is not configured for this project",
                            name.or(id).unwrap_or_default()
                        ),
                    )
                })?;
            Ok(Target {
                protection: "kms",
                kms_key_name: Some(key.name.clone()),
                kms_key_id: key.id.clone(),
                token: key.token.clone().or_else(|| proj.token.clone()),
            })
        }
        other => Err(KpsError::param(format!("encryption.type '{other}' is not valid: use kms or default"))),
    }
}

async fn read_key(text: &str) -> Result<crate::material::key::PrivateKey, KpsError> {
    let data = Zeroizing::new(text.as_bytes().to_vec());
    decrypt_blocking(move || crate::material::read_private_key(&data, None))
        .await
        .map_err(|e| KpsError::param(format!("the private key cannot be read: {e}")))
}

fn exportable(app: &SharedApp, namespace: &str, token: Option<&str>) -> Option<bool> {
    Some(crate::core::token_caps::exportable_where_possible(&app.tokens, token, app.config.policy(namespace).allow_exportable))
}

/// Imports `key` as keyport key `name` in the project's namespace, with the key pair's row
/// (`face`) in the same transaction; its inventory record.
async fn import_into_token(
    app: &SharedApp,
    who: &Principal,
    proj: &KpsProject,
    name: &str,
    key: crate::material::key::PrivateKey,
    t: &Target,
    face: FaceRows,
) -> Result<crate::store::KeyRecord, KpsError> {
    let req = ImportRequest {
        key,
        certificates: vec![],
        name: Some(name.to_string()),
        namespace: proj.namespace.clone(),
        exportable: exportable(app, &proj.namespace, t.token.as_deref()),
        token: t.token.clone(),
    };
    let face = move |recs: &[KeyRecord], _: &[Option<PublicKey>]| with_key(face, &recs[0].id);
    match import_key_with(app, who, req, None, face).await {
        Ok(ImportOutcome::Imported(rec)) => Ok(rec),
        // Which key holds it is said only to a caller that may read that key.
        Ok(ImportOutcome::AlreadyPresent(rec)) if crate::core::keys::get(app, who, &rec.id).is_ok() => {
            Err(KpsError::param(format!("this private key is already held by key '{}' in namespace '{}'", rec.name, rec.namespace)))
        }
        Ok(ImportOutcome::AlreadyPresent(_)) => Err(KpsError::param("this private key is already held in the project's namespace")),
        Err(CoreError::Conflict(_)) => Err(duplicate(name)),
        Err(e) => Err(e.into()),
    }
}

fn kind_and_scope(kind: Option<&str>, scope: Option<&str>) -> Result<(String, String), KpsError> {
    let kind = kind.unwrap_or("ssh");
    if kind != "ssh" && kind != "x509" {
        return Err(KpsError::param(format!("type '{kind}' is not valid: use ssh or x509")));
    }
    let scope = scope.unwrap_or("user");
    if scope != "user" && scope != "domain" {
        return Err(KpsError::param(format!("scope '{scope}' is not valid: use user or domain")));
    }
    Ok((kind.into(), scope.into()))
}

/// Creates a key pair: import a given private key, register a given public key, or generate.
async fn create_keypair(app: &SharedApp, who: &Principal, project_id: &str, a: CreateAction) -> Result<KpsKeypair, KpsError> {
    check_name(&a.name)?;
    let proj = project(app, project_id)?;
    let (kind, scope) = kind_and_scope(a.kind.as_deref(), a.scope.as_deref())?;
    who.require(&proj.namespace, Permission::Import)?;
    if app.store.kps_get(project_id, &a.name)?.is_some() {
        return Err(duplicate(&a.name));
    }
    let given_public = match a.public_key.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(line) => Some((
            line.to_string(),
            parse_public_line(line).map_err(|e| KpsError::param(format!("public_key is not an OpenSSH public key: {e}")))?,
        )),
        None => None,
    };
    let private = a.key_protection.as_ref().and_then(|p| p.private_key.as_deref()).map(str::trim).filter(|s| !s.is_empty());
    let t = target(proj, a.key_protection.as_ref().and_then(|p| p.encryption.as_ref()))?;

    let now = now_ms();
    let row = |public: &PublicKey, line: String, hosted: bool| KpsKeypair {
        id: 0,
        project_id: project_id.into(),
        name: a.name.clone(),
        key_id: None,
        public_key: line,
        fingerprint: fingerprint_sha256(public),
        algorithm: public.algorithm().map(|a| a.as_str().to_string()).unwrap_or_else(|_| "unknown".into()),
        kind: kind.clone(),
        scope: scope.clone(),
        user_id: a.user_id.clone(),
        description: String::new(),
        protection: hosted.then(|| t.protection.to_string()),
        kms_key_name: if hosted { t.kms_key_name.clone() } else { None },
        kms_key_id: if hosted { t.kms_key_id.clone() } else { None },
        private_key_cleared: false,
        created_ms: now,
        updated_ms: now,
    };
    let entry = audit(who, "kps.keypair.create", &proj.namespace, "", "ok", Some(format!("project {project_id}, key pair {}", a.name)));
    if let Some(text) = private {
        // A private key given: imported, the key pair's row in the key's own transaction.
        let key = read_key(text).await?;
        let public = key.public_key();
        if let Some((_, given)) = &given_public {
            if fingerprint_sha256(given) != fingerprint_sha256(&public) {
                return Err(KpsError::bad(codes::MISMATCH, "The imported private key not match public key"));
            }
        }
        let line = given_public.map(|(l, _)| l).unwrap_or_else(|| public_key_line(&public, ""));
        let face = FaceRows::KpsKeypair { pair: Box::new(row(&public, line, true)), audit: entry };
        import_into_token(app, who, proj, &a.name, key, &t, face).await?;
    } else if let Some((line, public)) = given_public {
        // A public key alone: no key in the token, only the key pair's row.
        app.store.kps_insert(&row(&public, line, false), &entry).map_err(|e| match e {
            StoreError::NameTaken { .. } => duplicate(&a.name),
            e => e.into(),
        })?;
    } else {
        let req = crate::core::keys::GenerateRequest {
            name: a.name.clone(),
            namespace: Some(proj.namespace.clone()),
            algorithm: "rsa-2048".into(),
            token: t.token.clone(),
            exportable: exportable(app, &proj.namespace, t.token.as_deref()),
        };
        let face = move |recs: &[KeyRecord], publics: &[Option<PublicKey>]| {
            // A generated key pair always has its public key.
            let Some(public) = publics.first().cloned().flatten() else { return FaceRows::None };
            let line = public_key_line(&public, "");
            with_key(FaceRows::KpsKeypair { pair: Box::new(row(&public, line, true)), audit: entry }, &recs[0].id)
        };
        crate::core::keys::generate_with(app, who, req, face).await.map_err(|e| match e {
            CoreError::Conflict(_) => duplicate(&a.name),
            e => e.into(),
        })?;
    }
    app.store.kps_get(project_id, &a.name)?.ok_or_else(|| not_exist(&a.name))
}

/// The key pair's row, pointing at the key just created.
fn with_key(face: FaceRows, key_id: &str) -> FaceRows {
    match face {
        FaceRows::KpsKeypair { mut pair, mut audit } => {
            pair.key_id = Some(key_id.to_string());
            audit.key_id = Some(key_id.to_string());
            FaceRows::KpsKeypair { pair, audit }
        }
        other => other,
    }
}

fn create_json(k: &KpsKeypair) -> Value {
    let mut v = json!({"name": k.name, "type": k.kind, "public_key": k.public_key, "fingerprint": k.fingerprint});
    if let Some(u) = &k.user_id {
        v["user_id"] = json!(u);
    }
    v
}

fn summary_json(k: &KpsKeypair) -> Value {
    json!({
        "name": k.name,
        "type": k.kind,
        "scope": k.scope,
        "public_key": k.public_key,
        "fingerprint": k.fingerprint,
        "is_key_protection": k.key_id.is_some(),
        "frozen_state": 0,
    })
}

fn detail_json(k: &KpsKeypair) -> Value {
    json!({
        "name": k.name,
        "id": k.id,
        "type": k.kind,
        "scope": k.scope,
        "public_key": k.public_key,
        "fingerprint": k.fingerprint,
        "is_key_protection": k.key_id.is_some(),
        "deleted": false,
        "description": k.description,
        "user_id": k.user_id.clone().unwrap_or_default(),
        "create_time": k.created_ms,
        "update_time": k.updated_ms,
        "delete_time": 0,
        "frozen_state": 0,
        "key_id": k.key_id.clone().unwrap_or_default(),
        "algorithm": k.algorithm,
    })
}

fn get_pair(app: &SharedApp, who: &Principal, project_id: &str, name: &str) -> Result<(KpsKeypair, String), KpsError> {
    let proj = project(app, project_id)?;
    who.require(&proj.namespace, Permission::Read)?;
    let k = app.store.kps_get(project_id, name)?.ok_or_else(|| not_exist(name))?;
    Ok((k, proj.namespace.clone()))
}

// --- handlers ---------------------------------------------------------------------------------------

pub async fn create(State(app): State<SharedApp>, Path(project_id): Path<String>, r: KpsRequest) -> Result<Json<Value>, KpsError> {
    let body: CreateBody = r.json()?;
    let k = create_keypair(&app, &r.who, &project_id, body.keypair).await?;
    Ok(Json(json!({"keypair": create_json(&k)})))
}

pub async fn batch_import(State(app): State<SharedApp>, Path(project_id): Path<String>, r: KpsRequest) -> Result<Json<Value>, KpsError> {
    let items: Vec<CreateBody> = r.json()?;
    if items.is_empty() || items.len() > MAX_BATCH_IMPORT {
        return Err(KpsError::param(format!("give 1 to {MAX_BATCH_IMPORT} key pairs per call (got {})", items.len())));
    }
    let proj = project(&app, &project_id)?;
    // Written through all the sessions of the project's token (`core::batch`); an item naming the
    // same key pair, or holding the same private key, as an earlier one waits for it, so every
    // outcome is the one-after-another outcome (`core::batch`).
    let writers = crate::core::batch::lanes_for(app.tokens.get(proj.token.as_deref()).map_or(1, |t| t.sessions()));
    let items: Vec<(Vec<String>, CreateBody)> = items.into_iter().map(|i| (batch_keys(&proj.namespace, &i.keypair), i)).collect();
    let results = crate::core::batch::run_ordered(items, writers, |item| {
        let (app, who, project_id) = (app.clone(), r.who.clone(), project_id.clone());
        async move {
            let name = item.keypair.name.clone();
            (name, create_keypair(&app, &who, &project_id, item.keypair).await)
        }
    })
    .await;
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for (name, r) in results {
        match r {
            Ok(k) => ok.push(json!({"keypair": create_json(&k)})),
            Err(e) => failed.push(json!({"keypair_name": name, "failed_reason": format!("{}: {}", e.code, e.message)})),
        }
    }
    Ok(Json(json!({"succeeded_keypairs": ok, "failed_keypairs": failed})))
}

/// What a batch item may collide with: its key pair's name, and the private key it brings
/// (by fingerprint; a key that cannot be read collides with nothing and fails on its own).
fn batch_keys(namespace: &str, a: &CreateAction) -> Vec<String> {
    let mut keys = vec![format!("kps\0{}", a.name)];
    let private = a.key_protection.as_ref().and_then(|p| p.private_key.as_deref()).map(str::trim).filter(|s| !s.is_empty());
    if let Some(text) = private {
        let data = Zeroizing::new(text.as_bytes().to_vec());
        if let Some(fp) = crate::material::read_private_key(&data, None).ok().and_then(|k| k.public_key().fingerprint().ok()) {
            keys.push(format!("key\0{namespace}\0{fp}"));
        }
    }
    keys
}

pub async fn import_private_key(
    State(app): State<SharedApp>,
    Path(project_id): Path<String>,
    r: KpsRequest,
) -> Result<Json<Value>, KpsError> {
    let body: ImportBody = r.json()?;
    let b = body.keypair;
    check_name(&b.name)?;
    let proj = project(&app, &project_id)?;
    let text = b
        .key_protection
        .private_key
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| KpsError::param("key_protection.private_key is required"))?;
    if b.key_protection.encryption.is_none() {
        return Err(KpsError::param("key_protection.encryption is required (type kms or default)"));
    }
    match app.store.kps_get(&project_id, &b.name)? {
        None => {
            let a = CreateAction {
                name: b.name.clone(),
                kind: None,
                public_key: None,
                scope: None,
                user_id: b.user_id,
                key_protection: Some(b.key_protection),
            };
            create_keypair(&app, &r.who, &project_id, a).await?;
        }
        Some(existing) => {
            r.who.require(&proj.namespace, Permission::Import)?;
            let t = target(proj, b.key_protection.encryption.as_ref())?;
            let key = read_key(text).await?;
            if fingerprint_sha256(&key.public_key()) != existing.fingerprint {
                return Err(KpsError::bad(codes::MISMATCH, "The imported private key not match public key"));
            }
            if existing.key_id.is_none() {
                let link = FaceRows::KpsLink {
                    id: existing.id,
                    protection: t.protection.into(),
                    kms_key_name: t.kms_key_name.clone(),
                    kms_key_id: t.kms_key_id.clone(),
                };
                import_into_token(&app, &r.who, proj, &existing.name, key, &t, link).await?;
            }
        }
    }
    Ok(Json(json!({"keypair": {"name": b.name}})))
}

pub async fn list(State(app): State<SharedApp>, Path(project_id): Path<String>, r: KpsRequest) -> Result<Json<Value>, KpsError> {
    let proj = project(&app, &project_id)?;
    r.who.require(&proj.namespace, Permission::Read)?;
    let (mut limit, mut marker) = (DEFAULT_LIMIT, None::<String>);
    for pair in r.query.as_deref().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = super::sign::percent_decode_str(v);
        match k {
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| KpsError::param(format!("limit must be 1-{MAX_LIMIT}")))?;
            }
            "marker" if !v.is_empty() => marker = Some(v),
            _ => {}
        }
    }
    let mut rows = app.store.kps_list(&project_id, marker.as_deref(), limit + 1)?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let mut page = json!({"current_count": rows.len()});
    if more {
        page["next_marker"] = json!(rows.last().map(|k| k.name.clone()));
    }
    if let (Some(first), Some(_)) = (rows.first(), &marker) {
        if let Some(prev) = app.store.kps_previous_marker(&project_id, &first.name, limit)? {
            page["previous_marker"] = json!(prev);
        }
    }
    let keypairs: Vec<Value> = rows.iter().map(|k| json!({"keypair": summary_json(k)})).collect();
    Ok(Json(json!({"keypairs": keypairs, "page_info": page})))
}

pub async fn show(
    State(app): State<SharedApp>,
    Path((project_id, name)): Path<(String, String)>,
    r: KpsRequest,
) -> Result<Json<Value>, KpsError> {
    let (k, _) = get_pair(&app, &r.who, &project_id, &name)?;
    Ok(Json(json!({"keypair": detail_json(&k)})))
}

pub async fn update(
    State(app): State<SharedApp>,
    Path((project_id, name)): Path<(String, String)>,
    r: KpsRequest,
) -> Result<StatusCode, KpsError> {
    let body: UpdateBody = r.json()?;
    let (k, ns) = get_pair(&app, &r.who, &project_id, &name)?;
    r.who.require(&ns, Permission::Manage)?;
    let d = body.keypair.description.unwrap_or_default();
    if d.chars().count() > 255 {
        return Err(KpsError::param("description is longer than 255 characters"));
    }
    let entry = pair_audit(&r.who, "kps.keypair.update", &ns, &k, &project_id, &name);
    app.store.kps_set_description(k.id, &d, &entry)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete(
    State(app): State<SharedApp>,
    Path((project_id, name)): Path<(String, String)>,
    r: KpsRequest,
) -> Result<StatusCode, KpsError> {
    let (k, ns) = get_pair(&app, &r.who, &project_id, &name)?;
    r.who.require(&ns, Permission::Manage)?;
    if let Some(key_id) = &k.key_id {
        drop_token_key(&app, &r.who, key_id).await?;
    }
    let entry = pair_audit(&r.who, "kps.keypair.delete", &ns, &k, &project_id, &name);
    app.store.kps_delete(k.id, &entry)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn clear_private_key(
    State(app): State<SharedApp>,
    Path((project_id, name)): Path<(String, String)>,
    r: KpsRequest,
) -> Result<StatusCode, KpsError> {
    let (k, ns) = get_pair(&app, &r.who, &project_id, &name)?;
    r.who.require(&ns, Permission::Manage)?;
    let key_id =
        k.key_id.clone().ok_or_else(|| KpsError::bad(codes::NO_PRIVATE_KEY, format!("No private key managed for key pair '{name}'")))?;
    drop_token_key(&app, &r.who, &key_id).await?;
    app.store.kps_clear_key(k.id)?;
    Ok(StatusCode::OK)
}

/// The private key of a key pair, as PEM (see `encode`).
async fn export_pem(app: &SharedApp, who: &Principal, project_id: &str, name: &str) -> Result<Zeroizing<String>, KpsError> {
    check_name(name)?;
    let (k, _) = get_pair(app, who, project_id, name)?;
    let key_id = k.key_id.ok_or_else(|| KpsError::bad(codes::NO_PRIVATE_KEY, format!("No private key managed for key pair '{name}'")))?;
    let key = crate::core::export::export_private_key(app, who, &key_id, crate::core::export::Protection::PlainByProtocol).await?;
    encode::private_key_pem(&key).map_err(|e| KpsError::new(StatusCode::INTERNAL_SERVER_ERROR, codes::RESPONSE, e.to_string()))
}

pub async fn export_private_key(
    State(app): State<SharedApp>,
    Path(project_id): Path<String>,
    r: KpsRequest,
) -> Result<Json<Value>, KpsError> {
    let body: NameBody = r.json()?;
    let pem = export_pem(&app, &r.who, &project_id, &body.keypair.name).await?;
    Ok(Json(json!({"keypair": {"name": body.keypair.name, "private_key": pem.as_str()}})))
}

pub async fn batch_export(State(app): State<SharedApp>, Path(project_id): Path<String>, r: KpsRequest) -> Result<Response, KpsError> {
    let items: Vec<NameBody> = r.json()?;
    if items.is_empty() || items.len() > MAX_BATCH_EXPORT {
        return Err(KpsError::param(format!("give 1 to {MAX_BATCH_EXPORT} key pairs per call (got {})", items.len())));
    }
    let mut files = Vec::new();
    for it in &items {
        let pem = export_pem(&app, &r.who, &project_id, &it.keypair.name).await?;
        files.push((format!("{}.pem", it.keypair.name), pem));
    }
    let zip = encode::stored_zip(&files).map_err(|e| KpsError::new(StatusCode::INTERNAL_SERVER_ERROR, codes::RESPONSE, e.to_string()))?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/zip"), (header::CONTENT_DISPOSITION, "attachment; filename=\"keypairs.zip\"")],
        zip.to_vec(),
    )
        .into_response())
}

// --- ECS binding and tasks --------------------------------------------------------------------------

/// Binding a key pair to an ECS server (which answers with a task) has no meaning on a host
/// agent: refused, so the task lists below stay empty.
pub async fn ecs_binding(Path(project_id): Path<String>, State(app): State<SharedApp>, r: KpsRequest) -> Result<Response, KpsError> {
    r.who.require(&project(&app, &project_id)?.namespace, Permission::Manage)?;
    Err(KpsError::param("associating key pairs with ECS servers is not available in keyport (a host key agent has no servers to bind)"))
}

pub async fn task(
    State(app): State<SharedApp>,
    Path((project_id, task_id)): Path<(String, String)>,
    r: KpsRequest,
) -> Result<Json<Value>, KpsError> {
    r.who.require(&project(&app, &project_id)?.namespace, Permission::Read)?;
    Err(KpsError::bad(codes::TASK_ILLEGAL, format!("taskId is illegal: no task '{task_id}'")))
}

pub async fn running_tasks(State(app): State<SharedApp>, Path(project_id): Path<String>, r: KpsRequest) -> Result<Json<Value>, KpsError> {
    r.who.require(&project(&app, &project_id)?.namespace, Permission::Read)?;
    Ok(Json(json!({"total": 0, "tasks": []})))
}

pub async fn failed_tasks(State(app): State<SharedApp>, Path(project_id): Path<String>, r: KpsRequest) -> Result<Json<Value>, KpsError> {
    r.who.require(&project(&app, &project_id)?.namespace, Permission::Read)?;
    Ok(Json(json!({"total": 0, "tasks": []})))
}

pub async fn delete_failed_tasks(
    State(app): State<SharedApp>,
    Path(project_id): Path<String>,
    r: KpsRequest,
) -> Result<StatusCode, KpsError> {
    r.who.require(&project(&app, &project_id)?.namespace, Permission::Manage)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete_failed_task(
    State(app): State<SharedApp>,
    Path((project_id, task_id)): Path<(String, String)>,
    r: KpsRequest,
) -> Result<StatusCode, KpsError> {
    r.who.require(&project(&app, &project_id)?.namespace, Permission::Manage)?;
    Err(KpsError::bad("KPS.0005", format!("Failed task is not found: '{task_id}'")))
}

/// The audit entry of a change to a whole key pair (its token key may be gone already).
fn pair_audit(who: &Principal, action: &str, ns: &str, k: &KpsKeypair, project_id: &str, name: &str) -> crate::store::AuditEntry {
    audit(who, action, ns, k.key_id.as_deref().unwrap_or(""), "ok", Some(format!("project {project_id}, key pair {name}")))
}

/// Deletes a key pair's token key and inventory row; one already gone is fine.
async fn drop_token_key(app: &crate::core::App, who: &Principal, key_id: &str) -> Result<(), KpsError> {
    match crate::core::keys::delete(app, who, key_id).await {
        Ok(_) | Err(CoreError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The face's request bodies, for `fuzz/` (feature `fuzzing`): what each handler parses before
/// it touches the core (names, key types and scopes, protections).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_request(body: &[u8]) {
    use crate::fuzzing::json;
    let check = |a: &CreateAction| {
        let _ = check_name(&a.name);
        let _ = kind_and_scope(a.kind.as_deref(), a.scope.as_deref());
    };
    if let Some(b) = json::<CreateBody>(body) {
        check(&b.keypair);
    }
    if let Some(items) = json::<Vec<CreateBody>>(body) {
        items.iter().for_each(|b| check(&b.keypair));
    }
    if let Some(b) = json::<ImportBody>(body) {
        let _ = check_name(&b.keypair.name);
    }
    let _ = json::<NameBody>(body);
    let _ = json::<Vec<NameBody>>(body);
    let _ = json::<UpdateBody>(body);
}

#[cfg(test)]
mod tests {
    #[test]
    fn name_rule() {
        use super::is_valid_keypair_name as ok;
        assert!(ok("demo_2-A"));
        assert!(ok(&"a".repeat(64)));
        assert!(!ok(&"a".repeat(65)));
        assert!(!ok(""));
        assert!(!ok("a.b"));
        assert!(!ok("a b"));
        assert!(!ok("ключ"));
    }
}
