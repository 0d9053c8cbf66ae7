//! `[sync]`: the remote that keys and certificates sync to: an OpenBao / Vault API vault
//! (`remote = "openbao"`, the default; absent `address` = sync off), or a TLS Protect
//! Cloud–style remote (`remote = "tlspc"` with `[sync.tlspc]`).

use serde::Deserialize;
use std::path::PathBuf;

use super::PinSource;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// `http://127.0.0.1:8200` (loopback only) or `https://vault.example:8200`; absent (and no
    /// `addresses`): sync off. One address: a single server, or a load balancer in front of a
    /// cluster.
    pub address: Option<String>,
    /// Every node of an OpenBao cluster (instead of `address`): keyport finds the active node
    /// (`sys/health`), follows it when the leader changes, and moves on when one refuses.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Whether a standby may forward keyport's writes to the active node (OpenBao's default).
    /// `false` sends `X-Vault-No-Request-Forwarding`: standbys answer writes with a 307 to the
    /// active node, which keyport follows, so writes reach the active node directly.
    #[serde(default = "default_true")]
    pub standby_forwarding: bool,
    /// PEM file of the CA(s) that sign the vault's TLS certificate (required for https).
    pub ca_file: Option<PathBuf>,
    /// Where the vault token comes from (file, env or systemd credential, like a PIN). Re-read
    /// when the vault rejects the current one, so a rotated token file is picked up.
    pub token: Option<PinSource>,
    /// Transit mount the keys are imported into (BYOK).
    #[serde(default = "default_transit")]
    pub transit_mount: String,
    /// KV v2 mount the certificates are written to.
    #[serde(default = "default_kv")]
    pub kv_mount: String,
    /// KV path prefix: certificates go to `<kv_prefix>/<host>/certs/<namespace>/<name>`.
    #[serde(default = "default_kv_prefix")]
    pub kv_prefix: String,
    /// This host's name in the vault: transit keys are `<host>-<namespace>.<name>` (so a policy
    /// can grant `transit/keys/<host>-*`); default: the system host name.
    pub host: Option<String>,
    /// Seconds between scheduled passes, and the random spread added to each (so a fleet does
    /// not hit the vault at once).
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    #[serde(default = "default_jitter")]
    pub jitter_secs: u64,
    /// First retry delay after a transient failure; doubles per attempt up to `interval_secs`.
    #[serde(default = "default_retry")]
    pub retry_base_secs: u64,
    /// How often (seconds) scheduled passes check that the vault still holds the keys it
    /// confirmed (a restarted dev vault, a restored backup); `sync now` always checks.
    #[serde(default = "default_verify")]
    pub verify_interval_secs: u64,
    /// Namespaces that sync (opt-in); `["*"]` = all.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Import keys into transit with `exportable: true`, so `keyport restore` can bring them
    /// back into an empty token (byok-export, wrapped end to end). Off by default: the vault is
    /// then a one-way copy that signs but never gives the key back. Applies to keys imported
    /// from now on; transit cannot make an existing key non-exportable again.
    #[serde(default)]
    pub vault_exportable: bool,

    // Vault authentication besides the static `token`: exactly one of `token`, `approle`,
    // `cert` is set (see `sync::auth`).
    /// AppRole login (role_id + secret_id); the vault token lives in memory only.
    pub approle: Option<AppRoleAuth>,
    /// TLS certificate login with the client key in the token (`keyport sync csr`).
    pub cert: Option<CertAuth>,

    // --- remote kind (the TLS Protect Cloud–style connector, src/sync/tlspc.rs) ---
    /// `openbao` (default: `address`, `token` and the mounts above) or `tlspc` (`[sync.tlspc]`).
    #[serde(default)]
    pub remote: RemoteKind,
    /// The TLS Protect Cloud–style remote, with `remote = "tlspc"`.
    pub tlspc: Option<TlspcRemoteConfig>,
}

/// `[sync.approle]`: `POST auth/<mount>/login {role_id, secret_id}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRoleAuth {
    /// The role's role_id (not secret on its own).
    pub role_id: String,
    /// Where the secret_id comes from (file, env or systemd credential); re-read at every
    /// login, so a rotated file is picked up.
    pub secret_id: PinSource,
    /// The auth mount's path.
    #[serde(default = "default_approle_mount")]
    pub mount: String,
}

