//! The operations every face shares, written once: key generation and deletion (crash-safe
//! through intents), start-up reconciliation, principals and permissions, names.

pub mod audit;
pub mod authz;
pub mod background;
pub mod batch;
pub mod certificates;
pub mod create;
pub mod dek;
pub mod deploy;
pub mod export;
pub mod fault;
pub mod formats;
pub mod health;
pub mod ids;
pub mod import;
pub mod import_file;
pub mod jobs;
pub mod kdf;
pub mod key_pages;
pub mod keys;
pub mod material;
/// Name rules live in a leaf module (`crate::names`), since config checks them too.
pub use crate::names;
pub mod placement;
pub mod probe;
pub mod reconcile;
pub mod rotation;
pub mod sign;
pub mod spawn;
pub mod telemetry;
pub mod tls_identity;
pub mod token_caps;

use std::sync::Arc;

use crate::config::Config;
use crate::store::{Store, StoreError};
use crate::token::{TokenError, Tokens};

/// Everything an operation needs; one per daemon, shared by every face.
pub struct App {
    pub config: Config,
    pub tokens: Tokens,
    pub store: Store,
    /// Principals; replaced on SIGHUP.
    pub authz: std::sync::RwLock<authz::Authz>,
    /// Test hook: pause this long between the token write and the store commit so a test can
    /// SIGKILL the daemon there (`crate::test_hooks`). Zero in production.
    pub pause_before_commit: std::time::Duration,
    /// The edge instance's DEK, set once at start (`dek::load_or_create`).
    pub dek: std::sync::OnceLock<dek::Dek>,
    /// Wakes the background job runner.
    pub jobs: jobs::JobRunner,
    /// Problems found at start or by the probes; `GET health` reports them.
    pub health: health::Health,
    /// Slots for passphrase key derivations (`kdf`).
    pub kdf: kdf::KdfPool,
    /// Signing state shared by the ssh-agent and the native sign endpoint (rate limits).
    pub signing: sign::Signing,
    /// Request, token and sync counters for `GET metrics` (`telemetry`).
    pub telemetry: telemetry::Telemetry,
    /// The SSH keyset rotation runner's state (`rotation`).
    pub rotations: rotation::Rotations,
    /// Background work, stopped at a safe point on SIGTERM (`background`).
    pub background: background::Background,
}

pub type SharedApp = Arc<App>;

/// What went wrong, in terms every face can translate into its vendor's error shape.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The request is malformed or asks for something impossible; `code` is stable.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// No principal matched the caller.
    #[error("{0}")]
    Unauthenticated(String),
    /// The principal lacks a permission, or a policy forbids the request.
    #[error("{0}")]
    Forbidden(String),
    /// The key was created non-exportable: no principal may take it out of the token (faces
    /// that have a code for this, like TPP's 14, use it; the others answer as for `Forbidden`).
    #[error("{0}")]
    NotExportable(String),
    /// Too much of this work is running or waiting (`kdf`); the same request may pass in a
    /// moment: every face answers 503 with Retry-After.
    #[error("{0}")]
    Busy(String),
    /// keyport itself failed (a worker panicked, a stored job cannot be read back): a 500 in
    /// every face's shape, never the caller's fault.
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Token(#[from] TokenError),

    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CoreError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> CoreError {
        CoreError::Invalid { code, message: message.into() }
    }
}
