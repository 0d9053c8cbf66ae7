//! Export: authorize (the key's owner, or `export-private` on its namespace) → the token hands
//! the key out wrapped (`token::wrap`) → decoded in zeroized memory → the face encodes it.
//! A key created non-exportable is refused with a clear message. Every export and every refusal
//! is audited.

use zeroize::Zeroizing;

use super::authz::Principal;
use super::keys::audit;
use super::{App, CoreError};
use crate::config::Permission;
use crate::material::key::PrivateKey;
use crate::store::KeyRecord;
use crate::token::wrap;

fn authorize(
    app: &App,
    who: &Principal,
    key_id: &str,
    action: &str,
) -> Result<(KeyRecord, std::sync::Arc<crate::token::Token>), CoreError> {
    let rec = super::keys::get(app, who, key_id)?;
    let refuse = |why: String, err: fn(String) -> CoreError| {
        let _ = app.store.audit(&audit(who, action, &rec.namespace, &rec.id, "refused", Some(why.clone())));
        err(why)
    };
    if rec.owner != who.name && !who.allows(&rec.namespace, Permission::ExportPrivate) {
        return Err(refuse(
            format!(
                "principal '{}' may not export keys of namespace '{}': it needs the 'export-private' permission, or to own the key",
                who.name, rec.namespace
            ),
            CoreError::Forbidden,
        ));
    }
    if !rec.exportable {
        return Err(refuse(
            format!(
            "key '{}' was created non-exportable, so it can never leave the token; generate or import it again as exportable if it must",
            rec.name
        ),
            CoreError::NotExportable,
        ));
    }
    let token = app
        .tokens
        .get(Some(&rec.token))
        .ok_or_else(|| CoreError::Conflict(format!("the key's token '{}' is no longer configured", rec.token)))?
        .clone();
    Ok((rec, token))
}

/// The private key of `key_id`, decoded, for a face to encode.
pub async fn export_private_key(app: &App, who: &Principal, key_id: &str) -> Result<PrivateKey, CoreError> {
    let (rec, token) = authorize(app, who, key_id, "key.export")?;
    let cka_id = rec.cka_id.clone();
    let der = token.run(move |c| wrap::private_key_pkcs8(c, &cka_id)).await?;
    let key = crate::material::pkcs::private_key_from_pkcs8_der(&der).map_err(super::import::material_error)?;
    if key.public_key().fingerprint().ok().as_deref() != Some(rec.fingerprint.as_str()) {
        return Err(CoreError::Conflict(format!(
            "the token's key for '{}' does not match the inventory's fingerprint; refusing to export",
            rec.name
        )));
    }
    app.store.audit(&audit(who, "key.export", &rec.namespace, &rec.id, "ok", None))?;
    tracing::info!(key = %rec.id, principal = %who.name, "private key exported");
    Ok(key)
}

/// The value of the secret key `key_id`.
pub async fn export_secret_key(app: &App, who: &Principal, key_id: &str) -> Result<Zeroizing<Vec<u8>>, CoreError> {
    let (rec, token) = authorize(app, who, key_id, "key.export")?;
    let cka_id = rec.cka_id.clone();
    let value = token.run(move |c| wrap::secret_key_value(c, &cka_id)).await?;
    app.store.audit(&audit(who, "key.export", &rec.namespace, &rec.id, "ok", None))?;
    tracing::info!(key = %rec.id, principal = %who.name, "symmetric key exported");
    Ok(value)
}