/// `[sync.cert]`: `POST auth/<mount>/login {name}` over a TLS connection that presents
/// `certificate`, whose key is keyport's non-extractable vault client key in the token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertAuth {
    /// PEM certificate (chain, leaf first) issued for the CSR from `keyport sync csr`. Re-read
    /// at every login, so a renewed certificate is picked up without a restart.
    pub certificate: PathBuf,
    /// The auth mount's path.
    #[serde(default = "default_cert_mount")]
    pub mount: String,
    /// The cert role (`auth/<mount>/certs/<name>`) to log in against; absent: any that matches.
    pub name: Option<String>,
}

fn default_true() -> bool {
    true
}
fn default_approle_mount() -> String {
    "approle".into()
}
fn default_cert_mount() -> String {
    "cert".into()
}

fn default_transit() -> String {
    "transit".into()
}
fn default_kv() -> String {
    "secret".into()
}
fn default_kv_prefix() -> String {
    "keyport".into()
}
fn default_interval() -> u64 {
    300
}
fn default_jitter() -> u64 {
    30
}
fn default_retry() -> u64 {
    5
}
fn default_verify() -> u64 {
    3600
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            address: None,
            addresses: Vec::new(),
            standby_forwarding: true,
            ca_file: None,
            token: None,
            transit_mount: default_transit(),
            kv_mount: default_kv(),
            kv_prefix: default_kv_prefix(),
            host: None,
            interval_secs: default_interval(),
            jitter_secs: default_jitter(),
            retry_base_secs: default_retry(),
            verify_interval_secs: default_verify(),
            namespaces: Vec::new(),
            vault_exportable: false,
            approle: None,
            cert: None,
            remote: RemoteKind::default(),
            tlspc: None,
        }
    }
}

fn is_path_segment(s: &str) -> bool {
    !s.is_empty() && s.len() <= 100 && s.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c)) && !s.starts_with('.')
}

impl SyncConfig {
    pub fn enabled(&self) -> bool {
        match self.remote {
            RemoteKind::OpenBao => self.address.is_some() || !self.addresses.is_empty(),
            RemoteKind::Tlspc => self.tlspc.is_some(),
        }
    }

    /// The vault's addresses: `addresses`, else `address` (empty: sync off).
    pub fn vault_addresses(&self) -> Vec<String> {
        if self.addresses.is_empty() {
            self.address.iter().cloned().collect()
        } else {
            self.addresses.clone()
        }
    }

