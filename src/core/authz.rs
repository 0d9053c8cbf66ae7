//! Principals and permissions. Identification (who is calling) is separate from the peer
//! credentials captured at accept (`api::listen`) and from each face's own header parsing.
//!
//! Rules: an API key, when presented, must match (else 401, even over the socket, so a wrong
//! key is never silently ignored); otherwise a Unix-socket caller matches by uid, then by
//! primary gid; a TCP caller with no key is 401. A principal without the permission is 403.

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use subtle::ConstantTimeEq;

use super::CoreError;
use crate::config::{Permission, Principal as PrincipalConfig};

/// How the caller reached us, from the kernel (Unix) or the socket address (TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Unix { uid: u32, gid: u32, pid: i32 },
    Tcp { addr: std::net::SocketAddr },
}

#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    permissions: BTreeMap<String, HashSet<Permission>>,
}

impl Principal {
    pub fn allows(&self, namespace: &str, p: Permission) -> bool {
        [namespace, "*"].iter().any(|ns| self.permissions.get(*ns).is_some_and(|set| set.contains(&p) || set.contains(&Permission::Admin)))
    }

    /// Whether the principal holds any permission in `namespace` (directly or through "*").
    pub fn holds_any(&self, namespace: &str) -> bool {
        [namespace, "*"].iter().any(|ns| self.permissions.get(*ns).is_some_and(|set| !set.is_empty()))
    }

    /// Ok if the principal holds `p` in some namespace (or on "*"), else a 403 naming it: for
    /// host-wide answers that name no namespace (sync being off), so that a caller without
    /// the permission anywhere learns nothing of the configuration.
    pub fn require_somewhere(&self, p: Permission) -> Result<(), CoreError> {
        match self.permissions.keys().find(|ns| self.allows(ns, p)) {
            Some(_) => Ok(()),
            None => self.require("*", p),
        }
    }

    /// Owner rights: the key's recorded owner is this principal's name and the principal still
    /// holds some permission in the key's namespace (a SIGHUP that takes every permission away
    /// also ends what ownership gave).
    pub fn owns(&self, owner: &str, namespace: &str) -> bool {
        owner == self.name && self.holds_any(namespace)
    }

    /// The keys this principal may read ([`Principal::allows`] `Read`, or [`Principal::owns`]),
    /// as a filter the store's listing query applies itself.
    pub fn read_visibility(&self) -> crate::store::Visibility {
        let holds = |set: &HashSet<Permission>| set.contains(&Permission::Read) || set.contains(&Permission::Admin);
        if self.permissions.get("*").is_some_and(holds) {
            return crate::store::Visibility { all: true, ..Default::default() };
        }
        let namespaces = self.permissions.iter().filter(|(_, set)| holds(set)).map(|(ns, _)| ns.clone()).collect();
        let owner_namespaces = if self.holds_any("*") {
            None
        } else {
            Some(self.permissions.iter().filter(|(_, set)| !set.is_empty()).map(|(ns, _)| ns.clone()).collect())
        };
        crate::store::Visibility { all: false, namespaces, owner: Some(self.name.clone()), owner_namespaces }
    }

    /// Ok, or a 403 that names the missing permission and namespace.
    pub fn require(&self, namespace: &str, p: Permission) -> Result<(), CoreError> {
        if self.allows(namespace, p) {
            Ok(())
        } else {
            Err(CoreError::Forbidden(format!(
                "principal '{}' lacks the '{}' permission on namespace '{namespace}'; grant it in [[principals]] permissions",
                self.name,
                serde_json::to_value(p).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
            )))
        }
    }
}

pub struct Authz {
    /// Each principal's config, its API-key hashes, and the principal built once (a request's
    /// identity is a clone of this `Arc`, not a copy of its permissions).
    principals: Vec<(PrincipalConfig, Vec<[u8; 32]>, Arc<Principal>)>,
}

impl Authz {
    pub fn new(cfg: &[PrincipalConfig]) -> Authz {
        let principals = cfg
            .iter()
            .map(|p| {
                let hashes = p.api_key_sha256.iter().filter_map(|h| hex::decode(h).ok()?.try_into().ok()).collect();
                (p.clone(), hashes, Arc::new(Self::principal(p)))
            })
            .collect();
        Authz { principals }
    }

    fn principal(p: &PrincipalConfig) -> Principal {
        Principal {
            name: p.name.clone(),
            permissions: p.permissions.iter().map(|(ns, ps)| (ns.clone(), ps.iter().copied().collect())).collect(),
        }
    }

    /// The principal called `name`, for work that runs later on someone's behalf (jobs).
    pub fn by_name(&self, name: &str) -> Option<Arc<Principal>> {
        self.principals.iter().find(|(p, ..)| p.name == name).map(|(.., built)| built.clone())
    }

