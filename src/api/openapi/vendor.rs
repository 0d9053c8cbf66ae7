//! The vendor faces (documentation only: the handlers are in `api::tlspc`, `api::certimport`,
//! `api::kps`, `api::keys` and `api::tpp`). Paths, fields and error shapes are the vendors'.
#![allow(dead_code)]

use super::schemas::*;
use utoipa::IntoResponses;

#[derive(IntoResponses)]
pub enum TlspcErrors {
    /// 400 a wrong request, 401 a missing or wrong `tppl-api-key` (code 1004), 403 a missing
    /// permission, 404 no such object or route, 405, 413.
    #[response(status = "default")]
    Error(TlspcError),
}

#[derive(IntoResponses)]
pub enum IotErrors {
    #[response(status = "default")]
    Error(IotError),
}

#[derive(IntoResponses)]
pub enum KpsErrors {
    /// 400 with `KPS.0002` (parameter) or `KPS.4016` (no such key pair), 401 `KPS.9001`,
    /// 403 `KPS.9003`, 404 `APIG.0101` (no such API).
    #[response(status = "default")]
    Error(KpsError),
}

#[derive(IntoResponses)]
pub enum ApiOpsErrors {
    #[response(status = "default")]
    Error(ApiOpsError),
}

#[derive(IntoResponses)]
pub enum TppAuthErrors {
    /// Any other status: OAuth's `{"error", "error_description"}` for tokens and scopes (401,
    /// 403, 429), `{"Error"}` for a method or path TPP does not serve (404), and on the SSH calls
    /// 503 with the call's own body (`Response.Success` false) while a token or the store is away.
    #[response(status = "default")]
    Error(TppErrorAnswer),
}

// --- TLS Protect Cloud ---------------------------------------------------------------------------

#[utoipa::path(get, path = "/v1/useraccounts", tag = "tlspc", responses((status = 200, body = UserAccounts), TlspcErrors),
    security(("tlspcApiKey" = []), ("apiKey" = []), ("bearer" = []), ()))]
pub fn tlspc_user_accounts() {}

#[utoipa::path(get, path = "/v1/edgeinstances", tag = "tlspc", responses((status = 200, body = EdgeInstances), TlspcErrors),
    security(("tlspcApiKey" = []), ("apiKey" = []), ("bearer" = []), ()))]
pub fn tlspc_edge_instances() {}

#[utoipa::path(get, path = "/v1/edgeinstances/", tag = "tlspc", responses((status = 200, body = EdgeInstances), TlspcErrors),
    security(("tlspcApiKey" = []), ("apiKey" = []), ("bearer" = []), ()))]
pub fn tlspc_edge_instances_slash() {}

#[utoipa::path(get, path = "/v1/edgeinstances/{id}", tag = "tlspc", params(("id" = String, Path)),
    responses((status = 200, body = EdgeInstance), TlspcErrors),
    security(("tlspcApiKey" = []), ("apiKey" = []), ("bearer" = []), ()))]
pub fn tlspc_edge_instance() {}

#[utoipa::path(get, path = "/v1/edgeencryptionkeys", tag = "tlspc", params(("edgeInstanceId" = Option<String>, Query)),
    responses((status = 200, body = EncryptionKeys), TlspcErrors),
    security(("tlspcApiKey" = []), ("apiKey" = []), ("bearer" = []), ()))]
pub fn tlspc_encryption_keys() {}

#[utoipa::path(get, path = "/v1/edgeencryptionkeys/", tag = "tlspc", params(("edgeInstanceId" = Option<String>, Query)),
    responses((status = 200, body = EncryptionKeys), TlspcErrors),
    security(("tlspcApiKey" = []), ("apiKey" = []), ("bearer" = []), ()))]
pub fn tlspc_encryption_keys_slash() {}

#[utoipa::path(get, path = "/v1/edgeencryptionkeys/{id}", tag = "tlspc", params(("id" = String, Path)),
    responses((status = 200, body = EncryptionKey), TlspcErrors),
    security(("tlspcApiKey" = []), ("apiKey" = []), ("bearer" = []), ()))]
