//! The Venafi TPP WebSDK SSH face (seed 003; `docs/vendor-apis.md` §003).
//!
//! TPP's routes ignore case, so this face is not a table of axum routes: the router's fallback
//! hands every path under `/vedauth/` or `/vedsdk/` (any case) to [`dispatch`], which matches
//! the lower-cased path. Tokens: `POST /vedauth/authorize/oauth` with a configured user's
//! password (`[tpp.users]`, Argon2id PHC strings; checked on a blocking thread, after the
//! failed-login throttle in [`throttle`] and within its bound on concurrent checks) gives a
//! bearer token and a refresh token. Tokens are 31 random bytes in base64, so they end in `==`
//! as TPP's do: Venafi's Python SDK (pyvenafi's `WebSDK`) sends a token ending in `==` as
//! `Authorization: Bearer`, anything else as the legacy `X-Venafi-API-Key` header (which is
//! accepted too, for tokens issued before). The
//! sessions are kept in the store by the SHA-256 of their tokens, so a restart logs no client
//! out; each also holds a hash of its user's configured password hash, and every use (bearer or
//! refresh) requires that user to be configured still, with the same principal and password, or
//! the session is dropped. A refresh replaces the session in one transaction and its token is
//! used once. Scopes
//! gate the SSH calls as TPP documents: `ssh` for listing and self-service export,
//! `ssh:discover` for imports. SSH calls answer HTTP 200 with TPP's `SshWebResponse`
//! (`Success`, `ErrorCode`, `ErrorMessage`) also when they fail, as TPP does.

use super::json::Json;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

mod details;
mod rotation;
mod throttle;

use crate::core::authz::{Peer, Principal};
use crate::core::formats::{self, ExportFormat};
use crate::core::import::{ImportOutcome, ImportRequest};
use crate::core::{CoreError, SharedApp};
use crate::material::ssh::{fingerprint_sha256, public_key_line};
use crate::store::{KeyRecord, TppSession};

pub fn routes() -> Router<SharedApp> {
    Router::new()
}

/// True for paths this face owns (any case).
pub fn owns(path: &str) -> bool {
    let p = path.to_ascii_lowercase();
    p.starts_with("/vedauth/") || p.starts_with("/vedsdk/")
}

/// The router's fallback: TPP paths go to [`dispatch`], everything else gets the native 404.
pub async fn fallback(State(app): State<SharedApp>, req: Request) -> Response {
    if owns(req.uri().path()) {
        dispatch(app, req).await
    } else {
        super::error::not_found(req.uri().clone()).await.into_response()
    }
}

// --- tokens -----------------------------------------------------------------------------------

/// A store failure on the token path: the client may retry.
fn store_unavailable(e: crate::store::StoreError) -> Response {
    tracing::error!(error = ?e.to_string(), "tpp: the session store failed");
    oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "keyport's store is unavailable; try again")
}

fn now() -> u64 {
    crate::clock::Timestamp::now().unix().max(0) as u64
}

