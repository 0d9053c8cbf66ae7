//! The certificate import face (seed 001). (Placeholder: routes land with that work.)

use axum::Router;

use crate::core::SharedApp;

pub fn routes() -> Router<SharedApp> {
    Router::new()
}
