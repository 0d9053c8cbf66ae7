//! The OpenBao (Vault API) connector: transit BYOK import and KV v2 behind a login
//! (`auth`: static token, AppRole or certificate), with every answer classified as
//! research/vault.md §8 says:
//!
//! - connection refused/reset/timeout, 502/503/504 (sealed, standby), 429 (quota; Retry-After
//!   honoured when present, never relied on) → retry later, and stop the pass (the vault is
//!   unusable for every key);
//! - 500 `crypto/rsa: decryption error` on import → the mount's wrapping key changed: re-fetch
//!   once (the caller does), then retry later;
//! - 403 → `auth/token/lookup-self`: 403 there too means the token is dead, so it is dropped
//!   and the next try logs in again once (or re-reads a static token's file), else it is a
//!   policy denial: permanent, per key;
//! - any other 400/500 (wrong type, bad shape, policy) → permanent, reported per key.
//!
//! Almost every client mistake is a 500 in OpenBao, so the messages are matched, not just codes.

use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::auth::{Auth, AuthStatus};
use super::client_cert::ClientCert;
use super::http::{Http, Response};
use crate::config::SyncConfig;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultError {
    /// Try again later. `stop_pass`: the vault is unusable for every key right now.
    Retry { message: String, after: Option<Duration>, stop_pass: bool },
    /// The vault refused in a way retrying cannot fix; reported per key until `sync now`.
    Permanent(String),
}

impl VaultError {
    pub fn message(&self) -> &str {
        match self {
            VaultError::Retry { message, .. } | VaultError::Permanent(message) => message,
        }
    }

    fn down(message: impl Into<String>) -> VaultError {
        VaultError::Retry { message: message.into(), after: None, stop_pass: true }
    }
}

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

pub struct OpenBao {
    http: Http,
    pub address: String,
    auth: Auth,
    /// The certificate the https client presents (certificate login only).
    client_cert: Option<Arc<ClientCert>>,
    transit: String,
    kv: String,
    wrapping: tokio::sync::Mutex<Option<WrappingKey>>,
    /// `sync.vault_exportable`: transit keys are created exportable (restorable).
    exportable: bool,
}

/// The vault's messages, without its "1 error occurred:\n\t* …" wrapping.
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
    if errs.is_empty() {
        body.to_string()
    } else {
        errs.join("; ")
    }
}

