//! The token layer: the only module that calls cryptoki.
//!
//! Shape (after Krill's PKCS#11 signer, see STYLE.md): one initialized context per module path
//! (`module`), tokens chosen by label or serial, a long-lived login session so every pooled
//! session shares the login, a bounded pool of sessions used only from blocking workers
//! (`Session` is not `Sync`: one session per worker), transient failures retried with backoff
//! after reopening (new sessions and login, or C_Finalize + C_Initialize of the module), and an
//! in-memory object index so the request path never runs C_FindObjects.

pub mod at_rest;
pub mod byok;
pub mod byok_restore;
pub mod capabilities;
mod enumerate;
pub mod error;
pub mod index;
pub mod key_facts;
mod module;
pub mod objects;
pub mod pin;
pub mod probe;
mod raw;
pub mod reserved;
pub mod secret;
pub mod sign;
pub mod signer;
pub mod softhsm;
pub mod wrap;

use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::config::TokenConfig;
pub use capabilities::{AtRestKind, Capabilities};
pub use error::{Cure, TokenError};
use index::Index;
use module::Module;

/// CKM_AES_KEY_WRAP_PAD as SoftHSM implements it (RFC 5649 on a zero-padded buffer).
pub const CKM_AES_KEY_WRAP_PAD: u64 = 0x210A;
/// CKM_AES_KEY_WRAP_KWP: RFC 5649 on PKCS#11 3.0 tokens; cryptoki 0.12 cannot name it.
pub const CKM_AES_KEY_WRAP_KWP: u64 = 0x210B;

/// What a token can do, probed once at open. Later capabilities branch on this, not on the
/// token's name.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Mechanisms {
    /// The RFC 5649 key-wrap mechanism id (0x210A on SoftHSM, 0x210B on 3.0 tokens), if any.
    pub kwp: Option<u64>,
    pub rsa_oaep: bool,
    pub eddsa: bool,
    pub ec_edwards_keygen: bool,
    pub ecdsa: bool,
    pub des3: bool,
    /// Whether the token can wrap an Ed25519 private key (SoftHSM 2.6 cannot:
    /// CKR_KEY_NOT_WRAPPABLE). Probed by trying, with session objects.
    pub ed25519_wrappable: bool,
    /// Every mechanism cryptoki can name, for `health`.
    pub count: usize,
}

/// A live connection to one token: valid until a transient failure invalidates it.
pub struct Live {
    module: Arc<Module>,
    module_generation: u64,
    /// Unique per connection (process-wide counter): session objects made through one
    /// connection are gone, and their handle numbers free for reuse, once it is replaced.
    connection: u64,
    pub slot: Slot,
    /// Held open so the login (per application and token) outlives every pooled session.
    login: Mutex<Session>,
    pool: Mutex<Vec<Session>>,
    pub index: RwLock<Index>,
    pub mechanisms: Mechanisms,
    /// What the token can do (probed at the first open, kept across reopens).
    pub capabilities: Arc<Capabilities>,
    pub token_label: String,
    pub serial: String,
    /// The token is write-protected (CKF_WRITE_PROTECTED, e.g. p11-kit's trust module):
    /// sessions are read-only and nothing can be made in it.
    pub read_only: bool,
    /// The token wants C_Login (CKF_LOGIN_REQUIRED); a token that does not is used without one.
    pub login_required: bool,
    /// What is wrong with the token's objects (unreadable objects, torn object files), one
    /// sentence with what to do; `None` when nothing is. Reported in health at start.
    pub damage: Option<String>,
}

/// Why a token did not open.
#[derive(Debug)]
pub enum OpenError {
    /// No initialized token matches the configuration (it may have been wiped or removed).
    Absent(TokenError),
    /// Anything else: a bad module, a wrong or locked PIN, an unusable token.
    Failed(TokenError),
}

impl OpenError {
    pub fn error(&self) -> &TokenError {
        match self {
            OpenError::Absent(e) | OpenError::Failed(e) => e,
        }
    }
}

/// Which sessions a session object was made in: handles of session objects are only
/// meaningful while this is unchanged (same connection, module not re-initialized since).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionEpoch {
    connection: u64,
    module_generation: u64,
}

impl Live {
    /// Now; compare with an earlier value before using a remembered session-object handle.
    pub fn session_epoch(&self) -> SessionEpoch {
        SessionEpoch { connection: self.connection, module_generation: self.module.generation() }
    }
}