pub fn tlspc_encryption_key() {}

#[utoipa::path(post, path = "/outagedetection/v1/certificates/imports", tag = "tlspc", request_body = TlspcImportRequest,
    responses((status = 201, body = TlspcImportJob, description = "The import job"), (status = 200, body = TlspcImportJob), TlspcErrors),
    security(("tlspcApiKey" = []), ("apiKey" = []), ("bearer" = []), ()))]
pub fn tlspc_submit_import() {}

#[utoipa::path(get, path = "/outagedetection/v1/certificates/imports/{id}", tag = "tlspc", params(("id" = String, Path)),
    responses((status = 200, body = TlspcImportJob), TlspcErrors),
    security(("tlspcApiKey" = []), ("apiKey" = []), ("bearer" = []), ()))]
pub fn tlspc_import_status() {}

// --- DigiCert ONE IoT certificate import -----------------------------------------------------------

#[utoipa::path(post, path = "/iot/api/v1/certificate-import/{enrollment_profile_id}", tag = "certimport",
    params(("enrollment_profile_id" = String, Path)),
    request_body(content = CertImportUpload, content_type = "multipart/form-data"),
    responses((status = 200, body = CertImportJob, description = "The job, PENDING"), (status = 201, body = CertImportJob), (status = 202, body = CertImportJob), IotErrors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn certimport_submit() {}

#[utoipa::path(get, path = "/iot/api/v1/certificate-import/job/{job_id}", tag = "certimport", params(("job_id" = String, Path)),
    responses((status = 200, body = CertImportJob), IotErrors),
    security(("apiKey" = []), ("bearer" = []), ()))]
pub fn certimport_job() {}

// --- Huawei Cloud KPS -------------------------------------------------------------------------------

#[utoipa::path(post, path = "/v3/{project_id}/keypairs", tag = "kps", params(("project_id" = String, Path)), request_body = KpsCreateRequest,
    responses((status = 200, body = KpsKeypairAnswer), KpsErrors), security(("kpsToken" = []), ("kpsSignature" = []), ("apiKey" = []), ()))]
pub fn kps_create() {}

#[utoipa::path(get, path = "/v3/{project_id}/keypairs", tag = "kps", params(("project_id" = String, Path), ("limit" = Option<i64>, Query), ("marker" = Option<String>, Query)),
    responses((status = 200, body = KpsKeypairs), KpsErrors), security(("kpsToken" = []), ("kpsSignature" = []), ("apiKey" = []), ()))]
pub fn kps_list() {}

#[utoipa::path(get, path = "/v3/{project_id}/keypairs/{name}", tag = "kps", params(("project_id" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = KpsKeypairAnswer), KpsErrors), security(("kpsToken" = []), ("kpsSignature" = []), ("apiKey" = []), ()))]
pub fn kps_show() {}

#[utoipa::path(put, path = "/v3/{project_id}/keypairs/{name}", tag = "kps", params(("project_id" = String, Path), ("name" = String, Path)), request_body = KpsUpdateRequest,
    responses((status = 200, description = "Updated"), KpsErrors), security(("kpsToken" = []), ("kpsSignature" = []), ("apiKey" = []), ()))]
pub fn kps_update() {}

#[utoipa::path(delete, path = "/v3/{project_id}/keypairs/{name}", tag = "kps", params(("project_id" = String, Path), ("name" = String, Path)),
    responses((status = 204, description = "Deleted"), KpsErrors), security(("kpsToken" = []), ("kpsSignature" = []), ("apiKey" = []), ()))]
pub fn kps_delete() {}

#[utoipa::path(delete, path = "/v3/{project_id}/keypairs/{name}/private-key", tag = "kps", params(("project_id" = String, Path), ("name" = String, Path)),
    responses((status = 200, description = "The private key is cleared"), (status = 202, description = "Accepted"), (status = 204, description = "Cleared"), KpsErrors),
    security(("kpsToken" = []), ("kpsSignature" = []), ("apiKey" = []), ()))]
pub fn kps_clear_private_key() {}

