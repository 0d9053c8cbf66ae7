//! One access-log line per request (`target: keyport::access`): face, method, route template,
//! status (499 when the request ended before its answer: [`CUT_SHORT`]), duration, principal,
//! request id; the request id is answered as `x-request-id`
//! (a caller's own id is kept when it is sane: 1-128 of `A-Z a-z 0-9 . _ : -`; else keyport
//! makes one). The same middleware counts the request for the metrics (`core::telemetry`) and
//! records refusals (401, 403) and failures (5xx) in the audit log, with the answer's message.
//!
//! The route is the router's template (`/keyport/v1/keys/{id}`), never the raw path, so a
//! caller's string never reaches a metric label; in the log every caller-influenced value goes
//! through `?` (Debug, escaped).
//!
//! [`answer`] wraps the whole router once, called straight from the listener's per-request
//! future: as `Router::layer`s, each outer layer wrapped every route and was cloned and boxed
//! for every request (`GET keys/{id}`: BENCHMARKS.md, 2026-12-04, third session).

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::request::Context;
use crate::core::authz::Peer;
use crate::core::SharedApp;
use crate::store::AuditEntry;

pub const REQUEST_ID: &str = "x-request-id";

/// A caller's id is kept only if it is short and plain (then it is its header value as
/// received, not a copy).
fn sane_id(v: &HeaderValue) -> Option<HeaderValue> {
    let s = v.as_bytes();
    let ok = (1..=128).contains(&s.len()) && s.iter().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(b));
    ok.then(|| v.clone())
}

/// The request's id: the caller's, when sane, else a new one. Made by the listener with the
/// request's context, so an answer the listener gives itself (a time-out) carries it too.
pub fn request_id(headers: &axum::http::HeaderMap) -> HeaderValue {
    headers.get(REQUEST_ID).and_then(sane_id).unwrap_or_else(new_id)
}

fn new_id() -> HeaderValue {
    use rand::RngCore;
    let mut b = [0u8; 12];
    // The thread's CSPRNG (seeded from the OS): no system call per request.
    rand::thread_rng().fill_bytes(&mut b);
    HeaderValue::from_maybe_shared(axum::body::Bytes::from(hex::encode(b))).expect("hex is a valid header value")
}

/// Which face a route (or, for unmatched requests, a path) belongs to.
pub fn face(route: &str) -> &'static str {
    let starts = |x: &str| starts_ignoring_case(route, x);
    if starts("/keyport/") {
        "native"
    } else if starts("/v1/edge") || starts("/v1/useraccounts") || starts("/outagedetection/") {
        "tlspc"
    } else if starts("/v3/") {
        "kps"
    } else if starts("/apiops/") {
        "apiops"
    } else if starts("/iot/") {
        "certimport"
    } else if starts("/vedsdk") || starts("/vedauth") {
        "tpp"
    } else if route.eq_ignore_ascii_case("/metrics") {
        "metrics"
    } else {
        "none"
    }
}

fn starts_ignoring_case(s: &str, prefix: &str) -> bool {
    s.as_bytes().get(..prefix.len()).is_some_and(|h| h.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// The label of a request the router matched no template for (the TPP face dispatches its
/// own paths): a fixed string, never the caller's path.
fn unmatched_route(path: &str) -> &'static str {
    if starts_ignoring_case(path, "/vedsdk/") {
        "/vedsdk/*"
    } else if starts_ignoring_case(path, "/vedauth/") {
        "/vedauth/*"
    } else {
        "unmatched"
    }
}

/// A `route_layer` that records the matched route template for [`answer`]. A plain tower
/// service, not `middleware::from_fn`: it wraps every route, and this way costs no boxed
/// future or service clone per request.
#[derive(Clone, Copy)]
pub struct NoteRoute;

impl<S> tower::Layer<S> for NoteRoute {
    type Service = NotingRoute<S>;
    fn layer(&self, inner: S) -> NotingRoute<S> {
        NotingRoute(inner)
    }
}

#[derive(Clone)]
pub struct NotingRoute<S>(S);

impl<S, B> tower::Service<axum::http::Request<B>> for NotingRoute<S>
where
    S: tower::Service<axum::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> S::Future {
        if let (Some(context), Some(m)) = (Context::of(req.extensions()), req.extensions().get::<MatchedPath>()) {
            context.note_route(interned(m.as_str()));
        }
        self.0.call(req)
    }
}

