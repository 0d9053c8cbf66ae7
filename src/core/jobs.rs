//! Import jobs: a batch accepted now and worked on in the background. Items are decoded a few
//! ahead and written through as many token sessions as the token has (`core::batch`): an item
//! that shares its key or a name with an earlier one waits for it, so duplicate detection by
//! fingerprint and the names chosen are exactly those of working one item after another.
//!
//! The job's input is stored still encrypted (password-encrypted keys, DEK-sealed passwords and
//! keys), so a job accepted before a crash finishes after it: at start the runner resumes every
//! unfinished job and skips items whose result is already recorded. An item's result commits in
//! the same transaction as its key, so an item is never imported twice.
//!
//! A job stopped by a fault of the token or the store (never a per-item failure) is retried by
//! the runner itself with backoff ([`RETRY_FIRST`] doubling to [`RETRY_MAX`]), without a new
//! submission or a restart. Each item's key id is derived from (job, item) ([`item_cka_id`]), so
//! the intent an interrupted attempt left behind is recognised as the item's own and undone
//! before the retry, instead of reserving the item's name against itself.

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

use futures_util::StreamExt;

use super::batch::Lanes;
use super::import::{import_key, ImportOutcome, ImportRequest, JobSlot};
use super::{dek, App, CoreError};
use crate::material::key::MaterialError;
use crate::material::{pkcs, x509};
use crate::store::records::now;
use crate::store::{JobItem, JobRecord};
use crate::token::objects;

/// First wait before a job stopped by a fault is tried again; doubles per failed attempt.
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// The next wait after `last` (none yet: [`RETRY_FIRST`]).
pub fn next_backoff(last: Option<Duration>) -> Duration {
    last.map_or(RETRY_FIRST, |d| (d * 2).min(RETRY_MAX))
}

/// The CKA_ID (and key id) of a job item's key: the same on every attempt, so an attempt's
/// leftover intent is known as the item's own.
pub(crate) fn item_cka_id(job_id: &str, seq: i64) -> [u8; 16] {
    let h = Sha256::new().chain_update(b"keyport job item\0").chain_update(job_id.as_bytes()).chain_update(seq.to_be_bytes()).finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&h[..16]);
    id
}

pub const KIND_SEALED_IMPORT: &str = "sealed-import";

/// One item as a TLS Protect Cloud–style client sends it; everything secret is encrypted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealedItem {
    pub certificate: Option<String>,
    pub password_encrypted_private_key: Option<String>,
    pub dek_encrypted_private_key: Option<String>,
    pub dek_encrypted_password: Option<String>,
    pub pkcs12_keystore: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealedImportInput {
    pub namespace: String,
    pub exportable: Option<bool>,
    pub items: Vec<SealedItem>,
}

/// Wakes the background runner when a job is accepted.
#[derive(Default)]
pub struct JobRunner {
    wake: Notify,
}

