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