/// The route template as a `&'static str`, for log fields and metric labels without an
/// allocation per request. Each distinct template is leaked once; templates are the router's
/// own strings (a few dozen), never a caller's path, so this is bounded.
fn interned(template: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{OnceLock, RwLock};
    static SEEN: OnceLock<RwLock<HashSet<&'static str>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    if let Some(s) = seen.read().expect("poisoned").get(template) {
        return s;
    }
    let mut w = seen.write().expect("poisoned");
    match w.get(template) {
        Some(s) => s,
        None => {
            let s: &'static str = Box::leak(template.to_owned().into_boxed_str());
            w.insert(s);
            s
        }
    }
}

/// Audit rows for refusals and failures per second, at most; past it they are counted and
/// logged once a second instead, so a flood of bad requests cannot fill the disk.
const DENIAL_AUDITS_PER_SEC: u64 = 100;
static DENIAL_WINDOW: AtomicU64 = AtomicU64::new(0);
static DENIALS_IN_WINDOW: AtomicU64 = AtomicU64::new(0);

fn denial_audit_allowed() -> bool {
    let sec = crate::clock::Timestamp::now().unix().max(0) as u64;
    let prev = DENIAL_WINDOW.swap(sec, Ordering::AcqRel);
    if prev != sec {
        let dropped = DENIALS_IN_WINDOW.swap(0, Ordering::AcqRel).saturating_sub(DENIAL_AUDITS_PER_SEC);
        if dropped > 0 {
            tracing::warn!(dropped, "audit: refusals past {DENIAL_AUDITS_PER_SEC}/s were not recorded one by one");
        }
    }
    DENIALS_IN_WINDOW.fetch_add(1, Ordering::AcqRel) < DENIAL_AUDITS_PER_SEC
}

fn peer_text(p: Option<&Peer>) -> String {
    match p {
        Some(Peer::Unix { uid, gid, pid }) => format!("uid {uid} gid {gid} pid {pid}"),
        Some(Peer::Tcp { addr }) => format!("tcp {addr}"),
        None => "unknown peer".into(),
    }
}

/// The answer's message, from any face's error shape (bounded; the body is put back).
async fn message_of(resp: Response) -> (Response, Option<String>) {
    const LIMIT: usize = 16 * 1024;
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, LIMIT).await else {
        return (Response::from_parts(parts, axum::body::Body::empty()), None);
    };
    let msg = serde_json::from_slice::<serde_json::Value>(&bytes).ok().and_then(|v| {
        [
            &v["error"]["message"],
            &v["errors"][0]["message"],
            &v["error_msg"],
            &v["resultMessage"],
            &v["error_description"],
            &v["Error"],
            &v["message"],
        ]
        .into_iter()
        .find_map(|m| m.as_str().map(String::from))
    });
    let msg = msg.or_else(|| (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned()));
    (Response::from_parts(parts, axum::body::Body::from(bytes)), msg)
}

/// The status in the access log and metrics of a request whose future was dropped before its
/// answer was ready: a read runs in its connection's task (`api::listen`), so a client that hangs
/// up ends it there (nginx's "client closed request"). A time-out is logged as the 503 the
/// listener answered, a panic as its 500.
pub const CUT_SHORT: u16 = 499;

/// A request's access-log line and metrics, written once: when the answer is ready, or, should
/// the request's future be dropped first, on drop with [`CUT_SHORT`].
struct Line {
    app: SharedApp,
    method: Method,
    uri: axum::http::Uri,
    id: HeaderValue,
    start: Instant,
    context: Option<Context>,
    written: bool,
}

