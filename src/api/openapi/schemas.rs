//! Schemas for the document: each face's error shape (exact: clients parse these) and the
//! bodies the handlers build with `json!` (field names as the vendors write them; fields
//! that are not always present are optional). Nothing here is used at run time.
#![allow(dead_code)]

use serde::Serialize;
use utoipa::ToSchema;

/// Any JSON value (a vendor object keyport passes through or builds field by field).
pub type Any = serde_json::Value;

// --- error shapes -------------------------------------------------------------------------------

/// The native API's error: `{"error": {"code", "message"}}`.
#[derive(Serialize, ToSchema)]
pub struct NativeError {
    pub error: NativeErrorBody,
}

#[derive(Serialize, ToSchema)]
pub struct NativeErrorBody {
    /// Machine code: `not_found`, `method_not_allowed`, `unauthenticated`, `forbidden`,
    /// `invalid_request`, `token_unavailable`, ….
    pub code: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// TLS Protect Cloud's error: `{"errors": [{"code": <number>, "message", "args"}]}`.
#[derive(Serialize, ToSchema)]
pub struct TlspcError {
    pub errors: Vec<TlspcErrorItem>,
}

#[derive(Serialize, ToSchema)]
pub struct TlspcErrorItem {
    pub code: i64,
    pub message: String,
    pub args: Vec<String>,
}

/// DigiCert ONE's error: `{"errors": [{"code": "<machine code>", "message"}]}`.
#[derive(Serialize, ToSchema)]
pub struct IotError {
    pub errors: Vec<IotErrorItem>,
}

#[derive(Serialize, ToSchema)]
pub struct IotErrorItem {
    /// `invalid_input`, `invalid_api_key`, `access_denied`, `resource_not_found`,
    /// `payload_too_large`, `internal_error`, `service_unavailable`.
    pub code: String,
    pub message: String,
}

/// Huawei Cloud KPS's error: `{"error_code": "KPS.xxxx", "error_msg"}`.
#[derive(Serialize, ToSchema)]
pub struct KpsError {
    pub error_code: String,
    pub error_msg: String,
}

/// API Ops's error: `{"status": "FAILURE", "resultMessage"}`.
#[derive(Serialize, ToSchema)]
pub struct ApiOpsError {
    /// Always `FAILURE`.
    pub status: String,
    #[serde(rename = "resultMessage")]
    pub result_message: String,
}

/// TPP's OAuth error: `{"error", "error_description"}`.
#[derive(Serialize, ToSchema)]
pub struct TppOAuthError {
    pub error: String,
    pub error_description: String,
}

/// TPP's answer to a method or path it does not serve: `{"Error": "…"}`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct TppError {
    pub error: String,
}

/// Any TPP error answer (its shapes differ by call: see the response's description).
#[derive(Serialize, ToSchema)]
pub struct TppErrorAnswer {}

/// A TPP 4xx: OAuth's shape, or `{"Error"}` for what TPP does not serve.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum TppFailure {
    OAuth(TppOAuthError),
    NotServed(TppError),
}

/// A TPP 5xx: OAuth's shape on the token paths, an SSH answer with `Response.Success` false.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum TppServerFailure {
    OAuth(TppOAuthError),
    Ssh(TppSshFailure),
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct TppSshFailure {
    pub response: Option<SshWebResponse>,
    pub ssh_web_response: Option<SshWebResponse>,
}

/// TPP's `SshWebResponse` (HTTP 200 also when `Success` is false, as TPP answers).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SshWebResponse {
    pub success: bool,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
}

// --- native -------------------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: String,
    pub version: String,
    #[schema(value_type = Vec<Object>)]
    pub tokens: Vec<Any>,
    #[schema(value_type = Object)]
    pub store: Any,
    #[schema(value_type = Vec<Object>)]
    pub problems: Vec<Any>,
    /// Features turned off because the token cannot do them.
    #[schema(value_type = Vec<Object>)]
    pub features_off: Vec<Any>,
}

/// `GET health/live`: always exactly this (nothing about tokens, keys or principals).
#[derive(Serialize, ToSchema)]
pub struct Live {
    /// Always `alive`.
    pub status: String,
}

/// `GET health/keys`: each key the caller may read, with its token's flags.
#[derive(Serialize, ToSchema)]
pub struct KeyHistories {
    pub keys: Vec<KeyHistory>,
}

