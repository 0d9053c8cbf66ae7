//! Start-up reconciliation between the store and the tokens, both ways:
//! - an intent left by a crash (objects may or may not exist): the creation was never
//!   acknowledged, so its objects are destroyed and the intent dropped;
//! - an inventory row whose objects are gone from the token (deleted by another tool, or a
//!   crash between token delete and store delete): the row is removed and audited; likewise a
//!   certificate row whose own object is gone.
//! Objects keyport knows nothing about (no row, no intent) belong to someone else sharing the
//! token; they are counted and left alone.

use super::App;
use crate::store::records::now;
use crate::store::AuditEntry;
use crate::token::objects;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Repairs {
    pub intents_undone: usize,
    pub rows_removed: usize,
    pub certificate_rows_removed: usize,
    pub foreign_objects: usize,
}

pub async fn run(app: &App) -> Result<Repairs, super::CoreError> {
    let mut r = Repairs::default();
    for intent in app.store.intents()? {
        let Some(token) = app.tokens.get(Some(&intent.token)) else {
            tracing::warn!(key = %intent.key_id, token = %intent.token, "intent for a token no longer configured; left as is");
            continue;
        };
        let cka_id = intent.cka_id.clone();
        let destroyed = token.run(move |c| objects::destroy(c, &cka_id)).await?;
        app.store.drop_intent(&intent.key_id)?;
        app.store.audit(&AuditEntry {
            at: now(),
            principal: "keyport".into(),
            action: "reconcile.undo-intent".into(),
            namespace: Some(intent.namespace.clone()),
            key_id: Some(intent.key_id.clone()),
            outcome: "repaired".into(),
            detail: Some(format!("unfinished {} of '{}'; {destroyed} token object(s) removed", intent.op, intent.name)),
        })?;
        tracing::warn!(key = %intent.key_id, name = %intent.name, objects = destroyed, "repaired: removed an unfinished key creation");
        r.intents_undone += 1;
    }
    for token in app.tokens.all() {
        let rows = app.store.keys_in_token(&token.name)?;
        let ids: std::collections::HashSet<Vec<u8>> = rows.iter().map(|k| k.cka_id.clone()).collect();
        // Certificates kept without a key (certificate import) are keyport's too.
        let certs = app.store.certificates_in_token(&token.name)?;
        let cert_ids: std::collections::HashSet<Vec<u8>> = certs.iter().map(|(_, id)| id.clone()).collect();
        let (missing, missing_certs, foreign) = token
            .run(move |c| {
                let idx = c.live.index.read().expect("poisoned");
                let missing: Vec<Vec<u8>> = ids
                    .iter()
                    .filter(|id| idx.get(id).map_or(true, |s| s.private.is_none() && s.public.is_none() && s.secret.is_none()))
                    .cloned()
                    .collect();
                let missing_certs: Vec<String> = certs
                    .iter()
                    .filter(|(_, id)| idx.get(id).is_none_or(|s| s.certificate.is_none()))
                    .map(|(sha, _)| sha.clone())
                    .collect();
                let own: [&[u8]; 3] = [crate::api::tls::TLS_ID, crate::core::dek::AT_REST_KEY_ID, crate::sync::client_cert::CLIENT_KEY_ID];
                let foreign =
                    idx.ids().filter(|(id, _)| !ids.contains(*id) && !cert_ids.contains(*id) && !own.contains(&id.as_slice())).count();
                Ok((missing, missing_certs, foreign))
            })
            .await?;
        for sha in &missing_certs {
            app.store.remove_certificate_row(
                sha,
                &AuditEntry {
                    at: now(),
                    principal: "keyport".into(),
                    action: "reconcile.remove-certificate-row".into(),
                    namespace: None,
                    key_id: None,
                    outcome: "repaired".into(),
                    detail: Some(format!("certificate sha256:{sha} has no object left in token '{}'", token.name)),
                },
            )?;
            tracing::warn!(certificate = %sha, token = %token.name, "repaired: removed a certificate row whose token object is gone");
            r.certificate_rows_removed += 1;
        }
        for k in rows.iter().filter(|k| missing.contains(&k.cka_id)) {
            app.store.delete_key(
                &k.id,
                &AuditEntry {
                    at: now(),
                    principal: "keyport".into(),
                    action: "reconcile.remove-row".into(),
                    namespace: Some(k.namespace.clone()),
                    key_id: Some(k.id.clone()),
                    outcome: "repaired".into(),
                    detail: Some(format!("key '{}' has no objects left in token '{}'", k.name, k.token)),
                },
            )?;
            tracing::warn!(key = %k.id, name = %k.name, token = %k.token, "repaired: removed an inventory row whose token objects are gone");
            r.rows_removed += 1;
        }
        r.foreign_objects += foreign;
    }
    Ok(r)
}
