//! Default paths. Under systemd, `StateDirectory=`, `RuntimeDirectory=` and `LoadCredential=`
//! give `$STATE_DIRECTORY`, `$RUNTIME_DIRECTORY` and `$CREDENTIALS_DIRECTORY`: those are where
//! state, sockets and secrets go by default. Elsewhere the defaults are under `./run` (what
//! `scripts/run` uses), and `keyport serve` says where it put them (`server`).

use std::path::{Path, PathBuf};

/// The first folder of a systemd directory variable (it may list several, `:`-separated).
pub fn systemd_dir(var: &str) -> Option<PathBuf> {
    let v = std::env::var_os(var)?;
    let first = v.to_str()?.split(':').next()?.to_string();
    (!first.is_empty()).then(|| PathBuf::from(first))
}

pub fn state_dir() -> PathBuf {
    systemd_dir("STATE_DIRECTORY").unwrap_or_else(|| PathBuf::from("./run"))
}

pub fn api_socket() -> PathBuf {
    systemd_dir("RUNTIME_DIRECTORY").map_or_else(|| PathBuf::from("./run/keyport.sock"), |d| d.join("keyport.sock"))
}

fn quoted(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

/// The embedded default config with systemd's folders in place of `./run` where set, and
/// systemd credentials `token-pin` and `vault-token` in place of the files when present.
pub fn embedded_default(text: &str) -> String {
    let mut t = text.to_string();
    if let Some(run) = systemd_dir("RUNTIME_DIRECTORY") {
        t = t.replace("\"./run/keyport.sock\"", &quoted(&run.join("keyport.sock")));
        t = t.replace("\"./run/agent.sock\"", &quoted(&run.join("agent.sock")));
    }
    if let Some(creds) = systemd_dir("CREDENTIALS_DIRECTORY") {
        if creds.join("token-pin").exists() {
            t = t.replace("pin = { file = \"./run/token.pin\" }", "pin = { credential = \"token-pin\" }");
        }
        if creds.join("vault-token").exists() {
            t = t.replace("token = { file = \"./run/vault.token\" }", "token = { credential = \"vault-token\" }");
        }
    }
    if let Some(state) = systemd_dir("STATE_DIRECTORY") {
        t = t.replace("state_dir = \"./run\"", &format!("state_dir = {}", quoted(&state)));
        for name in ["softhsm", "token.pin", "vault.token"] {
            t = t.replace(&format!("\"./run/{name}\""), &quoted(&state.join(name)));
        }
    }
    // The user who starts keyport without a configuration administers it, as with ssh-agent:
    // root, and the running uid when that is not root (a developer's own daemon, the test
    // suite run unprivileged). A configuration file names its principals itself.
    let uid = nix::unistd::getuid().as_raw();
    if uid != 0 {
        t = t.replace("uids = [0]\n", &format!("uids = [0, {uid}]\n"));
    }
    t
}
