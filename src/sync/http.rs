//! A small HTTP/1.1 client for the vault: hyper's connection API over TCP, with rustls for
//! https (CA from a file) and plain http for a loopback dev vault. One kept-alive connection,
//! reopened when it breaks (docs/vault.md §5: TLS without keep-alive cut KV writes to 200/s).
//! For certificate login it presents a client certificate whose key signs in the token.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::HeaderValue;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

const TIMEOUT: Duration = Duration::from_secs(30);

/// The largest answer body read (a vault answer is a few KB; a TLSPC job page well under this).
pub const MAX_BODY: usize = 16 << 20;

/// The longest Retry-After honoured: a vault (or a proxy in front) cannot park keyport longer.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Headers whose values are secrets: marked sensitive (hyper keeps them out of its debug output).
const SENSITIVE_HEADERS: [&str; 3] = ["x-vault-token", "tppl-api-key", "authorization"];

/// `Retry-After` in integer seconds, clamped to [`MAX_RETRY_AFTER`]; anything else is ignored.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
}

pub struct Response {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: serde_json::Value,
    pub headers: VaultHeaders,
}

/// The answer headers a cluster client acts on (docs/rotation-and-fleet.md §2, docs/vault.md §6).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VaultHeaders {
    /// `X-Vault-Index` of a write: sent back on later reads so a standby answers fresh.
    pub index: Option<String>,
    /// `Location` of a 307 (a standby naming the active node).
    pub location: Option<String>,
    /// `X-Ratelimit-Limit`, `-Remaining`, `-Reset` (seconds): sent only when the vault's
    /// `sys/quotas/config` turns rate-limit headers on.
    pub ratelimit_limit: Option<u32>,
    pub ratelimit_remaining: Option<u32>,
    pub ratelimit_reset: Option<u64>,
}

impl VaultHeaders {
    fn from(h: &hyper::HeaderMap) -> VaultHeaders {
        let text = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        VaultHeaders {
            index: text("x-vault-index").filter(|v| v.len() <= 4096),
            location: text("location").filter(|v| v.len() <= 4096),
            ratelimit_limit: text("x-ratelimit-limit").and_then(|v| v.parse().ok()),
            ratelimit_remaining: text("x-ratelimit-remaining").and_then(|v| v.parse().ok()),
            ratelimit_reset: text("x-ratelimit-reset").and_then(|v| v.parse().ok()),
        }
    }
}

/// An answer whose body may hold a secret (a login's `client_token`): kept as bytes that are
/// wiped when dropped, for the caller to deserialize straight into zeroizing fields.
pub struct RawResponse {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Zeroizing<Vec<u8>>,
    pub headers: VaultHeaders,
}

impl RawResponse {
    /// As a JSON answer, for an error or a reply that holds no secret.
    pub fn json(&self) -> Response {
        Response { status: self.status, retry_after: self.retry_after, body: parse_body(&self.body), headers: self.headers.clone() }
    }
}

fn parse_body(body: &[u8]) -> serde_json::Value {
    if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(body).unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()))
    }
}

/// A failure before any HTTP answer: refused, reset, timed out, TLS. `.1` (`sent`): the
/// request may have reached the server (it was written, the answer was lost); false when no
/// connection was made, so even a write can safely go to another node.
#[derive(Debug)]
pub struct Unreachable(pub String, pub bool);