/// One configured token.
pub struct Token {
    pub name: String,
    cfg: TokenConfig,
    live: RwLock<Option<Arc<Live>>>,
    /// Bounds concurrent token work to the pool size; waiters queue here, not on threads.
    permits: Arc<tokio::sync::Semaphore>,
    /// The pool size: how many operations may run on the token at once.
    sessions: usize,
    /// One reopen at a time.
    reopening: Mutex<()>,
    /// Whether keyport may create this (SoftHSM) token when it is not there: only at the first
    /// open, and only when the store has never seen it. A reopen never creates a token.
    may_create: std::sync::atomic::AtomicBool,
    /// The serial of the token first opened: a reopen that finds another serial under the same
    /// label has found a different token and refuses it.
    opened_serial: Mutex<Option<String>>,
    /// When the login was last renewed to free the device's object slots (`relogin`).
    last_relogin: Mutex<Option<std::time::Instant>>,
    /// When the module was last re-initialized to look for this token again (SoftHSM sees a
    /// token folder that came back only after C_Finalize + C_Initialize).
    last_rescan: Mutex<Option<std::time::Instant>>,
    /// SHA-256 of the PIN the token refused (CKR_PIN_INCORRECT), kept in memory only: that
    /// PIN is never presented again, since every failed C_Login counts toward locking the
    /// user PIN of a real HSM. A different PIN in the source is tried (once).
    refused_pin: Mutex<Option<[u8; 32]>>,
    /// What the token can do, probed once at its first open (`capabilities.rs`); `None` until
    /// it has been opened.
    capabilities: RwLock<Option<Arc<Capabilities>>>,
}

/// What an operation gets: a session of its own, the live token (index, mechanisms) and the
/// token's name for errors.
pub struct Ctx<'a> {
    pub session: &'a Session,
    pub live: &'a Live,
    pub token: &'a str,
}

impl Ctx<'_> {
    pub fn ck<T>(&self, op: &'static str, r: cryptoki::error::Result<T>) -> Result<T, TokenError> {
        r.map_err(|e| TokenError::from_ck(self.token, op, e))
    }
}

/// Health of one token, as `GET /keyport/v1/health` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenHealth {
    pub name: String,
    pub present: bool,
    pub logged_in: bool,
    pub objects: usize,
    pub label: String,
    pub serial: String,
    pub mechanisms: Option<Mechanisms>,
    /// What the token can do, in plain words (`Capabilities::describe`); empty while it has
    /// never been opened.
    pub can: Vec<String>,
    /// The same, as fields.
    pub capabilities: Option<Capabilities>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TokenHealth {
    /// A token that did not answer.
    pub fn absent(name: &str) -> TokenHealth {
        TokenHealth {
            name: name.into(),
            present: false,
            logged_in: false,
            objects: 0,
            label: String::new(),
            serial: String::new(),
            mechanisms: None,
            can: Vec::new(),
            capabilities: None,
            error: None,
        }
    }
}

/// Attempts per operation: a transient failure is retried after 50, 100, 200 ms, then the
/// caller gets it (503 with Retry-After); the probe keeps recovering in the background.
const RETRIES: u32 = 4;

impl Token {
    /// Opens the token now: a configuration error is reported here, once, in one line. A
    /// SoftHSM token with `softhsm` provisioning is created when missing.
    pub fn open(cfg: TokenConfig) -> Result<Arc<Token>, TokenError> {
        Token::open_with(cfg, true).map_err(|e| match e {
            OpenError::Absent(e) | OpenError::Failed(e) => e,
        })
    }

    /// Like [`Token::open`]; `may_create` says whether a missing SoftHSM token may be created
    /// (never for a token the store has seen: a wiped token must not come back empty).
    pub fn open_with(cfg: TokenConfig, may_create: bool) -> Result<Arc<Token>, OpenError> {
        let t = Token::unopened(cfg, may_create);
        match t.connect() {
            Ok(live) => {
                *t.live.write().expect("poisoned") = Some(live);
                Ok(t)
            }
            Err(e @ TokenError::Config { .. }) if t.is_absent() => Err(OpenError::Absent(e)),
            Err(e) => Err(OpenError::Failed(e)),
        }
    }

    /// A token that is configured but not there now (wiped, unplugged): every operation tries
    /// to open it and answers "unavailable" until it comes back.
    pub fn absent(cfg: TokenConfig) -> Arc<Token> {
        Token::unopened(cfg, false)
    }

