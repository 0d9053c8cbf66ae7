//! The project/environment key face (seed 004, Apinizer API Ops "Keys"):
//! `/apiops/projects/{projectName}/keys/…` with the vendor's paths (trailing slash as the
//! vendor writes them; the form without it is accepted too), bodies, envelopes and error shape
//! (`docs/vendor-apis.md` §004).
//!
//! A project is a namespace and an environment a token (`[apiops]`), so deploying a key to
//! environments creates it in each named token, all or nothing: every token's objects are made
//! under creation intents first and the inventory rows commit in one transaction; a failure in
//! any environment destroys what the others got. Reads never return material.

mod content;
mod deploy;
mod files;

use super::json::Json;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::auth::peer;
use crate::config::Permission;
use crate::core::authz::Principal;
use crate::core::{CoreError, SharedApp};
use crate::store::{ApiOpsDeployment, ApiOpsKey};
use crate::token::TokenError;
use content::{Alg, KeyType, ALGORITHMS, KEY_TYPES};
use deploy::{EnvResult, Plan};

pub fn routes() -> Router<SharedApp> {
    let mut r = Router::new();
    for slash in ["/", ""] {
        r = r
            .route(&format!("/apiops/projects/{{project}}/keys{slash}"), get(list).post(create))
            .route(&format!("/apiops/projects/{{project}}/keys/import-file{slash}"), post(files::import_file))
            .route(&format!("/apiops/projects/{{project}}/keys/{{name}}{slash}"), get(get_one).put(update).delete(delete))
            .route(&format!("/apiops/projects/{{project}}/keys/{{name}}/export-file{slash}"), get(files::export_file));
    }
    r
}

// --- errors -----------------------------------------------------------------------------------

/// `{"status": "FAILURE", "resultMessage": "…"}`: 400 for every request problem (the vendor
/// answers a missing key or project with 400 too), 401/403 for credentials and permissions.
pub struct VendorError {
    status: StatusCode,
    message: String,
}

impl VendorError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> VendorError {
        VendorError { status, message: message.into() }
    }
    pub fn bad(message: impl Into<String>) -> VendorError {
        VendorError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for VendorError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"status": "FAILURE", "resultMessage": self.message}))).into_response()
    }
}

impl From<CoreError> for VendorError {
    fn from(e: CoreError) -> VendorError {
        let status = match &e {
            e if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            CoreError::Invalid { .. } | CoreError::NotFound(_) | CoreError::Conflict(_) => StatusCode::BAD_REQUEST,
            CoreError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            CoreError::Forbidden(_) | CoreError::NotExportable(_) => StatusCode::FORBIDDEN,
            CoreError::Token(TokenError::Refused { .. }) | CoreError::Token(TokenError::NotFound { .. }) => StatusCode::BAD_REQUEST,
            CoreError::Token(TokenError::Transient { .. }) | CoreError::Token(TokenError::Config { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            CoreError::Store(_) | CoreError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            CoreError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        if status.is_server_error() {
            tracing::error!(error = ?e.to_string(), "apiops request failed");
        }
        VendorError::new(status, e.to_string())
    }
}

// --- authentication ---------------------------------------------------------------------------

/// `Authorization: Bearer <personal API access token>` (a keyport API key), or the socket peer.
pub struct ApiOpsCaller(pub std::sync::Arc<Principal>);

impl FromRequestParts<SharedApp> for ApiOpsCaller {
    type Rejection = VendorError;

    async fn from_request_parts(parts: &mut Parts, app: &SharedApp) -> Result<Self, VendorError> {
        let p = peer(parts);
        let who = super::auth::identify(app, parts, &[]).map_err(|e| match e {
            CoreError::Unauthenticated(m) => {
                tracing::info!(peer = ?p, reason = ?m, "apiops request refused");
                VendorError::new(StatusCode::UNAUTHORIZED, "Token is not valid!")
            }
            other => other.into(),
        })?;
        Ok(ApiOpsCaller(who))
    }
}

// --- projects, permissions, JSON --------------------------------------------------------------

/// The namespace of a configured project.
pub(crate) fn namespace(app: &SharedApp, project: &str) -> Result<String, VendorError> {
    app.config
        .apiops
        .namespace(project)
        .map(String::from)
        .ok_or_else(|| VendorError::bad(format!("Project (name: {project}) is not found!")))
}

const ALL: [Permission; 7] = [
    Permission::Import,
    Permission::Read,
    Permission::ExportPrivate,
    Permission::Manage,
    Permission::Deploy,
    Permission::Sync,
    Permission::Admin,
];

/// Reads need any permission in the project (the vendor: any project role).
pub(crate) fn require_any(who: &Principal, ns: &str, project: &str) -> Result<(), VendorError> {
    if ALL.iter().any(|p| who.allows(ns, *p)) {
        Ok(())
    } else {
        Err(VendorError::new(
            StatusCode::FORBIDDEN,
            format!("principal '{}' has no permission in project '{project}' (namespace '{ns}')", who.name),
        ))
    }
}

pub(crate) fn require(who: &Principal, ns: &str, p: Permission) -> Result<(), VendorError> {
    who.require(ns, p).map_err(VendorError::from)
}

/// 24 hex digits (the vendor's ids are Mongo ObjectIds), stable for the same input.
fn object_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..12])
}