#[utoipa::path(post, path = "/v3/{project_id}/keypairs/private-key/import", tag = "kps", params(("project_id" = String, Path)), request_body = KpsImportRequest,
    responses((status = 200, description = "Imported", body = Object), (status = 202, description = "Accepted", body = Object), KpsErrors),
    security(("kpsToken" = []), ("kpsSignature" = []), ("apiKey" = []), ()))]
pub fn kps_import_private_key() {}

#[utoipa::path(post, path = "/v3/{project_id}/keypairs/private-key/export", tag = "kps", params(("project_id" = String, Path)), request_body = KpsNameRequest,
    responses((status = 200, body = KpsKeypairAnswer, description = "Needs export-private"), KpsErrors),
    security(("kpsToken" = []), ("kpsSignature" = []), ("apiKey" = []), ()))]
pub fn kps_export_private_key() {}

#[utoipa::path(post, path = "/v3/{project_id}/keypairs/private-key/batch-export", tag = "kps", params(("project_id" = String, Path)), request_body = Object,
    responses((status = 200, description = "A zip of the private keys", content_type = "application/zip"), KpsErrors),
    security(("kpsToken" = []), ("kpsSignature" = []), ("apiKey" = []), ()))]
pub fn kps_batch_export() {}

#[utoipa::path(post, path = "/v3/{project_id}/keypairs/batch-import", tag = "kps", params(("project_id" = String, Path)), request_body = Vec<KpsCreateRequest>,
    responses((status = 200, description = "succeeded_keypairs and failed_keypairs", body = Object), KpsErrors),
    security(("kpsToken" = []), ("kpsSignature" = []), ("apiKey" = []), ()))]
pub fn kps_batch_import() {}

#[utoipa::path(post, path = "/v3/{project_id}/keypairs/associate", tag = "kps", params(("project_id" = String, Path)), request_body = Object,
    responses((status = 200, body = Object), KpsErrors), security(("kpsToken" = []), ("kpsSignature" = []), ("apiKey" = []), ()))]
pub fn kps_associate() {}

#[utoipa::path(post, path = "/v3/{project_id}/keypairs/batch-associate", tag = "kps", params(("project_id" = String, Path)), request_body = Object,
    responses((status = 200, body = Object), KpsErrors), security(("kpsToken" = []), ("kpsSignature" = []), ("apiKey" = []), ()))]
pub fn kps_batch_associate() {}

#[utoipa::path(post, path = "/v3/{project_id}/keypairs/disassociate", tag = "kps", params(("project_id" = String, Path)), request_body = Object,
    responses((status = 200, body = Object), KpsErrors), security(("kpsToken" = []), ("kpsSignature" = []), ("apiKey" = []), ()))]
pub fn kps_disassociate() {}

#[utoipa::path(get, path = "/v3/{project_id}/tasks/{task_id}", tag = "kps", params(("project_id" = String, Path), ("task_id" = String, Path)),
    responses((status = 200, body = Object), KpsErrors), security(("kpsToken" = []), ("kpsSignature" = []), ("apiKey" = []), ()))]
pub fn kps_task() {}

#[utoipa::path(get, path = "/v3/{project_id}/running-tasks", tag = "kps", params(("project_id" = String, Path)),
    responses((status = 200, body = KpsTasks), KpsErrors), security(("kpsToken" = []), ("kpsSignature" = []), ("apiKey" = []), ()))]
pub fn kps_running_tasks() {}

#[utoipa::path(get, path = "/v3/{project_id}/failed-tasks", tag = "kps", params(("project_id" = String, Path)),
    responses((status = 200, body = KpsTasks), KpsErrors), security(("kpsToken" = []), ("kpsSignature" = []), ("apiKey" = []), ()))]
pub fn kps_failed_tasks() {}

#[utoipa::path(delete, path = "/v3/{project_id}/failed-tasks", tag = "kps", params(("project_id" = String, Path)),
    responses((status = 200, description = "Deleted"), (status = 204, description = "Deleted"), KpsErrors),
    security(("kpsToken" = []), ("kpsSignature" = []), ("apiKey" = []), ()))]
