//! `POST /keyport/v1/keys/import`: a key file into the token, like `ssh-add FILE`.
//! Body: `{"data": base64 file, "passphrase"?, "certificate"? (PEM chain), "name"?,
//! "namespace"? (default "default"), "exportable"?, "token"?}`. Every format the core reads
//! (`core::import_file`); 201 with the key, or 200 `imported: false` when the same key is
//! already held in the namespace (nothing written; the key is shown only to a caller who may
//! read it).

use super::json::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Extension, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::auth::Caller;
use super::body::JsonBody;
use super::error::ApiError;
use crate::config::Permission;
use crate::core::import::{import_key, ImportOutcome, ImportRequest};
use crate::core::names::is_valid_name;
use crate::core::{import_file, CoreError, SharedApp};

pub fn routes() -> Router<SharedApp> {
    Router::new().route("/keyport/v1/keys/import", post(import))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportBody {
    /// The key file, standard base64.
    data: String,
    passphrase: Option<String>,
    /// Certificates (PEM) to store with the key; the one matching the key becomes the leaf.
    certificate: Option<String>,
    name: Option<String>,
    namespace: Option<String>,
    exportable: Option<bool>,
    token: Option<String>,
}

async fn import(
    State(app): State<SharedApp>,
    Caller(who): Caller,
    context: Option<Extension<super::request::Context>>,
    JsonBody(b): JsonBody<ImportBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let namespace = b.namespace.unwrap_or_else(|| "default".into());
    if !is_valid_name(&namespace) {
        return Err(CoreError::invalid(
            "invalid_namespace",
            format!("namespace {namespace:?} is not valid: use 1-64 letters, digits, '_' or '-'"),
        )
        .into());
    }
    // Before any passphrase work: a caller who may not import does not get to spend a KDF.
    who.require(&namespace, Permission::Import)?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(b.data.trim())
        .map(Zeroizing::new)
        .map_err(|_| CoreError::invalid("invalid_base64", "data is not valid standard base64 (the key file's bytes)"))?;
    let passphrase = b.passphrase.filter(|p| !p.is_empty()).map(|p| Zeroizing::new(p.into_bytes()));
    let cancel = context.map(|Extension(c)| c.ended().clone()).unwrap_or_default();
    let (key, certificates) =
        import_file::decode(&app, &who, &cancel, data.to_vec(), passphrase, b.certificate.map(String::into_bytes)).await?;
    let req = ImportRequest { key, certificates, name: b.name, namespace: namespace.clone(), exportable: b.exportable, token: b.token };
    match import_key(&app, &who, req, None).await? {
        ImportOutcome::Imported(rec) => Ok((StatusCode::CREATED, Json(json!({"imported": true, "key": rec})))),
        ImportOutcome::AlreadyPresent(rec) => {
            let mut v = json!({
                "imported": false,
                "message": format!("the same key is already held in namespace '{namespace}'; nothing was imported"),
            });
            if who.allows(&rec.namespace, Permission::Read) || who.owns(&rec.owner, &rec.namespace) {
                v["key"] = serde_json::to_value(&rec).unwrap_or_default();
            }
            Ok((StatusCode::OK, Json(v)))
        }
    }
}
