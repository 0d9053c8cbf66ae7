//! The OpenBao (Vault API) connector: transit BYOK import and KV v2 behind a login
//! (`auth`: static token, AppRole or certificate), with every answer classified as
//! docs/vault.md §8 says:
//!
//! - connection refused/reset/timeout, 502/503/504 (sealed, standby), 429 (quota; Retry-After
//!   honoured when present, never relied on) → retry later, and stop the pass (the vault is
//!   unusable for every key);
//! - 500 `crypto/rsa: decryption error` on import → the mount's wrapping key changed: re-fetch
//!   once (the caller does), then retry later;
//! - 403 → `auth/token/lookup-self`: 403 there too means the token is dead, so it is dropped
//!   and the next try logs in again once (or re-reads a static token's file); 200 there means
//!   a policy denial: permanent, per key; the probe itself unreachable, 503, 429, 5xx → the
//!   same retry classes as any other call (`probe_verdict`);
//! - a 4xx, or a 500 with one of the client-mistake messages docs/vault.md §2.1/§2.5
//!   lists (wrong type, bad shape, key exists, rotation) → permanent, reported per key;
//! - any other 500 → retry that key with backoff (the pass goes on: `refused`).
//!
//! Almost every client mistake is a 500 in OpenBao, so the messages are matched, not just codes.

use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::auth::{Auth, AuthStatus};
use super::client_cert::ClientCert;
use super::cluster::Nodes;
use super::http::{Response, Unreachable};
use super::pacer::{mount_of, Pacer};
use super::remote::RemoteError;
use crate::config::SyncConfig;

/// The mount's RSA wrapping key, pinned by fingerprint until the vault says it is stale.
#[derive(Debug, Clone)]
pub struct WrappingKey {
    pub spki_der: Vec<u8>,
    /// `sha256:<hex>` of the SPKI DER.
    pub fingerprint: String,
}

/// One version of a transit key as `GET transit/keys/:name` shows it.
#[derive(Debug, Clone, Default)]
pub struct KeyVersion {
    /// SPKI PEM (RSA, EC) or the raw key in base64 (Ed25519).
    pub public_key: String,
    pub certificate_chain: String,
}

#[derive(Debug, Clone, Default)]
pub struct TransitKey {
    pub key_type: String,
    pub imported: bool,
    /// Whether transit lets the key out again (`exportable`; restore needs it).
    pub exportable: bool,
    pub latest_version: i64,
    pub versions: BTreeMap<i64, KeyVersion>,
}

/// A KV v2 entry: `version` is the current version (0 = never written), also for a
/// soft-deleted latest version (a 404 with a body).
#[derive(Debug, Clone, Default)]
pub struct KvEntry {
    pub version: i64,
    pub data: Option<Value>,
    pub custom_metadata: BTreeMap<String, String>,
}

/// The mount's wrapping key as pinned, and the lock that serializes fetching it.
#[derive(Default)]
struct WrappingCache {
    /// Read by status without waiting for the vault, so never held across an `await`.
    pinned: RwLock<Option<WrappingKey>>,
    /// One fetch at a time (held across the network call).
    fetch: tokio::sync::Mutex<()>,
}

/// Counters of what the vault answered, for status and metrics (`GET /keyport/v1/sync`).
#[derive(Debug, Default)]
pub struct VaultStats {
    /// Requests sent (every node, every try).
    pub requests: std::sync::atomic::AtomicU64,
    /// 429 answers (a rate-limit quota).
    pub rate_limited: std::sync::atomic::AtomicU64,
    /// 307 answers followed (a standby naming the active node).
    pub redirects: std::sync::atomic::AtomicU64,
    /// Times keyport moved to another node (the current one refused, died or was a standby).
    pub failovers: std::sync::atomic::AtomicU64,
}

/// [`VaultStats`] read at one moment.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct VaultCounts {
    pub requests: u64,
    pub rate_limited: u64,
    pub redirects: u64,
    pub failovers: u64,
}

