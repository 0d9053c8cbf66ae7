//! Listeners: the Unix socket (peer credentials from SO_PEERCRED at accept) and loopback TCP
//! (TLS with rustls, or plain HTTP when configured). Both serve the same router with hyper.
//!
//! Limits live here because they are about connections, not requests: each listener has its
//! own connection slots (`slots`: a cap, a share per uid or address, and on the socket a reserve
//! for admins; a connection past them is answered 503 + Retry-After and closed at once), slow
//! headers time out (`header_timeout_secs`), a body must arrive in time (`body::BodyClock`: soon
//! until the caller is authenticated), a request that takes too long is answered 503 (a handler
//! that may write runs as a task of its own and still finishes: hanging up never leaves half an
//! operation), and shutdown drains in-flight requests.

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
use tokio::sync::watch;

use super::request::Context;
use super::slots::{PeerKey, Slot, Slots};
use crate::config::Limits;
use crate::core::authz::Peer;

/// What answers a request once its head is read: `api::answerer` (every face's router behind
/// `access::answer`). Its context (`request::Context`) is in the request's extensions.
pub type Answer = Arc<dyn Fn(axum::extract::Request) -> futures_util::future::BoxFuture<'static, axum::response::Response> + Send + Sync>;

/// Connection settings shared by both listeners (each has its own `Slots`).
#[derive(Clone)]
pub struct Serving {
    pub answer: Answer,
    pub limits: Limits,
    /// Whether a socket peer's uid belongs to an admin principal (current config: SIGHUP
    /// reloads it), for the socket's reserved slots.
    pub privileged: Arc<dyn Fn(&Peer) -> bool + Send + Sync>,
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

pub async fn serve_unix(listener: UnixListener, s: Serving, slots: Arc<Slots>) {
    let mut shutdown = s.shutdown.clone();
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => { tracing::warn!(error = %e, "accept failed"); tokio::time::sleep(Duration::from_millis(50)).await; continue; }
            },
            _ = shutdown.changed() => break,
        };
        let peer = match getsockopt(&stream, PeerCredentials) {
            Ok(c) => Peer::Unix { uid: c.uid(), gid: c.gid(), pid: c.pid() },
            Err(e) => {
                tracing::warn!(error = %e, "SO_PEERCRED failed; connection dropped");
                continue;
            }
        };
        let Peer::Unix { uid, .. } = peer else { unreachable!() };
        // A slot is taken after accept, so an idle listener holds none. None free for this
        // uid: the connection is refused at once, so one uid cannot make others wait.
        let slot = match slots.try_take(PeerKey::Uid(uid), (s.privileged)(&peer)) {
            Ok(slot) => slot,
            Err(why) => {
                tracing::info!(uid, reason = why, "socket connection refused: no slot");
                tokio::spawn(refuse(stream, why));
                continue;
            }
        };
        let s = s.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, &s, Arc::new(slot)).await;
        });
    }
}

