//! The TLS Protect Cloud–style connector (`[sync] remote = "tlspc"`): keys go to the remote
//! with their certificates, as `POST /outagedetection/v1/certificates/imports` batches of at
//! most 100 items, then the import job is polled until COMPLETED or FAILED and each item's
//! result is recorded (docs/vendor-apis.md §000 has the wire details).
//!
//! - The remote's edge instance and encryption key (an X25519 DEK) come from
//!   `GET /v1/edgeinstances` and `GET /v1/edgeencryptionkeys/{id}` (or the configured ids),
//!   pinned until the remote refuses them.
//! - Each item is the form the vendor documents and its clients send: the key as PBES2
//!   (PBKDF2-SHA256, AES-256-CBC) encrypted PKCS#8 PEM under a fresh random password, and the
//!   password sealed to the DEK (libsodium sealed box) as `dekEncryptedPassword`. The key
//!   leaves the token as PKCS#8 DER into zeroized memory only for that encryption (`token::wrap`,
//!   as `core::export` does), is checked against the inventory's fingerprint, and is audited.
//! - Exactly once: the remote's job id is stored with the outbox rows (`store::remote_jobs`) in
//!   the transaction right after the remote accepted the job; a row with a job is only polled,
//!   never posted again, also after a SIGKILL. The window before that commit is covered by the
//!   remote's own duplicate detection (a second import of the same key is SKIPPED).
//! - A key without a certificate, or created non-exportable, is `not_syncable`: the remote
//!   holds keys only with their certificates, in the clear of its DEK.
//! - Errors as the OpenBao connector classes them: unreachable, 5xx, 429, a rejected API key →
//!   retry with backoff and stop the pass; a 4xx about the request → permanent per key (a 400
//!   naming `importInformation[i]` fails only that item; the rest are posted again at once).

use crate::clock::Timestamp;
use crate::store::SyncStatus;
use base64::Engine;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

use super::http::{Http, Response};
use super::openbao::der_to_pem;
use super::outbox::{self as plan};
use super::remote::RemoteError;
use super::worker::{PassInfo, Syncer};
use crate::config::{PinSource, TlspcRemoteConfig};
use crate::core::App;
use crate::store::outbox::{OutboxRow, SyncState, OP_CERTIFICATE, OP_DELETE, OP_KEY};
use crate::store::records::now;
use crate::store::remote_jobs::PostedRow;
use crate::store::{AuditEntry, CertificateRecord};
use crate::token::{wrap, TokenError};

const API_KEY_HEADER: &str = "tppl-api-key";
const IMPORTS: &str = "/outagedetection/v1/certificates/imports";

/// The edge instance and encryption key items are sealed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub edge_instance_id: String,
    pub encryption_key_id: String,
    pub public_key: [u8; 32],
}

pub struct Tlspc {
    http: Http,
    pub address: String,
    cfg: TlspcRemoteConfig,
    api_key: Mutex<Option<Zeroizing<String>>>,
    target: tokio::sync::Mutex<Option<Target>>,
    pause_after_post: Duration,
}

/// A job's state as `GET …/imports/{id}` tells it.
#[derive(Debug)]
enum JobState {
    Running(String),
    Finished {
        status: String,
        results: Vec<Value>,
    },
    /// The remote does not know the job (any more): its rows are posted again.
    Gone,
}

/// Why a POST did not give a job.
enum PostError {
    TooLarge(String),
    /// A 400 naming `importInformation[i]`.
    BadItem(usize, String),
    /// The edge instance or encryption key was refused: re-fetched at the next pass.
    StaleTarget(String),
    Remote(RemoteError),
}

/// One import item: a key with one certificate, and the outbox rows its result settles.
struct Unit {
    rows: Vec<OutboxRow>,
    cert_sha1: Option<String>,
}

/// Rows of one item of a job posted earlier: the certificate sent, and the rows.
type PolledUnit = (Option<String>, Vec<OutboxRow>);

/// What building an item gave: the item, or an outcome decided here without the remote.
enum Built {
    Item(Unit, Value),
    Local(Vec<OutboxRow>, Result<Option<SyncState>, RemoteError>),
}

/// The vendor's `{"errors": [{"code", "message"}]}`: the first code and the messages.
pub fn vendor_error(body: &Value) -> (Option<i64>, String) {
    let errs = body["errors"].as_array().cloned().unwrap_or_default();
    let code = errs.first().and_then(|e| e["code"].as_i64());
    let msgs: Vec<String> = errs.iter().filter_map(|e| e["message"].as_str()).map(String::from).collect();
    (code, if msgs.is_empty() { body.to_string().chars().take(500).collect() } else { msgs.join("; ") })
}

