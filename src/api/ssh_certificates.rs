//! `/keyport/v1/keys/{id}/ssh-certificate`: the SSH certificate attached to a key, which the
//! ssh-agent then offers as the key's `*-cert-v01@openssh.com` identity (`core::sign::ssh_cert`).
//!
//! - `PUT` `{"certificate": "<OpenSSH certificate line>"}` (`import`): attaches or replaces it;
//!   the certificate must certify this key, verify under its CA key, and not have expired.
//! - `GET` (`read`, or the owner): the certificate and its fields.
//! - `DELETE` (`manage`): detaches it.

use super::json::Json;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::body::JsonBody;
use super::error::ApiError;
use crate::core::sign::ssh_cert::{self, SshCertView};
use crate::core::SharedApp;

pub fn routes() -> Router<SharedApp> {
    Router::new().route("/keyport/v1/keys/{id}/ssh-certificate", get(show).put(attach).delete(detach))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachBody {
    /// One line as `ssh-keygen -s` writes it (`…-cert.pub`).
    certificate: String,
}

async fn attach(
    State(app): State<SharedApp>,
    Caller(who): Caller,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<AttachBody>,
) -> Result<Json<SshCertView>, ApiError> {
    Ok(Json(ssh_cert::attach(&app, &who, &id, &req.certificate)?))
}

async fn show(State(app): State<SharedApp>, Caller(who): Caller, Path(id): Path<String>) -> Result<Json<SshCertView>, ApiError> {
    Ok(Json(ssh_cert::show(&app, &who, &id)?))
}

async fn detach(State(app): State<SharedApp>, Caller(who): Caller, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    ssh_cert::detach(&app, &who, &id)?;
    Ok(Json(json!({ "detached": id })))
}
