//! The sync worker: a pass when `schedule` says (every `interval_secs` + random jitter, sooner
//! when a failed row's backoff ends, at once on `sync now`). A pass takes the outbox rows in order per key,
//! pushes each, and deletes a row only after the vault confirmed it. A vault that is down,
//! sealed or rate-limiting ends the pass (every pending key gets that error) and never touches
//! imports or exports, which only write the outbox.
//!
//! With `remote = "tlspc"` a pass is `tlspc::Tlspc::pass` (batches instead of one key at a
//! time); the schedule, trigger and status are the same.
//!
//! One writer per vault key name: one daemon per state folder, one worker per daemon, one key
//! at a time; and every write is read-before-write and verified after (OpenBao's import is
//! neither atomic nor idempotent: docs/vault.md §2.5, §2.8).

use crate::material::kind::KeyKind;
use crate::store::SyncStatus;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::openbao::{der_to_pem, pem_to_der, transit_public_key_spki, vault_fingerprint, ImportResult, OpenBao, TransitKey};
use super::outbox::{self as plan, KeyRows};
use super::prefetch::{self, Prepared};
use super::remote::Remote;
use super::remote::RemoteError;
use super::schedule::Schedule;
use crate::config::SyncConfig;
use crate::core::App;
use crate::material::algorithm::Algorithm;
use crate::material::spki::PublicKey;
use crate::store::outbox::{OutboxRow, SyncScope, SyncState, OP_CERTIFICATE, OP_DELETE, OP_KEY};
use crate::store::records::now;
use crate::token::{byok, TokenError};

/// The last pass, for status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PassInfo {
    pub finished_at: Option<crate::clock::Timestamp>,
    pub pushed: usize,
    pub failed: usize,
    /// Why the pass stopped early (vault unreachable, sealed, rate-limited), if it did.
    pub stopped: Option<String>,
}

pub struct Syncer {
    pub cfg: SyncConfig,
    pub host: String,
    pub remote: Remote,
    schedule: Schedule,
    pub last_pass: Mutex<PassInfo>,
    /// When the vault's copy was last checked (`verify`).
    verified_at: Mutex<Option<std::time::Instant>>,
    /// The last key the lost-data check got through before the vault stopped it: the next
    /// pass resumes after it instead of starting over (a rate limit would never let it finish).
    verify_cursor: Mutex<Option<String>>,
    /// One backoff for the whole vault (`gate`).
    pub gate: super::gate::Gate,
    /// Passes run since start (status; tests bound it).
    pub passes: std::sync::atomic::AtomicU64,
    /// A key reached transit but its KV record was not written (the vault went mid-push): the
    /// next pass runs the lost-data check, which puts the record back.
    pub(super) recheck: std::sync::atomic::AtomicBool,
}

/// The vault's name for a key type.
pub fn vault_type(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::Rsa2048 => "rsa-2048",
        Algorithm::Rsa3072 => "rsa-3072",
        Algorithm::Rsa4096 => "rsa-4096",
        Algorithm::EcP256 => "ecdsa-p256",
        Algorithm::EcP384 => "ecdsa-p384",
        Algorithm::EcP521 => "ecdsa-p521",
        Algorithm::Ed25519 => "ed25519",
    }
}

/// Whether the vault's public key (SPKI PEM, or raw base64 for Ed25519) is ours.
pub fn same_public_key(ours: &PublicKey, vault: &str) -> bool {
    ours.spki_der().ok().is_some_and(|d| transit_public_key_spki(vault).as_deref() == Some(d.as_slice()))
}

/// A store error during a push: retried for that key with backoff, the pass goes on.
pub(super) fn store_err(e: crate::store::StoreError) -> RemoteError {
    RemoteError::Retry { message: e.to_string(), after: None, stop_pass: false }
}

/// A key name as a vault path segment: itself, or the key id when it has characters the vault
/// refuses in paths (`@`).
pub(super) fn path_name<'a>(name: &'a str, key_id: &'a str) -> &'a str {
    if name.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c)) {
        name
    } else {
        key_id
    }
}

