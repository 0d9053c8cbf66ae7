//! `keyport serve`: config → state folder and lock → store → tokens (a token the store has seen
//! is never created again) → reconcile (never fatal: problems go to health) → DEK → listeners,
//! then signals: SIGTERM/SIGINT drain and stop, SIGHUP reloads the principals.

pub mod hardening;

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

use crate::api::slots::Slots;
use crate::api::{self, listen};
use crate::config::{self, Config, TlsConfig};
use crate::core::tls_identity::NoIdentity;
use crate::core::{authz::Authz, reconcile, App};
use crate::store::Store;
use crate::token::{softhsm, OpenError, Token, Tokens};

/// Connections the metrics listener serves at once (a scraper or two).
const METRICS_CONNECTIONS: usize = 8;

/// A start-up failure: one line per problem, then exit code 2 (configuration) or 1.
pub struct Fatal {
    pub lines: Vec<String>,
    pub code: i32,
}

fn fatal(code: i32, line: impl Into<String>) -> Fatal {
    Fatal { lines: vec![line.into()], code }
}

pub fn serve(config_file: Option<&Path>) -> Result<(), Fatal> {
    // Before the config (and the PIN it may name) is read: nothing secret is ever in a core
    // dump or an unlocked page.
    hardening::harden();
    let cfg = config::load(config_file).map_err(|ps| Fatal { lines: ps.iter().map(|p| format!("config: {p}")).collect(), code: 2 })?;
    let fresh = !cfg.state_dir.exists();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&cfg.state_dir)
        .map_err(|e| fatal(1, format!("cannot create state_dir {}: {e}", cfg.state_dir.display())))?;
    let _lock = lock_state_dir(&cfg.state_dir)?;
    say_where(&cfg, config_file, fresh);
    // Sets SOFTHSM2_CONF: must happen before any other thread exists.
    softhsm::prepare_env(&cfg).map_err(|m| fatal(2, m))?;
    // Clears LISTEN_*: the environment is changed only while no other thread exists.
    let activated = api::activation::take();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| fatal(1, e.to_string()))?;
    rt.block_on(run(cfg, config_file.map(Path::to_path_buf), activated))
}

