//! The OpenAPI 3.1 description of every face, generated from the code with `utoipa` and
//! served at `GET /keyport/v1/openapi.json` (any authenticated caller).
//!
//! The `#[utoipa::path]` declarations live here, on documentation-only functions named after
//! the real routes (`native`, `vendor`), so handlers stay as they are; `schemas` holds each
//! face's error shape and the bodies its handlers build. A unit test reads every router's
//! source and fails when a registered route is missing from the document (or the reverse), so
//! the two cannot drift; `tests/openapi.rs` runs schemathesis against a live daemon.

mod native;
#[cfg(test)]
pub mod routes;
pub mod schemas;
mod vendor;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::auth::Caller;
use crate::core::SharedApp;

const DESCRIPTION: &str = "keyport keeps keys in a PKCS#11 token and serves them over a Unix socket and loopback HTTPS \
through its native API (`/keyport/v1/`) and vendor faces that mirror TLS Protect Cloud, DigiCert ONE IoT certificate import, \
Huawei Cloud KPS, Apinizer API Ops keys and the Venafi TPP WebSDK. Each face answers errors in its vendor's shape.\n\n\
Callers are identified by one rule for every face: every API key the request carries (`X-Api-Key`, `Authorization: Bearer`, \
or the face's own header) must be known and name one principal; with no key, a Unix-socket caller is identified by its peer \
credentials (SO_PEERCRED uid, then primary gid) — the empty security requirement `{}` on an operation stands for that. \
A loopback TCP caller without a key is refused. TPP's calls take the bearer token of `POST /vedauth/authorize/oauth` instead; \
KPS also takes the vendor's SDK-HMAC-SHA256 AK/SK signature. `GET /keyport/v1/health/live` takes no credential at all.\n\n\
The optional metrics-only listener (`[metrics] listen`) is another port and not described here: it serves \
`GET /metrics` and `GET /keyport/v1/metrics` (the Prometheus text of `GET /keyport/v1/metrics`, without namespace names) \
and `GET /keyport/v1/health/live`, with no authentication, and nothing else.";

#[derive(OpenApi)]
#[openapi(
    info(title = "keyport", description = DESCRIPTION),
    modifiers(&Security),
    // The error shapes are named by the `IntoResponses` enums, which do not collect them.
    components(schemas(
        schemas::NativeError, schemas::NativeErrorBody, schemas::TlspcError, schemas::TlspcErrorItem, schemas::IotError,
        schemas::IotErrorItem, schemas::KpsError, schemas::ApiOpsError, schemas::TppOAuthError, schemas::TppError,
        schemas::TppFailure, schemas::TppServerFailure, schemas::TppErrorAnswer, schemas::TppSshFailure, schemas::SshWebResponse,
    )),
    tags(
        (name = "native", description = "keyport's own API under /keyport/v1/"),
        (name = "tlspc", description = "TLS Protect Cloud: edge instance and private-key import (vcert, VenafiPS, pyVenafi)"),
        (name = "certimport", description = "DigiCert ONE IoT Trust Manager certificate import"),
        (name = "kps", description = "Huawei Cloud KPS (DEW key pair service)"),
        (name = "apiops", description = "Apinizer API Ops project keys"),
        (name = "tpp", description = "Venafi TPP WebSDK SSH calls and OAuth tokens (paths ignore case)"),
    ),
    paths(
        native::health, native::health_live, native::health_keys, native::audit, native::import_key,
        native::attach_ssh_certificate, native::show_ssh_certificate, native::detach_ssh_certificate,
        native::list_keysets, native::create_keyset, native::show_keyset, native::delete_keyset, native::keyset_action, native::public_key, native::openapi, native::list_keys, native::generate_key, native::show_key, native::delete_key,
        native::export_key, native::sign_key, native::list_certificates, native::delete_certificate, native::sync_status,
        native::sync_trigger, native::sync_csr, native::sync_restore, native::metrics,
        vendor::tlspc_user_accounts, vendor::tlspc_edge_instances, vendor::tlspc_edge_instances_slash, vendor::tlspc_edge_instance,
        vendor::tlspc_encryption_keys, vendor::tlspc_encryption_keys_slash, vendor::tlspc_encryption_key,
        vendor::tlspc_submit_import, vendor::tlspc_import_status,
        vendor::certimport_submit, vendor::certimport_job,
        vendor::kps_create, vendor::kps_list, vendor::kps_show, vendor::kps_update, vendor::kps_delete, vendor::kps_clear_private_key,
        vendor::kps_import_private_key, vendor::kps_export_private_key, vendor::kps_batch_export, vendor::kps_batch_import,
        vendor::kps_associate, vendor::kps_batch_associate, vendor::kps_disassociate, vendor::kps_task, vendor::kps_running_tasks,
        vendor::kps_failed_tasks, vendor::kps_delete_failed_tasks, vendor::kps_delete_failed_task,
        vendor::apiops_list, vendor::apiops_create, vendor::apiops_import, vendor::apiops_get, vendor::apiops_update,
        vendor::apiops_delete, vendor::apiops_export,
        vendor::apiops_list_slash, vendor::apiops_create_slash, vendor::apiops_import_slash, vendor::apiops_get_slash,
        vendor::apiops_update_slash, vendor::apiops_delete_slash, vendor::apiops_export_slash,
        vendor::tpp_authorize, vendor::tpp_refresh, vendor::tpp_verify, vendor::tpp_revoke, vendor::tpp_version,
        vendor::tpp_keyset_by_id, vendor::tpp_keyset_details, vendor::tpp_key_details, vendor::tpp_export_private,
        vendor::tpp_export_authorized, vendor::tpp_import_private,
        vendor::tpp_rotate, vendor::tpp_rotate_nonblocking, vendor::tpp_retry_rotation, vendor::tpp_cancel_rotation,
        vendor::tpp_rollback_nonblocking, vendor::tpp_skip_key_rotation, vendor::tpp_confirm_installation,
        vendor::tpp_confirm_installation_bare,
    )
)]
pub struct ApiDoc;

