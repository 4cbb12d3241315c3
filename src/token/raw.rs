//! The one PKCS#11 call cryptoki has no wrapper for: `C_Sign` after `C_SignInit` and a
//! context-specific login (cryptoki's `sign` fuses the two), through the module's own function
//! list.
//!
//! Owns: the unsafe code of that call. Does not own: anything else.

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, Rv, RvError};
use std::path::Path;

/// The module's function list, loaded a second time through the same dlopen handle (same state).
pub(super) struct RawFunctions {
    _lib: libloading::Library,
    list: *const cryptoki_sys::CK_FUNCTION_LIST,
}

// SAFETY: the function list is immutable after C_GetFunctionList and PKCS#11 functions are
// thread-safe once C_Initialize was called with OS locking.
unsafe impl Send for RawFunctions {}
// SAFETY: as for Send above.
unsafe impl Sync for RawFunctions {}

impl RawFunctions {
    pub(super) fn load(path: &Path) -> Result<Self, String> {
        // SAFETY: the same library is already loaded and initialized by cryptoki.
        unsafe {
            let lib = libloading::Library::new(path).map_err(|e| e.to_string())?;
            let get: libloading::Symbol<'_, cryptoki_sys::CK_C_GetFunctionList> =
                lib.get(b"C_GetFunctionList").map_err(|e| e.to_string())?;
            let get = (*get).ok_or("C_GetFunctionList is null")?;
            let mut list = std::ptr::null_mut();
            let rv = get(&mut list);
            if rv != cryptoki_sys::CKR_OK || list.is_null() {
                return Err(format!("C_GetFunctionList returned {rv:#x}"));
            }
            Ok(RawFunctions { _lib: lib, list })
        }
    }

    pub(super) fn sign(
        &self,
        session: cryptoki_sys::CK_SESSION_HANDLE,
        data: &[u8],
    ) -> Result<Vec<u8>, CkError> {
        // SAFETY: `list` came from the module; buffers are sized per the PKCS#11 two-call convention.
        unsafe {
            let f = (*self.list).C_Sign.ok_or(CkError::NullFunctionPointer)?;
            let mut len: cryptoki_sys::CK_ULONG = 0;
            let rv = f(
                session,
                data.as_ptr() as *mut u8,
                data.len() as _,
                std::ptr::null_mut(),
                &mut len,
            );
            Rv::from(rv).into_result(Function::Sign)?;
            let mut out = vec![0u8; signature_len(len)?];
            let rv = f(
                session,
                data.as_ptr() as *mut u8,
                data.len() as _,
                out.as_mut_ptr(),
                &mut len,
            );
            Rv::from(rv).into_result(Function::Sign)?;
            match signature_len(len)? {
                n if n <= out.len() => out.truncate(n),
                // The module claims to have written past the buffer it was given.
                _ => return Err(CkError::Pkcs11(RvError::BufferTooSmall, Function::Sign)),
            }
            Ok(out)
        }
    }
}

/// The largest signature tokenroll's keys make is 512 bytes (RSA-4096); a module that reports
/// more is answering nonsense, which becomes an error rather than a huge allocation.
const MAX_SIGNATURE_LEN: usize = 16 * 1024;

/// A signature length a module reported, checked before it sizes a buffer.
fn signature_len(reported: cryptoki_sys::CK_ULONG) -> Result<usize, CkError> {
    usize::try_from(reported)
        .ok()
        .filter(|n| *n <= MAX_SIGNATURE_LEN)
        .ok_or(CkError::Pkcs11(RvError::DataLenRange, Function::Sign))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_reported_signature_length_is_checked() {
        assert_eq!(super::signature_len(512).unwrap(), 512);
        assert!(super::signature_len(cryptoki_sys::CK_ULONG::MAX).is_err());
        assert!(super::signature_len(1 << 20).is_err());
    }
}