pub async fn serve_tcp(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>, s: Serving, slots: Arc<Slots>) {
    let mut shutdown = s.shutdown.clone();
    loop {
        let (stream, addr): (_, SocketAddr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => { tracing::warn!(error = %e, "accept failed"); tokio::time::sleep(Duration::from_millis(50)).await; continue; }
            },
            _ = shutdown.changed() => break,
        };
        let slot = match slots.try_take(PeerKey::Ip(addr.ip()), false) {
            Ok(slot) => slot,
            Err(why) => {
                tracing::info!(%addr, reason = why, "TCP connection refused: no slot");
                // A TLS client cannot read a plain answer (and a handshake costs a token
                // signature): it is just closed.
                if tls.is_none() {
                    tokio::spawn(refuse(stream, why));
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let s = s.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let peer = Peer::Tcp { addr };
            let slot = Arc::new(slot);
            match tls {
                Some(acceptor) => {
                    let hs = Duration::from_secs(s.limits.header_timeout_secs);
                    match tokio::time::timeout(hs, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => serve_connection(tls_stream, peer, &s, slot).await,
                        Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                }
                None => serve_connection(stream, peer, &s, slot).await,
            }
        });
    }
}

/// Answers a connection that got no slot: 503 with Retry-After in the native error shape
/// (no request has been read, so no face is known), then closes it. The request's head is read
/// first (briefly, bounded): closing with it unread would reset the connection and lose the answer.
/// Refusals in progress. Each holds a small buffer for up to 1.5 s; past `MAX_REFUSING` a
/// connection without a slot is just closed, so a connect flood cannot grow memory.
static REFUSING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
const MAX_REFUSING: usize = 256;

async fn refuse<IO: AsyncRead + AsyncWrite + Unpin>(io: IO, why: &'static str) {
    use std::sync::atomic::Ordering;
    if REFUSING.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSING {
        REFUSING.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    answer_503(io, why).await;
    REFUSING.fetch_sub(1, Ordering::AcqRel);
}

async fn answer_503<IO: AsyncRead + AsyncWrite + Unpin>(mut io: IO, why: &'static str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = serde_json::json!({"error": {"code": "too_many_connections", "message": format!("{why}; retry in a moment")}}).to_string();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut buf = vec![0u8; 4 * 1024];
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        let mut seen = 0;
        while seen < buf.len() {
            match io.read(&mut buf[seen..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen += n,
            }
            if buf[..seen].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        io.write_all(head.as_bytes()).await?;
        io.write_all(body.as_bytes()).await?;
        io.shutdown().await?;
        // Whatever the client still sends (a body) is read and dropped until it closes.
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// Serves one connection. `permit` is its slot; every request handler holds a clone until it
/// ends, so handlers that outlive their connection still count (and shutdown, which waits for
/// every slot, waits for them too).
async fn serve_connection<IO>(io: IO, peer: Peer, s: &Serving, permit: Arc<Slot>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let answer = s.answer.clone();
    let request_timeout = Duration::from_secs(s.limits.request_timeout_secs);
    let unauthenticated_body = Duration::from_secs(s.limits.unauthenticated_body_secs);
    // Set when a request or its body timed out: the body may be unread, so the connection is
    // closed once the answer is out.
    let timed_out = Arc::new(tokio::sync::Notify::new());
    let closer = timed_out.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let answer = answer.clone();
        let permit = permit.clone();
        let timed_out = timed_out.clone();
        let context = Context::new(
            peer,
            super::access::request_id(req.headers()),
            super::body::BodyClock::new(unauthenticated_body, request_timeout),
        );
        async move {
            // The request's end (answered, timed out, or the client hung up) cancels queued
            // work for it (`core::kdf`).
            let _ended = context.ended().on_drop();
            let read_only = reads_only(&req);
            let mut req = req.map(|b| super::body::DeadlineBody::of(b, context.clone(), timed_out.clone()));
            req.extensions_mut().insert(context.clone());
            let handler = async move {
                let response = answer(req).await;
                drop(permit);
                Ok::<_, std::convert::Infallible>(response)
            };
            // A handler that may write runs as its own task: a client that hangs up (which
            // drops this future) or a timeout never cuts an operation between its token write
            // and its store commit; it finishes, or undoes itself, on its own. Its body has the
            // same deadline, so a trickling client cannot keep it waiting. A read has nothing
            // to leave half done, so it runs here, without a task and the hop to another
            // worker thread that costs (`GET keys/{id}`: BENCHMARKS.md, 2026-12-04).
            // On a time-out the context learns of the 503 before the request's future is dropped,
            // so its access line says what the client got.
            let late = tokio::time::sleep(request_timeout);
            let answered = if read_only {
                // A panic is caught here as a spawned task's would be: a 500, not a reset.
                use futures_util::FutureExt;
                let caught = std::panic::AssertUnwindSafe(handler).catch_unwind();
                tokio::pin!(caught);
                tokio::select! {
                    biased;
                    r = &mut caught => Ok(r.map_err(|_| "the handler panicked".to_string())),
                    _ = late => { context.answered_by_listener(503); Err(()) }
                }
            } else {
                let task = tokio::spawn(handler);
                tokio::pin!(task);
                tokio::select! {
                    biased;
                    r = &mut task => Ok(r.map_err(|e| e.to_string())),
                    _ = late => { context.answered_by_listener(503); Err(()) }
                }
            };
            match answered {
                // `access::answer` has given every face's 503 its Retry-After.
                Ok(Ok(Ok(r))) => Ok::<_, std::convert::Infallible>(r),
                Ok(Ok(Err(never))) => match never {},
                Ok(Err(e)) => {
                    tracing::error!(error = %e, request_id = ?context.id().to_str().unwrap_or_default(), "a request handler failed");
                    let mut r = super::error::ApiError::new(
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "the request failed inside keyport (see the daemon log); an unfinished key creation is undone at the next start",
                    )
                    .into_response_box();
                    r.headers_mut().insert(super::access::REQUEST_ID, context.id().clone());
                    Ok(r)
                }
                Err(_) => {
                    let mut r = super::error::ApiError::new(
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        "timeout",
                        format!(
                            "the request took longer than {}s (limits.request_timeout_secs){}",
                            request_timeout.as_secs(),
                            if read_only { "; retry it" } else { "; it goes on in the background, so check its result before retrying" }
                        ),
                    )
                    .into_response_box();
                    // Its body may be unread: the connection cannot carry another request.
                    r.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
                    super::error::retry_after(&mut r);
                    r.headers_mut().insert(super::access::REQUEST_ID, context.id().clone());
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

/// Whether a request only reads: `GET` and `HEAD` on the native API, whose handlers never
/// write (a rule of `api::native` and its sibling modules). Vendor faces' GETs are not assumed
/// to (TPP revokes a token with a GET; an apiops GET exports a key, with its audit entry).
fn reads_only<B>(req: &hyper::Request<B>) -> bool {
    matches!(*req.method(), hyper::Method::GET | hyper::Method::HEAD) && req.uri().path().starts_with("/keyport/v1/")
}

impl super::error::ApiError {
    fn into_response_box(self) -> axum::response::Response {
        axum::response::IntoResponse::into_response(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Router;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tower::ServiceExt;

    /// One `GET` over an in-memory connection served by `serve_connection`; the whole answer.
    async fn ask(s: &Serving, path: &str) -> String {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let slot = Arc::new(Slots::new(4, 4, 0).try_take(PeerKey::Uid(0), false).unwrap());
        let serving = s.clone();
        let conn = tokio::spawn(async move { serve_connection(server, Peer::Unix { uid: 0, gid: 0, pid: 1 }, &serving, slot).await });
        let (mut r, mut w) = tokio::io::split(client);
        w.write_all(format!("GET {path} HTTP/1.1\r\nhost: keyport\r\nconnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut out = String::new();
        r.read_to_string(&mut out).await.unwrap();
        conn.await.unwrap();
        out
    }

    /// Native reads run in the connection's task: a panic must still be a 500 (not a reset
    /// connection), and a read past the request time-out a 503 with Retry-After.
    #[tokio::test]
    async fn a_read_that_panics_or_overruns_is_still_answered() {
        let router = Router::new().route("/keyport/v1/boom", get(|| async { panic!("a read handler's bug") as &'static str })).route(
            "/keyport/v1/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        );
        let limits = Limits { request_timeout_secs: 1, ..Limits::default() };
        let (_stop, shutdown) = watch::channel(false);
        let answer: Answer = Arc::new(move |req| {
            let router = router.clone();
            Box::pin(async move { router.oneshot(req).await.unwrap_or_else(|never| match never {}) })
        });
        let s = Serving { answer, limits, privileged: Arc::new(|_: &Peer| false), shutdown };
        let out = ask(&s, "/keyport/v1/boom").await;
        assert!(out.starts_with("HTTP/1.1 500"), "{out}");
        assert!(out.contains("\"internal\""), "in the native error shape: {out}");
        let out = ask(&s, "/keyport/v1/slow").await;
        assert!(out.starts_with("HTTP/1.1 503"), "{out}");
        assert!(out.to_ascii_lowercase().contains("retry-after:"), "{out}");
        assert!(out.contains("retry it"), "a read is not said to go on in the background: {out}");
    }
}
