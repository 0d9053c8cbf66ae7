//! The crash-safe creation sequence every new key goes through, for one key or for several
//! that land together (a 004 key deployed to several environments): the intents (one
//! transaction, reserving the names) → each key's token objects → one transaction with every
//! inventory row and everything recorded about the keys, the face's own rows included
//! (`store::FaceRows`). A failure after the intents destroys every object made; a crash is
//! undone by start-up reconciliation, since the intents name the objects.

use std::sync::Arc;

use super::authz::Principal;
use super::keys::audit;
use super::{App, CoreError};
use crate::material::spki::PublicKey;
use crate::store::records::now;
use crate::store::{CertificateRecord, FaceRows, Intent, KeyCommit, KeyRecord, StoreError};
use crate::token::{objects, Ctx, Token, TokenError};

/// What making a key's objects gave: its fingerprint, and its public key when it has one.
pub(crate) struct Made {
    pub fingerprint: String,
    pub public: Option<PublicKey>,
}

/// Makes one key's token objects under the given CKA_ID and label. It must be safe to run
/// again (a retry starts from a clean CKA_ID).
pub(crate) type Make = Arc<dyn Fn(&Ctx, &[u8], &str) -> Result<Made, TokenError> + Send + Sync>;

impl Made {
    pub fn from_public(c: &Ctx, pk: PublicKey) -> Result<Made, TokenError> {
        let fingerprint =
            pk.fingerprint().map_err(|e| TokenError::Refused { token: c.token.into(), operation: "fingerprint", detail: e.to_string() })?;
        Ok(Made { fingerprint, public: Some(pk) })
    }
}

/// A `Make` from a closure that returns the new key's public key.
pub(crate) fn from_public<F>(make: F) -> Make
where
    F: Fn(&Ctx, &[u8], &str) -> Result<PublicKey, TokenError> + Send + Sync + 'static,
{
    Arc::new(move |c, id, label| Made::from_public(c, make(c, id, label)?))
}

/// What a face writes with the new keys: given their inventory rows and public keys.
pub(crate) trait Face: FnOnce(&[KeyRecord], &[Option<PublicKey>]) -> FaceRows + Send {}
impl<F: FnOnce(&[KeyRecord], &[Option<PublicKey>]) -> FaceRows + Send> Face for F {}

/// A key about to be created.
pub(crate) struct NewKey {
    pub namespace: String,
    /// The inventory name; the token objects' label is `label`.
    pub name: String,
    pub label: String,
    pub token: Arc<Token>,
    pub cka_id: [u8; 16],
    /// The inventory's algorithm column (`ec-p256`, `aes-256`, `rsa-2048-public`, …).
    pub kind: crate::material::kind::KeyKind,
    pub exportable: bool,
    /// `generated`, `imported`, `restored`, `apiops`: the inventory's origin column.
    pub origin: &'static str,
    /// The intent's operation.
    pub op: &'static str,
    /// The audit entry's action and detail.
    pub audit: (String, Option<String>),
    /// Committed with the key; the token objects are `make`'s.
    pub certificates: Vec<CertificateRecord>,
    /// The import job's item, committed in the same transaction (imports run as jobs).
    pub job_item: Option<crate::store::JobItem>,
    /// The inventory row this key replaces; its objects go after the commit.
    pub replaces: Option<KeyRecord>,
    pub make: Make,
}

impl NewKey {
    /// A key with the usual bookkeeping: its label is its name, the audit action `key.<op>`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        namespace: String,
        name: String,
        token: Arc<Token>,
        cka_id: [u8; 16],
        kind: crate::material::kind::KeyKind,
        exportable: bool,
        origin: &'static str,
        op: &'static str,
        make: Make,
    ) -> NewKey {
        NewKey {
            label: name.clone(),
            namespace,
            name,
            token,
            cka_id,
            audit: (format!("key.{op}"), Some(kind.to_string())),
            kind,
            exportable,
            origin,
            op,
            certificates: Vec::new(),
            job_item: None,
            replaces: None,
            make,
        }
    }

    pub fn id(&self) -> String {
        hex::encode(self.cka_id)
    }
}

/// Why a creation failed, and which of the keys (by position) failed when one did.
#[derive(Debug)]
pub struct CreateError {
    pub item: Option<usize>,
    pub error: CoreError,
}

impl From<CreateError> for CoreError {
    fn from(e: CreateError) -> CoreError {
        e.error
    }
}

fn failed(item: Option<usize>, error: impl Into<CoreError>) -> CreateError {
    CreateError { item, error: error.into() }
}

/// One key through the sequence.
pub(crate) async fn create(app: &App, who: &Principal, k: NewKey) -> Result<KeyRecord, CoreError> {
    create_with(app, who, k, |_: &[KeyRecord], _: &[Option<PublicKey>]| FaceRows::None).await
}

/// One key with the face's own rows.
pub(crate) async fn create_with(app: &App, who: &Principal, k: NewKey, face: impl Face) -> Result<KeyRecord, CoreError> {
    let mut recs = create_all(app, who, vec![k], face).await?;
    Ok(recs.pop().expect("one key in, one record out"))
}