fn key_json(k: &ApiOpsKey, deployments: &[ApiOpsDeployment]) -> Value {
    json!({
        "id": object_id(&["key", &k.project, &k.name, &k.created_at.to_string()]),
        "name": k.name,
        "description": k.description,
        "projectId": object_id(&["project", &k.project]),
        "keyType": k.key_type,
        "algorithm": k.algorithm,
        "cryptoKeyInfoEnvironmentList": deployments.iter().map(|d| json!({
            "environmentName": d.environment,
            "alias": d.alias,
            "source": d.source,
        })).collect::<Vec<_>>(),
    })
}

fn store<T>(r: Result<T, crate::store::StoreError>) -> Result<T, VendorError> {
    r.map_err(|e| VendorError::from(CoreError::from(e)))
}

pub(crate) fn find_key(app: &SharedApp, project: &str, name: &str) -> Result<(ApiOpsKey, Vec<ApiOpsDeployment>), VendorError> {
    let k = store(app.store.apiops_key(project, name))?.ok_or_else(|| VendorError::bad(format!("Key (name: {name}) is not found!")))?;
    let d = store(app.store.apiops_deployments(project, name))?;
    Ok((k, d))
}

async fn json_body<T: serde::de::DeserializeOwned>(app: &SharedApp, req: Request) -> Result<T, VendorError> {
    let bytes = super::body::read_limited(req, app.config.limits.max_body_bytes)
        .await
        .map_err(|e| VendorError::new(StatusCode::PAYLOAD_TOO_LARGE, e.message))?;
    serde_json::from_slice(&bytes).map_err(|e| VendorError::bad(format!("The request body is not valid JSON for this operation: {e}")))
}

/// The mutating calls' envelope.
fn deployment_response(results: &[EnvResult], undeploy: bool) -> Json<Value> {
    let ok = results.iter().all(|r| r.success);
    let message = match (undeploy, ok) {
        (false, true) => "Deployment completed successfully",
        (true, true) => "Undeployment completed successfully",
        (false, false) => "Deployment failed",
        (true, false) => "Undeployment failed",
    };
    Json(json!({
        "success": ok,
        "deploymentResult": {
            "success": ok,
            "message": message,
            "environmentResults": results.iter().map(|r| json!({
                "environmentName": r.environment, "success": r.success, "message": r.message,
            })).collect::<Vec<_>>(),
        }
    }))
}

// --- list and get -----------------------------------------------------------------------------

async fn list(
    State(app): State<SharedApp>,
    ApiOpsCaller(who): ApiOpsCaller,
    Path(project): Path<String>,
) -> Result<Json<Value>, VendorError> {
    let ns = namespace(&app, &project)?;
    require_any(&who, &ns, &project)?;
    let mut out = Vec::new();
    for k in store(app.store.apiops_keys(&project))? {
        let d = store(app.store.apiops_deployments(&project, &k.name))?;
        out.push(key_json(&k, &d));
    }
    let n = out.len();
    Ok(Json(json!({"status": "SUCCESS", "resultList": out, "resultCount": n})))
}

async fn get_one(
    State(app): State<SharedApp>,
    ApiOpsCaller(who): ApiOpsCaller,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<Value>, VendorError> {
    let ns = namespace(&app, &project)?;
    require_any(&who, &ns, &project)?;
    let (k, d) = find_key(&app, &project, &name)?;
    Ok(Json(json!({"status": "SUCCESS", "resultList": [key_json(&k, &d)], "resultCount": 1})))
}

// --- create -----------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyDto {
    name: Option<String>,
    description: Option<String>,
    key_type: Option<String>,
    algorithm: Option<String>,
    crypto_key_info_environment_list: Option<Vec<EnvDto>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvDto {
    environment_name: Option<String>,
    content: Option<String>,
    alias: Option<String>,
}

fn parse_key_type(s: Option<&str>) -> Result<KeyType, VendorError> {
    let s = s.ok_or_else(|| VendorError::bad(format!("keyType is required! Supported values: {KEY_TYPES}")))?;
    KeyType::parse(s).ok_or_else(|| VendorError::bad(format!("Unknown keyType ({s})! Supported values: {KEY_TYPES}")))
}

fn parse_algorithm(s: Option<&str>, case_insensitive: bool) -> Result<Option<Alg>, VendorError> {
    match s.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(a) => Alg::parse(a, case_insensitive)
            .map(Some)
            .ok_or_else(|| VendorError::bad(format!("Unknown algorithm ({a})! Supported values: {ALGORITHMS}"))),
    }
}