    fn unopened(cfg: TokenConfig, may_create: bool) -> Arc<Token> {
        let sessions = cfg.sessions.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()).max(2));
        Arc::new(Token {
            name: cfg.name.clone(),
            cfg,
            live: RwLock::new(None),
            permits: Arc::new(tokio::sync::Semaphore::new(sessions)),
            sessions,
            reopening: Mutex::new(()),
            may_create: std::sync::atomic::AtomicBool::new(may_create),
            opened_serial: Mutex::new(None),
            last_rescan: Mutex::new(None),
            refused_pin: Mutex::new(None),
            last_relogin: Mutex::new(None),
            capabilities: RwLock::new(None),
        })
    }

    /// How many operations may run on the token at once (its session pool): a batch writes
    /// through this many sessions.
    pub fn sessions(&self) -> usize {
        self.sessions
    }

    /// Whether the module has no initialized token matching the configuration.
    fn is_absent(&self) -> bool {
        let Ok(module) = module::load(&self.cfg.module) else { return false };
        let Ok(slots) = module.ctx.get_slots_with_token() else { return false };
        !slots.into_iter().any(|s| module.ctx.get_token_info(s).is_ok_and(|i| i.token_initialized() && self.matches(&i)))
    }

    fn matches(&self, info: &cryptoki::slot::TokenInfo) -> bool {
        let label_ok = self.cfg.label.as_deref().is_none_or(|l| info.label() == l);
        let serial_ok = self.cfg.serial.as_deref().is_none_or(|n| info.serial_number() == n);
        label_ok && serial_ok
    }

    /// The label and serial of the token as opened (`None` while it is absent).
    pub fn identity(&self) -> Option<(String, String)> {
        self.live.read().expect("poisoned").as_ref().map(|l| (l.token_label.clone(), l.serial.clone()))
    }

    /// What the last open found wrong with the token's objects (see [`Live::damage`]).
    pub fn damage(&self) -> Option<String> {
        self.live.read().expect("poisoned").as_ref().and_then(|l| l.damage.clone())
    }

    /// A token that is not open but whose capabilities are known: for tests of the decisions
    /// capabilities drive.
    #[cfg(test)]
    pub(crate) fn with_capabilities(cfg: TokenConfig, c: Capabilities) -> Arc<Token> {
        let t = Token::unopened(cfg, false);
        *t.capabilities.write().expect("poisoned") = Some(Arc::new(c));
        t
    }

    /// Whether the token (as last opened) holds any object under `id`; no token call.
    pub fn has_object(&self, id: &[u8]) -> bool {
        self.live.read().expect("poisoned").as_ref().is_some_and(|l| l.index.read().expect("poisoned").get(id).is_some())
    }

    /// What the token can do; `None` while it has never been opened (absent since start).
    pub fn capabilities(&self) -> Option<Arc<Capabilities>> {
        self.capabilities.read().expect("poisoned").clone()
    }

    /// Key objects half-made by an interrupted creation (see `index::Index::half_made`).
    pub fn half_made(&self) -> Vec<cryptoki::object::ObjectHandle> {
        self.live.read().expect("poisoned").as_ref().map(|l| l.index.read().expect("poisoned").half_made.clone()).unwrap_or_default()
    }

    fn config_error(&self, message: String) -> TokenError {
        TokenError::Config { token: self.name.clone(), message }
    }

    /// Loads the module, finds the token, logs in, probes mechanisms and builds the index.
    /// Only the first open of a token the store has never seen may create a SoftHSM token
    /// (`may_create`): a token folder that is unreadable for a while is waited for, not replaced.
    fn connect(&self) -> Result<Arc<Live>, TokenError> {
        let module = module::load(&self.cfg.module).map_err(|m| self.config_error(m))?;
        let generation = module.generation();
        // Only the first open of a token the store has never seen may create it.
        if self.may_create.swap(false, std::sync::atomic::Ordering::SeqCst)
            && softhsm::ensure_token(&module.ctx, &self.cfg).map_err(|m| self.config_error(m))?
        {
            tracing::info!(token = %self.name, "created the SoftHSM token (first start)");
        }
        let ctx = &module.ctx;
        let slots = ctx.get_slots_with_token().map_err(|e| TokenError::from_ck(&self.name, "C_GetSlotList", e))?;
        let mut found = None;
        for s in slots {
            let Ok(info) = ctx.get_token_info(s) else { continue };
            if info.token_initialized() && self.matches(&info) {
                found =
                    Some((s, info.label().to_string(), info.serial_number().to_string(), info.write_protected(), info.login_required()));
                break;
            }
        }
        if let (Some((_, _, serial, _, _)), Some(opened)) = (&found, self.opened_serial.lock().expect("poisoned").as_ref()) {
            if serial != opened {
                return Err(TokenError::Transient {
                    token: self.name.clone(),
                    cure: Cure::Reopen,
                    detail: format!(
                        "the token now has serial {serial}, not {opened}: it is a different token (wiped and re-initialized, or replaced); restart keyport to adopt it"
                    ),
                });
            }
        }
        let Some((slot, token_label, serial, read_only, login_required)) = found else {
            return Err(self.config_error(format!(
                "no initialized token with {} in module {}; check `label`/`serial` (pkcs11-tool --module {} -L lists tokens)",
                match (&self.cfg.label, &self.cfg.serial) {
                    (Some(l), Some(s)) => format!("label '{l}' and serial '{s}'"),
                    (Some(l), None) => format!("label '{l}'"),
                    (None, Some(s)) => format!("serial '{s}'"),
                    (None, None) => "no label or serial".into(),
                },
                self.cfg.module.display(),
                self.cfg.module.display()
            )));
        };
        let login = open_session(ctx, slot, read_only).map_err(|e| TokenError::from_ck(&self.name, "C_OpenSession", e))?;
        let refused = if login_required { self.login(&login) } else { None };
        if let Some(e) = refused {
            let _ = login.close();
            return Err(e);
        }
        if read_only || !login_required {
            tracing::info!(token = %self.name, read_only, login_required, "token opened without a login or read-only, as its flags say");
        }
        let mut mechanisms = probe(&module, slot);
        mechanisms.ed25519_wrappable = probe_ed25519_wrap(&login, &mechanisms);
        let known = self.capabilities.read().expect("poisoned").clone();
        let capabilities = known.unwrap_or_else(|| {
            let c = Arc::new(Capabilities::probe(&module, slot, &login, read_only));
            tracing::info!(token = %self.name, can = ?c.describe(), "token capabilities");
            *self.capabilities.write().expect("poisoned") = Some(c.clone());
            c
        });
        let index = match enumerate::build_index(&login, &module.raw) {
            Ok(i) => i,
            Err(e) => {
                let _ = login.close();
                return Err(TokenError::from_ck(&self.name, "C_FindObjects", e));
            }
        };
        let damage = self.damage_report(&index, &serial);
        tracing::info!(token = %self.name, label = %token_label, serial = %serial, objects = index.object_count(),
            kwp = ?mechanisms.kwp.map(|m| format!("0x{m:X}")), "token open");
        *self.opened_serial.lock().expect("poisoned") = Some(serial.clone());
        static CONNECTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Ok(Arc::new(Live {
            module,
            module_generation: generation,
            connection: CONNECTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
            slot,
            login: Mutex::new(login),
            pool: Mutex::new(Vec::new()),
            index: RwLock::new(index),
            mechanisms,
            capabilities,
            token_label,
            serial,
            read_only,
            login_required,
            damage,
        }))
    }

    /// C_Login as the user with the PIN from the PIN source; `Some` with the error when the
    /// token refuses it (a refused PIN is remembered and never presented again).
    fn login(&self, login: &Session) -> Option<TokenError> {
        let pin = match pin::read(&self.cfg.pin).map_err(|m| self.config_error(m)) {
            Ok(p) => p,
            Err(e) => return Some(e),
        };
        let pin_hash = match self.not_refused_before(&pin) {
            Ok(h) => h,
            Err(e) => return Some(e),
        };
        match login.login(UserType::User, Some(&AuthPin::new(pin.to_string().into()))) {
            Ok(()) | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {
                *self.refused_pin.lock().expect("poisoned") = None;
                None
            }
            Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::PinIncorrect, _)) => {
                self.pin_refused(pin_hash);
                Some(self.config_error(
                    "wrong PIN (CKR_PIN_INCORRECT); fix the PIN source — each failed try counts toward locking the token, so keyport does not present this PIN again".into(),
                ))
            }
            Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::PinLocked, _)) => {
                Some(self.config_error("the user PIN is locked (CKR_PIN_LOCKED); the token's SO must reset it".into()))
            }
            Err(e) => Some(TokenError::from_ck(&self.name, "C_Login", e)),
        }
    }

    /// Logs every unreadable object and torn SoftHSM object file (handle, file, what to do)
    /// and sums them up in one sentence for health.
    fn damage_report(&self, index: &Index, serial: &str) -> Option<String> {
        let folder = softhsm::token_folder(&self.cfg, serial);
        let torn = folder.as_deref().map(softhsm::torn_files).unwrap_or_default();
        if index.unreadable.is_empty() && torn.is_empty() {
            return None;
        }
        let todo = "stop keyport, move the file (and its .lock) out of the token folder, start again; until then keyport ignores it";
        for u in &index.unreadable {
            // With one unreadable object and one torn file, they are the same object.
            let file = match (&torn[..], index.unreadable.len()) {
                ([t], 1) => format!("{} ({} bytes)", t.path.display(), t.len),
                _ => folder
                    .as_ref()
                    .map_or_else(|| "unknown (not a SoftHSM token)".into(), |f| format!("one of the torn files in {}", f.display())),
            };
            tracing::error!(token = %self.name, handle = u.handle.handle(), detail = %u.detail, file = %file,
                "unreadable token object (torn by a crash while it was written); {todo}");
        }
        for t in &torn {
            tracing::error!(token = %self.name, file = %t.path.display(), bytes = t.len, "torn SoftHSM object file (no complete attributes); {todo}");
        }
        let handles: Vec<String> = index.unreadable.iter().map(|u| format!("{} ({})", u.handle.handle(), u.detail)).collect();
        let files: Vec<String> = torn.iter().map(|t| format!("{} ({} bytes)", t.path.display(), t.len)).collect();
        Some(format!(
            "{} unreadable object(s) [handles {}] and {} torn object file(s) [{}]{}: torn by a crash while being written; keyport ignores them — {todo}",
            index.unreadable.len(),
            handles.join(", "),
            torn.len(),
            files.join(", "),
            folder.map(|f| format!(" in token folder {}", f.display())).unwrap_or_default(),
        ))
    }

    /// The live connection, reopening it if a failure invalidated it.
    fn live(&self) -> Result<Arc<Live>, TokenError> {
        if let Some(l) = self.live.read().expect("poisoned").as_ref() {
            return Ok(l.clone());
        }
        let _one = self.reopening.lock().expect("poisoned");
        if let Some(l) = self.live.read().expect("poisoned").as_ref() {
            return Ok(l.clone());
        }
        let module = module::load(&self.cfg.module).map_err(|m| TokenError::unavailable(&self.name, m))?;
        let connected = {
            let _call = module.enter();
            self.connect()
        };
        let live = match connected {
            Ok(l) => l,
            Err(TokenError::Config { message, .. }) => {
                // SoftHSM builds its token list in C_Initialize: a token whose folder could not
                // be read stays missing until the next one (`rescan`, at most every 2 s).
                self.rescan();
                return Err(TokenError::unavailable(
                    &self.name,
                    format!("lost, and not found again yet (its storage may be unreadable): {message}"),
                ));
            }
            // The module is not initialized: its C_Initialize failed while the device was away
            // (tpm2-pkcs11 connects to the TPM there). Try it again, at most every 2 s.
            Err(e @ TokenError::Transient { cure: Cure::Reinitialize, .. }) => {
                self.rescan();
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        tracing::warn!(token = %self.name, "token reopened");
        *self.live.write().expect("poisoned") = Some(live.clone());
        Ok(live)
    }

    /// The token is not found: re-initializes its module (at most every 2 s) so the next try
    /// sees tokens that came back since.
    fn rescan(&self) {
        let mut last = self.last_rescan.lock().expect("poisoned");
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(2)) {
            return;
        }
        *last = Some(std::time::Instant::now());
        if let Ok(m) = module::load(&self.cfg.module) {
            if let Err(e) = m.reinitialize(m.generation()) {
                tracing::warn!(token = %self.name, error = %e, "module re-initialize failed");
            }
        }
    }

    /// Drops a live connection after a transient failure; re-initializes the module when the
    /// failure's cure says the module itself lost state.
    fn invalidate(&self, live: &Arc<Live>, cure: Cure, detail: &str) {
        let mut cur = self.live.write().expect("poisoned");
        if cur.as_ref().is_some_and(|c| Arc::ptr_eq(c, live)) {
            *cur = None;
            drop(cur);
            tracing::warn!(token = %self.name, %detail, ?cure, "token connection lost; will reopen");
            if cure != Cure::Reopen {
                if let Err(e) = live.module.reinitialize(live.module_generation) {
                    tracing::error!(token = %self.name, error = %e, "module re-initialize failed");
                }
            } else {
                // Sessions are opened "no drop": a dead connection's session handles must never
                // be closed later, when the module may have handed the same numbers to the
                // new connection. Close the idle ones now, while the numbers are still ours.
                for s in live.pool.lock().expect("poisoned").drain(..) {
                    let _ = s.close();
                }
            }
        }
    }

    /// Runs `op` with a pooled session on a blocking worker. Transient failures reopen the
    /// token and retry with exponential backoff (50 ms, 100 ms, 200 ms); `op` must therefore be
    /// safe to run again (every keyport operation either is idempotent or fails before writing).
    pub async fn run<R, F>(self: &Arc<Self>, op: F) -> Result<R, TokenError>
    where
        F: Fn(&Ctx) -> Result<R, TokenError> + Send + Sync + 'static,
        R: Send + 'static,
    {
        let op = Arc::new(op);
        let mut delay = Duration::from_millis(50);
        let mut last = None;
        for _ in 0..RETRIES {
            // The permit goes with the work: should the caller stop waiting (a client hung up,
            // a time-out), the session stays counted until the token call returns, so dropped
            // callers can never open more sessions than the pool allows.
            let permit = self.permits.clone().acquire_owned().await.expect("semaphore closed");
            let (this, op) = (self.clone(), op.clone());
            let r = tokio::task::spawn_blocking(move || {
                let r = this.run_blocking(&*op);
                drop(permit);
                r
            })
            .await
            .map_err(|e| TokenError::unavailable(&self.name, format!("worker failed: {e}")))?;
            match r {
                Err(e) if e.is_transient() => {
                    last = Some(e);
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                other => return other,
            }
        }
        Err(last.expect("at least one attempt"))
    }

    fn run_blocking<R>(&self, op: &dyn Fn(&Ctx) -> Result<R, TokenError>) -> Result<R, TokenError> {
        let live = self.live()?;
        let call = live.module.enter();
        let session = live.pool.lock().expect("poisoned").pop();
        let session = match session {
            Some(s) => s,
            None => match open_session(&live.module.ctx, live.slot, live.read_only) {
                Ok(s) => s,
                Err(e) => {
                    let err = TokenError::from_ck(&self.name, "C_OpenSession", e);
                    drop(call);
                    if let TokenError::Transient { detail, cure, .. } = &err {
                        let cure = if *cure == Cure::Verify { Cure::Reinitialize } else { *cure };
                        self.invalidate(&live, cure, detail);
                    }
                    return Err(err);
                }
            },
        };
        let ctx = Ctx { session: &session, live: &live, token: &self.name };
        let r = op(&ctx);
        let cure = match &r {
            Err(TokenError::Transient { cure: Cure::Verify, detail, .. }) => match probe::check(&ctx) {
                // The token reads its known object: the failure was this request's own, or the
                // device ran out of object slots (see `relogin`): then once more after it.
                Ok(()) => {
                    if self.relogin(&live) {
                        let again = op(&ctx);
                        if !matches!(again, Err(TokenError::Transient { .. })) {
                            live.pool.lock().expect("poisoned").push(session);
                            return again;
                        }
                    }
                    live.pool.lock().expect("poisoned").push(session);
                    return Err(TokenError::Refused { token: self.name.clone(), operation: "the request", detail: detail.clone() });
                }
                Err(e) => {
                    tracing::warn!(token = %self.name, request = %detail, check = %e, "the token fails a known-object read too: treating it as lost");
                    Some((Cure::Reinitialize, detail.clone()))
                }
            },
            Err(TokenError::Transient { cure, detail, .. }) => Some((*cure, detail.clone())),
            _ => None,
        };
        drop(call);
        match cure {
            Some((cure, detail)) => {
                // Sessions are "no drop": dropping a lost one never closes its handle.
                drop(session);
                self.invalidate(&live, cure, &detail);
            }
            None => live.pool.lock().expect("poisoned").push(session),
        }
        r
    }

    /// Logs out and in again, at most every 100 ms, on tokens whose keys live in a hardware
    /// device (a request's own refusal on a software token never costs a new login). tpm2-pkcs11 keeps every key
    /// pair the process has used loaded in the TPM until C_Logout, and a resource manager
    /// allows a client few of them (tpm2-abrmd: 27 by default, 100 at most): past that,
    /// C_Sign and C_GenerateKeyPair answer CKR_GENERAL_ERROR while the token otherwise works.
    /// C_Logout evicts them; keys load again on their next use. `true` when logged in again.
    fn relogin(&self, live: &Live) -> bool {
        if !live.capabilities.hardware || !live.login_required {
            return false;
        }
        {
            let mut last = self.last_relogin.lock().expect("poisoned");
            if last.is_some_and(|t| t.elapsed() < Duration::from_millis(100)) {
                return false;
            }
            *last = Some(std::time::Instant::now());
        }
        let Ok(pin) = pin::read(&self.cfg.pin) else { return false };
        let Ok(pin_hash) = self.not_refused_before(&pin) else { return false };
        let login = live.login.lock().expect("poisoned");
        let _ = login.logout();
        match login.login(UserType::User, Some(&AuthPin::new(pin.to_string().into()))) {
            Ok(()) | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {
                tracing::info!(token = %self.name, "logged out and in again to free the device's object slots; retrying the request once");
                true
            }
            Err(e) => {
                if matches!(e, cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::PinIncorrect, _)) {
                    self.pin_refused(pin_hash);
                }
                tracing::warn!(token = %self.name, error = %e, "logging in again failed");
                false
            }
        }
    }

    /// The PIN's hash, or a configuration error without a C_Login when the token already
    /// refused this very PIN.
    fn not_refused_before(&self, pin: &str) -> Result<[u8; 32], TokenError> {
        use sha2::Digest;
        let hash: [u8; 32] = sha2::Sha256::digest(pin.as_bytes()).into();
        if *self.refused_pin.lock().expect("poisoned") == Some(hash) {
            return Err(self.config_error(
                "wrong PIN: the token refused the PIN in the PIN source already; keyport does not present it again (each failed try counts toward locking the token): put the right PIN in the source".into(),
            ));
        }
        Ok(hash)
    }

    /// Remembers a PIN the token refused; logged once per refusal (each one counts toward
    /// locking the token).
    fn pin_refused(&self, pin_hash: [u8; 32]) {
        *self.refused_pin.lock().expect("poisoned") = Some(pin_hash);
        tracing::error!(token = %self.name, "C_Login refused the PIN (CKR_PIN_INCORRECT); keyport will not present it again until the PIN source holds another");
    }

    /// Health's probe: the token's own state and a read of a known object (`probe.rs`), so a
    /// token whose storage cannot be read is found even when no request touches it. Goes
    /// through [`Token::run`], so a failed probe also starts recovery.
    pub async fn health(self: &Arc<Self>) -> TokenHealth {
        let name = self.name.clone();
        let r = self
            .run(|c| {
                probe::check(c)?;
                // A token that wants no login (CKF_LOGIN_REQUIRED clear) has what it needs.
                let logged_in = !c.live.login_required
                    || matches!(
                        c.ck("C_GetSessionInfo", c.session.get_session_info())?.session_state(),
                        SessionState::RwUser | SessionState::RoUser
                    );
                let objects = c.live.index.read().expect("poisoned").object_count();
                Ok((logged_in, objects, c.live.token_label.clone(), c.live.serial.clone(), c.live.mechanisms.clone()))
            })
            .await;
        match r {
            Ok((logged_in, objects, label, serial, m)) => TokenHealth {
                name,
                present: true,
                logged_in,
                objects,
                label,
                serial,
                mechanisms: Some(m),
                can: self.capabilities().map(|c| c.describe()).unwrap_or_default(),
                capabilities: self.capabilities().map(|c| (*c).clone()),
                error: None,
            },
            Err(e) => TokenHealth {
                error: Some(e.to_string()),
                can: self.capabilities().map(|c| c.describe()).unwrap_or_default(),
                capabilities: self.capabilities().map(|c| (*c).clone()),
                ..TokenHealth::absent(&name)
            },
        }
    }
}