impl Line {
    /// Writes the line; returns the face, the route template and the principal.
    fn write(&mut self, status: u16) -> (&'static str, &'static str, Option<std::sync::Arc<crate::core::authz::Principal>>) {
        self.written = true;
        let path = self.uri.path();
        let (route, principal) = self.context.as_ref().map(Context::noted).unwrap_or_default();
        // What the client got: the listener's own answer when it gave one (a time-out's 503).
        let status = self.context.as_ref().and_then(Context::listener_answer).unwrap_or(status);
        let route = route.unwrap_or_else(|| unmatched_route(path));
        let face = face(if route == "unmatched" { path } else { route });
        let elapsed = self.start.elapsed();
        self.app.telemetry.request(face, self.method.as_str(), route, status, elapsed.as_secs_f64());
        tracing::info!(
            target: "keyport::access",
            face,
            method = ?self.method.as_str(),
            route = ?route,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            principal = ?principal.as_ref().map_or("-", |p| p.name.as_str()),
            request_id = ?self.id.to_str().unwrap_or_default(),
            "request"
        );
        (face, route, principal)
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if !self.written {
            // A handler's panic unwinds through here; the listener answers it 500.
            self.write(if std::thread::panicking() { 500 } else { CUT_SHORT });
        }
    }
}

/// Answers `req` with `router` (every face's routes, or the metrics listener's): request id,
/// error shapes, `Retry-After`, access line, metrics, and the audit of refusals and failures.
pub async fn answer(app: SharedApp, router: &axum::Router, req: Request) -> Response {
    let context = Context::of(req.extensions()).cloned();
    let id = context.as_ref().map_or_else(|| request_id(req.headers()), |c| c.id().clone());
    let peer = context.as_ref().map(Context::peer);
    let mut line = Line { app, method: req.method().clone(), uri: req.uri().clone(), id, start: Instant::now(), context, written: false };
    let resp = match tower::Service::call(&mut router.clone(), req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    // Router 404/405s and extractor rejections in each face's JSON error shape, and every
    // face's 503 says when to come back.
    let mut resp = super::faces::shape(&line.method, line.uri.path(), resp).await;
    super::error::retry_after(&mut resp);
    resp.headers_mut().insert(REQUEST_ID, line.id.clone());
    let status = resp.status();
    let (face, route, principal) = line.write(status.as_u16());
    let refused = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
    if (refused || status.is_server_error()) && line.method != Method::OPTIONS && denial_audit_allowed() {
        let (r, message) = message_of(resp).await;
        resp = r;
        let id = line.id.to_str().unwrap_or_default();
        let entry = AuditEntry {
            at: crate::store::records::now(),
            principal: principal.map_or_else(|| "-".into(), |p| p.name.clone()),
            action: format!("{face}.request"),
            namespace: None,
            key_id: None,
            outcome: if refused { "denied".into() } else { "failed".into() },
            detail: Some(format!(
                "{} {route} → {}; {}; request {id}{}",
                line.method.as_str(),
                status.as_u16(),
                peer_text(peer.as_ref()),
                message.map(|m| format!(": {m}")).unwrap_or_default()
            )),
        };
        let a = line.app.clone();
        let stored = tokio::task::spawn_blocking(move || crate::core::audit::record_unsynced(&a, &entry)).await;
        if !matches!(stored, Ok(Ok(()))) {
            tracing::error!(request_id = ?line.id.to_str().unwrap_or_default(), "audit: a refusal could not be recorded");
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_and_faces() {
        assert_eq!(sane_id(&HeaderValue::from_static("abc-123_x.y:z")), Some(HeaderValue::from_static("abc-123_x.y:z")));
        assert_eq!(sane_id(&HeaderValue::from_static("has space")), None);
        assert_eq!(sane_id(&HeaderValue::from_static("")), None);
        assert_eq!(sane_id(&HeaderValue::from_str(&"a".repeat(129)).unwrap()), None);
        assert_eq!(new_id().len(), 24);
        assert_eq!(face("/keyport/v1/keys/{id}"), "native");
        assert_eq!(face("/v3/{project_id}/keypairs"), "kps");
        assert_eq!(face("/VEDsdk/ssh/keydetails"), "tpp");
        assert_eq!(unmatched_route("/vedsdk/ssh/anything\n"), "/vedsdk/*");
        assert_eq!(unmatched_route("/evil\"label"), "unmatched");
    }
}
