//! The native API under `/keyport/v1/`: health and keys.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::body::JsonBody;
use super::error::ApiError;
use super::json::Json;
use crate::core::authz::Principal;
use crate::core::formats::{self, ExportFormat};
use crate::core::key_pages;
use crate::core::keys::{self, GenerateRequest};
use crate::core::probe;
use crate::core::CoreError;
use crate::core::SharedApp;
use crate::store::{After, KeyRecord};

pub fn routes() -> Router<SharedApp> {
    Router::new()
        .route("/keyport/v1/health/live", get(live))
        .route("/keyport/v1/health/keys", get(key_histories))
        .route("/keyport/v1/keys", get(list_keys).post(generate_key))
        .route("/keyport/v1/keys/{id}", get(show_key).delete(delete_key))
        .route("/keyport/v1/keys/{id}/export", axum::routing::post(export_key))
        .route("/keyport/v1/keys/{id}/public", get(public_key))
}

/// The routes that read the sync worker (`api::router` gives them its extension).
pub fn health_routes() -> Router<SharedApp> {
    Router::new().route("/keyport/v1/health", get(health))
}

/// `GET health/live` (also on the metrics-only listener): liveness for supervisors and load
/// balancers, the daemon answers HTTP. No authentication, nothing about tokens, keys or
/// principals; `GET health` (authenticated) says whether the daemon can do its work.
pub async fn live() -> Json<Value> {
    Json(json!({"status": "alive"}))
}

/// Health answers any authenticated caller. It probes now (`core::probe`: each token reads a
/// known object, the store runs a rolled-back write and checks its disk) rather than trusting
/// the last round, and is degraded (503) while any component has a problem.
async fn health(
    State(app): State<SharedApp>,
    axum::Extension(super::SyncWorker(syncer)): axum::Extension<super::SyncWorker>,
    Caller(_): Caller,
) -> (StatusCode, Json<Value>) {
    let mut tokens = Vec::new();
    for t in app.tokens.all() {
        tokens.push(probe::token(&app, t).await);
    }
    let store_ok = probe::store(&app).await;
    let mut problems = serde_json::to_value(app.health.problems()).unwrap_or_default();
    let local_ok = store_ok && problems.as_array().is_some_and(Vec::is_empty) && tokens.iter().all(|t| t.present && t.logged_in);
    // A vault that cannot be used (down, sealed, cutting connections, rate-limiting past what a
    // call waits out) degrades the daemon but does not stop it: keys are made, imported and
    // used locally; the changes wait in the backlog. So 200, with the vault's own reason.
    let vault_down = syncer.as_ref().and_then(|s| s.gate.status());
    if let (Some(d), Some(list)) = (&vault_down, problems.as_array_mut()) {
        list.push(json!({"component": "sync", "reason": format!("sync to the vault is paused: {} (down {} s, {} failed probes); changes wait in the backlog, next try at {}", d.reason, d.down_secs, d.failures, d.next_probe_at)}));
    }
    let status = if local_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        status,
        Json(json!({
            "status": if local_ok && vault_down.is_none() { "ok" } else { "degraded" },
            "version": env!("CARGO_PKG_VERSION"),
            "tokens": tokens,
            "store": {"ok": store_ok, "schema_version": app.store.schema_version().ok()},
            "problems": problems,
            "features_off": app.health.off(),
        })),
    )
}

/// Each key the caller may read, with what its token says about it (CKA_LOCAL,
/// CKA_NEVER_EXTRACTABLE, …) and whether it has never been outside the token.
async fn key_histories(State(app): State<SharedApp>, Caller(who): Caller) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "keys": crate::core::token_caps::key_histories(&app, &who).await? })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    namespace: Option<String>,
    name: Option<String>,
    /// Keys per page, 1-1000; with a cursor and no limit, 1000.
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// `GET keys`: with `limit` or `cursor`, one page and `next_cursor` (absent on the last
/// page); with neither, every key in one answer, as before pagination existed, so existing
/// scripts see the same list (docs/native-api.md says to page on large stores).
async fn list_keys(State(app): State<SharedApp>, Caller(who): Caller, Query(q): Query<ListQuery>) -> Result<Response, ApiError> {
    if q.limit.is_none() && q.cursor.is_none() {
        return list_every_key(app, who, q.namespace, q.name).await;
    }
    let limit = q.limit.as_deref().map(key_pages::parse_limit).transpose()?.unwrap_or(key_pages::MAX_LIMIT);
    let after = q.cursor.as_deref().map(key_pages::parse_cursor).transpose()?;
    let page = key_pages::list_page(&app, &who, q.namespace.as_deref(), q.name.as_deref(), after.as_ref(), limit)?;
    Ok(Json(page).into_response())
}

