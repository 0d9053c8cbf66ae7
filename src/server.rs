//! `keyport serve`: config → state folder and lock → tokens → store → reconcile → listeners,
//! then signals: SIGTERM/SIGINT drain and stop, SIGHUP reloads the principals.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{watch, Semaphore};

use crate::api::{self, listen};
use crate::config::{self, Config, TlsConfig};
use crate::core::{authz::Authz, reconcile, App};
use crate::store::Store;
use crate::token::{softhsm, Tokens};

/// A start-up failure: one line per problem, then exit code 2 (configuration) or 1.
pub struct Fatal {
    pub lines: Vec<String>,
    pub code: i32,
}

fn fatal(code: i32, line: impl Into<String>) -> Fatal {
    Fatal { lines: vec![line.into()], code }
}

pub fn serve(config_file: Option<&Path>) -> Result<(), Fatal> {
    let cfg = config::load(config_file).map_err(|ps| Fatal { lines: ps.iter().map(|p| format!("config: {p}")).collect(), code: 2 })?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&cfg.state_dir)
        .map_err(|e| fatal(1, format!("cannot create state_dir {}: {e}", cfg.state_dir.display())))?;
    let _lock = lock_state_dir(&cfg.state_dir)?;
    // Sets SOFTHSM2_CONF: must happen before any other thread exists.
    softhsm::prepare_env(&cfg).map_err(|m| fatal(2, m))?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| fatal(1, e.to_string()))?;
    rt.block_on(run(cfg, config_file.map(Path::to_path_buf)))
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

async fn run(cfg: Config, config_file: Option<PathBuf>) -> Result<(), Fatal> {
    let token_cfgs = cfg.tokens.clone();
    let tokens = tokio::task::spawn_blocking(move || Tokens::open(&token_cfgs))
        .await
        .map_err(|e| fatal(1, e.to_string()))?
        .map_err(|errs| Fatal { lines: errs.iter().map(|e| e.to_string()).collect(), code: 2 })?;
    let store = Store::open(&cfg.state_dir.join("keyport.db")).map_err(|e| fatal(1, e.to_string()))?;
    let pause_ms = std::env::var("KEYPORT_TEST_PAUSE_BEFORE_COMMIT_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let app = Arc::new(App {
        authz: std::sync::RwLock::new(Authz::new(&cfg.principals)),
        config: cfg,
        tokens,
        store,
        pause_before_commit: std::time::Duration::from_millis(pause_ms),
        dek: Default::default(),
        jobs: Default::default(),
        health: Default::default(),
        sync: Default::default(),
    });
    let repairs = reconcile::run(&app).await.map_err(|e| fatal(1, format!("reconciliation failed: {e}")))?;
    tracing::info!(
        intents_undone = repairs.intents_undone,
        rows_removed = repairs.rows_removed,
        certificate_rows_removed = repairs.certificate_rows_removed,
        other_objects = repairs.foreign_objects,
        "reconciled store and tokens"
    );

    let dek = crate::core::dek::load_or_create(&app).await.map_err(|e| fatal(1, format!("edge encryption key: {e}")))?;
    let _ = app.dek.set(dek);
    // Health probes: token and store, every 5 s and when a request meets a fault.
    tokio::spawn(crate::core::probe::run(app.clone()));
    // Resumes jobs accepted before a restart, then waits for new ones.
    tokio::spawn(crate::core::jobs::run(app.clone()));
    crate::sync::start(&app).map_err(|m| fatal(2, format!("sync: {m}")))?;
    tokio::spawn(crate::core::certificates::resume(app.clone()));

    let (stop_tx, stop_rx) = watch::channel(false);
    let serving = listen::Serving {
        router: api::router(app.clone()),
        limits: app.config.limits.clone(),
        connections: Arc::new(Semaphore::new(app.config.limits.max_connections)),
        shutdown: stop_rx,
    };
    let mut tasks = Vec::new();
    let mut _socket_file = None;
    if let Some(l) = api::activation::unix_listener() {
        let l = tokio::net::UnixListener::from_std(l).map_err(|e| fatal(1, format!("activated socket: {e}")))?;
        tracing::info!("listening on the Unix socket passed by systemd");
        tasks.push(tokio::spawn(listen::serve_unix(l, serving.clone())));
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
        tasks.push(tokio::spawn(listen::serve_unix(l, serving.clone())));
    }
    if let Some(addr) = &app.config.listen.tcp {
        let tls = match &app.config.listen.tls {
            TlsConfig::Plain => None,
            TlsConfig::Files { cert, key } => Some(api::tls::from_files(cert, key).map_err(|m| fatal(2, m))?),
            TlsConfig::SelfSigned => {
                let t = app.tokens.get(None).expect("at least one token").clone();
                Some(api::tls::self_signed(&t, &app.config.state_dir).await.map_err(|m| fatal(1, m))?)
            }
        };
        let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| fatal(1, format!("cannot listen on {addr}: {e}")))?;
        tracing::info!(addr = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), tls = tls.is_some(), "listening on TCP");
        let acceptor = tls.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c)));
        tasks.push(tokio::spawn(listen::serve_tcp(l, acceptor, serving.clone())));
    }
    notify_systemd("READY=1");
    tracing::info!("keyport ready");

    wait_for_stop(&app, config_file.as_deref()).await;
    notify_systemd("STOPPING=1");
    tracing::info!("shutdown: draining connections");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    // Let in-flight connections finish (each has its own drain timeout).
    let _ = tokio::time::timeout(std::time::Duration::from_secs(app.config.limits.request_timeout_secs), async {
        while serving.connections.available_permits() < app.config.limits.max_connections {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    Ok(())
}

async fn wait_for_stop(app: &App, config_file: Option<&Path>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup()))
    else {
        tracing::error!("cannot install signal handlers");
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
