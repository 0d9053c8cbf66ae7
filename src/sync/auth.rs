//! How keyport logs in to the vault (exactly one per config, research/vault.md §4):
//!
//! - `token`: a static token read from its source (file, env, credential); re-read when the
//!   vault says it is dead. Never renewed by keyport: whoever writes the file owns its life.
//! - `approle`: `POST auth/<mount>/login {role_id, secret_id}`, the secret_id re-read from its
//!   source at every login (a rotated file is picked up).
//! - `cert`: `POST auth/<mount>/login {name}` over a TLS connection that presents the
//!   certificate of keyport's vault client key (in the token, `client_cert`). The renewal goes
//!   over the same connection: the vault wants the same certificate there.
//!
//! A login token is kept in memory only. Before a request, past 2/3 of its lease it is renewed
//! (`auth/token/renew-self`); a failed renewal, or one the vault capped (max TTL reached: a
//! shorter lease than asked, or a warning), means a new login. A dead token (403, and 403 on
//! `lookup-self`) is forgotten and the next request logs in again. A refused login stops the
//! pass with a message that names the setting to fix; it is retried with backoff.

use serde::Serialize;
use serde_json::json;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::client_cert::ClientCert;
use super::http::Http;
use super::openbao::{error_text, unavailable, VaultError};
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

/// Pure: the step for a token `elapsed` into a `lease` (zero: none).
pub fn step(elapsed: Duration, lease: Duration, renewable: bool) -> Step {
    if lease.is_zero() {
        Step::Use
    } else if elapsed >= lease.saturating_sub(Duration::from_secs(1)) {
        // Expired (or about to, within a request's time): no renewal can save it.
        Step::Login
    } else if elapsed * 3 >= lease * 2 {
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

fn at(offset: Duration) -> String {
    let t = time::OffsetDateTime::now_utc() + offset;
    t.format(&time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"))
        .expect("formatting a UTC time cannot fail")
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
    pub async fn token(&self, http: &Http) -> Result<Zeroizing<String>, VaultError> {
        let mut session = self.session.lock().await;
        let next = match session.as_ref() {
            None => Step::Login,
            Some(s) => step(s.since.elapsed(), s.lease, s.renewable),
        };
        match next {
            Step::Use => {}
            Step::Renew => {
                let s = session.as_mut().expect("renew needs a session");
                if !self.renew(http, s).await {
                    *session = None;
                }
            }
            Step::Login => *session = None,
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
        }
        Ok(session.as_ref().expect("set above").token.clone())
    }

    /// The vault says the token is dead: the next request logs in (or re-reads the file).
    pub async fn forget(&self) {
        *self.session.lock().await = None;
        self.status.lock().expect("poisoned").logged_in = false;
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

    async fn login(&self, http: &Http) -> Result<Session, VaultError> {
        let down = |m: String| VaultError::Retry { message: m, after: None, stop_pass: true };
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
                let body = json!({"role_id": role_id, "secret_id": secret.as_str()});
                (format!("/v1/auth/{mount}/login"), body, "sync.approle.secret_id (or sync.approle.role_id)")
            }
            Method::Cert { mount, name, certificate, client } => {
                if client.load(certificate, "sync.cert.certificate").await.map_err(down)? {
                    // A new certificate is presented only on a new connection.
                    http.reconnect().await;
                }
                let body = match name {
                    Some(n) => json!({"name": n}),
                    None => json!({}),
                };
                (format!("/v1/auth/{mount}/login"), body, "sync.cert.certificate (or sync.cert.name)")
            }
        };
        let r = http.request("POST", &path, None, Some(&body)).await.map_err(|u| down(u.0))?;
        if let Some(e) = unavailable(&r) {
            return Err(e);
        }
        let method = self.status.lock().expect("poisoned").method;
        let at_path = path.trim_start_matches("/v1/");
        match r.status {
            200 => {}
            // OpenBao answers a login at a path where no auth method is mounted with 403.
            403 | 404 => {
                return Err(down(format!(
                    "the vault denied the {method} login at {at_path} ({}: {}); is {method} auth enabled there? check sync.{method}.mount",
                    r.status,
                    error_text(&r.body)
                )))
            }
            400 | 401 => {
                return Err(down(format!(
                    "the vault refused the {method} login at {at_path} ({}: {}); fix {setting}",
                    r.status,
                    error_text(&r.body)
                )))
            }
            s => return Err(down(format!("the vault failed the {method} login at {at_path} ({s}: {})", error_text(&r.body)))),
        }
        let auth = &r.body["auth"];
        let token = Zeroizing::new(
            auth["client_token"]
                .as_str()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| down(format!("the vault's {method} login answer has no auth.client_token")))?
                .to_string(),
        );
        let lease = Duration::from_secs(auth["lease_duration"].as_u64().unwrap_or(0));
        let renewable = auth["renewable"].as_bool().unwrap_or(false);
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
        Ok(Session { token, since: Instant::now(), lease, renewable, ttl: lease })
    }

    /// A static token: its expiry from `lookup-self` when the vault tells (best effort).
    async fn static_session(&self, http: &Http, token: Zeroizing<String>) -> Session {
        let mut lease = Duration::ZERO;
        if let Ok(r) = http.request("GET", "/v1/auth/token/lookup-self", Some(&token), None).await {
            if r.status == 200 {
                lease = Duration::from_secs(r.body["data"]["ttl"].as_u64().unwrap_or(0));
            }
        }
        let mut st = self.status.lock().expect("poisoned");
        st.logged_in = true;
        st.token_expires_at = (!lease.is_zero()).then(|| at(lease));
        st.last_login_at = Some(at(Duration::ZERO));
        st.logins += 1;
        st.last_error = None;
        // Never renewed or replaced by keyport: a zero lease keeps `step` at `Use`.
        Session { token, since: Instant::now(), lease: Duration::ZERO, renewable: false, ttl: Duration::ZERO }
    }

    /// `renew-self` for the role's TTL. `false`: log in again (failed, or capped at max TTL).
    async fn renew(&self, http: &Http, s: &mut Session) -> bool {
        let body = json!({"increment": format!("{}s", s.ttl.as_secs())});
        let r = match http.request("POST", "/v1/auth/token/renew-self", Some(&s.token), Some(&body)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e.0, "vault token renewal failed; logging in again");
                return false;
            }
        };
        if r.status != 200 {
            tracing::info!(status = r.status, error = %error_text(&r.body), "vault token renewal refused; logging in again");
            return false;
        }
        let lease = Duration::from_secs(r.body["auth"]["lease_duration"].as_u64().unwrap_or(0));
        let warned = r.body["warnings"].as_array().is_some_and(|w| !w.is_empty());
        if lease < s.ttl || warned {
            tracing::info!(lease_secs = lease.as_secs(), "vault token reached its max TTL; logging in again");
            return false;
        }
        tracing::info!(lease_secs = lease.as_secs(), "vault token renewed");
        s.since = Instant::now();
        s.lease = lease;
        s.renewable = r.body["auth"]["renewable"].as_bool().unwrap_or(s.renewable);
        let mut st = self.status.lock().expect("poisoned");
        st.token_expires_at = Some(at(lease));
        st.renewable = s.renewable;
        st.last_renewal_at = Some(at(Duration::ZERO));
        st.renewals += 1;
        st.last_error = None;
        true
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
}