fn iso8601(secs: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// 31 bytes (248 bits): base64 ends in `==`, which pyvenafi needs to send it as a bearer token.
fn new_token() -> String {
    let mut b = [0u8; 31];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// OAuth errors: `{"error", "error_description"}`.
fn oauth_error(status: StatusCode, error: &str, description: impl Into<String>) -> Response {
    (status, Json(json!({"error": error, "error_description": description.into()}))).into_response()
}

/// Scope grammar `ssh:manage,discover;certificate:manage`; a bare `ssh` is read.
fn scope_allows(scope: &str, want: &str, privilege: Option<&str>) -> bool {
    scope.split(';').any(|part| {
        let (name, privs) = part.split_once(':').unwrap_or((part, ""));
        name.trim().eq_ignore_ascii_case(want) && privilege.is_none_or(|p| privs.split(',').any(|x| x.trim().eq_ignore_ascii_case(p)))
    })
}

const KNOWN_SCOPES: &[&str] =
    &["any", "admin", "agent", "certificate", "codesign", "configuration", "restricted", "security", "ssh", "statistics"];

/// What `[tpp.users]` holds of a session's user: the hex SHA-256 of its configured
/// `password_hash` (a PHC string with its own salt, so only a new password changes it), never
/// the hash itself.
fn credential(password_hash: &str) -> String {
    hex::encode(Sha256::digest(password_hash.as_bytes()))
}

/// Whether the session's user is still configured, with the same principal and password.
fn user_current(app: &SharedApp, s: &TppSession) -> bool {
    app.config.tpp.users.iter().any(|u| {
        u.username.eq_ignore_ascii_case(&s.username)
            && u.principal == s.principal
            && u.password_hash.as_deref().is_some_and(|h| bool::from(credential(h).as_bytes().ct_eq(s.credential.as_bytes())))
    })
}

const USER_CHANGED: &str = "the token's user is no longer configured or its password changed; log in again";

/// A new session for `user` (username, principal, credential) and its OAuth answer; `granted`
/// and `refresh_until` carry over from the session a refresh replaces.
fn new_session(
    app: &SharedApp,
    user: (String, String, String),
    client_id: String,
    scope: String,
    granted: u64,
    refresh_until: u64,
) -> (TppSession, Value) {
    let (username, principal, credential) = user;
    let (access, refresh) = (new_token(), new_token());
    let t = now();
    let expires = t + app.config.tpp.token_lifetime_secs;
    let body = json!({
        "access_token": access,
        "refresh_token": refresh,
        "expires": expires,
        "expires_in": app.config.tpp.token_lifetime_secs,
        "refresh_until": refresh_until,
        "token_type": "Bearer",
        "scope": scope,
        "identity": format!("local:{username}"),
    });
    let s = TppSession {
        access_sha256: hash(&access),
        refresh_sha256: hash(&refresh),
        username,
        principal,
        credential,
        client_id,
        scope,
        granted,
        issued: t,
        expires,
        refresh_until,
    };
    (s, body)
}

#[derive(Deserialize)]
struct OAuthRequest {
    client_id: Option<String>,
    username: Option<String>,
    password: Option<String>,
    scope: Option<String>,
}

static THROTTLE: std::sync::LazyLock<throttle::LoginThrottle> = std::sync::LazyLock::new(throttle::LoginThrottle::default);

/// Checked in place of a missing user's hash, so an unknown name costs what a known one does
/// (no user enumeration by timing).
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| crate::config::hash_password(b"keyport: no such user"));

/// A login audit entry; `username` is the caller's string, quoted and escaped.
fn login_audit(app: &SharedApp, principal: &str, outcome: &str, username: &str, source: throttle::Source, why: &str) {
    let entry = crate::store::AuditEntry {
        at: crate::store::records::now(),
        principal: principal.into(),
        action: "tpp.login".into(),
        namespace: None,
        key_id: None,
        outcome: outcome.into(),
        detail: Some(format!("username {username:?} from {source}: {why}")),
    };
    if let Err(e) = app.store.audit(&entry) {
        tracing::error!(error = ?e.to_string(), "tpp: could not audit a login");
    }
}

fn retry_after(status: StatusCode, error: &str, description: String, secs: u64) -> Response {
    let mut r = oauth_error(status, error, description);
    r.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs.max(1)));
    r
}

async fn authorize_oauth(app: &SharedApp, peer: Peer, body: &[u8]) -> Response {
    let Ok(req) = serde_json::from_slice::<OAuthRequest>(body) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be JSON with client_id, username, password and scope",
        );
    };
    let (Some(client_id), Some(username), Some(password)) = (req.client_id, req.username, req.password.map(Zeroizing::new)) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "client_id, username and password are required");
    };
    let scope = req.scope.unwrap_or_else(|| "any".into());
    for part in scope.split(';') {
        let name = part.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
        if !KNOWN_SCOPES.contains(&name.as_str()) {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", format!("unknown scope {name:?}"));
        }
    }
    let source = throttle::Source::of(&peer);
    let user = app.config.tpp.users.iter().find(|u| u.username.eq_ignore_ascii_case(&username) && u.password_hash.is_some());
    let user_key = user.map(|u| u.username.to_lowercase());
    // Throttle before any Argon2 work: a blocked user or source costs nothing more.
    if let Err(wait) = THROTTLE.check(user_key.as_deref(), source) {
        tracing::info!(username = ?username, source = %source, retry_after_secs = wait.as_secs(), "tpp login throttled");
        return retry_after(
            StatusCode::TOO_MANY_REQUESTS,
            "invalid_grant",
            format!("too many failed logins for this user or from this client; try again in {} s", wait.as_secs().max(1)),
            wait.as_secs(),
        );
    }
    let Some(_slot) = THROTTLE.slot().await else {
        tracing::warn!(source = %source, "tpp login refused: too many password checks waiting");
        return retry_after(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "too many logins are being checked at once; try again shortly".into(),
            1,
        );
    };
    // Failures counted while this one waited for its slot may have blocked it meanwhile.
    if let Err(wait) = THROTTLE.check(user_key.as_deref(), source) {
        return retry_after(
            StatusCode::TOO_MANY_REQUESTS,
            "invalid_grant",
            format!("too many failed logins for this user or from this client; try again in {} s", wait.as_secs().max(1)),
            wait.as_secs(),
        );
    }
    let phc = user.and_then(|u| u.password_hash.clone());
    let ok = tokio::task::spawn_blocking(move || {
        let good = crate::config::verify_password(phc.as_deref().unwrap_or(&DUMMY_HASH), password.as_bytes());
        good && phc.is_some()
    })
    .await
    .unwrap_or(false);
    drop(_slot);
    let user = match (ok, user) {
        (true, Some(u)) => u,
        _ => {
            let blocks = THROTTLE.failed(user_key.as_deref(), source);
            let principal = user.map_or("-", |u| u.principal.as_str());
            tracing::info!(username = ?username, source = %source, "tpp login refused");
            login_audit(app, principal, "refused", &username, source, "wrong username or password");
            for b in blocks {
                let (what, d) = match b {
                    throttle::Blocked::User(d) => ("the user", d),
                    throttle::Blocked::Source(d) => ("the source", d),
                };
                login_audit(app, principal, "throttled", &username, source, &format!("{what} is blocked for {} s", d.as_secs()));
            }
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Username/password combination not valid");
        }
    };
    THROTTLE.succeeded(&user.username.to_lowercase(), source);
    let t = now();
    let hash = user.password_hash.as_deref().unwrap_or_default();
    let who = (user.username.clone(), user.principal.clone(), credential(hash));
    let (s, body) = new_session(app, who, client_id, scope, t, t + app.config.tpp.refresh_lifetime_secs);
    match app.store.tpp_session_put(&s, t) {
        Ok(()) => {
            tracing::info!(username = ?user.username, source = %source, "tpp login ok");
            login_audit(app, &user.principal, "ok", &username, source, "logged in");
            (StatusCode::OK, Json(body)).into_response()
        }
        Err(e) => store_unavailable(e),
    }
}

