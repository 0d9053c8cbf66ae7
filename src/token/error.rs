//! Token errors, split the way recovery needs them: configuration (fix and restart), transient
//! (reopen and retry), and request (the caller asked for something this token cannot do).
//!
//! Recovery is decided by the CKR_* value, never by an error's text ([`Cure`]). Some values
//! (CKR_GENERAL_ERROR, CKR_DEVICE_ERROR, CKR_OBJECT_HANDLE_INVALID, CKR_FUNCTION_FAILED) mean
//! either "the token's storage failed" or "this request was bad": they are [`Cure::Verify`],
//! and `Token::run` tells the two apart by reading a known object (`probe.rs`) before it
//! re-initializes anything.

use cryptoki::error::{Error as CkError, RvError};

/// What a transient failure needs before the operation is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cure {
    /// New sessions and a new login (closed session, logged out).
    Reopen,
    /// C_Finalize + C_Initialize of the module, then reopen: the module lost its state, or
    /// (SoftHSM) it marked the token or its objects invalid after an I/O error and only a new
    /// module instance reads them from disk again.
    Reinitialize,
    /// Either a storage fault or a refusal of this request: check the token with a known
    /// object; if that fails too, re-initialize, else the error is the request's.
    Verify,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// A start-up problem a person must fix; the message says which and how.
    #[error("token '{token}': {message}")]
    Config { token: String, message: String },
    /// The token or its module went away, lost our sessions, or cannot read its storage;
    /// retried after reopening (`cure`). Callers answer 503 with Retry-After.
    #[error("token '{token}' is unavailable ({detail}); retry shortly")]
    Transient { token: String, detail: String, cure: Cure },
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

    /// A transient failure that is not tied to a CKR_* value (a worker died, no token yet).
    pub fn unavailable(token: &str, detail: impl Into<String>) -> TokenError {
        TokenError::Transient { token: token.into(), detail: detail.into(), cure: Cure::Reopen }
    }

    /// Classifies a cryptoki error from `operation` by its CKR_* value ([`cure_of`]).
    pub fn from_ck(token: &str, operation: &'static str, e: CkError) -> TokenError {
        match &e {
            CkError::Pkcs11(rv, _) => match cure_of(*rv) {
                Some(cure) => TokenError::Transient { token: token.into(), detail: format!("{operation}: {}", short_rv(*rv)), cure },
                None => TokenError::Refused { token: token.into(), operation, detail: short_rv(*rv) },
            },
            other => TokenError::Refused { token: token.into(), operation, detail: other.to_string() },
        }
    }
}

/// How a return value is recovered from; `None` for refusals that belong to the request
/// (CKR_MECHANISM_INVALID, CKR_TEMPLATE_INCONSISTENT, CKR_KEY_TYPE_INCONSISTENT, …): those are
/// never retried.
pub fn cure_of(rv: RvError) -> Option<Cure> {
    match rv {
        RvError::SessionHandleInvalid | RvError::SessionClosed | RvError::UserNotLoggedIn | RvError::SessionCount => Some(Cure::Reopen),
        RvError::CryptokiNotInitialized
        | RvError::DeviceRemoved
        | RvError::TokenNotPresent
        | RvError::TokenNotRecognized
        | RvError::DeviceMemory => Some(Cure::Reinitialize),
        RvError::GeneralError | RvError::DeviceError | RvError::ObjectHandleInvalid | RvError::FunctionFailed => Some(Cure::Verify),
        _ => None,
    }
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
        let cure = |rv| match TokenError::from_ck("t", "op", CkError::Pkcs11(rv, cryptoki::context::Function::Sign)) {
            TokenError::Transient { cure, .. } => Some(cure),
            _ => None,
        };
        assert_eq!(cure(RvError::DeviceRemoved), Some(Cure::Reinitialize));
        assert_eq!(cure(RvError::SessionClosed), Some(Cure::Reopen));
        // Storage faults and request errors share these values: verified before any re-initialize.
        assert_eq!(cure(RvError::GeneralError), Some(Cure::Verify));
        assert_eq!(cure(RvError::ObjectHandleInvalid), Some(Cure::Verify));
        // Refusals of the request itself are never retried.
        assert_eq!(cure(RvError::MechanismInvalid), None);
        assert_eq!(cure(RvError::TemplateInconsistent), None);
    }
}
