//! Which face a path belongs to, and errors the router itself gives (no route, a method the
//! path does not take, an extractor's plain-text rejection) in that face's JSON error shape,
//! so a vendor client parses every answer it gets (issue 15: "every error, including 404/405
//! from the router, has the JSON error shape of its face").

use super::json::Json;
use axum::extract::{Request, State};
use axum::http::header::{ALLOW, CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::core::SharedApp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    Native,
    Tlspc,
    CertImport,
    Kps,
    ApiOps,
    Tpp,
}

impl Face {
    /// The face that owns `path` (by its first segment; TPP's ignore case).
    pub fn of(path: &str) -> Face {
        let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
        match first {
            "v1" | "outagedetection" => Face::Tlspc,
            "iot" => Face::CertImport,
            "v3" => Face::Kps,
            "apiops" => Face::ApiOps,
            f if f.eq_ignore_ascii_case("vedauth") || f.eq_ignore_ascii_case("vedsdk") => Face::Tpp,
            _ => Face::Native,
        }
    }

    /// An error in this face's shape. `message` says what is wrong and what to do.
    pub fn error(self, status: StatusCode, message: String) -> Response {
        match self {
            Face::Native => {
                let code = match status {
                    StatusCode::NOT_FOUND => "not_found",
                    StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
                    StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                    s if s.is_server_error() => "internal",
                    _ => "invalid_request",
                };
                super::error::ApiError::new(status, code, message).into_response()
            }
            Face::Tlspc => {
                use super::tlspc::codes;
                let code = match status {
                    StatusCode::NOT_FOUND => codes::NOT_FOUND,
                    StatusCode::PAYLOAD_TOO_LARGE => codes::BODY_TOO_LARGE,
                    s if s.is_server_error() => codes::INTERNAL,
                    _ => codes::INVALID_REQUEST,
                };
                super::tlspc::VendorError::new(status, code, message).into_response()
            }
            Face::CertImport => {
                let code = match status {
                    StatusCode::NOT_FOUND => "resource_not_found",
                    StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
                    s if s.is_server_error() => "internal_error",
                    _ => "invalid_input",
                };
                (status, Json(json!({"errors": [{"code": code, "message": message}]}))).into_response()
            }
            Face::Kps => {
                use super::kps::codes;
                // What Huawei Cloud's API gateway answers for an API that does not exist.
                let code = match status {
                    StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => "APIG.0101",
                    s if s.is_server_error() => codes::RESPONSE,
                    _ => codes::PARAMETER,
                };
                super::kps::KpsError::new(status, code, message).into_response()
            }
            Face::ApiOps => super::keys::VendorError::new(status, message).into_response(),
            Face::Tpp => (status, Json(json!({"Error": message}))).into_response(),
        }
    }

    fn hint(self) -> &'static str {
        match self {
            Face::Native => "the native API lives under /keyport/v1/",
            Face::Tlspc => "this TLS Protect Cloud face serves /v1/useraccounts, /v1/edgeinstances, /v1/edgeencryptionkeys and /outagedetection/v1/certificates/imports",
            Face::CertImport => "this face serves /iot/api/v1/certificate-import/{enrollment_profile_id} and …/job/{job_id}",
            Face::Kps => "this KPS face serves /v3/{project_id}/keypairs… and its tasks",
            Face::ApiOps => "this face serves /apiops/projects/{project}/keys/…",
            Face::Tpp => "this face serves the WebSDK's /vedauth/ token calls and /vedsdk/SSH/ calls",
        }
    }
}

/// A 404 for a path no route takes, in its face's shape.
pub fn no_route(path: &str) -> Response {
    let face = Face::of(path);
    face.error(StatusCode::NOT_FOUND, format!("no route for {path:?}; {} (GET /keyport/v1/openapi.json lists every route)", face.hint()))
}

/// The router's fallback: TPP paths go to its dispatcher (they ignore case), the rest get a
/// 404 in their face's shape.
pub async fn fallback(State(app): State<SharedApp>, req: Request) -> Response {
    if super::tpp::owns(req.uri().path()) {
        super::tpp::dispatch(app, req).await
    } else {
        no_route(req.uri().path())
    }
}

fn is_json(r: &Response) -> bool {
    r.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("json"))
}