#[derive(Deserialize)]
struct RefreshRequest {
    client_id: Option<String>,
    refresh_token: Option<String>,
}

fn refresh_token(app: &SharedApp, body: &[u8]) -> Response {
    let Ok(RefreshRequest { client_id: Some(client_id), refresh_token: Some(refresh) }) = serde_json::from_slice::<RefreshRequest>(body)
    else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "client_id and refresh_token are required");
    };
    let t = now();
    let invalid = || oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "the refresh token is invalid or expired");
    let old_hash = hash(&refresh);
    let old = match app.store.tpp_session_by_refresh(&old_hash, &client_id) {
        Ok(Some(s)) => s,
        Ok(None) => return invalid(),
        Err(e) => return store_unavailable(e),
    };
    if !user_current(app, &old) {
        if let Err(e) = app.store.tpp_session_delete(&old.access_sha256) {
            return store_unavailable(e);
        }
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", USER_CHANGED);
    }
    if old.refresh_until <= t {
        return invalid();
    }
    let who = (old.username.clone(), old.principal.clone(), old.credential.clone());
    let (new, body) = new_session(app, who, old.client_id.clone(), old.scope.clone(), old.granted, old.refresh_until);
    // One transaction: a failure keeps the old session, and of two refreshes of one token only
    // one gets new tokens.
    match app.store.tpp_session_rotate(&old_hash, &client_id, &new, t) {
        Ok(Some(_)) => (StatusCode::OK, Json(body)).into_response(),
        Ok(None) => invalid(),
        Err(e) => store_unavailable(e),
    }
}

/// The bearer token's live session, or the 401 TPP answers.
// The error is the finished answer, built once per request: boxing it would buy nothing.
#[allow(clippy::result_large_err)]
fn bearer(app: &SharedApp, req: &axum::http::request::Parts) -> Result<TppSession, Response> {
    let token = req
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.get(..7).filter(|p| p.eq_ignore_ascii_case("bearer ")).map(|_| v[7..].trim()))
        // pyvenafi sends a token not ending in `==` in TPP's legacy API-key header.
        .or_else(|| req.headers.get("x-venafi-api-key").and_then(|v| v.to_str().ok()).map(str::trim))
        .ok_or_else(|| oauth_error(StatusCode::UNAUTHORIZED, "invalid_token", "no bearer token (Authorization: Bearer <access_token>)"))?;
    match app.store.tpp_session(&hash(token)).map_err(store_unavailable)? {
        None => Err(oauth_error(StatusCode::UNAUTHORIZED, "invalid_token", "the access token is not valid")),
        Some(s) if !user_current(app, &s) => {
            app.store.tpp_session_delete(&s.access_sha256).map_err(store_unavailable)?;
            Err(oauth_error(StatusCode::UNAUTHORIZED, "invalid_token", USER_CHANGED))
        }
        Some(s) if s.expires <= now() => {
            Err(oauth_error(StatusCode::UNAUTHORIZED, "expired_token", "the access token has expired; refresh it"))
        }
        Some(s) => Ok(s),
    }
}