/// The vault is unusable right now (sealed, standby, gateway, quota): stop the pass.
pub fn unavailable(r: &Response) -> Option<VaultError> {
    match r.status {
        503 => Some(VaultError::down(format!("the vault is sealed or has no active node (503: {})", error_text(&r.body)))),
        502 | 504 => Some(VaultError::down(format!("the vault's gateway failed ({})", r.status))),
        429 => Some(VaultError::Retry {
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
        let address = cfg.address.clone().ok_or("sync.address is not set")?;
        let client_cert = cfg.cert.as_ref().map(|_| Arc::new(ClientCert::default()));
        let http = match &client_cert {
            Some(c) => Http::with_client_cert(&address, cfg.ca_file.as_deref(), c.clone())?,
            None => Http::new(&address, cfg.ca_file.as_deref())?,
        };
        Ok(OpenBao {
            http,
            address,
            auth: Auth::new(cfg, client_cert.clone())?,
            client_cert,
            transit: cfg.transit_mount.clone(),
            kv: cfg.kv_mount.clone(),
            wrapping: tokio::sync::Mutex::new(None),
            exportable: cfg.vault_exportable,
        })
    }

    /// The token holding the vault client key (certificate login); sync's start attaches it.
    pub fn attach_token(&self, token: Option<&Arc<crate::token::Token>>) {
        if let (Some(c), Some(t)) = (&self.client_cert, token) {
            c.attach(t.clone());
        }
    }

    pub fn auth_status(&self) -> AuthStatus {
        self.auth.status()
    }

    /// One authenticated call; transport, availability and auth failures are classified here,
    /// every other answer goes back to the caller.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Response, VaultError> {
        for attempt in 0..2 {
            let token = self.auth.token(&self.http).await?;
            let r =
                self.http.request(method, &format!("/v1/{path}"), Some(&token), body.as_ref()).await.map_err(|u| VaultError::down(u.0))?;
            if let Some(e) = unavailable(&r) {
                return Err(e);
            }
            match r.status {
                403 => {
                    let probe = self
                        .http
                        .request("GET", "/v1/auth/token/lookup-self", Some(&token), None)
                        .await
                        .map_err(|u| VaultError::down(u.0))?;
                    if probe.status == 403 {
                        // The token is dead (expired, revoked, wrong): log in again (or re-read
                        // a static token's source) once.
                        self.auth.forget().await;
                        if attempt == 0 {
                            continue;
                        }
                        return Err(VaultError::down(self.auth.rejected()));
                    }
                    return Err(VaultError::Permanent(format!(
                        "the vault's policy denies {method} {path} (403); grant it to keyport's token"
                    )));
                }
                _ => return Ok(r),
            }
        }
        unreachable!("the loop returns")
    }

    /// The mount's wrapping key: cached (pinned); `refresh` re-fetches it after a stale-key error.
    pub async fn wrapping_key(&self, refresh: bool) -> Result<WrappingKey, VaultError> {
        let mut cached = self.wrapping.lock().await;
        if let (Some(k), false) = (cached.as_ref(), refresh) {
            return Ok(k.clone());
        }
        let r = self.call("GET", &format!("{}/wrapping_key", self.transit), None).await?;
        if r.status != 200 {
            return Err(VaultError::Permanent(format!(
                "GET {}/wrapping_key: {} {} (is transit mounted at '{}'?)",
                self.transit,
                r.status,
                error_text(&r.body),
                self.transit
            )));
        }
        let der = r.body["data"]["public_key"]
            .as_str()
            .and_then(pem_to_der)
            .ok_or_else(|| VaultError::Permanent("the vault's wrapping key is not a PEM public key".into()))?;
        use sha2::Digest;
        let k = WrappingKey { fingerprint: format!("sha256:{}", hex::encode(sha2::Sha256::digest(&der))), spki_der: der };
        if let Some(old) = cached.as_ref().filter(|o| o.fingerprint != k.fingerprint) {
            tracing::warn!(mount = %self.transit, old = %old.fingerprint, new = %k.fingerprint, "the vault's wrapping key changed (mount re-created or a new vault); using the new one");
        }
        *cached = Some(k.clone());
        Ok(k)
    }

    pub async fn pinned_wrapping_key(&self) -> Option<String> {
        self.wrapping.lock().await.as_ref().map(|k| k.fingerprint.clone())
    }

    pub async fn read_key(&self, name: &str) -> Result<Option<TransitKey>, VaultError> {
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
                    latest_version: d["latest_version"].as_i64().unwrap_or(0),
                    versions,
                }))
            }
            s => Err(VaultError::Permanent(format!("GET {}/keys/{name}: {s} {}", self.transit, error_text(&r.body)))),
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
    ) -> Result<ImportResult, VaultError> {
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
        let text = error_text(&r.body);
        Ok(match r.status {
            200 | 204 => ImportResult::Done,
            _ if text.contains("decryption error") => ImportResult::StaleWrappingKey,
            _ if text.contains("cannot be used with an existing key") => ImportResult::Exists,
            s => ImportResult::Refused(format!("POST {path}: {s} {text}")),
        })
    }

    pub async fn set_certificate(&self, name: &str, version: i64, chain_pem: &str) -> Result<(), VaultError> {
        let path = format!("{}/keys/{name}/set-certificate", self.transit);
        let r = self.call("POST", &path, Some(json!({"certificate_chain": chain_pem, "version": version}))).await?;
        match r.status {
            200 | 204 => Ok(()),
            s => Err(VaultError::Permanent(format!("POST {path}: {s} {}", error_text(&r.body)))),
        }
    }

    pub async fn kv_read(&self, path: &str) -> Result<KvEntry, VaultError> {
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
            s => Err(VaultError::Permanent(format!("GET {}/data/{path}: {s} {}", self.kv, error_text(&r.body)))),
        }
    }

    /// Writes with check-and-set; `Ok(false)` when `cas` no longer matches (re-read, decide again).
    pub async fn kv_write(&self, path: &str, data: Value, cas: i64) -> Result<bool, VaultError> {
        let r = self.call("POST", &format!("{}/data/{path}", self.kv), Some(json!({"options": {"cas": cas}, "data": data}))).await?;
        let text = error_text(&r.body);
        match r.status {
            200 | 204 => Ok(true),
            400 if text.contains("check-and-set") => Ok(false),
            s => Err(VaultError::Permanent(format!("POST {}/data/{path}: {s} {text}", self.kv))),
        }
    }

    pub async fn kv_set_metadata(&self, path: &str, custom: &BTreeMap<String, String>) -> Result<(), VaultError> {
        let r = self.call("POST", &format!("{}/metadata/{path}", self.kv), Some(json!({"custom_metadata": custom}))).await?;
        match r.status {
            200 | 204 => Ok(()),
            s => Err(VaultError::Permanent(format!("POST {}/metadata/{path}: {s} {}", self.kv, error_text(&r.body)))),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ImportResult {
    Done,
    StaleWrappingKey,
    Exists,
    Refused(String),
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
    pub async fn kv_list(&self, path: &str) -> Result<Vec<String>, VaultError> {
        let r = self.call("GET", &format!("{}/metadata/{path}?list=true", self.kv), None).await?;
        match r.status {
            200 => Ok(r.body["data"]["keys"].as_array().into_iter().flatten().filter_map(|k| k.as_str().map(String::from)).collect()),
            404 => Ok(Vec::new()),
            s => Err(VaultError::Permanent(format!("LIST {}/metadata/{path}: {s} {}", self.kv, error_text(&r.body)))),
        }
    }

    /// Whether transit key `name` is exportable; `None` when it does not exist.
    pub async fn key_exportable(&self, name: &str) -> Result<Option<bool>, VaultError> {
        Ok(self.restore_source(name).await?.map(|k| k.exportable))
    }

    /// What restore needs of a transit key, from one read: its `exportable` flag and each
    /// version's public key (PEM; base64 of the raw key for Ed25519). `None` when it does not
    /// exist.
    pub async fn restore_source(&self, name: &str) -> Result<Option<RestoreSource>, VaultError> {
        let r = self.call("GET", &format!("{}/keys/{name}", self.transit), None).await?;
        match r.status {
            404 => Ok(None),
            200 => {
                let d = &r.body["data"];
                let public_keys = d["keys"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(v, k)| Some((v.parse::<i64>().ok()?, k["public_key"].as_str().unwrap_or_default().to_string())))
                    .collect();
                Ok(Some(RestoreSource { exportable: d["exportable"].as_bool().unwrap_or(false), public_keys }))
            }
            s => Err(VaultError::Permanent(format!("GET {}/keys/{name}: {s} {}", self.transit, error_text(&r.body)))),
        }
    }

    /// A public-key-only transit key (the destination byok-export wraps for).
    pub async fn import_public_key(&self, name: &str, key_type: &str, spki_pem: &str) -> Result<(), VaultError> {
        let path = format!("{}/keys/{name}/import", self.transit);
        let r = self.call("POST", &path, Some(json!({"public_key": spki_pem, "type": key_type}))).await?;
        match r.status {
            200 | 204 => Ok(()),
            s => Err(VaultError::Permanent(format!("POST {path}: {s} {}", error_text(&r.body)))),
        }
    }

    /// `GET transit/byok-export/:destination/:source/:version?hash=…` (measured on OpenBao
    /// 2.7.2: 400 "key is not exportable", 500 "no such source key for export").
    pub async fn byok_export(&self, destination: &str, source: &str, version: i64, hash: &str) -> Result<ByokExport, VaultError> {
        let path = format!("{}/byok-export/{destination}/{source}/{version}?hash={hash}", self.transit);
        let r = self.call("GET", &path, None).await?;
        let text = error_text(&r.body);
        match r.status {
            200 => {
                let b64 = r.body["data"]["keys"][version.to_string()]
                    .as_str()
                    .ok_or_else(|| VaultError::Permanent(format!("GET {path}: no key version {version} in the answer")))?;
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map(ByokExport::Wrapped)
                    .map_err(|e| VaultError::Permanent(format!("GET {path}: the wrapped key is not base64: {e}")))
            }
            400 if text.contains("not exportable") => Ok(ByokExport::NotExportable),
            _ if text.contains("no such source key") => Ok(ByokExport::Missing),
            s => Err(VaultError::Permanent(format!("GET {path}: {s} {text}"))),
        }
    }

    /// Deletes the restore destination key `name` of `host`: allows deletion on it first
    /// (transit refuses otherwise). Refuses any name but `<host>-restore-<12 hex>`, so it can
    /// never delete a key's transit copy.
    pub async fn delete_restore_key(&self, host: &str, name: &str) -> Result<(), VaultError> {
        if !is_restore_key_name(host, name) {
            return Err(VaultError::Permanent(format!("'{name}' is not a restore destination key of host '{host}'; not deleted")));
        }
        let path = format!("{}/keys/{name}/config", self.transit);
        let r = self.call("POST", &path, Some(json!({"deletion_allowed": true}))).await?;
        if !matches!(r.status, 200 | 204) {
            return Err(VaultError::Permanent(format!("POST {path}: {} {}", r.status, error_text(&r.body))));
        }
        let path = format!("{}/keys/{name}", self.transit);
        let r = self.call("DELETE", &path, None).await?;
        match r.status {
            200 | 204 | 404 => Ok(()),
            s => Err(VaultError::Permanent(format!("DELETE {path}: {s} {}", error_text(&r.body)))),
        }
    }
}

/// A transit key as restore reads it (`OpenBao::restore_source`).
#[derive(Debug, Clone)]
pub struct RestoreSource {
    pub exportable: bool,
    pub public_keys: BTreeMap<i64, String>,
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
    fn pem_round_trip() {
        let der = (0u8..200).collect::<Vec<_>>();
        assert_eq!(pem_to_der(&der_to_pem("PUBLIC KEY", &der)).unwrap(), der);
    }
}