/// A session that outlives nothing it must not ("no drop", see `invalidate`): read-only on a
/// write-protected token, which refuses read-write ones (CKR_TOKEN_WRITE_PROTECTED).
fn open_session(ctx: &cryptoki::context::Pkcs11, slot: Slot, read_only: bool) -> cryptoki::error::Result<Session> {
    if read_only {
        ctx.open_ro_session_no_drop(slot)
    } else {
        ctx.open_rw_session_no_drop(slot)
    }
}

fn probe(module: &Module, slot: Slot) -> Mechanisms {
    use cryptoki::mechanism::MechanismType as M;
    let list = module.ctx.get_mechanism_list(slot).unwrap_or_default();
    let has = |m: M| list.contains(&m);
    // 0x210B first: on a PKCS#11 3.0 token 0x210A is PKCS#7 padding + RFC 3394, not RFC 5649.
    let kwp = [CKM_AES_KEY_WRAP_KWP, CKM_AES_KEY_WRAP_PAD].into_iter().find(|m| module.raw.mechanism_flags(slot.id(), *m).is_some());
    Mechanisms {
        kwp,
        rsa_oaep: has(M::RSA_PKCS_OAEP),
        eddsa: has(M::EDDSA),
        ec_edwards_keygen: has(M::ECC_EDWARDS_KEY_PAIR_GEN),
        ecdsa: has(M::ECDSA),
        des3: has(M::DES3_KEY_GEN),
        ed25519_wrappable: false,
        count: list.len(),
    }
}

