//! The remote the worker syncs to: one of the connectors, chosen by `[sync] remote`.

use super::openbao::OpenBao;
use super::tlspc::Tlspc;
use crate::config::RemoteKind;
use crate::config::SyncConfig;

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