/// A path segment: unreserved characters kept, the rest percent-encoded (encryption key ids
/// are base64 and may hold `/`, `+`, `=`).
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// `importInformation[7]` in a refusal: the item it names.
fn item_index(message: &str) -> Option<usize> {
    let rest = message.split("importInformation[").nth(1)?;
    rest.split(']').next()?.parse().ok()
}

fn same_fingerprint(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    !a.is_empty() && norm(a) == norm(b)
}

/// The result for item `item` (certificate SHA-1 `sha1`): matched by fingerprint, else by
/// position when that result carries no other fingerprint.
fn find_result<'a>(results: &'a [Value], item: usize, sha1: Option<&str>) -> Option<&'a Value> {
    if let Some(s) = sha1 {
        if let Some(r) = results.iter().find(|r| same_fingerprint(r["fingerprint"].as_str().unwrap_or(""), s)) {
            return Some(r);
        }
    }
    results.get(item).filter(|r| {
        let fp = r["fingerprint"].as_str().unwrap_or("");
        fp.is_empty() || sha1.is_none_or(|s| same_fingerprint(fp, s))
    })
}

/// Keys per import call: the configured size, never more than the vendor's 100.
pub fn batch_limit(configured: usize) -> usize {
    configured.clamp(1, crate::config::TLSPC_MAX_BATCH)
}

fn down(message: impl Into<String>) -> RemoteError {
    RemoteError::Retry { message: message.into(), after: None, stop_pass: true }
}

fn state(row: &OutboxRow, status: SyncStatus, remote_name: Option<String>, detail: Option<String>) -> SyncState {
    SyncState {
        key_id: row.key_id.clone(),
        namespace: row.namespace.clone(),
        name: row.name.clone(),
        vault_name: remote_name,
        status,
        pushed_version: None,
        pushed_at: (status == SyncStatus::Synced).then(now),
        detail,
    }
}

/// One pass's bookkeeping.
struct Run<'a> {
    app: &'a App,
    info: PassInfo,
    next_retry: Option<Duration>,
    stopped: Option<RemoteError>,
    base: Duration,
    max: Duration,
    /// Keys left for later (a lost job, a refused target): come back soon.
    more: bool,
    /// Jobs of ours the remote is still working on: new batches go out while fewer than
    /// `MAX_RUNNING_JOBS` are, so one stuck job does not hold every other key back.
    running_jobs: usize,
}

/// How many of our import jobs may run at the remote at once.
const MAX_RUNNING_JOBS: usize = 4;

impl Run<'_> {
    fn soon(&mut self, d: Duration) {
        self.next_retry = Some(self.next_retry.map_or(d, |n| n.min(d)));
    }

    /// Records one key's outcome on its rows.
    fn record(&mut self, rows: &[OutboxRow], result: Result<Option<SyncState>, RemoteError>) {
        let store = &self.app.store;
        let mut recorded = Ok(());
        match result {
            Ok(st) => {
                if st.as_ref().is_some_and(|s| s.status == SyncStatus::Synced) {
                    self.info.pushed += 1;
                }
                for r in rows {
                    recorded = recorded.and(store.sync_done(r.seq, st.as_ref()));
                }
            }
            Err(RemoteError::Permanent(m)) => {
                self.info.failed += 1;
                tracing::warn!(key = %rows[0].key_id, error = %m, "sync: the remote refused; not retried until `sync now`");
                for r in rows {
                    recorded = recorded.and(store.sync_failed(r.seq, &m, true, None));
                }
                recorded = recorded.and(store.sync_unpost(&rows.iter().map(|r| r.seq).collect::<Vec<_>>()));
            }
            Err(e @ RemoteError::Retry { .. }) => {
                let RemoteError::Retry { message, after, stop_pass } = &e else { unreachable!() };
                self.info.failed += 1;
                let d = plan::backoff(rows[0].attempts, self.base, self.max, *after);
                self.soon(d);
                if *stop_pass && self.stopped.is_none() {
                    tracing::warn!(error = %message, "sync: remote unavailable; pass stopped, retrying with backoff");
                    self.info.stopped = Some(message.clone());
                    self.stopped = Some(e.clone());
                }
                for r in rows {
                    recorded = recorded.and(store.sync_failed(r.seq, message, false, Some(plan::at(d))));
                }
            }
        }
        if let Err(e) = recorded {
            tracing::error!(error = %e, "sync: cannot record a result");
        }
    }
}

impl Tlspc {
    pub fn new(cfg: &TlspcRemoteConfig) -> Result<Tlspc, String> {
        Ok(Tlspc {
            http: Http::new(&cfg.address, cfg.ca_file.as_deref()).map_err(|e| format!("sync.tlspc: {e}"))?,
            address: cfg.address.trim_end_matches('/').to_string(),
            cfg: cfg.clone(),
            api_key: Mutex::new(None),
            target: tokio::sync::Mutex::new(None),
            pause_after_post: crate::test_hooks::pause_after_remote_post(),
        })
    }

