//! The ssh-agent listener (draft-miller-ssh-agent) on a Unix socket: token keys used by `ssh`,
//! `ssh-keygen -Y sign`, `git`, or an `sshd` with `HostKeyAgent`, without leaving the token.
//!
//! The caller is who the kernel says (SO_PEERCRED at accept), mapped to a principal exactly as
//! on the API socket (`core::authz::Authz::identify`). Every signature goes through
//! `core::sign`. Limits, so one local user cannot exhaust the daemon: a cap on open connections
//! and a smaller one per uid (a connection over either is closed at once, never queued), a
//! largest message (a bigger one is answered SSH_AGENT_FAILURE and the connection closed), a
//! deadline for a message once it starts arriving, and an idle timeout.

mod keys;
mod session;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use ssh_agent_lib::proto::Response;
use ssh_agent_lib::ssh_encoding::Encode;

use crate::config::AgentConfig;
use crate::core::authz::Peer;
use crate::core::SharedApp;

/// What the accept loop and every connection share.
#[derive(Clone)]
pub struct AgentServing {
    pub app: SharedApp,
    /// The agent's own cap: a flood of agent connections never takes the API's slots.
    pub connections: Arc<Semaphore>,
    /// Open connections per uid.
    per_uid: Arc<Mutex<HashMap<u32, usize>>>,
    pub shutdown: watch::Receiver<bool>,
}

impl AgentServing {
    pub fn new(app: SharedApp, shutdown: watch::Receiver<bool>) -> AgentServing {
        let connections = Arc::new(Semaphore::new(app.config.agent.max_connections));
        AgentServing { app, connections, per_uid: Default::default(), shutdown }
    }

    fn cfg(&self) -> &AgentConfig {
        &self.app.config.agent
    }

    /// A slot for a connection of `uid`, or `None` when the uid's share or the cap is full.
    fn admit(&self, uid: u32) -> Option<Slot> {
        let mut counts = self.per_uid.lock().expect("poisoned");
        let n = counts.entry(uid).or_insert(0);
        if *n >= self.cfg().max_connections_per_uid {
            return None;
        }
        let permit = self.connections.clone().try_acquire_owned().ok()?;
        *n += 1;
        Some(Slot { uid, per_uid: self.per_uid.clone(), _permit: permit })
    }
}

/// A connection's place under both caps; given back when the connection ends.
struct Slot {
    uid: u32,
    per_uid: Arc<Mutex<HashMap<u32, usize>>>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.per_uid.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.uid);
            }
        }
    }
}

/// The agent's socket could not be bound; the message says why and what to do.
#[derive(Debug, thiserror::Error)]
#[error("agent.socket: {0}")]
pub struct BindError(String);

/// Binds the agent's socket (same rules as the API socket: a live socket is never stolen, a
/// stale one is replaced, any other file is left alone).
pub fn bind(cfg: &AgentConfig) -> Result<Option<(UnixListener, crate::api::listen::SocketFile)>, BindError> {
    let Some(path) = &cfg.socket else { return Ok(None) };
    let l = crate::api::listen::bind_unix(path, cfg.mode(), cfg.socket_owner.as_deref(), cfg.socket_group.as_deref()).map_err(BindError)?;
    Ok(Some((l, crate::api::listen::SocketFile(path.clone()))))
}

pub async fn serve(listener: UnixListener, s: AgentServing) {
    let mut shutdown = s.shutdown.clone();
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => { tracing::warn!(error = %e, "agent: accept failed"); tokio::time::sleep(Duration::from_millis(50)).await; continue; }
            },
            _ = shutdown.changed() => break,
        };
        let peer = match stream.peer_cred() {
            Ok(c) => Peer::Unix { uid: c.uid(), gid: c.gid(), pid: c.pid().unwrap_or(0) },
            Err(e) => {
                tracing::warn!(error = %e, "agent: SO_PEERCRED failed; connection dropped");
                continue;
            }
        };
        let Peer::Unix { uid, .. } = peer else { continue };
        let Some(slot) = s.admit(uid) else {
            tracing::info!(?peer, "agent: connection closed: too many open connections for this uid or in all (agent.max_connections_per_uid, agent.max_connections)");
            continue;
        };
        let s = s.clone();
        tokio::spawn(async move {
            connection(stream, peer, &s).await;
            drop(slot);
        });
    }
}

/// Serves one connection until the client closes it, a limit ends it, or shutdown.
async fn connection(mut stream: UnixStream, peer: Peer, s: &AgentServing) {
    let cfg = s.cfg();
    let idle = Duration::from_secs(cfg.idle_timeout_secs);
    let message_time = Duration::from_secs(cfg.message_timeout_secs);
    let mut shutdown = s.shutdown.clone();
    loop {
        // The first byte of the next message, or idle/shutdown/EOF.
        let mut len = [0u8; 4];
        let first = tokio::select! {
            r = tokio::time::timeout(idle, stream.read(&mut len[..1])) => r,
            _ = shutdown.changed() => return,
        };
        match first {
            Ok(Ok(1)) => {}
            Ok(Ok(_)) => return,
            Ok(Err(e)) => {
                tracing::debug!(?peer, error = %e, "agent: read failed");
                return;
            }
            Err(_) => {
                tracing::debug!(?peer, "agent: idle connection closed (agent.idle_timeout_secs)");
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + message_time;
        let body = match tokio::time::timeout_at(deadline, read_rest(&mut stream, &mut len, cfg.max_message_bytes)).await {
            // An ADD_IDENTITY message carries a private key: wiped when done.
            Ok(Ok(Some(body))) => zeroize::Zeroizing::new(body),
            Ok(Ok(None)) => {
                tracing::info!(
                    ?peer,
                    declared = u32::from_be_bytes(len),
                    limit = cfg.max_message_bytes,
                    "agent: message too large (agent.max_message_bytes); connection closed"
                );
                let _ = write(&mut stream, &Response::Failure, message_time).await;
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(?peer, error = %e, "agent: connection ended inside a message");
                return;
            }
            Err(_) => {
                tracing::info!(?peer, "agent: a message did not arrive in time (agent.message_timeout_secs); connection closed");
                return;
            }
        };
        let response = if body.is_empty() { Response::Failure } else { session::handle(&s.app, peer, &body[..]).await };
        if write(&mut stream, &response, message_time).await.is_err() {
            tracing::debug!(?peer, "agent: the client did not take its answer; connection closed");
            return;
        }
    }
}

/// The rest of the length (its first byte is in) and the body; `None` when it is over `max`.
async fn read_rest(stream: &mut UnixStream, len: &mut [u8; 4], max: usize) -> std::io::Result<Option<Vec<u8>>> {
    stream.read_exact(&mut len[1..]).await?;
    let n = u32::from_be_bytes(*len) as usize;
    if n > max {
        return Ok(None);
    }
    let mut body = vec![0u8; n];
    stream.read_exact(&mut body).await?;
    Ok(Some(body))
}

async fn write(stream: &mut UnixStream, r: &Response, limit: Duration) -> std::io::Result<()> {
    let mut out = Vec::new();
    let encoded = r.encoded_len().and_then(|n| (n as u32).encode(&mut out)).and_then(|_| r.encode(&mut out));
    if let Err(e) = encoded {
        tracing::error!(error = %e, "agent: cannot encode an answer");
        out.clear();
        let _ = 1u32.encode(&mut out);
        out.push(5); // SSH_AGENT_FAILURE
    }
    tokio::time::timeout(limit, stream.write_all(&out)).await.map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}