pub struct Http {
    host: String,
    port: u16,
    authority: String,
    tls: Option<(tokio_rustls::TlsConnector, rustls::pki_types::ServerName<'static>)>,
    conn: tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl Http {
    /// `scheme://host:port` as configured (for comparing with a 307's `Location`).
    pub fn authority(&self) -> &str {
        &self.authority
    }

    pub fn new(address: &str, ca_file: Option<&std::path::Path>) -> Result<Http, String> {
        Http::build(address, ca_file, None)
    }

    /// An https client that presents the certificate `client` resolves when the vault asks for
    /// one (certificate login, docs/vault.md §4).
    pub fn with_client_cert(
        address: &str,
        ca_file: Option<&std::path::Path>,
        client: Arc<dyn rustls::client::ResolvesClientCert>,
    ) -> Result<Http, String> {
        Http::build(address, ca_file, Some(client))
    }

    fn build(
        address: &str,
        ca_file: Option<&std::path::Path>,
        client: Option<Arc<dyn rustls::client::ResolvesClientCert>>,
    ) -> Result<Http, String> {
        let (scheme, rest) = address.split_once("://").ok_or_else(|| format!("'{address}' is not a URL"))?;
        let authority = rest.trim_end_matches('/').to_string();
        if authority.contains('/') {
            return Err(format!("'{address}': give the vault's address without a path"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h.trim_matches(['[', ']']).to_string(), p.parse().map_err(|_| format!("bad port in '{address}'"))?)
            }
            _ => (authority.trim_matches(['[', ']']).to_string(), if scheme == "https" { 443 } else { 80 }),
        };
        let tls = match scheme {
            "http" if client.is_some() => return Err(format!("'{address}': certificate login needs an https vault")),
            "http" => None,
            "https" => {
                let ca = ca_file.ok_or("an https vault needs sync.ca_file")?;
                let pem = std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
                let mut roots = rustls::RootCertStore::empty();
                for c in <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::pem_slice_iter(&pem) {
                    roots.add(c.map_err(|e| format!("{}: {e}", ca.display()))?).map_err(|e| format!("{}: {e}", ca.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!("{} holds no PEM certificate", ca.display()));
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let builder = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(roots);
                let cfg = match client {
                    Some(c) => {
                        let mut cfg = builder.with_client_cert_resolver(c);
                        // A resumed session carries the identity of the certificate presented
                        // when it began: after a certificate renewal the vault would still see
                        // the old one. Reconnects are rare (one kept-alive connection).
                        cfg.resumption = rustls::client::Resumption::disabled();
                        cfg
                    }
                    None => builder.with_no_client_auth(),
                };
                let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| format!("'{host}': {e}"))?;
                Some((tokio_rustls::TlsConnector::from(Arc::new(cfg)), name))
            }
            other => return Err(format!("scheme '{other}' is not http or https")),
        };

        Ok(Http { host, port, authority, tls, conn: tokio::sync::Mutex::new(None) })
    }

    /// TCP, TLS and the HTTP handshake, all under one timeout: a server that accepts the
    /// connection but stalls the TLS handshake must not hang every later request.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, Unreachable> {
        let fail = |e: &dyn std::fmt::Display| Unreachable(format!("cannot connect to the vault at {}: {e}", self.authority), false);
        tokio::time::timeout(TIMEOUT, async {
            let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await.map_err(|e| fail(&e))?;
            let _ = tcp.set_nodelay(true);
            if let Some((connector, name)) = &self.tls {
                let stream = connector.connect(name.clone(), tcp).await.map_err(|e| fail(&e))?;
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| fail(&e))?;
                tokio::spawn(conn);
                Ok(send)
            } else {
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| fail(&e))?;
                tokio::spawn(conn);
                Ok(send)
            }
        })
        .await
        .map_err(|_| fail(&format_args!("no connection within {} s", TIMEOUT.as_secs())))?
    }

    /// Drops the kept-alive connection: the next request opens a new one (and so presents a
    /// client certificate that changed).
    pub async fn reconnect(&self) {
        *self.conn.lock().await = None;
    }