/// Why `rec` is never pushed (its sync state's message), or `None` when it is: on a token that
/// cannot wrap, not a key pair, created non-exportable. The push and its prefetch
/// (`prefetch::prepare`) both ask this.
pub(super) fn not_syncable(app: &App, rec: &crate::store::KeyRecord) -> Option<String> {
    if crate::core::token_caps::cannot_wrap(&app.tokens, &rec.token) {
        return Some(crate::core::token_caps::not_exportable_on_token(&rec.name, &rec.token));
    }
    if let Some(why) = not_a_key_pair(&rec.algorithm) {
        return Some(why);
    }
    (!rec.exportable).then(|| "created non-exportable: it never leaves the token, not even wrapped, so the vault cannot hold it".into())
}

/// Why a key the 004 face made is not synced: sync carries key pairs (transit BYOK of an
/// asymmetric key). A secret key (`aes-*`, `des`, `des3`) or a public key alone was a permanent
/// failure ("unknown algorithm") left in the outbox, so sync never settled (crash_faces).
fn not_a_key_pair(kind: &KeyKind) -> Option<String> {
    match kind {
        KeyKind::Secret(_) => Some(format!("a secret key ({kind}): sync carries key pairs only, so it stays in the token")),
        KeyKind::Public(_) => Some(format!("a public key alone ({kind}): nothing secret for the vault to keep")),
        KeyKind::Other(s) if s.ends_with("-public") => Some(format!("a public key alone ({kind}): nothing secret for the vault to keep")),
        KeyKind::Pair(_) | KeyKind::Other(_) => None,
    }
}

/// The newest version of transit key `k` that holds `rec`'s key: found by the key's
/// fingerprint (the SHA-256 of its SPKI, recorded at creation: no token call), and only when
/// no version has it, by the public key read from the token (once, into `public`), so a
/// fingerprint recorded in another form can never make the key be imported twice.
async fn holding_version(
    app: &App,
    rec: &crate::store::KeyRecord,
    k: &TransitKey,
    public: &mut Option<PublicKey>,
) -> Result<Option<i64>, crate::core::CoreError> {
    let by_fingerprint =
        k.versions.iter().rev().find(|(_, v)| vault_fingerprint(&v.public_key).as_deref() == Some(rec.fingerprint.as_str()));
    if let Some((n, _)) = by_fingerprint {
        return Ok(Some(*n));
    }
    if k.versions.is_empty() {
        return Ok(None);
    }
    let public = match public {
        Some(p) => p,
        None => public.insert(crate::core::keys::read_public_key(app, rec).await?),
    };
    Ok(k.versions.iter().rev().find(|(_, v)| same_public_key(public, &v.public_key)).map(|(n, _)| *n))
}

/// Certificates compared by their DER, whatever the PEM line layout.
fn same_certificate(pem: &str, der: &[u8]) -> bool {
    let first = pem.split("-----END CERTIFICATE-----").next().unwrap_or("");
    pem_to_der(first).as_deref() == Some(der)
}