/// Keys read from the store per chunk of an unpaged `GET keys` answer.
const LIST_CHUNK: usize = 256;

/// `GET keys` without `limit` or `cursor`: every key in one `{"keys": [...]}` answer, read and
/// written [`LIST_CHUNK`] keys at a time as the client takes them (each read on a blocking
/// thread: the store's lock may wait behind a commit). Holding the whole list, and a JSON tree
/// of it, per request made memory grow with inventory × concurrent listers: the 30-minute
/// soak reached 909 MiB with ~6,000 keys. Like a walk of pages, the answer is not one
/// snapshot: a key created while it is written may be in it, one deleted may not.
///
/// A store error on the first chunk is an ordinary error answer. After that the status is
/// out, so an error, or the request time-out passing (`limits.request_timeout_secs`: the
/// caller's permissions were read at the start and must not serve it for longer), cuts the
/// connection: the body never ends in `]}`, and a client cannot take it for a whole list.
async fn list_every_key(
    app: SharedApp,
    who: std::sync::Arc<Principal>,
    namespace: Option<String>,
    name: Option<String>,
) -> Result<Response, ApiError> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(app.config.limits.request_timeout_secs);
    let walk = std::sync::Arc::new(ListWalk { app, who, namespace, name });
    let first = walk.clone().page(None).await?;
    // The first chunk is the page read above; each later one is read when the client has
    // taken the one before.
    let chunks = futures_util::stream::unfold(Some((walk, Next::Page(first), true)), move |state| async move {
        let (walk, next, first) = state?;
        let page = match next {
            Next::Page(p) => p,
            Next::After(_) if tokio::time::Instant::now() > deadline => {
                return Some((Err(ListCut::logged("the request time-out passed while the client read the list".into())), None))
            }
            Next::After(after) => match walk.clone().page(Some(after)).await {
                Ok(p) => p,
                Err(e) => return Some((Err(ListCut::logged(e.to_string())), None)),
            },
        };
        let mut out = Vec::with_capacity(page.keys.len() * 400 + 16);
        if first {
            out.extend_from_slice(b"{\"keys\":[");
        }
        for (i, k) in page.keys.iter().enumerate() {
            if !(first && i == 0) {
                out.push(b',');
            }
            if let Err(e) = serde_json::to_writer(&mut out, k) {
                return Some((Err(ListCut::logged(e.to_string())), None));
            }
        }
        let next = match (page.next_cursor, page.keys.last()) {
            (Some(_), Some(last)) => Some((walk, Next::After(After { created_at: last.created_at, id: last.id.clone() }), false)),
            _ => {
                out.extend_from_slice(b"]}");
                None
            }
        };
        Some((Ok(axum::body::Bytes::from(out)), next))
    });
    Ok(([(CONTENT_TYPE, "application/json")], Body::from_stream(chunks)).into_response())
}

/// What an unpaged `GET keys` walks: the caller and its filters.
struct ListWalk {
    app: SharedApp,
    who: std::sync::Arc<Principal>,
    namespace: Option<String>,
    name: Option<String>,
}

/// The next chunk of an unpaged `GET keys`: read already, or to read after a key.
enum Next {
    Page(key_pages::KeyPage),
    After(After),
}

impl ListWalk {
    async fn page(self: std::sync::Arc<Self>, after: Option<After>) -> Result<key_pages::KeyPage, CoreError> {
        tokio::task::spawn_blocking(move || {
            key_pages::list_page(&self.app, &self.who, self.namespace.as_deref(), self.name.as_deref(), after.as_ref(), LIST_CHUNK)
        })
        .await
        .map_err(|e| CoreError::Internal(format!("the key listing worker failed: {e}")))?
    }
}

/// Why an unpaged `GET keys` answer stopped part-way: the connection is cut.
#[derive(Debug)]
struct ListCut(String);

impl ListCut {
    fn logged(why: String) -> ListCut {
        tracing::warn!("GET keys: the answer was cut part-way, the client gets an incomplete body: {why}");
        ListCut(why)
    }
}

impl std::fmt::Display for ListCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GET keys cut part-way: {}", self.0)
    }
}

impl std::error::Error for ListCut {}

