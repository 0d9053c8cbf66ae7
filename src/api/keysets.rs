//! The native API of SSH keysets and their rotation (`/keyport/v1/keysets…`); the public key a
//! hook needs is `GET /keyport/v1/keys/{id}/public` (`api::native`). Each handler parses, calls one
//! `core::rotation` operation, and renders; permissions are the core's (see its module doc).

use super::json::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::body::JsonBody;
use super::error::ApiError;
use crate::core::rotation::{self, CreateRequest};
use crate::core::SharedApp;

pub fn routes() -> Router<SharedApp> {
    Router::new()
        .route("/keyport/v1/keysets", get(list).post(create))
        .route("/keyport/v1/keysets/{name}", get(show).delete(remove))
        .route("/keyport/v1/keysets/{name}/{action}", post(act))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NsQuery {
    namespace: Option<String>,
}

async fn list(State(app): State<SharedApp>, Caller(who): Caller, Query(q): Query<NsQuery>) -> Result<Json<Value>, ApiError> {
    let all = rotation::list(&app, &who)?;
    let keysets: Vec<_> = all.into_iter().filter(|k| q.namespace.as_ref().is_none_or(|n| *n == k.keyset.namespace)).collect();
    Ok(Json(json!({ "keysets": keysets })))
}

async fn create(
    State(app): State<SharedApp>,
    Caller(who): Caller,
    JsonBody(req): JsonBody<CreateRequest>,
) -> Result<(StatusCode, Json<rotation::KeysetView>), ApiError> {
    Ok((StatusCode::CREATED, Json(rotation::create(&app, &who, req).await?)))
}

async fn show(
    State(app): State<SharedApp>,
    Caller(who): Caller,
    Path(name): Path<String>,
    Query(q): Query<NsQuery>,
) -> Result<Json<rotation::KeysetView>, ApiError> {
    let k = rotation::find(&app, &who, q.namespace.as_deref(), &name)?;
    Ok(Json(rotation::show(&app, k)?))
}

/// `DELETE /keyport/v1/keysets/{name}`: the keyset and every version's key (409 while a
/// rotation is open).
async fn remove(
    State(app): State<SharedApp>,
    Caller(who): Caller,
    Path(name): Path<String>,
    Query(q): Query<NsQuery>,
) -> Result<Json<rotation::DeletedKeyset>, ApiError> {
    let k = rotation::find(&app, &who, q.namespace.as_deref(), &name)?;
    Ok(Json(rotation::delete(&app, &who, &k).await?))
}

/// The body of `rotate` (others take none): TPP's Options mask; unset = the policy's.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ActBody {
    options: Option<u32>,
}

async fn act(
    State(app): State<SharedApp>,
    Caller(who): Caller,
    Path((name, action)): Path<(String, String)>,
    Query(q): Query<NsQuery>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let b: ActBody = if body.iter().all(u8::is_ascii_whitespace) {
        ActBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("the request body is not the expected JSON: {e}"))
        })?
    };
    let k = rotation::find(&app, &who, q.namespace.as_deref(), &name)?;
    let r = match action.as_str() {
        "rotate" => rotation::rotate(&app, &who, &k, b.options).await?,
        "confirm" => rotation::confirm(&app, &who, &k)?,
        "cancel" => rotation::cancel(&app, &who, &k).await?,
        "retry" => rotation::retry(&app, &who, &k).await?,
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("'{other}' is not a keyset action; use rotate, confirm, cancel or retry"),
            ))
        }
    };
    Ok((StatusCode::ACCEPTED, Json(json!({ "keyset": k.name, "namespace": k.namespace, "rotation": r }))))
}