/// The token of a configured environment.
pub(crate) fn environment(app: &SharedApp, env: &str) -> Result<std::sync::Arc<crate::token::Token>, VendorError> {
    let not_found = || VendorError::bad(format!("Environment ({env}) is not found or user does not have privilege to access it!"));
    let token = app.config.apiops.environments.get(env).ok_or_else(not_found)?;
    app.tokens.get(Some(token)).cloned().ok_or_else(not_found)
}

/// The key name rules: a keyport key name, short enough to carry `@<environment>`.
pub(crate) fn check_name(name: &str) -> Result<(), VendorError> {
    if !crate::core::names::is_valid_key_name(name) || name.contains('@') || name.len() > 63 {
        return Err(VendorError::bad(format!(
            "Key name ({name}) is not valid! Use 1-63 letters, digits, '_', '-' or '.', not starting with '.'."
        )));
    }
    Ok(())
}

/// Checks one environment entry and reads its material; `algorithm` is fixed by the first
/// entry (every environment holds the same kind of key).
fn plan_entry(
    app: &SharedApp,
    e: &EnvDto,
    key_type: KeyType,
    algorithm: &mut Option<Alg>,
    seen: &mut Vec<String>,
    source: &'static str,
) -> Result<Plan, VendorError> {
    let env = e
        .environment_name
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| VendorError::bad("environmentName is required for every element of cryptoKeyInfoEnvironmentList!"))?;
    let token = environment(app, env)?;
    if seen.iter().any(|s| s == env) {
        return Err(VendorError::bad(format!("Environment ({env}) is listed more than once!")));
    }
    seen.push(env.to_string());
    let content = e
        .content
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| VendorError::bad(format!("content is required for environment ({env})!")))?;
    let bytes = content::decode(content, key_type).map_err(|m| VendorError::bad(format!("Environment ({env}): {m}")))?;
    let (material, alg) = content::read(key_type, *algorithm, &bytes).map_err(|m| VendorError::bad(format!("Environment ({env}): {m}")))?;
    *algorithm = Some(alg);
    Ok(Plan {
        environment: env.to_string(),
        token,
        material: std::sync::Arc::new(material),
        alias: e.alias.clone(),
        source,
        replaces: None,
    })
}

async fn create(
    State(app): State<SharedApp>,
    ApiOpsCaller(who): ApiOpsCaller,
    Path(project): Path<String>,
    req: Request,
) -> Result<Json<Value>, VendorError> {
    let ns = namespace(&app, &project)?;
    require(&who, &ns, Permission::Manage)?;
    let body: KeyDto = json_body(&app, req).await?;
    let name =
        body.name.as_deref().map(str::trim).filter(|s| !s.is_empty()).ok_or_else(|| VendorError::bad("name is required!"))?.to_string();
    check_name(&name)?;
    let key_type = parse_key_type(body.key_type.as_deref())?;
    let mut algorithm = parse_algorithm(body.algorithm.as_deref(), false)?;
    let envs = body.crypto_key_info_environment_list.unwrap_or_default();
    if envs.is_empty() {
        return Err(VendorError::bad("cryptoKeyInfoEnvironmentList value can not be empty!"));
    }
    require(&who, &ns, Permission::Deploy)?;
    if store(app.store.apiops_key(&project, &name))?.is_some() {
        return Err(duplicate(&name));
    }
    let mut seen = Vec::new();
    let plans = envs.iter().map(|e| plan_entry(&app, e, key_type, &mut algorithm, &mut seen, "TEXT")).collect::<Result<Vec<_>, _>>()?;
    let key = ApiOpsKey {
        project: project.clone(),
        name: name.clone(),
        namespace: ns.clone(),
        description: body.description,
        key_type: key_type.as_str().into(),
        algorithm: algorithm.expect("set by the first environment").as_str().into(),
        owner: who.name.clone(),
        created_at: crate::store::records::now(),
    };
    let results = deploy::deploy(&app, &who, &key, true, plans).await?;
    Ok(deployment_response(&results, false))
}

pub(crate) fn duplicate(name: &str) -> VendorError {
    VendorError::bad(format!("Key (name: {name}) is already exist! Try update operation if want to change its value."))
}

// --- update -----------------------------------------------------------------------------------

