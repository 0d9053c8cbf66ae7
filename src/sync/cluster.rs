//! The vault's nodes (`[sync] addresses`, or the one `address`): which one keyport talks to.
//!
//! An OpenBao Raft cluster has one active node that takes every write; standbys serve reads
//! and forward writes, or answer 307 with the active node's address (docs/rotation-and-fleet.md
//! §2). keyport talks to the active node: found by `sys/health` (200 active, 429 standby,
//! 503 sealed) on first use and whenever the current node refuses, dies or redirects. A 307's
//! `Location` naming a configured node switches to it; one naming another address is followed
//! once per request, only over the same scheme (and for plain http only to loopback), so the
//! token never travels where the configuration would not send it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::client_cert::ClientCert;
use super::http::Http;

/// What a node's `sys/health` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Active,
    Standby,
    /// Sealed, not initialised, or another answer: up but cannot serve.
    Unusable(u16),
    Down,
}

pub struct Nodes {
    nodes: Vec<Http>,
    /// Configured addresses, in order.
    pub addresses: Vec<String>,
    current: AtomicUsize,
    /// Whether the active node was looked for yet (first use).
    discovered: AtomicBool,
    scheme: String,
    ca_file: Option<std::path::PathBuf>,
    /// The last address a 307 sent keyport to that is not configured (one connection kept).
    followed: Mutex<Option<Arc<Http>>>,
}

impl Nodes {
    pub fn new(addresses: Vec<String>, ca_file: Option<&std::path::Path>, client: Option<&Arc<ClientCert>>) -> Result<Nodes, String> {
        if addresses.is_empty() {
            return Err("sync.address (or sync.addresses) is not set".into());
        }
        let nodes = addresses
            .iter()
            .map(|a| match client {
                Some(c) => Http::with_client_cert(a, ca_file, c.clone()),
                None => Http::new(a, ca_file),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let scheme = addresses[0].split_once("://").map(|(s, _)| s.to_string()).unwrap_or_default();
        Ok(Nodes {
            nodes,
            addresses,
            current: AtomicUsize::new(0),
            discovered: AtomicBool::new(false),
            scheme,
            ca_file: ca_file.map(|p| p.to_path_buf()),
            followed: Mutex::new(None),
        })
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node in use (index and client); the first call looks for the active node.
    pub async fn current(&self) -> (usize, &Http) {
        if self.nodes.len() > 1 && !self.discovered.swap(true, Ordering::SeqCst) {
            self.find_active(None).await;
        }
        let i = self.current.load(Ordering::SeqCst);
        (i, &self.nodes[i])
    }

    pub fn current_address(&self) -> &str {
        &self.addresses[self.current.load(Ordering::SeqCst)]
    }

    pub async fn health(&self, i: usize) -> Health {
        match self.nodes[i].request("GET", "/v1/sys/health", None, None).await {
            Err(_) => Health::Down,
            Ok(r) => match r.status {
                200 => Health::Active,
                429 | 472 | 473 => Health::Standby,
                s => Health::Unusable(s),
            },
        }
    }

    /// Asks every node (`failed` last) and switches to the active one. Returns whether an
    /// active node other than `failed` was found.
    pub async fn find_active(&self, failed: Option<usize>) -> bool {
        let n = self.nodes.len();
        let start = failed.map_or(0, |f| f + 1);
        for k in 0..n {
            let i = (start + k) % n;
            if Some(i) == failed && n > 1 {
                continue;
            }
            if self.health(i).await == Health::Active {
                let was = self.current.swap(i, Ordering::SeqCst);
                if was != i {
                    tracing::info!(node = %self.addresses[i], previous = %self.addresses[was], "sync: the vault's active node is now this one");
                }
                return Some(i) != failed;
            }
        }
        false
    }

    /// Whether the vault can serve at all (a probe before resuming after a vault-wide backoff):
    /// some node is active, or a standby answers (it forwards or redirects writes). Moves to
    /// the active node when one is configured.
    pub async fn probe(&self) -> Result<(), String> {
        if self.find_active(None).await {
            return Ok(());
        }
        let mut seen = Vec::new();
        for i in 0..self.nodes.len() {
            match self.health(i).await {
                Health::Active | Health::Standby => {
                    self.use_node(i);
                    return Ok(());
                }
                h => seen.push(format!("{}: {}", self.addresses[i], describe(h))),
            }
        }
        Err(format!("no vault node can serve ({})", seen.join("; ")))
    }

    /// The configured node a 307's `Location` names.
    pub fn node_for(&self, location: &str) -> Option<usize> {
        let (scheme, authority, _) = split_location(location)?;
        (scheme == self.scheme).then_some(())?;
        self.nodes.iter().position(|h| h.authority() == authority)
    }

    pub fn use_node(&self, i: usize) {
        self.current.store(i, Ordering::SeqCst);
    }

    /// A client for a 307's `Location` that is not a configured node, and the path to ask
    /// there. Refused unless it keeps the configured scheme, and plain http stays on loopback.
    pub fn follow(&self, location: &str) -> Result<(Arc<Http>, String), String> {
        let (scheme, authority, path) = split_location(location).ok_or_else(|| format!("'{location}' is not an absolute URL"))?;
        if scheme != self.scheme {
            return Err(format!("the vault redirected from {} to {scheme}://; not followed", self.scheme));
        }
        if scheme == "http" {
            let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h).trim_matches(['[', ']']);
            if !(host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())) {
                return Err(format!("the vault redirected to plain http off loopback ({authority}); not followed"));
            }
        }
        if !path.starts_with("/v1/") {
            return Err(format!("the vault redirected to '{path}', not an API path; not followed"));
        }
        let mut cached = self.followed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = cached.as_ref().filter(|h| h.authority() == authority) {
            return Ok((h.clone(), path.to_string()));
        }
        let h = Arc::new(Http::new(&format!("{scheme}://{authority}"), self.ca_file.as_deref())?);
        *cached = Some(h.clone());
        Ok((h, path.to_string()))
    }
}

fn describe(h: Health) -> String {
    match h {
        Health::Active => "active".into(),
        Health::Standby => "standby".into(),
        Health::Unusable(503) => "sealed".into(),
        Health::Unusable(501) => "not initialised".into(),
        Health::Unusable(s) => format!("sys/health {s}"),
        Health::Down => "unreachable".into(),
    }
}

/// `scheme://authority/path` → its parts.
fn split_location(location: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = location.split_once("://")?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    (!authority.is_empty()).then_some((scheme, authority, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_name_configured_nodes_or_are_checked_before_following() {
        let n = Nodes::new(vec!["http://127.0.0.1:8200".into(), "http://127.0.0.1:8300".into()], None, None).unwrap();
        assert_eq!(n.node_for("http://127.0.0.1:8300/v1/transit/keys/a"), Some(1));
        assert_eq!(n.node_for("https://127.0.0.1:8300/v1/transit/keys/a"), None, "another scheme");
        assert_eq!(n.node_for("http://127.0.0.1:8400/v1/x"), None);
        let (h, path) = n.follow("http://127.0.0.1:8400/v1/secret/data/x?version=1").unwrap();
        assert_eq!((h.authority(), path.as_str()), ("127.0.0.1:8400", "/v1/secret/data/x?version=1"));
        assert!(n.follow("http://vault.example:8200/v1/x").err().unwrap().contains("loopback"));
        assert!(n.follow("https://127.0.0.1:8400/v1/x").err().unwrap().contains("https"));
        assert!(n.follow("http://127.0.0.1:8400/ui/").err().unwrap().contains("API path"));
        assert!(n.follow("/v1/x").is_err());
    }
}
