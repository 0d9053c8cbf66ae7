//! The few PKCS#11 calls cryptoki 0.12 cannot express, or not in one call, made through the
//! module's own function list. cryptoki has no name for CKM_AES_KEY_WRAP_KWP (0x210B) and its mechanism list silently
//! drops ids it cannot convert, so probing for it needs the raw C_GetMechanismInfo.
//! And one read the start-up index makes per object: cryptoki's `get_attributes` asks for the
//! sizes of variable-length attributes first and then their values (two C_GetAttributeValue
//! calls, each of which SoftHSM answers by re-checking the object's file); with buffers sized
//! for what keyport writes, one call does.
//! (docs/pkcs11.md §1.3: dlopen of the same path returns the same module state.)
#![allow(unsafe_code)]

use cryptoki_sys::{
    CKA_CLASS, CKA_ID, CKR_OK, CK_ATTRIBUTE, CK_FUNCTION_LIST, CK_MECHANISM_INFO, CK_OBJECT_CLASS, CK_OBJECT_HANDLE, CK_RV,
    CK_SESSION_HANDLE, CK_ULONG, CK_UNAVAILABLE_INFORMATION,
};
use std::path::Path;

pub struct RawModule {
    /// Keeps the library mapped while `list` points into it.
    _lib: cryptoki_sys::Pkcs11,
    list: CK_FUNCTION_LIST,
}

// SAFETY: the function list is a table of C function pointers of a module initialized with
// CKF_OS_LOCKING_OK, which makes every entry point callable from any thread. (A module someone
// else initialized first — CKR_CRYPTOKI_ALREADY_INITIALIZED in `module::load` — keeps its
// flags; cryptoki's own calls from several threads rely on the same.)
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

    /// An object's CKA_CLASS and CKA_ID in one C_GetAttributeValue, with room for 256 bytes
    /// of id (keyport's are 16). `None` for any answer but CKR_OK with both present (a longer
    /// id, a torn object, a session gone): the caller then reads the object the careful way.
    /// The label is not asked for: the index needs it only for an object without an id, and
    /// SoftHSM spends a lookup per attribute asked (BENCHMARKS.md, start-up, 2026-12-05).
    pub fn class_and_id(&self, session: CK_SESSION_HANDLE, object: CK_OBJECT_HANDLE) -> Option<(CK_OBJECT_CLASS, Vec<u8>)> {
        const ROOM: usize = 256;
        let f = self.list.C_GetAttributeValue?;
        let mut class: CK_OBJECT_CLASS = 0;
        let mut id = [0u8; ROOM];
        let mut template = [
            CK_ATTRIBUTE {
                type_: CKA_CLASS,
                pValue: (&mut class as *mut CK_OBJECT_CLASS).cast(),
                ulValueLen: std::mem::size_of::<CK_OBJECT_CLASS>() as CK_ULONG,
            },
            CK_ATTRIBUTE { type_: CKA_ID, pValue: id.as_mut_ptr().cast(), ulValueLen: ROOM as CK_ULONG },
        ];
        // SAFETY: every pValue points to a live buffer of the ulValueLen it states, for the
        // duration of the call; the module writes at most that many bytes into each.
        let rv = unsafe { f(session, object, template.as_mut_ptr(), template.len() as CK_ULONG) };
        if rv != CKR_OK || template.iter().any(|a| a.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
            return None;
        }
        if template[0].ulValueLen as usize != std::mem::size_of::<CK_OBJECT_CLASS>() {
            return None;
        }
        let id_len = usize::try_from(template[1].ulValueLen).ok().filter(|n| *n <= ROOM)?;
        Some((class, id[..id_len].to_vec()))
    }
}
