//! The Huawei Cloud KPS face. (Placeholder: routes land with the KPS work.)

use axum::Router;

use crate::core::SharedApp;

pub fn routes() -> Router<SharedApp> {
    Router::new()
}
