//! The TLS Protect Cloud face: keyport as its own edge instance (VSatellite) with its own DEK,
//! and the private-key import of `POST /outagedetection/v1/certificates/imports` as a job.
//! Field names, status values, the 100-item limit and the error shape are the vendor's
//! (`docs/vendor-apis.md` §000), so vcert, VenafiPS and pyVenafi work unchanged.

use super::json::Json;
use crate::clock::Timestamp;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::identify;
use crate::core::authz::Principal;
use crate::core::dek::Dek;
use crate::core::jobs::{self, SealedImportInput, SealedItem};
use crate::core::{CoreError, SharedApp};
use crate::token::TokenError;

/// The vendor's per-call limit.
pub const MAX_ITEMS: usize = 100;

pub fn routes() -> Router<SharedApp> {
    Router::new()
        .route("/v1/useraccounts", get(user_accounts))
        .route("/v1/edgeinstances", get(edge_instances))
        .route("/v1/edgeinstances/", get(edge_instances))
        .route("/v1/edgeinstances/{id}", get(edge_instance))
        .route("/v1/edgeencryptionkeys", get(encryption_keys))
        .route("/v1/edgeencryptionkeys/", get(encryption_keys))
        .route("/v1/edgeencryptionkeys/{id}", get(encryption_key))
        .route("/outagedetection/v1/certificates/imports", axum::routing::post(submit_import))
        .route("/outagedetection/v1/certificates/imports/{id}", get(import_status))
}

// --- errors -----------------------------------------------------------------------------------

/// `{"errors": [{"code", "message", "args"}]}` with an HTTP status.
pub struct VendorError {
    status: StatusCode,
    code: i64,
    message: String,
}

/// Numeric codes. The vendor publishes no catalogue for these endpoints (only 1004 for a bad
/// `tppl-api-key` is seen in its clients' fixtures); the rest are keyport's, stable, grouped
/// 1xxxx request validation, 2xxxx permission, 4xxxx not found, 5xxxx server side. Clients
/// print `code` and `message`; none branches on the number.
pub mod codes {
    pub const INVALID_REQUEST: i64 = 10001;
    pub const TOO_MANY_ITEMS: i64 = 10002;
    pub const UNKNOWN_EDGE_INSTANCE: i64 = 10003;
    pub const UNKNOWN_ENCRYPTION_KEY: i64 = 10004;
    pub const BODY_TOO_LARGE: i64 = 10005;
    /// What the SaaS answers for a missing or invalid `tppl-api-key` (seen in vcert's fixtures).
    pub const UNAUTHENTICATED: i64 = 1004;
    pub const FORBIDDEN: i64 = 20002;
    pub const NOT_FOUND: i64 = 40001;
    pub const UNAVAILABLE: i64 = 50001;
    pub const INTERNAL: i64 = 50000;
}

impl VendorError {
    pub fn new(status: StatusCode, code: i64, message: impl Into<String>) -> VendorError {
        VendorError { status, code, message: message.into() }
    }
    fn bad(code: i64, message: impl Into<String>) -> VendorError {
        VendorError::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for VendorError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"errors": [{"code": self.code, "message": self.message, "args": []}]}))).into_response()
    }
}

impl From<CoreError> for VendorError {
    fn from(e: CoreError) -> VendorError {
        let (status, code) = match &e {
            e if e.is_unavailable() => (StatusCode::SERVICE_UNAVAILABLE, codes::UNAVAILABLE),
            CoreError::Invalid { .. } => (StatusCode::BAD_REQUEST, codes::INVALID_REQUEST),
            CoreError::NotFound(_) => (StatusCode::NOT_FOUND, codes::NOT_FOUND),
            CoreError::Conflict(_) => (StatusCode::CONFLICT, codes::INVALID_REQUEST),
            CoreError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, codes::UNAUTHENTICATED),
            CoreError::Forbidden(_) | CoreError::NotExportable(_) => (StatusCode::FORBIDDEN, codes::FORBIDDEN),
            CoreError::Token(TokenError::Transient { .. }) | CoreError::Token(TokenError::Config { .. }) => {
                (StatusCode::SERVICE_UNAVAILABLE, codes::UNAVAILABLE)
            }
            CoreError::Token(_) | CoreError::Store(_) | CoreError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL),
            CoreError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, codes::UNAVAILABLE),
        };
        if status.is_server_error() {
            tracing::error!(error = ?e.to_string(), "tlspc request failed");
        }
        VendorError::new(status, code, e.to_string())
    }
}

// --- authentication -------------------------------------------------------------------------

