//! The one import operation every face uses: check the key (and its certificate), create the
//! token objects under one CKA_ID, and commit the inventory row, its certificates, its audit
//! entry and (for a job) the item's result together. Crash-safe through the same intent rows as
//! generation (`keys.rs`, `reconcile.rs`).
//!
//! Decryption happens before this, off the runtime (`decrypt_blocking`), in zeroized memory.

use rand::RngCore;

use super::authz::Principal;
use super::keys::exportable as decide_exportable;
use super::names::{is_valid_key_name, is_valid_name};
use super::{App, CoreError};
use crate::config::Permission;
use crate::material::key::{MaterialError, PrivateKey};
use crate::material::x509::{self, CertInfo};
use crate::store::records::now;
use crate::store::{CertificateRecord, JobItem, KeyRecord};
use crate::token::objects;

/// A decrypted key with what came with it.
pub struct ImportRequest {
    pub key: PrivateKey,
    /// Leaf first; the leaf must match the key. May be empty.
    pub certificates: Vec<CertInfo>,
    /// The key's name; derived from the certificate (or fingerprint) when absent.
    pub name: Option<String>,
    pub namespace: String,
    pub exportable: Option<bool>,
    pub token: Option<String>,
}

#[derive(Debug)]
pub enum ImportOutcome {
    Imported(KeyRecord),
    /// The same public key is already in this namespace: nothing was written.
    AlreadyPresent(KeyRecord),
}

/// Where an import's result goes when it is part of a job.
#[derive(Debug, Clone)]
pub struct JobSlot {
    pub job_id: String,
    pub seq: i64,
}

pub fn material_error(e: MaterialError) -> CoreError {
    let code = match e {
        MaterialError::WrongPassword => "wrong_password",
        MaterialError::PasswordRequired => "password_required",
        MaterialError::CertificateMismatch => "certificate_mismatch",
        MaterialError::KdfTooExpensive(_) => "kdf_too_expensive",
        MaterialError::Unsupported(_) => "unsupported",
        MaterialError::Malformed(_) | MaterialError::UnknownFormat(_) => "malformed",
    };
    CoreError::invalid(code, e.to_string())
}

/// Runs a CPU-heavy decode/decrypt (KDFs) on a blocking worker, never on the runtime.
pub async fn decrypt_blocking<T, F>(f: F) -> Result<T, CoreError>
where
    F: FnOnce() -> Result<T, MaterialError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| CoreError::Internal(format!("decrypt worker failed: {e}")))?.map_err(material_error)
}

fn default_name(req: &ImportRequest, fingerprint: &str) -> String {
    let from_cert = req.certificates.first().and_then(|c| common_name(&c.subject)).filter(|n| is_valid_key_name(n));
    from_cert.unwrap_or_else(|| format!("key-{}", &fingerprint.trim_start_matches("sha256:")[..16]))
}

/// The CN of an RFC 4514 subject, with characters key names cannot hold replaced.
fn common_name(subject: &str) -> Option<String> {
    let cn = subject.split(',').find_map(|p| p.trim().strip_prefix("CN="))?;
    let cleaned: String = cn.chars().map(|c| if c.is_ascii_alphanumeric() || "._-@".contains(c) { c } else { '_' }).collect();
    let cleaned = cleaned.trim_start_matches('.').chars().take(100).collect::<String>();
    (!cleaned.is_empty()).then_some(cleaned)
}

/// What a job item is known by: the certificate's SHA-1 (the vendors' certificate
/// fingerprint), or the key's SHA-256 SPKI fingerprint when there is no certificate.
fn item_fingerprint(certs: &[CertInfo], key_fingerprint: &str) -> String {
    certs.first().map(|c| c.sha1.clone()).unwrap_or_else(|| key_fingerprint.trim_start_matches("sha256:").to_string())
}