impl Syncer {
    pub fn new(cfg: &SyncConfig) -> Result<Syncer, String> {
        let host = cfg.host_name();
        Ok(Syncer {
            remote: Remote::new(cfg)?,
            schedule: Schedule::new(Duration::from_secs(cfg.interval_secs), Duration::from_secs(cfg.jitter_secs), &host),
            host,
            cfg: cfg.clone(),
            last_pass: Mutex::new(PassInfo::default()),
            verified_at: Mutex::new(None),
            verify_cursor: Mutex::new(None),
            gate: super::gate::Gate::default(),
            passes: std::sync::atomic::AtomicU64::new(0),
            recheck: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The OpenBao connector; the OpenBao push path runs only with that remote.
    /// The OpenBao connector; only the OpenBao paths (push, verify, restore) call this.
    pub(crate) fn vault(&self) -> &OpenBao {
        self.remote.openbao().expect("the OpenBao path runs only with remote = \"openbao\"")
    }

    pub fn scope(&self) -> SyncScope {
        SyncScope(Some(self.cfg.namespaces.clone()))
    }

    /// `<host>-<namespace>.<name>`; a name with characters the vault refuses in paths (`@`)
    /// uses the key id instead.
    pub fn vault_name(&self, namespace: &str, name: &str, key_id: &str) -> String {
        format!("{}-{namespace}.{}", self.host, path_name(name, key_id))
    }

    pub fn kv_path(&self, namespace: &str, name: &str, key_id: &str) -> String {
        format!("{}/{}/certs/{namespace}/{}", self.cfg.kv_prefix, self.host, path_name(name, key_id))
    }

    /// This host's offset into each interval (`schedule`).
    pub fn slot(&self) -> Duration {
        self.schedule.slot()
    }

    /// Asks for a pass now (permanent failures retried too); with `wait`, returns when it ran.
    pub async fn trigger(&self, wait: Option<Duration>) -> bool {
        self.schedule.trigger(wait).await
    }

    /// The loop; runs for the daemon's life. Each pass runs in its own task: a pass that
    /// panics is logged, shown in `last_pass.stopped`, and retried with backoff; the loop lives.
    pub async fn run(self: Arc<Self>, app: Arc<App>) {
        let mut panics: i64 = 0;
        loop {
            let pass = self.schedule.begin();
            let task = {
                let (syncer, app, forced) = (self.clone(), app.clone(), pass.forced);
                tokio::spawn(async move { syncer.pass(&app, forced).await })
            };
            let next_retry = match task.await {
                Ok(next) => {
                    panics = 0;
                    next
                }
                Err(e) => {
                    let why =
                        if e.is_panic() { "the sync pass panicked (a bug); retrying with backoff" } else { "the sync pass was cancelled" };
                    tracing::error!(error = %e, "{why}");
                    let mut last = self.last_pass.lock().unwrap_or_else(|p| p.into_inner());
                    last.finished_at = Some(now());
                    last.stopped = Some(why.into());
                    let base = Duration::from_secs(self.cfg.retry_base_secs);
                    panics += 1;
                    Some(plan::backoff(panics - 1, base, Duration::from_secs(self.cfg.interval_secs), None))
                }
            };
            // A key whose KV record could not be written is re-checked by the next pass: make
            // that pass come after `retry_base_secs`, not a whole interval later.
            // Likewise a lost-data check that was cut short (it resumes at its cursor).
            let unfinished = self.recheck.load(std::sync::atomic::Ordering::Relaxed)
                || self.verify_cursor.lock().unwrap_or_else(|p| p.into_inner()).is_some();
            let next_retry = if unfinished {
                let soon = Duration::from_secs(self.cfg.retry_base_secs.max(1));
                Some(next_retry.map_or(soon, |r| r.min(soon)))
            } else {
                next_retry
            };
            self.schedule.finish(pass);
            tokio::select! {
                _ = self.schedule.wait(next_retry) => {}
                _ = app.background.stopping() => return,
            }
        }
    }

    /// The longest vault-wide wait between probes: `retry_base_secs` · 16, at most the interval.
    fn gate_max(&self) -> Duration {
        Duration::from_secs(self.cfg.retry_base_secs.max(1).saturating_mul(16).min(self.cfg.interval_secs.max(1)))
    }

    /// One pass; returns when the earliest failed or waiting row (or the vault's probe) wants
    /// another try. After a vault-wide failure it probes the vault first and touches no key
    /// while that fails. Then it pushes the outbox, then runs the lost-data check (resuming
    /// where an earlier one stopped), then pushes what the check put back.
    pub async fn pass(&self, app: &App, force: bool) -> Option<Duration> {
        if let Remote::Tlspc(t) = &self.remote {
            let (info, next_retry) = t.pass(self, app, force).await;
            if info.stopped.is_some() {
                app.telemetry.sync_error("stopped");
            }
            *self.last_pass.lock().expect("poisoned") = info;
            return next_retry;
        }
        self.passes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut info = PassInfo::default();
        if self.gate.is_down() {
            if let Err(why) = self.vault().probe().await {
                let wait = self.gate.close(&why, None, self.gate_max());
                app.telemetry.sync_error("stopped");
                info.stopped = Some(why);
                info.finished_at = Some(now());
                *self.last_pass.lock().expect("poisoned") = info;
                return Some(wait);
            }
        }
        if let Err(e) = app.store.sync_enqueue_missing() {
            tracing::error!(error = %e, "sync: cannot enqueue keys");
        }
        let started = now();
        let mut next_retry: Option<Duration> = None;
        let mut stopped = self.push_rows(app, force, &mut info, &mut next_retry).await.err();
        if stopped.is_none() {
            match self.verify(app, force, started).await {
                Ok(0) => {}
                Ok(_) => stopped = self.push_rows(app, force, &mut info, &mut next_retry).await.err(),
                Err(e) => stopped = Some(e),
            }
        }
        if let Some(e) = stopped {
            let (message, after) = match e {
                RemoteError::Retry { message, after, .. } => (message, after),
                RemoteError::Permanent(m) => (m, None),
            };
            let wait = self.gate.close(&message, after, self.gate_max());
            app.telemetry.sync_error("stopped");
            info.stopped = Some(message);
            next_retry = Some(next_retry.map_or(wait, |n| n.min(wait)));
        }
        info.finished_at = Some(crate::store::records::now());
        if info.pushed + info.failed > 0 {
            tracing::info!(pushed = info.pushed, failed = info.failed, "sync pass");
        }
        *self.last_pass.lock().expect("poisoned") = info;
        next_retry
    }

    /// Pushes every due row, in order per key. `Err` when the vault became unusable for every
    /// key: no row is charged for that (the rows stay due, the vault backs off as a whole).
    async fn push_rows(&self, app: &App, force: bool, info: &mut PassInfo, next_retry: &mut Option<Duration>) -> Result<(), RemoteError> {
        let rows = match app.store.sync_rows() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "sync: cannot read the outbox");
                // At least a second: a zero retry_base_secs must not spin on a broken store.
                *next_retry = Some(Duration::from_secs(self.cfg.retry_base_secs.max(1)));
                return Ok(());
            }
        };
        let now = now();
        let keys = plan::by_key(rows);
        // The next key's token work runs while this key's requests are out (`prefetch`).
        let mut prepared: Option<Prepared> = None;
        for (i, key) in keys.iter().enumerate() {
            // Stopping: what is left stays due for the next start (each push is idempotent).
            if app.background.is_stopping() {
                return Ok(());
            }
            let next = keys
                .get(i + 1)
                .and_then(|k| k.rows.first().filter(|r| r.op == OP_KEY && plan::due(r, now, force) && !k.deleted_after(r.seq)));
            let mine = prepared.take().filter(|p| p.key_id == key.key_id);
            let (pushed, ahead) = tokio::join!(self.push_key_rows(app, key, mine, now, force, info, next_retry), async {
                match (next, &self.remote) {
                    (Some(r), Remote::OpenBao(vault)) => prefetch::prepare(app, vault, r).await,
                    _ => None,
                }
            });
            prepared = ahead;
            pushed?;
        }
        Ok(())
    }

