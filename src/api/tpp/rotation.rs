//! TPP's SSH rotation calls on keyport's keysets (issue 13): `SSH/Rotate`,
//! `SSH/RotateNonBlocking`, `SSH/RetryRotation`, `SSH/CancelRotation`,
//! `SSH/RollbackNonBlocking`, `SSH/SkipKeyRotation`, `SSH/ConfirmSelfServiceKeyInstallation`
//! (also without the `SSH/` prefix, as the vendor's own example calls it), and the keyset
//! side of `SSH/KeysetDetails`. A keyset's `KeysetId` is its 40-hex id.
//!
//! Answers: pyvenafi reads these calls' SshWebResponse under `Response` and the NonBlocking ones
//! at the top level; the vendor's pages show the bare SshWebResponse. keyport answers both
//! shapes at once (`Success`, `ErrorCode`, `ErrorMessage` at the top and the same object under
//! `Response`), so either reader finds it. Token scope `ssh:manage` (as TPP documents).

use serde::Deserialize;
use serde_json::{json, Value};

use super::{codes, core_failure, failure};
use crate::core::authz::Principal;
use crate::core::rotation::{self, KeysetView, Stage};
use crate::core::{CoreError, SharedApp};

/// TPP error codes of rotation calls.
const OPERATION_IS_ALREADY_RUNNING: i64 = 8;
const IMPROPER_KEYSET_STAGE: i64 = 18;

/// The rotation paths (lower-cased) this module answers.
pub fn owns(path: &str) -> bool {
    matches!(
        path,
        "/vedsdk/ssh/rotate"
            | "/vedsdk/ssh/rotatenonblocking"
            | "/vedsdk/ssh/retryrotation"
            | "/vedsdk/ssh/cancelrotation"
            | "/vedsdk/ssh/rollbacknonblocking"
            | "/vedsdk/ssh/skipkeyrotation"
            | "/vedsdk/ssh/confirmselfservicekeyinstallation"
            | "/vedsdk/confirmselfservicekeyinstallation"
    )
}

#[cfg(feature = "fuzzing")]
pub(super) fn fuzz_request(body: &[u8]) {
    let _ = crate::fuzzing::json::<KeysetBody>(body);
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeysetBody {
    keyset_id: Option<String>,
    key_id: Option<i64>,
    options: Option<u32>,
    /// Accepted and ignored: keyport has no per-device skip during a rotation.
    #[allow(dead_code)]
    allow_skip_on_rotation: Option<bool>,
}

/// Both shapes (see the module doc); `Response` carries the 503 mark `ssh_response` looks for.
fn both(r: Value) -> Value {
    let mut v = r.clone();
    v.as_object_mut().map(|o| o.remove(super::UNAVAILABLE_MARK));
    v["Response"] = r;
    v
}

/// A rotation call's failure: a conflict is TPP's 18 ImproperKeysetStage (or 8 when a
/// rotation already runs); the rest as every SSH call.
fn rotation_failure(e: CoreError) -> Value {
    match &e {
        CoreError::Conflict(m) if m.contains("already has a rotation under way") => failure(OPERATION_IS_ALREADY_RUNNING, m.clone()),
        CoreError::Conflict(m) => failure(IMPROPER_KEYSET_STAGE, m.clone()),
        CoreError::NotFound(m) => failure(codes::KEYSET_NOT_FOUND, m.clone()),
        _ => core_failure(e),
    }
}

pub async fn dispatch(app: &SharedApp, who: &Principal, path: &str, body: &[u8]) -> Value {
    let req: KeysetBody = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return both(failure(codes::BAD_KEY_FORMAT, format!("bad request: {e}"))),
    };
    let result = async {
        if path == "/vedsdk/ssh/skipkeyrotation" {
            let key_id = req.key_id.ok_or_else(|| CoreError::invalid("bad_request", "KeyId is required"))?;
            let id = super::keyport_id(app, key_id)?;
            return rotation::skip_key(app, who, &id).map(|_| ());
        }
        let id = req.keyset_id.as_deref().ok_or_else(|| CoreError::NotFound("KeysetId is required".into()))?;
        let k = rotation::by_id(app, who, id)?;
        match path {
            "/vedsdk/ssh/rotate" | "/vedsdk/ssh/rotatenonblocking" => rotation::rotate(app, who, &k, req.options).await.map(|_| ()),
            "/vedsdk/ssh/retryrotation" => rotation::retry(app, who, &k).await.map(|_| ()),
            "/vedsdk/ssh/cancelrotation" | "/vedsdk/ssh/rollbacknonblocking" => rotation::cancel(app, who, &k).await.map(|_| ()),
            _ => rotation::confirm(app, who, &k).map(|_| ()),
        }
    }
    .await;
    let r = match result {
        Ok(()) => json!({"Success": true}),
        Err(e) => rotation_failure(e),
    };
    both(r)
}