/// What an import may collide with inside a batch (`core::batch`): its key, by fingerprint,
/// and every name it may take (the given one, or the default and its fallback). Empty when the
/// key cannot be fingerprinted (the import fails on its own then).
pub(crate) fn batch_keys(req: &ImportRequest) -> Vec<String> {
    let Ok(fingerprint) = req.key.public_key().fingerprint() else { return Vec::new() };
    let ns = &req.namespace;
    let mut keys = vec![format!("key\0{ns}\0{fingerprint}")];
    match &req.name {
        Some(n) => keys.push(format!("name\0{ns}\0{n}")),
        None => {
            let base = default_name(req, &fingerprint);
            keys.push(format!("name\0{ns}\0{base}-{}", &fingerprint.trim_start_matches("sha256:")[..8]));
            keys.push(format!("name\0{ns}\0{base}"));
        }
    }
    keys
}

pub(crate) fn cert_record(c: &CertInfo, key_id: Option<&str>, namespace: &str) -> CertificateRecord {
    CertificateRecord {
        sha256: c.sha256.clone(),
        key_id: key_id.map(String::from),
        namespace: namespace.into(),
        subject: c.subject.clone(),
        issuer: c.issuer.clone(),
        serial: c.serial_hex.clone(),
        not_before: c.not_before.clone(),
        not_after: c.not_after.clone(),
        sha1: c.sha1.clone(),
        der: c.der.clone(),
        created_at: now(),
    }
}

pub async fn import_key(app: &App, who: &Principal, req: ImportRequest, slot: Option<JobSlot>) -> Result<ImportOutcome, CoreError> {
    import_key_with(app, who, req, slot, |_: &[KeyRecord], _: &[Option<crate::material::spki::PublicKey>]| crate::store::FaceRows::None)
        .await
}