impl VaultStats {
    fn bump(c: &std::sync::atomic::AtomicU64) {
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> VaultCounts {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        VaultCounts {
            requests: get(&self.requests),
            rate_limited: get(&self.rate_limited),
            redirects: get(&self.redirects),
            failovers: get(&self.failovers),
        }
    }
}

/// How long one call may wait out 429s before it gives up and the vault backs off as a whole.
/// Wall time from the call's first 429, the pacer's spacing included: counting only the
/// Retry-After waits let a hard quota hold one call for 25 s and more, with nothing in health
/// or sync status meanwhile (issue 16, `faults_vault`).
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(10);

pub struct OpenBao {
    nodes: Nodes,
    /// The configured address(es), for status and logs.
    pub address: String,
    /// Spaces calls per mount when the vault rate-limits (`pacer`).
    pacer: Pacer,
    /// The newest `X-Vault-Index` a write answered with: every read sends it back with
    /// `X-Vault-Inconsistent: forward-active-node`, so a standby that has not caught up yet
    /// forwards the read instead of answering from old state (docs/rotation-and-fleet.md §2).
    last_index: std::sync::Mutex<Option<String>>,
    /// `sync.standby_forwarding`: false asks standbys for a 307 instead of forwarding writes.
    forwarding: bool,
    pub stats: VaultStats,
    auth: Auth,
    /// The certificate the https client presents (certificate login only).
    client_cert: Option<Arc<ClientCert>>,
    transit: String,
    kv: String,
    /// Boxed: keeps `Remote`'s two variants close in size.
    wrapping: Box<WrappingCache>,
    /// `sync.vault_exportable`: transit keys are created exportable (restorable).
    exportable: bool,
}

/// How much of an answer without an `errors` list goes into a message (and so into logs,
/// the outbox and `GET /sync`).
const BODY_TEXT_MAX: usize = 200;

/// The vault's messages, without its "1 error occurred:\n\t* …" wrapping. An answer without
/// `errors` is shown cut to [`BODY_TEXT_MAX`] characters and never with its `auth` or `data`
/// members (a login's token, a secret read).
pub fn error_text(body: &Value) -> String {
    let errs: Vec<String> = body["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str())
        .map(|e| {
            e.trim()
                .trim_start_matches(|c: char| !c.is_alphabetic() || c == '1')
                .trim_start_matches("error occurred:")
                .trim()
                .trim_start_matches("* ")
                .trim()
                .to_string()
        })
        .collect();
    if !errs.is_empty() {
        return errs.join("; ");
    }
    let text = match body {
        Value::String(s) => s.clone(),
        Value::Object(o) => {
            let shown: serde_json::Map<String, Value> =
                o.iter().filter(|(k, _)| !matches!(k.as_str(), "auth" | "data")).map(|(k, v)| (k.clone(), v.clone())).collect();
            Value::Object(shown).to_string()
        }
        other => other.to_string(),
    };
    if text.chars().count() > BODY_TEXT_MAX {
        format!("{}…", text.chars().take(BODY_TEXT_MAX).collect::<String>())
    } else {
        text
    }
}

/// OpenBao's 500 messages for a client mistake (docs/vault.md §2.1, §2.4–§2.6): retrying the
/// same request cannot help. "decryption error" (a stale wrapping key) and "cannot be used
/// with an existing key" are handled by `import` before this.
const CLIENT_MISTAKES: [&str; 14] = [
    "decryption error",
    "unknown hash function",
    "invalid key type",
    "invalid key size",
    "failed to parse private key",
    "kwp: unwrap failed",
    "illegal base64 data",
    "cannot be used with an existing key",
    "does not allow rotation",
    "can only be used with an imported key",
    "key version cannot be updated",
    "no key found with name",
    "exporting is disallowed",
    "does not contain a private part",
];

/// The class of an answer the caller does not expect: a 4xx, or a 500 naming a client mistake,
/// is permanent (reported per key until `sync now`); any other 5xx is a vault fault that may
/// pass: retried with backoff for this key, the pass goes on.
pub fn refused(status: u16, text: &str, what: String) -> RemoteError {
    let message = format!("{what}: {status} {text}");
    let mistake = (400..500).contains(&status) || CLIENT_MISTAKES.iter().any(|m| text.contains(m));
    if mistake {
        RemoteError::Permanent(message)
    } else {
        RemoteError::Retry { message, after: None, stop_pass: false }
    }
}

/// What a 403 means, from the `lookup-self` probe that follows it.
#[derive(Debug, PartialEq, Eq)]
pub enum Probe {
    /// 403 there too: the token is dead; log in again.
    Dead,
    /// The token is fine (200): the policy denies the call.
    PolicyDenied,
    /// The probe did not decide (vault unavailable, failing): the call is retried later.
    Undecided(RemoteError),
}

/// Pure: the verdict of a `lookup-self` probe that answered `r` (its body is not needed).
pub fn probe_verdict(r: &Response) -> Probe {
    match r.status {
        403 => Probe::Dead,
        200 => Probe::PolicyDenied,
        _ => Probe::Undecided(unavailable(r).unwrap_or_else(|| RemoteError::Retry {
            message: format!("the vault answered 403, then {} on auth/token/lookup-self; trying again later", r.status),
            after: None,
            stop_pass: false,
        })),
    }
}

/// The `sha256:<hex>` fingerprint of a transit public key, the form keyport records for its
/// keys (`PublicKey::fingerprint`: the SHA-256 of the SPKI).
pub fn vault_fingerprint(public_key: &str) -> Option<String> {
    use sha2::Digest;
    transit_public_key_spki(public_key).map(|spki| format!("sha256:{}", hex::encode(sha2::Sha256::digest(&spki))))
}

/// The SPKI DER of a transit key version's public key: SPKI PEM (RSA, EC) or the raw key in
/// base64 (Ed25519, docs/vault.md §2.3). `None` when it is neither.
pub fn transit_public_key_spki(public_key: &str) -> Option<Vec<u8>> {
    if public_key.contains("-----BEGIN") {
        pem_to_der(public_key)
    } else {
        const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
        let raw = base64::engine::general_purpose::STANDARD.decode(public_key.trim()).ok().filter(|r| r.len() == 32)?;
        Some([ED25519_SPKI_PREFIX.as_slice(), &raw].concat())
    }
}

/// A standby that could not forward to an active node (none elected yet, or it is gone):
/// OpenBao answers 500/503 naming it. Nothing ran, so even a write may go to another node.
pub fn standby_refused(r: &Response) -> bool {
    if !matches!(r.status, 500 | 503) {
        return false;
    }
    let text = error_text(&r.body);
    ["active cluster node not found", "node not active", "no active", "standby", "leader"].iter().any(|m| text.contains(m))
}

/// The vault is unusable right now (sealed, standby, gateway, quota): stop the pass.
pub fn unavailable(r: &Response) -> Option<RemoteError> {
    if r.status == 500 && standby_refused(r) {
        return Some(RemoteError::down(format!("the vault has no active node to forward to (500: {})", error_text(&r.body))));
    }
    match r.status {
        503 => Some(RemoteError::down(format!("the vault is sealed or has no active node (503: {})", error_text(&r.body)))),
        502 | 504 => Some(RemoteError::down(format!("the vault's gateway failed ({})", r.status))),
        429 => Some(RemoteError::Retry {
            message: format!("the vault rate-limits this client (429: {})", error_text(&r.body)),
            after: r.retry_after,
            stop_pass: true,
        }),
        _ => None,
    }
}

pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

pub fn der_to_pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("base64 is ASCII")).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

impl OpenBao {
    pub fn new(cfg: &SyncConfig) -> Result<OpenBao, String> {
        let addresses = cfg.vault_addresses();
        let client_cert = cfg.cert.as_ref().map(|_| Arc::new(ClientCert::default()));
        let nodes = Nodes::new(addresses.clone(), cfg.ca_file.as_deref(), client_cert.as_ref())?;
        Ok(OpenBao {
            nodes,
            address: addresses.join(", "),
            pacer: Pacer::default(),
            last_index: std::sync::Mutex::new(None),
            forwarding: cfg.standby_forwarding,
            stats: VaultStats::default(),
            auth: Auth::new(cfg, client_cert.clone())?,
            client_cert,
            transit: cfg.transit_mount.clone(),
            kv: cfg.kv_mount.clone(),
            wrapping: Box::default(),
            exportable: cfg.vault_exportable,
        })
    }

