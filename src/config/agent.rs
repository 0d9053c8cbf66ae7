//! `[agent]`: the ssh-agent listener (`api::agent`) and the restrictions on signing that every
//! signature obeys, through the agent or `POST /keyport/v1/keys/{id}/sign` (`core::sign`).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The agent's Unix socket (`SSH_AUTH_SOCK`). Absent: no agent listener (the embedded
    /// default sets `./run/agent.sock`). systemd may pass it instead (`keyport-agent.socket`).
    pub socket: Option<PathBuf>,
    /// Socket file mode, octal string such as "0660".
    #[serde(default = "default_mode")]
    pub socket_mode: String,
    /// Owner user and group of the socket file (names or numbers); unchanged when absent.
    pub socket_owner: Option<String>,
    pub socket_group: Option<String>,
    /// Open agent connections in all; one over the cap is closed at once (an idle listener
    /// holds none).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Open agent connections per uid, so one local user cannot take every slot.
    #[serde(default = "default_per_uid")]
    pub max_connections_per_uid: usize,
    /// Largest agent message accepted, in bytes (OpenSSH's own agent takes 256 KiB).
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// Seconds a message may take to arrive once its first byte has.
    #[serde(default = "default_message_timeout")]
    pub message_timeout_secs: u64,
    /// Seconds a connection may stay without a request before it is closed. An `sshd` using
    /// keyport as `HostKeyAgent` keeps its connection for the whole SSH session and signs again
    /// at each rekey: raise this where that matters.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// Signatures per principal per minute (through the agent and the native API together);
    /// unset = no limit. A burst of up to one minute's budget is allowed.
    pub signatures_per_minute: Option<u32>,
    /// Seconds a confirm hook may take before it is killed and the signature refused.
    #[serde(default = "default_confirm_timeout")]
    pub confirm_timeout_secs: u64,
    /// A namespace here makes `ssh-add FILE` import the key into the token (needs `import` on
    /// it); unset, ADD_IDENTITY answers SSH_AGENT_FAILURE.
    pub add: Option<String>,
    /// Per-namespace restrictions on signing.
    #[serde(default)]
    pub namespaces: BTreeMap<String, AgentNamespace>,
    /// Per-key restrictions (by key id, the hex CKA_ID), applied on top of the namespace's:
    /// a uid must be in both `allowed_uids` lists, and both confirm hooks must say yes.
    #[serde(default)]
    pub keys: BTreeMap<String, AgentNamespace>,
}

/// Restrictions on signing with a namespace's keys (`[agent.namespaces.<ns>]`) or one key's
/// (`[agent.keys.<id>]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentNamespace {
    /// Only callers on the Unix sockets with one of these uids may sign with these keys
    /// (checked in addition to the `sign` permission; callers over TCP are refused).
    pub allowed_uids: Option<Vec<u32>>,
    /// A program (argv, no shell) that must exit 0 before each signature with these keys,
    /// like `ssh-add -c`; see `core::sign::confirm` for its environment.
    pub confirm: Option<Vec<String>>,
}

fn default_mode() -> String {
    "0660".into()
}
fn default_max_connections() -> usize {
    128
}
fn default_per_uid() -> usize {
    32
}
fn default_max_message() -> usize {
    256 * 1024
}
fn default_message_timeout() -> u64 {
    10
}
fn default_idle_timeout() -> u64 {
    300
}
fn default_confirm_timeout() -> u64 {
    30
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            socket: None,
            socket_mode: default_mode(),
            socket_owner: None,
            socket_group: None,
            max_connections: default_max_connections(),
            max_connections_per_uid: default_per_uid(),
            max_message_bytes: default_max_message(),
            message_timeout_secs: default_message_timeout(),
            idle_timeout_secs: default_idle_timeout(),
            signatures_per_minute: None,
            confirm_timeout_secs: default_confirm_timeout(),
            add: None,
            namespaces: BTreeMap::new(),
            keys: BTreeMap::new(),
        }
    }
}

