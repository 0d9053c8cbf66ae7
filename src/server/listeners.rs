//! The listeners a started core is served on, bound before anything answers: the API's Unix
//! socket (systemd's or `[listen] socket`), loopback HTTPS (`[listen] tcp`), the metrics-only
//! listener and the ssh-agent socket. Tests bind their own (temp sockets, port 0).

use std::sync::Arc;

use super::{fatal, Fatal, Started};
use crate::api::{self, listen::SocketFile};
use crate::config::TlsConfig;
use crate::core::tls_identity::NoIdentity;

/// Bound listeners; a socket file named here is removed when it is dropped.
#[derive(Default)]
pub struct Listeners {
    pub api: Option<(tokio::net::UnixListener, Option<SocketFile>)>,
    /// `None` as the acceptor: plain HTTP, as configured (`tls = { mode = "plain" }`).
    pub tcp: Option<(tokio::net::TcpListener, Option<tokio_rustls::TlsAcceptor>)>,
    pub metrics: Option<tokio::net::TcpListener>,
    pub agent: Option<(tokio::net::UnixListener, Option<SocketFile>)>,
}

/// Binds what the configuration names (or takes what systemd passed).
pub async fn bind(started: &Started, activated: api::activation::Activated) -> Result<Listeners, Fatal> {
    let app = &started.app;
    let mut l = Listeners::default();
    if let Some(s) = activated.api {
        let s = tokio::net::UnixListener::from_std(s).map_err(|e| fatal(1, format!("activated socket: {e}")))?;
        tracing::info!("listening on the Unix socket passed by systemd");
        l.api = Some((s, None));
    } else if let Some(path) = &app.config.listen.socket {
        let s = api::listen::bind_unix(
            path,
            app.config.socket_mode(),
            app.config.listen.socket_owner.as_deref(),
            app.config.listen.socket_group.as_deref(),
        )
        .map_err(|m| fatal(1, m))?;
        tracing::info!(path = %path.display(), "listening on Unix socket");
        l.api = Some((s, Some(SocketFile(path.clone()))));
    }
    if let Some(addr) = &app.config.listen.tcp {
        // `None`: not served (reported in health); `Some(None)`: plain HTTP as configured.
        let tls = match &app.config.listen.tls {
            TlsConfig::Plain => Some(None),
            TlsConfig::Files { cert, key } => Some(Some(api::tls::from_files(cert, key).map_err(|m| fatal(2, m))?)),
            TlsConfig::SelfSigned => match crate::core::tls_identity::self_signed(app).await {
                Ok(identity) => Some(Some(api::tls::self_signed(identity).map_err(|m| fatal(2, m))?)),
                // Its key lives in a token that is away: serve the socket only (never plain
                // HTTP in place of TLS); a fault, so restart once the token is back.
                Err(NoIdentity::Away(m)) => {
                    app.health.set("listen:tcp", format!("HTTPS on {addr} is not served: {m}; restart keyport once the token is back"));
                    None
                }
                // No token can hold it: the feature is off with this configuration.
                Err(NoIdentity::Off(m)) => {
                    let msg = format!("HTTPS on {addr} is off: {m}");
                    tracing::error!("{msg}");
                    app.health.set_off("listen:tcp", msg);
                    None
                }
            },
        };
        if let Some(tls) = tls {
            let s = tokio::net::TcpListener::bind(addr).await.map_err(|e| fatal(1, format!("cannot listen on {addr}: {e}")))?;
            tracing::info!(addr = %s.local_addr().map(|a| a.to_string()).unwrap_or_default(), tls = tls.is_some(), "listening on TCP");
            l.tcp = Some((s, tls.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c)))));
        }
    }
    // The metrics-only listener: plain HTTP, no authentication, counts only (`api::metrics`).
    if let Some(addr) = &app.config.metrics.listen {
        let s =
            tokio::net::TcpListener::bind(addr).await.map_err(|e| fatal(1, format!("cannot listen on {addr} (metrics.listen): {e}")))?;
        tracing::info!(addr = %s.local_addr().map(|a| a.to_string()).unwrap_or_default(), "metrics listener: GET /metrics, no authentication");
        l.metrics = Some(s);
    }
    if let Some(s) = activated.agent {
        let s = tokio::net::UnixListener::from_std(s).map_err(|e| fatal(1, format!("activated agent socket: {e}")))?;
        tracing::info!("ssh-agent listening on the Unix socket passed by systemd");
        l.agent = Some((s, None));
    } else if let Some((s, file)) = api::agent::bind(&app.config.agent).map_err(|e| fatal(1, e.to_string()))? {
        tracing::info!(path = %file.0.display(), "ssh-agent listening on Unix socket");
        l.agent = Some((s, Some(file)));
    }
    Ok(l)
}
