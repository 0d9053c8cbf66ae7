//! How keyport logs in to the vault (exactly one per config, docs/vault.md §4):
//!
//! - `token`: a static token read from its source (file, env, credential); re-read when the
//!   vault says it is dead. Never renewed by keyport: whoever writes the file owns its life.
//! - `approle`: `POST auth/<mount>/login {role_id, secret_id}`, the secret_id re-read from its
//!   source at every login (a rotated file is picked up).
//! - `cert`: `POST auth/<mount>/login {name}` over a TLS connection that presents the
//!   certificate of keyport's vault client key (in the token, `client_cert`). The renewal goes
//!   over the same connection: the vault wants the same certificate there.
//!
//! A login token is kept in memory only (zeroizing, and so are the login's request and answer
//! bodies: `Http::request_raw`). Before a request, past 2/3 of its lease it is renewed
//! (`auth/token/renew-self`); a refused renewal, or one the vault capped (max TTL reached: a
//! shorter lease than asked, or a warning), means a new login, after which the old token is
//! revoked (best effort). A renewal that finds the vault unreachable or unavailable keeps the
//! token (it still has lease) and is tried again on the next request, until `step` says the
//! lease is over. A dead token (403, and 403 on `lookup-self`) is forgotten and the next request
//! logs in again. A refused login stops the pass with a message that names the setting to fix;
//! it is retried with backoff. Leases the vault gives are capped at [`MAX_LEASE`].

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::client_cert::ClientCert;
use super::http::{Http, RawResponse};
use super::openbao::{error_text, unavailable};
use super::remote::RemoteError;
use crate::config::{PinSource, SyncConfig};

enum Method {
    Token { source: PinSource },
    AppRole { mount: String, role_id: String, secret_id: PinSource },
    Cert { mount: String, name: Option<String>, certificate: PathBuf, client: Arc<ClientCert> },
}

/// A token the vault gave keyport (or the configured static one).
struct Session {
    token: Zeroizing<String>,
    /// When the lease below started (login or last renewal).
    since: Instant,
    /// Zero: no expiry known (a static token, a root token).
    lease: Duration,
    renewable: bool,
    /// The lease of the first login (the role's token_ttl): what a renewal asks for.
    ttl: Duration,
}

/// What to do with the current token before a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Use,
    Renew,
    Login,
}

/// The longest lease believed: a vault's bigger number is treated as this (10 years).
pub const MAX_LEASE: Duration = Duration::from_secs(10 * 365 * 86_400);

/// A lease the vault sent, in seconds, capped at [`MAX_LEASE`].
pub fn lease(secs: u64) -> Duration {
    Duration::from_secs(secs.min(MAX_LEASE.as_secs()))
}

/// Pure: the step for a token `elapsed` into a `lease` (zero: none).
pub fn step(elapsed: Duration, lease: Duration, renewable: bool) -> Step {
    if lease.is_zero() {
        Step::Use
    } else if elapsed >= lease.saturating_sub(Duration::from_secs(1)) {
        // Expired (or about to, within a request's time): no renewal can save it.
        Step::Login
    } else if elapsed.saturating_mul(3) >= lease.saturating_mul(2) {
        if renewable {
            Step::Renew
        } else {
            Step::Login
        }
    } else {
        Step::Use
    }
}

/// The login as `GET /keyport/v1/sync` shows it. Never the token or the secret.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuthStatus {
    /// `token`, `approle` or `cert`.
    pub method: &'static str,
    /// The auth mount (`approle`, `cert`); none for a static token.
    pub mount: Option<String>,
    pub logged_in: bool,
    /// When the current token's lease ends (none: no expiry, or unknown).
    pub token_expires_at: Option<String>,
    pub renewable: bool,
    pub last_login_at: Option<String>,
    pub last_renewal_at: Option<String>,
    pub logins: u64,
    pub renewals: u64,
    /// Why the last login or renewal failed, until one succeeds.
    pub last_error: Option<String>,
}

pub struct Auth {
    method: Method,
    session: tokio::sync::Mutex<Option<Session>>,
    status: Mutex<AuthStatus>,
}

