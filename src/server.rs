//! `keyport serve`: config → state folder and lock → [`start`] (store, tokens, reconcile,
//! background work) → [`bind`] (listeners) → [`run`] (serve until the stop future resolves,
//! then drain). `serve` wires signals to that future: SIGTERM/SIGINT drain and stop, SIGHUP
//! reloads the principals. Tests call `start`, `bind` and `run` in-process with their own
//! listeners and stop future (mini-redis's `server::run(listener, shutdown)`).

pub mod hardening;
mod listeners;
mod start;

pub use listeners::{bind, Listeners};
pub use start::{start, Started};

use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;

use crate::api::slots::Slots;
use crate::api::{self, listen};
use crate::config::{self, Config};
use crate::core::{authz::Authz, App};
use crate::token::softhsm;

/// Connections the metrics listener serves at once (a scraper or two).
const METRICS_CONNECTIONS: usize = 8;

/// A start-up failure: one line per problem, then exit code 2 (configuration) or 1.
#[derive(Debug)]
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
    say_where(&cfg, config_file, !cfg.state_dir.exists());
    // Sets SOFTHSM2_CONF: must happen before any other thread exists.
    softhsm::prepare_env(&cfg).map_err(|m| fatal(2, m))?;
    // Clears LISTEN_*: the environment is changed only while no other thread exists.
    let activated = api::activation::take();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| fatal(1, e.to_string()))?;
    rt.block_on(async {
        let started = start(cfg, config_file).await?;
        // Before any listener answers: a SIGTERM that arrives as soon as the daemon is
        // reachable must drain it, not kill it (the default action until a handler exists).
        let signals = install_signals();
        let listeners = bind(&started, activated).await?;
        let app = started.app.clone();
        run(started, listeners, async move { wait_for_stop(&app, config_file, signals).await }).await
    })
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

/// Serves `listeners` until `stop` resolves, then drains: connections first (each within its
/// request timeout), then the background work at its next safe point.
pub async fn run(started: Started, listeners: Listeners, stop: impl std::future::Future<Output = ()>) -> Result<(), Fatal> {
    let Started { app, syncer, lock: _lock } = started;
    let (stop_tx, stop_rx) = watch::channel(false);
    let limits = &app.config.limits;
    let admin_app = app.clone();
    let serving = listen::Serving {
        answer: api::answerer(app.clone(), api::router(app.clone(), syncer.clone())),
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
    let Listeners { api: api_socket, tcp, metrics, agent: agent_socket } = listeners;
    let mut tasks = Vec::new();
    // Socket files are removed when these drop, after the drain.
    let mut _files = Vec::new();
    if let Some((l, file)) = api_socket {
        _files.extend(file);
        tasks.push(tokio::spawn(listen::serve_unix(l, serving.clone(), socket_slots.clone())));
    }
    if let Some((l, acceptor)) = tcp {
        tasks.push(tokio::spawn(listen::serve_tcp(l, acceptor, serving.clone(), tcp_slots.clone())));
    }
    if let Some(l) = metrics {
        let s = listen::Serving {
            answer: api::answerer(app.clone(), api::metrics::listener_router(app.clone(), syncer.clone())),
            ..serving.clone()
        };
        tasks.push(tokio::spawn(listen::serve_tcp(l, None, s, Slots::new(METRICS_CONNECTIONS, METRICS_CONNECTIONS / 2, 0))));
    }
    // The ssh-agent socket (`api::agent`): its own connection cap, the same shutdown.
    let agent = api::agent::AgentServing::new(app.clone(), serving.shutdown.clone());
    if let Some((l, file)) = agent_socket {
        _files.extend(file);
        tasks.push(tokio::spawn(api::agent::serve(l, agent.clone())));
    }
    notify_systemd("READY=1");
    tracing::info!("keyport ready");

    stop.await;
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
