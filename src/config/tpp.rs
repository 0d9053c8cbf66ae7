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