    /// The host name used in vault names and paths.
    pub fn host_name(&self) -> String {
        self.host.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| {
                    let h = h.trim();
                    h.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect()
                })
                .filter(|h: &String| !h.is_empty())
                .unwrap_or_else(|| "keyport".into())
        })
    }

    /// Problems as (key path, message).
    pub fn check(&self) -> Vec<(String, String)> {
        if self.remote == RemoteKind::Tlspc || self.tlspc.is_some() {
            return self.check_tlspc();
        }
        let mut out = Vec::new();
        let addrs = self.vault_addresses();
        if addrs.is_empty() {
            return out;
        }
        let mut p = |k: &str, m: String| out.push((format!("sync.{k}"), m));
        if self.address.is_some() && !self.addresses.is_empty() {
            p("addresses", "both `address` and `addresses` are set; list every node in `addresses` and remove `address`".into());
        }
        let key = if self.addresses.is_empty() { "address" } else { "addresses" };
        let schemes: std::collections::BTreeSet<&str> = addrs.iter().filter_map(|a| a.split_once("://").map(|(s, _)| s)).collect();
        if schemes.len() > 1 {
            p(key, "mixes http and https; every node of one vault speaks the same".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for addr in &addrs {
            if !seen.insert(addr.trim_end_matches('/')) {
                p(key, format!("'{addr}' is listed twice"));
            }
            match addr.split_once("://") {
                Some(("https", _)) => {
                    if self.ca_file.as_ref().is_none_or(|f| !f.exists()) {
                        p(
                            "ca_file",
                            "an https vault needs `ca_file` (PEM of the CA that signed the vault's certificate), and the file must exist"
                                .into(),
                        );
                    }
                }
                Some(("http", rest)) => {
                    let host = rest.split('/').next().unwrap_or("").rsplit_once(':').map_or(rest, |(h, _)| h);
                    let loopback =
                        host == "localhost" || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback());
                    if !loopback {
                        p(
                            key,
                            format!(
                                "plain http is only allowed to a loopback vault (tokens and wrapped keys travel in it); use https for {addr}"
                            ),
                        );
                    }
                }
                _ => p(key, format!("'{addr}' is not an http:// or https:// URL")),
            }
        }
        self.check_auth(&mut p);
        for (k, v) in [("transit_mount", &self.transit_mount), ("kv_mount", &self.kv_mount), ("kv_prefix", &self.kv_prefix)] {
            if !is_path_segment(v) {
                p(k, format!("'{v}' must be one path segment of letters, digits, '.', '_' or '-'"));
            }
        }
        if let Some(h) = &self.host {
            if !is_path_segment(h) {
                p("host", format!("'{h}' must be letters, digits, '.', '_' or '-'"));
            }
        }
        if self.interval_secs == 0 {
            p("interval_secs", "must be at least 1".into());
        }
        if self.namespaces.is_empty() {
            p("namespaces", "no namespace opts in, so nothing would sync; list them (or \"*\")".into());
        }
        out
    }

    /// Exactly one of `token`, `approle`, `cert`; cert auth only over https.
    fn check_auth(&self, p: &mut impl FnMut(&str, String)) {
        let set: Vec<&str> = [("token", self.token.is_some()), ("approle", self.approle.is_some()), ("cert", self.cert.is_some())]
            .into_iter()
            .filter_map(|(k, on)| on.then_some(k))
            .collect();
        match set.as_slice() {
            [] => p(
                "token",
                "set how keyport logs in to the vault: token = { file = \"…\" }, or a [sync.approle] or [sync.cert] section".into(),
            ),
            [_] => {}
            many => p(
                many[1],
                format!("{} are all set; choose exactly one vault login (token, approle or cert) and remove the others", many.join(", ")),
            ),
        }
        if let Some(a) = &self.approle {
            if a.role_id.trim().is_empty() {
                p("approle.role_id", "is empty; put the role's role_id here (GET auth/<mount>/role/<role>/role-id)".into());
            }
            if !is_path_segment(&a.mount) {
                p("approle.mount", format!("'{}' must be one path segment of letters, digits, '.', '_' or '-'", a.mount));
            }
        }
        if let Some(c) = &self.cert {
            if !self.vault_addresses().iter().all(|a| a.starts_with("https://")) {
                p("cert", "certificate login needs an https vault address (the client certificate is presented in TLS)".into());
            }
            if !is_path_segment(&c.mount) {
                p("cert.mount", format!("'{}' must be one path segment of letters, digits, '.', '_' or '-'", c.mount));
            }
            if c.name.as_deref().is_some_and(|n| !is_path_segment(n)) {
                p("cert.name", "must be letters, digits, '.', '_' or '-'".into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(address: &str, auth: &str) -> SyncConfig {
        toml::from_str(&format!("address = \"{address}\"\nnamespaces = [\"default\"]\n{auth}")).unwrap()
    }

    fn problems(c: &SyncConfig) -> Vec<String> {
        c.check().into_iter().map(|(k, m)| format!("{k}: {m}")).collect()
    }

    #[test]
    fn exactly_one_vault_login() {
        let none = problems(&cfg("http://127.0.0.1:8200", ""));
        assert!(none.iter().any(|p| p.starts_with("sync.token:") && p.contains("[sync.approle]")), "{none:?}");
        let approle = "[approle]\nrole_id = \"r\"\nsecret_id = { file = \"/x\" }\n";
        assert!(problems(&cfg("http://127.0.0.1:8200", approle)).is_empty());
        let c = cfg("http://127.0.0.1:8200", approle);
        assert_eq!(c.approle.as_ref().unwrap().mount, "approle");
        let both = problems(&cfg("http://127.0.0.1:8200", &format!("token = {{ env = \"T\" }}\n{approle}")));
        assert!(both.iter().any(|p| p.starts_with("sync.approle:") && p.contains("exactly one")), "{both:?}");
    }

    #[test]
    fn certificate_login_needs_https() {
        let cert = "[cert]\ncertificate = \"/etc/keyport/client.pem\"\nname = \"h1\"\n";
        let p = problems(&cfg("http://127.0.0.1:8200", cert));
        assert!(p.iter().any(|p| p.starts_with("sync.cert:") && p.contains("https")), "{p:?}");
        let c = cfg("https://vault.example:8200", cert);
        assert_eq!(c.cert.as_ref().unwrap().mount, "cert");
        assert!(problems(&c).iter().all(|p| !p.starts_with("sync.cert")), "{:?}", problems(&c));
    }

    #[test]
    fn several_addresses_or_one() {
        let c: SyncConfig = toml::from_str(
            "addresses = [\"http://127.0.0.1:8200\", \"http://127.0.0.1:8300\"]\nnamespaces = [\"default\"]\ntoken = { env = \"T\" }\n",
        )
        .unwrap();
        assert!(c.enabled() && c.standby_forwarding);
        assert_eq!(c.vault_addresses().len(), 2);
        assert!(problems(&c).is_empty(), "{:?}", problems(&c));
        let mut both = c.clone();
        both.address = Some("http://127.0.0.1:8200".into());
        assert!(problems(&both).iter().any(|p| p.starts_with("sync.addresses:") && p.contains("both")), "{:?}", problems(&both));
        let mut bad = c.clone();
        bad.addresses = vec!["http://127.0.0.1:8200".into(), "http://vault.example:8200".into(), "http://127.0.0.1:8200".into()];
        let p = problems(&bad);
        assert!(p.iter().any(|p| p.contains("vault.example") && p.contains("loopback")), "{p:?}");
        assert!(p.iter().any(|p| p.contains("listed twice")), "{p:?}");
        let one = cfg("http://127.0.0.1:8200", "token = { env = \"T\" }");
        assert_eq!(one.vault_addresses(), ["http://127.0.0.1:8200"]);
    }

    #[test]
    fn unknown_auth_keys_are_refused() {
        let e = toml::from_str::<SyncConfig>("[approle]\nrole_id = \"r\"\nsecret_id = { file = \"/x\" }\nsecret = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("secret"), "{e}");
    }
}

// --- the TLS Protect Cloud–style remote (`remote = "tlspc"`) -----------------------------------

/// Which connector the worker drives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RemoteKind {
    /// OpenBao / Vault API: transit BYOK import and KV v2 (`src/sync/openbao.rs`).
    #[default]
    #[serde(rename = "openbao")]
    OpenBao,
    /// TLS Protect Cloud–style: `POST /outagedetection/v1/certificates/imports` batches, keys
    /// DEK-sealed to the remote's edge encryption key (`src/sync/tlspc.rs`).
    Tlspc,
}

impl RemoteKind {
    pub fn name(self) -> &'static str {
        match self {
            RemoteKind::OpenBao => "openbao",
            RemoteKind::Tlspc => "tlspc",
        }
    }
}

/// The vendor's per-call limit for `certificates/imports`.
pub const TLSPC_MAX_BATCH: usize = 100;

/// `[sync.tlspc]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlspcRemoteConfig {
    /// `https://api.venafi.cloud` style base URL, without a path (plain http: loopback only).
    pub address: String,
    /// PEM file of the CA(s) that sign the remote's TLS certificate (required for https).
    pub ca_file: Option<PathBuf>,
    /// The `tppl-api-key` value's source (file, env or systemd credential, like a PIN); re-read
    /// once when the remote answers 401, so a rotated key file is picked up.
    pub api_key: PinSource,
    /// The edge instance (VSatellite) to import through; default: the first of `GET /v1/edgeinstances`.
    pub edge_instance_id: Option<String>,
    /// The edge encryption key (DEK) to seal to; default: the edge instance's `encryptionKeyId`.
    pub encryption_key_id: Option<String>,
    /// Keys per import call, 1-100 (the vendor's limit).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// How long one pass waits for an import job; a job still running then is polled again
    /// at the next pass (its id is kept in the store, so nothing is posted twice).
    #[serde(default = "default_poll")]
    pub poll_secs: u64,
    /// How long a posted job may stay unfinished before its keys stop waiting for it (they fail
    /// with the reason and go again on `sync now`); one stuck job must not hold back the rest.
    #[serde(default = "default_job_timeout")]
    pub job_timeout_secs: u64,
}

fn default_batch() -> usize {
    TLSPC_MAX_BATCH
}
fn default_poll() -> u64 {
    60
}
fn default_job_timeout() -> u64 {
    24 * 3600
}

/// Problems of an http(s) base URL with its CA file, as (key, message).
fn url_problems(addr: &str, ca_file: Option<&std::path::Path>, what: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    match addr.split_once("://") {
        Some(("https", rest)) => {
            if ca_file.is_none_or(|f| !f.exists()) {
                out.push((
                    "ca_file",
                    format!("an https {what} needs `ca_file` (PEM of the CA that signed its certificate), and the file must exist"),
                ));
            }
            if rest.trim_end_matches('/').contains('/') {
                out.push(("address", format!("'{addr}': give the {what}'s address without a path")));
            }
        }
        Some(("http", rest)) => {
            let authority = rest.split('/').next().unwrap_or("");
            let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
            let loopback = host == "localhost" || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback());
            if !loopback {
                out.push((
                    "address",
                    format!("plain http is only allowed to a loopback {what} (API keys and keys travel in it); use https for {addr}"),
                ));
            }
        }
        _ => out.push(("address", format!("'{addr}' is not an http:// or https:// URL"))),
    }
    out
}

impl SyncConfig {
    fn check_tlspc(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut p = |k: &str, m: String| out.push((format!("sync.{k}"), m));
        if self.remote != RemoteKind::Tlspc {
            p("remote", "[sync.tlspc] is set but remote is \"openbao\"; set remote = \"tlspc\" (or remove [sync.tlspc])".into());
            return out;
        }
        let Some(t) = &self.tlspc else {
            p("tlspc", "remote = \"tlspc\" needs a [sync.tlspc] section with address and api_key".into());
            return out;
        };
        for (k, set) in [
            ("address", self.address.is_some()),
            ("addresses", !self.addresses.is_empty()),
            ("token", self.token.is_some()),
            ("ca_file", self.ca_file.is_some()),
        ] {
            if set {
                p(k, format!("`sync.{k}` belongs to the OpenBao remote; with remote = \"tlspc\" set sync.tlspc.* instead"));
            }
        }
        for (k, m) in url_problems(&t.address, t.ca_file.as_deref(), "remote") {
            p(&format!("tlspc.{k}"), m);
        }
        for (k, v) in [("edge_instance_id", &t.edge_instance_id), ("encryption_key_id", &t.encryption_key_id)] {
            if let Some(v) = v {
                if v.trim().is_empty() || v.len() > 200 || v.chars().any(|c| c.is_control() || c.is_whitespace()) {
                    p(&format!("tlspc.{k}"), format!("'{v}' is not an id (1-200 characters, no spaces); leave it out to use the remote's"));
                }
            }
        }
        if t.batch_size == 0 || t.batch_size > TLSPC_MAX_BATCH {
            p("tlspc.batch_size", format!("must be 1-{TLSPC_MAX_BATCH} (the remote's limit per import call)"));
        }
        if t.job_timeout_secs == 0 {
            p("tlspc.job_timeout_secs", "must be at least 1".into());
        }
        if t.poll_secs == 0 {
            p("tlspc.poll_secs", "must be at least 1".into());
        }
        if self.interval_secs == 0 {
            p("interval_secs", "must be at least 1".into());
        }
        if self.namespaces.is_empty() {
            p("namespaces", "no namespace opts in, so nothing would sync; list them (or \"*\")".into());
        }
        out
    }
}

#[cfg(test)]
mod tlspc_tests {
    use super::*;

    fn cfg(text: &str) -> SyncConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn tlspc_remote_shape_and_problems() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "x").unwrap();
        let good = format!(
            "remote = \"tlspc\"\nnamespaces = [\"web\"]\n[tlspc]\naddress = \"https://tlspc.example\"\nca_file = \"{}\"\napi_key = {{ env = \"K\" }}\n",
            ca.display()
        );
        let c = cfg(&good);
        assert!(c.enabled() && c.remote == RemoteKind::Tlspc);
        assert_eq!(c.tlspc.as_ref().unwrap().batch_size, 100);
        assert!(c.check().is_empty(), "{:?}", c.check());
        assert!(!cfg("namespaces = [\"web\"]").enabled(), "off by default");

        let keys = |c: &SyncConfig| c.check().into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        // OpenBao keys with the tlspc remote, a path in the address, a bad batch size.
        let mut c = cfg(&good);
        c.address = Some("https://vault:8200".into());
        c.tlspc.as_mut().unwrap().address = "https://tlspc.example/api".into();
        c.tlspc.as_mut().unwrap().batch_size = 101;
        assert_eq!(keys(&c), ["sync.address", "sync.tlspc.address", "sync.tlspc.batch_size"]);
        // Plain http off loopback; missing CA file.
        let mut c = cfg(&good);
        c.tlspc.as_mut().unwrap().address = "http://tlspc.example".into();
        assert_eq!(keys(&c), ["sync.tlspc.address"]);
        c.tlspc.as_mut().unwrap().address = "http://127.0.0.1:8443".into();
        assert!(keys(&c).is_empty());
        c.tlspc.as_mut().unwrap().address = "https://tlspc.example".into();
        c.tlspc.as_mut().unwrap().ca_file = None;
        assert_eq!(keys(&c), ["sync.tlspc.ca_file"]);
        // The kind and the section must agree.
        assert_eq!(keys(&cfg("remote = \"tlspc\"\nnamespaces = [\"web\"]")), ["sync.tlspc"]);
        let c = cfg(&good.replace("remote = \"tlspc\"", "remote = \"openbao\""));
        assert_eq!(keys(&c), ["sync.remote"]);
        assert!(toml::from_str::<SyncConfig>("remote = \"vault\"").is_err());
    }
}
