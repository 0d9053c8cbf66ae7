//! Export: the one gate every export path passes (native, TPP, KPS, 004 files), then the token
//! hands the key out wrapped (`token::wrap`), decoded in zeroized memory, and the face encodes
//! it. The gate, in order: the caller may export (`export-private` on the key's namespace, or
//! its owner where the namespace's policy lets owners export), the key was created exportable,
//! and the key leaves protected as the policy demands (`check_protection`: a passphrase of at
//! least [`MIN_PASSPHRASE_LEN`] bytes, or no passphrase only where `allow_unencrypted_export`).
//! Every export and every refusal is audited.

use zeroize::Zeroizing;

use super::authz::Principal;
use super::keys::audit;
use super::{App, CoreError};
use crate::config::{NamespacePolicy, Permission};
use crate::material::key::PrivateKey;
use crate::store::KeyRecord;
use crate::token::wrap;

/// The shortest passphrase any export path accepts.
pub const MIN_PASSPHRASE_LEN: usize = 8;

/// How an exported key leaves keyport.
#[derive(Clone, Copy)]
pub enum Protection<'a> {
    /// Encrypted under this caller-chosen passphrase.
    Passphrase(&'a [u8]),
    /// In the clear: the caller sent no passphrase (or an empty one).
    Plain,
    /// In the clear because the face's vendor protocol has no passphrase (KPS export, the
    /// 004 export-file): such a face can only export where the policy allows plain exports.
    PlainByProtocol,
}