    fn api_key(&self) -> Result<Zeroizing<String>, RemoteError> {
        let mut k = self.api_key.lock().expect("poisoned");
        if k.is_none() {
            let source: &PinSource = &self.cfg.api_key;
            let read = crate::token::pin::read(source).map_err(|e| down(format!("remote API key: {}", e.replace("PIN", "API key"))))?;
            *k = Some(read);
        }
        Ok(k.clone().expect("set above"))
    }

    /// One authenticated call; transport, availability and auth failures are classified here,
    /// every other answer goes back to the caller.
    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Response, RemoteError> {
        for attempt in 0..2 {
            let key = self.api_key()?;
            let r = self
                .http
                .request_with(method, path, &[(API_KEY_HEADER, key.as_str()), ("accept", "application/json")], body)
                .await
                .map_err(|u| down(u.0.replace("the vault", "the remote").replace("vault at", "remote at")))?;
            match r.status {
                401 => {
                    // A rotated key file: re-read once.
                    *self.api_key.lock().expect("poisoned") = None;
                    if attempt == 0 {
                        continue;
                    }
                    return Err(down(format!(
                        "the remote rejects the API key (401: {}); put a valid key in sync.tlspc.api_key's source",
                        vendor_error(&r.body).1
                    )));
                }
                429 => {
                    return Err(RemoteError::Retry {
                        message: format!("the remote rate-limits this client (429: {})", vendor_error(&r.body).1),
                        after: r.retry_after,
                        stop_pass: true,
                    })
                }
                s @ 500..=599 => return Err(down(format!("the remote failed ({s}: {})", vendor_error(&r.body).1))),
                _ => return Ok(r),
            }
        }
        unreachable!("the loop returns")
    }

    /// The edge instance and DEK: cached (pinned); `refresh` asks the remote again.
    pub async fn target(&self, refresh: bool) -> Result<Target, RemoteError> {
        let mut cached = self.target.lock().await;
        if let (Some(t), false) = (cached.as_ref(), refresh) {
            return Ok(t.clone());
        }
        let refuse = |m: String| down(format!("{m} (sync.tlspc at {})", self.address));
        let r = self.call("GET", "/v1/edgeinstances", None).await?;
        if r.status != 200 {
            return Err(refuse(format!("GET /v1/edgeinstances: {} {}", r.status, vendor_error(&r.body).1)));
        }
        let instances = r.body["edgeInstances"].as_array().cloned().unwrap_or_default();
        let inst = match &self.cfg.edge_instance_id {
            Some(id) => instances.iter().find(|i| i["id"].as_str() == Some(id.as_str())).ok_or_else(|| {
                refuse(format!(
                    "edge instance '{id}' (sync.tlspc.edge_instance_id) is not among the remote's {} instance(s)",
                    instances.len()
                ))
            })?,
            None => instances.first().ok_or_else(|| refuse("the remote lists no edge instance".into()))?,
        };
        let edge = inst["id"].as_str().unwrap_or_default().to_string();
        let kid = match &self.cfg.encryption_key_id {
            Some(k) => k.clone(),
            None => inst["encryptionKeyId"]
                .as_str()
                .filter(|k| !k.is_empty())
                .ok_or_else(|| refuse(format!("edge instance '{edge}' has no encryptionKeyId")))?
                .to_string(),
        };
        let path = format!("/v1/edgeencryptionkeys/{}", segment(&kid));
        let r = self.call("GET", &path, None).await?;
        if r.status != 200 {
            return Err(refuse(format!("GET {path}: {} {}", r.status, vendor_error(&r.body).1)));
        }
        let key = r.body["key"]
            .as_str()
            .and_then(|k| base64::engine::general_purpose::STANDARD.decode(k.trim()).ok())
            .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
            .ok_or_else(|| refuse(format!("encryption key '{kid}' is not a base64 32-byte X25519 public key")))?;
        let t = Target { edge_instance_id: edge, encryption_key_id: kid, public_key: key };
        if let Some(old) = cached.as_ref().filter(|o| **o != t) {
            tracing::warn!(old = %old.encryption_key_id, new = %t.encryption_key_id, "the remote's edge encryption key changed; sealing to the new one");
        }
        *cached = Some(t.clone());
        Ok(t)
    }

    /// For status: the encryption key items are sealed to, once known.
    pub async fn pinned_encryption_key(&self) -> Option<String> {
        self.target.lock().await.as_ref().map(|t| format!("{} (edge instance {})", t.encryption_key_id, t.edge_instance_id))
    }