    /// The token holding the vault client key (certificate login); sync's start attaches it.
    pub fn attach_token(&self, token: Option<&Arc<crate::token::Token>>) {
        if let (Some(c), Some(t)) = (&self.client_cert, token) {
            c.attach(t.clone());
        }
    }

    /// Whether this connector logs in with a TLS client certificate (a key in the token).
    pub fn uses_client_cert(&self) -> bool {
        self.client_cert.is_some()
    }

    pub fn auth_status(&self) -> AuthStatus {
        self.auth.status()
    }

    /// The node keyport talks to now.
    pub fn current_node(&self) -> &str {
        self.nodes.current_address()
    }

    /// Whether any node can serve (before resuming after a vault-wide backoff).
    pub async fn probe(&self) -> Result<(), String> {
        self.nodes.probe().await
    }

    /// One authenticated call; transport, availability, cluster and auth answers are handled
    /// here, every other answer goes back to the caller:
    ///
    /// - a node that refuses or dies, a standby without a leader (503, a forwarding failure):
    ///   move to the active node (`cluster::Nodes`) and send again, when that is safe (a read,
    ///   or a write that never left: no connection); else a vault-wide retry;
    /// - 307: to the configured node `Location` names, or follow it once;
    /// - 429: wait (Retry-After, the reset, or under a second), pace the mount, send again, up
    ///   to [`MAX_RATE_LIMIT_WAIT`]; then a vault-wide retry;
    /// - reads carry the last write's `X-Vault-Index` (`last_index`).
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Response, RemoteError> {
        let read = method == "GET";
        let mount = mount_of(path);
        let mut relogin = false;
        let mut hops = 0;
        let mut limited_since: Option<std::time::Instant> = None;
        let full = format!("/v1/{path}");
        loop {
            let (i, http) = self.nodes.current().await;
            self.pacer.wait(mount).await;
            let token = self.auth.token(http).await?;
            let index = if read { self.last_index.lock().unwrap_or_else(|e| e.into_inner()).clone() } else { None };
            let mut headers: Vec<(&str, &str)> = vec![("x-vault-token", token.as_str())];
            if let Some(ix) = index.as_deref() {
                headers.push(("x-vault-index", ix));
                headers.push(("x-vault-inconsistent", "forward-active-node"));
            }
            if !read && !self.forwarding {
                headers.push(("x-vault-no-request-forwarding", "true"));
            }
            VaultStats::bump(&self.stats.requests);
            let r = match http.request_with(method, &full, &headers, body.as_ref()).await {
                Ok(r) => r,
                Err(Unreachable(message, sent)) => {
                    // Another node, when sending again cannot apply a write twice.
                    if (read || !sent) && hops < self.nodes.len() && self.failover(i).await {
                        hops += 1;
                        continue;
                    }
                    return Err(RemoteError::down(message));
                }
            };
            self.note_index(&r);
            let text = || error_text(&r.body);
            if let Some(wait) = self.pacer.observe(mount, r.status, r.retry_after, &r.headers) {
                VaultStats::bump(&self.stats.rate_limited);
                let since = *limited_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() + wait <= MAX_RATE_LIMIT_WAIT {
                    tracing::debug!(mount, wait_ms = wait.as_millis() as u64, "sync: the vault rate-limits; waiting");
                    continue; // the pacer holds the next call until `wait` has passed
                }
                return Err(unavailable(&r).expect("a 429 is unavailable"));
            }
            if r.status == 307 {
                hops += 1;
                VaultStats::bump(&self.stats.redirects);
                let Some(location) = r.headers.location.clone().filter(|_| hops <= self.nodes.len() + 1) else {
                    return Err(RemoteError::down(format!(
                        "the vault at {} redirects (307) without a usable Location",
                        self.nodes.current_address()
                    )));
                };
                match self.nodes.node_for(&location) {
                    Some(j) if j != i => {
                        self.nodes.use_node(j);
                        continue;
                    }
                    Some(_) => return Err(RemoteError::down(format!("the vault at {location} redirects to itself"))),
                    None => return self.follow(method, &location, &headers, body.as_ref()).await,
                }
            }
            if let Some(e) = unavailable(&r) {
                // A sealed node or a standby that cannot reach a leader: another node may serve.
                if (read || standby_refused(&r)) && hops < self.nodes.len() && self.failover(i).await {
                    hops += 1;
                    continue;
                }
                return Err(e);
            }
            if r.status == 400 && text().contains("upgrade from non-versioned to versioned") {
                return Err(RemoteError::down(format!(
                    "the vault's KV mount is not ready on {} yet ({})",
                    self.nodes.current_address(),
                    text()
                )));
            }
            if r.status != 403 {
                return Ok(r);
            }
            // Raw: lookup-self answers with the token itself (`data.id`).
            let probe =
                http.request_raw("GET", "/v1/auth/token/lookup-self", Some(&token), None).await.map_err(|u| RemoteError::down(u.0))?;
            let probe = Response { status: probe.status, retry_after: probe.retry_after, body: Value::Null, headers: probe.headers };
            match probe_verdict(&probe) {
                Probe::Dead => {
                    // The token is dead (expired, revoked, wrong): log in again (or re-read a
                    // static token's source) once. Only this token: another request may have
                    // logged in meanwhile.
                    self.auth.forget(&token).await;
                    if !relogin {
                        relogin = true;
                        continue;
                    }
                    return Err(RemoteError::down(self.auth.rejected()));
                }
                Probe::PolicyDenied => {
                    return Err(RemoteError::Permanent(format!(
                        "the vault's policy denies {method} {} (403); grant it to keyport's token",
                        path.split('?').next().unwrap_or(path)
                    )))
                }
                Probe::Undecided(e) => return Err(e),
            }
        }
    }

