//! The edge instance's data-encryption key (DEK): an X25519 key pair. Clients seal passwords
//! and keys to its public half with a libsodium sealed box, exactly as the vendor's clients do
//! for the SaaS. The private half is kept in the store sealed under a non-extractable AES key in
//! the first token (`token::at_rest`) and opened only for the moment of an unseal.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::ids::{b64url, uuid_v4};
use super::{App, CoreError};
use crate::store::records::now;
use crate::store::DekRecord;
use crate::token::at_rest;

/// CKA_ID and label of the token AES key that seals keyport's own secrets at rest.
pub use crate::token::reserved::AT_REST_KEY_ID;

/// The public view of the DEK, what the faces render.
#[derive(Debug, Clone)]
pub struct Dek {
    pub id: String,
    pub edge_instance_id: String,
    pub public_key: [u8; 32],
    pub created_at: crate::clock::Timestamp,
}

fn aad(id: &str) -> Vec<u8> {
    format!("keyport dek {id}").into_bytes()
}

/// At start: loads (or creates) the DEK into `app.dek`. A DEK that cannot be opened (its
/// at-rest key went with a wiped token, the store is full) does not stop the daemon: it starts
/// without the DEK, says why in health, and imports that need it answer 503.
pub async fn start(app: &App) -> bool {
    if app.store.dek().ok().flatten().is_none() {
        if let Err(e) = at_rest_token(app) {
            if !e.retry {
                let msg = format!("the edge encryption key (DEK) is off: {e}. Imports that need it (TLS Protect Cloud face) answer 503");
                tracing::error!("{msg}");
                app.health.set_off("dek", msg);
                return true;
            }
        }
    }
    match load_or_create(app).await {
        Ok(d) => {
            let _ = app.dek.set(d);
            app.health.clear("dek");
            true
        }
        Err(e) => {
            let sealed_in = app.store.dek().ok().flatten().map(|d| d.token);
            let why = match (&e, sealed_in) {
                (CoreError::Token(crate::token::TokenError::NotFound { .. }), Some(t)) => format!(
                    "its private half is sealed under the at-rest key in token '{t}', and that key is gone (the token was wiped or replaced): the DEK cannot be opened again. To start a new DEK (clients then fetch the new encryptionKeyId; jobs sealed to the old one cannot finish): stop keyport, delete the row of table `dek` in {}, start",
                    app.config.state_dir.join("keyport.db").display()
                ),
                _ => format!("{e}; keyport tries again every 10 s"),
            };
            let msg = format!("the edge encryption key (DEK) is not available: {why}. Imports that need it answer 503");
            tracing::error!("{msg}");
            app.health.set("dek", msg);
            false
        }
    }
}

/// After a failed [`start`] (token away, store full): tries again every 10 s until the DEK
/// loads. A DEK whose at-rest key is gone never will; the attempts are cheap. A DEK that is off
/// (no token can hold the at-rest key) is not retried.
pub async fn retry(app: std::sync::Arc<App>) {
    while app.dek.get().is_none() && !app.health.is_off("dek") {
        if !app.background.pause(std::time::Duration::from_secs(10)).await {
            return;
        }
        if start(&app).await {
            tracing::info!("the edge encryption key (DEK) is loaded");
        }
    }
}

/// Loads the DEK, creating it (and the edge instance id) on first start.
pub async fn load_or_create(app: &App) -> Result<Dek, CoreError> {
    if let Some(d) = app.store.dek()? {
        let public_key: [u8; 32] =
            d.public_key.as_slice().try_into().map_err(|_| CoreError::invalid("dek", "stored DEK public key is not 32 bytes"))?;
        // Prove at start that the sealed secret still opens and matches (wrong token, altered
        // store): better a clear start-up error than failed imports later.
        let secret = open_secret(app, &d).await?;
        if crypto_box::SecretKey::from(*secret).public_key().as_bytes() != &public_key {
            return Err(CoreError::invalid("dek", "the stored DEK's secret does not match its public key; the store was altered"));
        }
        return Ok(Dek { id: d.id, edge_instance_id: d.edge_instance_id, public_key, created_at: d.created_at });
    }
    let secret = crypto_box::SecretKey::generate(&mut rand::rngs::OsRng);
    let public_key = *secret.public_key().as_bytes();
    let id = b64url(&Sha256::digest(public_key)[..24]);
    let token = at_rest_token(app).map_err(|e| {
        // Only the "token away" case gets here (`start` turns the feature off otherwise).
        let away = app.tokens.all().iter().find(|t| t.capabilities().is_none()).map_or("?".to_string(), |t| t.name.clone());
        crate::token::TokenError::unavailable(&away, e.to_string())
    })?;
    let plain = Zeroizing::new(secret.to_bytes());
    let a = aad(&id);
    let sealed = token.run(move |c| at_rest::seal(c, AT_REST_KEY_ID, "keyport-at-rest", &plain[..], &a)).await?;
    let rec = DekRecord {
        id: id.clone(),
        edge_instance_id: uuid_v4(),
        public_key: public_key.to_vec(),
        sealed_secret: sealed,
        token: token.name.clone(),
        created_at: now(),
    };
    app.store.insert_dek(&rec)?;
    tracing::info!(encryption_key_id = %id, edge_instance_id = %rec.edge_instance_id, "created the DEK");
    Ok(Dek { id, edge_instance_id: rec.edge_instance_id, public_key, created_at: rec.created_at })
}

/// The token that holds (or will hold) the at-rest key (`placement`).
fn at_rest_token(app: &App) -> Result<std::sync::Arc<crate::token::Token>, super::placement::NoToken> {
    use super::placement::{holds_id, token_for, OwnKey};
    token_for(&app.tokens, OwnKey::AtRest, |t| holds_id(t, AT_REST_KEY_ID))
}

async fn open_secret(app: &App, d: &DekRecord) -> Result<Zeroizing<[u8; 32]>, CoreError> {
    let token = app
        .tokens
        .get(Some(&d.token))
        .ok_or_else(|| CoreError::invalid("dek", format!("the DEK is sealed in token '{}', which is no longer configured", d.token)))?
        .clone();
    let (blob, a) = (d.sealed_secret.clone(), aad(&d.id));
    let opened = token.run(move |c| at_rest::open(c, AT_REST_KEY_ID, &blob, &a)).await?;
    let arr: [u8; 32] = opened.as_slice().try_into().map_err(|_| CoreError::invalid("dek", "sealed DEK secret has the wrong length"))?;
    Ok(Zeroizing::new(arr))
}

/// Opens a libsodium sealed box addressed to the DEK. The secret exists only inside this call.
pub async fn unseal(app: &App, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CoreError> {
    let d = app.store.dek()?.ok_or_else(|| CoreError::invalid("dek", "no DEK yet"))?;
    let secret = open_secret(app, &d).await?;
    open_sealed_box(&secret, sealed)
}

/// Opens a sealed box (the caller's bytes, untrusted) with the DEK's secret half: the pure
/// step of [`unseal`], which the fuzz target drives.
pub fn open_sealed_box(secret: &[u8; 32], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CoreError> {
    let sk = crypto_box::SecretKey::from(*secret);
    sk.unseal(sealed).map(Zeroizing::new).map_err(|_| {
        CoreError::invalid(
            "dek_unseal",
            "the DEK-encrypted value cannot be opened with this edge instance's encryption key: seal it (libsodium sealed box) to the key from GET /v1/edgeencryptionkeys/{encryptionKeyId}",
        )
    })
}