pub fn kps_delete_failed_tasks() {}

#[utoipa::path(delete, path = "/v3/{project_id}/failed-tasks/{task_id}", tag = "kps", params(("project_id" = String, Path), ("task_id" = String, Path)),
    responses((status = 200, description = "Deleted"), (status = 204, description = "Deleted"), KpsErrors),
    security(("kpsToken" = []), ("kpsSignature" = []), ("apiKey" = []), ()))]
pub fn kps_delete_failed_task() {}

// --- API Ops keys (004): each path with and without the vendor's trailing slash -------------------

#[utoipa::path(get, path = "/apiops/projects/{project}/keys/", tag = "apiops", params(("project" = String, Path)),
    responses((status = 200, body = ApiOpsList), ApiOpsErrors), security(("bearer" = []), ("apiKey" = []), ()))]
pub fn apiops_list_slash() {}
#[utoipa::path(post, path = "/apiops/projects/{project}/keys/", tag = "apiops", params(("project" = String, Path)), request_body = ApiOpsKeyDto,
    responses((status = 200, body = ApiOpsDeployment), ApiOpsErrors), security(("bearer" = []), ("apiKey" = []), ()))]
pub fn apiops_create_slash() {}
#[utoipa::path(post, path = "/apiops/projects/{project}/keys/import-file/", tag = "apiops", params(("project" = String, Path)),
    request_body(content = Object, content_type = "multipart/form-data", description = "keyType, algorithm, name, environmentName, file"),
    responses((status = 200, body = ApiOpsDeployment), ApiOpsErrors), security(("bearer" = []), ("apiKey" = []), ()))]
pub fn apiops_import_slash() {}
#[utoipa::path(get, path = "/apiops/projects/{project}/keys/{name}/", tag = "apiops", params(("project" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = ApiOpsList), ApiOpsErrors), security(("bearer" = []), ("apiKey" = []), ()))]
pub fn apiops_get_slash() {}
#[utoipa::path(put, path = "/apiops/projects/{project}/keys/{name}/", tag = "apiops", params(("project" = String, Path), ("name" = String, Path)), request_body = ApiOpsKeyDto,
    responses((status = 200, body = ApiOpsDeployment), ApiOpsErrors), security(("bearer" = []), ("apiKey" = []), ()))]
pub fn apiops_update_slash() {}
#[utoipa::path(delete, path = "/apiops/projects/{project}/keys/{name}/", tag = "apiops", params(("project" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = ApiOpsDeployment), ApiOpsErrors), security(("bearer" = []), ("apiKey" = []), ()))]
pub fn apiops_delete_slash() {}
#[utoipa::path(get, path = "/apiops/projects/{project}/keys/{name}/export-file/", tag = "apiops",
    params(("project" = String, Path), ("name" = String, Path), ("environmentName" = Option<String>, Query)),
    responses((status = 200, description = "The key file (attachment)", content_type = "application/octet-stream"), ApiOpsErrors),
    security(("bearer" = []), ("apiKey" = []), ()))]
pub fn apiops_export_slash() {}

#[utoipa::path(get, path = "/apiops/projects/{project}/keys", tag = "apiops", params(("project" = String, Path)),
    responses((status = 200, body = ApiOpsList), ApiOpsErrors), security(("bearer" = []), ("apiKey" = []), ()))]
pub fn apiops_list() {}
#[utoipa::path(post, path = "/apiops/projects/{project}/keys", tag = "apiops", params(("project" = String, Path)), request_body = ApiOpsKeyDto,
    responses((status = 200, body = ApiOpsDeployment), ApiOpsErrors), security(("bearer" = []), ("apiKey" = []), ()))]
pub fn apiops_create() {}
#[utoipa::path(post, path = "/apiops/projects/{project}/keys/import-file", tag = "apiops", params(("project" = String, Path)),
    request_body(content = Object, content_type = "multipart/form-data", description = "keyType, algorithm, name, environmentName, file"),
    responses((status = 200, body = ApiOpsDeployment), ApiOpsErrors), security(("bearer" = []), ("apiKey" = []), ()))]
