//! SoftHSM provisioning for the embedded default and for tests: a private `softhsm2.conf` and
//! token folder, and the token itself created on first start.
//!
//! SoftHSM reads its configuration from `SOFTHSM2_CONF` when the module initializes, once per
//! process, so all SoftHSM tokens of one daemon share one folder. `prepare_env` must run before
//! any thread starts (it sets an environment variable).

use crate::config::{Config, PinSource, TokenConfig};
use cryptoki::context::Pkcs11;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use rand::RngCore;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Writes `<dir>/softhsm2.conf` (token folder `<dir>/tokens`) and points SOFTHSM2_CONF at it.
pub fn prepare_env(cfg: &Config) -> Result<(), String> {
    let dirs: Vec<_> = cfg.tokens.iter().filter_map(|t| t.softhsm.as_ref().map(|s| s.dir.clone())).collect();
    let Some(dir) = dirs.first() else { return Ok(()) };
    if dirs.iter().any(|d| d != dir) {
        return Err("tokens[].softhsm.dir: every SoftHSM token of one daemon must use the same folder (SoftHSM reads one SOFTHSM2_CONF per process)".into());
    }
    let tokens = dir.join("tokens");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&tokens)
        .map_err(|e| format!("cannot create {}: {e}", tokens.display()))?;
    let tokens = std::fs::canonicalize(&tokens).map_err(|e| e.to_string())?;
    let conf = std::fs::canonicalize(dir).map_err(|e| e.to_string())?.join("softhsm2.conf");
    let text = format!(
        "# written by keyport\ndirectories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
        tokens.display()
    );
    if std::fs::read_to_string(&conf).ok().as_deref() != Some(text.as_str()) {
        std::fs::write(&conf, text).map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
    }
    std::env::set_var("SOFTHSM2_CONF", &conf);
    Ok(())
}

/// Creates the token labelled `t.label` in a free SoftHSM slot when no such token exists yet.
/// A missing PIN file is created with a random PIN (mode 0600); the SO PIN is random and kept
/// beside it (`so.pin`, or `so-<label>.pin` for a further token in the same folder; 0600) for
/// the operator.
pub fn ensure_token(ctx: &Pkcs11, t: &TokenConfig) -> Result<bool, String> {
    let Some(prov) = &t.softhsm else { return Ok(false) };
    let label = t.label.as_deref().ok_or("a SoftHSM token created by keyport needs `label`")?;
    let slots = ctx.get_slots_with_token().map_err(|e| e.to_string())?;
    let mut free = None;
    for s in &slots {
        let info = ctx.get_token_info(*s).map_err(|e| e.to_string())?;
        if info.token_initialized() && info.label() == label {
            return Ok(false);
        }
        if !info.token_initialized() && free.is_none() {
            free = Some(*s);
        }
    }
    let slot = free.ok_or("SoftHSM has no free slot to create the token in")?;
    if let PinSource::File(p) = &t.pin {
        if !p.exists() {
            write_secret(p, &random_pin())?;
        }
    }
    let user_pin = super::pin::read(&t.pin)?;
    let so_pin = random_pin();
    // Several tokens may share one folder: the first keeps `so.pin`, the others `so-<label>.pin`.
    let so_file = match prov.dir.join("so.pin") {
        p if p.exists() => prov.dir.join(format!("so-{label}.pin")),
        p => p,
    };
    write_secret(&so_file, &so_pin)?;
    ctx.init_token(slot, &AuthPin::new(so_pin.clone().into()), label).map_err(|e| format!("C_InitToken failed: {e}"))?;
    let s = ctx.open_rw_session(slot).map_err(|e| e.to_string())?;
    s.login(UserType::So, Some(&AuthPin::new(so_pin.into()))).map_err(|e| format!("SO login failed: {e}"))?;
    s.init_pin(&AuthPin::new(user_pin.to_string().into())).map_err(|e| format!("C_InitPIN failed: {e}"))?;
    let _ = s.logout();
    Ok(true)
}