/// The vendor's `tppl-api-key` header (or a bearer token, or the socket peer).
pub struct TlspcCaller(pub std::sync::Arc<Principal>);

impl FromRequestParts<SharedApp> for TlspcCaller {
    type Rejection = VendorError;

    async fn from_request_parts(parts: &mut Parts, app: &SharedApp) -> Result<Self, VendorError> {
        let who = identify(app, parts, &["tppl-api-key"]).map_err(|e| match e {
            CoreError::Unauthenticated(m) => {
                VendorError::new(StatusCode::UNAUTHORIZED, codes::UNAUTHENTICATED, format!("{m} (this face reads the tppl-api-key header)"))
            }
            other => other.into(),
        })?;
        Ok(TlspcCaller(who))
    }
}

// --- edge instance and DEK --------------------------------------------------------------------

fn dek(app: &SharedApp) -> Result<&Dek, VendorError> {
    app.dek.get().ok_or_else(|| {
        // Start-up says why in health when the DEK could not be loaded (e.g. its at-rest key
        // went with a wiped token), or that it is off (no token can hold its at-rest key).
        let why = app.health.problems().into_iter().chain(app.health.off()).find(|p| p.component == "dek").map(|p| p.reason);
        VendorError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::UNAVAILABLE,
            why.unwrap_or_else(|| "the edge encryption key is not ready yet; retry".into()),
        )
    })
}

/// Vendor timestamps: ISO 8601 with milliseconds and an explicit offset, as the SaaS writes
/// them (`2018-05-22T17:58:01.480+00:00`).
fn millis(t: Timestamp) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]+00:00");
    t.as_offset_date_time().format(f).expect("a UTC time formats")
}

