//! Certificates as first-class objects (certificate import, seed 001).
//!
//! Each certificate becomes a token certificate object and an inventory row. When a key with
//! the same public key is in the inventory (same namespace), the certificate takes that key's
//! CKA_ID, so PKCS#11 tools show them as a pair, and the row links them. Otherwise (or when the
//! key already carries another certificate) it gets its own CKA_ID, derived from its SHA-256,
//! and stays a certificate without a key; chain certificates land this way.
//!
//! Work runs as a job (the vendor answers PENDING, then COMPLETED): the decoded certificates are
//! stored with the job, so a job accepted before a crash finishes after it. Crash safety: the
//! token object is written first, then the row commits with the job item. A crash in between
//! leaves an object the store does not know, which is harmless; the retry finds it (same CKA_ID,
//! same DER) and commits without creating a second one. Duplicates (same SHA-256) are never
//! stored twice. Jobs run one at a time, so two uploads of the same certificate cannot race.

use base64::Engine;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use super::authz::Principal;
use super::{App, CoreError};
use crate::config::Permission;
use crate::material::x509::{self, CertInfo};
use crate::store::records::now;
use crate::store::{AuditEntry, JobItem, JobRecord, StoredCertificate};
use crate::token::{objects, TokenError};

pub const KIND_CERT_IMPORT: &str = "certificate-import";

/// One job item: a certificate (base64 DER) or an entry that could not be read, with why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertItem {
    pub source: String,
    pub der: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertImportInput {
    pub namespace: String,
    pub items: Vec<CertItem>,
}

impl CertItem {
    pub fn certificate(source: &str, c: &CertInfo) -> CertItem {
        CertItem { source: source.into(), der: Some(base64::engine::general_purpose::STANDARD.encode(&c.der)), error: None }
    }
    pub fn failed(source: &str, error: &str) -> CertItem {
        CertItem { source: source.into(), der: None, error: Some(error.into()) }
    }
}

/// Serialises certificate work across jobs (see the module comment).
static RUNNING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Accepts a job: stores it with its items and the face's detail (JSON) as PENDING, and starts
/// it in the background.
pub fn submit(app: &Arc<App>, who: &Principal, input: &CertImportInput, detail: &str) -> Result<JobRecord, CoreError> {
    who.require(&input.namespace, Permission::Import)?;
    let job = JobRecord {
        id: super::ids::uuid_v4(),
        kind: KIND_CERT_IMPORT.into(),
        namespace: Some(input.namespace.clone()),
        principal: who.name.clone(),
        status: crate::store::JobStatus::Pending,
        created_at: now(),
        finished_at: None,
        total: input.items.len() as i64,
        failed: 0,
    };
    let bytes = serde_json::to_vec(input).map_err(|e| CoreError::Internal(e.to_string()))?;
    app.store.create_detailed_job(&job, detail, &bytes)?;
    let (app, id) = (app.clone(), job.id.clone());
    let bg = app.clone();
    bg.background.spawn(async move { run_until_done(&app, Some(&id)).await });
    Ok(job)
}

/// At start: finishes every certificate import job a stop or crash interrupted.
pub async fn resume(app: Arc<App>) {
    run_until_done(&app, None).await
}