#[derive(Serialize, ToSchema)]
pub struct KeyHistory {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub token: String,
    /// `generated`, `imported`, `restored`, `apiops`.
    pub origin: String,
    /// CKA_LOCAL; absent where the token does not report it (or holds no private key).
    pub local: Option<bool>,
    /// CKA_NEVER_EXTRACTABLE.
    pub never_extractable: Option<bool>,
    /// CKA_ALWAYS_SENSITIVE.
    pub always_sensitive: Option<bool>,
    /// CKA_EXTRACTABLE.
    pub extractable: Option<bool>,
    /// keyport generated it in the token and the token says it is local and never
    /// extractable: the private key has never existed outside the token.
    pub never_outside_token: bool,
    /// Why a flag is missing or not to be trusted (an imported key, a token that did not answer).
    pub note: Option<String>,
}

/// `GET audit`: a page of the audit log, newest first.
#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditRow>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditRow {
    pub seq: i64,
    /// RFC 3339, UTC, microseconds.
    pub at: String,
    pub principal: String,
    /// e.g. `key.generate`, `key.export`, `key.ssh_certificate.attach`.
    pub action: String,
    pub namespace: Option<String>,
    pub key_id: Option<String>,
    /// `ok`, `denied`, `failed`, `skipped`, `repaired`.
    pub outcome: String,
    pub detail: Option<String>,
}

/// `POST keys/import`: a key file, like `ssh-add FILE`.
#[derive(Serialize, ToSchema)]
pub struct ImportKeyRequest {
    /// The key file's bytes, standard base64 (PKCS#8, PKCS#1/SEC1, OpenSSH, PuTTY, SSH2/Tectia,
    /// PKCS#12; encrypted ones with `passphrase`).
    pub data: String,
    pub passphrase: Option<String>,
    /// Certificates (PEM) to store with the key; the one matching the key becomes the leaf.
    pub certificate: Option<String>,
    /// Default: the certificate's CN, else `key-<16 hex digits of the fingerprint>`.
    pub name: Option<String>,
    /// Default `default`; needs `import` on it.
    pub namespace: Option<String>,
    /// Default: the namespace's policy.
    pub exportable: Option<bool>,
    /// A configured token's name; default the first.
    pub token: Option<String>,
}

