//! The authorization matrix (issue 16): every route of every face, called by callers with no
//! principal, a wrong API key, the wrong namespace, each single permission, a permission
//! revoked by editing the principal (SIGHUP, then a restart), an admin, and other uids (test
//! users, curl under `setpriv`), over the Unix socket and loopback HTTPS. The rows come from
//! `TABLE`; the live daemon's OpenAPI document (held to the routers by the unit test in
//! `api::openapi`) must have no route without a row, so a new route fails here until its
//! authorization is written down.
//!
//! One daemon; every principal, face and fixture is set up once (`tests/common/surface.rs`).

mod common;

use common::{require, surface, Daemon};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

const P: &str = surface::KPS_PROJECT;

/// What a route asks of its caller, on namespace `alpha` (every face is mapped to it).
#[derive(Debug, Clone, Copy)]
enum Need {
    /// Any known principal (answers are filtered to what it may read, or carry no key data).
    Any,
    /// Any permission in the namespace but `sign` (API Ops reads: "any project role"; its
    /// list predates `sign`, which only signs and never reads key metadata of other faces).
    AnyIn,
    /// Every one of these (admin holds them all).
    All(&'static [&'static str]),
    /// This permission on `*` (host-wide work: the vault client key).
    Star(&'static str),
    /// This permission in any namespace (host-wide answers naming none: sync being off).
    Somewhere(&'static str),
    /// TPP: its own bearer token (API keys and the socket peer are not accepted).
    TppToken,
    /// No credential (TPP's login and refresh: they are the credential check).
    Open,
    /// No authentication at all (liveness): every caller, with any key or none, gets 200 and
    /// exactly `{"status":"alive"}` (nothing about tokens, keys or principals).
    Public,
}

/// Which key header the face reads (each face is called with its own).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Face {
    Native,
    Tlspc,
    Iot,
    Kps,
    ApiOps,
    Tpp,
}

struct Row {
    method: &'static str,
    /// As in the OpenAPI document.
    route: &'static str,
    face: Face,
    need: Need,
    /// The path called: `{key}`, `{kp}`, `{ak}` are fixtures, `{n}` a fresh number.
    path: &'static str,
    body: Option<&'static str>,
    /// The resource exists, so a 404 to a caller means "hidden from you" (denied).
    exists: bool,
    /// Made anew before each call (the call deletes it).
    fresh: Option<Fresh>,
}

#[derive(Debug, Clone, Copy)]
enum Fresh {
    NativeKey,
    /// A native key with an SSH certificate attached.
    SshCertKey,
    KpsPair,
    ApiOpsKey,
    /// A keyset in alpha (made by root), no rotation open.
    Keyset,
}

const fn row(method: &'static str, route: &'static str, face: Face, need: Need, path: &'static str) -> Row {
    Row { method, route, face, need, path, body: None, exists: false, fresh: None }
}
const fn with_body(mut r: Row, body: &'static str) -> Row {
    r.body = Some(body);
    r
}
const fn existing(mut r: Row) -> Row {
    r.exists = true;
    r
}
const fn fresh(mut r: Row, f: Fresh) -> Row {
    r.fresh = Some(f);
    r.exists = true;
    r
}

use Face::*;
use Need::*;

const MANAGE: Need = All(&["manage"]);
const READ: Need = All(&["read"]);
const IMPORT: Need = All(&["import"]);
const EXPORT: Need = All(&["export-private"]);
/// Acting on a key needs seeing it: without `read` (or owning it) the key is not found.
const READ_MANAGE: Need = All(&["read", "manage"]);
const READ_EXPORT: Need = All(&["read", "export-private"]);

