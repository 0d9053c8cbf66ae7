//! Every schema problem of a config file, not only the first: serde stops at the first error,
//! so when the whole file does not deserialize, each top-level section (and each element of
//! the array sections) is deserialized on its own and every failure is reported with a clean
//! key path (`limits.max_connections`, `tokens[0].bogus`, `principals[1].name`).

use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};

use super::*;

/// A config crate error as a problem with its key path and a fix.
pub(super) fn from_config_error(e: config::ConfigError) -> Problem {
    let text = e.to_string();
    // The config crate says "unknown field `x`, expected one of … for key `a.b`".
    let mut path = text
        .rsplit_once("for key `")
        .map(|(_, k)| k.split('`').next().unwrap_or(k).to_string())
        .or_else(|| text.rsplit_once(" in ").map(|(_, p)| p.to_string()))
        .unwrap_or_else(|| "config".into());
    let field = |marker: &str| text.split_once(marker).and_then(|(_, rest)| rest.split_once('`')).map(|(f, _)| f.to_string());
    let hint = if let Some(f) = field("unknown field `") {
        path = join(&path, &f);
        " (remove the key or fix its spelling; config/keyport.toml lists every key)"
    } else if let Some(f) = field("missing field `") {
        path = join(&path, &f);
        " (add it; config/keyport.toml shows an example)"
    } else {
        ""
    };
    // The message without the crate's own "for key …" tail: the path says it.
    let message = text.rsplit_once(" for key `").map_or(text.as_str(), |(m, _)| m).to_string();
    Problem { path, message: format!("{message}{hint}") }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() || path == "config" {
        field.to_string()
    } else if path.ends_with(&format!(".{field}")) || path == field {
        path.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn section<T: DeserializeOwned>(built: &config::Config, key: &str, out: &mut Vec<Problem>) {
    // The section as plain TOML: serde_path_to_error then names the exact field.
    if let Ok(v) = built.get::<toml::Value>(key) {
        if let Err(e) = serde_path_to_error::deserialize::<_, T>(v) {
            let inner = e.path().to_string();
            // toml adds "in `field`" lines: the path says it.
            let message = e.into_inner().to_string().lines().next().unwrap_or_default().trim().to_string();
            let path = if inner.is_empty() || inner == "." {
                key.to_string()
            } else if inner.starts_with('[') {
                format!("{key}{inner}")
            } else {
                format!("{key}.{inner}")
            };
            let hint = if message.contains("unknown field") {
                " (remove the key or fix its spelling; config/keyport.toml lists every key)"
            } else if message.contains("missing field") {
                " (add it; config/keyport.toml shows an example)"
            } else {
                ""
            };
            out.push(Problem { path, message: format!("{message}{hint}") });
            return;
        }
    }
    if let Err(e) = built.get::<T>(key) {
        let mut p = from_config_error(e);
        if p.path == "config" || !p.path.starts_with(key.split('[').next().unwrap_or(key)) {
            p.path = join(key, p.path.trim_start_matches("config"));
        }
        out.push(p);
    }
}

fn elements<T: DeserializeOwned>(built: &config::Config, key: &str, out: &mut Vec<Problem>) {
    match built.get_array(key) {
        Ok(items) => {
            for i in 0..items.len() {
                section::<T>(built, &format!("{key}[{i}]"), out);
            }
        }
        Err(_) => section::<Vec<T>>(built, key, out),
    }
}

/// Every schema problem of `built`; `first` is the whole-file error, used when no section
/// alone fails (a problem between sections).
pub(super) fn problems(built: &config::Config, first: config::ConfigError) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Ok(root) = built.clone().try_deserialize::<HashMap<String, config::Value>>() {
        let mut unknown: Vec<&String> = root.keys().filter(|k| !TOP_LEVEL_KEYS.contains(&k.as_str())).collect();
        unknown.sort();
        for k in unknown {
            out.push(Problem {
                path: k.clone(),
                message: format!("unknown top-level key `{k}` (remove the key or fix its spelling; config/keyport.toml lists every key)"),
            });
        }
        let has = |k: &str| root.contains_key(k);
        if has("state_dir") {
            section::<PathBuf>(built, "state_dir", &mut out);
        }
        if has("listen") {
            section::<Listen>(built, "listen", &mut out);
        }
        if has("limits") {
            section::<Limits>(built, "limits", &mut out);
        }
        if has("tokens") {
            elements::<TokenConfig>(built, "tokens", &mut out);
        } else {
            out.push(Problem { path: "tokens".into(), message: "no token configured; add a [[tokens]] section".into() });
        }
        if has("principals") {
            elements::<Principal>(built, "principals", &mut out);
        }
        if has("namespaces") {
            section::<BTreeMap<String, NamespacePolicy>>(built, "namespaces", &mut out);
        }
        if has("tlspc") {
            section::<TlspcConfig>(built, "tlspc", &mut out);
        }
        if has("kps") {
            section::<KpsConfig>(built, "kps", &mut out);
        }
        if has("apiops") {
            section::<ApiOpsConfig>(built, "apiops", &mut out);
        }
        if has("tpp") {
            section::<TppConfig>(built, "tpp", &mut out);
        }
        if has("enrollment_profiles") {
            elements::<EnrollmentProfile>(built, "enrollment_profiles", &mut out);
        }
        if has("sync") {
            section::<SyncConfig>(built, "sync", &mut out);
        }
        if has("agent") {
            section::<AgentConfig>(built, "agent", &mut out);
        }
        if has("metrics") {
            section::<MetricsConfig>(built, "metrics", &mut out);
        }
    }
    if out.is_empty() {
        out.push(from_config_error(first));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_section_is_checked_with_clean_paths() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("bad.toml");
        std::fs::write(
            &f,
            r#"state_dir = "/tmp/x"
zzz = 1
[limits]
max_connections = "many"
[[tokens]]
name = "soft"
module = "/usr/lib/softhsm/libsofthsm2.so"
label = "k"
pin = { file = "/tmp/p" }
bogus = 1
[[principals]]
name = "ok"
[[principals]]
name = 5
uids = "zero"
[metrics]
listen = ["x"]
"#,
        )
        .unwrap();
        let problems = super::super::load(Some(&f)).unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        for want in ["zzz", "limits.max_connections", "tokens[0].bogus", "principals[1].uids", "metrics.listen"] {
            assert!(
                paths.iter().any(|p| *p == want || (want == "principals[1].uids" && p.starts_with("principals[1]"))),
                "{want} not in {problems:#?}"
            );
        }
        assert!(problems.iter().all(|p| !p.message.contains("for key `")), "{problems:#?}");
    }
}
