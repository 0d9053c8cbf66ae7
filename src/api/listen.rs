//! Listeners: the Unix socket (peer credentials from SO_PEERCRED at accept) and loopback TCP
//! (TLS with rustls, or plain HTTP when configured). Both serve the same router with hyper.
//!
//! Limits live here because they are about connections, not requests: a semaphore caps open
//! connections across both listeners (the rest wait in the kernel backlog), slow headers time
//! out (`header_timeout_secs`), a request that takes too long is answered 503 (its handler runs
//! as a task of its own and still finishes: hanging up never leaves half an operation), and shutdown
//! drains in-flight requests.

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use crate::config::Limits;
use crate::core::authz::Peer;

/// Connection settings shared by both listeners.
#[derive(Clone)]
pub struct Serving {
    pub router: Router,
    pub limits: Limits,
    /// Shared by both listeners so the cap is global.
    pub connections: Arc<Semaphore>,
    pub shutdown: watch::Receiver<bool>,
}

/// Binds the Unix socket. A file already at `path` is replaced only if it is a socket that no
/// live process answers on; a live daemon there is an error, and so is any other kind of file.
pub fn bind_unix(path: &Path, mode: u32, owner: Option<&str>, group: Option<&str>) -> Result<UnixListener, String> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(format!(
                "{} exists and is not a socket; refusing to replace it (move it away or change listen.socket)",
                path.display()
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!("another keyport is already listening on {}; stop it or use another listen.socket", path.display()));
        }
        std::fs::remove_file(path).map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?;
        tracing::info!(path = %path.display(), "replaced a stale socket file");
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let l = UnixListener::bind(path).map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
    if owner.is_some() || group.is_some() {
        let uid = owner.map(resolve_user).transpose()?;
        let gid = group.map(resolve_group).transpose()?;
        nix::unistd::chown(path, uid, gid).map_err(|e| format!("cannot chown {}: {e}", path.display()))?;
    }
    Ok(l)
}

fn resolve_user(s: &str) -> Result<nix::unistd::Uid, String> {
    if let Ok(n) = s.parse() {
        return Ok(nix::unistd::Uid::from_raw(n));
    }
    nix::unistd::User::from_name(s).ok().flatten().map(|u| u.uid).ok_or_else(|| format!("listen.socket_owner: no user '{s}'"))
}

fn resolve_group(s: &str) -> Result<nix::unistd::Gid, String> {
    if let Ok(n) = s.parse() {
        return Ok(nix::unistd::Gid::from_raw(n));
    }
    nix::unistd::Group::from_name(s).ok().flatten().map(|g| g.gid).ok_or_else(|| format!("listen.socket_group: no group '{s}'"))
}

/// Removes the socket file on drop, so a clean exit leaves nothing stale.
pub struct SocketFile(pub PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub async fn serve_unix(listener: UnixListener, s: Serving) {
    let mut shutdown = s.shutdown.clone();
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => { tracing::warn!(error = %e, "accept failed"); tokio::time::sleep(Duration::from_millis(50)).await; continue; }
            },
            _ = shutdown.changed() => break,
        };
        // A slot is taken after accept, so an idle listener holds none; while none is free,
        // this connection waits unserved and later ones wait in the kernel backlog.
        let permit = tokio::select! {
            p = s.connections.clone().acquire_owned() => p.expect("semaphore closed"),
            _ = shutdown.changed() => break,
        };
        let peer = match getsockopt(&stream, PeerCredentials) {
            Ok(c) => Peer::Unix { uid: c.uid(), gid: c.gid(), pid: c.pid() },
            Err(e) => {
                tracing::warn!(error = %e, "SO_PEERCRED failed; connection dropped");
                continue;
            }
        };
        let s = s.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, &s, Arc::new(permit)).await;
        });
    }
}

pub async fn serve_tcp(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>, s: Serving) {
    let mut shutdown = s.shutdown.clone();
    loop {
        let (stream, addr): (_, SocketAddr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => { tracing::warn!(error = %e, "accept failed"); tokio::time::sleep(Duration::from_millis(50)).await; continue; }
            },
            _ = shutdown.changed() => break,
        };
        let permit = tokio::select! {
            p = s.connections.clone().acquire_owned() => p.expect("semaphore closed"),
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let s = s.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let peer = Peer::Tcp { addr };
            let permit = Arc::new(permit);
            match tls {
                Some(acceptor) => {
                    let hs = Duration::from_secs(s.limits.header_timeout_secs);
                    match tokio::time::timeout(hs, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => serve_connection(tls_stream, peer, &s, permit).await,
                        Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                }
                None => serve_connection(stream, peer, &s, permit).await,
            }
        });
    }
}

/// Serves one connection. `permit` is its place under `limits.max_connections`; every request
/// handler holds a clone until it ends, so handlers that outlive their connection still count
/// (and shutdown, which waits for every permit, waits for them too).
async fn serve_connection<IO>(io: IO, peer: Peer, s: &Serving, permit: Arc<tokio::sync::OwnedSemaphorePermit>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let router = s.router.clone();
    let request_timeout = Duration::from_secs(s.limits.request_timeout_secs);
    // Set when a request or its body timed out: the body may be unread, so the connection is
    // closed once the answer is out.
    let timed_out = Arc::new(tokio::sync::Notify::new());
    let closer = timed_out.clone();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(peer);
        let router = router.clone();
        let permit = permit.clone();
        let timed_out = timed_out.clone();
        async move {
            let req = req.map(|b| axum::body::Body::new(super::body::DeadlineBody::new(b, request_timeout, timed_out.clone())));
            // The handler runs as its own task: a client that hangs up (which drops this
            // future) or a timeout never cuts an operation between its token write and its
            // store commit; it finishes, or undoes itself, on its own. Its body has the same
            // deadline, so a trickling client cannot keep it waiting.
            let handler = tokio::spawn(async move {
                let response = router.oneshot(req).await;
                drop(permit);
                response
            });
            match tokio::time::timeout(request_timeout, handler).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "a request handler failed");
                    Ok(super::error::ApiError::new(
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "the request failed inside keyport (see the daemon log); an unfinished key creation is undone at the next start",
                    )
                    .into_response_box())
                }
                Err(_) => {
                    let mut r = super::error::ApiError::new(
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        "timeout",
                        format!(
                            "the request took longer than {}s (limits.request_timeout_secs); it goes on in the background, so check its result before retrying",
                            request_timeout.as_secs()
                        ),
                    )
                    .into_response_box();
                    // Its body may be unread: the connection cannot carry another request.
                    r.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
                    timed_out.notify_one();
                    Ok(r)
                }
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(s.limits.header_timeout_secs)).keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut shutdown = s.shutdown.clone();
    let idle = Duration::from_secs(s.limits.idle_timeout_secs.max(s.limits.request_timeout_secs));
    tokio::select! {
        r = &mut conn => { if let Err(e) = r { tracing::debug!(error = %e, "connection ended with an error"); } }
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(idle, conn).await;
        }
        // A timed-out request: let its 503 go out, then close, whatever the client still sends.
        _ = closer.notified() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}

impl super::error::ApiError {
    fn into_response_box(self) -> axum::response::Response {
        axum::response::IntoResponse::into_response(self)
    }
}
