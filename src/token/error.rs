//! Token errors, split the way recovery needs them: configuration (fix and restart), transient
//! (reopen and retry), and request (the caller asked for something this token cannot do).

use cryptoki::error::{Error as CkError, RvError};

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// A start-up problem a person must fix; the message says which and how.
    #[error("token '{token}': {message}")]
    Config { token: String, message: String },
    /// The token or its module went away or lost our sessions; retried after reopening.
    #[error("token '{token}' is unavailable ({detail}); retrying")]
    Transient { token: String, detail: String },
    /// The token refused the operation itself (unsupported mechanism, bad template, …).
    #[error("token '{token}' refused {operation}: {detail}")]
    Refused { token: String, operation: &'static str, detail: String },
    /// Something keyport asked for does not exist in this token.
    #[error("token '{token}': {what} not found")]
    NotFound { token: String, what: String },
}

impl TokenError {
    pub fn is_transient(&self) -> bool {
        matches!(self, TokenError::Transient { .. })
    }

    /// Classifies a cryptoki error from `operation`. Transient return values are the ones that
    /// a reopen (new sessions, new login, or C_Finalize + C_Initialize) can cure.
    pub fn from_ck(token: &str, operation: &'static str, e: CkError) -> TokenError {
        match &e {
            CkError::Pkcs11(rv, _) if is_transient_rv(*rv) => {
                TokenError::Transient { token: token.into(), detail: format!("{operation}: {}", short_rv(*rv)) }
            }
            CkError::Pkcs11(rv, _) => TokenError::Refused { token: token.into(), operation, detail: short_rv(*rv) },
            other => TokenError::Refused { token: token.into(), operation, detail: other.to_string() },
        }
    }
}

pub fn is_transient_rv(rv: RvError) -> bool {
    matches!(
        rv,
        RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::UserNotLoggedIn
            | RvError::DeviceError
            | RvError::DeviceRemoved
            | RvError::TokenNotPresent
            | RvError::CryptokiNotInitialized
            | RvError::DeviceMemory
    )
}

/// True when only C_Finalize + C_Initialize can help (the module lost its state).
pub fn needs_reinitialize(detail: &str) -> bool {
    ["CKR_CRYPTOKI_NOT_INITIALIZED", "CKR_DEVICE_REMOVED", "CKR_TOKEN_NOT_PRESENT", "CKR_DEVICE_ERROR"].iter().any(|c| detail.contains(c))
}

/// The CKR_ name of a return value: cryptoki's Display is a paragraph from the spec, far too
/// long for a log line or an API error.
pub fn short_rv(rv: RvError) -> String {
    let name = format!("{rv:?}");
    let mut out = String::from("CKR");
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 || i == 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rv_names_are_the_spec_names() {
        assert_eq!(short_rv(RvError::SessionHandleInvalid), "CKR_SESSION_HANDLE_INVALID");
        assert_eq!(short_rv(RvError::PinIncorrect), "CKR_PIN_INCORRECT");
    }

    #[test]
    fn classification() {
        let e = TokenError::from_ck("t", "sign", CkError::Pkcs11(RvError::SessionHandleInvalid, cryptoki::context::Function::Sign));
        assert!(e.is_transient());
        let e = TokenError::from_ck("t", "sign", CkError::Pkcs11(RvError::KeyTypeInconsistent, cryptoki::context::Function::Sign));
        assert!(!e.is_transient());
        assert!(e.to_string().contains("CKR_KEY_TYPE_INCONSISTENT"), "{e}");
        assert!(needs_reinitialize("x: CKR_DEVICE_REMOVED"));
    }
}
