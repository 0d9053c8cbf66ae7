//! The native API under `/keyport/v1/` (documentation only: the handlers are in `api::native`,
//! `api::sign`, `api::certificates`, `api::sync`, `api::metrics`, `api::audit`, `api::import`,
//! `api::ssh_certificates`).
#![allow(dead_code)]

use super::schemas::*;
use utoipa::IntoResponses;

/// Every error of the native API, in its one shape.
#[derive(IntoResponses)]
pub enum Errors {
    /// Any other status: 400 the request is wrong (code and message say what), 401 no or a
    /// wrong credential, 403 a missing permission, 404 no such key or route, 405 a method the
    /// path does not take, 409, 413, 422; 503 with Retry-After while a token or the store is away.
    #[response(status = "default")]
    Error(NativeError),
}

#[utoipa::path(get, path = "/keyport/v1/health", tag = "native",
    responses((status = 200, body = Health, description = "Every token and the store answer"), Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn health() {}

/// No `security`: no credential is read (a key sent is ignored), so a probe needs none.
#[utoipa::path(get, path = "/keyport/v1/health/live", tag = "native",
    description = "Liveness for supervisors and load balancers: the daemon answers HTTP. No authentication; the answer is \
always `{\"status\": \"alive\"}` and says nothing about tokens, keys or principals (`GET /keyport/v1/health` does). Also \
served on the metrics-only listener.",
    responses((status = 200, body = Live, description = "The daemon answers")))]
pub fn health_live() {}