    /// One request with the vault token (`x-vault-token`); `path` starts with `/v1/`.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Result<Response, Unreachable> {
        let headers: Vec<(&str, &str)> = token.map(|t| ("x-vault-token", t)).into_iter().collect();
        self.request_with(method, path, &headers, body).await
    }

    /// One request with these extra headers (e.g. `tppl-api-key`). A broken kept-alive
    /// connection is reopened once.
    pub async fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<Response, Unreachable> {
        let body = body.map(|b| Bytes::from(serde_json::to_vec(b).expect("a JSON value serializes")));
        Ok(self.send(method, path, headers, body).await?.json())
    }

    /// A request whose body or answer holds a secret (login, renewal, token lookup): `body` is
    /// JSON the caller built in zeroizing memory, the answer comes back as zeroizing bytes.
    /// What hyper buffers on the way (socket and TLS buffers) is outside keyport's reach.
    pub async fn request_raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<RawResponse, Unreachable> {
        let headers: Vec<(&str, &str)> = token.map(|t| ("x-vault-token", t)).into_iter().collect();
        // The last `Bytes` handle drops the owner, which wipes the buffer.
        self.send(method, path, &headers, body.map(Bytes::from_owner)).await
    }

    async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<Bytes>) -> Result<RawResponse, Unreachable> {
        let mut guard = self.conn.lock().await;
        for attempt in 0..2 {
            let mut send = match guard.take() {
                Some(s) if s.is_ready() => s,
                _ => self.connect().await?,
            };
            let mut req = hyper::Request::builder().method(method).uri(path).header("host", &self.authority);
            for (k, v) in headers {
                let mut value =
                    HeaderValue::from_str(v).map_err(|_| Unreachable(format!("header {k}: not a valid header value"), false))?;
                if SENSITIVE_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
                    value.set_sensitive(true);
                }
                req = req.header(*k, value);
            }
            if body.is_some() {
                req = req.header("content-type", "application/json");
            }
            let req = req.body(Full::new(body.clone().unwrap_or_default())).map_err(|e| Unreachable(e.to_string(), false))?;
            let sent = tokio::time::timeout(TIMEOUT, async {
                let resp = send.send_request(req).await.map_err(Failure::Http)?;
                let status = resp.status().as_u16();
                let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
                let headers = VaultHeaders::from(resp.headers());
                let declared =
                    resp.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
                // Reserved up front so that growing the buffer leaves no unwiped copies behind.
                let mut out = Zeroizing::new(Vec::with_capacity(declared.clamp(4096, MAX_BODY)));
                let mut body = Limited::new(resp.into_body(), MAX_BODY);
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(|e| match e.downcast::<hyper::Error>() {
                        Ok(e) => Failure::Http(*e),
                        Err(_) => Failure::TooLarge,
                    })?;
                    if let Ok(data) = frame.into_data() {
                        out.extend_from_slice(&data);
                    }
                }
                Ok::<_, Failure>((status, retry_after, out, headers))
            })
            .await;
            match sent {
                Ok(Ok((status, retry_after, body, headers))) => {
                    *guard = Some(send);
                    return Ok(RawResponse { status, retry_after, body, headers });
                }
                // A kept-alive connection the server closed: try once on a new one. Vault
                // writes are only retried here when the request never got an answer.
                Ok(Err(Failure::Http(e))) if attempt == 0 && e.is_canceled() => continue,
                Ok(Err(Failure::Http(e))) => return Err(Unreachable(format!("vault at {}: {e}", self.authority), true)),
                // The connection is mid-body: dropped (not put back).
                Ok(Err(Failure::TooLarge)) => {
                    return Err(Unreachable(
                        format!(
                            "vault at {} sent an answer larger than {} MiB to {method} {}",
                            self.authority,
                            MAX_BODY >> 20,
                            path.split('?').next().unwrap_or(path)
                        ),
                        true,
                    ))
                }
                Err(_) => return Err(Unreachable(format!("vault at {} did not answer in {} s", self.authority, TIMEOUT.as_secs()), true)),
            }
        }
        Err(Unreachable(format!("vault at {} closed the connection", self.authority), true))
    }
}

enum Failure {
    Http(hyper::Error),
    TooLarge,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_clamped_and_garbage_ignored() {
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(&u64::MAX.to_string()), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("99999999999999999999999"), None, "not a u64");
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
