//! Everything before the listeners: store → tokens (a token the store has seen is never created
//! again) → the core's `App` → reconcile (never fatal: problems go to health) → the background
//! work (DEK, unfinished deletes, probes, jobs, sync, certificate jobs, rotations).

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{fatal, Fatal};
use crate::config::Config;
use crate::core::{authz::Authz, reconcile, App};
use crate::store::Store;
use crate::sync::Syncer;
use crate::token::{OpenError, Token, Tokens};

/// A started core: what [`super::bind`] and [`super::run`] serve.
pub struct Started {
    pub app: Arc<App>,
    /// `None`: sync is not configured.
    pub syncer: Option<Arc<Syncer>>,
    /// The state folder's lock, held until `run` returns.
    pub lock: nix::fcntl::Flock<std::fs::File>,
}

/// Opens the store and the tokens, repairs what a crash left, and starts the background work.
/// `config_file` places the default rotation hooks folder (`hooks.d` beside it).
pub async fn start(cfg: Config, config_file: Option<&Path>) -> Result<Started, Fatal> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&cfg.state_dir)
        .map_err(|e| fatal(1, format!("cannot create state_dir {}: {e}", cfg.state_dir.display())))?;
    let lock = lock_state_dir(&cfg.state_dir)?;
    // The store first: it says which tokens keyport has seen (those are never created again).
    let store = Store::open(&cfg.state_dir.join("keyport.db")).map_err(|e| fatal(1, e.to_string()))?;
    let (tokens, absent) = open_tokens(&cfg, &store).await?;
    let app = Arc::new(App {
        authz: std::sync::RwLock::new(Authz::new(&cfg.principals)),
        kdf: crate::core::kdf::KdfPool::new(&cfg.limits),
        config: cfg,
        tokens,
        store,
        pause_before_commit: crate::test_hooks::pause_before_commit(),
        dek: Default::default(),
        jobs: Default::default(),
        health: Default::default(),
        signing: Default::default(),
        telemetry: Default::default(),
        rotations: Default::default(),
        background: Default::default(),
    });
    for (name, e) in absent {
        tracing::error!(token = %name, error = %e, "token not there at start; starting without it");
    }
    // Never fails: what it cannot repair is reported in health (a full disk, a token away).
    let repairs = reconcile::run(&app).await;
    tracing::info!(
        intents_undone = repairs.intents_undone,
        half_made_removed = repairs.half_made_removed,
        deletes_finished = repairs.deletes_finished,
        rows_marked_missing = repairs.rows_marked_missing,
        rows_back = repairs.rows_back,
        certificate_rows_removed = repairs.certificate_rows_removed,
        other_objects = repairs.foreign_objects,
        "reconciled store and tokens"
    );
    // Background work is tracked (`core::background`): a stop ends it at a safe point.
    let bg = &app.background;
    if !crate::core::dek::start(&app).await {
        bg.spawn(crate::core::dek::retry(app.clone()));
    }
    bg.spawn(crate::core::keys::finish_deletes(app.clone()));
    // Health probes: token and store, every 5 s and when a request meets a fault.
    bg.spawn(crate::core::probe::run(app.clone()));
    // Resumes jobs accepted before a restart, then waits for new ones.
    bg.spawn(crate::core::jobs::run(app.clone()));
    let syncer = crate::sync::start(&app).map_err(|m| fatal(2, format!("sync: {m}")))?;
    bg.spawn(crate::core::certificates::resume(app.clone()));
    // Resumes every open SSH keyset rotation at its stage, then runs the schedules.
    let hooks_dir: Option<PathBuf> =
        app.config.rotation.hooks_dir.clone().or_else(|| config_file.and_then(Path::parent).map(|d| d.join("hooks.d")));
    if let Some(d) = hooks_dir {
        let _ = app.rotations.hooks_dir.set(d);
    }
    bg.spawn(crate::core::rotation::run(app.clone()));
    Ok(Started { app, syncer, lock })
}

/// One daemon per state folder: an exclusive lock held for the process's life.
fn lock_state_dir(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, Fatal> {
    let p = dir.join("keyport.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|e| fatal(1, format!("cannot open {}: {e}", p.display())))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| fatal(1, format!("another keyport is running with state_dir {}; stop it first", dir.display())))
}

/// Opens every configured token. A token the store has seen that is not there now (wiped,
/// unplugged) is kept absent and reported, never created again; a token the store has never
/// seen may be created (the embedded SoftHSM default); any other failure (bad module, wrong
/// PIN, unknown label) stops the start with one line per problem.
async fn open_tokens(cfg: &Config, store: &Store) -> Result<(Tokens, Vec<(String, String)>), Fatal> {
    let mut plan = Vec::new();
    for t in &cfg.tokens {
        // A store that cannot answer: assume seen, never create.
        let seen = store.has_seen_token(&t.name).unwrap_or(true);
        plan.push((t.clone(), seen));
    }
    tokio::task::spawn_blocking(move || {
        let (mut list, mut absent, mut errors) = (Vec::new(), Vec::new(), Vec::new());
        for (t, seen) in plan {
            match Token::open_with(t.clone(), !seen) {
                Ok(tok) => list.push(tok),
                Err(OpenError::Absent(e)) if seen => {
                    absent.push((t.name.clone(), e.to_string()));
                    list.push(Token::absent(t));
                }
                Err(e) => errors.push(e.error().to_string()),
            }
        }
        if errors.is_empty() {
            Ok((Tokens::new(list), absent))
        } else {
            Err(Fatal { lines: errors, code: 2 })
        }
    })
    .await
    .map_err(|e| fatal(1, e.to_string()))?
}
