//! `[rotation]`: SSH keyset rotation policies (issue 13), per namespace with per-keyset
//! overrides, and where hook directories live.
//!
//! ```toml
//! [rotation]
//! hooks_dir = "/etc/keyport/hooks.d"     # default: <config dir>/hooks.d
//! [rotation.namespaces.ssh]               # the default policy of namespace "ssh"
//! algorithm = "ed25519"
//! interval_secs = 2592000                 # rotate 30 days after the last rotation
//! jitter_secs = 3600
//! window = { days = ["sat", "sun"], start_hour = 2, end_hour = 5 }   # UTC
//! grace_secs = 300
//! confirmations = "private-key"           # none | authorized-key | private-key | both
//! retry_options = 1                       # TPP's bit mask: 1 retry, 2 connection errors, 4 any
//! hook_user = "keyport-hooks"
//! hook_timeout_secs = 60
//! hooks = { provision-public = ["/usr/lib/keyport/hooks/authorized-keys"] }
//! [rotation.keysets."ssh/deploy"]         # overrides for one keyset ("<namespace>/<name>")
//! confirmations = "none"
//! ```

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    /// Hook directories `<hooks_dir>/<stage>/`, run in lexical order after the configured
    /// hooks; unset = `hooks.d` next to the config file.
    #[serde(default)]
    pub hooks_dir: Option<PathBuf>,
    /// How many rotations advance at once (each may be running a hook).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Namespace → its default policy.
    #[serde(default)]
    pub namespaces: BTreeMap<String, PolicySpec>,
    /// `"<namespace>/<name>"` → overrides for one keyset.
    #[serde(default)]
    pub keysets: BTreeMap<String, PolicySpec>,
}

impl Default for RotationConfig {
    fn default() -> Self {
        RotationConfig { hooks_dir: None, concurrency: default_concurrency(), namespaces: BTreeMap::new(), keysets: BTreeMap::new() }
    }
}

fn default_concurrency() -> usize {
    4
}

/// Which manual confirmations a rotation waits for (TPP's 10250 and 10350).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Confirmations {
    #[default]
    None,
    AuthorizedKey,
    PrivateKey,
    Both,
}

impl Confirmations {
    pub fn authorized_key(self) -> bool {
        matches!(self, Confirmations::AuthorizedKey | Confirmations::Both)
    }
    pub fn private_key(self) -> bool {
        matches!(self, Confirmations::PrivateKey | Confirmations::Both)
    }
}

/// When automatic rotations may start: these weekdays (all if empty), between these UTC hours
/// (`start_hour` inclusive, `end_hour` exclusive; a window may wrap midnight).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    #[serde(default)]
    pub days: Vec<String>,
    #[serde(default)]
    pub start_hour: u8,
    #[serde(default = "default_end_hour")]
    pub end_hour: u8,
}

fn default_end_hour() -> u8 {
    24
}

/// The hook stages, as named in the config and in `hooks.d/<stage>/`.
pub const HOOK_STAGES: &[&str] = &["pre", "provision-public", "provision-private", "verify", "remove-old", "post", "rollback"];

pub const DAYS: &[&str] = &["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A policy as written: every field optional, so a keyset override sets only what differs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// Algorithm of new versions; unset = the keyset's own.
    pub algorithm: Option<String>,
    /// Rotate this long after the last rotation (or the keyset's creation).
    pub interval_secs: Option<u64>,
    /// Rotate when the active version is this old.
    pub max_age_secs: Option<u64>,
    /// Up to this much later, by a hash of the keyset id (spreads a fleet's rotations).
    pub jitter_secs: Option<u64>,
    pub window: Option<Window>,
    /// How long the old public key stays trusted after the new private key is in place
    /// (spent at 10355 before 10400).
    pub grace_secs: Option<u64>,
    pub confirmations: Option<Confirmations>,
    /// TPP's `Options` bit mask for automatic rotations: 1 retry on error, 2 retry on
    /// connection errors (a hook's exit 75 or a timeout), 4 retry on any error.
    pub retry_options: Option<u32>,
    /// Between retries (TPP: 15 minutes).
    pub retry_interval_secs: Option<u64>,
    /// Retries of one stage before the rotation rolls back.
    pub retry_limit: Option<u32>,
    /// Stage → programs, run before those in `hooks.d/<stage>/`.
    pub hooks: Option<BTreeMap<String, Vec<PathBuf>>>,
    /// The user hooks run as; unset = the daemon's user.
    pub hook_user: Option<String>,
    pub hook_timeout_secs: Option<u64>,
    /// Whether new versions are created exportable (devices without an agent need it).
    pub exportable: Option<bool>,
}