/// Tries to wrap a throw-away (session) Ed25519 key under a throw-away AES key.
fn probe_ed25519_wrap(s: &Session, m: &Mechanisms) -> bool {
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::KeyType;
    if !m.ec_edwards_keygen {
        return false;
    }
    match m.kwp {
        // cryptoki cannot name 0x210B; tokens that have it (PKCS#11 3.0) wrap Ed25519.
        Some(CKM_AES_KEY_WRAP_KWP) => return true,
        Some(CKM_AES_KEY_WRAP_PAD) => {}
        _ => return false,
    }
    let kek = s.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(32.into()),
            Attribute::Token(false),
            Attribute::Wrap(true),
            Attribute::Extractable(false),
        ],
    );
    let pair = s.generate_key_pair(
        &Mechanism::EccEdwardsKeyPairGen,
        &[Attribute::Token(false), Attribute::EcParams(crate::material::algorithm::OID_ED25519.to_vec())],
        &[
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(true),
            Attribute::Sign(true),
        ],
    );
    let ok = match (&kek, &pair) {
        (Ok(k), Ok((_, private))) => s.wrap_key(&Mechanism::AesKeyWrapPad, *k, *private).is_ok(),
        _ => false,
    };
    for h in [kek.ok(), pair.as_ref().ok().map(|p| p.0), pair.as_ref().ok().map(|p| p.1)].into_iter().flatten() {
        let _ = s.destroy_object(h);
    }
    ok
}