impl AgentConfig {
    pub fn mode(&self) -> u32 {
        u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8).unwrap_or(0o660)
    }

    /// The confirm hooks a signature with key `key_id` of `namespace` needs, with the config
    /// path each comes from: the namespace's, then the key's.
    pub fn confirms<'a>(&'a self, namespace: &'a str, key_id: &'a str) -> impl Iterator<Item = (String, &'a [String])> + 'a {
        let ns =
            self.namespaces.get(namespace).and_then(|n| n.confirm.as_deref()).map(|c| (format!("agent.namespaces.{namespace}.confirm"), c));
        let key = self.keys.get(key_id).and_then(|n| n.confirm.as_deref()).map(|c| (format!("agent.keys.{key_id}.confirm"), c));
        ns.into_iter().chain(key)
    }

    /// The `allowed_uids` lists a signature with key `key_id` of `namespace` must pass, with
    /// the config path each comes from.
    pub fn allowed_uids<'a>(&'a self, namespace: &'a str, key_id: &'a str) -> impl Iterator<Item = (String, &'a [u32])> + 'a {
        let ns = self
            .namespaces
            .get(namespace)
            .and_then(|n| n.allowed_uids.as_deref())
            .map(|u| (format!("agent.namespaces.{namespace}.allowed_uids"), u));
        let key = self.keys.get(key_id).and_then(|n| n.allowed_uids.as_deref()).map(|u| (format!("agent.keys.{key_id}.allowed_uids"), u));
        ns.into_iter().chain(key)
    }

    /// Problems as (key path, message).
    pub fn check(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8).map_or(true, |m| m > 0o777) {
            out.push(("agent.socket_mode".into(), format!("'{}' is not an octal mode such as \"0660\"", self.socket_mode)));
        }
        if self.max_connections == 0 {
            out.push(("agent.max_connections".into(), "must be at least 1".into()));
        }
        if self.max_connections_per_uid == 0 || self.max_connections_per_uid > self.max_connections {
            out.push(("agent.max_connections_per_uid".into(), "must be at least 1 and at most agent.max_connections".into()));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_message_bytes) {
            out.push(("agent.max_message_bytes".into(), "must be between 1024 and 16777216".into()));
        }
        if self.message_timeout_secs == 0 || self.idle_timeout_secs == 0 {
            out.push(("agent".into(), "message_timeout_secs and idle_timeout_secs must be at least 1".into()));
        }
        if self.signatures_per_minute == Some(0) {
            out.push(("agent.signatures_per_minute".into(), "0 would refuse every signature; remove the key for no limit".into()));
        }
        if let Some(ns) = &self.add {
            if !crate::names::is_valid_name(ns) {
                out.push(("agent.add".into(), "namespace names use 1-64 letters, digits, '_' or '-'".into()));
            }
        }
        for (ns, n) in &self.namespaces {
            if !crate::names::is_valid_name(ns) {
                out.push((format!("agent.namespaces.{ns}"), "namespace names use 1-64 letters, digits, '_' or '-'".into()));
            }
            if let Some(argv) = &n.confirm {
                match argv.first() {
                    Some(p) if std::path::Path::new(p).is_absolute() => {}
                    _ => out.push((
                        format!("agent.namespaces.{ns}.confirm"),
                        "give the program as an absolute path, then its arguments: [\"/usr/local/bin/ok\", \"--flag\"]".into(),
                    )),
                }
            }
        }
        for (id, k) in &self.keys {
            if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
                out.push((format!("agent.keys.{id}"), "name a key by its id: the lowercase hex that `keyport keys list` shows".into()));
            }
            if let Some(argv) = &k.confirm {
                match argv.first() {
                    Some(p) if std::path::Path::new(p).is_absolute() => {}
                    _ => out.push((
                        format!("agent.keys.{id}.confirm"),
                        "give the program as an absolute path, then its arguments: [\"/usr/local/bin/ok\", \"--flag\"]".into(),
                    )),
                }
            }
        }
        if self.confirm_timeout_secs == 0 {
            out.push(("agent.confirm_timeout_secs".into(), "must be at least 1".into()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, EMBEDDED_DEFAULT};

    #[test]
    fn the_example_and_the_embedded_default_have_an_agent() {
        let cfg: Config = toml::from_str(include_str!("../../config/keyport.toml")).unwrap();
        assert!(cfg.agent.socket.is_some() && cfg.agent.check().is_empty(), "{:?}", cfg.agent.check());
        let uids: Vec<_> = cfg.agent.allowed_uids("ssh", "00").collect();
        assert_eq!(uids, vec![("agent.namespaces.ssh.allowed_uids".to_string(), &[0, 1000][..])]);
        assert_eq!(cfg.agent.allowed_uids("web", "00").count(), 0);
        let cfg: Config = toml::from_str(EMBEDDED_DEFAULT).unwrap();
        assert_eq!(cfg.agent.socket.as_deref(), Some(std::path::Path::new("./run/agent.sock")));
    }

    #[test]
    fn bad_limits_are_problems() {
        let mut cfg: Config = toml::from_str(EMBEDDED_DEFAULT).unwrap();
        cfg.agent.max_connections_per_uid = cfg.agent.max_connections + 1;
        cfg.agent.signatures_per_minute = Some(0);
        cfg.agent.socket_mode = "999".into();
        cfg.agent.keys.insert("Web-Key".into(), super::AgentNamespace { allowed_uids: None, confirm: Some(vec!["ok".into()]) });
        let paths: Vec<String> = cfg.check().into_iter().map(|p| p.path).collect();
        for p in [
            "agent.max_connections_per_uid",
            "agent.signatures_per_minute",
            "agent.socket_mode",
            "agent.keys.Web-Key",
            "agent.keys.Web-Key.confirm",
        ] {
            assert!(paths.iter().any(|x| x == p), "{p} in {paths:?}");
        }
    }
}
