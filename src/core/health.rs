//! What is wrong with the daemon right now, one reason per component ("token:soft", "store",
//! "dek", …). Start-up (a missing token, a lost at-rest key, a full disk) and the periodic
//! probes record problems here; `GET health`, metrics and logs read them. A component with no
//! entry is fine.

use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Health {
    problems: Mutex<BTreeMap<String, String>>,
    /// Features that are off because no configured token can do what they need (`placement`):
    /// shown in health, but not a fault (the daemon is as healthy as its tokens allow).
    off: Mutex<BTreeMap<String, String>>,
}

/// One problem as `GET health` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub component: String,
    pub reason: String,
}

impl Health {
    /// Records (or replaces) the problem of `component`; logged once per new reason.
    pub fn set(&self, component: &str, reason: impl Into<String>) {
        let reason = reason.into();
        let mut p = self.problems.lock().expect("poisoned");
        if p.get(component) != Some(&reason) {
            tracing::warn!(component, reason = %reason, "degraded");
            p.insert(component.to_string(), reason);
        }
    }

    /// The component works again.
    pub fn clear(&self, component: &str) {
        if self.problems.lock().expect("poisoned").remove(component).is_some() {
            tracing::info!(component, "recovered");
        }
    }

    /// Records a feature that is off for good with this configuration (logged by the caller).
    pub fn set_off(&self, component: &str, reason: impl Into<String>) {
        self.off.lock().expect("poisoned").insert(component.to_string(), reason.into());
    }

    pub fn is_off(&self, component: &str) -> bool {
        self.off.lock().expect("poisoned").contains_key(component)
    }

    /// The features that are off, as `GET health` shows them.
    pub fn off(&self) -> Vec<Problem> {
        self.off.lock().expect("poisoned").iter().map(|(c, r)| Problem { component: c.clone(), reason: r.clone() }).collect()
    }

    pub fn problems(&self) -> Vec<Problem> {
        self.problems.lock().expect("poisoned").iter().map(|(c, r)| Problem { component: c.clone(), reason: r.clone() }).collect()
    }

    pub fn is_ok(&self) -> bool {
        self.problems.lock().expect("poisoned").is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replace_clear() {
        let h = Health::default();
        assert!(h.is_ok());
        h.set("store", "disk full");
        h.set("store", "read-only");
        assert_eq!(h.problems(), vec![Problem { component: "store".into(), reason: "read-only".into() }]);
        h.clear("store");
        assert!(h.is_ok());
    }
}