pub fn apiops_import() {}
#[utoipa::path(get, path = "/apiops/projects/{project}/keys/{name}", tag = "apiops", params(("project" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = ApiOpsList), ApiOpsErrors), security(("bearer" = []), ("apiKey" = []), ()))]
pub fn apiops_get() {}
#[utoipa::path(put, path = "/apiops/projects/{project}/keys/{name}", tag = "apiops", params(("project" = String, Path), ("name" = String, Path)), request_body = ApiOpsKeyDto,
    responses((status = 200, body = ApiOpsDeployment), ApiOpsErrors), security(("bearer" = []), ("apiKey" = []), ()))]
pub fn apiops_update() {}
#[utoipa::path(delete, path = "/apiops/projects/{project}/keys/{name}", tag = "apiops", params(("project" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = ApiOpsDeployment), ApiOpsErrors), security(("bearer" = []), ("apiKey" = []), ()))]
pub fn apiops_delete() {}
#[utoipa::path(get, path = "/apiops/projects/{project}/keys/{name}/export-file", tag = "apiops",
    params(("project" = String, Path), ("name" = String, Path), ("environmentName" = Option<String>, Query)),
    responses((status = 200, description = "The key file (attachment)", content_type = "application/octet-stream"), ApiOpsErrors),
    security(("bearer" = []), ("apiKey" = []), ()))]
pub fn apiops_export() {}

// --- Venafi TPP WebSDK (paths ignore case) ---------------------------------------------------------

#[utoipa::path(post, path = "/vedauth/authorize/oauth", tag = "tpp", request_body = TppAuthorize,
    responses((status = 200, body = TppToken), TppAuthErrors), security(()))]
pub fn tpp_authorize() {}

#[utoipa::path(post, path = "/vedauth/authorize/token", tag = "tpp", request_body = TppRefresh,
    responses((status = 200, body = TppToken), TppAuthErrors), security(()))]
pub fn tpp_refresh() {}

#[utoipa::path(get, path = "/vedauth/authorize/verify", tag = "tpp",
    responses((status = 200, body = TppVerify), TppAuthErrors), security(("tppBearer" = [])))]
pub fn tpp_verify() {}

#[utoipa::path(get, path = "/vedauth/revoke/token", tag = "tpp",
    responses((status = 200, description = "Revoked"), TppAuthErrors), security(("tppBearer" = [])))]
pub fn tpp_revoke() {}

#[utoipa::path(get, path = "/vedsdk/SystemStatus/Version", tag = "tpp",
    responses((status = 200, body = TppVersion), TppAuthErrors), security(("tppBearer" = [])))]
pub fn tpp_version() {}

#[utoipa::path(get, path = "/vedsdk/SSH/KeysetDetails", tag = "tpp", params(("KeysetId" = String, Query)),
    responses((status = 200, body = TppKeyset, description = "SshWebResponse: Success false when not found"), TppAuthErrors),
    security(("tppBearer" = ["ssh"])))]
pub fn tpp_keyset_by_id() {}

#[utoipa::path(post, path = "/vedsdk/SSH/KeysetDetails", tag = "tpp", request_body = TppDetailsRequest,
    responses((status = 200, body = TppDetails), TppAuthErrors), security(("tppBearer" = ["ssh"])))]
pub fn tpp_keyset_details() {}

#[utoipa::path(post, path = "/vedsdk/SSH/KeyDetails", tag = "tpp", request_body = TppDetailsRequest,
    responses((status = 200, body = TppDetails), TppAuthErrors), security(("tppBearer" = ["ssh"])))]
pub fn tpp_key_details() {}

#[utoipa::path(post, path = "/vedsdk/SSH/ExportSelfServicePrivateKey", tag = "tpp", request_body = TppExportRequest,
    responses((status = 200, body = TppKeyMaterial), TppAuthErrors), security(("tppBearer" = ["ssh"])))]
pub fn tpp_export_private() {}

#[utoipa::path(post, path = "/vedsdk/SSH/ExportSelfServiceAuthorizedKey", tag = "tpp", request_body = TppKeyIdRequest,
    responses((status = 200, body = TppKeyMaterial), TppAuthErrors), security(("tppBearer" = ["ssh"])))]