#[utoipa::path(get, path = "/keyport/v1/health/keys", tag = "native",
    responses((status = 200, body = KeyHistories, description = "Each key the caller may read, with its token's flags and whether it was ever outside the token"), Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn health_keys() {}

#[utoipa::path(get, path = "/keyport/v1/audit", tag = "native",
    params(
        ("since" = Option<String>, Query, description = "Entries at or after this RFC 3339 time or date (2026-01-31)"),
        ("key" = Option<String>, Query, description = "Entries about this key id"),
        ("principal" = Option<String>, Query, description = "Entries by this principal"),
        ("limit" = Option<u32>, Query, description = "Entries per page, 1-1000 (default 100)"),
        ("before" = Option<i64>, Query, description = "`next_before` of the previous page"),
    ),
    responses((status = 200, body = AuditPage, description = "Needs admin on `*`; newest first"), Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn audit() {}

#[utoipa::path(post, path = "/keyport/v1/keys/import", tag = "native", request_body = ImportKeyRequest,
    responses(
        (status = 201, body = Imported, description = "Needs import on the namespace; the key is in the token"),
        (status = 200, body = Imported, description = "The same key is already held in the namespace: nothing was written"),
        Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn import_key() {}

#[utoipa::path(put, path = "/keyport/v1/keys/{id}/ssh-certificate", tag = "native", params(("id" = String, Path)),
    request_body = SshCertificateAttach,
    responses((status = 200, body = SshCertificate, description = "Attached (replacing any); needs read (or owning the key) and import"), Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn attach_ssh_certificate() {}

#[utoipa::path(get, path = "/keyport/v1/keys/{id}/ssh-certificate", tag = "native", params(("id" = String, Path)),
    responses((status = 200, body = SshCertificate, description = "Needs read (or owning the key); 404 when none is attached"), Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn show_ssh_certificate() {}

#[utoipa::path(delete, path = "/keyport/v1/keys/{id}/ssh-certificate", tag = "native", params(("id" = String, Path)),
    responses((status = 200, body = SshCertificateDetached, description = "Needs read (or owning the key) and manage; 404 when none is attached"), Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn detach_ssh_certificate() {}

#[utoipa::path(get, path = "/keyport/v1/keys/{id}/public", tag = "native",
    params(("id" = String, Path), ("format" = Option<String>, Query, description = "`openssh` (default; 422 for a key type SSH has no form for) or `pem`")),
    responses((status = 200, body = PublicKey, description = "Needs read (or owning the key)"), Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn public_key() {}

#[utoipa::path(get, path = "/keyport/v1/keysets", tag = "native",
    params(("namespace" = Option<String>, Query, description = "Only this namespace")),
    responses((status = 200, body = Keysets, description = "Keysets the caller may read (or owns)"), Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn list_keysets() {}

#[utoipa::path(post, path = "/keyport/v1/keysets", tag = "native", request_body = KeysetCreate,
    responses((status = 201, body = Keyset, description = "Needs manage; the first version is generated (or adopted)"), Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn create_keyset() {}

#[utoipa::path(get, path = "/keyport/v1/keysets/{name}", tag = "native",
    params(("name" = String, Path, description = "The keyset's name, or its 40-hex id"), ("namespace" = Option<String>, Query, description = "Default `default`")),
    responses((status = 200, body = Keyset, description = "Needs read (or owning it)"), Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn show_keyset() {}

#[utoipa::path(delete, path = "/keyport/v1/keysets/{name}", tag = "native",
    params(("name" = String, Path, description = "The keyset's name, or its 40-hex id"), ("namespace" = Option<String>, Query, description = "Default `default`")),
    responses((status = 200, body = KeysetDeleted, description = "Needs manage; every version's key is deleted from the token and the inventory. 409 while a rotation is open"), Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn delete_keyset() {}

#[utoipa::path(post, path = "/keyport/v1/keysets/{name}/{action}", tag = "native",
    params(
        ("name" = String, Path, description = "The keyset's name, or its 40-hex id"),
        ("action" = String, Path, description = "`rotate`, `confirm`, `cancel` or `retry`"),
        ("namespace" = Option<String>, Query, description = "Default `default`"),
    ),
    request_body(content = KeysetAction, description = "Optional; only `rotate` reads it"),
    responses((status = 202, body = KeysetActed, description = "Needs read (or owning it) and manage; `confirm` also with export-private. 409 when the rotation's stage does not allow the action"), Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn keyset_action() {}

#[utoipa::path(get, path = "/keyport/v1/openapi.json", tag = "native",
    responses((status = 200, description = "This document", content_type = "application/json"), Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn openapi() {}

#[utoipa::path(get, path = "/keyport/v1/keys", tag = "native",
    params(("namespace" = Option<String>, Query, description = "Only this namespace"), ("name" = Option<String>, Query, description = "Only this name"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Keys per page, 1-1000. With `limit` or `cursor` the answer is one page (1000 keys when only `cursor` is given) and carries `next_cursor` unless it is the last; with neither, every key in one answer (kept for existing scripts; page on large stores)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page, unchanged (opaque). Pages are in listing order (oldest first, then by id); a key that exists for the whole walk is listed exactly once")),
    responses((status = 200, body = KeyList, description = "Keys the caller may read, oldest first"), Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn list_keys() {}

#[utoipa::path(post, path = "/keyport/v1/keys", tag = "native", request_body = GenerateRequest,
    responses((status = 201, body = crate::store::KeyRecord, description = "Generated in the token"), Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn generate_key() {}

#[utoipa::path(get, path = "/keyport/v1/keys/{id}", tag = "native", params(("id" = String, Path)),
    responses((status = 200, body = crate::store::KeyRecord), Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn show_key() {}

#[utoipa::path(delete, path = "/keyport/v1/keys/{id}", tag = "native", params(("id" = String, Path)),
    responses((status = 200, body = Deleted, description = "Needs manage. 409 for a keyset's active or pending version: delete or rotate the keyset instead"), Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn delete_key() {}

#[utoipa::path(post, path = "/keyport/v1/keys/{id}/export", tag = "native", params(("id" = String, Path)), request_body = ExportRequest,
    responses((status = 200, body = Exported, description = "Needs export-private and an exportable key"), Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn export_key() {}

#[utoipa::path(post, path = "/keyport/v1/keys/{id}/sign", tag = "native", params(("id" = String, Path)), request_body = SignRequest,
    responses((status = 200, body = Signature, description = "Needs sign; the key stays in the token"), Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn sign_key() {}

#[utoipa::path(get, path = "/keyport/v1/certificates", tag = "native",
    params(("namespace" = Option<String>, Query), ("expiring_before" = Option<String>, Query, description = "A date (2026-01-31) or an RFC 3339 time")),
    responses((status = 200, body = CertificateList), Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn list_certificates() {}

#[utoipa::path(delete, path = "/keyport/v1/certificates/{sha256}", tag = "native", params(("sha256" = String, Path, description = "64 hex digits")),
    responses((status = 200, body = Deleted), Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn delete_certificate() {}

#[utoipa::path(get, path = "/keyport/v1/sync", tag = "native",
    responses((status = 200, description = "Sync status of the keys the caller may read", body = Object), Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn sync_status() {}

#[utoipa::path(post, path = "/keyport/v1/sync", tag = "native", request_body(content = SyncTrigger, description = "Optional"),
    responses((status = 200, body = SyncTriggered), (status = 202, body = SyncTriggered), Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn sync_trigger() {}

#[utoipa::path(post, path = "/keyport/v1/sync/csr", tag = "native", request_body(content = CsrRequest, description = "Optional"),
    responses((status = 200, description = "A CSR for the vault client key", body = Object), Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn sync_csr() {}

#[utoipa::path(post, path = "/keyport/v1/sync/restore", tag = "native", request_body(content = RestoreRequest, description = "Optional"),
    responses((status = 200, description = "What was (or would be) restored", body = Object), Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn sync_restore() {}

#[utoipa::path(get, path = "/keyport/v1/metrics", tag = "native",
    responses((status = 200, description = "Prometheus text exposition 0.0.4", body = String, content_type = "text/plain"), Errors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn metrics() {}
