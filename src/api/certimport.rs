//! The certificate import face (seed 001): DigiCert ONE IoT Trust Manager's "Import
//! certificates" (`docs/vendor-apis.md` §001).
//!
//! - `POST /iot/api/v1/certificate-import/{enrollment_profile_id}`, header `x-api-key`,
//!   `multipart/form-data` with a zip in field `file` → the vendor's job object, `PENDING`.
//! - `GET /iot/api/v1/certificate-import/job/{job_id}` → the same object plus the detail fields,
//!   `COMPLETED` once every certificate is done.
//!
//! Errors use DigiCert ONE's shape, `{"errors": [{"code": "…", "message": "…"}]}`, with its
//! machine codes: `invalid_input` (400; the IoT API's own examples), `invalid_api_key` (401),
//! `access_denied` (403), `resource_not_found` (404); `payload_too_large` (413),
//! `internal_error` (500) and `service_unavailable` (503) are keyport's, in the same style.
//! Everything about the upload is checked before the job exists: a refused upload stores nothing.

use super::json::Json;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::auth::{identify, peer};
use crate::config::{EnrollmentMethod, EnrollmentProfile};
use crate::core::authz::{Peer, Principal};
use crate::core::certificates::{self, CertImportInput, CertItem, KIND_CERT_IMPORT};
use crate::core::{CoreError, SharedApp};
use crate::material::bundle;
use crate::store::JobRecord;
use crate::token::TokenError;

pub fn routes() -> Router<SharedApp> {
    Router::new()
        // The body is capped by `limits.max_body_bytes` in the handler (`body::read_limited`).
        .route("/iot/api/v1/certificate-import/{enrollment_profile_id}", post(submit).layer(DefaultBodyLimit::disable()))
        .route("/iot/api/v1/certificate-import/job/{job_id}", get(job))
}

// --- errors -----------------------------------------------------------------------------------

pub struct IotError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IotError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> IotError {
        IotError { status, code, message: message.into() }
    }
    fn invalid(message: impl Into<String>) -> IotError {
        IotError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }
    fn not_found(message: impl Into<String>) -> IotError {
        IotError::new(StatusCode::NOT_FOUND, "resource_not_found", message)
    }
}

impl IntoResponse for IotError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"errors": [{"code": self.code, "message": self.message}]}))).into_response()
    }
}

impl From<CoreError> for IotError {
    fn from(e: CoreError) -> IotError {
        let (status, code) = match &e {
            e if e.is_unavailable() => (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable"),
            CoreError::Invalid { .. } | CoreError::Conflict(_) => (StatusCode::BAD_REQUEST, "invalid_input"),
            CoreError::NotFound(_) => (StatusCode::NOT_FOUND, "resource_not_found"),
            CoreError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "invalid_api_key"),
            CoreError::Forbidden(_) | CoreError::NotExportable(_) => (StatusCode::FORBIDDEN, "access_denied"),
            CoreError::Token(TokenError::Transient { .. }) | CoreError::Token(TokenError::Config { .. }) => {
                (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable")
            }
            CoreError::Token(_) | CoreError::Store(_) | CoreError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
            CoreError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable"),
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "certificate import request failed");
        }
        IotError::new(status, code, e.to_string())
    }
}

// --- authentication -------------------------------------------------------------------------

/// The vendor's `x-api-key` header (or a bearer token, or the socket peer), and the peer.
pub struct IotCaller(pub std::sync::Arc<Principal>, pub Peer);

impl FromRequestParts<SharedApp> for IotCaller {
    type Rejection = IotError;

    async fn from_request_parts(parts: &mut Parts, app: &SharedApp) -> Result<Self, IotError> {
        let p = peer(parts);
        let who = identify(app, parts, &[]).map_err(|e| match e {
            CoreError::Unauthenticated(m) => {
                IotError::new(StatusCode::UNAUTHORIZED, "invalid_api_key", format!("{m} (this face reads the x-api-key header)"))
            }
            other => other.into(),
        })?;
        Ok(IotCaller(who, p))
    }
}

// --- the job object ---------------------------------------------------------------------------

/// A UUID derived from `seed`: stable ids for the vendor's account and division fields.
fn derived_uuid(seed: &str) -> String {
    crate::core::ids::derived_uuid(&format!("keyport iot {seed}"))
}

/// The fields the POST answers with; `detail` is what the face stored with the job.
fn job_object(job: &JobRecord, detail: &Value) -> Value {
    let processing = job.finished_at.map_or(0, |f| (f.unix_millis() - job.created_at.unix_millis()).max(0));
    json!({
        "id": job.id,
        "random_id": detail["random_id"],
        "enrollment_profile": {"id": detail["profile_id"], "name": detail["profile_name"]},
        "original_file_name": detail["original_file_name"],
        "format": detail["format"],
        "original_size": detail["original_size"],
        "stored_file_name": detail["stored_file_name"],
        "created_at": job.created_at,
        "status": job.status,
        "enrollment_context": {
            "enrollment_method": "CERTIFICATE_IMPORT",
            "ip_address": detail["ip_address"],
            // Never echoes a credential.
            "authorization": "",
            "auth_type": "BASIC",
        },
        "total_certificates": job.total,
        "failed_certificates": job.failed,
        "processing_time": processing,
    })
}

fn original_name(raw: Option<&str>) -> String {
    let base = raw.unwrap_or("").rsplit(['/', '\\']).next().unwrap_or("");
    base.chars().filter(|c| !c.is_control()).take(255).collect()
}

fn random_id() -> String {
    use rand::Rng;
    let n: u64 = rand::thread_rng().gen_range(100_000_000_000..1_000_000_000_000);
    n.to_string()
}