/// A UUID derived from the DEK id: the "company" this edge instance belongs to, stable across
/// restarts.
fn company_id(d: &Dek) -> String {
    use sha2::{Digest, Sha256};
    let h = hex::encode(&Sha256::digest(format!("keyport company {}", d.id))[..16]);
    format!("{}-{}-4{}-8{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

fn edge_json(app: &SharedApp, d: &Dek) -> Value {
    let at = millis(d.created_at);
    json!({
        "id": d.edge_instance_id,
        "name": app.config.tlspc.edge_instance_name,
        "edgeType": "SATELLITE",
        "edgeStatus": "ACTIVE",
        "encryptionKeyId": d.id,
        "encryptionKeyDeploymentDate": at,
        "deploymentDate": at,
        "modificationDate": at,
        "lastSeenOnDate": millis(Timestamp::now()),
        "address": app.config.listen.tcp.clone().unwrap_or_default(),
        "productEntitlements": [],
        "reconciliationFailed": false,
        "satelliteVersion": env!("CARGO_PKG_VERSION"),
        "version": env!("CARGO_PKG_VERSION"),
        "integrationServicesCount": 0,
        "companyId": company_id(d),
    })
}

fn key_json(d: &Dek) -> Value {
    json!({
        "id": d.id,
        "key": base64::engine::general_purpose::STANDARD.encode(d.public_key),
        "keyAlgorithm": "ED25519",
        "companyId": company_id(d),
        "lastBackupDate": millis(d.created_at),
    })
}

/// vcert and VenafiPS check an API key with `GET /v1/useraccounts` before anything else.
async fn user_accounts(State(app): State<SharedApp>, TlspcCaller(who): TlspcCaller) -> Result<Json<Value>, VendorError> {
    let d = dek(&app)?;
    let company = company_id(d);
    Ok(Json(json!({
        "user": {
            "id": company.clone(),
            "username": who.name,
            "companyId": company.clone(),
            "userType": "EXTERNAL",
            "userAccountType": "API",
            "userStatus": "ACTIVE",
            "firstname": who.name,
            "lastname": "",
            "emailAddress": "",
            "roles": [],
        },
        "company": {"id": company, "name": app.config.tlspc.edge_instance_name, "companyType": "TPP_CUSTOMER", "active": true},
        "apiKey": {"username": who.name, "apiVersion": "ALL", "apiKeyStatus": "ACTIVE"},
    })))
}

async fn edge_instances(State(app): State<SharedApp>, TlspcCaller(_): TlspcCaller) -> Result<Json<Value>, VendorError> {
    let d = dek(&app)?;
    Ok(Json(json!({ "edgeInstances": [edge_json(&app, d)] })))
}

async fn edge_instance(
    State(app): State<SharedApp>,
    TlspcCaller(_): TlspcCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, VendorError> {
    let d = dek(&app)?;
    if id != d.edge_instance_id {
        return Err(VendorError::new(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            format!("edge instance '{id}' not found; GET /v1/edgeinstances lists this daemon's"),
        ));
    }
    Ok(Json(edge_json(&app, d)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeysQuery {
    edge_instance_id: Option<String>,
}

async fn encryption_keys(
    State(app): State<SharedApp>,
    TlspcCaller(_): TlspcCaller,
    Query(q): Query<KeysQuery>,
) -> Result<Json<Value>, VendorError> {
    let d = dek(&app)?;
    let keys: Vec<Value> = match q.edge_instance_id {
        Some(e) if e != d.edge_instance_id => vec![],
        _ => vec![key_json(d)],
    };
    Ok(Json(json!({ "encryptionKeys": keys })))
}

async fn encryption_key(
    State(app): State<SharedApp>,
    TlspcCaller(_): TlspcCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, VendorError> {
    let d = dek(&app)?;
    if id != d.id {
        return Err(VendorError::new(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            format!("encryption key '{id}' not found; GET /v1/edgeencryptionkeys lists this daemon's"),
        ));
    }
    Ok(Json(key_json(d)))
}

// --- import -----------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ImportBody {
    edge_instance_id: Option<String>,
    encryption_key_id: Option<String>,
    import_information: Option<Vec<ImportItem>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ImportItem {
    certificate: Option<String>,
    password_encrypted_private_key: Option<String>,
    dek_encrypted_private_key: Option<String>,
    dek_encrypted_password: Option<String>,
    pkcs12_keystore: Option<String>,
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Checks one item's shape (the work itself happens in the job).
fn check_item(i: usize, it: &ImportItem) -> Result<SealedItem, VendorError> {
    let at = format!("importInformation[{i}]");
    let kinds = [nonempty(&it.password_encrypted_private_key), nonempty(&it.dek_encrypted_private_key), nonempty(&it.pkcs12_keystore)]
        .iter()
        .filter(|k| k.is_some())
        .count();
    if kinds == 0 {
        return Err(VendorError::bad(codes::INVALID_REQUEST, format!("{at}: give one of passwordEncryptedPrivateKey (+ dekEncryptedPassword), dekEncryptedPrivateKey, or pkcs12Keystore (+ dekEncryptedPassword)")));
    }
    if kinds > 1 {
        return Err(VendorError::bad(
            codes::INVALID_REQUEST,
            format!("{at}: give only one of passwordEncryptedPrivateKey, dekEncryptedPrivateKey and pkcs12Keystore"),
        ));
    }
    if (nonempty(&it.password_encrypted_private_key).is_some() || nonempty(&it.pkcs12_keystore).is_some())
        && nonempty(&it.dek_encrypted_password).is_none()
    {
        return Err(VendorError::bad(
            codes::INVALID_REQUEST,
            format!("{at}: a password-encrypted key needs dekEncryptedPassword (the password sealed to the edge encryption key)"),
        ));
    }
    let std = base64::engine::general_purpose::STANDARD;
    for (field, v) in [
        ("dekEncryptedPassword", &it.dek_encrypted_password),
        ("dekEncryptedPrivateKey", &it.dek_encrypted_private_key),
        ("pkcs12Keystore", &it.pkcs12_keystore),
    ] {
        if let Some(v) = nonempty(v) {
            if std.decode(v).is_err() {
                return Err(VendorError::bad(codes::INVALID_REQUEST, format!("{at}.{field} is not valid standard base64")));
            }
        }
    }
    if let Some(pem) = nonempty(&it.password_encrypted_private_key) {
        if !pem.contains("-----BEGIN") {
            return Err(VendorError::bad(
                codes::INVALID_REQUEST,
                format!("{at}.passwordEncryptedPrivateKey must be PEM (-----BEGIN ENCRYPTED PRIVATE KEY-----)"),
            ));
        }
    }
    if let Some(pem) = nonempty(&it.certificate) {
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(VendorError::bad(codes::INVALID_REQUEST, format!("{at}.certificate must be PEM (-----BEGIN CERTIFICATE-----)")));
        }
    }
    Ok(SealedItem {
        certificate: nonempty(&it.certificate).map(String::from),
        password_encrypted_private_key: nonempty(&it.password_encrypted_private_key).map(String::from),
        dek_encrypted_private_key: nonempty(&it.dek_encrypted_private_key).map(String::from),
        dek_encrypted_password: nonempty(&it.dek_encrypted_password).map(String::from),
        pkcs12_keystore: nonempty(&it.pkcs12_keystore).map(String::from),
    })
}

async fn submit_import(
    State(app): State<SharedApp>,
    TlspcCaller(who): TlspcCaller,
    req: Request,
) -> Result<(StatusCode, Json<Value>), VendorError> {
    let limit = app.config.limits.max_body_bytes;
    let bytes = super::body::read_limited(req, limit)
        .await
        .map_err(|e| VendorError::new(StatusCode::PAYLOAD_TOO_LARGE, codes::BODY_TOO_LARGE, e.message))?;
    let body: ImportBody = serde_json::from_slice(&bytes)
        .map_err(|e| VendorError::bad(codes::INVALID_REQUEST, format!("the request body is not a valid import request: {e}")))?;
    let namespace = app.config.tlspc.namespace.clone();
    who.require(&namespace, crate::config::Permission::Import).map_err(VendorError::from)?;
    let d = dek(&app)?;
    match nonempty(&body.edge_instance_id) {
        None => return Err(VendorError::bad(codes::INVALID_REQUEST, "edgeInstanceId is required (GET /v1/edgeinstances gives it)")),
        Some(e) if e != d.edge_instance_id => {
            return Err(VendorError::bad(
                codes::UNKNOWN_EDGE_INSTANCE,
                format!("edgeInstanceId '{e}' is not this edge instance; GET /v1/edgeinstances gives '{}'", d.edge_instance_id),
            ))
        }
        _ => {}
    }
    match nonempty(&body.encryption_key_id) {
        None => return Err(VendorError::bad(codes::INVALID_REQUEST, "encryptionKeyId is required (GET /v1/edgeinstances gives it)")),
        Some(k) if k != d.id => {
            return Err(VendorError::bad(
                codes::UNKNOWN_ENCRYPTION_KEY,
                format!("encryptionKeyId '{k}' is not this edge instance's encryption key; use '{}'", d.id),
            ))
        }
        _ => {}
    }
    let items = body.import_information.unwrap_or_default();
    if items.is_empty() {
        return Err(VendorError::bad(codes::INVALID_REQUEST, "importInformation must hold at least one item"));
    }
    if items.len() > MAX_ITEMS {
        return Err(VendorError::bad(
            codes::TOO_MANY_ITEMS,
            format!("importInformation holds {} items; at most {MAX_ITEMS} keys can be imported per call: split the batch", items.len()),
        ));
    }
    let sealed = items.iter().enumerate().map(|(i, it)| check_item(i, it)).collect::<Result<Vec<_>, _>>()?;
    let input = SealedImportInput { namespace, exportable: app.config.tlspc.exportable, items: sealed };
    let job = jobs::submit(&app, &who.name, &input)?;
    Ok((StatusCode::CREATED, Json(json!({"id": job.id, "creationDate": millis(job.created_at)}))))
}

async fn import_status(
    State(app): State<SharedApp>,
    TlspcCaller(who): TlspcCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, VendorError> {
    let not_found = || VendorError::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, format!("import '{id}' not found"));
    let (job, items) = app.store.job(&id).map_err(CoreError::from)?.ok_or_else(not_found)?;
    if job.kind != jobs::KIND_SEALED_IMPORT {
        return Err(not_found());
    }
    let ns = job.namespace.clone().unwrap_or_default();
    // The submitter sees its job while it holds a permission in the namespace (as for keys).
    if !who.owns(&job.principal, &ns) && !who.allows(&ns, crate::config::Permission::Read) {
        return Err(not_found());
    }
    let std = base64::engine::general_purpose::STANDARD;
    let mut results = Vec::new();
    // Only an item this job imported carries its key's certificate: a SKIPPED item names no key
    // (the caller may hold only `import`; rows written before that rule still carry the
    // existing key's id, which is not followed).
    let certificates = app.store.job_certificates(&job.id).map_err(CoreError::from)?;
    for i in &items {
        let cert = match &i.key_id {
            Some(k) if i.status == crate::store::ItemStatus::Imported => certificates.get(k),
            _ => None,
        };
        let mut r = json!({
            "fingerprint": i.fingerprint.as_deref().map(str::to_uppercase).unwrap_or_default(),
            "status": i.status,
        });
        if let Some(reason) = &i.reason {
            r["reason"] = json!(reason);
        }
        if let Some(c) = cert {
            r["certificateBytes"] = json!(std.encode(&c.der));
        }
        results.push(r);
    }
    Ok(Json(json!({ "id": job.id, "status": job.status, "results": results })))
}

/// The face's request body and query, with each import item's shape check, for `fuzz/`
/// (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_request(body: &[u8], query: &str) {
    if let Some(b) = crate::fuzzing::json::<ImportBody>(body) {
        for (i, it) in b.import_information.iter().flatten().enumerate() {
            let _ = check_item(i, it);
        }
    }
    let _ = crate::fuzzing::query::<KeysQuery>(query);
}