/// 201 `imported: true` with the key; 200 `imported: false` when the same key is already held
/// in the namespace (nothing written; `key` only for a caller who may read it).
#[derive(Serialize, ToSchema)]
pub struct Imported {
    pub imported: bool,
    pub key: Option<crate::store::KeyRecord>,
    /// Present when nothing was imported.
    pub message: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SshCertificateAttach {
    /// One OpenSSH certificate line as `ssh-keygen -s` writes it (`…-cert.pub`); it must
    /// certify this key, verify under its CA key, and not have expired.
    pub certificate: String,
}

/// The SSH certificate attached to a key.
#[derive(Serialize, ToSchema)]
pub struct SshCertificate {
    pub key_id: String,
    /// The OpenSSH line (`<type> <base64> [comment]`).
    pub certificate: String,
    /// e.g. `ssh-ed25519-cert-v01@openssh.com`.
    #[serde(rename = "type")]
    pub cert_type: String,
    /// `user` or `host`.
    pub kind: String,
    /// The certificate's key identity (`ssh-keygen -I`).
    pub identity: String,
    pub serial: u64,
    pub principals: Vec<String>,
    /// Unix seconds.
    pub valid_after: u64,
    /// Unix seconds; 18446744073709551615 is "forever".
    pub valid_before: u64,
    /// The CA's key, `SHA256:…` as `ssh-keygen -l` shows it.
    pub ca_fingerprint: String,
    pub attached_by: String,
    pub attached_at: String,
}

/// `GET keys/{id}/public`: the public half, in both forms.
#[derive(Serialize, ToSchema)]
pub struct PublicKey {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub algorithm: String,
    /// An authorized_keys line, comment `<namespace>/<name>` as the ssh-agent lists it; null
    /// for a key SSH has no form for.
    pub openssh: Option<String>,
    /// The SubjectPublicKeyInfo, `PUBLIC KEY` PEM.
    pub pem: String,
    /// `SHA256:…` as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// The form asked for: `openssh` (default) or `pem`.
    pub format: String,
    /// The key in that form (what rotation hooks and `keyport keys pubkey` read).
    pub public_key: String,
}

/// `POST keysets`.
#[derive(Serialize, ToSchema)]
pub struct KeysetCreate {
    /// Unique in its namespace.
    pub name: String,
    /// Default `default`; needs `manage` on it.
    pub namespace: Option<String>,
    /// Of the first version; default the rotation policy's (ignored with `key_id`).
    pub algorithm: Option<String>,
    /// `User` or `Host`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Adopt this existing key as the first version instead of generating one.
    pub key_id: Option<String>,
}

/// A keyset: its versions, the open (or last) rotation and its history, and its policy.
#[derive(Serialize, ToSchema)]
pub struct Keyset {
    /// 40 hex digits: TPP's `KeysetId`.
    pub id: String,
    pub namespace: String,
    pub name: String,
    /// `User` or `Host`.
    #[serde(rename = "type")]
    pub kind: String,
    pub algorithm: String,
    pub owner: String,
    pub created_at: String,
    pub last_rotation_at: Option<String>,
    pub versions: Vec<KeysetVersion>,
    /// TPP's RotationStage of the open rotation, else the last one's end (10600; 10101 when it
    /// failed; 0 when never rotated).
    pub stage: i64,
    pub stage_name: String,
    /// TPP's ProcessStatus (0 when idle).
    pub process_status: i64,
    /// The open rotation, else the last one.
    #[schema(value_type = Option<Object>)]
    pub rotation: Option<Any>,
    /// The rotation's history (most recent 100 lines), hook results included.
    #[schema(value_type = Vec<Object>)]
    pub history: Vec<Any>,
    /// The `[rotation]` policy that applies.
    #[schema(value_type = Object)]
    pub policy: Any,
}

#[derive(Serialize, ToSchema)]
pub struct KeysetVersion {
    pub version: i64,
    pub key_id: String,
    /// `active`, `pending`, `retired`, ….
    pub state: String,
    pub created_at: String,
    pub activated_at: Option<String>,
    pub retired_at: Option<String>,
    pub key_name: Option<String>,
    pub fingerprint: Option<String>,
    pub algorithm: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Keysets {
    pub keysets: Vec<Keyset>,
}

/// `DELETE keysets/{name}`.
#[derive(Serialize, ToSchema)]
pub struct KeysetDeleted {
    /// The KeysetId (40 hex).
    pub id: String,
    pub namespace: String,
    pub name: String,
    /// The ids of the version keys deleted (every version's key still in the inventory).
    pub keys_deleted: Vec<String>,
}

/// `POST keysets/{name}/rotate` (the other actions take no body).
#[derive(Serialize, ToSchema)]
pub struct KeysetAction {
    /// TPP's Options bit mask; default the policy's.
    pub options: Option<u32>,
}

/// 202: the action is recorded; the runner drives the rotation.
#[derive(Serialize, ToSchema)]
pub struct KeysetActed {
    pub keyset: String,
    pub namespace: String,
    /// The rotation record after the action.
    #[schema(value_type = Object)]
    pub rotation: Any,
}

#[derive(Serialize, ToSchema)]
pub struct SshCertificateDetached {
    /// The key id.
    pub detached: String,
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<crate::store::KeyRecord>,
    /// Pass as `cursor` for the next page; absent on the last page and when neither `limit`
    /// nor `cursor` was given.
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct GenerateRequest {
    /// 1-64 letters, digits, `_`, `-`, `.`; unique in its namespace.
    pub name: String,
    /// Default `default`.
    pub namespace: Option<String>,
    /// `rsa-2048`, `rsa-3072`, `rsa-4096`, `ec-p256`, `ec-p384`, `ed25519`.
    pub algorithm: String,
    /// A configured token's name; default the first.
    pub token: Option<String>,
    /// Default: the namespace's policy.
    pub exportable: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct Deleted {
    pub deleted: String,
}

#[derive(Serialize, ToSchema)]
pub struct ExportRequest {
    /// pkcs8 (default), pkcs1/sec1, openssh, putty (v3), putty-v2, ssh2, tectia.
    pub format: Option<String>,
    /// Encrypts the exported key; absent only when the namespace allows unencrypted export.
    pub passphrase: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Exported {
    pub id: String,
    pub format: String,
    pub encrypted: bool,
    pub private_key: String,
}

#[derive(Serialize, ToSchema)]
pub struct SignRequest {
    /// The message, standard base64.
    pub data: String,
    /// rsa-sha256, rsa-sha384, rsa-sha512, ecdsa-sha256/384/512, ed25519.
    pub algorithm: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Signature {
    pub id: String,
    pub algorithm: String,
    /// `pkcs1-v1_5`, `der` (ECDSA-Sig-Value) or `raw` (Ed25519).
    pub encoding: String,
    pub signature: String,
}

#[derive(Serialize, ToSchema)]
pub struct CertificateList {
    #[schema(value_type = Vec<Object>)]
    pub certificates: Vec<Any>,
}

#[derive(Serialize, ToSchema)]
pub struct SyncTrigger {
    /// Wait for the pass to finish (at most this many seconds).
    pub wait_secs: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct SyncTriggered {
    pub finished: bool,
    #[schema(value_type = Object)]
    pub status: Any,
}

#[derive(Serialize, ToSchema)]
pub struct CsrRequest {
    /// Subject common name; default: the sync host name.
    pub cn: Option<String>,
    /// DNS subject alternative names.
    pub dns: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct RestoreRequest {
    pub dry_run: Option<bool>,
}

// --- TLS Protect Cloud -------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeInstance {
    pub id: String,
    pub name: String,
    pub edge_type: String,
    pub edge_status: String,
    pub encryption_key_id: String,
    pub company_id: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeInstances {
    pub edge_instances: Vec<EdgeInstance>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionKey {
    pub id: String,
    /// The X25519 public key (sealed boxes), base64.
    pub key: String,
    pub key_algorithm: String,
    pub company_id: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionKeys {
    pub encryption_keys: Vec<EncryptionKey>,
}

#[derive(Serialize, ToSchema)]
pub struct UserAccounts {
    #[schema(value_type = Object)]
    pub user: Any,
    #[schema(value_type = Object)]
    pub company: Any,
    #[serde(rename = "apiKey")]
    #[schema(value_type = Object)]
    pub api_key: Any,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlspcImportItem {
    pub certificate: Option<String>,
    pub password_encrypted_private_key: Option<String>,
    pub dek_encrypted_private_key: Option<String>,
    pub dek_encrypted_password: Option<String>,
    pub pkcs12_keystore: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlspcImportRequest {
    pub edge_instance_id: Option<String>,
    pub encryption_key_id: Option<String>,
    /// At most 100 items.
    pub import_information: Option<Vec<TlspcImportItem>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlspcImportJob {
    pub id: String,
    /// `NOT_STARTED`, `IN_PROGRESS`, `COMPLETED`, `FAILED`.
    pub status: String,
}

// --- DigiCert ONE IoT certificate import --------------------------------------------------------

#[derive(ToSchema)]
pub struct CertImportUpload {
    /// A zip of certificates and their keys.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

#[derive(Serialize, ToSchema)]
pub struct CertImportJob {
    pub id: String,
    /// `PENDING`, `IN_PROGRESS`, `COMPLETED`.
    pub status: String,
    pub total_certificates: Option<i64>,
    pub failed_certificates: Option<i64>,
}

// --- Huawei Cloud KPS -----------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct KpsEncryption {
    /// `default` or `kms`.
    #[serde(rename = "type")]
    pub kind: String,
    pub kms_key_name: Option<String>,
    pub kms_key_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct KpsProtection {
    pub private_key: Option<String>,
    pub encryption: Option<KpsEncryption>,
}

#[derive(Serialize, ToSchema)]
pub struct KpsCreateKeypair {
    pub name: String,
    /// `ssh` or `x509`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub public_key: Option<String>,
    /// `domain` or `user`.
    pub scope: Option<String>,
    pub user_id: Option<String>,
    pub key_protection: Option<KpsProtection>,
}

#[derive(Serialize, ToSchema)]
pub struct KpsCreateRequest {
    pub keypair: KpsCreateKeypair,
}

#[derive(Serialize, ToSchema)]
pub struct KpsImportKeypair {
    pub name: String,
    pub user_id: Option<String>,
    pub key_protection: KpsProtection,
}

#[derive(Serialize, ToSchema)]
pub struct KpsImportRequest {
    pub keypair: KpsImportKeypair,
}

#[derive(Serialize, ToSchema)]
pub struct KpsName {
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct KpsNameRequest {
    pub keypair: KpsName,
}

#[derive(Serialize, ToSchema)]
pub struct KpsDescription {
    pub description: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct KpsUpdateRequest {
    pub keypair: KpsDescription,
}

#[derive(Serialize, ToSchema)]
pub struct KpsKeypair {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub public_key: Option<String>,
    pub fingerprint: Option<String>,
    pub private_key: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct KpsKeypairAnswer {
    pub keypair: KpsKeypair,
}

#[derive(Serialize, ToSchema)]
pub struct KpsKeypairs {
    pub keypairs: Vec<KpsKeypairAnswer>,
    #[schema(value_type = Object)]
    pub page_info: Any,
}

#[derive(Serialize, ToSchema)]
pub struct KpsTasks {
    pub total: i64,
    #[schema(value_type = Vec<Object>)]
    pub tasks: Vec<Any>,
}

// --- API Ops keys (004) -----------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiOpsEnvironment {
    pub environment_name: Option<String>,
    /// The key material (PEM, or base64 of a keystore).
    pub content: Option<String>,
    pub alias: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiOpsKeyDto {
    pub name: Option<String>,
    pub description: Option<String>,
    pub key_type: Option<String>,
    pub algorithm: Option<String>,
    pub crypto_key_info_environment_list: Option<Vec<ApiOpsEnvironment>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiOpsList {
    /// `SUCCESS`.
    pub status: String,
    #[schema(value_type = Vec<Object>)]
    pub result_list: Vec<Any>,
    pub result_count: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiOpsDeployment {
    pub success: bool,
    #[schema(value_type = Object)]
    pub deployment_result: Any,
}

// --- TPP ---------------------------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct TppAuthorize {
    pub client_id: String,
    pub username: String,
    pub password: String,
    /// e.g. `ssh:manage,discover`; default `any`.
    pub scope: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TppRefresh {
    pub client_id: String,
    pub refresh_token: String,
}

#[derive(Serialize, ToSchema)]
pub struct TppToken {
    pub access_token: String,
    pub refresh_token: String,
    pub expires: i64,
    pub expires_in: i64,
    pub refresh_until: i64,
    pub token_type: String,
    pub scope: String,
    pub identity: String,
}

#[derive(Serialize, ToSchema)]
pub struct TppVerify {
    pub application: String,
    #[serde(rename = "expires_ISO8601")]
    pub expires_iso8601: String,
    pub identity: String,
    pub scope: String,
    pub valid_for: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct TppVersion {
    pub version: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct TppDetailsRequest {
    #[serde(rename = "KeyId")]
    pub key_id: Option<Vec<i64>>,
    pub page_size: Option<i64>,
    pub offset: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct TppDetails {
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<Any>,
    pub response: SshWebResponse,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct TppKeyset {
    pub keyset_id: Option<String>,
    pub response: SshWebResponse,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct TppExportRequest {
    pub key_id: i64,
    /// OpenSSH, PuTTY, SSH2 or Tectia.
    pub format: Option<String>,
    pub passphrase: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct TppKeyIdRequest {
    pub key_id: i64,
}

/// A rotation call's body (`SSH/Rotate`, `…NonBlocking`, `RetryRotation`, `CancelRotation`,
/// `SkipKeyRotation` (KeyId), `ConfirmSelfServiceKeyInstallation`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct TppRotationRequest {
    /// The keyset's 40-hex id (all but SkipKeyRotation).
    pub keyset_id: Option<String>,
    /// SkipKeyRotation: the key's TPP id.
    pub key_id: Option<i64>,
    /// Rotate: TPP's Options bit mask; default the policy's.
    pub options: Option<u32>,
    /// Accepted and ignored.
    pub allow_skip_on_rotation: Option<bool>,
}

/// A rotation call's answer: the SshWebResponse at the top (the vendor's pages, the
/// NonBlocking calls) and the same under `Response` (pyvenafi), HTTP 200 also when `Success`
/// is false (18 ImproperKeysetStage, 8 OperationIsAlreadyRunning, keyset not found).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct TppRotationAnswer {
    pub success: bool,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
    pub response: SshWebResponse,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct TppKeyMaterial {
    pub key_material: Option<String>,
    #[serde(rename = "FingerprintSHA256")]
    pub fingerprint_sha256: Option<String>,
    pub response: SshWebResponse,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct TppImportRequest {
    pub key_content_base64: String,
    pub passphrase: Option<String>,
    pub format: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct TppImported {
    pub key_id: Option<i64>,
    pub ssh_web_response: SshWebResponse,
}