    /// One key's due rows, in order; a row that fails holds back the rows after it. `Err` only
    /// when the vault is unusable for every key (the pass stops).
    #[allow(clippy::too_many_arguments)]
    async fn push_key_rows(
        &self,
        app: &App,
        key: &KeyRows,
        mut prepared: Option<Prepared>,
        now: crate::clock::Timestamp,
        force: bool,
        info: &mut PassInfo,
        next_retry: &mut Option<Duration>,
    ) -> Result<(), RemoteError> {
        let base = Duration::from_secs(self.cfg.retry_base_secs.max(1));
        let max = Duration::from_secs(self.cfg.interval_secs);
        for row in &key.rows {
            if !plan::due(row, now, force) {
                // Not yet: the loop must wake when its backoff ends, even if nothing fails now.
                if let Some(d) = plan::waits(row) {
                    *next_retry = Some(next_retry.map_or(d, |n| n.min(d)));
                }
                break; // rows of one key go in order
            }
            let result = self.push(app, key, row, &mut prepared).await;
            let finished = result.is_ok();
            let recorded = match result {
                Ok(state) => {
                    self.gate.open();
                    info.pushed += 1;
                    if !app.pause_before_commit.is_zero() {
                        tracing::warn!(key = %row.key_id, op = %row.op, "test hook: pausing before recording the vault's confirmation");
                        tokio::time::sleep(app.pause_before_commit).await;
                    }
                    app.store.sync_done(row.seq, state.as_ref())
                }
                // The vault is unusable for every key: not this row's failure.
                Err(e @ RemoteError::Retry { stop_pass: true, .. }) => return Err(e),
                Err(RemoteError::Permanent(m)) => {
                    info.failed += 1;
                    app.telemetry.sync_error("refused");
                    tracing::warn!(key = %row.key_id, op = %row.op, error = %m, "sync: the vault refused; not retried until `sync now`");
                    app.store.sync_failed(row.seq, &m, true, None).map(|_| ())
                }
                Err(RemoteError::Retry { message, after, .. }) => {
                    info.failed += 1;
                    app.telemetry.sync_error("retry");
                    let d = plan::backoff(row.attempts, base, max, after);
                    *next_retry = Some(next_retry.map_or(d, |n| n.min(d)));
                    app.store.sync_failed(row.seq, &message, false, Some(plan::at(d))).map(|_| ())
                }
            };
            if let Err(e) = recorded {
                tracing::error!(error = %e, "sync: cannot record a result");
            }
            if !finished {
                break; // later rows of this key wait for this one
            }
        }
        Ok(())
    }