impl JobRunner {
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Accepts a job: stores it (with its encrypted input) and wakes the runner.
pub fn submit(app: &App, principal: &str, input: &SealedImportInput) -> Result<JobRecord, CoreError> {
    let job = JobRecord {
        id: super::ids::uuid_v4(),
        kind: KIND_SEALED_IMPORT.into(),
        namespace: Some(input.namespace.clone()),
        principal: principal.into(),
        status: crate::store::JobStatus::Waiting,
        created_at: now(),
        finished_at: None,
        total: input.items.len() as i64,
        failed: 0,
    };
    let bytes = serde_json::to_vec(input).map_err(|e| CoreError::Internal(e.to_string()))?;
    app.store.create_job(&job, &bytes)?;
    app.jobs.wake();
    Ok(job)
}

/// The background loop: works through unfinished jobs (oldest first), then sleeps until woken.
/// A job stopped by a token or store fault stops the round (later jobs would meet the same
/// fault) and the round is tried again after a backoff, or sooner when a job is submitted.
pub async fn run(app: Arc<App>) {
    let mut backoff = None;
    loop {
        let stopped = match app.store.unfinished_jobs(KIND_SEALED_IMPORT) {
            Ok(jobs) => {
                let mut stopped = None;
                for (job, input) in jobs {
                    if app.background.is_stopping() {
                        return;
                    }
                    match run_job(&app, &job, &input).await {
                        Ok(()) => {}
                        Err(e) if e.is_unavailable() => {
                            stopped = Some((job.id, e));
                            break;
                        }
                        // Not a fault that passes (its input cannot be read): end it, say why.
                        Err(e) => {
                            tracing::error!(job = %job.id, error = %e, "import job cannot run; it ends FAILED");
                            if let Err(e) = app.store.finish_job(&job.id, crate::store::JobStatus::Failed) {
                                stopped = Some((job.id, e.into()));
                                break;
                            }
                        }
                    }
                }
                stopped
            }
            Err(e) => Some((String::new(), e.into())),
        };
        match stopped {
            Some((job, e)) => {
                let wait = next_backoff(backoff);
                backoff = Some(wait);
                tracing::warn!(job = %job, error = %e, retry_in_ms = wait.as_millis() as u64, "import job stopped by a fault; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = app.jobs.wake.notified() => {}
                    _ = app.background.stopping() => return,
                }
            }
            None => {
                backoff = None;
                tokio::select! {
                    _ = app.jobs.wake.notified() => {}
                    _ = app.background.stopping() => return,
                }
            }
        }
    }
}

/// Undoes what an interrupted attempt of this item left: its intent and any objects under its
/// key id. A fault here stops the job (retried later) rather than failing the item.
async fn clear_leftover(app: &App, job_id: &str, seq: i64) -> Result<(), CoreError> {
    let cka_id = item_cka_id(job_id, seq);
    let key_id = hex::encode(cka_id);
    let Some(intent) = app.store.intents()?.into_iter().find(|i| i.key_id == key_id) else { return Ok(()) };
    if let Some(token) = app.tokens.get(Some(&intent.token)) {
        let n = token.run(move |c| objects::destroy(c, &cka_id)).await?;
        tracing::info!(job = %job_id, item = seq, key = %key_id, objects_removed = n, "undid an interrupted attempt of this job item");
    }
    app.store.drop_intent(&key_id)?;
    Ok(())
}

async fn run_job(app: &Arc<App>, job: &JobRecord, input: &[u8]) -> Result<(), CoreError> {
    let input: SealedImportInput = serde_json::from_slice(input).map_err(|e| CoreError::Internal(format!("job input unreadable: {e}")))?;
    let done: std::collections::HashSet<i64> =
        app.store.job(&job.id)?.map(|(_, items)| items.iter().map(|i| i.seq).collect()).unwrap_or_default();
    app.store.set_job_status(&job.id, crate::store::JobStatus::Processing)?;
    let Some(who) = app.authz.read().expect("poisoned").by_name(&job.principal) else {
        for seq in 0..input.items.len() as i64 {
            if !done.contains(&seq) {
                fail(app, &job.id, seq, format!("principal '{}' no longer exists in the configuration", job.principal))?;
            }
        }
        app.store.finish_job(&job.id, crate::store::JobStatus::Failed)?;
        return Ok(());
    };
    let pending: Vec<(i64, SealedItem)> =
        input.items.iter().cloned().enumerate().map(|(seq, item)| (seq as i64, item)).filter(|(seq, _)| !done.contains(seq)).collect();
    // Items in flight: twice the token's sessions (`batch::lanes_for`); decoding (unseal, KDF)
    // runs as many items ahead in its own task, in item order, so no writer waits for a KDF.
    let writers = super::batch::lanes_for(app.tokens.get(None).map_or(1, |t| t.sessions()));
    let ahead = writers;
    let (tx, mut rx) = tokio::sync::mpsc::channel(ahead);
    let decoder = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut decoded = futures_util::stream::iter(pending)
                .map(|(seq, item)| {
                    let app = app.clone();
                    async move { (seq, decode(&app, &item).await) }
                })
                .buffered(ahead);
            while let Some(d) = decoded.next().await {
                if tx.send(d).await.is_err() {
                    break;
                }
            }
        })
    };
    // Ended if the job stops early.
    let decoder = tokio_util::task::AbortOnDropHandle::new(decoder);
    let mut lanes = Lanes::new(writers);
    // Why the job stops before its end: a fault (retried later), or `None` for a stop.
    let mut stopped: Option<Option<CoreError>> = None;
    while let Some((seq, decoded)) = rx.recv().await {
        // Stopping: the job stays PROCESSING and resumes at this item at the next start.
        if app.background.is_stopping() {
            stopped = Some(None);
            break;
        }
        let req = match decoded {
            Ok((key, certificates)) => ImportRequest {
                key,
                certificates,
                name: None,
                namespace: input.namespace.clone(),
                exportable: input.exportable,
                token: None,
            },
            Err(e) => match settle(app, &job.id, seq, Ok(Err(e))) {
                Ok(()) => continue,
                Err(e) => {
                    stopped = Some(Some(e));
                    break;
                }
            },
        };
        let keys = super::import::batch_keys(&req);
        let mut fault = None;
        for (seq, r) in lanes.admit(&keys).await {
            if let Err(e) = settle(app, &job.id, seq as i64, r) {
                fault.get_or_insert(e);
            }
        }
        if let Some(e) = fault {
            stopped = Some(Some(e));
            break;
        }
        let (app, who, job_id) = (app.clone(), who.clone(), job.id.clone());
        lanes.start(seq as usize, keys, async move {
            clear_leftover(&app, &job_id, seq).await?;
            Ok(import_key(&app, &who, req, Some(JobSlot { job_id, seq })).await)
        });
    }
    // Items already writing finish and are recorded whatever stops the job.
    for (seq, r) in lanes.drain().await {
        if let Err(e) = settle(app, &job.id, seq as i64, r) {
            if stopped.is_none() || matches!(stopped, Some(None)) {
                stopped = Some(Some(e));
            }
        }
    }
    match stopped {
        Some(None) => return Ok(()),
        Some(Some(e)) => return Err(e),
        None => {}
    }
    // Every item was handed over only if the decoder ran to its end.
    decoder.await.map_err(|e| CoreError::Internal(format!("job item decoder failed: {e}")))?;
    let (_, items) = app.store.job(&job.id)?.expect("job exists");
    // COMPLETED even when every item failed: the vendor's clients (VenafiPS) throw away the
    // per-item results of a FAILED job, and those reasons are what the caller needs.
    app.store.finish_job(&job.id, crate::store::JobStatus::Completed)?;
    tracing::info!(job = %job.id, items = items.len(), failed = items.iter().filter(|i| i.status == crate::store::ItemStatus::Failed).count(), "import job finished");
    Ok(())
}

