//! The raw file operations: `export-file` (one environment's key as a file, or every
//! environment's in a ZIP) and `import-file` (multipart upload written to the named
//! environments). The upload is parsed by axum's `Multipart` within field limits; the ZIP is a
//! small stored (uncompressed) writer.

use super::super::json::Json;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::content::{self, Alg, KeyType};
use super::{find_key, namespace, require, ApiOpsCaller, ExportQuery, VendorError};
use crate::config::Permission;
use crate::core::export::Protection;
use crate::core::SharedApp;

// --- export-file ------------------------------------------------------------------------------

pub async fn export_file(
    State(app): State<SharedApp>,
    ApiOpsCaller(who): ApiOpsCaller,
    Path((project, name)): Path<(String, String)>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, VendorError> {
    let ns = namespace(&app, &project)?;
    let (key, deployed) = find_key(&app, &project, &name)?;
    let key_type = KeyType::parse(&key.key_type).expect("stored key types are valid");
    if key_type == KeyType::Public {
        super::require_any(&who, &ns, &project)?;
    } else {
        require(&who, &ns, Permission::ExportPrivate)?;
    }
    if deployed.is_empty() {
        return Err(VendorError::bad(format!("({name}) carries no environment material to export!")));
    }
    let chosen: Vec<_> = match q.environment_name.as_deref().filter(|e| !e.is_empty()) {
        Some(env) => {
            let d = deployed.iter().find(|d| d.environment == env).ok_or_else(|| {
                let available: Vec<_> = deployed.iter().map(|d| d.environment.as_str()).collect();
                VendorError::bad(format!("({name}) has no material for environment ({env})! Available: {}", available.join(", ")))
            })?;
            vec![d.clone()]
        }
        None => deployed.clone(),
    };
    let mut files = Vec::new();
    for d in &chosen {
        let data = export_one(&app, &who, key_type, &d.key_id).await?;
        files.push((format!("{name}-{}.pem", d.environment), data));
    }
    if q.environment_name.as_deref().is_some_and(|e| !e.is_empty()) {
        let (fname, data) = files.pop().expect("one file");
        return Ok(super::file_response("application/x-pem-file", &fname, data.to_vec()));
    }
    let zip = crate::material::archive::stored_zip(&files.iter().map(|(n, d)| (n.as_str(), &d[..])).collect::<Vec<_>>())
        .map_err(|e| VendorError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(super::file_response("application/octet-stream", &format!("{name}-keys.zip"), zip.to_vec()))
}

/// One deployment's material as a file: PEM for private (PKCS#8) and public (SPKI) keys; the
/// Base64 of the raw bytes for a secret key (what `content` and `import-file` take back).
async fn export_one(
    app: &SharedApp,
    who: &crate::core::authz::Principal,
    key_type: KeyType,
    key_id: &str,
) -> Result<Zeroizing<Vec<u8>>, VendorError> {
    let rec = app
        .store
        .key(key_id)
        .map_err(|e| VendorError::from(crate::core::CoreError::from(e)))?
        .ok_or_else(|| VendorError::bad("the key's inventory row is gone; retry"))?;
    match key_type {
        KeyType::Public => {
            let pk = crate::core::keys::read_public_key(app, &rec).await.map_err(VendorError::from)?;
            Ok(Zeroizing::new(content::public_pem(&pk).map_err(VendorError::bad)?.into_bytes()))
        }
        KeyType::Private => {
            let k =
                crate::core::export::export_private_key(app, who, key_id, Protection::PlainByProtocol).await.map_err(VendorError::from)?;
            let der = crate::material::pkcs::to_pkcs8_der(&k).map_err(|e| VendorError::bad(e.to_string()))?;
            Ok(Zeroizing::new(crate::material::pkcs::pem::encode("PRIVATE KEY", "", &der).as_bytes().to_vec()))
        }
        KeyType::Secret => {
            use base64::Engine;
            let v =
                crate::core::export::export_secret_key(app, who, key_id, Protection::PlainByProtocol).await.map_err(VendorError::from)?;
            let mut text = base64::engine::general_purpose::STANDARD.encode(&v[..]);
            text.push('\n');
            Ok(Zeroizing::new(text.into_bytes()))
        }
    }
}

// --- import-file ------------------------------------------------------------------------------

/// Fields `import-file` reads; any other is refused (so a body cannot carry hundreds).
const FIELDS: [&str; 8] = ["keyFile", "keyName", "keyType", "algorithm", "override", "environmentList", "alias", "keyDescription"];
/// Largest text field (names, lists, descriptions).
const MAX_TEXT_FIELD: usize = 4 * 1024;
/// RFC 2046 §5.1.1: a boundary is 1 to 70 characters. A longer one is refused before parsing.
const MAX_BOUNDARY: usize = 70;

/// The form's fields by name: `keyFile` up to `limits::MAX_KEY_FILE_BYTES`, the rest short text.
/// Parsed by axum's `Multipart` (multer: linear in the body) from a body already read within
/// `limits.max_body_bytes`.
async fn read_form(content_type: &str, body: axum::body::Bytes) -> Result<Vec<(&'static str, Zeroizing<Vec<u8>>)>, VendorError> {
    let boundary = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.get(..9).filter(|k| k.eq_ignore_ascii_case("boundary=")).map(|_| p[9..].trim_matches('"')))
        .filter(|b| !b.is_empty())
        .ok_or_else(|| VendorError::bad("The request must be multipart/form-data with a boundary!"))?;
    if boundary.len() > MAX_BOUNDARY {
        return Err(VendorError::bad(format!("The multipart boundary is longer than {MAX_BOUNDARY} characters (RFC 2046)!")));
    }
    let mut req = axum::extract::Request::new(axum::body::Body::from(body));
    req.headers_mut()
        .insert(header::CONTENT_TYPE, content_type.parse().map_err(|_| VendorError::bad("The Content-Type header is not valid!"))?);
    let malformed =
        |e: axum::extract::multipart::MultipartError| VendorError::bad(format!("The multipart body is malformed: {}", e.body_text()));
    let mut form = axum::extract::Multipart::from_request(req, &())
        .await
        .map_err(|e| VendorError::bad(format!("The multipart body is malformed: {}", e.body_text())))?;
    let mut fields: Vec<(&'static str, Zeroizing<Vec<u8>>)> = Vec::new();
    while let Some(mut field) = form.next_field().await.map_err(malformed)? {
        let given = field.name().unwrap_or_default().to_string();
        let Some(name) = FIELDS.iter().copied().find(|f| *f == given) else {
            return Err(VendorError::bad(format!("Unknown form field ({given})! Fields: {}", FIELDS.join(", "))));
        };
        if fields.iter().any(|(n, _)| *n == name) {
            return Err(VendorError::bad(format!("Form field ({name}) is given more than once!")));
        }
        let max = if name == "keyFile" { crate::material::limits::MAX_KEY_FILE_BYTES } else { MAX_TEXT_FIELD };
        let mut data = Zeroizing::new(Vec::new());
        while let Some(chunk) = field.chunk().await.map_err(malformed)? {
            if data.len() + chunk.len() > max {
                return Err(VendorError::bad(format!("Form field ({name}) is larger than {max} bytes!")));
            }
            data.extend_from_slice(&chunk);
        }
        fields.push((name, data));
    }
    Ok(fields)
}

pub async fn import_file(
    State(app): State<SharedApp>,
    ApiOpsCaller(who): ApiOpsCaller,
    Path(project): Path<String>,
    req: Request,
) -> Result<Json<Value>, VendorError> {
    let ns = namespace(&app, &project)?;
    require(&who, &ns, Permission::Import)?;
    require(&who, &ns, Permission::Deploy)?;
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let body =
        crate::api::body::read_limited(req, app.config.limits.max_body_bytes).await.map_err(|e| VendorError::new(e.status, e.message))?;
    let parts = read_form(&ct, body).await?;
    let field = |n: &str| parts.iter().find(|p| p.0 == n).map(|p| &p.1);
    let text = |n: &str| field(n).map(|p| String::from_utf8_lossy(p).trim().to_string()).filter(|s| !s.is_empty());
    let file = field("keyFile").ok_or_else(|| VendorError::bad("keyFile is required!"))?;
    let name = text("keyName").ok_or_else(|| VendorError::bad("keyName is required!"))?;
    super::check_name(&name)?;
    let key_type = super::parse_key_type(text("keyType").as_deref())?;
    let mut algorithm = super::parse_algorithm(text("algorithm").as_deref(), true)?;
    let overriding = text("override").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let existing = app.store.apiops_key(&project, &name).map_err(|e| VendorError::from(crate::core::CoreError::from(e)))?;
    match (&existing, overriding) {
        (Some(_), false) => return Err(VendorError::bad(format!("Key (name: {name}) is already exist! Send override=true to update it."))),
        (None, true) => return Err(VendorError::bad(format!("Key (name: {name}) is not found!"))),
        _ => {}
    }
    if let Some(k) = &existing {
        if k.key_type != key_type.as_str() {
            return Err(VendorError::bad(format!("keyType of key ({name}) is {} and can not be changed!", k.key_type)));
        }
        let stored = Alg::parse(&k.algorithm, false);
        if algorithm.is_some() && algorithm != stored {
            return Err(VendorError::bad(format!("algorithm of key ({name}) is {} and can not be changed!", k.algorithm)));
        }
        algorithm = stored;
    }
    let envs: Vec<String> =
        text("environmentList").unwrap_or_default().split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    if envs.is_empty() {
        return Err(VendorError::bad("environmentList value can not be empty!"));
    }
    // The file: PEM, or Base64 that decodes to PEM (or, for a secret key, to its raw bytes).
    let raw = String::from_utf8(file.to_vec()).map(Zeroizing::new).map_err(|_| {
        VendorError::bad(format!(
            "Key content is neither PEM nor valid Base64 for key type {}! Send the PEM content Base64-encoded.",
            key_type.as_str()
        ))
    })?;
    // Decoding and parsing a key (RSA checks) is CPU work: off the runtime's threads.
    let (material, alg) = tokio::task::spawn_blocking(move || {
        let bytes = content::decode(&raw, key_type)?;
        content::read(key_type, algorithm, &bytes)
    })
    .await
    .map_err(|e| VendorError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the key reader failed: {e}")))?
    .map_err(VendorError::bad)?;
    let material = std::sync::Arc::new(material);
    let deployed = existing
        .as_ref()
        .map(|k| app.store.apiops_deployments(&project, &k.name))
        .transpose()
        .map_err(|e| VendorError::from(crate::core::CoreError::from(e)))?
        .unwrap_or_default();
    let alias = text("alias");
    let mut plans = Vec::new();
    for env in &envs {
        let token = super::environment(&app, env)?;
        if plans.iter().any(|p: &super::Plan| &p.environment == env) {
            return Err(VendorError::bad(format!("Environment ({env}) is listed more than once!")));
        }
        let replaces = match deployed.iter().find(|d| &d.environment == env) {
            Some(d) => app.store.key(&d.key_id).map_err(|e| VendorError::from(crate::core::CoreError::from(e)))?,
            None => None,
        };
        plans.push(super::Plan {
            environment: env.clone(),
            token,
            material: material.clone(),
            alias: alias.clone(),
            source: "FILE",
            replaces,
        });
    }
    let key = match existing {
        Some(k) => k,
        None => crate::store::ApiOpsKey {
            project: project.clone(),
            name: name.clone(),
            namespace: ns.clone(),
            description: text("keyDescription"),
            key_type: key_type.as_str().into(),
            algorithm: alg.as_str().into(),
            owner: who.name.clone(),
            created_at: crate::store::records::now(),
        },
    };
    let new_key = !overriding;
    super::deploy::deploy(&app, &who, &key, new_key, plans).await?;
    if overriding {
        if let Some(d) = text("keyDescription") {
            let entry = crate::core::keys::audit(&who, "apiops.key.update", &ns, &format!("{project}/{name}"), "ok", None);
            app.store
                .apiops_update(&project, &name, Some(&d), &[], &entry)
                .map_err(|e| VendorError::from(crate::core::CoreError::from(e)))?;
        }
    }
    Ok(Json(json!({"status": "SUCCESS"})))
}

/// `import-file`'s form reader and the key reading behind it, for `fuzz/` (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) async fn fuzz_multipart(content_type: &str, body: axum::body::Bytes) {
    let Ok(parts) = read_form(content_type, body).await else { return };
    let field = |n: &str| parts.iter().find(|p| p.0 == n).map(|p| String::from_utf8_lossy(&p.1).trim().to_string());
    let Ok(key_type) = super::parse_key_type(field("keyType").as_deref()) else { return };
    let Ok(algorithm) = super::parse_algorithm(field("algorithm").as_deref(), true) else { return };
    if let Some(Ok(bytes)) = field("keyFile").map(|f| content::decode(&f, key_type)) {
        let _ = content::read(key_type, algorithm, &bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn multipart_form() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"keyName\"\r\n\r\nk1\r\n--XyZ\r\nContent-Disposition: form-data; name=\"keyFile\"; filename=\"a.pem\"\r\nContent-Type: application/octet-stream\r\n\r\nAB\r\nCD\r\n--XyZ--\r\n";
        let parts = read_form("multipart/form-data; boundary=XyZ", axum::body::Bytes::from_static(body))
            .await
            .unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].0, &parts[0].1[..]), ("keyName", &b"k1"[..]));
        assert_eq!((parts[1].0, &parts[1].1[..]), ("keyFile", &b"AB\r\nCD"[..]));
        let long = format!("multipart/form-data; boundary={}", "b".repeat(71));
        assert!(read_form(&long, axum::body::Bytes::new()).await.is_err_and(|e| e.message.contains("70")));
        let twice = b"--X\r\nContent-Disposition: form-data; name=\"keyName\"\r\n\r\na\r\n--X\r\nContent-Disposition: form-data; name=\"keyName\"\r\n\r\nb\r\n--X--\r\n";
        assert!(read_form("multipart/form-data; boundary=X", axum::body::Bytes::from_static(twice))
            .await
            .is_err_and(|e| e.message.contains("more than once")));
    }
}