/// The caller's principal, after checking the token's scope.
#[allow(clippy::result_large_err)]
fn caller(
    app: &SharedApp,
    parts: &axum::http::request::Parts,
    scope: &str,
    privilege: Option<&str>,
) -> Result<std::sync::Arc<Principal>, Response> {
    let s = bearer(app, parts)?;
    let ok = scope_allows(&s.scope, scope, privilege);
    let principal: String = s.principal;
    let who = app.authz.read().expect("poisoned").by_name(&principal).ok_or_else(|| {
        oauth_error(StatusCode::UNAUTHORIZED, "invalid_token", format!("the token's principal '{principal}' is no longer configured"))
    })?;
    // Named in the access line and in the audit of a refusal, like every other face's caller.
    super::auth::note_principal(parts, &who);
    if !ok {
        let need = privilege.map_or(scope.to_string(), |p| format!("{scope}:{p}"));
        return Err(oauth_error(StatusCode::FORBIDDEN, "insufficient_scope", format!("this call needs the token scope '{need}'")));
    }
    Ok(who)
}

fn verify(app: &SharedApp, parts: &axum::http::request::Parts) -> Response {
    let s = match bearer(app, parts) {
        Ok(s) => s,
        Err(r) => return r,
    };
    Json(json!({
        "application": s.client_id,
        "expires_ISO8601": iso8601(s.expires),
        "grant_issued_on_ISO8601": iso8601(s.granted),
        "access_issued_on_ISO8601": iso8601(s.issued),
        "identity": format!("local:{}", s.username),
        "scope": s.scope,
        "valid_for": s.expires.saturating_sub(now()),
    }))
    .into_response()
}

#[allow(clippy::result_large_err)]
fn revoke(app: &SharedApp, parts: &axum::http::request::Parts) -> Response {
    match bearer(app, parts).and_then(|s| app.store.tpp_session_delete(&s.access_sha256).map_err(store_unavailable)) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(r) => r,
    }
}

// --- SSH -------------------------------------------------------------------------------------

/// TPP's SshWebResponse error codes (`r-SDK-SSH-Supported-Error-Codes`).
mod codes {
    pub const KEY_NOT_FOUND: i64 = 1;
    pub const KEYSET_NOT_FOUND: i64 = 2;
    pub const BAD_KEY_FORMAT: i64 = 4;
    pub const KEY_ALREADY_EXISTS: i64 = 5;
    pub const INSUFFICIENT_RIGHTS: i64 = 12;
    pub const KEY_CANNOT_BE_DOWNLOADED: i64 = 14;
}

fn failure(code: i64, message: impl Into<String>) -> Value {
    json!({"Success": false, "ErrorCode": code, "ErrorMessage": message.into()})
}

/// Marks an SSH answer that failed on the daemon's side (token or store unavailable):
/// [`dispatch`] answers it 503 (Retry-After) instead of TPP's 200, and removes the mark.
const UNAVAILABLE_MARK: &str = "keyportUnavailable";
/// Likewise for keyport's own failure: answered 500.
const INTERNAL_MARK: &str = "keyportInternal";

fn core_failure(e: CoreError) -> Value {
    let msg = e.to_string();
    if e.is_unavailable() {
        tracing::error!(error = %e, "tpp request failed: token or store unavailable");
        let mut v = failure(0, format!("{msg} (retry later)"));
        v[UNAVAILABLE_MARK] = json!(true);
        return v;
    }
    match e {
        CoreError::NotFound(_) => failure(codes::KEY_NOT_FOUND, msg),
        CoreError::NotExportable(_) => failure(codes::KEY_CANNOT_BE_DOWNLOADED, msg),
        CoreError::Forbidden(_) | CoreError::Unauthenticated(_) => failure(codes::INSUFFICIENT_RIGHTS, msg),
        CoreError::Invalid { .. } | CoreError::Conflict(_) => failure(codes::BAD_KEY_FORMAT, msg),
        // keyport's own fault: a 500, never "bad key format".
        CoreError::Internal(_) => {
            tracing::error!(error = ?msg, "tpp request failed inside keyport");
            let mut v = failure(0, msg);
            v[INTERNAL_MARK] = json!(true);
            v
        }
        other => {
            tracing::error!(error = ?other.to_string(), "tpp request failed");
            failure(0, other.to_string())
        }
    }
}

