//! One loaded, initialized PKCS#11 module per path, shared by every token that uses it.
//!
//! C_Initialize is process-wide per module, so two `[[tokens]]` on one .so must share it; and
//! recovery (C_Finalize + C_Initialize after a device went away) must happen once per module,
//! not once per token. A generation counter tells a token whether someone already re-initialized
//! the module since it last looked.

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard};

use super::raw::RawModule;

pub struct Module {
    pub path: PathBuf,
    pub ctx: Pkcs11,
    /// Function list of the same loaded library, for mechanisms cryptoki 0.12 cannot name
    /// (0x210B, CKM_AES_KEY_WRAP_KWP).
    pub raw: RawModule,
    generation: Mutex<u64>,
    /// Held (shared) by every call into the module, taken exclusively by C_Finalize +
    /// C_Initialize: SoftHSM frees its state in C_Finalize, so no call may be in flight then.
    calls: RwLock<()>,
}

static MODULES: OnceLock<Mutex<HashMap<PathBuf, Arc<Module>>>> = OnceLock::new();

/// SoftHSM does no locking at all unless asked for OS locking (docs/pkcs11.md §2).
fn init_args() -> CInitializeArgs {
    CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)
}

/// Loads and initializes the module at `path`, or returns the one already loaded.
pub fn load(path: &Path) -> Result<Arc<Module>, String> {
    let mut map = MODULES.get_or_init(Default::default).lock().expect("module registry poisoned");
    if let Some(m) = map.get(path) {
        return Ok(m.clone());
    }
    if !path.exists() {
        return Err(format!(
            "PKCS#11 module {} does not exist; install it (softhsm2: apt-get install softhsm2) or fix `module`",
            path.display()
        ));
    }
    let ctx = Pkcs11::new(path)
        .map_err(|e| format!("cannot load PKCS#11 module {}: {e}; is it a PKCS#11 library for this architecture?", path.display()))?;
    match ctx.initialize(init_args()) {
        Ok(()) => {}
        Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(format!("C_Initialize of {} failed: {e}", path.display())),
    }
    let raw = RawModule::open(path)?;
    let m = Arc::new(Module { path: path.to_path_buf(), ctx, raw, generation: Mutex::new(0), calls: RwLock::new(()) });
    map.insert(path.to_path_buf(), m.clone());
    Ok(m)
}

impl Module {
    pub fn generation(&self) -> u64 {
        *self.generation.lock().expect("poisoned")
    }

    /// Marks a call into the module as in flight (see `calls`); never held across a
    /// [`Module::reinitialize`] by the same thread.
    pub fn enter(&self) -> RwLockReadGuard<'_, ()> {
        self.calls.read().unwrap_or_else(|p| p.into_inner())
    }

    /// C_Finalize + C_Initialize, unless another token already did it since `seen`.
    /// Every session of every token on this module is invalid afterwards; they reopen.
    pub fn reinitialize(&self, seen: u64) -> Result<u64, String> {
        // Waits for calls in flight to return (they fail fast while the device is gone); taken
        // before `generation`, which calls in flight may read.
        let _alone = self.calls.write().unwrap_or_else(|p| p.into_inner());
        let mut g = self.generation.lock().expect("poisoned");
        if *g != seen {
            return Ok(*g);
        }
        let _ = self.ctx.clone().finalize();
        match self.ctx.initialize(init_args()) {
            Ok(()) | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(format!("re-initializing {} failed: {e}", self.path.display())),
        }
        *g += 1;
        Ok(*g)
    }
}