/// Every route. `{P}` in KPS paths is the project id.
fn table() -> Vec<Row> {
    let mut t = vec![
        // --- native ---
        row("GET", "/keyport/v1/health", Native, Any, "/keyport/v1/health"),
        row("GET", "/keyport/v1/health/live", Native, Public, "/keyport/v1/health/live"),
        // Filtered to the keys the caller may read (checked below the table run).
        row("GET", "/keyport/v1/health/keys", Native, Any, "/keyport/v1/health/keys"),
        row("GET", "/keyport/v1/audit", Native, Star("admin"), "/keyport/v1/audit?limit=5"),
        // The fixture SSH key's file again: 200 `imported: false` (already held) when allowed.
        with_body(row("POST", "/keyport/v1/keys/import", Native, IMPORT, "/keyport/v1/keys/import"), "NATIVE_IMPORT"),
        // Attaching needs seeing the key (read, or owning it) and import.
        existing(with_body(
            row(
                "PUT",
                "/keyport/v1/keys/{id}/ssh-certificate",
                Native,
                All(&["read", "import"]),
                "/keyport/v1/keys/{sshkey}/ssh-certificate",
            ),
            "SSH_CERT",
        )),
        existing(row("GET", "/keyport/v1/keys/{id}/ssh-certificate", Native, READ, "/keyport/v1/keys/{sshkey}/ssh-certificate")),
        fresh(
            row("DELETE", "/keyport/v1/keys/{id}/ssh-certificate", Native, READ_MANAGE, "/keyport/v1/keys/{fresh}/ssh-certificate"),
            Fresh::SshCertKey,
        ),
        row("GET", "/keyport/v1/openapi.json", Native, Any, "/keyport/v1/openapi.json"),
        row("GET", "/keyport/v1/metrics", Native, Any, "/keyport/v1/metrics"),
        row("GET", "/keyport/v1/keys", Native, Any, "/keyport/v1/keys"),
        with_body(
            row("POST", "/keyport/v1/keys", Native, MANAGE, "/keyport/v1/keys"),
            r#"{"name":"gen-{n}","namespace":"alpha","algorithm":"ec-p256"}"#,
        ),
        existing(row("GET", "/keyport/v1/keys/{id}", Native, READ, "/keyport/v1/keys/{key}")),
        fresh(row("DELETE", "/keyport/v1/keys/{id}", Native, READ_MANAGE, "/keyport/v1/keys/{fresh}"), Fresh::NativeKey),
        existing(with_body(
            row("POST", "/keyport/v1/keys/{id}/export", Native, READ_EXPORT, "/keyport/v1/keys/{key}/export"),
            r#"{"format":"pkcs8"}"#,
        )),
        existing(row("GET", "/keyport/v1/keys/{id}/public", Native, READ, "/keyport/v1/keys/{key}/public")),
        existing(with_body(
            row("POST", "/keyport/v1/keys/{id}/sign", Native, All(&["sign"]), "/keyport/v1/keys/{key}/sign"),
            r#"{"data":"aGVsbG8="}"#,
        )),
        // --- keysets (rotation): the fixture keyset `fixture-ks` in alpha, made by root ---
        row("GET", "/keyport/v1/keysets", Native, Any, "/keyport/v1/keysets"),
        with_body(
            row("POST", "/keyport/v1/keysets", Native, MANAGE, "/keyport/v1/keysets"),
            r#"{"name":"ks-{n}","namespace":"alpha","type":"User","algorithm":"ec-p256"}"#,
        ),
        existing(row("GET", "/keyport/v1/keysets/{name}", Native, READ, "/keyport/v1/keysets/fixture-ks?namespace=alpha")),
        fresh(
            row("DELETE", "/keyport/v1/keysets/{name}", Native, READ_MANAGE, "/keyport/v1/keysets/{fresh}?namespace=alpha"),
            Fresh::Keyset,
        ),
        // Each action needs seeing the keyset (read, or owning it) and manage; `confirm` also takes
        // export-private instead of manage, which no caller here holds together with read. An
        // allowed caller may get 409 (the rotation's stage does not allow it): not a refusal.
        existing(with_body(
            row(
                "POST",
                "/keyport/v1/keysets/{name}/{action}",
                Native,
                READ_MANAGE,
                "/keyport/v1/keysets/fixture-ks/rotate?namespace=alpha",
            ),
            "{}",
        )),
        existing(row(
            "POST",
            "/keyport/v1/keysets/{name}/{action}",
            Native,
            READ_MANAGE,
            "/keyport/v1/keysets/fixture-ks/confirm?namespace=alpha",
        )),
        existing(row(
            "POST",
            "/keyport/v1/keysets/{name}/{action}",
            Native,
            READ_MANAGE,
            "/keyport/v1/keysets/fixture-ks/retry?namespace=alpha",
        )),
        existing(row(
            "POST",
            "/keyport/v1/keysets/{name}/{action}",
            Native,
            READ_MANAGE,
            "/keyport/v1/keysets/fixture-ks/cancel?namespace=alpha",
        )),
        row("GET", "/keyport/v1/certificates", Native, Any, "/keyport/v1/certificates"),
        // No such certificate: only authentication is shown here (tests/certimport.rs covers the rest).
        row(
            "DELETE",
            "/keyport/v1/certificates/{sha256}",
            Native,
            Any,
            "/keyport/v1/certificates/0000000000000000000000000000000000000000000000000000000000000000",
        ),
        row("GET", "/keyport/v1/sync", Native, Any, "/keyport/v1/sync"),
        // Sync is off in this daemon: 409 sync_off, but only to a caller that holds `sync`
        // (restore: `admin`) somewhere; the others get 403 (tests/sync*.rs cover it on).
        row("POST", "/keyport/v1/sync", Native, Somewhere("sync"), "/keyport/v1/sync"),
        row("POST", "/keyport/v1/sync/restore", Native, Somewhere("admin"), "/keyport/v1/sync/restore"),
        row("POST", "/keyport/v1/sync/csr", Native, Star("sync"), "/keyport/v1/sync/csr"),
        // --- TLS Protect Cloud ---
        row("GET", "/v1/useraccounts", Tlspc, Any, "/v1/useraccounts"),
        row("GET", "/v1/edgeinstances", Tlspc, Any, "/v1/edgeinstances"),
        row("GET", "/v1/edgeinstances/", Tlspc, Any, "/v1/edgeinstances/"),
        row("GET", "/v1/edgeinstances/{id}", Tlspc, Any, "/v1/edgeinstances/nope"),
        row("GET", "/v1/edgeencryptionkeys", Tlspc, Any, "/v1/edgeencryptionkeys"),
        row("GET", "/v1/edgeencryptionkeys/", Tlspc, Any, "/v1/edgeencryptionkeys/"),
        row("GET", "/v1/edgeencryptionkeys/{id}", Tlspc, Any, "/v1/edgeencryptionkeys/nope"),
        with_body(row("POST", "/outagedetection/v1/certificates/imports", Tlspc, IMPORT, "/outagedetection/v1/certificates/imports"), "{}"),
        row("GET", "/outagedetection/v1/certificates/imports/{id}", Tlspc, Any, "/outagedetection/v1/certificates/imports/nope"),
        // --- DigiCert ONE IoT certificate import ---
        row("POST", "/iot/api/v1/certificate-import/{enrollment_profile_id}", Iot, IMPORT, "/iot/api/v1/certificate-import/alpha-pem"),
        row("GET", "/iot/api/v1/certificate-import/job/{job_id}", Iot, Any, "/iot/api/v1/certificate-import/job/nope"),
        // --- KPS ---
        with_body(
            row("POST", "/v3/{project_id}/keypairs", Kps, All(&["import", "manage"]), "/v3/{P}/keypairs"),
            r#"{"keypair":{"name":"kp-{n}"}}"#,
        ),
        row("GET", "/v3/{project_id}/keypairs", Kps, READ, "/v3/{P}/keypairs"),
        existing(row("GET", "/v3/{project_id}/keypairs/{name}", Kps, READ, "/v3/{P}/keypairs/{kp}")),
        existing(with_body(
            row("PUT", "/v3/{project_id}/keypairs/{name}", Kps, READ_MANAGE, "/v3/{P}/keypairs/{kp}"),
            r#"{"keypair":{"description":"d"}}"#,
        )),
        fresh(row("DELETE", "/v3/{project_id}/keypairs/{name}", Kps, READ_MANAGE, "/v3/{P}/keypairs/{fresh}"), Fresh::KpsPair),
        fresh(
            row("DELETE", "/v3/{project_id}/keypairs/{name}/private-key", Kps, READ_MANAGE, "/v3/{P}/keypairs/{fresh}/private-key"),
            Fresh::KpsPair,
        ),
        with_body(
            row("POST", "/v3/{project_id}/keypairs/private-key/import", Kps, IMPORT, "/v3/{P}/keypairs/private-key/import"),
            "KPS_IMPORT",
        ),
        existing(with_body(
            row("POST", "/v3/{project_id}/keypairs/private-key/export", Kps, READ_EXPORT, "/v3/{P}/keypairs/private-key/export"),
            r#"{"keypair":{"name":"{kp}"}}"#,
        )),
        existing(with_body(
            row(
                "POST",
                "/v3/{project_id}/keypairs/private-key/batch-export",
                Kps,
                READ_EXPORT,
                "/v3/{P}/keypairs/private-key/batch-export",
            ),
            r#"[{"keypair":{"name":"{kp}"}}]"#,
        )),
        with_body(
            row("POST", "/v3/{project_id}/keypairs/batch-import", Kps, All(&["import", "manage"]), "/v3/{P}/keypairs/batch-import"),
            r#"[{"keypair":{"name":"bkp-{n}"}}]"#,
        ),
        // Binding to ECS servers and the task lists: nothing of a key is read or changed (keyport
        // has no servers; the lists are empty), but only a caller of the project's namespace
        // learns that: reads need `read`, changes `manage`.
        with_body(row("POST", "/v3/{project_id}/keypairs/associate", Kps, All(&["manage"]), "/v3/{P}/keypairs/associate"), "{}"),
        with_body(
            row("POST", "/v3/{project_id}/keypairs/batch-associate", Kps, All(&["manage"]), "/v3/{P}/keypairs/batch-associate"),
            "{}",
        ),
        with_body(row("POST", "/v3/{project_id}/keypairs/disassociate", Kps, All(&["manage"]), "/v3/{P}/keypairs/disassociate"), "{}"),
        row("GET", "/v3/{project_id}/tasks/{task_id}", Kps, All(&["read"]), "/v3/{P}/tasks/nope"),
        row("GET", "/v3/{project_id}/running-tasks", Kps, All(&["read"]), "/v3/{P}/running-tasks"),
        row("GET", "/v3/{project_id}/failed-tasks", Kps, All(&["read"]), "/v3/{P}/failed-tasks"),
        row("DELETE", "/v3/{project_id}/failed-tasks", Kps, All(&["manage"]), "/v3/{P}/failed-tasks"),
        row("DELETE", "/v3/{project_id}/failed-tasks/{task_id}", Kps, All(&["manage"]), "/v3/{P}/failed-tasks/nope"),
        // --- TPP (paths ignore case; documented in TPP's case). The login rows send no
        // password: failed logins would block the test's own source (tests/tpp.rs covers them).
        with_body(row("POST", "/vedauth/authorize/oauth", Tpp, Open, "/vedauth/authorize/oauth"), r#"{"client_id":"m"}"#),
        with_body(
            row("POST", "/vedauth/authorize/token", Tpp, Open, "/vedauth/authorize/token"),
            r#"{"client_id":"m","refresh_token":"x"}"#,
        ),
        row("GET", "/vedauth/authorize/verify", Tpp, TppToken, "/vedauth/authorize/verify"),
        row("GET", "/vedsdk/SystemStatus/Version", Tpp, TppToken, "/vedsdk/SystemStatus/Version"),
        row("GET", "/vedsdk/SSH/KeysetDetails", Tpp, TppToken, "/vedsdk/SSH/KeysetDetails?KeysetId=alpha:x"),
        with_body(row("POST", "/vedsdk/SSH/KeysetDetails", Tpp, TppToken, "/vedsdk/SSH/KeysetDetails"), "{}"),
        with_body(row("POST", "/vedsdk/SSH/KeyDetails", Tpp, TppToken, "/vedsdk/SSH/KeyDetails"), "{}"),
        with_body(
            row("POST", "/vedsdk/SSH/ExportSelfServicePrivateKey", Tpp, TppToken, "/vedsdk/SSH/ExportSelfServicePrivateKey"),
            r#"{"KeyId":999999}"#,
        ),
        with_body(
            row("POST", "/vedsdk/SSH/ExportSelfServiceAuthorizedKey", Tpp, TppToken, "/vedsdk/SSH/ExportSelfServiceAuthorizedKey"),
            r#"{"KeyId":999999}"#,
        ),
        with_body(
            row("POST", "/vedsdk/SSH/ImportPrivateKey", Tpp, TppToken, "/vedsdk/SSH/ImportPrivateKey"),
            r#"{"KeyContentBase64":"AAAA"}"#,
        ),
        // Rotation calls (scope ssh:manage) on a keyset that does not exist: authentication only
        // (tests of the rotation branch drive real rotations through TPP).
        with_body(
            row("POST", "/vedsdk/SSH/Rotate", Tpp, TppToken, "/vedsdk/SSH/Rotate"),
            r#"{"KeysetId":"0000000000000000000000000000000000000000"}"#,
        ),
        with_body(
            row("POST", "/vedsdk/SSH/RotateNonBlocking", Tpp, TppToken, "/vedsdk/SSH/RotateNonBlocking"),
            r#"{"KeysetId":"0000000000000000000000000000000000000000"}"#,
        ),
        with_body(
            row("POST", "/vedsdk/SSH/RetryRotation", Tpp, TppToken, "/vedsdk/SSH/RetryRotation"),
            r#"{"KeysetId":"0000000000000000000000000000000000000000"}"#,
        ),
        with_body(
            row("POST", "/vedsdk/SSH/CancelRotation", Tpp, TppToken, "/vedsdk/SSH/CancelRotation"),
            r#"{"KeysetId":"0000000000000000000000000000000000000000"}"#,
        ),
        with_body(
            row("POST", "/vedsdk/SSH/RollbackNonBlocking", Tpp, TppToken, "/vedsdk/SSH/RollbackNonBlocking"),
            r#"{"KeysetId":"0000000000000000000000000000000000000000"}"#,
        ),
        with_body(
            row("POST", "/vedsdk/SSH/ConfirmSelfServiceKeyInstallation", Tpp, TppToken, "/vedsdk/SSH/ConfirmSelfServiceKeyInstallation"),
            r#"{"KeysetId":"0000000000000000000000000000000000000000"}"#,
        ),
        with_body(
            row("POST", "/vedsdk/ConfirmSelfServiceKeyInstallation", Tpp, TppToken, "/vedsdk/ConfirmSelfServiceKeyInstallation"),
            r#"{"KeysetId":"0000000000000000000000000000000000000000"}"#,
        ),
        with_body(row("POST", "/vedsdk/SSH/SkipKeyRotation", Tpp, TppToken, "/vedsdk/SSH/SkipKeyRotation"), r#"{"KeyId":999999}"#),
        // Last: it ends the token the other TPP rows use (the test logs in again after it).
        row("GET", "/vedauth/revoke/token", Tpp, TppToken, "/vedauth/revoke/token"),
    ];
    // --- API Ops: each route with and without the vendor's trailing slash ---
    for slash in ["/", ""] {
        let s = |p: &str| -> &'static str { Box::leak(format!("{p}{slash}").into_boxed_str()) };
        t.extend([
            row("GET", s("/apiops/projects/{project}/keys"), ApiOps, AnyIn, s("/apiops/projects/Alpha/keys")),
            with_body(
                row("POST", s("/apiops/projects/{project}/keys"), ApiOps, All(&["manage", "deploy"]), s("/apiops/projects/Alpha/keys")),
                "APIOPS_CREATE",
            ),
            row(
                "POST",
                s("/apiops/projects/{project}/keys/import-file"),
                ApiOps,
                All(&["import", "deploy"]),
                s("/apiops/projects/Alpha/keys/import-file"),
            ),
            existing(row("GET", s("/apiops/projects/{project}/keys/{name}"), ApiOps, AnyIn, s("/apiops/projects/Alpha/keys/{ak}"))),
            existing(with_body(
                row("PUT", s("/apiops/projects/{project}/keys/{name}"), ApiOps, MANAGE, s("/apiops/projects/Alpha/keys/{ak}")),
                r#"{"description":"d"}"#,
            )),
            fresh(
                row(
                    "DELETE",
                    s("/apiops/projects/{project}/keys/{name}"),
                    ApiOps,
                    All(&["manage", "deploy"]),
                    s("/apiops/projects/Alpha/keys/{fresh}"),
                ),
                Fresh::ApiOpsKey,
            ),
            existing(row(
                "GET",
                s("/apiops/projects/{project}/keys/{name}/export-file"),
                ApiOps,
                EXPORT,
                s("/apiops/projects/Alpha/keys/{ak}/export-file?environmentName=Production"),
            )),
        ]);
    }
    t
}

/// Who calls: how it reaches the daemon and what it holds.
#[derive(Debug, Clone)]
struct Caller {
    name: String,
    /// API key sent in the face's own header (None: none sent).
    key: Option<String>,
    /// `Some(uid, gid)`: over the socket as that user (setpriv); None with `tcp`: HTTPS.
    uid: Option<(u32, u32)>,
    tcp: bool,
    /// Permissions per namespace; None: no principal (expects 401).
    holds: Option<BTreeMap<&'static str, BTreeSet<&'static str>>>,
}

fn holds(ns: &'static str, perms: &[&'static str]) -> Option<BTreeMap<&'static str, BTreeSet<&'static str>>> {
    Some(BTreeMap::from([(ns, perms.iter().copied().collect())]))
}

fn allows(h: &BTreeMap<&'static str, BTreeSet<&'static str>>, ns: &str, p: &str) -> bool {
    [ns, "*"].iter().any(|n| h.get(n).is_some_and(|s| s.contains(p) || s.contains("admin")))
}

fn expected_allowed(need: Need, h: &BTreeMap<&'static str, BTreeSet<&'static str>>) -> bool {
    match need {
        Any | Open | Public => true,
        AnyIn => ["alpha", "*"].iter().any(|n| h.get(n).is_some_and(|s| s.iter().any(|p| *p != "sign"))),
        All(ps) => ps.iter().all(|p| allows(h, "alpha", p)),
        Star(p) => h.get("*").is_some_and(|s| s.contains(p) || s.contains("admin")),
        Somewhere(p) => h.values().any(|s| s.contains(p) || s.contains("admin")),
        TppToken => false,
    }
}

struct Ctx {
    socket: std::path::PathBuf,
    cert: std::path::PathBuf,
    port: u16,
    counter: AtomicUsize,
    key: String,
    kps_pem: String,
    rsa_pem: String,
    /// OpenSSH keys and their certificates (`ssh-keygen`), with a CA.
    ssh_dir: std::path::PathBuf,
    /// The fixture key imported from `ssh_dir/ssh-fixture` with its certificate attached.
    ssh_key: String,
    requests: AtomicUsize,
    slow: std::sync::Mutex<BTreeMap<String, u128>>,
}

impl Ctx {
    fn n(&self) -> usize {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    /// curl over the socket (as `uid`, or as root) or HTTPS; `headers` as `Name: value`.
    fn call(&self, tcp: bool, uid: Option<(u32, u32)>, method: &str, path: &str, headers: &[String], body: Option<&str>) -> (u16, Value) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut c = match uid {
            Some((u, g)) => {
                let mut c = Command::new("setpriv");
                c.args([format!("--reuid={u}"), format!("--regid={g}"), "--clear-groups".into(), "curl".into()]);
                c
            }
            None => Command::new("curl"),
        };
        c.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method]);
        for h in headers {
            c.args(["-H", h]);
        }
        if let Some(b) = body {
            c.args(["-H", "content-type: application/json", "--data-binary", b]);
        }
        if tcp {
            c.arg("--cacert").arg(&self.cert).arg(format!("https://127.0.0.1:{}{path}", self.port));
        } else {
            c.arg("--unix-socket").arg(&self.socket).arg(format!("http://localhost{path}"));
        }
        common::parse_curl(c.output().unwrap())
    }

    fn admin(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        self.call(false, None, method, path, &[], body)
    }

    fn fresh(&self, f: Fresh) -> String {
        let n = self.n();
        match f {
            Fresh::NativeKey => {
                let (s, v) = self.admin(
                    "POST",
                    "/keyport/v1/keys",
                    Some(&format!(r#"{{"name":"fresh-{n}","namespace":"alpha","algorithm":"ec-p256"}}"#)),
                );
                assert_eq!(s, 201, "{v}");
                v["id"].as_str().unwrap().to_string()
            }
            Fresh::SshCertKey => self.ssh_cert_key(&format!("fcert-{n}")),
            Fresh::KpsPair => {
                let name = format!("fkp-{n}");
                let (s, v) = self.admin("POST", &format!("/v3/{P}/keypairs"), Some(&format!(r#"{{"keypair":{{"name":"{name}"}}}}"#)));
                assert_eq!(s, 200, "{v}");
                name
            }
            Fresh::Keyset => {
                let name = format!("fks-{n}");
                let (s, v) = self.admin(
                    "POST",
                    "/keyport/v1/keysets",
                    Some(&format!(r#"{{"name":"{name}","namespace":"alpha","type":"User","algorithm":"ec-p256"}}"#)),
                );
                assert_eq!(s, 201, "{v}");
                name
            }
            Fresh::ApiOpsKey => {
                let name = format!("fak-{n}");
                let (s, v) = self.admin("POST", "/apiops/projects/Alpha/keys/", Some(&self.apiops_create(&name)));
                assert_eq!(s, 200, "{v}");
                name
            }
        }
    }

    /// A new OpenSSH key `name` certified by the test CA, imported into alpha (as root) with
    /// its certificate attached; its id.
    fn ssh_cert_key(&self, name: &str) -> String {
        let dir = &self.ssh_dir;
        let keygen = |args: &[&str]| {
            let out = Command::new("ssh-keygen").current_dir(dir).args(args).output().unwrap();
            assert!(out.status.success(), "ssh-keygen {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        keygen(&["-q", "-t", "ecdsa", "-b", "256", "-N", "", "-C", name, "-f", name]);
        keygen(&["-q", "-s", "ca", "-I", name, "-n", "deploy", "-V", "-1d:+1d", &format!("{name}.pub")]);
        let (s, v) = self.admin("POST", "/keyport/v1/keys/import", Some(&self.import_body(name)));
        assert_eq!(s, 201, "{v}");
        let id = v["key"]["id"].as_str().unwrap().to_string();
        let (s, v) = self.admin("PUT", &format!("/keyport/v1/keys/{id}/ssh-certificate"), Some(&self.cert_body(name)));
        assert_eq!(s, 200, "{v}");
        id
    }

    fn import_body(&self, name: &str) -> String {
        use base64::Engine;
        let file = std::fs::read(self.ssh_dir.join(name)).unwrap();
        json!({"data": base64::engine::general_purpose::STANDARD.encode(file), "namespace": "alpha", "name": name}).to_string()
    }

    fn cert_body(&self, name: &str) -> String {
        let line = std::fs::read_to_string(self.ssh_dir.join(format!("{name}-cert.pub"))).unwrap();
        json!({"certificate": line.trim()}).to_string()
    }

    fn apiops_create(&self, name: &str) -> String {
        json!({"name": name, "keyType": "PRIVATE_KEY", "algorithm": "RSA",
               "cryptoKeyInfoEnvironmentList": [{"environmentName": "Production", "content": self.rsa_pem}]})
        .to_string()
    }

    fn body(&self, r: &Row) -> Option<String> {
        let n = self.n();
        r.body.map(|b| match b {
            "KPS_IMPORT" => json!({"keypair": {"name": format!("kpimp-{n}"),
                "key_protection": {"private_key": self.kps_pem, "encryption": {"type": "default"}}}})
            .to_string(),
            "APIOPS_CREATE" => self.apiops_create(&format!("ak-{n}")),
            "NATIVE_IMPORT" => self.import_body("ssh-fixture"),
            "SSH_CERT" => self.cert_body("ssh-fixture"),
            b => b.replace("{n}", &n.to_string()).replace("{kp}", "fixture-kp"),
        })
    }

    /// The path to call. A row that deletes gets a resource made for the call when the caller
    /// should succeed, and the shared fixture otherwise (a refusal must leave it; if it does
    /// not, the rows after it fail too).
    fn path_for(&self, r: &Row, may_succeed: bool) -> String {
        let mut p = r
            .path
            .replace("{P}", P)
            .replace("{key}", &self.key)
            .replace("{kp}", "fixture-kp")
            .replace("{ak}", "fixture-ak")
            .replace("{sshkey}", &self.ssh_key);
        if let Some(f) = r.fresh {
            let target = match (may_succeed, f) {
                (true, f) => self.fresh(f),
                (false, Fresh::NativeKey) => self.key.clone(),
                (false, Fresh::SshCertKey) => self.ssh_key.clone(),
                (false, Fresh::KpsPair) => "fixture-kp".into(),
                (false, Fresh::ApiOpsKey) => "fixture-ak".into(),
                (false, Fresh::Keyset) => "fixture-ks".into(),
            };
            p = p.replace("{fresh}", &target);
        }
        p
    }

    fn path(&self, r: &Row) -> String {
        self.path_for(r, true)
    }

    fn key_header(face: Face, key: &str) -> String {
        match face {
            Native | Iot => format!("X-Api-Key: {key}"),
            Tlspc => format!("tppl-api-key: {key}"),
            Kps => format!("X-Auth-Token: {key}"),
            ApiOps | Tpp => format!("Authorization: Bearer {key}"),
        }
    }
}

/// Denied: 401/403, a 404 for something that exists (hidden from the caller), or a KPS batch
/// whose every item was refused for permission (the vendor answers batches 200 with reasons).
fn denied(r: &Row, status: u16, v: &Value) -> bool {
    let batch_refused = v["succeeded_keypairs"].as_array().is_some_and(|a| a.is_empty())
        && v["failed_keypairs"]
            .as_array()
            .is_some_and(|f| !f.is_empty() && f.iter().all(|i| i["failed_reason"].as_str().is_some_and(|m| m.starts_with("KPS.9003"))));
    status == 401 || status == 403 || (r.exists && status == 404) || (r.exists && v["error_code"] == "KPS.4016") || batch_refused
}

/// Each caller's calls run on their own thread (one daemon, many requests).
fn check(ctx: &Ctx, rows: &[Row], callers: &[Caller], failures: &mut Vec<String>) {
    let found = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for chunk in callers.chunks(callers.len().div_ceil(6).max(1)) {
            let found = &found;
            s.spawn(move || {
                let mut mine = Vec::new();
                check_some(ctx, rows, chunk, &mut mine);
                found.lock().unwrap().extend(mine);
            });
        }
    });
    failures.extend(found.into_inner().unwrap());
}

fn check_some(ctx: &Ctx, rows: &[Row], callers: &[Caller], failures: &mut Vec<String>) {
    for c in callers {
        for r in rows {
            let may_succeed = c.holds.as_ref().is_some_and(|h| expected_allowed(r.need, h));
            let path = ctx.path_for(r, may_succeed);
            let headers: Vec<String> = c.key.iter().map(|k| Ctx::key_header(r.face, k)).collect();
            let body = ctx.body(r);
            let t0 = Instant::now();
            let (status, v) = ctx.call(c.tcp, c.uid, r.method, &path, &headers, body.as_deref());
            *ctx.slow.lock().unwrap().entry(format!("{} {}", r.method, r.route)).or_default() += t0.elapsed().as_millis();
            let what = format!("{} {} as {} ({}): {status} {v}", r.method, path, c.name, if c.tcp { "https" } else { "socket" });
            if status >= 500 && !(r.route == "/keyport/v1/health" && status == 503) {
                failures.push(format!("5xx: {what}"));
                continue;
            }
            match (r.need, &c.holds) {
                (Open, _) => {}
                (Public, _) => {
                    if status != 200 || v != json!({"status": "alive"}) {
                        failures.push(format!("expected 200 {{\"status\":\"alive\"}} and nothing else: {what}"));
                    }
                }
                // A TPP call with no TPP token: 401 whoever the caller is (API keys are not TPP tokens).
                (TppToken, _) => {
                    if status != 401 {
                        failures.push(format!("expected 401 (no TPP token): {what}"));
                    }
                }
                (_, None) => {
                    if status != 401 {
                        failures.push(format!("expected 401: {what}"));
                    }
                }
                (need, Some(h)) => {
                    let want = expected_allowed(need, h);
                    let got_denied = denied(r, status, &v);
                    if want && got_denied {
                        failures.push(format!("expected allowed ({need:?}): {what}"));
                    } else if !want && !got_denied {
                        failures.push(format!("expected denied ({need:?}): {what}"));
                    } else if got_denied && status == 401 {
                        failures.push(format!("a known principal got 401: {what}"));
                    }
                }
            }
        }
    }
}

/// A system user for the test (created once; reused by later runs).
fn test_user(name: &str) -> (u32, u32) {
    let id = |flag: &str| Command::new("id").args([flag, name]).output().unwrap();
    if !id("-u").status.success() {
        let out = Command::new("useradd").args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name]).output().unwrap();
        assert!(out.status.success() || id("-u").status.success(), "useradd {name}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let num = |flag: &str| String::from_utf8(id(flag).stdout).unwrap().trim().parse().unwrap();
    (num("-u"), num("-g"))
}

fn reload(d: &mut Daemon, revoked: &str, local_uid: u32) {
    let text = std::fs::read_to_string(&d.config).unwrap();
    let head = text.split("\n[[principals]]").next().unwrap().to_string();
    std::fs::write(&d.config, format!("{head}\n{}", surface::config(revoked, Some(local_uid)))).unwrap();
    let pid = d.child.as_ref().unwrap().id() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGHUP).unwrap();
    let start = Instant::now();
    while !d.log().contains("SIGHUP: principals reloaded") {
        assert!(start.elapsed().as_secs() < 10, "no reload:\n{}", d.log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
#[ignore = "needs root: test users made with useradd, called through setpriv; scripts/test runs it"]
fn every_route_of_every_face_refuses_whom_it_must_and_serves_whom_it_may() {
    common::require_root("test users made with useradd, called through setpriv");
    for t in ["curl", "setpriv", "useradd", "openssl", "ssh-keygen"] {
        require(t);
    }
    let started = Instant::now();
    let (in_uid, in_gid) = test_user("kp-matrix-in");
    let (out_uid, out_gid) = test_user("kp-matrix-out");
    let all = r#""import", "read", "export-private", "manage", "deploy", "sync", "admin", "sign""#;
    let mut d = Daemon::config(&surface::config(all, Some(in_uid)));
    d.spawn();
    // Other users reach the socket (mode 0666) through the test's folder.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();

    // Fixtures, made by root over the socket.
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let kps_pem = openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    let rsa_pem = openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
    let (s, v) =
        d.curl("POST", "/keyport/v1/keys", Some(r#"{"name":"fixture","namespace":"alpha","algorithm":"ec-p256","exportable":true}"#), &[]);
    assert_eq!(s, 201, "{v}");
    let ssh_dir = d.dir.path().join("ssh");
    std::fs::create_dir(&ssh_dir).unwrap();
    let out =
        Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "ca", "-f"]).arg(ssh_dir.join("ca")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut ctx = Ctx {
        socket: d.socket.clone(),
        cert: d.dir.path().join("state/tls-cert.pem"),
        port: d.port,
        counter: AtomicUsize::new(0),
        key: v["id"].as_str().unwrap().to_string(),
        kps_pem,
        rsa_pem,
        ssh_dir,
        ssh_key: String::new(),
        requests: AtomicUsize::new(0),
        slow: Default::default(),
    };
    ctx.ssh_key = ctx.ssh_cert_key("ssh-fixture");
    let (s, v) =
        ctx.admin("POST", "/keyport/v1/keysets", Some(r#"{"name":"fixture-ks","namespace":"alpha","type":"User","algorithm":"ec-p256"}"#));
    assert_eq!(s, 201, "{v}");
    let (s, v) = ctx.admin("POST", &format!("/v3/{P}/keypairs"), Some(r#"{"keypair":{"name":"fixture-kp"}}"#));
    assert_eq!(s, 200, "{v}");
    let (s, v) = ctx.admin("POST", "/apiops/projects/Alpha/keys/", Some(&ctx.apiops_create("fixture-ak")));
    assert_eq!(s, 200, "{v}");

    // Every route in the document has a row (the unit test holds the document to the routers).
    let (s, doc) = d.curl("GET", "/keyport/v1/openapi.json", None, &[]);
    assert_eq!(s, 200);
    let rows = table();
    let have: BTreeSet<(String, String)> = rows.iter().map(|r| (r.method.to_string(), r.route.to_string())).collect();
    let mut missing = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for m in ops.as_object().unwrap().keys() {
            if !have.contains(&(m.to_ascii_uppercase(), path.clone())) {
                missing.push(format!("{} {path}", m.to_ascii_uppercase()));
            }
        }
    }
    assert!(missing.is_empty(), "routes with no row in the authorization table: {missing:?}");

    // Callers with an API key go over both listeners; those without one as well.
    let mut callers = Vec::new();
    for tcp in [false, true] {
        let l = if tcp { "https" } else { "socket" };
        let by_key = |name: &str, key: &str, h| Caller { name: format!("{name}/{l}"), key: Some(key.into()), uid: None, tcp, holds: h };
        for p in surface::PERMISSIONS {
            callers.push(by_key(&format!("only-{p}"), &format!("key-{p}"), holds("alpha", &[p])));
        }
        callers.push(by_key("beta-all", "key-beta", holds("beta", &surface::PERMISSIONS)));
        callers.push(by_key("superadmin", "key-superadmin", holds("*", &["admin"])));
        callers.push(by_key("revoked(before)", "key-revoked", holds("alpha", &surface::PERMISSIONS)));
        callers.push(by_key("wrong-key", "not-a-key", None));
        // A wrong key is refused even from root on the socket.
        if !tcp {
            callers.push(Caller { name: "root+wrong-key/socket".into(), key: Some("wrong".into()), uid: None, tcp, holds: None });
        }
    }
    callers.push(Caller { name: "no-key/https".into(), key: None, uid: None, tcp: true, holds: None });
    callers.push(Caller { name: "uid-no-principal/socket".into(), key: None, uid: Some((out_uid, out_gid)), tcp: false, holds: None });
    callers.push(Caller {
        name: "uid-local/socket".into(),
        key: None,
        uid: Some((in_uid, in_gid)),
        tcp: false,
        holds: holds("alpha", &["admin"]),
    });
    callers.push(Caller {
        name: "uid-no-principal+admin-key/socket".into(),
        key: Some("key-superadmin".into()),
        uid: Some((out_uid, out_gid)),
        tcp: false,
        holds: holds("*", &["admin"]),
    });

    let mut failures = Vec::new();
    check(&ctx, &rows, &callers, &mut failures);

    // health/keys answers any principal but shows only the keys it may read.
    for (key, sees) in [("key-read", true), ("key-superadmin", true), ("key-sign", false), ("key-beta", false)] {
        let (s, v) = ctx.call(false, None, "GET", "/keyport/v1/health/keys", &[format!("X-Api-Key: {key}")], None);
        let ids: Vec<&str> = v["keys"].as_array().map(|a| a.iter().filter_map(|k| k["id"].as_str()).collect()).unwrap_or_default();
        if s != 200 || ids.contains(&ctx.key.as_str()) != sees {
            failures.push(format!("health/keys as {key}: expected the fixture key {}: {s} {v}", if sees { "shown" } else { "hidden" }));
        }
    }

    // TPP with its own token: the admin user's token is served, a token is not an API key.
    let login = |scope: &str| {
        let (s, v) = ctx.admin(
            "POST",
            "/vedauth/authorize/oauth",
            Some(&json!({"client_id": "m", "username": "tppadmin", "password": surface::TPP_PASSWORD, "scope": scope}).to_string()),
        );
        assert_eq!(s, 200, "{v}");
        v["access_token"].as_str().unwrap().to_string()
    };
    let token = login("ssh:manage,discover");
    let narrow = login("ssh");
    for r in rows.iter().filter(|r| matches!(r.need, TppToken)) {
        for tcp in [false, true] {
            let path = ctx.path(r);
            let t = if r.route == "/vedauth/revoke/token" { login("ssh") } else { token.clone() };
            let (s, v) = ctx.call(tcp, None, r.method, &path, &[format!("Authorization: Bearer {t}")], ctx.body(r).as_deref());
            if s == 401 || s == 403 || s >= 500 {
                failures.push(format!("TPP token refused: {} {path}: {s} {v}", r.method));
            }
            let (s, v) =
                ctx.call(tcp, None, r.method, &path, &["Authorization: Bearer key-superadmin".to_string()], ctx.body(r).as_deref());
            if s != 401 {
                failures.push(format!("an API key is not a TPP token: {} {path}: {s} {v}", r.method));
            }
        }
    }
    // The import needs the ssh:discover scope.
    let (s, v) = ctx.call(
        true,
        None,
        "POST",
        "/vedsdk/SSH/ImportPrivateKey",
        &[format!("Authorization: Bearer {narrow}")],
        Some(r#"{"KeyContentBase64":"AAAA"}"#),
    );
    if s != 403 {
        failures.push(format!("ImportPrivateKey with scope ssh only: {s} {v}"));
    }

    // Revocation: the principal's permissions are edited away, SIGHUP, and every route it
    // reached is refused (over both listeners); the same after a restart.
    reload(&mut d, "", in_uid);
    let revoked: Vec<Caller> = [false, true]
        .into_iter()
        .map(|tcp| Caller {
            name: format!("revoked(after)/{tcp}"),
            key: Some("key-revoked".into()),
            uid: None,
            tcp,
            holds: holds("alpha", &[]),
        })
        .collect();
    check(&ctx, &rows, &revoked, &mut failures);
    d.stop();
    d.spawn();
    let sample: Vec<Row> = table().into_iter().filter(|r| matches!(r.need, All(_))).collect();
    check(&ctx, &sample, &revoked, &mut failures);

    let mut slow: Vec<_> = ctx.slow.lock().unwrap().clone().into_iter().collect();
    slow.sort_by_key(|(_, ms)| std::cmp::Reverse(*ms));
    eprintln!("slowest rows (ms, all callers): {:?}", &slow[..8]);
    let n = ctx.requests.load(Ordering::Relaxed);
    eprintln!("authorization matrix: {} rows, {} callers, {n} requests in {:?}", rows.len(), callers.len() + 2, started.elapsed());
    assert!(failures.is_empty(), "{} authorization failures:\n{}", failures.len(), failures.join("\n"));
}