    /// Checks that the vault still holds the synced keys (`sync now`, else at most every
    /// `verify_interval_secs`, and always when an earlier check was cut short); lost ones go
    /// back in the outbox. `Err` when the vault became unusable: the check resumes next pass
    /// after the last key it got through.
    async fn verify(&self, app: &App, force: bool, pass_started: crate::clock::Timestamp) -> Result<usize, RemoteError> {
        let every = Duration::from_secs(self.cfg.verify_interval_secs);
        let resuming = self.verify_cursor.lock().expect("poisoned").is_some();
        let recheck = self.recheck.swap(false, std::sync::atomic::Ordering::Relaxed);
        let due = resuming || recheck || force || self.verified_at.lock().expect("poisoned").is_none_or(|t| t.elapsed() >= every);
        if !due {
            return Ok(0);
        }
        match super::verify::run(self, app, &self.verify_cursor, pass_started).await {
            Ok(n) => {
                *self.verified_at.lock().expect("poisoned") = Some(std::time::Instant::now());
                if n > 0 {
                    tracing::warn!(keys = n, "sync: the vault lost keys it had confirmed (restarted dev vault, restored backup?)");
                }
                Ok(n)
            }
            Err(e @ RemoteError::Retry { stop_pass: true, .. }) => Err(e),
            Err(e) => {
                tracing::warn!(error = %e.message(), "sync: cannot check the vault's copy now; next pass");
                Ok(0)
            }
        }
    }

    /// Pushes one row. `Ok(Some(state))` records what the vault now holds for the key.
    async fn push(
        &self,
        app: &App,
        key: &KeyRows,
        row: &OutboxRow,
        prepared: &mut Option<Prepared>,
    ) -> Result<Option<SyncState>, RemoteError> {
        match row.op.as_str() {
            OP_KEY if key.deleted_after(row.seq) => Ok(None),
            OP_KEY => {
                let (state, vault_exportable) = self.push_key(app, row, prepared.take()).await?;
                Ok(self.record_key(app, state, vault_exportable).await)
            }
            OP_CERTIFICATE if key.deleted_after(row.seq) => Ok(None),
            OP_CERTIFICATE => self.push_certificate(app, row).await.map(|_| None),
            OP_DELETE => self.record_deleted(app, row, self.push_delete(app, row).await?).await,
            other => Err(RemoteError::Permanent(format!("unknown outbox operation '{other}'"))),
        }
    }

    fn state(&self, row: &OutboxRow, status: SyncStatus, version: Option<i64>, detail: Option<String>) -> SyncState {
        SyncState {
            key_id: row.key_id.clone(),
            namespace: row.namespace.clone(),
            name: row.name.clone(),
            vault_name: Some(self.vault_name(&row.namespace, &row.name, &row.key_id)),
            status,
            pushed_version: version,
            pushed_at: version.map(|_| now()),
            detail,
        }
    }

