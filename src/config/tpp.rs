//! `[tpp]`: the Venafi TPP WebSDK SSH face (seed 003): who may log in with a password, what
//! the tokens live for, where imported keys land.
//!
//! ```toml
//! [tpp]
//! namespace = "default"
//! token_lifetime_secs = 3600
//! [[tpp.users]]
//! username = "alice"
//! password_sha256 = "<hex SHA-256 of the password>"
//! principal = "alice"          # the keyport principal the user acts as
//! ```

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TppConfig {
    /// Namespace `SSH/ImportPrivateKey` imports into.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Lifetime of an access token (TPP's default is 3600 s... 90 days depending on the
    /// API integration; keyport uses one hour).
    #[serde(default = "default_token_lifetime")]
    pub token_lifetime_secs: u64,
    /// How long a refresh token can be used.
    #[serde(default = "default_refresh_lifetime")]
    pub refresh_lifetime_secs: u64,
    /// The version `GET /vedsdk/SystemStatus/Version` answers (clients gate features on it).
    #[serde(default = "default_version")]
    pub version: String,
    #[serde(default)]
    pub users: Vec<TppUser>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TppUser {
    pub username: String,
    /// Lower-case hex SHA-256 of the password; the password itself is never stored.
    pub password_sha256: String,
    pub principal: String,
}

fn default_namespace() -> String {
    "default".into()
}
fn default_token_lifetime() -> u64 {
    3600
}
fn default_refresh_lifetime() -> u64 {
    90 * 24 * 3600
}
fn default_version() -> String {
    "25.1.0.2456".into()
}

impl Default for TppConfig {
    fn default() -> TppConfig {
        TppConfig {
            namespace: default_namespace(),
            token_lifetime_secs: default_token_lifetime(),
            refresh_lifetime_secs: default_refresh_lifetime(),
            version: default_version(),
            users: Vec::new(),
        }
    }
}

impl TppConfig {
    /// Problems as (key path, message): names, lifetimes, and users that point at principals.
    pub(super) fn check(&self, principals: &[String]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut p = |k: String, m: String| out.push((format!("tpp.{k}"), m));
        if !crate::core::names::is_valid_name(&self.namespace) {
            p("namespace".into(), "namespace names use 1-64 letters, digits, '_' or '-'".into());
        }
        if self.token_lifetime_secs == 0 {
            p("token_lifetime_secs".into(), "must be at least 1".into());
        }
        if self.refresh_lifetime_secs < self.token_lifetime_secs {
            p("refresh_lifetime_secs".into(), "must be at least token_lifetime_secs (a refresh token outlives its access token)".into());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            if u.username.is_empty() {
                p(format!("users[{i}].username"), "must not be empty".into());
            }
            // TPP user names are case-insensitive (`local:alice` = `local:Alice`).
            if !seen.insert(u.username.to_lowercase()) {
                p(format!("users[{i}].username"), format!("'{}' is listed twice (names are case-insensitive)", u.username));
            }
            if u.password_sha256.len() != 64 || !u.password_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                p(
                    format!("users[{i}].password_sha256"),
                    "not a SHA-256 hex digest; store `printf %s PASSWORD | sha256sum`, never the password".into(),
                );
            }
            if !principals.contains(&u.principal) {
                p(format!("users[{i}].principal"), format!("no [[principals]] entry is named '{}'", u.principal));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_must_point_at_principals_and_store_only_hashes() {
        let mut c = TppConfig::default();
        let good = TppUser { username: "alice".into(), password_sha256: "ab".repeat(32), principal: "ops".into() };
        c.users = vec![good.clone()];
        assert!(c.check(&["ops".into()]).is_empty());
        c.users.push(TppUser { username: "Alice".into(), password_sha256: "hunter2".into(), principal: "nobody".into() });
        c.token_lifetime_secs = 0;
        let keys: Vec<String> = c.check(&["ops".into()]).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["tpp.token_lifetime_secs", "tpp.users[1].username", "tpp.users[1].password_sha256", "tpp.users[1].principal"]);
    }
}