/// Now + `offset` for status, in whole seconds; never panics (`outbox::at` caps the offset).
fn at(offset: Duration) -> String {
    super::outbox::at(offset).to_seconds_string()
}

/// A token-bearing answer (`login`, `renew-self`), deserialized straight from zeroizing bytes.
#[derive(Deserialize)]
struct AuthReply {
    auth: Option<LoginAuth>,
    #[serde(default)]
    warnings: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct LoginAuth {
    #[serde(deserialize_with = "zeroizing_string", default)]
    client_token: Zeroizing<String>,
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    renewable: bool,
}

/// `lookup-self`'s answer: only the TTL is read (its `data.id` is the token).
#[derive(Deserialize)]
struct LookupReply {
    data: LookupData,
}

#[derive(Deserialize)]
struct LookupData {
    #[serde(default)]
    ttl: u64,
}

fn zeroizing_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Zeroizing<String>, D::Error> {
    String::deserialize(d).map(Zeroizing::new)
}

/// JSON for a request body, written into zeroizing memory reserved up front (so that growing
/// it leaves no copy of a secret behind).
fn json_body<T: Serialize>(value: &T, room: usize) -> Zeroizing<Vec<u8>> {
    // Escaping makes a byte at most 6 (`\u00XX`).
    let mut buf = Zeroizing::new(Vec::with_capacity(64 + room * 6));
    serde_json::to_writer(&mut *buf, value).expect("a struct of strings serializes");
    buf
}

/// What a renewal came to.
enum Renewal {
    Renewed,
    /// The vault could not be asked (unreachable, sealed, rate-limited): keep the token.
    Later,
    /// Refused or capped: log in again.
    Login,
}

impl Auth {
    /// From a checked config; `client` is the https client's certificate for `cert` login.
    pub fn new(cfg: &SyncConfig, client: Option<Arc<ClientCert>>) -> Result<Auth, String> {
        let (method, name, mount) = match (&cfg.token, &cfg.approle, &cfg.cert) {
            (Some(t), None, None) => (Method::Token { source: t.clone() }, "token", None),
            (None, Some(a), None) => (
                Method::AppRole { mount: a.mount.clone(), role_id: a.role_id.clone(), secret_id: a.secret_id.clone() },
                "approle",
                Some(a.mount.clone()),
            ),
            (None, None, Some(c)) => (
                Method::Cert {
                    mount: c.mount.clone(),
                    name: c.name.clone(),
                    certificate: c.certificate.clone(),
                    client: client.ok_or("certificate login needs the https client's certificate")?,
                },
                "cert",
                Some(c.mount.clone()),
            ),
            _ => return Err("set exactly one of sync.token, sync.approle, sync.cert".into()),
        };
        Ok(Auth {
            method,
            session: tokio::sync::Mutex::new(None),
            status: Mutex::new(AuthStatus { method: name, mount, ..Default::default() }),
        })
    }

    pub fn status(&self) -> AuthStatus {
        self.status.lock().expect("poisoned").clone()
    }

    /// The token for the next request: logs in, or renews past 2/3 of the lease, as needed.
    pub async fn token(&self, http: &Http) -> Result<Zeroizing<String>, RemoteError> {
        let mut session = self.session.lock().await;
        let next = match session.as_ref() {
            None => Step::Login,
            Some(s) => step(s.since.elapsed(), s.lease, s.renewable),
        };
        // The token a new login replaces: revoked once the new one is there.
        let mut replaced = None;
        match next {
            Step::Use => {}
            Step::Renew => {
                let s = session.as_mut().expect("renew needs a session");
                match self.renew(http, s).await {
                    Renewal::Renewed | Renewal::Later => {}
                    Renewal::Login => replaced = session.take(),
                }
            }
            Step::Login => replaced = session.take(),
        }
        if session.is_none() {
            let s = match self.login(http).await {
                Ok(s) => s,
                Err(e) => {
                    let mut st = self.status.lock().expect("poisoned");
                    st.logged_in = false;
                    st.token_expires_at = None;
                    st.last_error = Some(e.message().to_string());
                    return Err(e);
                }
            };
            *session = Some(s);
            if let Some(old) = replaced {
                self.revoke(http, &old).await;
            }
        }
        Ok(session.as_ref().expect("set above").token.clone())
    }