/// The security schemes every operation names.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        let header = |name: &str, what: &str| SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(name, what)));
        c.add_security_scheme("apiKey", header("X-Api-Key", "A keyport API key (any face)."));
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A keyport API key as a bearer token (any face; API Ops' personal access token)."))
                    .build(),
            ),
        );
        c.add_security_scheme("tlspcApiKey", header("tppl-api-key", "TLS Protect Cloud's API key header (a keyport API key)."));
        c.add_security_scheme("kpsToken", header("X-Auth-Token", "KPS: a keyport API key in the IAM token header."));
        c.add_security_scheme(
            "kpsSignature",
            header(
                "Authorization",
                "KPS: `SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=…, Signature=…` with `X-Sdk-Date`, the Huawei Cloud SDK's \
                 AK/SK signature ([kps.credentials]); each signature is accepted once.",
            ),
        );
        c.add_security_scheme(
            "tppBearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "TPP: the access token of POST /vedauth/authorize/oauth (also accepted in X-Venafi-API-Key); scopes `ssh`, `ssh:discover`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as JSON text (built once).
pub fn json() -> &'static str {
    static DOC: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_string();
        let mut v = serde_json::to_value(&doc).expect("serializable");
        // The Unix-socket peer has no OpenAPI scheme type: named as an extension.
        v["components"]["x-keyport-unix-peer"] = serde_json::json!({
            "description": "A Unix-socket caller with no API key is identified by SO_PEERCRED: the principal whose uids hold its uid, else whose gids hold its primary gid. Operations list it as the empty security requirement {}."
        });
        serde_json::to_string_pretty(&v).expect("serializable")
    });
    &DOC
}

pub fn routes() -> Router<SharedApp> {
    Router::new().route("/keyport/v1/openapi.json", get(serve))
}

async fn serve(Caller(_): Caller) -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], json())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// (METHOD, path) of every operation in the document; TPP paths lower-cased (TPP ignores case).
    fn documented() -> BTreeSet<(String, String)> {
        let v: serde_json::Value = serde_json::from_str(super::json()).unwrap();
        let mut out = BTreeSet::new();
        for (path, ops) in v["paths"].as_object().unwrap() {
            for m in ops.as_object().unwrap().keys() {
                out.insert((m.to_ascii_uppercase(), super::routes::normalize(path)));
            }
        }
        out
    }

    #[test]
    fn every_registered_route_is_documented_and_every_documented_one_registered() {
        let registered: BTreeSet<(String, String)> =
            super::routes::registered().into_iter().map(|(m, p)| (m, super::routes::normalize(&p))).collect();
        let documented = documented();
        let missing: Vec<_> = registered.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&registered).collect();
        assert!(missing.is_empty(), "routes the routers register that the OpenAPI document lacks: {missing:?}");
        assert!(extra.is_empty(), "operations in the OpenAPI document no router registers: {extra:?}");
        assert!(registered.len() > 60, "the route scan found only {} routes", registered.len());
    }

    /// The metrics-only listener is not in the document (another port, no authentication);
    /// the description names its routes, and liveness is the one documented route that takes
    /// no credential.
    #[test]
    fn metrics_listener_is_described_and_liveness_takes_no_credential() {
        let listener: BTreeSet<(String, String)> = super::routes::metrics_listener().into_iter().collect();
        let want: BTreeSet<(String, String)> = [("GET", "/metrics"), ("GET", "/keyport/v1/metrics"), ("GET", "/keyport/v1/health/live")]
            .into_iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(listener, want, "the metrics-only listener's routes changed: update the document's description");
        let v: serde_json::Value = serde_json::from_str(super::json()).unwrap();
        let description = v["info"]["description"].as_str().unwrap();
        for (_, p) in &want {
            assert!(description.contains(&format!("`GET {p}`")), "the description does not name the metrics listener's {p}");
        }
        for (path, ops) in v["paths"].as_object().unwrap() {
            for (m, op) in ops.as_object().unwrap() {
                let open = op.get("security").is_none();
                assert_eq!(open, path == "/keyport/v1/health/live", "{m} {path}: security {:?}", op.get("security"));
            }
        }
    }

    #[test]
    fn is_openapi_3_1_with_every_face_and_security_scheme() {
        let v: serde_json::Value = serde_json::from_str(super::json()).unwrap();
        assert!(v["openapi"].as_str().unwrap().starts_with("3.1"), "{}", v["openapi"]);
        for s in ["apiKey", "bearer", "tlspcApiKey", "kpsToken", "kpsSignature", "tppBearer"] {
            assert!(v["components"]["securitySchemes"][s].is_object(), "no security scheme {s}");
        }
        for e in ["NativeError", "TlspcError", "IotError", "KpsError", "ApiOpsError", "TppOAuthError"] {
            assert!(v["components"]["schemas"][e].is_object(), "no schema {e}");
        }
        // Vendor field names, not Rust ones.
        let s = &v["components"]["schemas"];
        assert!(s["TlspcImportRequest"]["properties"]["importInformation"].is_object());
        assert!(s["ApiOpsError"]["properties"]["resultMessage"].is_object());
        assert!(s["TppImportRequest"]["properties"]["KeyContentBase64"].is_object());
        assert!(s["KpsCreateKeypair"]["properties"]["type"].is_object());
    }
}
