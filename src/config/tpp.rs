//! `[tpp]`: the Venafi TPP WebSDK SSH face (seed 003): who may log in with a password, what
//! the tokens live for, where imported keys land.
//!
//! ```toml
//! [tpp]
//! namespace = "default"
//! token_lifetime_secs = 3600
//! [[tpp.users]]
//! username = "alice"
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$…"   # `keyport hash-password` prints one
//! principal = "alice"          # the keyport principal the user acts as
//! ```
//!
//! Passwords are stored as PHC strings (Argon2id, a random salt each). The unsalted
//! `password_sha256` of earlier versions is refused by `config check` with the migration step:
//! a leaked config with unsalted SHA-256 falls to a GPU dictionary attack in minutes, and
//! accepting it "with a warning" would keep that hole open on every host nobody looks at.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
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
    /// The password as an Argon2id PHC string (`keyport hash-password`); never the password.
    #[serde(default)]
    pub password_hash: Option<String>,
    /// Refused (unsalted SHA-256 of earlier versions); kept so `config check` can say how to
    /// migrate instead of "unknown field".
    #[serde(default)]
    pub password_sha256: Option<String>,
    pub principal: String,
}

/// The most an Argon2id hash in the config may ask of one login check (memory KiB, passes,
/// lanes): every failed guess costs this much, so it is bounded (the throttle in `api::tpp`
/// bounds how often).
pub const MAX_ARGON2_M_KIB: u32 = 256 * 1024;
pub const MAX_ARGON2_T: u32 = 10;
pub const MAX_ARGON2_P: u32 = 8;

/// A PHC string for `password`: Argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane)
/// and a fresh random salt.
pub fn hash_password(password: &[u8]) -> String {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
        .hash_password(password, &salt)
        .expect("default Argon2 parameters are valid")
        .to_string()
}

/// Why `phc` is not a usable password hash, if it is not.
pub fn check_password_hash(phc: &str) -> Result<(), String> {
    let h = PasswordHash::new(phc).map_err(|e| format!("not a PHC string ({e}); store the output of `keyport hash-password`"))?;
    if h.algorithm.as_str() != "argon2id" {
        return Err(format!("the hash is {}, not argon2id; store the output of `keyport hash-password`", h.algorithm));
    }
    let params = Params::try_from(&h).map_err(|e| format!("bad Argon2 parameters ({e})"))?;
    if params.m_cost() > MAX_ARGON2_M_KIB || params.t_cost() > MAX_ARGON2_T || params.p_cost() > MAX_ARGON2_P {
        return Err(format!(
            "Argon2 parameters m={} t={} p={} exceed what one login may cost (m ≤ {MAX_ARGON2_M_KIB}, t ≤ {MAX_ARGON2_T}, p ≤ {MAX_ARGON2_P})",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        ));
    }
    Ok(())
}

/// Whether `password` matches the PHC string `phc` (constant-time compare inside). CPU- and
/// memory-heavy: call it on a blocking thread.
pub fn verify_password(phc: &str, password: &[u8]) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) if check_password_hash(phc).is_ok() => Argon2::default().verify_password(password, &h).is_ok(),
        _ => false,
    }
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
        if !crate::names::is_valid_name(&self.namespace) {
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
            if u.password_sha256.is_some() {
                p(
                    format!("users[{i}].password_sha256"),
                    "unsalted SHA-256 password hashes are no longer accepted; run `keyport hash-password` (it reads the password \
                     from the terminal or stdin), store its output as `password_hash = \"$argon2id$…\"` and remove \
                     password_sha256 (sessions of this user end once; it logs in again)"
                        .into(),
                );
            }
            match &u.password_hash {
                None if u.password_sha256.is_none() => {
                    p(format!("users[{i}].password_hash"), "missing; store the output of `keyport hash-password`".into())
                }
                Some(h) => {
                    if let Err(m) = check_password_hash(h) {
                        p(format!("users[{i}].password_hash"), m);
                    }
                }
                None => {}
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

    fn user(name: &str, hash: Option<String>, sha: Option<&str>, principal: &str) -> TppUser {
        TppUser { username: name.into(), password_hash: hash, password_sha256: sha.map(String::from), principal: principal.into() }
    }

    #[test]
    fn users_must_point_at_principals_and_store_only_phc_hashes() {
        let mut c = TppConfig { users: vec![user("alice", Some(hash_password(b"pw")), None, "ops")], ..TppConfig::default() };
        assert!(c.check(&["ops".into()]).is_empty(), "{:?}", c.check(&["ops".into()]));
        c.users.push(user("Alice", None, Some(&"ab".repeat(32)), "nobody"));
        c.users.push(user("carol", Some("$argon2i$v=19$m=4096,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into()), None, "ops"));
        c.users.push(user("dave", Some("hunter2".into()), None, "ops"));
        c.token_lifetime_secs = 0;
        let found = c.check(&["ops".into()]);
        let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "tpp.token_lifetime_secs",
                "tpp.users[1].username",
                "tpp.users[1].password_sha256",
                "tpp.users[1].principal",
                "tpp.users[2].password_hash",
                "tpp.users[3].password_hash"
            ]
        );
        assert!(found[2].1.contains("keyport hash-password"), "says how to migrate: {}", found[2].1);
    }

    #[test]
    fn hashes_are_salted_argon2id_and_verify() {
        let (a, b) = (hash_password(b"correct horse"), hash_password(b"correct horse"));
        assert!(a.starts_with("$argon2id$") && a != b, "a fresh salt each time");
        assert!(verify_password(&a, b"correct horse") && !verify_password(&a, b"correct hors"));
        let greedy = "$argon2id$v=19$m=1048576,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        assert!(check_password_hash(greedy).is_err() && !verify_password(greedy, b"x"), "costs are capped");
    }
}
