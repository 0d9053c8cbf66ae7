//! A small HTTP/1.1 client for the vault: hyper's connection API over TCP, with rustls for
//! https (CA from a file) and plain http for a loopback dev vault. One kept-alive connection,
//! reopened when it breaks (research/vault.md §5: TLS without keep-alive cut KV writes to 200/s).
//! For certificate login it presents a client certificate whose key signs in the token.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

pub struct Response {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: serde_json::Value,
}

/// A failure before any HTTP answer: refused, reset, timed out, TLS.
#[derive(Debug)]
pub struct Unreachable(pub String);

pub struct Http {
    host: String,
    port: u16,
    authority: String,
    tls: Option<(tokio_rustls::TlsConnector, rustls::pki_types::ServerName<'static>)>,
    conn: tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl Http {
    pub fn new(address: &str, ca_file: Option<&std::path::Path>) -> Result<Http, String> {
        Http::build(address, ca_file, None)
    }

    /// An https client that presents the certificate `client` resolves when the vault asks for
    /// one (certificate login, research/vault.md §4).
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
                for c in rustls_pemfile::certs(&mut pem.as_slice()) {
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

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, Unreachable> {
        let fail = |e: &dyn std::fmt::Display| Unreachable(format!("cannot connect to the vault at {}: {e}", self.authority));
        let tcp = tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect((self.host.as_str(), self.port)))
            .await
            .map_err(|_| fail(&"timed out"))?
            .map_err(|e| fail(&e))?;
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
        let mut guard = self.conn.lock().await;
        for attempt in 0..2 {
            let mut send = match guard.take() {
                Some(s) if s.is_ready() => s,
                _ => self.connect().await?,
            };
            let mut req = hyper::Request::builder().method(method).uri(path).header("host", &self.authority);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let bytes = match body {
                Some(b) => {
                    req = req.header("content-type", "application/json");
                    serde_json::to_vec(b).expect("json")
                }
                None => Vec::new(),
            };
            let req = req.body(Full::new(Bytes::from(bytes))).map_err(|e| Unreachable(e.to_string()))?;
            let sent = tokio::time::timeout(TIMEOUT, async {
                let resp = send.send_request(req).await?;
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let body = resp.into_body().collect().await?.to_bytes();
                Ok::<_, hyper::Error>((status, retry_after, body))
            })
            .await;
            match sent {
                Ok(Ok((status, retry_after, body))) => {
                    *guard = Some(send);
                    let body = if body.is_empty() {
                        serde_json::Value::Null
                    } else {
                        serde_json::from_slice(&body)
                            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()))
                    };
                    return Ok(Response { status, retry_after, body });
                }
                // A kept-alive connection the server closed: try once on a new one. Vault
                // writes are only retried here when the request never got an answer.
                Ok(Err(e)) if attempt == 0 && e.is_canceled() => continue,
                Ok(Err(e)) => return Err(Unreachable(format!("vault at {}: {e}", self.authority))),
                Err(_) => return Err(Unreachable(format!("vault at {} did not answer in {} s", self.authority, TIMEOUT.as_secs()))),
            }
        }
        Err(Unreachable(format!("vault at {} closed the connection", self.authority)))
    }
}