/// An item's outcome (the outer error: undoing an earlier attempt failed), recorded the way the
/// one-at-a-time runner recorded it. `Err` stops the job: the token or store failed, not the
/// item, and the runner retries the job.
fn settle(app: &App, job_id: &str, seq: i64, r: Result<Result<ImportOutcome, CoreError>, CoreError>) -> Result<(), CoreError> {
    match r? {
        // `import_key` recorded the item with its key.
        Ok(ImportOutcome::Imported(_)) | Ok(ImportOutcome::AlreadyPresent(_)) => Ok(()),
        Err(e) if e.is_unavailable() => Err(e),
        Err(e) => fail(app, job_id, seq, e.to_string()),
    }
}

fn fail(app: &App, job_id: &str, seq: i64, reason: String) -> Result<(), CoreError> {
    app.store.record_job_item(&JobItem {
        job_id: job_id.into(),
        seq,
        status: crate::store::ItemStatus::Failed,
        key_id: None,
        fingerprint: None,
        reason: Some(reason),
    })?;
    Ok(())
}

fn b64(field: &str, v: &str) -> Result<Vec<u8>, CoreError> {
    base64::engine::general_purpose::STANDARD
        .decode(v.trim())
        .map_err(|_| CoreError::invalid("invalid_base64", format!("{field} is not valid standard base64")))
}

/// Unseals and decrypts one item: the key and its certificates (leaf first).
async fn decode(app: &App, item: &SealedItem) -> Result<(crate::material::key::PrivateKey, Vec<x509::CertInfo>), CoreError> {
    let password = match &item.dek_encrypted_password {
        Some(p) => Some(dek::unseal(app, &b64("dekEncryptedPassword", p)?).await?),
        None => None,
    };
    let (key, mut chain) = if let Some(pem) = &item.password_encrypted_private_key {
        let pw = password
            .clone()
            .ok_or_else(|| CoreError::invalid("password_required", "passwordEncryptedPrivateKey needs dekEncryptedPassword"))?;
        let data = pem.clone().into_bytes();
        (app.kdf.run_background(move || crate::material::read_private_key(&data, Some(&pw))).await?, Vec::new())
    } else if let Some(sealed) = &item.dek_encrypted_private_key {
        let plain = dek::unseal(app, &b64("dekEncryptedPrivateKey", sealed)?).await?;
        let pw = password.clone();
        (app.kdf.run_background(move || crate::material::read_private_key(&plain, pw.as_ref().map(|p| p.as_slice()))).await?, Vec::new())
    } else if let Some(p12) = &item.pkcs12_keystore {
        let der = b64("pkcs12Keystore", p12)?;
        let pw = password.clone().ok_or_else(|| CoreError::invalid("password_required", "pkcs12Keystore needs dekEncryptedPassword"))?;
        let (key, certs) = app.kdf.run_background(move || pkcs::read_pkcs12(&der, &pw)).await?;
        let infos = certs
            .iter()
            .map(|d| x509::parse_certificate(d))
            .collect::<Result<Vec<_>, MaterialError>>()
            .map_err(super::import::material_error)?;
        (key, infos)
    } else {
        return Err(CoreError::invalid(
            "missing_key",
            "the item has no passwordEncryptedPrivateKey, dekEncryptedPrivateKey or pkcs12Keystore",
        ));
    };
    if let Some(pem) = &item.certificate {
        let given = x509::parse_certificates(pem.as_bytes()).map_err(super::import::material_error)?;
        // The certificate field's chain wins over a keystore's when both are given.
        if !given.is_empty() {
            chain = given;
        }
    }
    // Put the certificate that matches the key first.
    if let Some(pos) = chain.iter().position(|c| x509::check_matches(c, &key).is_ok()) {
        let leaf = chain.remove(pos);
        chain.insert(0, leaf);
    } else if !chain.is_empty() {
        return Err(super::import::material_error(MaterialError::CertificateMismatch));
    }
    Ok((key, chain))
}