    /// Who is calling. `api_key` is the raw key from the request, if any.
    pub fn identify(&self, peer: &Peer, api_key: Option<&str>) -> Result<Arc<Principal>, CoreError> {
        if let Some(key) = api_key {
            let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
            // Compare against every hash without stopping early.
            let mut found = None;
            for (_, hashes, built) in &self.principals {
                for h in hashes {
                    if bool::from(h.ct_eq(&digest)) && found.is_none() {
                        found = Some(built);
                    }
                }
            }
            return found.cloned().ok_or_else(|| {
                CoreError::Unauthenticated(
                    "the API key is not recognized; check the key, or ask for one to be added to [[principals]]".into(),
                )
            });
        }
        match peer {
            Peer::Unix { uid, gid, .. } => self
                .principals
                .iter()
                .find(|(p, ..)| p.uids.contains(uid))
                .or_else(|| self.principals.iter().find(|(p, ..)| p.gids.contains(gid)))
                .map(|(.., built)| built.clone())
                .ok_or_else(|| {
                    CoreError::Unauthenticated(format!(
                        "uid {uid} (gid {gid}) is not a principal; add it to a [[principals]] entry (uids/gids) or send an API key"
                    ))
                }),
            Peer::Tcp { .. } => {
                Err(CoreError::Unauthenticated("no credentials: send an API key in X-Api-Key or Authorization: Bearer".into()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Vec<PrincipalConfig> {
        toml::from_str::<toml::Value>(
            r#"[[p]]
name = "root"
uids = [0]
permissions = { "*" = ["admin"] }
[[p]]
name = "web"
gids = [33]
api_key_sha256 = ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
permissions = { web = ["read"] }"#,
        )
        .unwrap()["p"]
            .clone()
            .try_into()
            .unwrap()
    }

    #[test]
    fn uid_then_gid_then_key() {
        let a = Authz::new(&cfg());
        let unix = |uid, gid| Peer::Unix { uid, gid, pid: 1 };
        assert_eq!(a.identify(&unix(0, 0), None).unwrap().name, "root");
        assert_eq!(a.identify(&unix(1000, 33), None).unwrap().name, "web");
        assert!(matches!(a.identify(&unix(1000, 1000), None), Err(CoreError::Unauthenticated(_))));
        let tcp = Peer::Tcp { addr: "127.0.0.1:1".parse().unwrap() };
        assert_eq!(a.identify(&tcp, Some("test")).unwrap().name, "web");
        assert!(matches!(a.identify(&tcp, Some("wrong")), Err(CoreError::Unauthenticated(_))));
        assert!(matches!(a.identify(&unix(0, 0), Some("wrong")), Err(CoreError::Unauthenticated(_))), "a wrong key is never ignored");
        assert!(matches!(a.identify(&tcp, None), Err(CoreError::Unauthenticated(_))));
    }

    #[test]
    fn permissions_per_namespace_and_admin() {
        let a = Authz::new(&cfg());
        let web = a.identify(&Peer::Unix { uid: 5, gid: 33, pid: 1 }, None).unwrap();
        assert!(web.allows("web", Permission::Read));
        assert!(!web.allows("web", Permission::Manage));
        assert!(!web.allows("other", Permission::Read));
        let e = web.require("web", Permission::ExportPrivate).unwrap_err().to_string();
        assert!(e.contains("export-private") && e.contains("'web'"), "{e}");
        let root = a.identify(&Peer::Unix { uid: 0, gid: 0, pid: 1 }, None).unwrap();
        assert!(root.allows("anything", Permission::ExportPrivate));
    }

    /// The listing's SQL filter admits exactly the keys `allows(Read) || owns` admits.
    #[test]
    fn read_visibility_matches_allows_or_owns() {
        let p = |perms: &[(&str, &[Permission])]| Principal {
            name: "alice".into(),
            permissions: perms.iter().map(|(ns, set)| (ns.to_string(), set.iter().copied().collect())).collect(),
        };
        let cases = [
            p(&[("*", &[Permission::Admin])]),
            p(&[("*", &[Permission::Read])]),
            p(&[("*", &[Permission::Sign])]),
            p(&[("web", &[Permission::Read]), ("db", &[Permission::Import])]),
            p(&[("web", &[Permission::Admin]), ("*", &[Permission::Import])]),
            p(&[("web", &[])]),
            p(&[]),
        ];
        for who in &cases {
            let v = who.read_visibility();
            for ns in ["web", "db", "other"] {
                for owner in ["alice", "bob"] {
                    let sql = v.all
                        || v.namespaces.iter().any(|n| n == ns)
                        || (v.owner.as_deref() == Some(owner) && v.owner_namespaces.as_ref().is_none_or(|l| l.iter().any(|n| n == ns)));
                    assert_eq!(sql, who.allows(ns, Permission::Read) || who.owns(owner, ns), "{:?} {ns} {owner}", who.permissions);
                }
            }
        }
    }
}