    async fn post(&self, target: &Target, items: &[Value]) -> Result<String, PostError> {
        let body =
            json!({"edgeInstanceId": target.edge_instance_id, "encryptionKeyId": target.encryption_key_id, "importInformation": items});
        let r = self.call("POST", IMPORTS, Some(&body)).await.map_err(PostError::Remote)?;
        let (code, msg) = vendor_error(&r.body);
        match r.status {
            200..=202 => r.body["id"].as_str().filter(|s| !s.is_empty()).map(String::from).ok_or_else(|| {
                PostError::Remote(RemoteError::Retry {
                    message: format!("the remote accepted the import but named no job ({})", r.body),
                    after: None,
                    stop_pass: false,
                })
            }),
            413 => Err(PostError::TooLarge(msg)),
            400 | 422 => {
                if let Some(i) = item_index(&msg).filter(|i| *i < items.len()) {
                    Err(PostError::BadItem(i, format!("the remote refused the item: {msg}")))
                } else if matches!(code, Some(10003) | Some(10004)) || msg.contains("edgeInstanceId") || msg.contains("encryptionKeyId") {
                    Err(PostError::StaleTarget(format!("the remote refused the edge instance or encryption key: {msg}")))
                } else {
                    Err(PostError::Remote(RemoteError::Permanent(format!("the remote refused the import ({}): {msg}", r.status))))
                }
            }
            s => Err(PostError::Remote(RemoteError::Permanent(format!("POST {IMPORTS}: {s} {msg}")))),
        }
    }

    async fn job(&self, id: &str) -> Result<JobState, RemoteError> {
        let path = format!("{IMPORTS}/{}", segment(id));
        let r = self.call("GET", &path, None).await?;
        match r.status {
            200 => {
                let status = r.body["status"].as_str().unwrap_or_default().to_string();
                if status == "COMPLETED" || status == "FAILED" {
                    Ok(JobState::Finished { status, results: r.body["results"].as_array().cloned().unwrap_or_default() })
                } else {
                    Ok(JobState::Running(status))
                }
            }
            404 => Ok(JobState::Gone),
            s => Err(RemoteError::Permanent(format!("GET {path}: {s} {}", vendor_error(&r.body).1))),
        }
    }

    /// Polls job `id` with backoff until it finishes or `poll_secs` pass.
    async fn wait(&self, id: &str) -> Result<JobState, RemoteError> {
        let deadline = Instant::now() + Duration::from_secs(self.cfg.poll_secs);
        let mut delay = Duration::from_millis(100);
        loop {
            let s = self.job(id).await?;
            if !matches!(s, JobState::Running(_)) || Instant::now() + delay > deadline {
                return Ok(s);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 3 / 2).min(Duration::from_secs(2));
        }
    }

