//! The Venafi TPP WebSDK SSH face (seed 003). (Placeholder: routes land with that work.)

use axum::Router;

use crate::core::SharedApp;

pub fn routes() -> Router<SharedApp> {
    Router::new()
}