/// The effective policy of one keyset.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RotationPolicy {
    pub algorithm: Option<String>,
    pub interval_secs: Option<u64>,
    pub max_age_secs: Option<u64>,
    pub jitter_secs: u64,
    pub window: Option<Window>,
    pub grace_secs: u64,
    pub confirmations: Confirmations,
    pub retry_options: u32,
    pub retry_interval_secs: u64,
    pub retry_limit: u32,
    pub hooks: BTreeMap<String, Vec<PathBuf>>,
    pub hook_user: Option<String>,
    pub hook_timeout_secs: u64,
    pub exportable: Option<bool>,
}

impl RotationConfig {
    /// The keyset's policy: its override over its namespace's default over built-in defaults
    /// (no schedule, no confirmations, no hooks, no retries, 60 s hook timeout).
    pub fn policy(&self, namespace: &str, keyset: &str) -> RotationPolicy {
        let ks = self.keysets.get(&format!("{namespace}/{keyset}"));
        let ns = self.namespaces.get(namespace);
        macro_rules! pick {
            ($f:ident) => {
                ks.and_then(|s| s.$f.clone()).or_else(|| ns.and_then(|s| s.$f.clone()))
            };
        }
        RotationPolicy {
            algorithm: pick!(algorithm),
            interval_secs: pick!(interval_secs),
            max_age_secs: pick!(max_age_secs),
            jitter_secs: pick!(jitter_secs).unwrap_or(0),
            window: pick!(window),
            grace_secs: pick!(grace_secs).unwrap_or(0),
            confirmations: pick!(confirmations).unwrap_or_default(),
            retry_options: pick!(retry_options).unwrap_or(0),
            retry_interval_secs: pick!(retry_interval_secs).unwrap_or(900),
            retry_limit: pick!(retry_limit).unwrap_or(96),
            hooks: pick!(hooks).unwrap_or_default(),
            hook_user: pick!(hook_user),
            hook_timeout_secs: pick!(hook_timeout_secs).unwrap_or(60),
            exportable: pick!(exportable),
        }
    }

    /// Problems as (key path, message).
    pub fn check(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.concurrency == 0 {
            out.push(("rotation.concurrency".into(), "must be at least 1".into()));
        }
        for (ns, spec) in &self.namespaces {
            let at = format!("rotation.namespaces.{ns}");
            if !crate::core::names::is_valid_name(ns) {
                out.push((at.clone(), "namespace names use 1-64 letters, digits, '_' or '-'".into()));
            }
            spec.check(&at, &mut out);
        }
        for (key, spec) in &self.keysets {
            let at = format!("rotation.keysets.\"{key}\"");
            match key.split_once('/') {
                Some((ns, name)) if crate::core::names::is_valid_name(ns) && crate::core::names::is_valid_name(name) => {}
                _ => out.push((at.clone(), "keyset overrides are named \"<namespace>/<keyset name>\", e.g. \"ssh/deploy\"".into())),
            }
            spec.check(&at, &mut out);
        }
        out
    }
}