/// Rewrites an error the router or an extractor answered in plain text (axum's 405, a query
/// string or path it could not parse) to `method` `path` into the face's shape, keeping its
/// status and its `Allow`, `Retry-After` and `Connection` headers. Answers that are JSON
/// already are left alone. `access::answer` calls it on every answer.
pub async fn shape(method: &Method, path: &str, r: Response) -> Response {
    let status = r.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&r) || method == Method::HEAD {
        return r;
    }
    let (parts, body) = r.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.map(|b| String::from_utf8_lossy(&b).trim().to_string()).unwrap_or_default();
    let face = Face::of(path);
    let allow = parts.headers.get(ALLOW).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => format!("{method} is not allowed on {path:?}; it takes: {allow}"),
        StatusCode::NOT_FOUND if text.is_empty() => return no_route(path),
        _ if text.is_empty() => status.canonical_reason().unwrap_or("error").to_string(),
        _ => text,
    };
    let mut out = face.error(status, message);
    for h in [ALLOW, RETRY_AFTER, CONNECTION] {
        if let Some(v) = parts.headers.get(&h) {
            out.headers_mut().insert(h, v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use serde_json::Value;
    use tower::ServiceExt;

    /// [`shape`] as a middleware, as `access::answer` applies it.
    async fn shape_errors(req: Request, next: axum::middleware::Next) -> Response {
        let (method, path) = (req.method().clone(), req.uri().path().to_string());
        let r = next.run(req).await;
        shape(&method, &path, r).await
    }

    /// One route per face, behind the same layer and fallback shape as `api::router`.
    fn router() -> axum::Router {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Q {
            n: u32,
        }
        let ok = || get(|axum::extract::Query(_): axum::extract::Query<Q>| async { "ok" });
        axum::Router::new()
            .route("/keyport/v1/keys", ok())
            .route("/v1/edgeinstances", ok())
            .route("/iot/api/v1/certificate-import/job/{id}", ok())
            .route("/v3/{p}/keypairs", ok())
            .route("/apiops/projects/{p}/keys", ok())
            .route("/vedsdk/x", ok())
            .fallback(|uri: axum::http::Uri| async move { no_route(uri.path()) })
            .layer(axum::middleware::from_fn(shape_errors))
    }

    async fn call(method: &str, uri: &str) -> (StatusCode, Option<String>, Value) {
        let req = Request::builder().method(method).uri(uri).body(axum::body::Body::empty()).unwrap();
        let r = router().oneshot(req).await.unwrap();
        let allow = r.headers().get(ALLOW).map(|v| v.to_str().unwrap().to_string());
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), usize::MAX).await.unwrap();
        (status, allow, serde_json::from_slice(&body).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&body))))
    }

    /// What each face's clients read as the error's text.
    fn message(face: Face, v: &Value) -> String {
        let m = match face {
            Face::Native => &v["error"]["message"],
            Face::Tlspc | Face::CertImport => &v["errors"][0]["message"],
            Face::Kps => &v["error_msg"],
            Face::ApiOps => &v["resultMessage"],
            Face::Tpp => &v["Error"],
        };
        m.as_str().unwrap_or_else(|| panic!("{face:?}: no message in {v}")).to_string()
    }

    #[tokio::test]
    async fn router_404_405_and_rejections_are_in_each_faces_shape() {
        let faces = [
            (Face::Native, "/keyport/v1/keys", "/keyport/v1/nope"),
            (Face::Tlspc, "/v1/edgeinstances", "/v1/nope"),
            (Face::CertImport, "/iot/api/v1/certificate-import/job/1", "/iot/nope"),
            (Face::Kps, "/v3/p/keypairs", "/v3/p/nope"),
            (Face::ApiOps, "/apiops/projects/p/keys", "/apiops/nope"),
            (Face::Tpp, "/vedsdk/x", "/vedsdk/nope/x"),
        ];
        for (face, route, missing) in faces {
            let (s, _, v) = call("GET", missing).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{face:?} {v}");
            assert!(message(face, &v).contains("no route"), "{face:?} {v}");
            let (s, allow, v) = call("DELETE", &format!("{route}?n=1")).await;
            assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{face:?} {v}");
            assert!(allow.is_some_and(|a| a.contains("GET")), "{face:?}: Allow is kept");
            assert!(message(face, &v).contains("DELETE is not allowed"), "{face:?} {v}");
            let (s, _, v) = call("GET", &format!("{route}?n=x")).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{face:?} {v}");
            assert!(message(face, &v).contains("query"), "{face:?}: the rejection's text is the message: {v}");
        }
        // Shapes exactly as each face's own errors.
        let (_, _, v) = call("GET", "/v1/nope").await;
        assert_eq!(v["errors"][0]["code"], super::super::tlspc::codes::NOT_FOUND);
        let (_, _, v) = call("GET", "/v3/p/nope").await;
        assert_eq!(v["error_code"], "APIG.0101");
        let (_, _, v) = call("GET", "/apiops/nope").await;
        assert_eq!(v["status"], "FAILURE");
        let (_, _, v) = call("GET", "/iot/nope").await;
        assert_eq!(v["errors"][0]["code"], "resource_not_found");
        let (_, _, v) = call("DELETE", "/keyport/v1/keys").await;
        assert_eq!(v["error"]["code"], "method_not_allowed");
        assert_eq!(Face::of("/VedAuth/authorize/oauth"), Face::Tpp);
    }
}