    /// Pushes a key; with its state, whether transit lets it out again (from the read that
    /// confirmed it, so the key record needs no second read).
    async fn push_key(
        &self,
        app: &App,
        row: &OutboxRow,
        mut prepared: Option<Prepared>,
    ) -> Result<(Option<SyncState>, Option<bool>), RemoteError> {
        let Some(rec) = app.store.key(&row.key_id).map_err(store_err)? else { return Ok((None, None)) };
        if let Some(why) = not_syncable(app, &rec) {
            return Ok((Some(self.state(row, SyncStatus::NotSyncable, None, Some(why))), None));
        }
        let alg = rec.algorithm.pair().ok_or_else(|| RemoteError::Permanent(format!("unknown algorithm '{}'", rec.algorithm)))?;
        let name = self.vault_name(&rec.namespace, &rec.name, &rec.id);
        let token_err = |e: crate::core::CoreError| match e {
            crate::core::CoreError::Token(e @ TokenError::Transient { .. }) => {
                RemoteError::Retry { message: e.to_string(), after: None, stop_pass: false }
            }
            e => RemoteError::Permanent(e.to_string()),
        };
        let token = crate::core::keys::token_of(app, &rec.token).map_err(|e| RemoteError::Permanent(e.to_string()))?;
        // Read from the token only when the fingerprint finds no version (`holding_version`).
        let mut public: Option<PublicKey> = None;

        let mut refreshed = false;
        for _ in 0..4 {
            let existing = self.vault().read_key(&name).await?;
            if let Some(k) = &existing {
                if let Some(v) = holding_version(app, &rec, k, &mut public).await.map_err(token_err)? {
                    return Ok((Some(self.state(row, SyncStatus::Synced, Some(v), None)), Some(k.exportable)));
                }
            }
            let new_version = match &existing {
                None => false,
                Some(k) if !k.imported => {
                    return Err(RemoteError::Permanent(format!("transit key '{name}' exists but was not imported (made or rotated inside the vault); keyport will not add versions to it")))
                }
                Some(k) if k.key_type != vault_type(alg) => {
                    return Err(RemoteError::Permanent(format!("transit key '{name}' is {} but this key is {}", k.key_type, vault_type(alg))))
                }
                Some(_) => true,
            };
            let wk = self.vault().wrapping_key(false).await?;
            let cka = rec.cka_id.clone();
            let wrap_key = wk.spki_der.clone();
            let made = match prepared.as_mut().and_then(|p| p.take_wrap(&wk.fingerprint)) {
                Some(w) => Ok(w),
                None => token.run(move |c| byok::wrap_for_vault(c, &cka, &wrap_key)).await,
            };
            let wrapped = match made {
                Ok(w) => w,
                Err(TokenError::Refused { detail, .. }) => {
                    let why = format!("the token cannot wrap this key: {detail}");
                    return Ok((Some(self.state(row, SyncStatus::NotSyncable, None, Some(why))), None));
                }
                Err(e) => return Err(token_err(e.into())),
            };
            match self.vault().import(&name, new_version, vault_type(alg), &wrapped.ciphertext, wrapped.hash.vault_name()).await? {
                ImportResult::Done => {
                    // Verify: the vault must now show our key (`holding_version`). The read
                    // carries the import's X-Vault-Index, so a standby answers fresh; should it
                    // still lag, read again shortly, and at worst retry later (the next try reads
                    // before it writes): "not visible yet" is never a permanent failure.
                    for wait_ms in [0u64, 100, 300, 900] {
                        // Not even a zero sleep on the first read: tokio rounds it up to its
                        // next millisecond tick, ≈ 1 ms per key of a pass (BENCHMARKS.md).
                        if wait_ms > 0 {
                            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                        }
                        let after = self.vault().read_key(&name).await?;
                        let found = match &after {
                            Some(k) => holding_version(app, &rec, k, &mut public).await.map_err(token_err)?.map(|v| (k, v)),
                            None => None,
                        };
                        if let Some((k, v)) = found {
                            tracing::info!(key = %rec.id, vault_key = %name, version = v, software_wrap = wrapped.in_software, "sync: key imported into the vault");
                            return Ok((Some(self.state(row, SyncStatus::Synced, Some(v), None)), Some(k.exportable)));
                        }
                    }
                    return Err(RemoteError::Retry {
                        message: format!(
                            "transit key '{name}' does not show this key's public key yet after the import; checking again later"
                        ),
                        after: None,
                        stop_pass: false,
                    });
                }
                ImportResult::StaleWrappingKey if !refreshed => {
                    refreshed = true;
                    self.vault().wrapping_key(true).await?;
                }
                ImportResult::StaleWrappingKey => {
                    return Err(RemoteError::Retry {
                        message: "the vault could not unwrap the key even with a fresh wrapping key".into(),
                        after: None,
                        stop_pass: false,
                    })
                }
                // Someone (or a crashed earlier try) created it meanwhile: read and compare again.
                ImportResult::Exists => {}
                ImportResult::Refused(e) => return Err(e),
            }
        }
        Err(RemoteError::Retry {
            message: format!("transit key '{name}' kept changing while keyport imported it"),
            after: None,
            stop_pass: false,
        })
    }