/// An SSH call's answer: 200 as TPP answers even failures, but 503 (Retry-After) when
/// [`core_failure`] marked it as the daemon's fault; the mark never reaches the client.
fn ssh_response(mut v: Value) -> Response {
    let mut marked = |mark: &str| {
        ["Response", "SshWebResponse"].iter().any(|k| v.get_mut(*k).and_then(Value::as_object_mut).and_then(|o| o.remove(mark)).is_some())
    };
    let status = if marked(UNAVAILABLE_MARK) {
        StatusCode::SERVICE_UNAVAILABLE
    } else if marked(INTERNAL_MARK) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    (status, Json(v)).into_response()
}

/// TPP's `Algorithm` and `Length` of a key pair SSH can use, from the typed algorithm; `None`
/// for anything else the inventory holds (secret keys, public-only rows), which this face
/// neither lists nor exports.
fn ssh_algorithm(rec: &KeyRecord) -> Option<(&'static str, u32)> {
    use crate::material::algorithm::Algorithm as A;
    Some(match rec.algorithm.pair()? {
        A::Rsa2048 => ("RSA", 2048),
        A::Rsa3072 => ("RSA", 3072),
        A::Rsa4096 => ("RSA", 4096),
        A::EcP256 => ("ECDSA", 256),
        A::EcP384 => ("ECDSA", 384),
        A::EcP521 => ("ECDSA", 521),
        A::Ed25519 => ("ED25519", 256),
    })
}

/// The key `key_id` if it is an SSH key pair the caller may see; otherwise not found, as TPP
/// says of a key it does not have.
fn ssh_key(app: &SharedApp, who: &Principal, key_id: i64) -> Result<KeyRecord, CoreError> {
    let rec = crate::core::keys::get(app, who, &keyport_id(app, key_id)?)?;
    match ssh_algorithm(&rec) {
        Some(_) => Ok(rec),
        None => Err(CoreError::NotFound(format!("no SSH key with KeyId {key_id}"))),
    }
}

/// The keyset of a key: keyport groups keys by namespace and name.
fn keyset_id(rec: &KeyRecord) -> String {
    format!("{}:{}", rec.namespace, rec.name)
}

fn key_object(app: &SharedApp, rec: &KeyRecord, (alg, len): (&str, u32)) -> Result<Value, CoreError> {
    Ok(json!({
        "KeyId": app.store.tpp_key_id(&rec.id)?,
        "KeysetId": keyset_id(rec),
        "Type": "UserPrivateKey",
        "Algorithm": alg,
        "Length": len,
        "Format": "OpenSSH",
        "Notes": rec.name,
        "Username": rec.owner,
        "ActiveFrom": rec.created_at,
        "IsEncrypted": true,
        "ProcessStatus": 0,
        "ViolationStatus": [],
    }))
}

/// The face's request bodies, for `fuzz/` (feature `fuzzing`): logins, key and keyset details
/// (filters and paging), export, import, the rotation calls.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_request(body: &[u8]) {
    use crate::fuzzing::json;
    let _ = json::<OAuthRequest>(body);
    let _ = json::<RefreshRequest>(body);
    let _ = json::<DetailsRequest>(body);
    let _ = json::<ExportRequest>(body);
    let _ = json::<ImportBody>(body);
    if let Ok(r) = details::DetailsRequest::parse(body) {
        let _ = r.apply(Vec::new());
    }
    rotation::fuzz_request(body);
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct DetailsRequest {
    key_id: Option<Vec<i64>>,
    page_size: Option<usize>,
    offset: Option<usize>,
}

/// The caller's keys, each with its TPP KeyId, filtered by `KeyId` and paged.
fn visible_keys(app: &SharedApp, who: &Principal, req: &DetailsRequest) -> Result<Vec<(KeyRecord, Value)>, CoreError> {
    let mut out = Vec::new();
    for rec in crate::core::keys::list(app, who, None, None)? {
        let Some(alg) = ssh_algorithm(&rec) else { continue };
        let obj = key_object(app, &rec, alg)?;
        if req.key_id.as_ref().is_none_or(|ids| ids.contains(&obj["KeyId"].as_i64().unwrap_or(-1))) {
            out.push((rec, obj));
        }
    }
    let offset = req.offset.unwrap_or(0);
    Ok(out.into_iter().skip(offset).take(req.page_size.unwrap_or(1000)).collect())
}

fn key_details(app: &SharedApp, who: &Principal, body: &[u8]) -> Value {
    let req: DetailsRequest = serde_json::from_slice(body).unwrap_or_default();
    match visible_keys(app, who, &req) {
        Ok(keys) => json!({"Data": keys.into_iter().map(|(_, o)| o).collect::<Vec<_>>(), "Response": {"Success": true}}),
        Err(e) => json!({"Data": [], "Response": core_failure(e)}),
    }
}