fn random_pin() -> String {
    let mut b = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn write_secret(p: &Path, value: &str) -> Result<(), String> {
    if let Some(parent) = p.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent).map_err(|e| e.to_string())?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)
        .map_err(|e| format!("cannot create {}: {e}", p.display()))?;
    writeln!(f, "{value}").map_err(|e| e.to_string())
}

/// SoftHSM's token folder (`directories.tokendir`) for a token configured with `softhsm`,
/// or read from `SOFTHSM2_CONF` for any other SoftHSM module.
fn token_dir(t: &TokenConfig) -> Option<std::path::PathBuf> {
    if let Some(prov) = &t.softhsm {
        return Some(prov.dir.join("tokens"));
    }
    if !t.module.to_string_lossy().contains("softhsm") {
        return None;
    }
    let conf = std::fs::read_to_string(std::env::var_os("SOFTHSM2_CONF")?).ok()?;
    conf.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "directories.tokendir").then(|| std::path::PathBuf::from(v.trim()))
    })
}

/// The folder of the SoftHSM token with `serial`: SoftHSM keeps the serial in each token's
/// `token.object`, as its 16 ASCII characters.
pub fn token_folder(t: &TokenConfig, serial: &str) -> Option<std::path::PathBuf> {
    let dir = token_dir(t)?;
    std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).find(|p| {
        std::fs::read(p.join("token.object")).is_ok_and(|b| !serial.is_empty() && b.windows(serial.len()).any(|w| w == serial.as_bytes()))
    })
}

/// An object file with no complete CKA_CLASS: empty, or cut off by a kill while SoftHSM wrote
/// it. SoftHSM's layout: an 8-byte generation, then per attribute its type (8 bytes, big
/// endian), its kind (8) and the value (kind 1 bool: 1 byte, 2 ulong: 8, 3 byte string: an
/// 8-byte length and the bytes). CKA_CLASS (type 0) is written first.
#[derive(Debug, Clone)]
pub struct TornFile {
    pub path: std::path::PathBuf,
    pub len: u64,
}

pub fn torn_files(folder: &Path) -> Vec<TornFile> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(folder) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "object") || p.file_name().is_some_and(|n| n == "token.object") {
            continue;
        }
        let Ok(bytes) = std::fs::read(&p) else { continue };
        if !has_class(&bytes) {
            out.push(TornFile { path: p, len: bytes.len() as u64 });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn has_class(b: &[u8]) -> bool {
    let u64_at = |i: usize| b.get(i..i + 8).map(|s| u64::from_be_bytes(s.try_into().expect("8 bytes")));
    let mut i = 8;
    while let (Some(ty), Some(kind)) = (u64_at(i), u64_at(i + 8)) {
        let len = match kind {
            1 => 1,
            2 => 8,
            3 => match u64_at(i + 16) {
                Some(n) => 8 + n as usize,
                None => return false,
            },
            // Other kinds (mechanism sets, attribute maps) come after the class.
            _ => return false,
        };
        if b.len() < i + 16 + len {
            return false;
        }
        if ty == 0 {
            return true;
        }
        i += 16 + len;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::has_class;

    #[test]
    fn torn_object_files_have_no_complete_class() {
        let gen = 7u64.to_be_bytes();
        let class = [0u64.to_be_bytes(), 2u64.to_be_bytes(), 3u64.to_be_bytes()].concat();
        assert!(!has_class(&[]));
        assert!(!has_class(&gen));
        assert!(has_class(&[&gen[..], &class].concat()));
        assert!(!has_class(&[&gen[..], &class[..20]].concat()), "cut inside the class value");
        let token_attr = [1u64.to_be_bytes().as_slice(), 1u64.to_be_bytes().as_slice(), &[0xff]].concat();
        assert!(has_class(&[&gen[..], &token_attr, &class].concat()));
    }
}
