//! Reading a token PIN from where the config says: a file, an environment variable, or a
//! systemd credential. Never from the command line (visible in /proc to every user).

use crate::config::PinSource;
use zeroize::Zeroizing;

pub fn read(source: &PinSource) -> Result<Zeroizing<String>, String> {
    read_secret(source, "PIN", "pin", "put the token's user PIN in its source")
}

/// Reads any secret kept like a PIN (a vault token, an AppRole secret_id). `what` names it in
/// messages, `key` is its config key (`sync.approle.secret_id`), `empty_hint` says what to do
/// about an empty one. The messages never contain the secret.
pub fn read_secret(source: &PinSource, what: &str, key: &str, empty_hint: &str) -> Result<Zeroizing<String>, String> {
    let raw = match source {
        PinSource::File(p) => Zeroizing::new(
            std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {what} file {}: {e}; create it (mode 0600) or fix {key}.file", p.display()))?,
        ),
        PinSource::Env(v) => Zeroizing::new(
            std::env::var(v).map_err(|_| format!("environment variable {v} holding the {what} is not set; export it or use {key}.file"))?,
        ),
        PinSource::Credential(name) => {
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                format!(
                    "{key}.credential = \"{name}\" but CREDENTIALS_DIRECTORY is not set; run under systemd with LoadCredential={name}:<file>"
                )
            })?;
            let p = std::path::Path::new(&dir).join(name);
            Zeroizing::new(std::fs::read_to_string(&p).map_err(|e| format!("cannot read credential {}: {e}", p.display()))?)
        }
    };
    let secret = Zeroizing::new(raw.trim_end_matches(['\n', '\r']).to_string());
    if secret.is_empty() {
        return Err(format!("the {what} is empty; {empty_hint}"));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_pin_drops_the_newline_and_empty_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pin");
        std::fs::write(&f, "1234\n").unwrap();
        assert_eq!(read(&PinSource::File(f.clone())).unwrap().as_str(), "1234");
        std::fs::write(&f, "\n").unwrap();
        assert!(read(&PinSource::File(f)).unwrap_err().contains("empty"));
        let e = read(&PinSource::File(dir.path().join("missing"))).unwrap_err();
        assert!(e.contains("missing") && e.contains("0600"), "{e}");
    }
}