/// Where the state is, said at every start: a `keyport serve` run from another folder (with
/// the embedded default's relative `./run`) must not quietly start an empty daemon there.
fn say_where(cfg: &Config, config_file: Option<&Path>, fresh: bool) {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let state = abs(&cfg.state_dir);
    let config = config_file.map_or_else(|| "embedded default (no --config)".to_string(), |f| abs(f).display().to_string());
    let store = state.join("keyport.db");
    tracing::info!(config = ?config, state_dir = ?state.display().to_string(), store = ?store.display().to_string(), "state");
    for t in &cfg.tokens {
        if let Some(s) = &t.softhsm {
            let pin = match &t.pin {
                config::PinSource::File(f) => abs(f).display().to_string(),
                config::PinSource::Env(v) => format!("${v}"),
                config::PinSource::Credential(c) => format!("credential {c}"),
            };
            tracing::info!(token = ?t.name, softhsm_dir = ?abs(&s.dir).display().to_string(), pin_source = ?pin, "SoftHSM token");
        }
    }
    if fresh {
        tracing::warn!(
            state_dir = ?state.display().to_string(),
            "a new, empty state folder was created: a new store here (and a new SoftHSM token for the embedded default); if you meant an existing keyport, stop and pass --config or run from its folder"
        );
    }
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

async fn run(cfg: Config, config_file: Option<PathBuf>, activated: api::activation::Activated) -> Result<(), Fatal> {
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
    // Background work is tracked (`core::background`): SIGTERM stops it at a safe point.
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
    let hooks_dir =
        app.config.rotation.hooks_dir.clone().or_else(|| config_file.as_deref().and_then(Path::parent).map(|d| d.join("hooks.d")));
    if let Some(d) = hooks_dir {
        let _ = app.rotations.hooks_dir.set(d);
    }
    bg.spawn(crate::core::rotation::run(app.clone()));

    // Before any listener answers: a SIGTERM that arrives as soon as the daemon is reachable
    // must drain it, not kill it (the default action until a handler exists).
    let signals = install_signals();
    let (stop_tx, stop_rx) = watch::channel(false);
    let limits = &app.config.limits;
    let admin_app = app.clone();
    let serving = listen::Serving {
        router: api::router(app.clone(), syncer.clone()),
        limits: limits.clone(),
        privileged: Arc::new(move |peer| {
            admin_app.authz.read().expect("poisoned").identify(peer, None).is_ok_and(|p| p.allows("*", crate::config::Permission::Admin))
        }),
        shutdown: stop_rx,
    };
    // Each listener its own slots; only the socket keeps a reserve for admins (TCP callers are
    // known only after their request's headers).
    let socket_slots = Slots::new(limits.max_connections, limits.max_connections_per_peer, limits.admin_reserve_connections);
    let tcp_slots = Slots::new(limits.max_connections, limits.max_connections_per_peer, 0);
    let mut tasks = Vec::new();
    let mut _socket_file = None;
    if let Some(l) = activated.api {
        let l = tokio::net::UnixListener::from_std(l).map_err(|e| fatal(1, format!("activated socket: {e}")))?;
        tracing::info!("listening on the Unix socket passed by systemd");
        tasks.push(tokio::spawn(listen::serve_unix(l, serving.clone(), socket_slots.clone())));
    } else if let Some(path) = &app.config.listen.socket {
        let l = listen::bind_unix(
            path,
            app.config.socket_mode(),
            app.config.listen.socket_owner.as_deref(),
            app.config.listen.socket_group.as_deref(),
        )
        .map_err(|m| fatal(1, m))?;
        _socket_file = Some(listen::SocketFile(path.clone()));
        tracing::info!(path = %path.display(), "listening on Unix socket");
        tasks.push(tokio::spawn(listen::serve_unix(l, serving.clone(), socket_slots.clone())));
    }
    if let Some(addr) = &app.config.listen.tcp {
        // `None`: not served (reported in health); `Some(None)`: plain HTTP as configured.
        let tls = match &app.config.listen.tls {
            TlsConfig::Plain => Some(None),
            TlsConfig::Files { cert, key } => Some(Some(api::tls::from_files(cert, key).map_err(|m| fatal(2, m))?)),
            TlsConfig::SelfSigned => match crate::core::tls_identity::self_signed(&app).await {
                Ok(identity) => Some(Some(api::tls::self_signed(identity).map_err(|m| fatal(2, m))?)),
                // Its key lives in a token that is away: serve the socket only (never plain
                // HTTP in place of TLS); a fault, so restart once the token is back.
                Err(NoIdentity::Away(m)) => {
                    app.health.set("listen:tcp", format!("HTTPS on {addr} is not served: {m}; restart keyport once the token is back"));
                    None
                }
                // No token can hold it: the feature is off with this configuration.
                Err(NoIdentity::Off(m)) => {
                    let msg = format!("HTTPS on {addr} is off: {m}");
                    tracing::error!("{msg}");
                    app.health.set_off("listen:tcp", msg);
                    None
                }
            },
        };
        if let Some(tls) = tls {
            let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| fatal(1, format!("cannot listen on {addr}: {e}")))?;
            tracing::info!(addr = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), tls = tls.is_some(), "listening on TCP");
            let acceptor = tls.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c)));
            tasks.push(tokio::spawn(listen::serve_tcp(l, acceptor, serving.clone(), tcp_slots.clone())));
        }
    }
    // The metrics-only listener: plain HTTP, no authentication, counts only (`api::metrics`).
    if let Some(addr) = &app.config.metrics.listen {
        let l =
            tokio::net::TcpListener::bind(addr).await.map_err(|e| fatal(1, format!("cannot listen on {addr} (metrics.listen): {e}")))?;
        tracing::info!(addr = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "metrics listener: GET /metrics, no authentication");
        let s = listen::Serving { router: api::metrics::listener_router(app.clone(), syncer.clone()), ..serving.clone() };
        tasks.push(tokio::spawn(listen::serve_tcp(l, None, s, Slots::new(METRICS_CONNECTIONS, METRICS_CONNECTIONS / 2, 0))));
    }
    // The ssh-agent socket (`api::agent`): its own connection cap, the same shutdown.
    let agent = api::agent::AgentServing::new(app.clone(), serving.shutdown.clone());
    let mut _agent_socket_file = None;
    if let Some(l) = activated.agent {
        let l = tokio::net::UnixListener::from_std(l).map_err(|e| fatal(1, format!("activated agent socket: {e}")))?;
        tracing::info!("ssh-agent listening on the Unix socket passed by systemd");
        tasks.push(tokio::spawn(api::agent::serve(l, agent.clone())));
    } else if let Some((l, file)) = api::agent::bind(&app.config.agent).map_err(|e| fatal(1, e.to_string()))? {
        tracing::info!(path = %file.0.display(), "ssh-agent listening on Unix socket");
        _agent_socket_file = Some(file);
        tasks.push(tokio::spawn(api::agent::serve(l, agent.clone())));
    }
    notify_systemd("READY=1");
    tracing::info!("keyport ready");

    wait_for_stop(&app, config_file.as_deref(), signals).await;
    notify_systemd("STOPPING=1");
    tracing::info!("shutdown: draining connections");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    // Let in-flight connections finish (each has its own drain timeout).
    let _ = tokio::time::timeout(std::time::Duration::from_secs(app.config.limits.request_timeout_secs), async {
        while socket_slots.open() + tcp_slots.open() > 0 || agent.connections.available_permits() < app.config.agent.max_connections {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    // Then the background work: loops return at their next safe point, work in flight ends.
    let left = app.background.stop(crate::core::background::DRAIN).await;
    if left > 0 {
        tracing::warn!(
            tasks = left,
            "shutdown: background work still running after {} s is dropped; the next start finishes or undoes it",
            crate::core::background::DRAIN.as_secs()
        );
    } else {
        tracing::info!("shutdown: background work stopped");
    }
    Ok(())
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

type Signals = Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal, tokio::signal::unix::Signal)>;

/// SIGTERM, SIGINT and SIGHUP handlers; `None` (logged) when they cannot be installed.
fn install_signals() -> Signals {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup())) {
        (Ok(t), Ok(i), Ok(h)) => Some((t, i, h)),
        _ => {
            tracing::error!("cannot install signal handlers");
            None
        }
    }
}

async fn wait_for_stop(app: &App, config_file: Option<&Path>, signals: Signals) {
    let Some((mut term, mut int, mut hup)) = signals else {
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => match config::load(config_file) {
                Ok(cfg) => {
                    *app.authz.write().expect("poisoned") = Authz::new(&cfg.principals);
                    tracing::info!("SIGHUP: principals reloaded (other changes need a restart)");
                }
                Err(ps) => for p in ps { tracing::error!("SIGHUP: config not reloaded: {p}"); },
            },
        }
    }
}

/// sd_notify without a library: one datagram to $NOTIFY_SOCKET (path or abstract name).
fn notify_systemd(state: &str) {
    let Some(addr) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else { return };
    let addr = addr.to_string_lossy().into_owned();
    let r = if let Some(name) = addr.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), &addr)
    };
    if let Err(e) = r {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}
