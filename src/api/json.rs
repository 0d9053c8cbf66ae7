//! Every face's JSON answers: axum's `Json`, serialized into a `Vec` sized for a key's record
//! at once. axum's writes through a `BytesMut` writer that starts at 128 bytes and grows by
//! copying (twice for a key's ≈ 330 bytes); this alone took `GET keys/{id}` from 0.63-0.67 to
//! 0.75-0.77 of a minimal hyper server (BENCHMARKS.md, 2026-12-04, third session).

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Room for a key's record (its JSON is ≈ 330 bytes) without growing the buffer.
const FIRST_CAPACITY: usize = 512;

pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        let mut buf = Vec::with_capacity(FIRST_CAPACITY);
        match serde_json::to_writer(&mut buf, &self.0) {
            Ok(()) => ([(CONTENT_TYPE, HeaderValue::from_static("application/json"))], Body::from(buf)).into_response(),
            // As axum's: a value that cannot be written as JSON is a bug, said plainly.
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("the answer could not be written as JSON: {e}")).into_response(),
        }
    }
}