/// `import_key`, with the face's own rows written in the key's transaction.
pub(crate) async fn import_key_with(
    app: &App,
    who: &Principal,
    req: ImportRequest,
    slot: Option<JobSlot>,
    face: impl super::create::Face,
) -> Result<ImportOutcome, CoreError> {
    if !is_valid_name(&req.namespace) {
        return Err(CoreError::invalid("invalid_namespace", format!("namespace '{}' is not valid", req.namespace)));
    }
    who.require(&req.namespace, Permission::Import)?;
    let alg = req.key.algorithm().map_err(material_error)?;
    if let Some(leaf) = req.certificates.first() {
        x509::check_matches(leaf, &req.key).map_err(material_error)?;
    }
    let public = req.key.public_key();
    let fingerprint = public.fingerprint().map_err(|e| CoreError::invalid("malformed", e.to_string()))?;
    if let Some(existing) = app.store.keys_by_fingerprint(&fingerprint)?.into_iter().find(|k| k.namespace == req.namespace) {
        if let Some(s) = &slot {
            // The result is read later by whoever submitted the job, who may hold only
            // `import`: it says what happened, never which key (name, id, certificate) holds it.
            app.store.record_job_item(&JobItem {
                job_id: s.job_id.clone(),
                seq: s.seq,
                status: crate::store::ItemStatus::Skipped,
                key_id: None,
                fingerprint: Some(item_fingerprint(&req.certificates, &fingerprint)),
                reason: Some(format!("the same key is already held in namespace '{}'; nothing was imported", req.namespace)),
            })?;
        }
        return Ok(ImportOutcome::AlreadyPresent(existing));
    }
    let name = match &req.name {
        Some(n) if !is_valid_key_name(n) => {
            return Err(CoreError::invalid(
                "invalid_name",
                "name must be 1-128 letters, digits, '_', '-', '.' or '@', not starting with '.'",
            ))
        }
        Some(n) => n.clone(),
        None => {
            let base = default_name(&req, &fingerprint);
            if app.store.key_by_name(&req.namespace, &base)?.is_some() {
                format!("{base}-{}", &fingerprint.trim_start_matches("sha256:")[..8])
            } else {
                base
            }
        }
    };
    let exportable = decide_exportable(app, &req.namespace, req.exportable)?;
    let token = app
        .tokens
        .get(req.token.as_deref())
        .ok_or_else(|| {
            CoreError::invalid("unknown_token", format!("no token named '{}' is configured", req.token.clone().unwrap_or_default()))
        })?
        .clone();
    super::token_caps::check_import(&app.tokens, &token, alg, exportable)?;
    if alg == crate::material::algorithm::Algorithm::Ed25519 && !token.supports_ed25519().await {
        return Err(CoreError::invalid("unsupported", format!("token '{}' cannot hold Ed25519 keys", token.name)));
    }

    // A job item's id is derived from the item, so a retry recognises its own leftover intent.
    let cka_id = match &slot {
        Some(s) => super::jobs::item_cka_id(&s.job_id, s.seq),
        None => {
            let mut id = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut id);
            id
        }
    };
    let id = hex::encode(cka_id);
    let certificates: Vec<CertificateRecord> =
        req.certificates.iter().enumerate().map(|(i, c)| cert_record(c, (i == 0).then_some(id.as_str()), &req.namespace)).collect();
    let in_job = slot.is_some();
    let job_item = slot.map(|s| JobItem {
        job_id: s.job_id,
        seq: s.seq,
        status: crate::store::ItemStatus::Imported,
        key_id: Some(id.clone()),
        fingerprint: Some(item_fingerprint(&req.certificates, &fingerprint)),
        reason: None,
    });
    let token_name = token.name.clone();
    let key = req.key.clone();
    let leaf = req.certificates.first().map(|c| (c.der.clone(), c.subject_der.clone()));
    let make = super::create::from_public(move |c, id, label| {
        let public = objects::import_private_key(c, &key, id, label, exportable)?;
        if let Some((der, subject)) = &leaf {
            objects::create_certificate(c, id, label, der, subject)?;
        }
        Ok(public)
    });
    let taken_name = name.clone();
    let mut new = super::create::NewKey::new(
        req.namespace.clone(),
        name,
        token,
        cka_id,
        crate::material::kind::KeyKind::Pair(alg),
        exportable,
        "imported",
        "import",
        make,
    );
    new.certificates = certificates;
    new.job_item = job_item;
    let rec = super::create::create_with(app, who, new, face).await;
    if !matches!(rec, Err(CoreError::Forbidden(_) | CoreError::Invalid { .. } | CoreError::Conflict(_))) {
        app.telemetry.token_op(&token_name, "import", rec.is_ok());
    }
    // Two imports of one key at once both pass the duplicate check above; the one that loses
    // the name (the default name is the same for both) gets the answer it would have had a
    // moment later, "already present", not a 409 naming a name it never chose (issue 16's
    // load test). The winner may still be between its intent and its commit: while only its
    // intent reserves the name, look again — for as long as the request may take, since under
    // load the winner's token write can queue for many seconds (a fixed 5 s wait answered 409
    // in the 30-minute soak). A name held by another key is the plain 409 at once; a winner
    // that rolled back leaves the 409 (the caller may retry). A job item keeps its own recording.
    if matches!(rec, Err(CoreError::Conflict(_))) && !in_job {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(app.config.limits.request_timeout_secs);
        let mut wait = std::time::Duration::from_millis(20);
        loop {
            // Read before the key: the commit removes the intent and adds the key at once.
            let reserved = app.store.intents()?.iter().any(|i| i.namespace == req.namespace && i.name == taken_name);
            if let Some(existing) = app.store.keys_by_fingerprint(&fingerprint)?.into_iter().find(|k| k.namespace == req.namespace) {
                return Ok(ImportOutcome::AlreadyPresent(existing));
            }
            if app.store.key_by_name(&req.namespace, &taken_name)?.is_some() {
                break;
            }
            if !reserved || std::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(std::time::Duration::from_millis(500));
        }
    }
    Ok(ImportOutcome::Imported(rec?))
}