    /// The vault says `token` is dead: the next request logs in (or re-reads the file). Only
    /// when the session still holds that token: a concurrent request may have logged in already.
    pub async fn forget(&self, token: &str) {
        let mut session = self.session.lock().await;
        if session.as_ref().is_some_and(|s| s.token.as_str() == token) {
            *session = None;
            self.status.lock().expect("poisoned").logged_in = false;
        }
    }

    /// `revoke-self` with a token a new login replaced (best effort: it expires anyway). A
    /// static token is never revoked: whoever wrote it owns it.
    async fn revoke(&self, http: &Http, old: &Session) {
        if matches!(self.method, Method::Token { .. }) {
            return;
        }
        match http.request_raw("POST", "/v1/auth/token/revoke-self", Some(&old.token), None).await {
            Ok(r) if matches!(r.status, 200 | 204) => tracing::debug!("the replaced vault token is revoked"),
            Ok(r) => {
                tracing::info!(status = r.status, error = %error_text(&r.json().body), "cannot revoke the replaced vault token; it expires with its lease")
            }
            Err(e) => tracing::info!(error = %e.0, "cannot revoke the replaced vault token; it expires with its lease"),
        }
    }

    /// What to tell the operator when even a fresh token is rejected.
    pub fn rejected(&self) -> String {
        match &self.method {
            Method::Token { .. } => {
                "the vault rejects the token (403 on auth/token/lookup-self); put a valid token in sync.token's source".into()
            }
            Method::AppRole { mount, .. } => format!(
                "the vault rejects the token from the AppRole login at auth/{mount} (403 on auth/token/lookup-self); check the role's token policies"
            ),
            Method::Cert { mount, .. } => format!(
                "the vault rejects the token from the certificate login at auth/{mount} (403 on auth/token/lookup-self); check the cert role's token policies"
            ),
        }
    }