    /// One pass: results of jobs posted earlier, then new batches. Returns the pass's summary
    /// and when to come back.
    pub async fn pass(&self, syncer: &Syncer, app: &App, force: bool) -> (PassInfo, Option<Duration>) {
        let cfg = &syncer.cfg;
        let mut run = Run {
            app,
            info: PassInfo::default(),
            next_retry: None,
            stopped: None,
            base: Duration::from_secs(cfg.retry_base_secs.max(1)),
            max: Duration::from_secs(cfg.interval_secs),
            more: false,
            running_jobs: 0,
        };
        if let Err(e) = app.store.sync_enqueue_missing() {
            tracing::error!(error = %e, "sync: cannot enqueue keys");
        }
        let (rows, posted) = match (app.store.sync_rows(), app.store.sync_posted_rows()) {
            (Ok(r), Ok(p)) => (r, p),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "sync: cannot read the outbox");
                return (run.info, Some(run.base));
            }
        };
        let posted: HashMap<i64, PostedRow> = posted.into_iter().map(|p| (p.seq, p)).collect();
        let now_ts = now();

        // Per key: rows already in a remote job are polled (later rows wait for the result);
        // else deletions are settled here and the first push becomes a candidate.
        let mut polls: BTreeMap<String, BTreeMap<i64, PolledUnit>> = BTreeMap::new();
        // When each job was posted (its oldest row), to stop waiting for a job that never ends.
        let mut posted_at: HashMap<String, Timestamp> = HashMap::new();
        let mut candidates: VecDeque<Vec<OutboxRow>> = VecDeque::new();
        for key in plan::by_key(rows) {
            if key.rows.iter().any(|r| posted.contains_key(&r.seq)) {
                for r in &key.rows {
                    if let Some(p) = posted.get(&r.seq) {
                        let at = posted_at.entry(p.job_id.clone()).or_insert(p.posted_at);
                        *at = (*at).min(p.posted_at);
                        let unit = polls.entry(p.job_id.clone()).or_default().entry(p.item).or_insert((p.cert_sha1.clone(), Vec::new()));
                        unit.1.push(r.clone());
                    }
                }
                continue;
            }
            for (i, row) in key.rows.iter().enumerate() {
                if !plan::due(row, now_ts, force) {
                    // Not yet: the loop must wake when its backoff ends, even if nothing fails now.
                    if let Some(d) = plan::waits(row) {
                        run.next_retry = Some(run.next_retry.map_or(d, |n| n.min(d)));
                    }
                    break;
                }
                match row.op.as_str() {
                    OP_KEY | OP_CERTIFICATE if key.deleted_after(row.seq) => run.record(std::slice::from_ref(row), Ok(None)),
                    OP_DELETE => {
                        let why = "deleted in keyport; the remote's copy is kept (keyport deletes nothing there)";
                        run.record(std::slice::from_ref(row), Ok(Some(state(row, SyncStatus::Deleted, None, Some(why.into())))));
                    }
                    OP_KEY | OP_CERTIFICATE => {
                        let mut unit = vec![row.clone()];
                        unit.extend(
                            key.rows[i + 1..]
                                .iter()
                                .take_while(|r| r.op == OP_CERTIFICATE && plan::due(r, now_ts, force) && !key.deleted_after(r.seq))
                                .cloned(),
                        );
                        candidates.push_back(unit);
                        break;
                    }
                    other => {
                        run.record(std::slice::from_ref(row), Err(RemoteError::Permanent(format!("unknown outbox operation '{other}'"))));
                        break;
                    }
                }
            }
        }

        // Jobs posted earlier (an earlier pass, or before a restart): poll, record.
        for (job, units) in polls {
            if let Some(e) = run.stopped.clone() {
                for (_, (_, rows)) in units {
                    run.record(&rows, Err(e.clone()));
                }
                continue;
            }
            let units: Vec<(usize, Unit)> =
                units.into_iter().map(|(item, (cert_sha1, rows))| (item as usize, Unit { rows, cert_sha1 })).collect();
            tracing::info!(job = %job, keys = units.len(), "sync: polling the remote's import job posted earlier");
            let since = posted_at.get(&job).copied();
            self.settle(&mut run, &job, units, since).await;
        }

        // New batches, while the remote keeps up.
        let mut target: Option<Target> = None;
        while !candidates.is_empty() {
            if let Some(e) = run.stopped.clone() {
                while let Some(rows) = candidates.pop_front() {
                    run.record(&rows[..1], Err(e.clone()));
                }
                break;
            }
            if run.more || run.running_jobs >= MAX_RUNNING_JOBS {
                break; // the remote is busy with our jobs: the rest waits for the next pass
            }
            let t = match &target {
                Some(t) => t.clone(),
                None => match self.target(false).await {
                    Ok(t) => target.insert(t).clone(),
                    Err(e) => {
                        run.record(&candidates.pop_front().expect("not empty")[..1], Err(e));
                        continue;
                    }
                },
            };
            let mut batch: Vec<(Unit, Value)> = Vec::new();
            while batch.len() < batch_limit(self.cfg.batch_size) {
                let Some(rows) = candidates.pop_front() else { break };
                match self.build(app, &t, rows).await {
                    Built::Item(u, v) => batch.push((u, v)),
                    Built::Local(rows, result) => run.record(&rows, result),
                }
            }
            if !batch.is_empty() {
                self.post_batch(&mut run, &t, batch).await;
            }
            if self.target.lock().await.is_none() {
                run.more = true; // the remote refused the target: fetched again at the next pass
                break;
            }
        }
        if run.more || run.running_jobs > 0 {
            run.soon(run.base);
        }
        run.info.finished_at = Some(now());
        if run.info.pushed + run.info.failed > 0 {
            tracing::info!(pushed = run.info.pushed, failed = run.info.failed, "sync pass");
        }
        (run.info, run.next_retry)
    }

    /// Posts one batch (split on 413, minus items the remote names as bad), then waits for
    /// and records its results.
    async fn post_batch(&self, run: &mut Run<'_>, target: &Target, batch: Vec<(Unit, Value)>) {
        let mut queue: VecDeque<Vec<(Unit, Value)>> = VecDeque::from([batch]);
        while let Some(mut chunk) = queue.pop_front() {
            if let Some(e) = run.stopped.clone() {
                for (u, _) in chunk.into_iter().chain(queue.drain(..).flatten()) {
                    run.record(&u.rows, Err(e.clone()));
                }
                return;
            }
            let items: Vec<Value> = chunk.iter().map(|(_, v)| v.clone()).collect();
            let started = Instant::now();
            match self.post(target, &items).await {
                Ok(job) => {
                    let rows: Vec<(i64, i64, Option<String>)> = chunk
                        .iter()
                        .enumerate()
                        .flat_map(|(i, (u, _))| u.rows.iter().map(move |r| (r.seq, i as i64, u.cert_sha1.clone())))
                        .collect();
                    if let Err(e) = run.app.store.sync_posted(&job, &rows) {
                        // Not fatal: the rows would be posted again, and the remote skips keys
                        // it already holds.
                        tracing::error!(job = %job, error = %e, "sync: cannot record the remote's job id");
                    }
                    tracing::info!(job = %job, keys = chunk.len(), "sync: import job posted to the remote");
                    if !self.pause_after_post.is_zero() {
                        tracing::warn!(ms = self.pause_after_post.as_millis() as u64, "test hook: pausing after the remote post");
                        tokio::time::sleep(self.pause_after_post).await;
                    }
                    let units = chunk.into_iter().enumerate().map(|(i, (u, _))| (i, u)).collect();
                    self.settle(run, &job, units, None).await;
                    let secs = started.elapsed().as_secs_f64();
                    tracing::info!(job = %job, keys = items.len(), secs, keys_per_sec = items.len() as f64 / secs.max(1e-6), "sync: import batch done");
                }
                Err(PostError::TooLarge(m)) if chunk.len() > 1 => {
                    tracing::info!(keys = chunk.len(), error = %m, "sync: the remote refused the batch as too large; splitting it");
                    let second = chunk.split_off(chunk.len() / 2);
                    queue.push_front(second);
                    queue.push_front(chunk);
                }
                Err(PostError::TooLarge(m)) => {
                    let (u, _) = chunk.pop().expect("one");
                    run.record(&u.rows, Err(RemoteError::Permanent(format!("the remote refused the key as too large: {m}"))));
                }
                Err(PostError::BadItem(i, m)) => {
                    let (u, _) = chunk.remove(i);
                    run.record(&u.rows, Err(RemoteError::Permanent(m)));
                    if !chunk.is_empty() {
                        queue.push_front(chunk);
                    }
                }
                Err(PostError::StaleTarget(m)) => {
                    *self.target.lock().await = None;
                    let e = RemoteError::Retry { message: m, after: None, stop_pass: false };
                    for (u, _) in chunk.into_iter().chain(queue.drain(..).flatten()) {
                        run.record(&u.rows, Err(e.clone()));
                    }
                }
                Err(PostError::Remote(e)) => {
                    for (u, _) in chunk {
                        run.record(&u.rows, Err(e.clone()));
                    }
                }
            }
        }
    }

    /// Waits for job `job` and records each unit's result; a job still running stays posted,
    /// unless it was posted more than `job_timeout_secs` ago (`posted_at`): then its keys fail with a
    /// reason and are posted again on `sync now` (the remote skips any it imported meanwhile),
    /// so one job the remote never finishes cannot hold back every later batch.
    async fn settle(&self, run: &mut Run<'_>, job: &str, units: Vec<(usize, Unit)>, posted_at: Option<Timestamp>) {
        let aged = posted_at.is_some_and(|t| t.age().as_secs() >= self.cfg.job_timeout_secs);
        match self.wait(job).await {
            Ok(JobState::Finished { status, results }) => {
                let (mut imported, mut skipped, mut failed) = (0, 0, 0);
                for (item, u) in units {
                    let first = &u.rows[0];
                    let r = find_result(&results, item, u.cert_sha1.as_deref());
                    let item_status = r.and_then(|r| r["status"].as_str()).unwrap_or("");
                    let reason = r.and_then(|r| r["reason"].as_str()).unwrap_or("").to_string();
                    let fp = r.and_then(|r| r["fingerprint"].as_str()).filter(|f| !f.is_empty()).map(String::from);
                    let remote_id = r
                        .and_then(|r| r["certificateId"].as_str().or(r["id"].as_str()))
                        .map(String::from)
                        .or(fp)
                        .or_else(|| u.cert_sha1.as_ref().map(|s| s.to_uppercase()));
                    let outcome = if item_status.starts_with("IMPORTED") {
                        imported += 1;
                        Ok(Some(state(first, SyncStatus::Synced, remote_id, Some(format!("imported by the remote's job {job}")))))
                    } else if item_status == "SKIPPED" || item_status.contains("DUPLICATE") {
                        skipped += 1;
                        let why = if reason.is_empty() { String::new() } else { format!(": {reason}") };
                        Ok(Some(state(first, SyncStatus::Synced, remote_id, Some(format!("already at the remote (job {job}){why}")))))
                    } else if item_status == "FAILED" {
                        failed += 1;
                        Err(RemoteError::Permanent(format!("the remote refused the key (job {job}): {reason}")))
                    } else {
                        failed += 1;
                        Err(RemoteError::Permanent(format!(
                            "the remote's job {job} ended {status} without a result for this key{}",
                            if item_status.is_empty() { String::new() } else { format!(" (item status {item_status})") }
                        )))
                    };
                    run.record(&u.rows, outcome);
                }
                tracing::info!(job = %job, status = %status, imported, skipped, failed, "sync: the remote's import job finished");
            }
            // Still running, or its status cannot be read, past the timeout: stop waiting.
            Ok(JobState::Running(_)) | Err(_) if aged => {
                tracing::warn!(job = %job, "sync: the remote's import job did not finish in job_timeout_secs; its keys wait for `sync now`");
                let seqs: Vec<i64> = units.iter().flat_map(|(_, u)| u.rows.iter().map(|r| r.seq)).collect();
                if let Err(e) = run.app.store.sync_unpost(&seqs) {
                    tracing::error!(error = %e, "sync: cannot record a result");
                }
                let why = format!(
                    "the remote's import job {job} has not finished after {} s (sync.tlspc.job_timeout_secs); keyport stopped waiting: `sync now` posts the key again (the remote skips it if the job imported it meanwhile)",
                    self.cfg.job_timeout_secs
                );
                for (_, u) in units {
                    run.record(&u.rows[..1], Err(RemoteError::Permanent(why.clone())));
                }
            }
            Ok(JobState::Running(s)) => {
                tracing::info!(job = %job, status = %s, "sync: the remote's import job is still running; polled again at the next pass");
                run.running_jobs += 1;
            }
            Ok(JobState::Gone) => {
                tracing::warn!(job = %job, "sync: the remote does not know the import job; its keys are posted again");
                let seqs: Vec<i64> = units.iter().flat_map(|(_, u)| u.rows.iter().map(|r| r.seq)).collect();
                if let Err(e) = run.app.store.sync_unpost(&seqs) {
                    tracing::error!(error = %e, "sync: cannot record a result");
                }
                run.more = true;
            }
            Err(e) => {
                for (_, u) in units {
                    run.record(&u.rows, Err(e.clone()));
                }
            }
        }
    }

    /// One key's item: its certificate, and the key exported from the token, PBES2-encrypted
    /// under a fresh password that is sealed to the remote's DEK.
    async fn build(&self, app: &App, target: &Target, rows: Vec<OutboxRow>) -> Built {
        let retry = |m: String| RemoteError::Retry { message: m, after: None, stop_pass: false };
        let first = rows[0].clone();
        let rec = match app.store.key(&first.key_id) {
            Ok(Some(r)) => r,
            Ok(None) => return Built::Local(rows, Ok(None)), // deleted since; its delete row follows
            Err(e) => return Built::Local(rows[..1].to_vec(), Err(retry(e.to_string()))),
        };
        if crate::core::token_caps::cannot_wrap(&app.tokens, &rec.token) {
            let why = crate::core::token_caps::not_exportable_on_token(&rec.name, &rec.token);
            return Built::Local(rows, Ok(Some(state(&first, SyncStatus::NotSyncable, None, Some(why)))));
        }
        if !rec.exportable {
            let why = "created non-exportable: it never leaves the token, so the remote cannot hold it";
            return Built::Local(rows, Ok(Some(state(&first, SyncStatus::NotSyncable, None, Some(why.into())))));
        }
        // The certificate: the first row's, else the first pending certificate row's, else the
        // key's oldest.
        let lookup =
            |sha: &str| app.store.certificate_by_sha256(sha).ok().flatten().filter(|c| c.key_id.as_deref() == Some(rec.id.as_str()));
        let cert: Option<CertificateRecord> = if first.op == OP_CERTIFICATE {
            first.cert_sha256.as_deref().and_then(lookup)
        } else {
            rows.iter()
                .filter_map(|r| r.cert_sha256.as_deref())
                .find_map(lookup)
                .or_else(|| app.store.certificates_of(&rec.id).ok().and_then(|c| c.into_iter().next()))
        };
        let Some(cert) = cert else {
            if first.op == OP_CERTIFICATE {
                return Built::Local(rows[..1].to_vec(), Ok(None)); // that certificate is gone
            }
            let why =
                "no certificate: a TLS Protect Cloud remote holds keys only with their certificates; it syncs once one is imported for it";
            return Built::Local(rows, Ok(Some(state(&first, SyncStatus::NotSyncable, None, Some(why.into())))));
        };
        let settles: Vec<OutboxRow> = std::iter::once(first.clone())
            .chain(rows[1..].iter().take_while(|r| r.cert_sha256.as_deref() == Some(cert.sha256.as_str())).cloned())
            .collect();

        let Some(token) = app.tokens.get(Some(&rec.token)).cloned() else {
            return Built::Local(settles, Err(RemoteError::Permanent(format!("token '{}' is no longer configured", rec.token))));
        };
        let cka = rec.cka_id.clone();
        let der = match token.run(move |c| wrap::private_key_pkcs8(c, &cka)).await {
            Ok(d) => d,
            Err(TokenError::Refused { detail, .. }) => {
                let why = format!("the token cannot hand this key out: {detail}");
                return Built::Local(settles, Ok(Some(state(&first, SyncStatus::NotSyncable, None, Some(why)))));
            }
            Err(e @ TokenError::Transient { .. }) => return Built::Local(settles, Err(retry(e.to_string()))),
            Err(e) => return Built::Local(settles, Err(RemoteError::Permanent(e.to_string()))),
        };
        let (fingerprint, public) = (rec.fingerprint.clone(), target.public_key);
        let sealed = tokio::task::spawn_blocking(move || -> Result<(Zeroizing<String>, Vec<u8>), String> {
            let key = crate::material::pkcs::private_key_from_pkcs8_der(&der).map_err(|e| e.to_string())?;
            if key.public_key().fingerprint().ok().as_deref() != Some(fingerprint.as_str()) {
                return Err("the token's key does not match the inventory's fingerprint; not sent".into());
            }
            let mut raw = Zeroizing::new([0u8; 24]);
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw[..]);
            let password = Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw[..]));
            let pem = crate::material::pkcs::encrypt_pkcs8_pem(&der, password.as_bytes()).map_err(|e| e.to_string())?;
            let sealed = crypto_box::PublicKey::from(public)
                .seal(&mut rand::rngs::OsRng, password.as_bytes())
                .map_err(|_| "cannot seal the password to the remote's encryption key".to_string())?;
            Ok((pem, sealed))
        })
        .await;
        let (pem, sealed) = match sealed {
            Ok(Ok(v)) => v,
            Ok(Err(m)) => return Built::Local(settles, Err(RemoteError::Permanent(m))),
            Err(e) => return Built::Local(settles, Err(retry(format!("encryption worker failed: {e}")))),
        };
        let _ = app.store.audit(&AuditEntry {
            at: now(),
            principal: "sync".into(),
            action: "key.sync_export".into(),
            namespace: Some(rec.namespace.clone()),
            key_id: Some(rec.id.clone()),
            outcome: "ok".into(),
            detail: Some(format!("encrypted for {} (encryption key {})", self.address, target.encryption_key_id)),
        });
        let item = json!({
            "certificate": der_to_pem("CERTIFICATE", &cert.der),
            "passwordEncryptedPrivateKey": pem.as_str(),
            "dekEncryptedPassword": base64::engine::general_purpose::STANDARD.encode(sealed),
        });
        Built::Item(Unit { rows: settles, cert_sha1: Some(cert.sha1.clone()) }, item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_at_most_100_keys() {
        assert_eq!((batch_limit(100), batch_limit(500), batch_limit(0), batch_limit(7)), (100, 100, 1, 7));
    }

    #[test]
    fn results_match_by_fingerprint_then_position() {
        let results = vec![
            json!({"fingerprint": "AA11", "status": "IMPORTED"}),
            json!({"fingerprint": "", "status": "FAILED", "reason": "bad"}),
            json!({"fingerprint": "CC33", "status": "SKIPPED"}),
        ];
        assert_eq!(find_result(&results, 2, Some("aa11")).unwrap()["status"], "IMPORTED", "by fingerprint, any position");
        assert_eq!(find_result(&results, 1, Some("bb22")).unwrap()["status"], "FAILED", "by position without a fingerprint");
        assert!(find_result(&results, 2, Some("dd44")).is_none(), "a position naming another certificate is not ours");
        assert!(find_result(&results, 7, None).is_none());
    }

    #[test]
    fn refusals_name_items_and_segments_are_encoded() {
        assert_eq!(item_index("importInformation[12].certificate must be PEM"), Some(12));
        assert_eq!(item_index("edgeInstanceId is required"), None);
        assert_eq!(segment("mwU4o+Te/s=="), "mwU4o%2BTe%2Fs%3D%3D");
        let (code, msg) = vendor_error(&json!({"errors": [{"code": 10004, "message": "no such key", "args": []}]}));
        assert_eq!((code, msg.as_str()), (Some(10004), "no such key"));
    }

    #[test]
    fn a_sealed_password_opens_with_the_recipient_key() {
        let sk = crypto_box::SecretKey::generate(&mut rand::rngs::OsRng);
        let sealed = sk.public_key().seal(&mut rand::rngs::OsRng, b"pw").unwrap();
        assert_eq!(sealed.len(), 48 + 2, "libsodium's crypto_box_seal layout");
        assert_eq!(sk.unseal(&sealed).unwrap(), b"pw");
    }
}
