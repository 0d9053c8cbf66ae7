//! Configuration: one TOML file, overridable by `KEYPORT_…` environment variables.
//!
//! The structs mirror the code's shape (tokens → `token`, listeners → `api`, principals →
//! `core::authz`). Every struct rejects unknown keys so a typo is an error, not a silent default.
//! Secrets never live in this file: PINs come from a file, an environment variable or a systemd
//! credential; API keys are stored as SHA-256 hashes.

mod agent;
mod apiops;
mod certimport;
mod kps;
pub mod paths;
mod rotation;
mod schema;
mod sync;
mod tpp;

pub use agent::{AgentConfig, AgentNamespace};
pub use apiops::{ApiOpsConfig, ApiOpsProject};
pub use certimport::{EnrollmentMethod, EnrollmentProfile, SourceFormat};
pub use kps::{KmsKey, KpsAccessKey, KpsConfig, KpsProject};
pub use rotation::{Confirmations, PolicySpec, RotationConfig, RotationPolicy, Window, DAYS, HOOK_STAGES};
pub use sync::SyncConfig;
pub use sync::{RemoteKind, TlspcRemoteConfig, TLSPC_MAX_BATCH};
pub use tpp::{check_password_hash, hash_password, verify_password, TppConfig, TppUser};

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The embedded default: a SoftHSM token, socket and state under `./run`.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the SQLite store, the lock file and generated files (TLS certificate) live.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default)]
    pub listen: Listen,
    #[serde(default)]
    pub limits: Limits,
    /// At least one token; the first is the default for requests that name none.
    pub tokens: Vec<TokenConfig>,
    #[serde(default)]
    pub principals: Vec<Principal>,
    /// Per-namespace policy (exportable by default or not).
    #[serde(default)]
    pub namespaces: BTreeMap<String, NamespacePolicy>,
    /// The TLS Protect Cloud face (`/v1/edge…`, `/outagedetection/v1/certificates/imports`).
    #[serde(default)]
    pub tlspc: TlspcConfig,
    /// The Huawei Cloud KPS face (`/v3/{project_id}/keypairs…`).
    #[serde(default)]
    pub kps: KpsConfig,
    /// The project/environment key face (`/apiops/projects/{projectName}/keys/`).
    #[serde(default)]
    pub apiops: ApiOpsConfig,
    /// The Venafi TPP WebSDK SSH face (`/vedauth/…`, `/vedsdk/…`).
    #[serde(default)]
    pub tpp: TppConfig,
    /// Enrollment profiles of the certificate import face (`/iot/api/v1/certificate-import/…`).
    #[serde(default)]
    pub enrollment_profiles: Vec<EnrollmentProfile>,
    /// Sync of wrapped keys and certificates to the remote vault (`src/sync/`).
    #[serde(default)]
    pub sync: SyncConfig,
    /// The ssh-agent listener and the restrictions on signing (`config/agent.rs`).
    #[serde(default)]
    pub agent: AgentConfig,
    /// SSH keyset rotation policies and hook directories (`config/rotation.rs`).
    #[serde(default)]
    pub rotation: RotationConfig,
    /// The optional metrics-only listener (`api::metrics`).
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// `[metrics]`: a second HTTP listener that answers only `GET /metrics`, without
/// authentication, so Prometheus can scrape without an API key. It shows counts, token names
/// and route templates only: no key or namespace names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port`, e.g. `127.0.0.1:9750`; absent: no metrics listener.
    pub listen: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlspcConfig {
    /// Namespace keys imported through this face land in.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The edge instance's name in `GET /v1/edgeinstances`.
    #[serde(default = "default_edge_name")]
    pub edge_instance_name: String,
    /// Whether imported keys are exportable; the namespace policy decides when absent.
    pub exportable: Option<bool>,
}

fn default_namespace() -> String {
    "default".into()
}

fn default_edge_name() -> String {
    "keyport".into()
}