    async fn login(&self, http: &Http) -> Result<Session, RemoteError> {
        let down = |m: String| RemoteError::Retry { message: m, after: None, stop_pass: true };
        let (path, body, setting) = match &self.method {
            Method::Token { source } => {
                let token = crate::token::pin::read_secret(source, "vault token", "sync.token", "put the vault token in it")
                    .map_err(|e| down(format!("sync.token: {e}")))?;
                let session = self.static_session(http, token).await;
                return Ok(session);
            }
            Method::AppRole { mount, role_id, secret_id } => {
                let secret = crate::token::pin::read_secret(
                    secret_id,
                    "AppRole secret_id",
                    "sync.approle.secret_id",
                    "put the role's secret_id in it",
                )
                .map_err(|e| down(format!("sync.approle.secret_id: {e}")))?;
                #[derive(Serialize)]
                struct Body<'a> {
                    role_id: &'a str,
                    secret_id: &'a str,
                }
                let body = json_body(&Body { role_id, secret_id: secret.as_str() }, role_id.len() + secret.len());
                (format!("/v1/auth/{mount}/login"), body, "sync.approle.secret_id (or sync.approle.role_id)")
            }
            Method::Cert { mount, name, certificate, client } => {
                if client.load(certificate, "sync.cert.certificate").await.map_err(down)? {
                    // A new certificate is presented only on a new connection.
                    http.reconnect().await;
                }
                #[derive(Serialize)]
                struct Body<'a> {
                    #[serde(skip_serializing_if = "Option::is_none")]
                    name: Option<&'a str>,
                }
                let body = json_body(&Body { name: name.as_deref() }, name.as_ref().map_or(0, |n| n.len()));
                (format!("/v1/auth/{mount}/login"), body, "sync.cert.certificate (or sync.cert.name)")
            }
        };
        let raw = http.request_raw("POST", &path, None, Some(body)).await.map_err(|u| down(u.0))?;
        let method = self.status.lock().expect("poisoned").method;
        let at_path = path.trim_start_matches("/v1/");
        if raw.status != 200 {
            return Err(self.login_refused(&raw, method, at_path, setting));
        }
        let reply: AuthReply =
            serde_json::from_slice(&raw.body).map_err(|e| down(format!("the vault's {method} login answer is not a login reply: {e}")))?;
        let auth = reply.auth.filter(|a| !a.client_token.is_empty());
        let auth = auth.ok_or_else(|| down(format!("the vault's {method} login answer has no auth.client_token")))?;
        let lease = lease(auth.lease_duration);
        let renewable = auth.renewable;
        tracing::info!(method = %method, lease_secs = lease.as_secs(), renewable, "vault login");
        {
            let mut st = self.status.lock().expect("poisoned");
            st.logged_in = true;
            st.renewable = renewable;
            st.token_expires_at = (!lease.is_zero()).then(|| at(lease));
            st.last_login_at = Some(at(Duration::ZERO));
            st.logins += 1;
            st.last_error = None;
        }
        Ok(Session { token: auth.client_token, since: Instant::now(), lease, renewable, ttl: lease })
    }

    /// The error for a login the vault did not answer with 200.
    fn login_refused(&self, raw: &RawResponse, method: &str, at_path: &str, setting: &str) -> RemoteError {
        let down = |m: String| RemoteError::Retry { message: m, after: None, stop_pass: true };
        let r = raw.json();
        if let Some(e) = unavailable(&r) {
            return e;
        }
        match r.status {
            // OpenBao answers a login at a path where no auth method is mounted with 403.
            403 | 404 => down(format!(
                "the vault denied the {method} login at {at_path} ({}: {}); is {method} auth enabled there? check sync.{method}.mount",
                r.status,
                error_text(&r.body)
            )),
            400 | 401 => {
                down(format!("the vault refused the {method} login at {at_path} ({}: {}); fix {setting}", r.status, error_text(&r.body)))
            }
            s => down(format!("the vault failed the {method} login at {at_path} ({s}: {})", error_text(&r.body))),
        }
    }

    /// A static token: its expiry from `lookup-self` when the vault tells (best effort). A
    /// token `lookup-self` rejects (403) is still handed out (the request's own 403 then says
    /// so), but status does not call it logged in.
    async fn static_session(&self, http: &Http, token: Zeroizing<String>) -> Session {
        let mut lease = Duration::ZERO;
        let probe = http.request_raw("GET", "/v1/auth/token/lookup-self", Some(&token), None).await;
        let status = probe.as_ref().ok().map(|r| r.status);
        if let Some(r) = probe.as_ref().ok().filter(|r| r.status == 200) {
            lease = serde_json::from_slice::<LookupReply>(&r.body).map(|l| self::lease(l.data.ttl)).unwrap_or_default();
        }
        let mut st = self.status.lock().expect("poisoned");
        if status == Some(403) {
            st.logged_in = false;
            st.token_expires_at = None;
            st.last_error = Some(self.rejected());
            return Session { token, since: Instant::now(), lease: Duration::ZERO, renewable: false, ttl: Duration::ZERO };
        }
        st.logged_in = true;
        st.token_expires_at = (!lease.is_zero()).then(|| at(lease));
        st.last_login_at = Some(at(Duration::ZERO));
        st.logins += 1;
        if status == Some(200) {
            st.last_error = None;
        }
        // Never renewed or replaced by keyport: a zero lease keeps `step` at `Use`.
        Session { token, since: Instant::now(), lease: Duration::ZERO, renewable: false, ttl: Duration::ZERO }
    }

    /// `renew-self` for the role's TTL.
    async fn renew(&self, http: &Http, s: &mut Session) -> Renewal {
        #[derive(Serialize)]
        struct Body {
            increment: String,
        }
        let body = json_body(&Body { increment: format!("{}s", s.ttl.as_secs()) }, 24);
        let raw = match http.request_raw("POST", "/v1/auth/token/renew-self", Some(&s.token), Some(body)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e.0, "vault token renewal failed; keeping the token while its lease lasts");
                self.status.lock().expect("poisoned").last_error = Some(format!("token renewal: {}", e.0));
                return Renewal::Later;
            }
        };
        if raw.status != 200 {
            let r = raw.json();
            if let Some(e) = unavailable(&r) {
                tracing::warn!(error = %e.message(), "vault token renewal failed; keeping the token while its lease lasts");
                self.status.lock().expect("poisoned").last_error = Some(format!("token renewal: {}", e.message()));
                return Renewal::Later;
            }
            tracing::info!(status = r.status, error = %error_text(&r.body), "vault token renewal refused; logging in again");
            return Renewal::Login;
        }
        let Ok(reply) = serde_json::from_slice::<AuthReply>(&raw.body) else {
            tracing::info!("the vault's renewal answer is not a login reply; logging in again");
            return Renewal::Login;
        };
        let warned = reply.warnings.as_ref().is_some_and(|w| !w.is_empty());
        let Some(auth) = reply.auth else {
            tracing::info!("the vault's renewal answer has no auth; logging in again");
            return Renewal::Login;
        };
        let lease = lease(auth.lease_duration);
        if lease < s.ttl || warned {
            tracing::info!(lease_secs = lease.as_secs(), "vault token reached its max TTL; logging in again");
            return Renewal::Login;
        }
        tracing::info!(lease_secs = lease.as_secs(), "vault token renewed");
        s.since = Instant::now();
        s.lease = lease;
        s.renewable = auth.renewable;
        let mut st = self.status.lock().expect("poisoned");
        st.token_expires_at = Some(at(lease));
        st.renewable = s.renewable;
        st.last_renewal_at = Some(at(Duration::ZERO));
        st.renewals += 1;
        st.last_error = None;
        Renewal::Renewed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renew_past_two_thirds_login_at_expiry() {
        let s = Duration::from_secs;
        assert_eq!(step(s(100), Duration::ZERO, true), Step::Use, "no lease: a static or root token");
        assert_eq!(step(s(10), s(30), true), Step::Use);
        assert_eq!(step(s(20), s(30), true), Step::Renew);
        assert_eq!(step(s(20), s(30), false), Step::Login, "not renewable: a new login instead");
        assert_eq!(step(s(29), s(30), true), Step::Login, "about to expire");
        assert_eq!(step(s(40), s(30), true), Step::Login);
        assert_eq!(step(s(1), s(3), true), Step::Use);
        assert_eq!(step(s(2), s(3), true), Step::Login, "a 3 s lease leaves no time to renew at 2 s");
    }

    #[test]
    fn a_huge_lease_is_capped_and_never_panics() {
        let l = lease(u64::MAX);
        assert_eq!(l, MAX_LEASE);
        assert_eq!(step(Duration::from_secs(5), l, true), Step::Use);
        assert_eq!(step(Duration::MAX, Duration::MAX, true), Step::Login);
        assert_eq!(step(Duration::MAX / 2, Duration::MAX, true), Step::Renew, "saturating, not overflowing");
        assert!(!at(l).is_empty() && !at(Duration::MAX).is_empty());
    }

    fn auth() -> Auth {
        Auth {
            method: Method::Token { source: PinSource::Env("X".into()) },
            session: tokio::sync::Mutex::new(None),
            status: Mutex::new(AuthStatus::default()),
        }
    }

    fn session(token: &str) -> Session {
        Session { token: Zeroizing::new(token.into()), since: Instant::now(), lease: Duration::ZERO, renewable: false, ttl: Duration::ZERO }
    }

    #[tokio::test]
    async fn forget_drops_only_the_token_it_names() {
        let a = auth();
        *a.session.lock().await = Some(session("s.new"));
        a.forget("s.old").await;
        assert!(a.session.lock().await.is_some(), "a fresh token another request got stays");
        a.forget("s.new").await;
        assert!(a.session.lock().await.is_none());
    }

    #[test]
    fn login_replies_deserialize_into_zeroizing_fields() {
        let r: AuthReply = serde_json::from_slice(
            br#"{"auth":{"client_token":"s.abc","lease_duration":18446744073709551615,"renewable":true,"policies":["p"]},"warnings":null}"#,
        )
        .unwrap();
        let a = r.auth.unwrap();
        assert_eq!((a.client_token.as_str(), a.renewable, lease(a.lease_duration)), ("s.abc", true, MAX_LEASE));
        let body = json_body(&serde_json::json!({"secret_id": "a\"b"}), 4);
        assert_eq!(&body[..], br#"{"secret_id":"a\"b"}"#);
    }
}
