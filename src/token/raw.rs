//! The few PKCS#11 calls cryptoki 0.12 cannot express, made through the module's own function
//! list. cryptoki has no name for CKM_AES_KEY_WRAP_KWP (0x210B) and its mechanism list silently
//! drops ids it cannot convert, so probing for it needs the raw C_GetMechanismInfo.
//! (docs/pkcs11.md §1.3: dlopen of the same path returns the same module state.)
#![allow(unsafe_code)]

use cryptoki_sys::{CKR_OK, CK_FUNCTION_LIST, CK_MECHANISM_INFO, CK_RV};
use std::path::Path;

pub struct RawModule {
    /// Keeps the library mapped while `list` points into it.
    _lib: cryptoki_sys::Pkcs11,
    list: CK_FUNCTION_LIST,
}

// SAFETY: the function list is a table of C function pointers of a module initialized with
// CKF_OS_LOCKING_OK, which makes every entry point callable from any thread.
unsafe impl Send for RawModule {}
unsafe impl Sync for RawModule {}

impl RawModule {
    pub fn open(path: &Path) -> Result<RawModule, String> {
        // SAFETY: loading the same library cryptoki already loaded; C_GetFunctionList writes a
        // pointer to a static table owned by the library, which `_lib` keeps loaded.
        unsafe {
            let lib = cryptoki_sys::Pkcs11::new(path).map_err(|e| format!("cannot load {}: {e}", path.display()))?;
            let mut fl: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
            let rv: CK_RV = lib.C_GetFunctionList(&mut fl);
            if rv != CKR_OK || fl.is_null() {
                return Err(format!("C_GetFunctionList of {} failed (0x{rv:x})", path.display()));
            }
            Ok(RawModule { list: *fl, _lib: lib })
        }
    }

    /// The flags of `mechanism` on `slot`, or None when the token does not offer it.
    pub fn mechanism_flags(&self, slot: u64, mechanism: u64) -> Option<u64> {
        let f = self.list.C_GetMechanismInfo?;
        let mut info = CK_MECHANISM_INFO { ulMinKeySize: 0, ulMaxKeySize: 0, flags: 0 };
        // SAFETY: `info` is a valid out-pointer for the duration of the call.
        let rv = unsafe { f(slot as _, mechanism as _, &mut info) };
        (rv == CKR_OK).then_some(info.flags)
    }
}
