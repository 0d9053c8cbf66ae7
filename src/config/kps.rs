//! `[kps]`: the Huawei Cloud KPS face (`/v3/{project_id}/keypairs…`).
//!
//! ```toml
//! [kps.projects.0123456789abcdef0123456789abcdef]
//! namespace = "ssh"                # keyport namespace the project's key pairs live in
//! token = "soft"                   # optional; the first token when absent
//! kms_keys = [{ name = "kps/default", id = "…", token = "hsm" }]
//!
//! [[kps.access_keys]]
//! access_key = "AKEXAMPLE"
//! secret_key = { file = "/etc/keyport/kps-sk" }   # or { env = … } / { credential = … }
//! principal = "ci-deployer"
//! ```
//!
//! `X-Auth-Token` values are API keys: they match a `[[principals]] api_key_sha256` entry.

use serde::Deserialize;
use std::collections::BTreeMap;

use super::{PinSource, Problem};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KpsConfig {
    /// Project id (as in the URL) → where its key pairs live.
    #[serde(default)]
    pub projects: BTreeMap<String, KpsProject>,
    /// AK/SK pairs for the `SDK-HMAC-SHA256` request signature, each naming a principal.
    #[serde(default)]
    pub access_keys: Vec<KpsAccessKey>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KpsProject {
    pub namespace: String,
    /// Token for key pairs with `encryption.type = "default"`; the first token when absent.
    pub token: Option<String>,
    /// The wrapping keys `encryption.type = "kms"` may name (by `kms_key_name` or `kms_key_id`).
    #[serde(default)]
    pub kms_keys: Vec<KmsKey>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsKey {
    /// `kms_key_name`, e.g. "kps/default".
    pub name: String,
    /// `kms_key_id` (the vendor uses a UUID); optional.
    pub id: Option<String>,
    /// Token holding key pairs protected by this key; the project's token when absent.
    pub token: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KpsAccessKey {
    /// The AK, sent in clear in `Authorization: SDK-HMAC-SHA256 Access=…`.
    pub access_key: String,
    /// Where the SK is read from: a file, an environment variable or a systemd credential.
    pub secret_key: PinSource,
    /// The `[[principals]]` entry this AK acts as.
    pub principal: String,
}

impl KpsConfig {
    pub(super) fn check(&self, tokens: &[String], principals: &[String], out: &mut Vec<Problem>) {
        let mut p = |path: String, message: String| out.push(Problem { path, message });
        for (id, proj) in &self.projects {
            let at = format!("kps.projects.{id}");
            if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                p(at.clone(), "project ids use 1-64 letters, digits, '_' or '-'".into());
            }
            if !crate::names::is_valid_name(&proj.namespace) {
                p(format!("{at}.namespace"), "namespace names use 1-64 letters, digits, '_' or '-'".into());
            }
            let token_ok = |t: &Option<String>| t.as_ref().is_none_or(|t| tokens.contains(t));
            if !token_ok(&proj.token) {
                p(format!("{at}.token"), format!("no [[tokens]] entry is named '{}'", proj.token.clone().unwrap_or_default()));
            }
            for (i, k) in proj.kms_keys.iter().enumerate() {
                if !token_ok(&k.token) {
                    p(
                        format!("{at}.kms_keys[{i}].token"),
                        format!("no [[tokens]] entry is named '{}'", k.token.clone().unwrap_or_default()),
                    );
                }
                if k.name.is_empty() {
                    p(format!("{at}.kms_keys[{i}].name"), "must not be empty".into());
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, a) in self.access_keys.iter().enumerate() {
            let at = format!("kps.access_keys[{i}]");
            if a.access_key.is_empty() || !a.access_key.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
                p(format!("{at}.access_key"), "must be printable ASCII without spaces or commas".into());
            }
            if !seen.insert(a.access_key.clone()) {
                p(format!("{at}.access_key"), "the same access key is listed twice".into());
            }
            if !principals.contains(&a.principal) {
                p(format!("{at}.principal"), format!("no [[principals]] entry is named '{}'", a.principal));
            }
        }
    }

    /// The AK/SK entry for an access key.
    pub fn access_key(&self, ak: &str) -> Option<&KpsAccessKey> {
        self.access_keys.iter().find(|a| a.access_key == ak)
    }
}