impl<'a> Protection<'a> {
    /// A caller's optional passphrase; empty means none.
    pub fn from_optional(passphrase: Option<&'a [u8]>) -> Protection<'a> {
        match passphrase {
            Some(p) if !p.is_empty() => Protection::Passphrase(p),
            _ => Protection::Plain,
        }
    }
}

/// The passphrase rule, the same for every export path.
pub fn check_protection(policy: &NamespacePolicy, namespace: &str, protection: Protection<'_>) -> Result<(), CoreError> {
    match protection {
        Protection::Passphrase(p) if p.len() < MIN_PASSPHRASE_LEN => Err(CoreError::invalid(
            "weak_passphrase",
            format!("passphrase must be at least {MIN_PASSPHRASE_LEN} characters: the exported key is encrypted with it"),
        )),
        Protection::Passphrase(_) => Ok(()),
        _ if policy.allow_unencrypted_export => Ok(()),
        Protection::Plain => Err(CoreError::invalid(
            "passphrase_required",
            format!("a passphrase is required: namespace '{namespace}' does not allow unencrypted exports (allow_unencrypted_export)"),
        )),
        Protection::PlainByProtocol => Err(CoreError::Forbidden(format!(
            "namespace '{namespace}' does not allow unencrypted exports (allow_unencrypted_export = false) and this API cannot \
             encrypt the key under a passphrase; export it with keyport's native API (keyport export --passphrase-file) instead"
        ))),
    }
}

/// Whether `who` may take keys of `rec` out of the token: `export-private`, or ownership where
/// the namespace's policy says owners may export (and only while the owner still holds some
/// permission in the namespace).
fn may_export(app: &App, who: &Principal, rec: &KeyRecord) -> bool {
    who.allows(&rec.namespace, Permission::ExportPrivate)
        || (app.config.policy(&rec.namespace).owners_may_export && who.owns(&rec.owner, &rec.namespace))
}

/// The gate (see the module doc): the key's record and token, or the audited refusal.
fn authorize(
    app: &App,
    who: &Principal,
    key_id: &str,
    protection: Protection<'_>,
) -> Result<(KeyRecord, std::sync::Arc<crate::token::Token>), CoreError> {
    const ACTION: &str = "key.export";
    let rec = super::keys::get(app, who, key_id)?;
    let refuse = |err: CoreError| {
        let _ = app.store.audit(&audit(who, ACTION, &rec.namespace, &rec.id, "refused", Some(err.to_string())));
        err
    };
    if !may_export(app, who, &rec) {
        return Err(refuse(CoreError::Forbidden(format!(
            "principal '{}' may not export keys of namespace '{}': it needs the 'export-private' permission there",
            who.name, rec.namespace
        ))));
    }
    if super::token_caps::cannot_wrap(&app.tokens, &rec.token) {
        return Err(refuse(CoreError::NotExportable(super::token_caps::not_exportable_on_token(&rec.name, &rec.token))));
    }
    if !rec.exportable {
        return Err(refuse(CoreError::NotExportable(format!(
            "key '{}' was created non-exportable, so it can never leave the token; generate or import it again as exportable if it must",
            rec.name
        ))));
    }
    check_protection(&app.config.policy(&rec.namespace), &rec.namespace, protection).map_err(refuse)?;
    // A keyset's pending version leaves only once its rotation provisions private keys.
    super::rotation::check_export(app, &rec.id).map_err(refuse)?;
    let token = super::keys::token_of(app, &rec.token)?;
    Ok((rec, token))
}

/// The private key of `key_id`, decoded, for a face to encode under `protection`.
pub async fn export_private_key(app: &App, who: &Principal, key_id: &str, protection: Protection<'_>) -> Result<PrivateKey, CoreError> {
    let (rec, token) = authorize(app, who, key_id, protection)?;
    let cka_id = rec.cka_id.clone();
    let der = token.run(move |c| wrap::private_key_pkcs8(c, &cka_id)).await;
    app.telemetry.token_op(&token.name, "export", der.is_ok());
    let der = der?;
    let key = crate::material::pkcs::private_key_from_pkcs8_der(&der).map_err(super::import::material_error)?;
    if key.public_key().fingerprint().ok().as_deref() != Some(rec.fingerprint.as_str()) {
        return Err(CoreError::Conflict(format!(
            "the token's key for '{}' does not match the inventory's fingerprint; refusing to export",
            rec.name
        )));
    }
    app.store.audit(&audit(who, "key.export", &rec.namespace, &rec.id, "ok", None))?;
    tracing::info!(key = ?rec.id, principal = ?who.name, "private key exported");
    Ok(key)
}

/// The value of the secret key `key_id` (always in the clear: the 004 face's file).
pub async fn export_secret_key(
    app: &App,
    who: &Principal,
    key_id: &str,
    protection: Protection<'_>,
) -> Result<Zeroizing<Vec<u8>>, CoreError> {
    let (rec, token) = authorize(app, who, key_id, protection)?;
    let cka_id = rec.cka_id.clone();
    let value = token.run(move |c| wrap::secret_key_value(c, &cka_id)).await?;
    app.store.audit(&audit(who, "key.export", &rec.namespace, &rec.id, "ok", None))?;
    tracing::info!(key = ?rec.id, principal = ?who.name, "symmetric key exported");
    Ok(value)
}

/// The public key of `key_id`, for any caller that may read the key (public keys are not
/// secrets, so no export permission or passphrase applies).
pub async fn public_key(app: &App, who: &Principal, key_id: &str) -> Result<(KeyRecord, crate::material::spki::PublicKey), CoreError> {
    let rec = super::keys::get(app, who, key_id)?;
    let token = super::keys::token_of(app, &rec.token)?;
    let cka_id = rec.cka_id.clone();
    let pk = token.run(move |c| crate::token::objects::public_key(c, &cka_id)).await?;
    Ok((rec, pk))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_passphrase_rule() {
        let strict = NamespacePolicy { allow_exportable: true, ..NamespacePolicy::default() };
        let lax = NamespacePolicy { allow_unencrypted_export: true, ..strict.clone() };
        let code = |r: Result<(), CoreError>| match r {
            Ok(()) => "ok",
            Err(CoreError::Invalid { code, .. }) => code,
            Err(CoreError::Forbidden(_)) => "forbidden",
            Err(_) => "other",
        };
        assert_eq!(code(check_protection(&strict, "n", Protection::Plain)), "passphrase_required");
        assert_eq!(code(check_protection(&strict, "n", Protection::from_optional(Some(b"")))), "passphrase_required");
        assert_eq!(code(check_protection(&strict, "n", Protection::PlainByProtocol)), "forbidden");
        assert_eq!(code(check_protection(&lax, "n", Protection::PlainByProtocol)), "ok");
        for policy in [&strict, &lax] {
            assert_eq!(code(check_protection(policy, "n", Protection::Passphrase(b"x"))), "weak_passphrase");
            assert_eq!(code(check_protection(policy, "n", Protection::Passphrase(b"1234567"))), "weak_passphrase");
            assert_eq!(code(check_protection(policy, "n", Protection::Passphrase(b"12345678"))), "ok");
        }
    }
}
