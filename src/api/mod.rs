//! HTTP: listeners, authentication, the JSON error shape, and one module per face.
//!
//! Both listeners serve the same router. The connection layer (`listen`) captures who the
//! peer is (SO_PEERCRED on the socket, the address on TCP) and puts it in the request's
//! extensions; `auth` turns that plus any API key into a principal; faces call the core.

pub mod access;
pub mod activation;
pub mod agent;
pub mod audit;
pub mod auth;
pub mod body;
pub mod certificates;
pub mod certimport;
pub mod error;
pub mod faces;
pub mod import;
pub mod json;
pub mod keys;
pub mod keysets;
pub mod kps;
pub mod listen;
pub mod metrics;
pub mod native;
pub mod openapi;
pub mod request;
pub mod sign;
pub mod slots;
pub mod ssh_certificates;
pub mod sync;
pub mod tls;
pub mod tlspc;
pub mod tpp;

use axum::Router;

use crate::core::SharedApp;

/// The sync worker when `[sync]` is configured, for the faces that show or drive it.
#[derive(Clone, Default)]
pub struct SyncWorker(pub Option<std::sync::Arc<crate::sync::Syncer>>);

/// Every face's routes on one router, flat: each module's routes carry their whole path, so no
/// request pays for a nested router's prefix rewrite. [`answerer`] puts it behind the one
/// outer middleware.
pub fn router(app: SharedApp, syncer: Option<std::sync::Arc<crate::sync::Syncer>>) -> Router {
    // The routes that show or drive the sync worker get it as an extension: a layer on these
    // alone, as every layer costs each request of the routes it wraps.
    let with_sync = native::health_routes().merge(sync::routes()).merge(metrics::routes()).layer(axum::Extension(SyncWorker(syncer)));
    Router::new()
        .merge(native::routes())
        .merge(with_sync)
        .merge(certificates::routes())
        .merge(sign::routes())
        .merge(audit::routes())
        .merge(import::routes())
        .merge(openapi::routes())
        .merge(ssh_certificates::routes())
        .merge(keysets::routes())
        .merge(tlspc::routes())
        .merge(kps::routes())
        .merge(keys::routes())
        .merge(certimport::routes())
        .merge(tpp::routes())
        .route_layer(access::NoteRoute)
        .fallback(faces::fallback)
        .with_state(app)
}

/// What a listener calls for each request: `router` behind `access::answer` (request id, error
/// shapes, `Retry-After`, access log, metrics, audit of refusals), which is most of the
/// per-request cost a `GET keys/{id}` has beyond hyper's own.
pub fn answerer(app: SharedApp, router: Router) -> listen::Answer {
    let shared = std::sync::Arc::new((app, router));
    std::sync::Arc::new(move |req| {
        let shared = shared.clone();
        Box::pin(async move {
            let (app, router) = &*shared;
            access::answer(app.clone(), router, req).await
        })
    })
}