/// `KeyData` of a version's key.
fn key_data(app: &SharedApp, view: &KeysetView, v: &rotation::VersionView, public: bool) -> Option<Value> {
    let rec = app.store.key(&v.version.key_id).ok()??;
    let (alg, len) = super::ssh_algorithm(&rec)?;
    let host = view.keyset.kind == "Host";
    let kind = match (host, public) {
        (false, false) => "UserPrivateKey",
        (false, true) => "Authorized",
        (true, false) => "HostPrivate",
        (true, true) => "HostPublic",
    };
    let pending = v.version.state == "pending";
    Some(json!({
        "KeyId": app.store.tpp_key_id(&rec.id).ok()?,
        "KeysetId": view.keyset.id,
        "Type": kind,
        "Algorithm": alg,
        "Length": len,
        "Format": "OpenSSH",
        "FingerprintSHA256": rec.fingerprint,
        "Notes": format!("{} v{} ({})", rec.name, v.version.version, v.version.state),
        "Username": rec.owner,
        "ActiveFrom": v.version.activated_at.unwrap_or(v.version.created_at),
        "IsEncrypted": true,
        "RotationStage": if pending { view.stage } else { Stage::Complete.code() },
        "ProcessStatus": 0,
        "ViolationStatus": [],
    }))
}

/// `KeySetData` of a keyset: the active and (during a rotation) pending versions, private and
/// public; the pending one first, so a device finds the key to install at the front.
pub fn keyset_data(app: &SharedApp, view: &KeysetView) -> Value {
    let current: Vec<&rotation::VersionView> = view.pending().into_iter().chain(view.active()).collect();
    let private: Vec<Value> = current.iter().filter_map(|v| key_data(app, view, v, false)).collect();
    let public: Vec<Value> = current.iter().filter_map(|v| key_data(app, view, v, true)).collect();
    let active = view.active();
    let (alg, len) =
        active.and_then(|a| app.store.key(&a.version.key_id).ok().flatten()).and_then(|r| super::ssh_algorithm(&r)).unwrap_or(("", 0));
    json!({
        "KeysetId": view.keyset.id,
        "Access": format!("{}/{}", view.keyset.namespace, view.keyset.name),
        "Type": view.keyset.kind,
        "Algorithm": alg,
        "Length": len,
        "FingerprintSHA256": active.and_then(|a| a.fingerprint.clone()),
        "LastRotationDate": view.keyset.last_rotation_at,
        "ProcessStatus": view.process_status,
        "ProcessError": view.rotation.as_ref().and_then(|r| r.error.clone()),
        "RotationStage": view.stage,
        "PrivateKeys": private,
        "PublicKeys": public,
        "ViolationStatus": [],
    })
}

/// `GET SSH/KeysetDetails?KeysetId=` of a keyset's 40-hex id; `None` when it is no keyset (the
/// caller then looks among single keys).
pub fn keyset_get(app: &SharedApp, who: &Principal, id: &str) -> Option<Value> {
    let k = rotation::by_id(app, who, id).ok()?;
    let view = rotation::show(app, k).ok()?;
    let mut v = keyset_data(app, &view);
    v["Response"] = json!({"Success": true});
    Some(v)
}

/// Every keyset the caller may see, for `POST SSH/KeysetDetails`, and the key ids they hold
/// (those keys are not listed again as keysets of their own).
pub fn keysets(app: &SharedApp, who: &Principal) -> Result<(Vec<Value>, std::collections::HashSet<String>), CoreError> {
    let mut held = std::collections::HashSet::new();
    let mut out = Vec::new();
    for view in rotation::list(app, who)? {
        held.extend(view.versions.iter().map(|v| v.version.key_id.clone()));
        out.push(keyset_data(app, &view));
    }
    Ok((out, held))
}