    /// Moves to the active node after node `i` failed; whether there is another one to try.
    async fn failover(&self, i: usize) -> bool {
        if self.nodes.len() < 2 {
            return false;
        }
        let moved = self.nodes.find_active(Some(i)).await;
        if moved {
            VaultStats::bump(&self.stats.failovers);
        }
        moved
    }

    /// Sends a request once more to a 307's `Location` that is not a configured node.
    async fn follow(&self, method: &str, location: &str, headers: &[(&str, &str)], body: Option<&Value>) -> Result<Response, RemoteError> {
        let (http, path) = self.nodes.follow(location).map_err(RemoteError::down)?;
        tracing::debug!(location = ?location, "sync: following the vault's redirect");
        VaultStats::bump(&self.stats.requests);
        let r = http.request_with(method, &path, headers, body).await.map_err(|u| RemoteError::down(u.0))?;
        self.note_index(&r);
        if r.status == 307 {
            return Err(RemoteError::down(format!("the vault redirected twice ({location}, then {:?})", r.headers.location)));
        }
        if let Some(e) = unavailable(&r) {
            return Err(e);
        }
        Ok(r)
    }

    fn note_index(&self, r: &Response) {
        if let Some(ix) = &r.headers.index {
            *self.last_index.lock().unwrap_or_else(|e| e.into_inner()) = Some(ix.clone());
        }
    }