/// Several keys through the sequence, all or none; `face` gives the face's own rows once the
/// inventory rows are known (it may not fail: whatever it checks, it checks before).
pub(crate) async fn create_all(app: &App, who: &Principal, keys: Vec<NewKey>, face: impl Face) -> Result<Vec<KeyRecord>, CreateError> {
    for k in keys.iter().filter(|k| k.op == "restore") {
        // A key marked missing (its token was wiped or replaced) comes back under its name.
        let entry = audit(who, "key.forget-missing", &k.namespace, &k.id(), "ok", Some(format!("'{}' is being restored", k.name)));
        app.store.forget_missing(&k.namespace, &k.name, &entry).map_err(|e| failed(None, e))?;
    }
    let intents: Vec<Intent> = keys
        .iter()
        .map(|k| Intent {
            key_id: k.id(),
            token: k.token.name.clone(),
            cka_id: k.cka_id.to_vec(),
            namespace: k.namespace.clone(),
            name: k.name.clone(),
            op: k.op.into(),
            created_at: now(),
        })
        .collect();
    let replacing: Vec<String> = keys.iter().filter_map(|k| k.replaces.as_ref().map(|r| r.id.clone())).collect();
    durable(|| app.store.add_intents(&intents, &replacing)).map_err(|e| match e {
        StoreError::NameTaken { .. } => failed(None, CoreError::Conflict(format!("{e}; choose another name or delete the existing key"))),
        e => failed(None, e),
    })?;

    let mut made = Vec::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        match make(k).await {
            Ok(m) => made.push(m),
            Err(e) => {
                for k in &keys[..=i] {
                    undo(app, &k.token, &k.id(), k.cka_id).await;
                }
                for later in &keys[i + 1..] {
                    let _ = app.store.drop_intent(&later.id());
                }
                return Err(failed(Some(i), e));
            }
        }
    }
    if !app.pause_before_commit.is_zero() {
        tracing::warn!(keys = keys.len(), "test hook: pausing before the store commit");
        tokio::time::sleep(app.pause_before_commit).await;
    }
    let at = now();
    let (fingerprints, publics): (Vec<String>, Vec<Option<PublicKey>>) = made.into_iter().map(|m| (m.fingerprint, m.public)).unzip();
    let recs: Vec<KeyRecord> = keys
        .iter()
        .zip(fingerprints)
        .map(|(k, fingerprint)| KeyRecord {
            id: k.id(),
            name: k.name.clone(),
            namespace: k.namespace.clone(),
            owner: who.name.clone(),
            token: k.token.name.clone(),
            cka_id: k.cka_id.to_vec(),
            algorithm: k.kind.clone(),
            fingerprint,
            exportable: k.exportable,
            origin: k.origin.into(),
            created_at: at,
            status: Default::default(),
        })
        .collect();
    let audits: Vec<_> = keys.iter().map(|k| audit(who, &k.audit.0, &k.namespace, &k.id(), "ok", k.audit.1.clone())).collect();
    let commits: Vec<KeyCommit> = keys
        .iter()
        .zip(&recs)
        .zip(&audits)
        .map(|((k, rec), a)| KeyCommit {
            key: rec,
            certificates: &k.certificates,
            audit: a,
            job_item: k.job_item.as_ref(),
            replaces: k.replaces.as_ref(),
        })
        .collect();
    let face = face(&recs, &publics);
    if let Err(e) = durable(|| app.store.commit_keys(&commits, &face)) {
        for k in &keys {
            undo(app, &k.token, &k.id(), k.cka_id).await;
        }
        return Err(match e {
            StoreError::NameTaken { .. } => failed(None, CoreError::Conflict(format!("{e}; choose another name"))),
            e => failed(None, e),
        });
    }
    // Replaced material: its rows are gone and an intent covers its objects.
    for old in keys.iter().filter_map(|k| k.replaces.as_ref()) {
        if let Some(token) = app.tokens.get(Some(&old.token)) {
            let cka: [u8; 16] = old.cka_id.clone().try_into().unwrap_or([0; 16]);
            undo(app, token, &old.id, cka).await;
        }
    }
    for rec in &recs {
        tracing::info!(key = %rec.id, namespace = %rec.namespace, algorithm = %rec.algorithm, principal = %who.name, origin = %rec.origin, "key created");
    }
    Ok(recs)
}

/// A store write that waits for an fsync (its own, or a group's: `store::group`): handed off
/// the runtime's worker while it waits, where the runtime allows it, so requests and token
/// work go on meanwhile.
fn durable<T>(write: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(write),
        _ => write(),
    }
}

/// One key's objects, from a clean CKA_ID (a retry after a transient failure may find
/// half-made objects).
async fn make(k: &NewKey) -> Result<Made, TokenError> {
    let (cka_id, label, make) = (k.cka_id, k.label.clone(), k.make.clone());
    let made = k
        .token
        .run(move |c| {
            objects::destroy(c, &cka_id)?;
            make(c, &cka_id, &label)
        })
        .await?;
    if crate::test_hooks::fail_create(&k.name) {
        return Err(TokenError::Refused { token: k.token.name.clone(), operation: "create", detail: "test hook".into() });
    }
    Ok(made)
}

/// Best effort: remove the objects and the intent of a creation that did not commit. If this
/// fails too, the intent stays and start-up reconciliation finishes the job.
pub(crate) async fn undo(app: &App, token: &Arc<Token>, id: &str, cka_id: [u8; 16]) {
    let r = match token.run(move |c| objects::destroy(c, &cka_id)).await {
        Ok(_) => app.store.drop_intent(id).map_err(CoreError::from),
        Err(e) => Err(e.into()),
    };
    if let Err(e) = r {
        // The token or store is failing: the probe retries once it works again (no restart).
        tracing::error!(key = %id, error = %e, "could not undo a failed creation; retried when the token and store work again");
        super::probe::undo_later(id, &token.name, cka_id);
    }
}