impl PolicySpec {
    fn check(&self, at: &str, out: &mut Vec<(String, String)>) {
        let mut p = |k: &str, m: String| out.push((format!("{at}.{k}"), m));
        if let Some(a) = &self.algorithm {
            if crate::material::algorithm::Algorithm::parse(a).is_none() {
                p("algorithm", format!("'{a}' is not one of rsa-2048, rsa-3072, rsa-4096, ec-p256, ec-p384, ec-p521, ed25519"));
            }
        }
        for (k, v) in [("interval_secs", self.interval_secs), ("max_age_secs", self.max_age_secs)] {
            if v.is_some_and(|v| v < 60) {
                p(k, "must be at least 60 (seconds); remove it for no scheduled rotation".into());
            }
        }
        if let Some(w) = &self.window {
            for d in &w.days {
                if !DAYS.contains(&d.to_ascii_lowercase().as_str()) {
                    p("window.days", format!("'{d}' is not a day; use mon, tue, wed, thu, fri, sat, sun"));
                }
            }
            if w.start_hour > 23 || w.end_hour > 24 || w.start_hour == w.end_hour {
                p("window", "start_hour is 0-23, end_hour 1-24 (UTC), and they differ (a window may wrap midnight)".into());
            }
        }
        if let Some(o) = self.retry_options {
            if o > 7 {
                p(
                    "retry_options",
                    format!("{o} is not TPP's Options mask: 0 stop, 1 retry on error, 2 connection errors, 4 any error (3, 6, 7 combine)"),
                );
            }
        }
        if self.retry_interval_secs == Some(0) {
            p("retry_interval_secs", "must be at least 1".into());
        }
        if self.hook_timeout_secs.is_some_and(|t| t == 0 || t > 3600) {
            p("hook_timeout_secs", "must be between 1 and 3600".into());
        }
        if let Some(u) = &self.hook_user {
            if nix::unistd::User::from_name(u).ok().flatten().is_none() {
                p("hook_user", format!("no user '{u}' on this host; create it or fix the name"));
            }
        }
        for (stage, programs) in self.hooks.iter().flatten() {
            if !HOOK_STAGES.contains(&stage.as_str()) {
                p("hooks", format!("'{stage}' is not a hook stage; use one of {}", HOOK_STAGES.join(", ")));
            }
            for prog in programs {
                if !prog.is_absolute() {
                    p(&format!("hooks.{stage}"), format!("{} is not an absolute path", prog.display()));
                } else if !prog.is_file() {
                    p(&format!("hooks.{stage}"), format!("{} does not exist; install it or fix the path", prog.display()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyset_overrides_namespace_overrides_defaults() {
        let c: RotationConfig = toml::from_str(
            r#"
            [namespaces.ssh]
            interval_secs = 86400
            confirmations = "both"
            hook_timeout_secs = 5
            [keysets."ssh/deploy"]
            confirmations = "none"
            "#,
        )
        .unwrap();
        assert!(c.check().is_empty(), "{:?}", c.check());
        let p = c.policy("ssh", "deploy");
        assert_eq!((p.interval_secs, p.confirmations, p.hook_timeout_secs), (Some(86400), Confirmations::None, 5));
        assert_eq!(c.policy("ssh", "other").confirmations, Confirmations::Both);
        let d = c.policy("default", "x");
        assert_eq!((d.interval_secs, d.confirmations, d.retry_options, d.hook_timeout_secs), (None, Confirmations::None, 0, 60));
    }

    #[test]
    fn check_names_each_problem() {
        let c: RotationConfig = toml::from_str(
            r#"
            [namespaces.ssh]
            algorithm = "dsa"
            retry_options = 9
            window = { days = ["funday"], start_hour = 3, end_hour = 3 }
            hooks = { deploy = ["relative"] }
            [keysets.nonamespace]
            "#,
        )
        .unwrap();
        let paths: Vec<String> = c.check().into_iter().map(|(p, _)| p).collect();
        for want in [
            "rotation.namespaces.ssh.algorithm",
            "rotation.namespaces.ssh.retry_options",
            "rotation.namespaces.ssh.window.days",
            "rotation.namespaces.ssh.window",
            "rotation.namespaces.ssh.hooks",
            "rotation.keysets.\"nonamespace\"",
        ] {
            assert!(paths.iter().any(|p| p == want), "{want} missing from {paths:?}");
        }
    }
}