    /// The wrapping key already fetched, if any (no request).
    pub fn wrapping_key_if_fetched(&self) -> Option<WrappingKey> {
        self.wrapping.pinned.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The mount's wrapping key: cached (pinned); `refresh` re-fetches it after a stale-key error.
    pub async fn wrapping_key(&self, refresh: bool) -> Result<WrappingKey, RemoteError> {
        let cached = || self.wrapping.pinned.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let (Some(k), false) = (cached(), refresh) {
            return Ok(k);
        }
        let _fetching = self.wrapping.fetch.lock().await;
        if let (Some(k), false) = (cached(), refresh) {
            return Ok(k); // fetched while this call waited
        }
        let r = self.call("GET", &format!("{}/wrapping_key", self.transit), None).await?;
        if r.status != 200 {
            return Err(refused(
                r.status,
                &error_text(&r.body),
                format!("GET {}/wrapping_key (is transit mounted at '{}'?)", self.transit, self.transit),
            ));
        }
        let der = r.body["data"]["public_key"]
            .as_str()
            .and_then(pem_to_der)
            .ok_or_else(|| RemoteError::Permanent("the vault's wrapping key is not a PEM public key".into()))?;
        use sha2::Digest;
        let k = WrappingKey { fingerprint: format!("sha256:{}", hex::encode(sha2::Sha256::digest(&der))), spki_der: der };
        let mut pinned = self.wrapping.pinned.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = pinned.as_ref().filter(|o| o.fingerprint != k.fingerprint) {
            tracing::warn!(mount = %self.transit, old = %old.fingerprint, new = %k.fingerprint, "the vault's wrapping key changed (mount re-created or a new vault); using the new one");
        }
        *pinned = Some(k.clone());
        Ok(k)
    }

    /// The pinned wrapping key's fingerprint; never waits for the vault.
    pub async fn pinned_wrapping_key(&self) -> Option<String> {
        self.wrapping.pinned.read().unwrap_or_else(|e| e.into_inner()).as_ref().map(|k| k.fingerprint.clone())
    }

    pub async fn read_key(&self, name: &str) -> Result<Option<TransitKey>, RemoteError> {
        let r = self.call("GET", &format!("{}/keys/{name}", self.transit), None).await?;
        match r.status {
            404 => Ok(None),
            200 => {
                let d = &r.body["data"];
                let mut versions = BTreeMap::new();
                for (v, k) in d["keys"].as_object().into_iter().flatten() {
                    if let Ok(n) = v.parse::<i64>() {
                        versions.insert(
                            n,
                            KeyVersion {
                                public_key: k["public_key"].as_str().unwrap_or_default().to_string(),
                                certificate_chain: k["certificate_chain"].as_str().unwrap_or_default().to_string(),
                            },
                        );
                    }
                }
                Ok(Some(TransitKey {
                    key_type: d["type"].as_str().unwrap_or_default().to_string(),
                    imported: d["imported_key"].as_bool().unwrap_or(false),
                    exportable: d["exportable"].as_bool().unwrap_or(false),
                    latest_version: d["latest_version"].as_i64().unwrap_or(0),
                    versions,
                }))
            }
            s => Err(refused(s, &error_text(&r.body), format!("GET {}/keys/{name}", self.transit))),
        }
    }

    /// `import` (new name) or `import_version` (new version of an imported key). The raw
    /// answer's class: Ok, stale wrapping key, "already exists", or another error.
    pub async fn import(
        &self,
        name: &str,
        new_version: bool,
        key_type: &str,
        ciphertext: &[u8],
        hash: &str,
    ) -> Result<ImportResult, RemoteError> {
        let ct = base64::engine::general_purpose::STANDARD.encode(ciphertext);
        let (path, body) = if new_version {
            (format!("{}/keys/{name}/import_version", self.transit), json!({"ciphertext": ct, "hash_function": hash}))
        } else {
            (
                format!("{}/keys/{name}/import", self.transit),
                // Exportable only when `sync.vault_exportable` says so (then only wrapped, by
                // byok-export), no plaintext backup, no rotation inside the vault (a rotated
                // key stops being "imported" and import_version fails forever).
                json!({"ciphertext": ct, "hash_function": hash, "type": key_type, "exportable": self.exportable, "allow_plaintext_backup": false, "allow_rotation": false}),
            )
        };
        let r = self.call("POST", &path, Some(body)).await?;
        if matches!(r.status, 200 | 204) {
            return Ok(ImportResult::Done);
        }
        let text = error_text(&r.body);
        Ok(match r.status {
            _ if text.contains("decryption error") => ImportResult::StaleWrappingKey,
            _ if text.contains("cannot be used with an existing key") => ImportResult::Exists,
            s => ImportResult::Refused(refused(s, &text, format!("POST {path}"))),
        })
    }

    pub async fn set_certificate(&self, name: &str, version: i64, chain_pem: &str) -> Result<(), RemoteError> {
        let path = format!("{}/keys/{name}/set-certificate", self.transit);
        let r = self.call("POST", &path, Some(json!({"certificate_chain": chain_pem, "version": version}))).await?;
        match r.status {
            200 | 204 => Ok(()),
            s => Err(refused(s, &error_text(&r.body), format!("POST {path}"))),
        }
    }

    pub async fn kv_read(&self, path: &str) -> Result<KvEntry, RemoteError> {
        let r = self.call("GET", &format!("{}/data/{path}", self.kv), None).await?;
        let meta = &r.body["data"]["metadata"];
        let custom = |m: &Value| {
            m["custom_metadata"]
                .as_object()
                .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
                .unwrap_or_default()
        };
        match r.status {
            200 => Ok(KvEntry {
                version: meta["version"].as_i64().unwrap_or(0),
                data: Some(r.body["data"]["data"].clone()),
                custom_metadata: custom(meta),
            }),
            // A soft-deleted latest version answers 404 with its metadata.
            404 => Ok(KvEntry { version: meta["version"].as_i64().unwrap_or(0), data: None, custom_metadata: custom(meta) }),
            s => Err(refused(s, &error_text(&r.body), format!("GET {}/data/{path}", self.kv))),
        }
    }

    /// Every name a LIST endpoint (`path`: `transit/keys`, `<kv>/metadata/<folder>/`) holds
    /// that starts with `prefix`, read in pages of `page` names. OpenBao (≥ 2.0) pages LISTs with
    /// `after` and `limit` in sorted order, so the walk starts after `prefix` (which sorts before
    /// every name it begins) and stops at the first name past it: a host reads its own range of
    /// a shared transit mount, not every host's names. A server that ignores the two parameters
    /// answers everything at once, and that is used as it is. An absent folder (404) is empty.
    pub async fn list_prefixed(&self, path: &str, prefix: &str, page: usize) -> Result<Vec<String>, RemoteError> {
        let mut out = Vec::new();
        let mut after = prefix.to_string();
        loop {
            let query = {
                let mut q = form_urlencoded::Serializer::new(String::new());
                q.append_pair("list", "true").append_pair("limit", &page.to_string());
                if !after.is_empty() {
                    q.append_pair("after", &after);
                }
                q.finish()
            };
            let r = self.call("GET", &format!("{path}?{query}"), None).await?;
            let names: Vec<String> = match r.status {
                200 => r.body["data"]["keys"].as_array().into_iter().flatten().filter_map(|k| k.as_str().map(String::from)).collect(),
                404 => Vec::new(),
                s => return Err(refused(s, &error_text(&r.body), format!("LIST {path}"))),
            };
            let paged = names.len() <= page && names.first().is_none_or(|f| f.as_str() > after.as_str());
            let past = names.iter().any(|n| !n.starts_with(prefix) && n.as_str() > prefix);
            let full = names.len() == page;
            let last = names.last().cloned();
            out.extend(names.into_iter().filter(|n| n.starts_with(prefix)));
            match last {
                Some(last) if paged && full && !past => after = last,
                _ => break,
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    pub fn transit_mount(&self) -> &str {
        &self.transit
    }

    pub fn kv_mount(&self) -> &str {
        &self.kv
    }

    /// Writes with check-and-set; `Ok(false)` when `cas` no longer matches (re-read, decide again).
    pub async fn kv_write(&self, path: &str, data: Value, cas: i64) -> Result<bool, RemoteError> {
        let r = self.call("POST", &format!("{}/data/{path}", self.kv), Some(json!({"options": {"cas": cas}, "data": data}))).await?;
        if matches!(r.status, 200 | 204) {
            return Ok(true);
        }
        let text = error_text(&r.body);
        match r.status {
            400 if text.contains("check-and-set") => Ok(false),
            s => Err(refused(s, &text, format!("POST {}/data/{path}", self.kv))),
        }
    }

    pub async fn kv_set_metadata(&self, path: &str, custom: &BTreeMap<String, String>) -> Result<(), RemoteError> {
        let r = self.call("POST", &format!("{}/metadata/{path}", self.kv), Some(json!({"custom_metadata": custom}))).await?;
        match r.status {
            200 | 204 => Ok(()),
            s => Err(refused(s, &error_text(&r.body), format!("POST {}/metadata/{path}", self.kv))),
        }
    }

    /// Makes the KV v2 entry at `path` hold `data` with `meta` as its custom metadata:
    /// read, skip the write when `current(entry)` says the entry already holds it, else write
    /// with check-and-set and set the metadata; a lost check-and-set race reads again (three
    /// tries). A pass that finds everything in place writes nothing.
    pub async fn kv_sync(
        &self,
        path: &str,
        data: &Value,
        meta: &BTreeMap<String, String>,
        current: impl Fn(&KvEntry) -> bool,
    ) -> Result<(), RemoteError> {
        for _ in 0..3 {
            let entry = self.kv_read(path).await?;
            if current(&entry) {
                if &entry.custom_metadata != meta {
                    self.kv_set_metadata(path, meta).await?;
                }
                return Ok(());
            }
            if self.kv_write(path, data.clone(), entry.version).await? {
                return self.kv_set_metadata(path, meta).await;
            }
        }
        Err(RemoteError::Retry { message: format!("KV entry {path} kept changing (check-and-set)"), after: None, stop_pass: false })
    }

    /// Marks the KV v2 entry at `path` deleted in keyport (`deleted_at` in its custom
    /// metadata; the data stays). Nothing to do when there is no entry or it is marked already.
    /// `extra` metadata is set with it (kept if already there).
    pub async fn kv_mark_deleted(&self, path: &str, extra: &[(&str, String)]) -> Result<(), RemoteError> {
        let entry = self.kv_read(path).await?;
        let missing = |m: &BTreeMap<String, String>| !m.contains_key("deleted_at") || extra.iter().any(|(k, v)| m.get(*k) != Some(v));
        if entry.version > 0 && missing(&entry.custom_metadata) {
            let mut meta = entry.custom_metadata;
            meta.entry("deleted_at".into()).or_insert_with(|| crate::store::records::now().to_string());
            for (k, v) in extra {
                meta.insert((*k).into(), v.clone());
            }
            self.kv_set_metadata(path, &meta).await?;
        }
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ImportResult {
    Done,
    StaleWrappingKey,
    Exists,
    /// Any other answer, classified (`refused`).
    Refused(RemoteError),
}

/// What `byok-export` answered for one key.
#[derive(Debug)]
pub enum ByokExport {
    /// `RSA-OAEP(destination, aes) ‖ AES-KWP(aes, PKCS#8)`, as the import format.
    Wrapped(Vec<u8>),
    /// The transit key was imported with `exportable: false`.
    NotExportable,
    Missing,
}

/// Calls `keyport restore` needs (`sync/restore.rs`), kept apart from the sync path.
impl OpenBao {
    /// Names under a KV v2 folder (`…/` for sub-folders); none when the folder does not exist.
    pub async fn kv_list(&self, path: &str) -> Result<Vec<String>, RemoteError> {
        let r = self.call("GET", &format!("{}/metadata/{path}?list=true", self.kv), None).await?;
        match r.status {
            200 => Ok(r.body["data"]["keys"].as_array().into_iter().flatten().filter_map(|k| k.as_str().map(String::from)).collect()),
            404 => Ok(Vec::new()),
            s => Err(RemoteError::Permanent(format!("LIST {}/metadata/{path}: {s} {}", self.kv, error_text(&r.body)))),
        }
    }

    /// Whether transit key `name` is exportable; `None` when it does not exist.
    pub async fn key_exportable(&self, name: &str) -> Result<Option<bool>, RemoteError> {
        Ok(self.read_key(name).await?.map(|k| k.exportable))
    }

    /// A public-key-only transit key (the destination byok-export wraps for).
    pub async fn import_public_key(&self, name: &str, key_type: &str, spki_pem: &str) -> Result<(), RemoteError> {
        let path = format!("{}/keys/{name}/import", self.transit);
        let r = self.call("POST", &path, Some(json!({"public_key": spki_pem, "type": key_type}))).await?;
        match r.status {
            200 | 204 => Ok(()),
            s => Err(RemoteError::Permanent(format!("POST {path}: {s} {}", error_text(&r.body)))),
        }
    }

    /// `GET transit/byok-export/:destination/:source/:version?hash=…` (measured on OpenBao
    /// 2.7.2: 400 "key is not exportable", 500 "no such source key for export").
    pub async fn byok_export(&self, destination: &str, source: &str, version: i64, hash: &str) -> Result<ByokExport, RemoteError> {
        let path = format!("{}/byok-export/{destination}/{source}/{version}?hash={hash}", self.transit);
        let r = self.call("GET", &path, None).await?;
        let text = error_text(&r.body);
        match r.status {
            200 => {
                let b64 = r.body["data"]["keys"][version.to_string()]
                    .as_str()
                    .ok_or_else(|| RemoteError::Permanent(format!("GET {path}: no key version {version} in the answer")))?;
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map(ByokExport::Wrapped)
                    .map_err(|e| RemoteError::Permanent(format!("GET {path}: the wrapped key is not base64: {e}")))
            }
            400 if text.contains("not exportable") => Ok(ByokExport::NotExportable),
            _ if text.contains("no such source key") => Ok(ByokExport::Missing),
            s => Err(RemoteError::Permanent(format!("GET {path}: {s} {text}"))),
        }
    }

    /// Deletes the restore destination key `name` of `host`: allows deletion on it first
    /// (transit refuses otherwise). Refuses any name but `<host>-restore-<12 hex>`, so it can
    /// never delete a key's transit copy.
    pub async fn delete_restore_key(&self, host: &str, name: &str) -> Result<(), RemoteError> {
        if !is_restore_key_name(host, name) {
            return Err(RemoteError::Permanent(format!("'{name}' is not a restore destination key of host '{host}'; not deleted")));
        }
        let path = format!("{}/keys/{name}/config", self.transit);
        let r = self.call("POST", &path, Some(json!({"deletion_allowed": true}))).await?;
        if !matches!(r.status, 200 | 204) {
            return Err(RemoteError::Permanent(format!("POST {path}: {} {}", r.status, error_text(&r.body))));
        }
        let path = format!("{}/keys/{name}", self.transit);
        let r = self.call("DELETE", &path, None).await?;
        match r.status {
            200 | 204 | 404 => Ok(()),
            s => Err(RemoteError::Permanent(format!("DELETE {path}: {s} {}", error_text(&r.body)))),
        }
    }
}

/// A fresh restore destination name: `<host>-restore-<12 hex>` (no `.`, so it never collides
/// with a key's `<host>-<namespace>.<name>`).
pub fn new_restore_key_name(host: &str) -> String {
    let mut suffix = [0u8; 6];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut suffix);
    format!("{host}-restore-{}", hex::encode(suffix))
}

/// Whether `name` is one of `new_restore_key_name(host)`'s names.
pub fn is_restore_key_name(host: &str, name: &str) -> bool {
    name.strip_prefix(host)
        .and_then(|r| r.strip_prefix("-restore-"))
        .is_some_and(|h| h.len() == 12 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

#[cfg(test)]
mod restore_tests {
    use super::*;

    #[test]
    fn only_restore_destination_names_are_deletable() {
        let n = new_restore_key_name("h1");
        assert!(is_restore_key_name("h1", &n), "{n}");
        assert!(!is_restore_key_name("h2", &n));
        for bad in [
            "h1-default.web",
            "h1-restore-",
            "h1-restore-0123456789ab.x",
            "h1-restore-0123456789AB",
            "h1-restore-../x",
            "x-h1-restore-0123456789ab",
        ] {
            assert!(!is_restore_key_name("h1", bad), "{bad}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_error_bodies_are_cleaned() {
        let b = json!({"errors": ["1 error occurred:\n\t* the import path cannot be used with an existing key\n\n"]});
        assert_eq!(error_text(&b), "the import path cannot be used with an existing key");
        assert_eq!(error_text(&json!({"errors": ["permission denied"]})), "permission denied");
    }

    #[test]
    fn bodies_without_errors_are_cut_and_keep_no_secrets() {
        let login = json!({"auth": {"client_token": "s.SECRET"}, "data": {"id": "s.SECRET"}, "request_id": "r1"});
        let t = error_text(&login);
        assert!(!t.contains("SECRET") && t.contains("r1"), "{t}");
        let long = Value::String("x".repeat(5000));
        let t = error_text(&long);
        assert!(t.chars().count() <= BODY_TEXT_MAX + 1 && t.ends_with('…'), "{}", t.len());
        let big = json!({"warnings": ["y".repeat(5000)]});
        assert!(error_text(&big).chars().count() <= BODY_TEXT_MAX + 1);
        assert_eq!(error_text(&Value::Null), "null");
    }

    #[test]
    fn unknown_500s_are_retried_client_mistakes_are_not() {
        let e = refused(500, "internal error", "POST x".into());
        assert_eq!(e, RemoteError::Retry { message: "POST x: 500 internal error".into(), after: None, stop_pass: false });
        for text in [
            "error importing key: invalid key type: expected rsa-2048, got *ecdsa.PrivateKey",
            "kwp: unwrap failed integrity check",
            "illegal base64 data at input byte 3",
            "imported key foo does not allow rotation within Vault",
            "no key found with name X; to import a new key, use the import/ endpoint",
        ] {
            assert!(matches!(refused(500, text, "POST x".into()), RemoteError::Permanent(_)), "{text}");
        }
        assert!(matches!(refused(400, "unknown hash function: MD5", "POST x".into()), RemoteError::Permanent(_)));
        assert!(matches!(refused(404, "unsupported path", "POST x".into()), RemoteError::Permanent(_)));
        assert!(matches!(refused(502, "", "POST x".into()), RemoteError::Retry { stop_pass: false, .. }));
    }

    #[test]
    fn a_403_is_a_policy_error_only_when_lookup_self_answers_200() {
        let r = |status, retry_after| Response { status, retry_after, body: Value::Null, headers: Default::default() };
        assert_eq!(probe_verdict(&r(403, None)), Probe::Dead);
        assert_eq!(probe_verdict(&r(200, None)), Probe::PolicyDenied);
        for s in [503, 502, 504] {
            assert!(matches!(probe_verdict(&r(s, None)), Probe::Undecided(RemoteError::Retry { stop_pass: true, .. })), "{s}");
        }
        let after = Some(Duration::from_secs(2));
        assert!(
            matches!(probe_verdict(&r(429, after)), Probe::Undecided(RemoteError::Retry { stop_pass: true, after: a, .. }) if a == after)
        );
        for s in [500, 400, 404] {
            assert!(matches!(probe_verdict(&r(s, None)), Probe::Undecided(RemoteError::Retry { stop_pass: false, .. })), "{s}");
        }
    }

    #[test]
    fn transit_public_keys_as_spki() {
        let raw = [7u8; 32];
        let spki = [&hex::decode("302a300506032b6570032100").unwrap()[..], &raw].concat();
        assert_eq!(transit_public_key_spki(&base64::engine::general_purpose::STANDARD.encode(raw)).unwrap(), spki);
        assert_eq!(transit_public_key_spki(&der_to_pem("PUBLIC KEY", &spki)).unwrap(), spki);
        assert!(transit_public_key_spki("bm90IDMyIGJ5dGVz").is_none(), "not 32 bytes");
    }

    /// The push finds a key's transit version by fingerprint: the vault's forms of a public
    /// key (PEM SPKI, raw base64 for Ed25519) must fingerprint as keyport recorded the key.
    #[test]
    fn transit_public_keys_fingerprint_as_keyport_records_them() {
        use crate::material::spki::PublicKey;
        let ed = PublicKey::Ed25519 { key: [9u8; 32] };
        assert_eq!(vault_fingerprint(&base64::engine::general_purpose::STANDARD.encode([9u8; 32])), Some(ed.fingerprint().unwrap()));
        let p256 = hex::decode("06082a8648ce3d030107").unwrap();
        let secret = p256::SecretKey::from_slice(&[3u8; 32]).unwrap();
        let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&secret.public_key(), false).as_bytes().to_vec();
        let ec = PublicKey::from_ec_point(&p256, &point).unwrap();
        let pem = der_to_pem("PUBLIC KEY", &ec.spki_der().unwrap());
        assert_eq!(vault_fingerprint(&pem), Some(ec.fingerprint().unwrap()));
        assert_ne!(vault_fingerprint(&pem), Some(ed.fingerprint().unwrap()));
    }

    #[test]
    fn pem_round_trip() {
        let der = (0u8..200).collect::<Vec<_>>();
        assert_eq!(pem_to_der(&der_to_pem("PUBLIC KEY", &der)).unwrap(), der);
    }
}
