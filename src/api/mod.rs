//! HTTP: listeners, authentication, the JSON error shape, and one module per face.
//!
//! Both listeners serve the same router. The connection layer (`listen`) captures who the
//! peer is (SO_PEERCRED on the socket, the address on TCP) and puts it in the request's
//! extensions; `auth` turns that plus any API key into a principal; faces call the core.

pub mod activation;
pub mod agent;
pub mod auth;
pub mod body;
pub mod certificates;
pub mod certimport;
pub mod error;
pub mod keys;
pub mod keysets;
pub mod kps;
pub mod listen;
pub mod metrics;
pub mod native;
pub mod sign;
pub mod slots;
pub mod sync;
pub mod tls;
pub mod tlspc;
pub mod tpp;

use axum::Router;

use crate::core::SharedApp;

/// Every face's routes on one router.
pub fn router(app: SharedApp) -> Router {
    Router::new()
        .nest(
            "/keyport/v1",
            native::routes()
                .merge(sync::routes())
                .merge(certificates::routes())
                .merge(metrics::routes())
                .merge(sign::routes())
                .merge(keysets::routes()),
        )
        .merge(tlspc::routes())
        .merge(kps::routes())
        .merge(keys::routes())
        .merge(certimport::routes())
        .merge(tpp::routes())
        .fallback(tpp::fallback)
        .with_state(app)
        .layer(axum::middleware::map_response(error::retry_after))
}