impl Default for TlspcConfig {
    fn default() -> Self {
        TlspcConfig { namespace: default_namespace(), edge_instance_name: default_edge_name(), exportable: None }
    }
}

fn default_state_dir() -> PathBuf {
    paths::state_dir()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Unix socket path; the main door for local callers (identity from SO_PEERCRED).
    pub socket: Option<PathBuf>,
    /// Socket file mode, octal string such as "0660".
    #[serde(default = "default_socket_mode")]
    pub socket_mode: String,
    /// Owner user and group of the socket file (names or numbers); unchanged when absent.
    pub socket_owner: Option<String>,
    pub socket_group: Option<String>,
    /// TCP address; must be a loopback address.
    pub tcp: Option<String>,
    #[serde(default)]
    pub tls: TlsConfig,
}

fn default_socket_mode() -> String {
    "0660".into()
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            socket: Some(paths::api_socket()),
            socket_mode: default_socket_mode(),
            socket_owner: None,
            socket_group: None,
            tcp: Some("127.0.0.1:8750".into()),
            tls: TlsConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", tag = "mode")]
pub enum TlsConfig {
    /// A certificate made at first start whose key lives in the first token.
    #[default]
    SelfSigned,
    /// A certificate chain and key from files (PEM).
    Files { cert: PathBuf, key: PathBuf },
    /// Plain HTTP; refused on anything but a loopback address.
    Plain,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Open connections per listener (the socket and TCP each have their own); past it a new
    /// connection is answered 503 with Retry-After and closed.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Open connections one uid (socket) or one address (TCP) may hold on a listener.
    #[serde(default = "default_max_connections_per_peer")]
    pub max_connections_per_peer: usize,
    /// Socket connections kept for uids whose principal is admin on every namespace (`"*"`),
    /// so other callers filling the socket never lock the operator out (at most
    /// `max_connections - 1`: someone else can always connect).
    #[serde(default = "default_admin_reserve")]
    pub admin_reserve_connections: usize,
    /// Seconds a client may take to send its request headers.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// Seconds a request's body may take to arrive before the face has authenticated the caller
    /// (KPS signs the body, so its AK/SK requests are read under this deadline).
    #[serde(default = "default_unauthenticated_body")]
    pub unauthenticated_body_secs: u64,
    /// Seconds one request may take end to end (body read, work, answer).
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// Seconds an idle keep-alive connection stays open.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// Key derivations (passphrase-protected imports) running at once (`core::kdf`).
    #[serde(default = "default_kdf_concurrency")]
    pub kdf_concurrency: usize,
    /// Key derivations waiting for a slot; past it requests get 503 with Retry-After.
    #[serde(default = "default_kdf_queue")]
    pub kdf_queue: usize,
    /// Key derivations one principal may have running or waiting.
    #[serde(default = "default_kdf_per_principal")]
    pub kdf_per_principal: usize,
}

fn default_max_body() -> usize {
    4 * 1024 * 1024
}
fn default_max_connections() -> usize {
    256
}
fn default_max_connections_per_peer() -> usize {
    64
}
fn default_admin_reserve() -> usize {
    16
}
fn default_header_timeout() -> u64 {
    10
}
fn default_unauthenticated_body() -> u64 {
    10
}
fn default_request_timeout() -> u64 {
    120
}
fn default_idle_timeout() -> u64 {
    60
}
fn default_kdf_concurrency() -> usize {
    2
}
fn default_kdf_queue() -> usize {
    16
}
fn default_kdf_per_principal() -> usize {
    2
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: default_max_body(),
            max_connections: default_max_connections(),
            max_connections_per_peer: default_max_connections_per_peer(),
            admin_reserve_connections: default_admin_reserve(),
            header_timeout_secs: default_header_timeout(),
            unauthenticated_body_secs: default_unauthenticated_body(),
            request_timeout_secs: default_request_timeout(),
            idle_timeout_secs: default_idle_timeout(),
            kdf_concurrency: default_kdf_concurrency(),
            kdf_queue: default_kdf_queue(),
            kdf_per_principal: default_kdf_per_principal(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The name requests and the store use for this token.
    pub name: String,
    /// Path of the PKCS#11 module (.so).
    pub module: PathBuf,
    /// Token label; one of `label` or `serial` is required (never a slot index alone).
    pub label: Option<String>,
    pub serial: Option<String>,
    pub pin: PinSource,
    /// Sessions in the pool (blocking workers); default: number of CPUs, at least 2.
    pub sessions: Option<usize>,
    /// SoftHSM only: keep the token under this folder and create it on first start.
    pub softhsm: Option<SoftHsmProvision>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoftHsmProvision {
    /// Folder holding SoftHSM's token files and its generated `softhsm2.conf`.
    pub dir: PathBuf,
}

/// Where a PIN comes from. Never the command line, never the config file itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum PinSource {
    /// A file holding the PIN (trailing newline ignored). With `softhsm`, created on first start.
    File(PathBuf),
    /// An environment variable's name.
    Env(String),
    /// A systemd credential name, read from `$CREDENTIALS_DIRECTORY/<name>`.
    Credential(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    pub name: String,
    /// Unix socket callers with one of these uids match.
    #[serde(default)]
    pub uids: Vec<u32>,
    /// Unix socket callers with one of these primary gids match.
    #[serde(default)]
    pub gids: Vec<u32>,
    /// SHA-256 (hex) of API keys that identify this principal on either listener.
    #[serde(default)]
    pub api_key_sha256: Vec<String>,
    /// Namespace (or "*") → permissions.
    #[serde(default)]
    pub permissions: BTreeMap<String, Vec<Permission>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Permission {
    Import,
    Read,
    ExportPrivate,
    Manage,
    Deploy,
    Sync,
    Admin,
    /// Sign with the namespace's private keys (ssh-agent, `POST keys/{id}/sign`); the key
    /// never leaves the token.
    Sign,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespacePolicy {
    /// Whether keys created in this namespace are exportable when the request does not say.
    #[serde(default)]
    pub exportable_by_default: bool,
    /// Whether a request may ask for an exportable key at all.
    #[serde(default = "yes")]
    pub allow_exportable: bool,
    /// Whether an export may hand out a private key without a passphrase (unencrypted).
    #[serde(default)]
    pub allow_unencrypted_export: bool,
    /// Whether the principal that created or imported a key may export it without the
    /// `export-private` permission (only while it still holds some permission in the namespace).
    /// Off by default: `import` alone never lets a principal take keys back out.
    #[serde(default)]
    pub owners_may_export: bool,
    /// The SSH format TPP's ExportSelfServicePrivateKey uses when the request names none
    /// (`OpenSSH`, `PuTTY`, `SSH2`, `Tectia`); unset = OpenSSH.
    #[serde(default)]
    pub ssh_export_format: Option<String>,
}

fn yes() -> bool {
    true
}

/// One configuration problem: where it is and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The top-level keys of [`Config`]: an environment variable `KEYPORT_<KEY>[__…]` overrides
/// config only when its first part is one of these (so `KEYPORT_LOG`, `KEYPORT_CONFIG` or a
/// PIN in `KEYPORT_STAGING_PIN` are never taken for config).
const TOP_LEVEL_KEYS: &[&str] = &[
    "state_dir",
    "listen",
    "limits",
    "tokens",
    "principals",
    "namespaces",
    "tlspc",
    "kps",
    "apiops",
    "tpp",
    "enrollment_profiles",
    "sync",
    "agent",
    "metrics",
    "rotation",
];

/// The config overrides among `vars`: `KEYPORT_STATE_DIR` → `state_dir`, `KEYPORT_LISTEN__TCP`
/// → `listen.tcp` (`__` separates levels; the `KEYPORT__…` spelling is accepted too).
fn env_overrides(vars: impl Iterator<Item = (String, String)>) -> config::Map<String, String> {
    vars.filter_map(|(k, v)| {
        let rest = k.strip_prefix("KEYPORT__").or_else(|| k.strip_prefix("KEYPORT_"))?;
        let first = rest.split("__").next()?.to_ascii_lowercase();
        TOP_LEVEL_KEYS.contains(&first.as_str()).then(|| (rest.to_string(), v))
    })
    .collect()
}

/// Loads a config file (or the embedded default) with `KEYPORT_…` overrides, e.g.
/// `KEYPORT_LISTEN__TCP=127.0.0.1:9000` or `KEYPORT_STATE_DIR=/var/lib/keyport` (the form the
/// docs and the systemd unit use).
pub fn load(file: Option<&Path>) -> Result<Config, Vec<Problem>> {
    let builder = config::Config::builder();
    let builder = match file {
        Some(p) => builder.add_source(config::File::from(p.to_path_buf()).format(config::FileFormat::Toml).required(true)),
        None => builder.add_source(config::File::from_str(&paths::embedded_default(EMBEDDED_DEFAULT), config::FileFormat::Toml)),
    };
    let built = builder
        .add_source(config::Environment::default().separator("__").try_parsing(true).source(Some(env_overrides(std::env::vars()))))
        .build()
        .map_err(|e| vec![schema::from_config_error(e)])?;
    let cfg: Config = built.clone().try_deserialize().map_err(|e| schema::problems(&built, e))?;
    let problems = cfg.check();
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(problems)
    }
}

impl Config {
    /// Checks what serde cannot: references between sections, files that must exist, names.
    pub fn check(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut p = |path: String, message: String| out.push(Problem { path, message });
        if self.tokens.is_empty() {
            p("tokens".into(), "no token configured; add a [[tokens]] section".into());
        }
        let mut names = std::collections::HashSet::new();
        for (i, t) in self.tokens.iter().enumerate() {
            let at = format!("tokens[{i}]");
            if !crate::names::is_valid_name(&t.name) {
                p(format!("{at}.name"), format!("'{}' is not a valid name: use 1-64 letters, digits, '_' or '-'", t.name));
            }
            if !names.insert(t.name.clone()) {
                p(format!("{at}.name"), format!("token name '{}' is used twice; names must be unique", t.name));
            }
            if t.label.is_none() && t.serial.is_none() {
                p(at.clone(), "set `label` or `serial` to choose the token (slot indexes change between boots)".into());
            }
            if t.softhsm.is_none() && !t.module.exists() {
                p(format!("{at}.module"), format!("PKCS#11 module {} does not exist; install it or fix the path", t.module.display()));
            }
            if t.sessions == Some(0) {
                p(format!("{at}.sessions"), "must be at least 1".into());
            }
            match &t.pin {
                PinSource::File(f) if t.softhsm.is_none() && !f.exists() => p(
                    format!("{at}.pin.file"),
                    format!("PIN file {} does not exist; create it (mode 0600) or point to the right file", f.display()),
                ),
                PinSource::Env(v) if std::env::var_os(v).is_none() => {
                    p(format!("{at}.pin.env"), format!("environment variable {v} is not set; export it before starting keyport"))
                }
                PinSource::Credential(c) => match std::env::var_os("CREDENTIALS_DIRECTORY") {
                    None => p(
                        format!("{at}.pin.credential"),
                        format!("CREDENTIALS_DIRECTORY is not set; run under systemd with LoadCredential={c}:… or use pin.file"),
                    ),
                    Some(d) if !Path::new(&d).join(c).exists() => p(
                        format!("{at}.pin.credential"),
                        format!("credential {c} not found in $CREDENTIALS_DIRECTORY; add LoadCredential={c}:<file> to the unit"),
                    ),
                    _ => {}
                },
                _ => {}
            }
        }
        if let Some(m) = &self.metrics.listen {
            match m.parse::<std::net::SocketAddr>() {
                Err(_) => p("metrics.listen".into(), format!("'{m}' is not host:port; use an address like 127.0.0.1:9750")),
                Ok(a) if self.listen.tcp.as_deref().and_then(|t| t.parse::<std::net::SocketAddr>().ok()) == Some(a) => {
                    p("metrics.listen".into(), format!("{a} is listen.tcp as well; give the metrics listener its own port"))
                }
                Ok(_) => {}
            }
        }
        if let Some(tcp) = &self.listen.tcp {
            match tcp.parse::<std::net::SocketAddr>() {
                Err(_) => p("listen.tcp".into(), format!("'{tcp}' is not an address:port such as 127.0.0.1:8750")),
                Ok(a) if !a.ip().is_loopback() => {
                    p("listen.tcp".into(), format!("{tcp} is not a loopback address; keyport only listens on 127.0.0.1 or ::1"))
                }
                _ => {}
            }
        }
        if self.listen.socket.is_none() && self.listen.tcp.is_none() {
            p("listen".into(), "neither `socket` nor `tcp` is set; keyport would be unreachable".into());
        }
        if u32::from_str_radix(self.listen.socket_mode.trim_start_matches("0o"), 8).map_or(true, |m| m > 0o777) {
            p("listen.socket_mode".into(), format!("'{}' is not an octal mode such as \"0660\"", self.listen.socket_mode));
        }
        if let TlsConfig::Files { cert, key } = &self.listen.tls {
            for (k, f) in [("cert", cert), ("key", key)] {
                if !f.exists() {
                    p(format!("listen.tls.{k}"), format!("{} does not exist", f.display()));
                }
            }
        }
        if !crate::names::is_valid_name(&self.tlspc.namespace) {
            p("tlspc.namespace".into(), "namespace names use 1-64 letters, digits, '_' or '-'".into());
        }
        let token_names: Vec<&str> = self.tokens.iter().map(|t| t.name.as_str()).collect();
        for (path, message) in self.apiops.check(&token_names) {
            p(path, message);
        }
        {
            let tokens: Vec<String> = self.tokens.iter().map(|t| t.name.clone()).collect();
            let principals: Vec<String> = self.principals.iter().map(|p| p.name.clone()).collect();
            self.kps.check(&tokens, &principals, &mut out);
            for (path, message) in self.tpp.check(&principals) {
                out.push(Problem { path, message });
            }
        }
        let mut p = |path: String, message: String| out.push(Problem { path, message });
        for (path, message) in self.sync.check() {
            p(path, message);
        }
        for (path, message) in self.agent.check().into_iter().chain(self.rotation.check()) {
            p(path, message);
        }
        let mut profile_ids = std::collections::HashSet::new();
        for (i, ep) in self.enrollment_profiles.iter().enumerate() {
            for (k, m) in ep.problems() {
                p(format!("enrollment_profiles[{i}].{k}"), m);
            }
            if !profile_ids.insert(ep.id.clone()) {
                p(format!("enrollment_profiles[{i}].id"), format!("profile id '{}' is used twice; ids must be unique", ep.id));
            }
        }
        let l = &self.limits;
        if l.max_connections == 0 {
            p("limits.max_connections".into(), "must be at least 1".into());
        }
        for (k, v) in [
            ("max_connections_per_peer", l.max_connections_per_peer),
            ("kdf_concurrency", l.kdf_concurrency),
            ("kdf_per_principal", l.kdf_per_principal),
        ] {
            if v == 0 {
                p(format!("limits.{k}"), "must be at least 1".into());
            }
        }
        if l.unauthenticated_body_secs == 0 {
            p("limits.unauthenticated_body_secs".into(), "must be at least 1".into());
        }
        let mut principal_names = std::collections::HashSet::new();
        for (i, pr) in self.principals.iter().enumerate() {
            // Ownership, audit entries, jobs and TPP/KPS bindings name a principal: two with
            // one name would share each other's keys.
            if !principal_names.insert(pr.name.as_str()) {
                p(format!("principals[{i}].name"), format!("principal name '{}' is used twice; names must be unique", pr.name));
            }
            for (j, h) in pr.api_key_sha256.iter().enumerate() {
                if h.len() != 64 || hex::decode(h).is_err() {
                    p(
                        format!("principals[{i}].api_key_sha256[{j}]"),
                        "not a SHA-256 hex digest; store `printf %s KEY | sha256sum`, never the key".into(),
                    );
                }
            }
            for ns in pr.permissions.keys() {
                if ns != "*" && !crate::names::is_valid_name(ns) {
                    p(
                        format!("principals[{i}].permissions.{ns}"),
                        "namespace names use 1-64 letters, digits, '_' or '-'; \"*\" means every namespace".into(),
                    );
                }
            }
        }
        out
    }

    pub fn socket_mode(&self) -> u32 {
        u32::from_str_radix(self.listen.socket_mode.trim_start_matches("0o"), 8).unwrap_or(0o660)
    }

    pub fn policy(&self, namespace: &str) -> NamespacePolicy {
        self.namespaces.get(namespace).cloned().unwrap_or(NamespacePolicy {
            exportable_by_default: false,
            allow_exportable: true,
            allow_unencrypted_export: false,
            owners_may_export: false,
            ssh_export_format: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses() {
        let cfg: Config = toml::from_str(EMBEDDED_DEFAULT).unwrap();
        assert_eq!(cfg.listen.tcp.as_deref(), Some("127.0.0.1:8750"));
        assert_eq!(cfg.tokens.len(), 1);
    }

    #[test]
    fn annotated_example_parses_and_lists_every_section() {
        let text = include_str!("../../config/keyport.toml");
        let cfg: Config = toml::from_str(text).unwrap();
        assert!(cfg.tokens.len() >= 2, "the example shows several tokens");
        assert!(!cfg.principals.is_empty());
        assert!(matches!(cfg.listen.tls, TlsConfig::Files { .. }));
        assert!(cfg.namespaces.contains_key("ssh"));
        assert_eq!(cfg.apiops.namespace("MyProject"), Some("web"));
        assert!(cfg.check().iter().all(|p| !p.path.starts_with("apiops")), "the apiops example references real tokens");
        assert!(!cfg.kps.projects.is_empty() && !cfg.kps.access_keys.is_empty(), "the example shows the KPS face");
        let mut problems = Vec::new();
        let tokens: Vec<String> = cfg.tokens.iter().map(|t| t.name.clone()).collect();
        let principals: Vec<String> = cfg.principals.iter().map(|p| p.name.clone()).collect();
        cfg.kps.check(&tokens, &principals, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(!cfg.tpp.users.is_empty() && cfg.tpp.check(&principals).is_empty(), "the example shows a TPP user of a real principal");
        assert!(cfg.sync.enabled() && cfg.sync.namespaces.contains(&"web".to_string()));
        assert_eq!(cfg.sync.remote, RemoteKind::OpenBao);
        // The commented [sync.tlspc] block parses, and checks clean with remote = "tlspc".
        let block: String = text
            .lines()
            .skip_while(|l| *l != "#[sync.tlspc]")
            .skip(1)
            .take_while(|l| l.starts_with('#'))
            .map(|l| format!("{}\n", &l[1..]))
            .collect();
        let mut tlspc: TlspcRemoteConfig = toml::from_str(&block).unwrap();
        assert_eq!((tlspc.batch_size, tlspc.poll_secs), (100, 60));
        tlspc.ca_file = None;
        tlspc.address = "http://127.0.0.1:8443".into();
        let sync =
            SyncConfig { remote: RemoteKind::Tlspc, tlspc: Some(tlspc), namespaces: cfg.sync.namespaces.clone(), ..SyncConfig::default() };
        assert!(sync.enabled() && sync.check().is_empty(), "{:?}", sync.check());
    }

    #[test]
    fn sync_over_plain_http_only_to_loopback() {
        let mut cfg: Config = toml::from_str(EMBEDDED_DEFAULT).unwrap();
        assert!(cfg.sync.enabled(), "the embedded default syncs to the local vault ./scripts/run starts");
        assert!(cfg.check().iter().all(|p| !p.path.starts_with("sync")), "{:?}", cfg.check());
        cfg.sync.address = Some("http://vault.example:8200".into());
        cfg.sync.token = Some(PinSource::Env("PATH".into()));
        cfg.sync.namespaces = vec!["default".into()];
        assert!(cfg.check().iter().any(|p| p.path == "sync.address"), "{:?}", cfg.check());
        cfg.sync.address = Some("http://127.0.0.1:8200".into());
        assert!(cfg.check().iter().all(|p| !p.path.starts_with("sync")), "{:?}", cfg.check());
    }

    #[test]
    fn the_example_shows_pem_and_xml_enrollment_profiles() {
        let cfg: Config = toml::from_str(include_str!("../../config/keyport.toml")).unwrap();
        let ep = &cfg.enrollment_profiles;
        assert!(ep.len() >= 2 && ep.iter().any(|p| p.source_format == SourceFormat::Xml), "the example shows PEM and XML profiles");
        assert!(cfg.check().iter().all(|p| !p.path.starts_with("enrollment_profiles")), "{:?}", cfg.check());
    }

    #[test]
    fn unknown_key_is_refused_with_its_name() {
        let err = toml::from_str::<Config>("bogus = 1\n[[tokens]]\nname='a'\nmodule='/x'\nlabel='a'\npin={file='/p'}\n").unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn env_overrides_take_the_documented_form_and_nothing_else() {
        let vars = [
            ("KEYPORT_STATE_DIR", "/var/lib/keyport"),
            ("KEYPORT_LISTEN__TCP", "127.0.0.1:9000"),
            ("KEYPORT__LIMITS__MAX_CONNECTIONS", "7"),
            ("KEYPORT_LOG", "debug"),
            ("KEYPORT_STAGING_PIN", "1234"),
            ("KEYPORT_TEST_PAUSE_BEFORE_COMMIT_MS", "5"),
            ("PATH", "/bin"),
        ];
        let got = env_overrides(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut keys: Vec<&str> = got.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["LIMITS__MAX_CONNECTIONS", "LISTEN__TCP", "STATE_DIR"]);
        // The list of top-level keys is Config's own (serde names them on an unknown key).
        let err = toml::from_str::<Config>("zzz = 1").unwrap_err().to_string();
        for k in TOP_LEVEL_KEYS {
            assert!(err.contains(&format!("`{k}`")), "{k} is not a top-level key: {err}");
        }
        assert_eq!(err.matches('`').count() / 2 - 1, TOP_LEVEL_KEYS.len(), "a top-level key is missing from TOP_LEVEL_KEYS: {err}");
    }

    #[test]
    fn principal_names_are_unique() {
        let mut cfg: Config = toml::from_str(EMBEDDED_DEFAULT).unwrap();
        let p: Principal = toml::from_str("name = \"ops\"").unwrap();
        cfg.principals = vec![p.clone(), p];
        let problems = cfg.check();
        assert!(problems.iter().any(|p| p.path == "principals[1].name" && p.message.contains("twice")), "{problems:?}");
    }

    #[test]
    fn non_loopback_tcp_is_a_problem() {
        let mut cfg: Config = toml::from_str(EMBEDDED_DEFAULT).unwrap();
        cfg.listen.tcp = Some("0.0.0.0:8750".into());
        let problems = cfg.check();
        assert!(problems.iter().any(|p| p.path == "listen.tcp" && p.message.contains("loopback")), "{problems:?}");
    }
}