/// Runs the pending jobs; a token or store fault is retried with the job runner's backoff
/// (no new submission or restart needed). Other errors end the attempt, logged.
async fn run_until_done(app: &App, only: Option<&str>) {
    let mut backoff = None;
    loop {
        match run_pending(app, only).await {
            Ok(()) => return,
            Err(e) if e.is_unavailable() => {
                let wait = super::jobs::next_backoff(backoff);
                backoff = Some(wait);
                tracing::warn!(job = ?only, error = %e, retry_in_ms = wait.as_millis() as u64, "certificate import job stopped by a fault; retrying");
                if !app.background.pause(wait).await {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(job = ?only, error = %e, "certificate import job stopped; it resumes at the next start");
                return;
            }
        }
    }
}

async fn run_pending(app: &App, only: Option<&str>) -> Result<(), CoreError> {
    let _one_at_a_time = RUNNING.lock().await;
    for (job, input) in app.store.unfinished_jobs(KIND_CERT_IMPORT)? {
        if only.is_some_and(|id| id != job.id) {
            continue;
        }
        run_job(app, &job, &input).await?;
    }
    Ok(())
}

async fn run_job(app: &App, job: &JobRecord, input: &[u8]) -> Result<(), CoreError> {
    let input: CertImportInput = serde_json::from_slice(input).map_err(|e| CoreError::Internal(format!("job input unreadable: {e}")))?;
    let done: std::collections::HashSet<i64> =
        app.store.job(&job.id)?.map(|(_, items)| items.iter().map(|i| i.seq).collect()).unwrap_or_default();
    let who = app.authz.read().expect("poisoned").by_name(&job.principal);
    for (seq, item) in input.items.iter().enumerate() {
        let seq = seq as i64;
        if done.contains(&seq) {
            continue;
        }
        // Stopping: the job resumes at this item at the next start.
        if app.background.is_stopping() {
            return Ok(());
        }
        let outcome = match (&who, &item.der, &item.error) {
            (None, _, _) => Err(CoreError::Forbidden(format!("principal '{}' no longer exists in the configuration", job.principal))),
            (_, _, Some(e)) => Err(CoreError::invalid("malformed", e.clone())),
            (Some(who), Some(der), None) => match decode(der) {
                Ok(info) => import_one(app, who, &input.namespace, info, &job.id, seq).await,
                Err(e) => Err(e),
            },
            (_, None, None) => Err(CoreError::invalid("malformed", "empty item")),
        };
        match outcome {
            Ok(()) => {}
            // The token or store failed, not the item: stop here; `run_until_done` retries.
            Err(e) if e.is_unavailable() => return Err(e),
            Err(e) => app.store.record_job_item(&JobItem {
                job_id: job.id.clone(),
                seq,
                status: crate::store::ItemStatus::Failed,
                key_id: None,
                fingerprint: None,
                reason: Some(format!("{}: {e}", item.source)),
            })?,
        }
    }
    app.store.finish_job(&job.id, crate::store::JobStatus::Completed)?;
    tracing::info!(job = %job.id, items = input.items.len(), "certificate import job finished");
    Ok(())
}

fn decode(b64: &str) -> Result<CertInfo, CoreError> {
    let der = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| CoreError::invalid("malformed", e.to_string()))?;
    x509::parse_certificate(&der).map_err(super::import::material_error)
}

/// The CKA_ID of a certificate kept without its key: the first 16 bytes of its SHA-256, so a
/// retry finds the object an interrupted attempt left.
fn own_cka_id(c: &CertInfo) -> Vec<u8> {
    hex::decode(&c.sha256[..32]).expect("sha256 is hex")
}

fn label_for(c: &CertInfo) -> String {
    let cn = c.subject.split(',').find_map(|p| p.trim().strip_prefix("CN=")).unwrap_or("");
    let cn: String = cn.chars().filter(|ch| !ch.is_control()).take(64).collect();
    if cn.is_empty() {
        format!("cert-{}", &c.sha256[..16])
    } else {
        cn
    }
}

/// Stores one certificate (see the module comment) and records the job item.
async fn import_one(app: &App, who: &Principal, namespace: &str, c: CertInfo, job_id: &str, seq: i64) -> Result<(), CoreError> {
    who.require(namespace, Permission::Import)?;
    let item = |status: crate::store::ItemStatus, key_id: Option<String>, reason: Option<String>| JobItem {
        job_id: job_id.into(),
        seq,
        status,
        key_id,
        fingerprint: Some(c.sha256.clone()),
        reason,
    };
    if let Some(existing) = app.store.stored_certificate(&c.sha256)? {
        let why = format!("already in the inventory (namespace '{}'); not stored twice", existing.record.namespace);
        app.store.record_job_item(&item(crate::store::ItemStatus::Duplicate, existing.record.key_id.clone(), Some(why)))?;
        return Ok(());
    }
    let fingerprint = c.public_key.fingerprint().map_err(|e| CoreError::invalid("unsupported", e.to_string()))?;
    let key = app.store.keys_by_fingerprint(&fingerprint)?.into_iter().find(|k| k.namespace == namespace);
    let token = match &key {
        Some(k) => app.tokens.get(Some(&k.token)),
        None => app.tokens.get(None),
    }
    .ok_or_else(|| CoreError::invalid("unknown_token", "the key's token is no longer configured"))?
    .clone();

    let key_cka = key.as_ref().map(|k| k.cka_id.clone());
    let own = own_cka_id(&c);
    let label = key.as_ref().map(|k| k.name.clone()).unwrap_or_else(|| label_for(&c));
    let (der, subject) = (c.der.clone(), c.subject_der.clone());
    let placed = token
        .run(move |t| {
            if let Some(kid) = &key_cka {
                match objects::certificate_der(t, kid)? {
                    None => {
                        objects::create_certificate(t, kid, &label, &der, &subject)?;
                        return Ok(kid.clone());
                    }
                    Some(d) if d == der => return Ok(kid.clone()),
                    // The key already carries another certificate: this one gets its own id.
                    Some(_) => {}
                }
            }
            match objects::certificate_der(t, &own)? {
                None => objects::create_certificate(t, &own, &label, &der, &subject)?,
                Some(d) if d == der => {}
                Some(_) => {
                    return Err(TokenError::Refused {
                        token: t.token.into(),
                        operation: "certificate import",
                        detail: format!("CKA_ID {} already holds another certificate", hex::encode(&own)),
                    })
                }
            }
            Ok(own.clone())
        })
        .await?;
    if !app.pause_before_commit.is_zero() {
        tracing::warn!(certificate = %c.sha256, "test hook: pausing before the store commit");
        tokio::time::sleep(app.pause_before_commit).await;
    }
    let linked = key.filter(|k| k.cka_id == placed);
    let rec = StoredCertificate {
        record: super::import::cert_record(&c, linked.as_ref().map(|k| k.id.as_str()), namespace),
        token: Some(token.name.clone()),
        cka_id: Some(placed.clone()),
        job_id: Some(job_id.into()),
    };
    let audit = AuditEntry {
        at: now(),
        principal: who.name.clone(),
        action: "certificate.import".into(),
        namespace: Some(namespace.into()),
        key_id: linked.as_ref().map(|k| k.id.clone()),
        outcome: "ok".into(),
        detail: Some(format!("{} sha256:{} cka_id:{}", c.subject, c.sha256, hex::encode(&placed))),
    };
    let reason = linked.as_ref().map(|k| format!("linked to key '{}'", k.name));
    let new = app.store.commit_certificate(&rec, &audit, &item(crate::store::ItemStatus::Imported, rec.record.key_id.clone(), reason))?;
    if !new {
        app.store.record_job_item(&item(
            crate::store::ItemStatus::Duplicate,
            None,
            Some("already in the inventory; not stored twice".into()),
        ))?;
    }
    tracing::info!(certificate = %c.sha256, subject = %c.subject, key = ?rec.record.key_id, "certificate imported");
    Ok(())
}

