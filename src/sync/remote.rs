//! The remote the worker syncs to: one of the connectors, chosen by `[sync] remote`, and the
//! one error every connector answers with. A closed enum rather than a trait object: there
//! are two connectors, `match` makes each new one handle every call, and no boxed futures.

use super::openbao::OpenBao;
use super::tlspc::Tlspc;
use crate::config::RemoteKind;
use crate::config::SyncConfig;

/// What a call to a remote came to when it failed, whatever the remote (OpenBao, TLS Protect
/// Cloud): the worker decides retries and backoff on this alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteError {
    /// Try again later. `stop_pass`: the remote is unusable for every key right now.
    Retry { message: String, after: Option<std::time::Duration>, stop_pass: bool },
    /// The remote refused in a way retrying cannot fix; reported per key until `sync now`.
    Permanent(String),
}

impl RemoteError {
    pub fn message(&self) -> &str {
        match self {
            RemoteError::Retry { message, .. } | RemoteError::Permanent(message) => message,
        }
    }

    /// The remote as a whole is down: stop the pass.
    pub(super) fn down(message: impl Into<String>) -> RemoteError {
        RemoteError::Retry { message: message.into(), after: None, stop_pass: true }
    }
}

pub enum Remote {
    /// Transit BYOK import and KV v2, one key at a time (`openbao`). Both variants are boxed:
    /// each is hundreds of bytes, and their sizes differ.
    OpenBao(Box<OpenBao>),
    /// `certificates/imports` batches of keys with their certificates (`tlspc`).
    Tlspc(Box<Tlspc>),
}

impl Remote {
    pub fn new(cfg: &SyncConfig) -> Result<Remote, String> {
        Ok(match cfg.remote {
            RemoteKind::OpenBao => Remote::OpenBao(Box::new(OpenBao::new(cfg)?)),
            RemoteKind::Tlspc => Remote::Tlspc(Box::new(Tlspc::new(cfg.tlspc.as_ref().ok_or("sync.tlspc is not set")?)?)),
        })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Remote::OpenBao(_) => RemoteKind::OpenBao.name(),
            Remote::Tlspc(_) => RemoteKind::Tlspc.name(),
        }
    }

    pub fn address(&self) -> &str {
        match self {
            Remote::OpenBao(v) => &v.address,
            Remote::Tlspc(t) => &t.address,
        }
    }

    pub fn openbao(&self) -> Option<&OpenBao> {
        match self {
            Remote::OpenBao(v) => Some(v.as_ref()),
            Remote::Tlspc(_) => None,
        }
    }
}