async fn update(
    State(app): State<SharedApp>,
    ApiOpsCaller(who): ApiOpsCaller,
    Path((project, name)): Path<(String, String)>,
    req: Request,
) -> Result<Json<Value>, VendorError> {
    let ns = namespace(&app, &project)?;
    require(&who, &ns, Permission::Manage)?;
    let body: KeyDto = json_body(&app, req).await?;
    let (key, deployed) = find_key(&app, &project, &name)?;
    if let Some(n) = body.name.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        if n != name {
            return Err(VendorError::bad(format!("Key name can not be changed (from {name} to {n})! Create a new key instead.")));
        }
    }
    let key_type = KeyType::parse(&key.key_type).expect("stored key types are valid");
    if let Some(t) = body.key_type.as_deref() {
        if parse_key_type(Some(t))? != key_type {
            return Err(VendorError::bad(format!("keyType of key ({name}) is {} and can not be changed!", key.key_type)));
        }
    }
    let stored_alg = Alg::parse(&key.algorithm, false);
    let mut algorithm = match parse_algorithm(body.algorithm.as_deref(), false)? {
        Some(a) if Some(a) != stored_alg => {
            return Err(VendorError::bad(format!("algorithm of key ({name}) is {} and can not be changed!", key.algorithm)));
        }
        _ => stored_alg,
    };

    // The environment list, when given, is the set to keep: new names are deployed, names with
    // content get new material, names left out are undeployed.
    let mut plans = Vec::new();
    let mut aliases = Vec::new();
    let mut undeploy = Vec::new();
    if let Some(envs) = &body.crypto_key_info_environment_list {
        let mut seen = Vec::new();
        for e in envs {
            let env = e.environment_name.as_deref().map(str::trim).unwrap_or_default();
            let existing = deployed.iter().find(|d| d.environment == env);
            match (existing, e.content.as_deref().filter(|c| !c.trim().is_empty())) {
                (Some(d), None) => {
                    if seen.iter().any(|s| s == env) {
                        return Err(VendorError::bad(format!("Environment ({env}) is listed more than once!")));
                    }
                    seen.push(env.to_string());
                    if e.alias != d.alias {
                        aliases.push((env.to_string(), e.alias.clone()));
                    }
                }
                (existing, _) => {
                    let mut p = plan_entry(&app, e, key_type, &mut algorithm, &mut seen, "TEXT")?;
                    if let Some(d) = existing {
                        p.replaces = Some(
                            store(app.store.key(&d.key_id))?
                                .ok_or_else(|| VendorError::bad(format!("Environment ({env}) lost its inventory row; retry")))?,
                        );
                    }
                    plans.push(p);
                }
            }
        }
        undeploy = deployed.iter().filter(|d| !seen.contains(&d.environment)).cloned().collect();
    }
    if !plans.is_empty() || !undeploy.is_empty() {
        require(&who, &ns, Permission::Deploy)?;
    }
    let mut results = Vec::new();
    if !plans.is_empty() {
        results.extend(deploy::deploy(&app, &who, &key, false, plans).await?);
    }
    let entry = crate::core::keys::audit(&who, "apiops.key.update", &ns, &format!("{project}/{name}"), "ok", None);
    store(app.store.apiops_update(&project, &name, body.description.as_deref(), &aliases, &entry))?;
    if !undeploy.is_empty() {
        results.extend(deploy::undeploy(&app, &who, &key, undeploy, false).await?);
    }
    Ok(deployment_response(&results, false))
}

// --- delete -----------------------------------------------------------------------------------

async fn delete(
    State(app): State<SharedApp>,
    ApiOpsCaller(who): ApiOpsCaller,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<Value>, VendorError> {
    let ns = namespace(&app, &project)?;
    require(&who, &ns, Permission::Manage)?;
    let (key, deployed) = find_key(&app, &project, &name)?;
    if !deployed.is_empty() {
        require(&who, &ns, Permission::Deploy)?;
    }
    let results = deploy::undeploy(&app, &who, &key, deployed, true).await?;
    Ok(deployment_response(&results, true))
}

// --- shared by the file operations ------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExportQuery {
    pub environment_name: Option<String>,
}

pub(crate) fn file_response(content_type: &'static str, filename: &str, body: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type.to_string()), (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\""))],
        body,
    )
        .into_response()
}

/// The face's JSON body (a key with its environments' material, read as `create` reads it),
/// for `fuzz/` (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_request(body: &[u8], _query: &str) {
    let Some(dto) = crate::fuzzing::json::<KeyDto>(body) else { return };
    let (Ok(key_type), Ok(algorithm)) = (parse_key_type(dto.key_type.as_deref()), parse_algorithm(dto.algorithm.as_deref(), false)) else {
        return;
    };
    let _ = dto.name.as_deref().map(check_name);
    for env in dto.crypto_key_info_environment_list.iter().flatten() {
        if let Some(Ok(bytes)) = env.content.as_deref().map(|c| content::decode(c, key_type)) {
            let _ = content::read(key_type, algorithm, &bytes);
        }
    }
}

#[cfg(feature = "fuzzing")]
pub(crate) use files::fuzz_multipart;