fn keyset_object(rec: &KeyRecord, obj: Value) -> Value {
    let (alg, len) = ssh_algorithm(rec).unwrap_or(("", 0));
    json!({
        "KeysetId": keyset_id(rec),
        "Algorithm": alg,
        "Length": len,
        "Type": "User",
        "FingerprintSHA256": rec.fingerprint,
        "PrivateKeys": [obj],
        "PublicKeys": [],
        "RotationStage": 10600,
        "ProcessStatus": 0,
        "ViolationStatus": [],
    })
}

/// `POST SSH/KeysetDetails`: every keyset the caller may see (rotation's keysets, then single
/// SSH keys as keysets of one key), filtered and paged (`details.rs`).
fn keyset_details(app: &SharedApp, who: &Principal, body: &[u8]) -> Value {
    let req = match details::DetailsRequest::parse(body) {
        Ok(r) => r,
        Err(details::BadRequest(m)) => return json!({"Data": [], "Response": failure(codes::BAD_KEY_FORMAT, m)}),
    };
    match visible_keys(app, who, &DetailsRequest::default()).and_then(|keys| Ok((keys, rotation::keysets(app, who)?))) {
        Ok((keys, (mut data, held))) => {
            // Keys of a keyset are listed in it, not as keysets of their own.
            data.extend(keys.into_iter().filter(|(rec, _)| !held.contains(&rec.id)).map(|(rec, obj)| keyset_object(&rec, obj)));
            json!({"Data": req.apply(data), "Response": {"Success": true}})
        }
        Err(e) => json!({"Data": [], "Response": core_failure(e)}),
    }
}