async fn show_key(
    State(app): State<SharedApp>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<std::sync::Arc<KeyRecord>>, ApiError> {
    Ok(Json(keys::get_shared(&app, &who, &id)?))
}

async fn generate_key(
    State(app): State<SharedApp>,
    Caller(who): Caller,
    JsonBody(req): JsonBody<GenerateRequest>,
) -> Result<(StatusCode, Json<KeyRecord>), ApiError> {
    Ok((StatusCode::CREATED, Json(keys::generate(&app, &who, req).await?)))
}

async fn delete_key(State(app): State<SharedApp>, Caller(who): Caller, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let rec = keys::delete(&app, &who, &id).await?;
    Ok(Json(json!({ "deleted": rec.id })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportRequest {
    /// pkcs8 (default), pkcs1/sec1, openssh, putty (v3), putty-v2, ssh2, tectia.
    format: Option<String>,
    /// Encrypts the exported key. Absent or empty: an unencrypted key, only when the
    /// namespace's policy has `allow_unencrypted_export`.
    passphrase: Option<String>,
}

async fn export_key(
    State(app): State<SharedApp>,
    Caller(who): Caller,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ExportRequest>,
) -> Result<Json<Value>, ApiError> {
    let name = req.format.as_deref().unwrap_or("pkcs8");
    let format = ExportFormat::parse_native(name).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_format",
            format!("format '{name}' is not supported; use one of: {}", formats::NATIVE_NAMES),
        )
    })?;
    // The passphrase rule (length, required by policy) is the core's, shared by every face.
    let pass = req.passphrase.filter(|p| !p.is_empty()).map(|p| zeroize::Zeroizing::new(p.into_bytes()));
    let encrypted = pass.is_some();
    let (rec, text) = formats::export_as(&app, &who, &id, format, pass).await?;
    Ok(Json(json!({"id": rec.id, "format": format.native_name(), "encrypted": encrypted, "private_key": text.as_str()})))
}

/// `GET keys/{id}/public`: the public half, as an authorized_keys line (comment
/// `<namespace>/<name>`, as the ssh-agent lists it) and as a PEM SubjectPublicKeyInfo. Any
/// caller that may read the key.
#[derive(serde::Deserialize)]
struct PublicQuery {
    /// `openssh` (default) or `pem`: what `public_key` holds.
    format: Option<String>,
}

/// `GET keys/{id}/public[?format=openssh|pem]`: both forms, the fingerprint `ssh-keygen -l`
/// prints, and `public_key` in the asked form (what rotation hooks and `keys pubkey` read).
async fn public_key(
    State(app): State<SharedApp>,
    Caller(who): Caller,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<PublicQuery>,
) -> Result<Json<Value>, ApiError> {
    use base64::Engine;
    let format = q.format.unwrap_or_else(|| "openssh".into());
    if format != "openssh" && format != "pem" {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_format", format!("format '{format}' is not openssh or pem")));
    }
    let (rec, pk) = crate::core::export::public_key(&app, &who, &id).await?;
    let der = pk.spki_der().map_err(|e| crate::core::CoreError::invalid("unsupported", e.to_string()))?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let body: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
    let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", body.join("\n"));
    let openssh = crate::material::ssh::try_public_key_blob(&pk)
        .ok()
        .map(|_| crate::material::ssh::public_key_line(&pk, &format!("{}/{}", rec.namespace, rec.name)));
    let public_key = match format.as_str() {
        "pem" => Some(pem.clone()),
        _ => openssh.clone(),
    }
    .ok_or_else(|| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_format", "this key type has no OpenSSH form; ask for format=pem")
    })?;
    let fingerprint = crate::material::ssh::fingerprint_sha256(&pk);
    Ok(Json(json!({
        "id": rec.id, "name": rec.name, "namespace": rec.namespace, "algorithm": rec.algorithm,
        "openssh": openssh, "pem": pem, "fingerprint": fingerprint, "format": format, "public_key": public_key
    })))
}

/// The face's request bodies and queries, for `fuzz/` (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_request(body: &[u8], query: &str) {
    use crate::fuzzing::{json, query as q};
    if let Some(r) = json::<ExportRequest>(body) {
        let _ = ExportFormat::parse_native(r.format.as_deref().unwrap_or("pkcs8"));
    }
    if let Some(r) = json::<GenerateRequest>(body) {
        let _ = crate::material::algorithm::Algorithm::parse(&r.algorithm);
    }
    let _ = q::<ListQuery>(query);
}
