//! `[apiops]`: the project/environment key face (seed 004, `/apiops/projects/{projectName}/keys/`).
//!
//! A vendor *project* is a keyport namespace; a vendor *environment* is a configured token, so
//! "deploy a key to environments" means "create it in each named token".
//!
//! ```toml
//! [apiops]
//! exportable = false                 # absent: the namespace policy decides
//! [apiops.projects.MyProject]
//! namespace = "web"
//! [apiops.environments]
//! Production = "hsm"                 # environment name → token name
//! Test = "soft"
//! ```

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiOpsConfig {
    /// Vendor project name → its keyport namespace. A project not listed here is unknown.
    #[serde(default)]
    pub projects: BTreeMap<String, ApiOpsProject>,
    /// Vendor environment name → the name of a configured `[[tokens]]` entry.
    #[serde(default)]
    pub environments: BTreeMap<String, String>,
    /// Whether keys created through this face are extractable; the namespace policy decides
    /// when absent.
    pub exportable: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiOpsProject {
    pub namespace: String,
}

impl ApiOpsConfig {
    /// The namespace of `project`, if it is configured.
    pub fn namespace(&self, project: &str) -> Option<&str> {
        self.projects.get(project).map(|p| p.namespace.as_str())
    }

    /// Problems serde cannot see: names, references to tokens, shared namespaces.
    pub fn check(&self, token_names: &[&str]) -> Vec<(String, String)> {
        use crate::names::is_valid_name;
        let mut out = Vec::new();
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, p) in &self.projects {
            if !is_valid_name(&p.namespace) {
                out.push((format!("apiops.projects.{name}.namespace"), "namespace names use 1-64 letters, digits, '_' or '-'".into()));
            }
            if let Some(other) = seen.insert(p.namespace.as_str(), name.as_str()) {
                out.push((
                    format!("apiops.projects.{name}.namespace"),
                    format!("namespace '{}' is already project '{other}''s; give each project its own namespace", p.namespace),
                ));
            }
        }
        for (env, token) in &self.environments {
            if !is_valid_name(env) {
                out.push((format!("apiops.environments.{env}"), "environment names use 1-64 letters, digits, '_' or '-'".into()));
            }
            if !token_names.contains(&token.as_str()) {
                out.push((
                    format!("apiops.environments.{env}"),
                    format!("token '{token}' is not configured; name one of the [[tokens]] entries ({})", token_names.join(", ")),
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_checked() {
        let c: ApiOpsConfig = toml::from_str(
            "[projects.A]\nnamespace = \"web\"\n[projects.B]\nnamespace = \"web\"\n[environments]\nprod = \"hsm\"\ntest = \"nope\"\n",
        )
        .unwrap();
        let problems = c.check(&["hsm"]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().any(|(p, m)| p == "apiops.environments.test" && m.contains("'nope'")));
        assert!(problems.iter().any(|(p, _)| p == "apiops.projects.B.namespace"));
        assert_eq!(c.namespace("A"), Some("web"));
    }
}