/// `GET SSH/KeysetDetails?KeysetId=…`: one keyset, its fields at the top level.
fn keyset_by_id(app: &SharedApp, who: &Principal, uri: &axum::http::Uri) -> Value {
    // TPP's parameter names ignore case, as its paths do.
    let query = axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(uri).map(|q| q.0).unwrap_or_default();
    let param = |name: &str| query.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    // `LoadKeyData=false` leaves the key lists empty; unset loads them (the device script's GET).
    let load = !param("LoadKeyData").is_some_and(|v| v.eq_ignore_ascii_case("false"));
    let Some(wanted) = param("KeysetId") else {
        return json!({"Response": failure(codes::KEYSET_NOT_FOUND, "KeysetId is required")});
    };
    if let Some(mut v) = rotation::keyset_get(app, who, &wanted) {
        if !load {
            v["PrivateKeys"] = json!([]);
            v["PublicKeys"] = json!([]);
        }
        return v;
    }
    match visible_keys(app, who, &DetailsRequest::default()) {
        Ok(keys) => match keys.into_iter().find(|(rec, _)| keyset_id(rec) == wanted) {
            Some((rec, obj)) => {
                let mut v = keyset_object(&rec, obj);
                v["Response"] = json!({"Success": true});
                v
            }
            None => json!({"Response": failure(codes::KEYSET_NOT_FOUND, format!("no keyset {wanted:?}"))}),
        },
        Err(e) => json!({"Response": core_failure(e)}),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ExportRequest {
    key_id: i64,
    format: Option<String>,
    passphrase: Option<String>,
}

fn keyport_id(app: &SharedApp, key_id: i64) -> Result<String, CoreError> {
    app.store.tpp_keyport_id(key_id)?.ok_or_else(|| CoreError::NotFound(format!("no SSH key with KeyId {key_id}")))
}

async fn export_private(app: &SharedApp, who: &Principal, body: &[u8]) -> Value {
    let req: ExportRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return json!({"KeyMaterial": null, "Response": failure(codes::BAD_KEY_FORMAT, format!("bad request: {e}"))}),
    };
    let result = async {
        let rec = ssh_key(app, who, req.key_id)?;
        let id = rec.id.clone();
        let name = match req.format.as_deref().filter(|f| !f.is_empty()) {
            Some(f) => f.to_string(),
            None => app.config.policy(&rec.namespace).ssh_export_format.unwrap_or_else(|| "OpenSSH".into()),
        };
        let format = ExportFormat::parse_tpp(&name)
            .ok_or_else(|| CoreError::invalid("invalid_format", format!("Format '{name}' is not one of OpenSSH, PuTTY, SSH2, Tectia")))?;
        let pass = req.passphrase.filter(|p| !p.is_empty()).map(|p| Zeroizing::new(p.into_bytes()));
        formats::export_as(app, who, &id, format, pass).await.map(|(_, text)| text)
    }
    .await;
    match result {
        Ok(text) => json!({"KeyMaterial": text.as_str(), "Response": {"Success": true}}),
        Err(e) => json!({"KeyMaterial": null, "Response": core_failure(e)}),
    }
}

async fn export_authorized(app: &SharedApp, who: &Principal, body: &[u8]) -> Value {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Req {
        key_id: i64,
    }
    let result = async {
        let req: Req = serde_json::from_slice(body).map_err(|e| CoreError::invalid("bad_request", format!("bad request: {e}")))?;
        let rec = ssh_key(app, who, req.key_id)?;
        crate::core::export::public_key(app, who, &rec.id).await
    }
    .await;
    match result {
        Ok((rec, pk)) => {
            json!({"KeyMaterial": format!("{}\n", public_key_line(&pk, &rec.name)), "FingerprintSHA256": fingerprint_sha256(&pk), "Response": {"Success": true}})
        }
        Err(e) => json!({"KeyMaterial": null, "Response": core_failure(e)}),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ImportBody {
    key_content_base64: String,
    #[serde(default)]
    passphrase: Option<String>,
    #[serde(default)]
    format: Option<String>,
}

async fn import_private(app: &SharedApp, who: &Principal, body: &[u8], cancel: &crate::core::kdf::Cancel) -> Result<Value, Response> {
    let fail = |code, msg: String| json!({"KeyId": null, "SshWebResponse": failure(code, msg)});
    let req: ImportBody = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return Ok(fail(codes::BAD_KEY_FORMAT, format!("bad request: {e}"))),
    };
    if let Some(f) = req.format.as_deref().filter(|f| !f.is_empty()) {
        if ExportFormat::parse_tpp(f).is_none() {
            return Ok(fail(codes::BAD_KEY_FORMAT, format!("Format '{f}' is not one of OpenSSH, PuTTY, SSH2, Tectia")));
        }
    }
    let data = match base64::engine::general_purpose::STANDARD.decode(req.key_content_base64.trim()) {
        Ok(d) => Zeroizing::new(d),
        Err(_) => return Ok(fail(codes::BAD_KEY_FORMAT, "KeyContentBase64 is not base64".into())),
    };
    let pass = req.passphrase.map(|p| Zeroizing::new(p.into_bytes()));
    // The passphrase's KDF runs in the bounded pool (`core::kdf`); a full pool is a 503.
    let key =
        match app.kdf.run(&who.name, cancel, move || crate::material::read_private_key(&data, pass.as_deref().map(|p| p.as_slice()))).await
        {
            Ok(k) => k,
            Err(e @ CoreError::Busy(_)) => {
                let body = Json(fail(0, e.to_string()));
                return Err((StatusCode::SERVICE_UNAVAILABLE, [(axum::http::header::RETRY_AFTER, "2")], body).into_response());
            }
            Err(CoreError::Invalid { message, .. }) => return Ok(fail(codes::BAD_KEY_FORMAT, message)),
            Err(e) => return Ok(fail(0, e.to_string())),
        };
    let req = ImportRequest {
        key,
        certificates: Vec::new(),
        name: None,
        namespace: app.config.tpp.namespace.clone(),
        exportable: None,
        token: None,
    };
    Ok(match crate::core::import::import_key(app, who, req, None).await {
        Ok(ImportOutcome::Imported(rec)) => match app.store.tpp_key_id(&rec.id) {
            Ok(id) => json!({"KeyId": id, "SshWebResponse": {"Success": true}}),
            Err(e) => fail(0, e.to_string()),
        },
        // Which key holds it is said only to a caller that may read that key.
        Ok(ImportOutcome::AlreadyPresent(rec)) if crate::core::keys::get(app, who, &rec.id).is_ok() => {
            let id = app.store.tpp_key_id(&rec.id).ok();
            json!({"KeyId": id, "SshWebResponse": failure(codes::KEY_ALREADY_EXISTS, format!("the key is already kept as {:?}", rec.name))})
        }
        Ok(ImportOutcome::AlreadyPresent(_)) => {
            json!({"KeyId": null, "SshWebResponse": failure(codes::KEY_ALREADY_EXISTS, "the key is already kept in this namespace")})
        }
        Err(e) => match core_failure(e) {
            f if f.get(UNAVAILABLE_MARK).is_some() => json!({"KeyId": null, "SshWebResponse": f}),
            f => fail(f["ErrorCode"].as_i64().unwrap_or(0), "import refused".to_string()),
        },
    })
}

// --- dispatch --------------------------------------------------------------------------------

/// Every `/vedauth/…` and `/vedsdk/…` request, matched on the lower-cased path.
pub async fn dispatch(app: SharedApp, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().trim_end_matches('/').to_ascii_lowercase();
    let m = &parts.method;
    // SSH calls: (path, scope privilege or None for the bare scope).
    let ssh_call = |p: &str| -> Option<Option<&'static str>> {
        match p {
            "/vedsdk/ssh/keysetdetails"
            | "/vedsdk/ssh/keydetails"
            | "/vedsdk/ssh/exportselfserviceprivatekey"
            | "/vedsdk/ssh/exportselfserviceauthorizedkey" => Some(None),
            "/vedsdk/ssh/importprivatekey" => Some(Some("discover")),
            p if rotation::owns(p) => Some(Some("manage")),
            _ => None,
        }
    };
    // Bearer calls are authenticated from the headers before their body is read (so an
    // unknown caller's body gets only limits.unauthenticated_body_secs).
    let ssh_caller = match ssh_call(&path).filter(|_| m == Method::POST) {
        Some(privilege) => match caller(&app, &parts, "ssh", privilege) {
            Ok(w) => {
                super::auth::authenticated(&parts);
                Some(w)
            }
            Err(r) => return r,
        },
        None => None,
    };
    let body = match super::body::read_limited(Request::from_parts(parts.clone(), body), app.config.limits.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    match (m, path.as_str()) {
        (&Method::POST, "/vedauth/authorize/oauth") => authorize_oauth(&app, super::auth::peer(&parts), &body).await,
        (&Method::POST, "/vedauth/authorize/token") => refresh_token(&app, &body),
        (&Method::GET, "/vedauth/authorize/verify") => verify(&app, &parts),
        (&Method::GET, "/vedauth/revoke/token") => revoke(&app, &parts),
        (&Method::GET, "/vedsdk/systemstatus/version") => match bearer(&app, &parts) {
            Ok(_) => Json(json!({"Version": app.config.tpp.version})).into_response(),
            Err(r) => r,
        },
        (&Method::GET, "/vedsdk/ssh/keysetdetails") => match caller(&app, &parts, "ssh", None) {
            Ok(who) => Json(keyset_by_id(&app, &who, &parts.uri)).into_response(),
            Err(r) => r,
        },
        (&Method::POST, p) if ssh_call(p).is_some() => {
            let who = ssh_caller.expect("authenticated above");
            let v = match p {
                "/vedsdk/ssh/keysetdetails" => keyset_details(&app, &who, &body),
                "/vedsdk/ssh/keydetails" => key_details(&app, &who, &body),
                "/vedsdk/ssh/exportselfserviceprivatekey" => export_private(&app, &who, &body).await,
                "/vedsdk/ssh/exportselfserviceauthorizedkey" => export_authorized(&app, &who, &body).await,
                p if rotation::owns(p) => rotation::dispatch(&app, &who, p, &body).await,
                _ => {
                    let ended = super::request::Context::of(&parts.extensions).map(|c| c.ended().clone()).unwrap_or_default();
                    match import_private(&app, &who, &body, &ended).await {
                        Ok(v) => v,
                        Err(busy) => return busy,
                    }
                }
            };
            ssh_response(v)
        }
        _ => (StatusCode::NOT_FOUND, Json(json!({"Error": format!("{} {} is not a WebSDK method keyport serves", m, parts.uri.path())})))
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        assert!(scope_allows("ssh:manage,discover;certificate:manage", "ssh", Some("discover")));
        assert!(scope_allows("SSH", "ssh", None));
        assert!(!scope_allows("ssh", "ssh", Some("discover")));
        assert!(!scope_allows("certificate:manage", "ssh", None));
        assert!(owns("/VedSdk/SSH/KeyDetails") && owns("/vedauth/authorize/oauth") && !owns("/keyport/v1/health"));
    }

    /// A token or store fault is 503 in TPP's SshWebResponse shape; a request error stays 200.
    #[tokio::test]
    async fn faults_are_503_in_the_ssh_web_response_shape() {
        let down = CoreError::Token(crate::token::TokenError::unavailable("soft", "C_GetTokenInfo: CKR_GENERAL_ERROR"));
        let mut r = ssh_response(json!({"KeyMaterial": null, "Response": core_failure(down)}));
        super::super::error::retry_after(&mut r);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.headers().contains_key(axum::http::header::RETRY_AFTER));
        let v: Value = serde_json::from_slice(&axum::body::to_bytes(r.into_body(), usize::MAX).await.unwrap()).unwrap();
        assert_eq!(v["Response"]["Success"], false);
        assert!(v["Response"]["ErrorMessage"].as_str().unwrap().contains("unavailable"), "{v}");
        assert!(v["Response"].get(UNAVAILABLE_MARK).is_none(), "the mark is internal: {v}");
        let r = ssh_response(json!({"KeyMaterial": null, "Response": core_failure(CoreError::Internal("worker panicked".into()))}));
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR, "keyport's own failure is a 500");
        let r = ssh_response(json!({"KeyMaterial": null, "Response": core_failure(CoreError::NotFound("no".into()))}));
        assert_eq!(r.status(), StatusCode::OK);
    }
}