/// All configured tokens, by name; the first is the default.
pub struct Tokens {
    list: Vec<Arc<Token>>,
}

impl Tokens {
    /// Tokens opened (or kept absent) by the caller, in configuration order.
    pub fn new(list: Vec<Arc<Token>>) -> Tokens {
        Tokens { list }
    }

    pub fn open(cfgs: &[TokenConfig]) -> Result<Tokens, Vec<TokenError>> {
        let mut list = Vec::new();
        let mut errors = Vec::new();
        for c in cfgs {
            match Token::open(c.clone()) {
                Ok(t) => list.push(t),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(Tokens { list })
        } else {
            Err(errors)
        }
    }

    pub fn get(&self, name: Option<&str>) -> Option<&Arc<Token>> {
        match name {
            None => self.list.first(),
            Some(n) => self.list.iter().find(|t| t.name == n),
        }
    }

    pub fn all(&self) -> &[Arc<Token>] {
        &self.list
    }
}

impl Token {
    /// For callers that must stay synchronous while on the runtime (rustls asks for a TLS
    /// signature synchronously): hands this worker's other tasks away with `block_in_place`,
    /// then runs like [`Token::run`].
    pub fn run_in_place<R, F>(self: &Arc<Self>, op: F) -> Result<R, TokenError>
    where
        F: Fn(&Ctx) -> Result<R, TokenError> + Send + Sync + 'static,
        R: Send + 'static,
    {
        let handle = tokio::runtime::Handle::current();
        tokio::task::block_in_place(|| handle.block_on(self.run(op)))
    }
}

impl Token {
    /// Whether this token can create Ed25519 objects (probed mechanisms).
    pub async fn supports_ed25519(self: &Arc<Self>) -> bool {
        self.run(|c| Ok(c.live.mechanisms.eddsa || c.live.mechanisms.ec_edwards_keygen)).await.unwrap_or(false)
    }
}