pub fn tpp_export_authorized() {}

#[utoipa::path(post, path = "/vedsdk/SSH/ImportPrivateKey", tag = "tpp", request_body = TppImportRequest,
    responses((status = 200, body = TppImported), TppAuthErrors), security(("tppBearer" = ["ssh:discover"])))]
pub fn tpp_import_private() {}

#[utoipa::path(post, path = "/vedsdk/SSH/Rotate", tag = "tpp", request_body = TppRotationRequest,
    responses((status = 200, body = TppRotationAnswer, description = "Starts a rotation of the keyset; needs manage on the keyset's namespace (confirm: manage or export-private)"), TppAuthErrors),
    security(("tppBearer" = ["ssh:manage"])))]
pub fn tpp_rotate() {}

#[utoipa::path(post, path = "/vedsdk/SSH/RotateNonBlocking", tag = "tpp", request_body = TppRotationRequest,
    responses((status = 200, body = TppRotationAnswer, description = "Starts a rotation of the keyset; needs manage on the keyset's namespace (confirm: manage or export-private)"), TppAuthErrors),
    security(("tppBearer" = ["ssh:manage"])))]
pub fn tpp_rotate_nonblocking() {}

#[utoipa::path(post, path = "/vedsdk/SSH/RetryRotation", tag = "tpp", request_body = TppRotationRequest,
    responses((status = 200, body = TppRotationAnswer, description = "Retries a failed rotation; needs manage on the keyset's namespace (confirm: manage or export-private)"), TppAuthErrors),
    security(("tppBearer" = ["ssh:manage"])))]
pub fn tpp_retry_rotation() {}

#[utoipa::path(post, path = "/vedsdk/SSH/CancelRotation", tag = "tpp", request_body = TppRotationRequest,
    responses((status = 200, body = TppRotationAnswer, description = "Cancels the open rotation (rolls back); needs manage on the keyset's namespace (confirm: manage or export-private)"), TppAuthErrors),
    security(("tppBearer" = ["ssh:manage"])))]
pub fn tpp_cancel_rotation() {}

#[utoipa::path(post, path = "/vedsdk/SSH/RollbackNonBlocking", tag = "tpp", request_body = TppRotationRequest,
    responses((status = 200, body = TppRotationAnswer, description = "Cancels the open rotation (rolls back); needs manage on the keyset's namespace (confirm: manage or export-private)"), TppAuthErrors),
    security(("tppBearer" = ["ssh:manage"])))]
pub fn tpp_rollback_nonblocking() {}

#[utoipa::path(post, path = "/vedsdk/SSH/SkipKeyRotation", tag = "tpp", request_body = TppRotationRequest,
    responses((status = 200, body = TppRotationAnswer, description = "Marks a key (KeyId) as not to be rotated; needs manage on the keyset's namespace (confirm: manage or export-private)"), TppAuthErrors),
    security(("tppBearer" = ["ssh:manage"])))]
pub fn tpp_skip_key_rotation() {}

#[utoipa::path(post, path = "/vedsdk/SSH/ConfirmSelfServiceKeyInstallation", tag = "tpp", request_body = TppRotationRequest,
    responses((status = 200, body = TppRotationAnswer, description = "Confirms the new key is installed (stage 10350); needs manage on the keyset's namespace (confirm: manage or export-private)"), TppAuthErrors),
    security(("tppBearer" = ["ssh:manage"])))]
pub fn tpp_confirm_installation() {}

#[utoipa::path(post, path = "/vedsdk/ConfirmSelfServiceKeyInstallation", tag = "tpp", request_body = TppRotationRequest,
    responses((status = 200, body = TppRotationAnswer, description = "As SSH/ConfirmSelfServiceKeyInstallation (the vendor's example calls it without SSH/); needs manage on the keyset's namespace (confirm: manage or export-private)"), TppAuthErrors),
    security(("tppBearer" = ["ssh:manage"])))]
pub fn tpp_confirm_installation_bare() {}
