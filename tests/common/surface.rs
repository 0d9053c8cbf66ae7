//! One daemon with every face configured on namespace `alpha` (and an unrelated `beta`), for
//! the API-surface tests (`tests/openapi.rs`, `tests/authz_matrix.rs`): a principal per single
//! permission on `alpha` (API key `key-<permission>`), one with everything on `beta` only,
//! admin as root and by the API key `key-superadmin` (`key-admin` is `only-admin`'s, admin on alpha), and a TPP user.

use super::{phc, sha256_hex, softhsm_module, Daemon};

pub const PERMISSIONS: [&str; 8] = ["import", "read", "export-private", "manage", "deploy", "sync", "admin", "sign"];
pub const KPS_PROJECT: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
pub const APIOPS_PROJECT: &str = "Alpha";
pub const TPP_PASSWORD: &str = "tpp-user-secret";

/// The `[[principals]]` and faces. `revoked_perms` are the permissions of principal `revoked`
/// (key `key-revoked`) on `alpha`; `extra_uid` maps that uid to principal `local` (admin on alpha).
pub fn config(revoked_perms: &str, extra_uid: Option<u32>) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        r#"
[[principals]]
name = "root"
uids = [{own_uid}]
permissions = {{ "*" = ["admin"] }}

[[principals]]
name = "admin"
api_key_sha256 = ["{admin}"]
permissions = {{ "*" = ["admin"] }}

[[principals]]
name = "beta-all"
api_key_sha256 = ["{beta}"]
permissions = {{ beta = ["import", "read", "export-private", "manage", "deploy", "sync", "admin", "sign"] }}

[[principals]]
name = "revoked"
api_key_sha256 = ["{revoked}"]
permissions = {{ alpha = [{revoked_perms}] }}
"#,
        own_uid = nix::unistd::getuid().as_raw(),
        admin = sha256_hex("key-superadmin"),
        beta = sha256_hex("key-beta"),
        revoked = sha256_hex("key-revoked"),
    ));
    if let Some(uid) = extra_uid {
        s.push_str(&format!("\n[[principals]]\nname = \"local\"\nuids = [{uid}]\npermissions = {{ alpha = [\"admin\"] }}\n"));
    }
    for p in PERMISSIONS {
        s.push_str(&format!(
            "\n[[principals]]\nname = \"only-{p}\"\napi_key_sha256 = [\"{}\"]\npermissions = {{ alpha = [\"{p}\"] }}\n",
            sha256_hex(&format!("key-{p}"))
        ));
    }
    s.push_str(&format!(
        r#"
[namespaces.alpha]
allow_exportable = true
exportable_by_default = true
allow_unencrypted_export = true

[tlspc]
namespace = "alpha"

[kps.projects.{KPS_PROJECT}]
namespace = "alpha"

[apiops.projects.{APIOPS_PROJECT}]
namespace = "alpha"
[apiops.environments]
Production = "soft"

[tpp]
namespace = "alpha"

[[tpp.users]]
username = "tppadmin"
password_hash = "{tpp}"
principal = "admin"

[[enrollment_profiles]]
id = "alpha-pem"
name = "Alpha PEM"
namespace = "alpha"
source_format = "PEM"
"#,
        tpp = phc(TPP_PASSWORD),
    ));
    let _ = softhsm_module;
    s
}

/// A daemon with [`config`].
pub fn daemon(revoked_perms: &str, extra_uid: Option<u32>) -> Daemon {
    Daemon::start(&config(revoked_perms, extra_uid))
}