// --- handlers ---------------------------------------------------------------------------------

fn profile<'a>(app: &'a SharedApp, id: &str) -> Result<&'a EnrollmentProfile, IotError> {
    app.config
        .enrollment_profiles
        .iter()
        .find(|p| p.id == id)
        .ok_or_else(|| IotError::not_found(format!("enrollment profile '{id}' not found")))
}

async fn submit(
    State(app): State<SharedApp>,
    IotCaller(who, peer): IotCaller,
    Path(profile_id): Path<String>,
    req: Request,
) -> Result<Json<Value>, IotError> {
    let p = profile(&app, &profile_id)?;
    if p.enrollment_method != EnrollmentMethod::CertificateImport {
        return Err(IotError::invalid(format!("enrollment profile '{}' does not use the Certificate Import enrollment method", p.id)));
    }
    who.require(&p.namespace, crate::config::Permission::Import).map_err(IotError::from)?;
    let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
    if !content_type.as_ref().and_then(|v| v.to_str().ok()).is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data")) {
        return Err(IotError::invalid("the request must be multipart/form-data with the zip in field 'file'"));
    }
    let extensions = req.extensions().clone();
    let limit = app.config.limits.max_body_bytes;
    let bytes = super::body::read_limited(req, limit)
        .await
        .map_err(|e| IotError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", e.message))?;

    // Re-read the bytes already capped above as multipart.
    let mut inner = Request::new(Body::from(bytes));
    *inner.extensions_mut() = extensions;
    if let Some(ct) = content_type {
        inner.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    let mut form = axum::extract::Multipart::from_request(inner, &())
        .await
        .map_err(|e| IotError::invalid(format!("the multipart body is malformed: {}", e.body_text())))?;
    let mut file: Option<(Option<String>, axum::body::Bytes)> = None;
    loop {
        let field =
            form.next_field().await.map_err(|e| IotError::invalid(format!("the multipart body is malformed: {}", e.body_text())))?;
        let Some(field) = field else { break };
        if field.name() == Some("file") {
            if file.is_some() {
                return Err(IotError::invalid("give one 'file' field"));
            }
            let name = field.file_name().map(String::from);
            let data = field.bytes().await.map_err(|e| IotError::invalid(format!("the multipart body is malformed: {}", e.body_text())))?;
            file = Some((name, data));
        }
    }
    let Some((file_name, data)) = file else {
        return Err(IotError::invalid("the 'file' field is required: a .zip of .pem files or of one .xml file"));
    };
    if data.is_empty() {
        return Err(IotError::invalid("the uploaded file is empty"));
    }

    let (expected, limits) = (p.source_format.bundle_format(), p.limits());
    let size = data.len();
    let read = tokio::task::spawn_blocking(move || bundle::read_zip(&data, expected, limits))
        .await
        .map_err(|e| IotError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", e.to_string()))?;
    let bundle = read.map_err(|e| {
        tracing::info!(profile = %p.id, principal = %who.name, "certificate upload refused: {e}");
        IotError::invalid(e.to_string())
    })?;

    let mut items = Vec::new();
    for e in &bundle.entries {
        match &e.result {
            Ok(certs) => items.extend(certs.iter().map(|c| CertItem::certificate(&e.source, c))),
            Err(why) => items.push(CertItem::failed(&e.source, why)),
        }
    }
    let rid = random_id();
    let detail = json!({
        "random_id": rid,
        "profile_id": p.id,
        "profile_name": p.name,
        "original_file_name": original_name(file_name.as_deref()),
        "format": bundle.format.as_str(),
        "original_size": size,
        "stored_file_name": format!("certificate-import-{rid}.zip"),
        "ip_address": match peer { Peer::Tcp { addr } => addr.ip().to_string(), Peer::Unix { .. } => String::new() },
    });
    let input = CertImportInput { namespace: p.namespace.clone(), items };
    let job = certificates::submit(&app, &who, &input, &detail.to_string())?;
    tracing::info!(job = %job.id, profile = %p.id, certificates = job.total, "certificate import accepted");
    Ok(Json(job_object(&job, &detail)))
}

async fn job(State(app): State<SharedApp>, IotCaller(who, _): IotCaller, Path(id): Path<String>) -> Result<Json<Value>, IotError> {
    let not_found = || IotError::not_found(format!("certificate import job '{id}' not found"));
    let (job, items) = app.store.job(&id).map_err(CoreError::from)?.ok_or_else(not_found)?;
    let ns = job.namespace.clone().unwrap_or_default();
    if job.kind != KIND_CERT_IMPORT || (job.principal != who.name && !who.allows(&ns, crate::config::Permission::Read)) {
        return Err(not_found());
    }
    let detail: Value =
        app.store.job_detail(&id).map_err(CoreError::from)?.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or(Value::Null);
    let mut v = job_object(&job, &detail);
    let failures: Vec<&str> =
        items.iter().filter(|i| i.status == crate::store::ItemStatus::Failed).filter_map(|i| i.reason.as_deref()).collect();
    let result = match (job.status.as_str(), job.failed) {
        ("COMPLETED", 0) => "SUCCESS",
        ("COMPLETED", f) if f >= job.total => "FAILURE",
        ("COMPLETED", _) => "PARTIAL_SUCCESS",
        _ => "",
    };
    v["account_id"] = json!(derived_uuid("account"));
    v["division"] = json!({"id": derived_uuid(&format!("division {ns}")), "name": ns});
    // The job detail shows whole seconds.
    v["created_at"] = json!(job.created_at.to_seconds_string());
    v["result"] = json!(result);
    v["status_message"] = json!(serde_json::to_string(&failures).unwrap_or_else(|_| "[]".into()));
    Ok(Json(v))
}