    async fn push_certificate(&self, app: &App, row: &OutboxRow) -> Result<(), RemoteError> {
        let Some(sha) = row.cert_sha256.as_deref() else { return Ok(()) };
        let Some(cert) = app.store.certificate_by_sha256(sha).map_err(store_err)? else { return Ok(()) };
        let Some(rec) = app.store.key(&row.key_id).map_err(store_err)? else { return Ok(()) };
        let pem = der_to_pem("CERTIFICATE", &cert.der);
        let name = self.vault_name(&rec.namespace, &rec.name, &rec.id);

        // KV v2: read, skip when the same certificate is there, else write with check-and-set.
        let path = self.kv_path(&rec.namespace, &rec.name, &rec.id);
        let mut meta = BTreeMap::new();
        for (k, v) in [
            ("host", self.host.clone()),
            ("namespace", rec.namespace.clone()),
            ("name", rec.name.clone()),
            ("key_id", rec.id.clone()),
            ("key_fingerprint", rec.fingerprint.clone()),
            ("fingerprint_sha256", cert.sha256.clone()),
            ("not_after", cert.not_after.clone()),
            ("subject", cert.subject.chars().take(500).collect()),
            ("transit_key", name.clone()),
        ] {
            meta.insert(k.to_string(), v);
        }
        let data = serde_json::json!({"cert_pem": pem, "chain_pem": "", "fingerprint_sha256": cert.sha256, "not_after": cert.not_after});
        let same =
            |e: &super::openbao::KvEntry| e.data.as_ref().and_then(|d| d["fingerprint_sha256"].as_str()) == Some(cert.sha256.as_str());
        self.vault().kv_sync(&path, &data, &meta, same).await?;

        // Transit: attach the certificate to the key version that holds this key.
        let state = app.store.sync_state(&rec.id).map_err(store_err)?;
        if let Some(v) = state.filter(|s| s.status == SyncStatus::Synced).and_then(|s| s.pushed_version) {
            let current = self.vault().read_key(&name).await?;
            let attached =
                current.as_ref().and_then(|k| k.versions.get(&v)).is_some_and(|kv| same_certificate(&kv.certificate_chain, &cert.der));
            if !attached {
                self.vault().set_certificate(&name, v, &pem).await?;
            }
        }
        Ok(())
    }

    /// A deleted key: keyport holds no delete right in transit (by design: the vault is the
    /// backup), so the vault key stays; its KV certificate entry is marked deleted.
    async fn push_delete(&self, _app: &App, row: &OutboxRow) -> Result<Option<SyncState>, RemoteError> {
        self.vault().kv_mark_deleted(&self.kv_path(&row.namespace, &row.name, &row.key_id), &[]).await?;
        Ok(Some(self.state(
            row,
            SyncStatus::Deleted,
            None,
            Some("deleted in keyport; the vault's copy is kept (keyport has no delete right there)".into()),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::{not_a_key_pair, KeyKind};

    #[test]
    fn secret_keys_and_lone_public_keys_are_not_key_pairs() {
        for alg in ["aes-128", "aes-256", "des", "des3", "rsa-2048-public", "rsa-public"] {
            assert!(not_a_key_pair(&KeyKind::parse(alg)).is_some(), "{alg}");
        }
        for alg in ["rsa-2048", "rsa-4096", "ec-p256", "ed25519"] {
            assert_eq!(not_a_key_pair(&KeyKind::parse(alg)), None, "{alg}");
        }
    }
}