/// Certificates the principal may read, by namespace and expiry.
pub fn list(
    app: &App,
    who: &Principal,
    namespace: Option<&str>,
    expiring_before: Option<&str>,
) -> Result<Vec<crate::store::CertView>, CoreError> {
    if let Some(ns) = namespace {
        who.require(ns, Permission::Read)?;
    }
    let rows = app.store.list_certificates(namespace, expiring_before)?;
    Ok(rows.into_iter().filter(|c| who.allows(&c.namespace, Permission::Read)).collect())
}

/// Deletes a certificate: its token object (only the certificate; a key sharing its CKA_ID
/// stays) and its row, audited. Needs `manage` on its namespace. The vault's copy, if synced,
/// is kept (keyport has no delete right there).
pub async fn delete(app: &App, who: &Principal, sha256: &str) -> Result<crate::store::CertificateRecord, CoreError> {
    let not_found = || CoreError::NotFound(format!("no certificate with SHA-256 '{sha256}'"));
    let stored = app.store.stored_certificate(sha256)?.ok_or_else(not_found)?;
    // A caller who may not read the namespace learns nothing, not even that it exists.
    if !who.allows(&stored.record.namespace, Permission::Read) {
        return Err(not_found());
    }
    who.require(&stored.record.namespace, Permission::Manage)?;
    // Where its object lives: its own CKA_ID, or its key's (a key import's leaf).
    let place = match (&stored.token, &stored.cka_id, &stored.record.key_id) {
        (Some(t), Some(id), _) => Some((t.clone(), id.clone())),
        (_, _, Some(key)) => app.store.key(key)?.map(|k| (k.token, k.cka_id)),
        _ => None, // a chain certificate kept in the inventory only
    };
    if let Some((token, id)) = place {
        let token = app
            .tokens
            .get(Some(&token))
            .ok_or_else(|| CoreError::Conflict(format!("the certificate's token '{token}' is no longer configured")))?;
        token.run(move |c| objects::destroy_certificate(c, &id)).await?;
    }
    let entry = crate::store::AuditEntry {
        at: crate::store::records::now(),
        principal: who.name.clone(),
        action: "certificate.delete".into(),
        namespace: Some(stored.record.namespace.clone()),
        key_id: stored.record.key_id.clone(),
        outcome: "ok".into(),
        detail: Some(format!("sha256:{sha256} {}", stored.record.subject.chars().take(200).collect::<String>())),
    };
    app.store.remove_certificate_row(sha256, &entry)?;
    tracing::info!(certificate = %sha256, principal = %who.name, "certificate deleted");
    Ok(stored.record)
}
