//! The crash loop across every face: one daemon with two real SoftHSM tokens, syncing to a
//! real OpenBao, runs a mixed workload and is SIGKILLed at a random moment, restarted and
//! checked. Per iteration, in parallel:
//!
//! - native: generate (some exportable), delete, `POST keys/import` of openssl keys, export;
//! - TLS Protect Cloud: one import job of two keys with certificates;
//! - certificate import: one zip upload, PEM and XML in turn (two certificates each);
//! - KPS: three ssh-keygen key pairs in one batch import or one by one, then generated creates;
//! - 004 API ops: creates of AES keys deployed to two environments (both tokens);
//! - a keyset rotated (and sometimes cancelled mid-way);
//! - sync passes asked for continuously (and every second by the schedule).
//!
//! After every restart, besides what `crash_loop.rs` checks for native keys (acknowledged
//! creations whole, acknowledged deletes gone, no half keys, no orphans, no intents):
//!
//! - every job (TLS Protect Cloud, certificate import) finishes; acknowledged jobs completed with
//!   every item imported, each key / certificate exactly once;
//! - every rotation finishes or is rolled back: none open, one active version and no pending
//!   one per keyset, a completed rotation's new version active, a failed or cancelled one's
//!   abandoned with its key gone, no key of the keyset without a version;
//! - KPS key pairs and 004 deployments agree with the inventory both ways (an acknowledged one
//!   present; a key pair or deployment never without its key, a key of those namespaces never
//!   without its face row; a 004 key deployed to both environments or to none);
//! - once sync settles, every key is in the vault exactly once: synced, one transit version,
//!   one KV record (version 1) naming it.
//!
//! CI runs 20 iterations; `KEYPORT_CRASH_ITERATIONS=200` runs the long mode. The summary
//! (`crash faces: …`) counts acknowledgements and the kill points: what was in flight at each
//! kill, by operation, from the callers' side and from the store's.

mod common;
use common::bao::Bao;
use common::tlspc::{edge, seal};
use common::*;
use rand::Rng;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TLSPC_KEY: &str = "tppl-api-key: tlspc-key";
const CERT_KEY: &str = "x-api-key: tlspc-key";
const KPS_TOKEN: &str = "X-Auth-Token: kps-token";
const OPS: &str = "Authorization: Bearer ops-key";
const PROJECT: &str = "0123456789abcdef0123456789abcdef";
const APIOPS: &str = "/apiops/projects/MyProject/keys/";
/// keyport's own objects (TLS key, DEK) have ids spelling "keyport…".
const INTERNAL_ID: &str = "6b6579706f7274";

#[derive(Default)]
struct Ledger {
    /// Acknowledged native creations and imports: id → name.
    created: HashMap<String, String>,
    exportable: HashSet<String>,
    deleted: HashSet<String>,
    attempted: HashSet<String>,
    /// TLS Protect Cloud jobs: id → CNs; certificate-import jobs: id → SHA-256 of each certificate.
    tlspc_jobs: HashMap<String, Vec<String>>,
    cert_jobs: HashMap<String, Vec<String>>,
    jobs_checked: HashSet<String>,
    /// Acknowledged KPS key pairs and 004 keys, by name.
    kps: HashSet<String>,
    apiops: HashSet<String>,
    /// Keys already seen in the vault exactly once.
    vault_checked: HashSet<String>,
    acks: BTreeMap<&'static str, usize>,
}

impl Ledger {
    fn ack(&mut self, op: &'static str, n: usize) {
        *self.acks.entry(op).or_default() += n;
    }
}

/// Operations in flight on the callers' side (the kill points).
#[derive(Default)]
struct InFlight(Mutex<BTreeMap<&'static str, usize>>);

impl InFlight {
    fn run<T>(&self, op: &'static str, f: impl FnOnce() -> T) -> T {
        *self.0.lock().unwrap().entry(op).or_default() += 1;
        let out = f();
        *self.0.lock().unwrap().get_mut(op).unwrap() -= 1;
        out
    }
    fn now(&self) -> Vec<&'static str> {
        self.0.lock().unwrap().iter().filter(|(_, n)| **n > 0).map(|(op, _)| *op).collect()
    }
}

/// curl with a deadline, over the socket (`https` false) or HTTPS; `None` without an answer.
fn call(d: &Daemon, https: bool, method: &str, path: &str, body: Option<&str>, args: &[&str]) -> Option<(u16, Value)> {
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "30", "-o", "-", "-w", "\n%{http_code}", "-X", method]);
    if let Some(b) = body {
        c.args(["-H", "content-type: application/json", "--data-binary", b]);
    }
    c.args(args);
    if https {
        c.arg("--cacert").arg(d.dir.path().join("state/tls-cert.pem")).arg(format!("https://127.0.0.1:{}{path}", d.port));
    } else {
        c.arg("--unix-socket").arg(&d.socket).arg(format!("http://localhost{path}"));
    }
    let out = c.stderr(Stdio::null()).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n')?;
    let code: u16 = code.trim().parse().ok()?;
    (code != 0).then(|| (code, serde_json::from_str(body).unwrap_or(Value::Null)))
}

fn config(bao: &Bao) -> Daemon {
    let d = Daemon::config("[[principals]]\nname = \"placeholder\"\n");
    let dir = d.dir.path();
    let token = dir.join("vault.token");
    std::fs::write(&token, format!("{}\n", common::bao::ROOT_TOKEN)).unwrap();
    let text = std::fs::read_to_string(&d.config).unwrap();
    let cut = text.find("[[principals]]").unwrap();
    let extra = format!(
        r#"
[[tokens]]
name = "soft2"
module = "{module}"
label = "second"
pin = {{ file = "{pin2}" }}
softhsm = {{ dir = "{hsm}" }}

[[principals]]
name = "root"
uids = [{uid}]
permissions = {{ "*" = ["admin"] }}

[[principals]]
name = "tlspc-client"
api_key_sha256 = ["{tlspc}"]
permissions = {{ default = ["import", "read"] }}

[[principals]]
name = "kps-user"
api_key_sha256 = ["{kps}"]
permissions = {{ kps = ["import", "read", "manage"] }}

[[principals]]
name = "ops"
api_key_sha256 = ["{ops}"]
permissions = {{ web = ["manage", "deploy", "import"] }}

[[enrollment_profiles]]
id = "pem-profile"
name = "PEM profile"
namespace = "default"
source_format = "PEM"

[[enrollment_profiles]]
id = "xml-profile"
name = "XML profile"
namespace = "default"
source_format = "XML"

# Keys leave the token only wrapped into the vault (sync) or by an export, so the vault
# invariant covers every face; generate asks for non-exportable keys now and then.
[namespaces.default]
exportable_by_default = true
[namespaces.kps]
exportable_by_default = true
[namespaces.web]
exportable_by_default = true

[tlspc]
exportable = true

[kps.projects.{PROJECT}]
namespace = "kps"

[apiops]
exportable = true
[apiops.projects.MyProject]
namespace = "web"
[apiops.environments]
Production = "soft"
Test = "soft2"

[sync]
address = "http://127.0.0.1:{port}"
token = {{ file = "{token}" }}
host = "h1"
interval_secs = 1
jitter_secs = 0
retry_base_secs = 1
namespaces = ["*"]
"#,
        module = softhsm_module().display(),
        pin2 = dir.join("pin2").display(),
        hsm = dir.join("softhsm").display(),
        uid = nix::unistd::getuid().as_raw(),
        tlspc = sha256_hex("tlspc-key"),
        kps = sha256_hex("kps-token"),
        ops = sha256_hex("ops-key"),
        port = bao.port,
        token = token.display(),
    );
    std::fs::write(&d.config, format!("{}{extra}", &text[..cut])).unwrap();
    d
}

fn kill(d: &Daemon) {
    if let Some(c) = &d.child {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGKILL);
    }
}

fn run(dir: &std::path::Path, prog: &str, args: &[&str]) {
    let out = Command::new(prog).current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "{prog} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn b64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn sha256(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// What one iteration sends, made before the clock starts.
struct Inputs {
    tlspc: (String, Vec<String>),
    /// (file, profile, SHA-256 of each certificate).
    certs: (std::path::PathBuf, &'static str, Vec<String>),
    /// KPS key pairs with their private keys (`{"keypair": …}`).
    kps_items: Vec<Value>,
    /// Native imports: (name, body).
    imports: Vec<(String, String)>,
    /// 004 creates: (name, body).
    apiops: Vec<(String, String)>,
}

fn inputs(root: &std::path::Path, edge: &(String, String, String), it: usize) -> Inputs {
    let dir = root.join(format!("work/{it}"));
    std::fs::create_dir_all(&dir).unwrap();
    let sealed = seal(&edge.2, b"crash-faces!");
    let (mut items, mut cns) = (Vec::new(), Vec::new());
    for k in 0..2 {
        let cn = format!("job{it}-{k}");
        run(&dir, "openssl", &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "k.pem"]);
        // A leaf (CA:FALSE): transit's set-certificate refuses a CA certificate in first place.
        run(
            &dir,
            "openssl",
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "k.pem",
                "-subj",
                &format!("/CN={cn}"),
                "-days",
                "3",
                "-addext",
                "basicConstraints=critical,CA:FALSE",
                "-out",
                "c.pem",
            ],
        );
        run(&dir, "openssl", &["pkcs8", "-topk8", "-in", "k.pem", "-v2", "aes-256-cbc", "-passout", "pass:crash-faces!", "-out", "e.pem"]);
        items.push(json!({
            "certificate": std::fs::read_to_string(dir.join("c.pem")).unwrap(),
            "passwordEncryptedPrivateKey": std::fs::read_to_string(dir.join("e.pem")).unwrap(),
            "dekEncryptedPassword": sealed,
        }));
        cns.push(cn);
    }
    let tlspc = (json!({"edgeInstanceId": edge.0, "encryptionKeyId": edge.1, "importInformation": items}).to_string(), cns);

    let ders: Vec<Vec<u8>> =
        (0..2).map(|k| rcgen::generate_simple_self_signed(vec![format!("c{it}-{k}.example")]).unwrap().cert.der().to_vec()).collect();
    let zip_path = dir.join("certs.zip");
    let mut w = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let profile = if it % 2 == 0 {
        for (k, der) in ders.iter().enumerate() {
            w.start_file(format!("c{k}.pem"), opts).unwrap();
            let pem = format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", b64(der));
            std::io::Write::write_all(&mut w, pem.as_bytes()).unwrap();
        }
        "pem-profile"
    } else {
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<certificates>\n  <certificate><pem>{}</pem></certificate>\n  <certificate><pem>{}</pem></certificate>\n</certificates>\n",
            b64(&ders[0]),
            b64(&ders[1])
        );
        w.start_file("certificates.xml", opts).unwrap();
        std::io::Write::write_all(&mut w, xml.as_bytes()).unwrap();
        "xml-profile"
    };
    w.finish().unwrap();
    let certs = (zip_path, profile, ders.iter().map(|d| sha256(d)).collect());

    // The batch imports (a generated key pair is an RSA-2048 generation, over a second under
    // this load: the single creates below generate).
    let mut kps_items = Vec::new();
    for k in 0..3 {
        let f = format!("ssh{it}-{k}");
        run(&dir, "ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-f", &f]);
        let name = format!("kps-{it}-imp{k}");
        kps_items.push(json!({"keypair": {"name": name, "key_protection": {
            "private_key": std::fs::read_to_string(dir.join(&f)).unwrap(), "encryption": {"type": "default"}}}}));
    }

    let mut imports = Vec::new();
    for k in 0..2 {
        let f = format!("imp{it}-{k}.pem");
        run(&dir, "openssl", &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &f]);
        let name = format!("i-{it}-{k}");
        let body = json!({"data": b64(&std::fs::read(dir.join(&f)).unwrap()), "name": name}).to_string();
        imports.push((name, body));
    }
    // 004: RSA private keys (openssl) deployed to both environments. (AES secret keys are
    // not synced: the vault sync carries key pairs only.)
    let mut apiops = Vec::new();
    for k in 0..2 {
        let f = format!("ak{it}-{k}.pem");
        run(&dir, "openssl", &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", &f]);
        let pem = std::fs::read(dir.join(&f)).unwrap();
        let name = format!("ak-{it}-{k}");
        let body = json!({"name": name, "keyType": "PRIVATE_KEY", "algorithm": "RSA", "cryptoKeyInfoEnvironmentList": [
            {"environmentName": "Production", "content": b64(&pem)}, {"environmentName": "Test", "content": b64(&pem)}]})
        .to_string();
        apiops.push((name, body));
    }
    Inputs { tlspc, certs, kps_items, imports, apiops }
}

fn db(d: &Daemon) -> rusqlite::Connection {
    rusqlite::Connection::open(d.dir.path().join("state/keyport.db")).unwrap()
}

fn count(db: &rusqlite::Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Waits (60 s at most) until `sql` counts 0; the count left.
fn settle(d: &Daemon, sql: &str) -> i64 {
    let db = db(d);
    let start = Instant::now();
    loop {
        let n = count(&db, sql);
        if n == 0 || start.elapsed() > Duration::from_secs(60) {
            return n;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// pkcs11-tool's objects: (kind line, label, ID).
type Objects = Vec<(String, String, String)>;

/// Token objects of one token (by label).
fn objects(d: &Daemon, label: &str) -> Objects {
    let pin_file = if label == "test" { "pin" } else { "pin2" };
    let pin = std::fs::read_to_string(d.dir.path().join(pin_file)).unwrap().trim().to_string();
    let out = Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", d.softhsm_conf())
        .arg("--module")
        .arg(softhsm_module())
        .args(["--token-label", label, "--login", "--pin", &pin, "--list-objects"])
        .output()
        .unwrap();
    assert!(out.status.success(), "pkcs11-tool: {}", String::from_utf8_lossy(&out.stderr));
    object_blocks(&String::from_utf8_lossy(&out.stdout))
}

/// Inventory rows: id → (name, namespace, token, status).
fn rows(d: &Daemon) -> HashMap<String, (String, String, String, String)> {
    let db = db(d);
    let mut st = db.prepare("SELECT id, name, namespace, token, status FROM keys").unwrap();
    st.query_map([], |r| Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))).unwrap().map(Result::unwrap).collect()
}

fn strings(d: &Daemon, sql: &str) -> Vec<String> {
    let db = db(d);
    let mut st = db.prepare(sql).unwrap();
    st.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect()
}

/// Token objects that no inventory row or certificate row explains, and key objects with
/// neither id nor label, in both tokens.
fn leftovers(d: &Daemon, listings: &[(&str, Objects)]) -> Vec<String> {
    let keys = rows(d);
    let certs: HashSet<String> = strings(d, "SELECT lower(hex(cka_id)) FROM certificates WHERE cka_id IS NOT NULL").into_iter().collect();
    let mut out = Vec::new();
    for (token, objs) in listings {
        let objs = objs.clone();
        // A certificate of its own (no key) is one object: a retried import reuses it.
        for c in certs.iter().filter(|c| !keys.contains_key(*c)) {
            let n = objs.iter().filter(|o| o.0.starts_with("Certificate Object") && o.2.to_lowercase() == *c).count();
            if n > 1 {
                out.push(format!("{token}: certificate {c} stored as {n} objects"));
            }
        }
        for (kind, name, id) in objs {
            let id = id.to_lowercase();
            if id.is_empty() {
                if name.is_empty() && kind.contains("Key Object") {
                    out.push(format!("half-made key object left in {token}: {kind}"));
                }
                continue;
            }
            if id.starts_with(INTERNAL_ID) || certs.contains(&id) {
                continue;
            }
            match keys.get(&id) {
                Some((_, _, t, _)) if t == token => {}
                other => out.push(format!("{token}: object without its row: {kind} '{name}' {id} (row {other:?})")),
            }
        }
    }
    out
}

/// A finished rotation: id, keyset, outcome, new version, that version's state and key.
type RotationRow = (i64, String, Option<String>, Option<i64>, Option<String>, Option<String>);

/// Everything the invariants say, after a restart; one line per violation.
fn check(d: &Daemon, bao: &Bao, l: &mut Ledger, it: usize) -> Vec<String> {
    let mut v = Vec::new();
    let p = |s: String| format!("#{it}: {s}");
    // Every job and every rotation finishes after the restart.
    let jobs = settle(d, "SELECT COUNT(*) FROM jobs WHERE finished_at IS NULL");
    if jobs > 0 {
        v.push(p(format!("{jobs} job(s) still running 60 s after the restart")));
    }
    let open = settle(d, "SELECT COUNT(*) FROM rotations WHERE finished_at IS NULL");
    if open > 0 {
        v.push(p(format!("{open} rotation(s) still open 60 s after the restart")));
    }
    // Sync settles: a pass with nothing left in the outbox.
    let start = Instant::now();
    loop {
        let ok = matches!(call(d, false, "POST", "/keyport/v1/sync", Some(r#"{"wait_secs": 60}"#), &[]), Some((200, _)));
        if ok && count(&db(d), "SELECT COUNT(*) FROM sync_outbox") == 0 {
            break;
        }
        if start.elapsed() > Duration::from_secs(90) {
            let (_, s) = call(d, false, "GET", "/keyport/v1/sync", None, &[]).unwrap_or_default();
            v.push(p(format!("sync did not settle in 90 s: backlog {}, last pass {}", s["backlog"], s["last_pass"])));
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    let keys = rows(d);
    let listings = [("soft", objects(d, "test")), ("soft2", objects(d, "second"))];
    let mut by_id: HashMap<String, Vec<String>> = HashMap::new();
    for (_, objs) in &listings {
        for (kind, _, id) in objs {
            by_id.entry(id.to_lowercase()).or_default().push(kind.clone());
        }
    }
    let has_private = |id: &str| by_id.get(id).is_some_and(|k| k.iter().any(|k| k.starts_with("Private Key Object")));
    // Native creations and imports; deletes.
    for (id, name) in &l.created {
        if l.deleted.contains(id) || l.attempted.contains(id) {
            continue;
        }
        match keys.get(id) {
            Some((_, _, _, status)) if status == "active" => {}
            other => v.push(p(format!("acknowledged create {name} ({id}) not active: {other:?}"))),
        }
        if !has_private(id) {
            v.push(p(format!("acknowledged create {name} ({id}) has no private key in the token")));
        }
    }
    for id in &l.deleted {
        if keys.contains_key(id) || by_id.contains_key(id) {
            v.push(p(format!("acknowledged delete {id} left: row {:?}, objects {:?}", keys.get(id), by_id.get(id))));
        }
    }
    for id in &l.attempted {
        if keys.contains_key(id) != by_id.contains_key(id) {
            v.push(p(format!("unacknowledged delete {id} half done: row {:?}, objects {:?}", keys.get(id), by_id.get(id))));
        }
    }
    // No half keys: every row active with its private key object.
    for (id, (name, ns, _, status)) in &keys {
        if status != "active" || !has_private(id) {
            v.push(p(format!("half key: {ns}/{name} ({id}) status {status}, objects {:?}", by_id.get(id))));
        }
    }
    v.extend(leftovers(d, &listings).into_iter().map(p));
    let intents = count(&db(d), "SELECT (SELECT COUNT(*) FROM intents) + (SELECT COUNT(*) FROM delete_intents)");
    if intents > 0 {
        v.push(p(format!("{intents} intent(s) left after start")));
    }

    // KPS key pairs ↔ inventory.
    let kps: HashMap<String, Option<String>> = {
        let db = db(d);
        let mut st = db.prepare("SELECT name, key_id FROM kps_keypairs").unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    for name in &l.kps {
        if !kps.contains_key(name) {
            v.push(p(format!("acknowledged KPS key pair {name} has no row")));
        }
    }
    for (name, key) in &kps {
        match key.as_ref().map(|k| keys.get(k)) {
            Some(Some((_, ns, _, _))) if ns == "kps" => {}
            other => v.push(p(format!("KPS key pair {name} without its key: {key:?} → {other:?}"))),
        }
    }
    let kps_keys: HashSet<&String> = kps.values().flatten().collect();
    for (id, (name, ns, _, _)) in &keys {
        if ns == "kps" && !kps_keys.contains(id) {
            v.push(p(format!("kps key {name} ({id}) has no key pair")));
        }
    }
    // 004 keys ↔ deployments ↔ inventory: both environments or none.
    let deployments: Vec<(String, String, String)> = {
        let db = db(d);
        let mut st = db.prepare("SELECT name, environment, key_id FROM apiops_deployments").unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
    };
    let apiops_keys = strings(d, "SELECT name FROM apiops_keys");
    for name in &apiops_keys {
        let mut envs: Vec<&str> = deployments.iter().filter(|x| &x.0 == name).map(|x| x.1.as_str()).collect();
        envs.sort();
        if envs != ["Production", "Test"] {
            v.push(p(format!("004 key {name} deployed to {envs:?}, not both environments")));
        }
    }
    for name in &l.apiops {
        if !apiops_keys.contains(name) {
            v.push(p(format!("acknowledged 004 key {name} has no row")));
        }
    }
    for (name, env, key) in &deployments {
        let want = if env == "Production" { "soft" } else { "soft2" };
        match keys.get(key) {
            Some((n, ns, t, _)) if ns == "web" && t == want && n == &format!("{name}@{env}") => {}
            other => v.push(p(format!("004 deployment {name}@{env} without its key {key}: {other:?}"))),
        }
    }
    let deployed: HashSet<&String> = deployments.iter().map(|x| &x.2).collect();
    for (id, (name, ns, _, _)) in &keys {
        if ns == "web" && !deployed.contains(id) {
            v.push(p(format!("web key {name} ({id}) has no deployment")));
        }
    }

    // Rotations: finished or rolled back, never half.
    {
        let db = db(d);
        let mut st = db
            .prepare("SELECT r.id, r.keyset_id, r.outcome, r.new_version, v.state, v.key_id FROM rotations r LEFT JOIN keyset_versions v ON v.keyset_id = r.keyset_id AND v.version = r.new_version WHERE r.finished_at IS NOT NULL")
            .unwrap();
        let rots: Vec<RotationRow> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (id, _, outcome, version, state, key) in &rots {
            let ok = match outcome.as_deref() {
                Some("complete") => matches!(state.as_deref(), Some("active" | "retired")),
                Some("failed" | "cancelled") => {
                    version.is_none() || (state.as_deref() == Some("abandoned") && key.as_ref().is_none_or(|k| !keys.contains_key(k)))
                }
                Some("rolled-back") => true,
                _ => false,
            };
            if !ok {
                v.push(p(format!("rotation {id}: outcome {outcome:?} with new version {version:?} {state:?} key {key:?}")));
            }
        }
        let mut st = db.prepare("SELECT keyset_id, state, key_id FROM keyset_versions").unwrap();
        let versions: Vec<(String, String, String)> =
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
        for ks in strings(d, "SELECT id FROM keysets") {
            let active = versions.iter().filter(|x| x.0 == ks && x.1 == "active").count();
            let pending = versions.iter().filter(|x| x.0 == ks && x.1 == "pending").count();
            if active != 1 || (pending != 0 && open == 0) {
                v.push(p(format!("keyset {ks}: {active} active and {pending} pending versions with no rotation open")));
            }
        }
        for (_, state, key) in &versions {
            let present = keys.contains_key(key);
            if (state == "active" || state == "retired") != present {
                v.push(p(format!("keyset version in state {state}: its key {key} present {present}")));
            }
        }
        let versioned: HashSet<&String> = versions.iter().map(|x| &x.2).collect();
        for (id, (name, ns, _, _)) in &keys {
            if ns == "default" && name.starts_with("rot.") && !versioned.contains(id) {
                v.push(p(format!("rotation key {name} ({id}) belongs to no keyset version")));
            }
        }
    }

    // Jobs: acknowledged ones completed, every item imported exactly once.
    for (job, cns) in &l.tlspc_jobs {
        if l.jobs_checked.contains(job) {
            continue;
        }
        match call(d, true, "GET", &format!("/outagedetection/v1/certificates/imports/{job}"), None, &["-H", TLSPC_KEY]) {
            Some((200, r)) if r["status"] == "COMPLETED" => {
                for item in r["results"].as_array().into_iter().flatten() {
                    if item["status"] != "IMPORTED" {
                        v.push(p(format!("TLS Protect Cloud job {job} item {item}")));
                    }
                }
            }
            other => v.push(p(format!("TLS Protect Cloud job {job} not completed: {other:?}"))),
        }
        for cn in cns {
            let copies = keys.values().filter(|k| k.1 == "default" && k.0.starts_with(cn.as_str())).count();
            if copies != 1 {
                v.push(p(format!("TLS Protect Cloud job {job} item {cn} imported {copies} times")));
            }
        }
    }
    let cert_rows = strings(d, "SELECT lower(sha256) FROM certificates");
    for (job, shas) in &l.cert_jobs {
        if l.jobs_checked.contains(job) {
            continue;
        }
        match call(d, false, "GET", &format!("/iot/api/v1/certificate-import/job/{job}"), None, &["-H", CERT_KEY]) {
            Some((200, r)) if r["status"] == "COMPLETED" && r["failed_certificates"] == 0 => {}
            other => v.push(p(format!("certificate import job {job} not completed whole: {other:?}"))),
        }
        for sha in shas {
            let copies = cert_rows.iter().filter(|c| *c == sha).count();
            if copies != 1 {
                v.push(p(format!("certificate import job {job}: certificate {sha} stored {copies} times")));
            }
        }
    }
    l.jobs_checked.extend(l.tlspc_jobs.keys().cloned());
    l.jobs_checked.extend(l.cert_jobs.keys().cloned());

    // The vault: every key exactly once (new keys each round; `vault_all` at the end).
    v.extend(vault(d, bao, l, false).into_iter().map(p));
    v
}

/// Every inventory key synced, in transit with one version, with one KV record (version 1)
/// naming it. `all` checks keys already seen too.
fn vault(d: &Daemon, bao: &Bao, l: &mut Ledger, all: bool) -> Vec<String> {
    let Some((200, status)) = call(d, false, "GET", "/keyport/v1/sync", None, &[]) else { return vec!["sync status failed".into()] };
    let by_key: HashMap<&str, &Value> = status["keys"].as_array().unwrap().iter().map(|k| (k["key_id"].as_str().unwrap(), k)).collect();
    let non_exportable: HashSet<String> = strings(d, "SELECT id FROM keys WHERE exportable = 0").into_iter().collect();
    let todo: Vec<(String, String, String)> =
        rows(d).into_iter().filter(|(id, _)| all || !l.vault_checked.contains(id)).map(|(id, (name, ns, _, _))| (id, name, ns)).collect();
    // Four at a time: two vault reads per key.
    let results: Vec<(String, Vec<String>)> = std::thread::scope(|s| {
        let chunks: Vec<_> = todo
            .chunks(todo.len().div_ceil(4).max(1))
            .map(|chunk| {
                let (by_key, non_exportable) = (&by_key, &non_exportable);
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|(id, name, ns)| {
                            (id.clone(), vault_one(bao, by_key.get(id.as_str()).copied(), non_exportable.contains(id), id, name, ns))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        chunks.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut v = Vec::new();
    for (id, found) in results {
        if found.is_empty() {
            l.vault_checked.insert(id);
        }
        v.extend(found);
    }
    v
}

/// One key against the vault: a non-exportable key is not in transit; any other is synced,
/// with one transit version and a KV record written once that names it.
fn vault_one(bao: &Bao, s: Option<&Value>, non_exportable: bool, id: &str, name: &str, ns: &str) -> Vec<String> {
    let Some(s) = s else { return vec![format!("key {ns}/{name} ({id}) has no sync status")] };
    let transit = s["vault_name"].as_str().unwrap_or_default();
    if s["status"] == "not_syncable" && non_exportable {
        let (code, t) = bao.call("GET", &format!("transit/keys/{transit}"), None);
        return if code == 404 { vec![] } else { vec![format!("non-exportable key {ns}/{name} ({id}) is in transit: {code} {t}")] };
    }
    if s["status"] != "synced" {
        return vec![format!("key {ns}/{name} ({id}) not synced: {s}")];
    }
    let mut v = Vec::new();
    let (code, t) = bao.call("GET", &format!("transit/keys/{transit}"), None);
    if code != 200 || t["data"]["latest_version"] != 1 || t["data"]["keys"].as_object().map(|k| k.len()) != Some(1) {
        v.push(format!("key {ns}/{name} ({id}): transit {transit} is not one version: {code} {}", t["data"]["keys"]));
    }
    let path_name = if name.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c)) { name } else { id };
    let record = format!("keyport/h1/keys/{ns}/{path_name}");
    // The latest version of the record (KV v2 numbers versions from 1): written once, except
    // for a keyset's version, whose record follows its state (pending → active → retired:
    // at most three writes; docs/rotation.md).
    let (code, r) = bao.call("GET", &format!("secret/data/{record}"), None);
    let writes = r["data"]["metadata"]["version"].as_u64().unwrap_or(0);
    let allowed = if r["data"]["data"]["keyset_id"].is_string() { 1..=3 } else { 1..=1 };
    if code != 200 || !allowed.contains(&writes) || r["data"]["data"]["key_id"] != id {
        v.push(format!(
            "key {ns}/{name} ({id}): KV record {record} is not one record naming it: {code} version {} data {}",
            r["data"]["metadata"]["version"], r["data"]["data"]
        ));
    }
    v
}

#[test]
fn sigkill_under_every_face_sync_and_rotation_keeps_every_promise() {
    for t in ["curl", "pkcs11-tool", "openssl", "python3", "ssh-keygen", "bao"] {
        require(t);
    }
    let iterations: usize = std::env::var("KEYPORT_CRASH_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let started = Instant::now();
    let bao_dir = tempfile::tempdir().unwrap();
    let bao = Bao::start(bao_dir.path());
    let mut d = config(&bao);
    d.spawn();
    let edge = edge(&d);
    let (s, ks) = d.curl("POST", "/keyport/v1/keysets", Some(r#"{"name": "rot", "type": "User", "algorithm": "ed25519"}"#), &[]);
    assert_eq!(s, 201, "{ks}\n{}", d.log());
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let (mut violations, mut failed_restarts) = (Vec::new(), 0usize);
    let mut kill_points: BTreeMap<String, usize> = BTreeMap::new();
    // Seconds spent restarting and checking.
    let mut timing = [0f64; 2];
    let mut rng = rand::thread_rng();
    // Each iteration's inputs (openssl, ssh-keygen, PyNaCl) are made ahead by another thread.
    let (tx, made) = std::sync::mpsc::sync_channel(2);
    let (work, edge2) = (d.dir.path().to_path_buf(), edge.clone());
    std::thread::spawn(move || {
        for it in 0..iterations {
            if tx.send(inputs(&work, &edge2, it)).is_err() {
                return;
            }
        }
    });
    for it in 0..iterations {
        let stop = Arc::new(AtomicBool::new(false));
        let flight = Arc::new(InFlight::default());
        let inp = made.recv().unwrap();
        let d_ref = &d;
        let inp = &inp;
        std::thread::scope(|s| {
            // Native generate (every third exportable).
            {
                let (stop, ledger, flight) = (stop.clone(), ledger.clone(), flight.clone());
                s.spawn(move || {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let alg = ["ec-p256", "ed25519", "rsa-2048"][n % 3];
                        let name = format!("g-{it}-{n}");
                        let exportable = n % 3 == 1;
                        n += 1;
                        let body = json!({"name": name, "algorithm": alg, "exportable": exportable}).to_string();
                        if let Some((201, v)) =
                            flight.run("native generate", || call(d_ref, false, "POST", "/keyport/v1/keys", Some(&body), &[]))
                        {
                            let mut l = ledger.lock().unwrap();
                            let id = v["id"].as_str().unwrap().to_string();
                            if exportable {
                                l.exportable.insert(id.clone());
                            }
                            l.created.insert(id, name);
                            l.ack("native generate", 1);
                        }
                    }
                });
            }
            // Native delete of acknowledged native keys.
            {
                let (stop, ledger, flight) = (stop.clone(), ledger.clone(), flight.clone());
                s.spawn(move || {
                    let mut rng = rand::thread_rng();
                    while !stop.load(Ordering::Relaxed) {
                        let target = {
                            let l = ledger.lock().unwrap();
                            let live: Vec<&String> =
                                l.created.keys().filter(|id| !l.deleted.contains(*id) && !l.attempted.contains(*id)).collect();
                            (live.len() >= 6).then(|| live[rng.gen_range(0..live.len())].clone())
                        };
                        let Some(id) = target else {
                            std::thread::sleep(Duration::from_millis(30));
                            continue;
                        };
                        ledger.lock().unwrap().attempted.insert(id.clone());
                        let path = format!("/keyport/v1/keys/{id}");
                        if let Some((200, _)) = flight.run("native delete", || call(d_ref, false, "DELETE", &path, None, &[])) {
                            let mut l = ledger.lock().unwrap();
                            l.attempted.remove(&id);
                            l.deleted.insert(id);
                            l.ack("native delete", 1);
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                });
            }
            // Native import of openssl keys, then exports of exportable keys.
            {
                let (stop, ledger, flight) = (stop.clone(), ledger.clone(), flight.clone());
                s.spawn(move || {
                    for (name, body) in &inp.imports {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let answer = flight.run("native import", || call(d_ref, false, "POST", "/keyport/v1/keys/import", Some(body), &[]));
                        if let Some((201, v)) = answer {
                            let mut l = ledger.lock().unwrap();
                            l.created.insert(v["key"]["id"].as_str().unwrap().to_string(), name.clone());
                            l.ack("native import", 1);
                        }
                    }
                    let mut rng = rand::thread_rng();
                    while !stop.load(Ordering::Relaxed) {
                        let target = {
                            let l = ledger.lock().unwrap();
                            let live: Vec<&String> =
                                l.exportable.iter().filter(|id| !l.deleted.contains(*id) && !l.attempted.contains(*id)).collect();
                            (!live.is_empty()).then(|| live[rng.gen_range(0..live.len())].clone())
                        };
                        let Some(id) = target else {
                            std::thread::sleep(Duration::from_millis(50));
                            continue;
                        };
                        let path = format!("/keyport/v1/keys/{id}/export");
                        let body = r#"{"format": "pkcs8", "passphrase": "crash faces export"}"#;
                        if let Some((200, _)) = flight.run("native export", || call(d_ref, false, "POST", &path, Some(body), &[])) {
                            ledger.lock().unwrap().ack("native export", 1);
                        }
                    }
                });
            }
            // TLS Protect Cloud job, then the certificate-import upload.
            {
                let (ledger, flight) = (ledger.clone(), flight.clone());
                s.spawn(move || {
                    let path = "/outagedetection/v1/certificates/imports";
                    if let Some((201, v)) =
                        flight.run("tlspc job post", || call(d_ref, true, "POST", path, Some(&inp.tlspc.0), &["-H", TLSPC_KEY]))
                    {
                        let mut l = ledger.lock().unwrap();
                        l.tlspc_jobs.insert(v["id"].as_str().unwrap().to_string(), inp.tlspc.1.clone());
                        l.ack("tlspc job", 1);
                    }
                });
            }
            {
                let (ledger, flight) = (ledger.clone(), flight.clone());
                s.spawn(move || {
                    let (file, profile, shas) = &inp.certs;
                    let form = format!("file=@{}", file.display());
                    let path = format!("/iot/api/v1/certificate-import/{profile}");
                    if let Some((200, v)) =
                        flight.run("certificate import post", || call(d_ref, false, "POST", &path, None, &["-H", CERT_KEY, "-F", &form]))
                    {
                        let mut l = ledger.lock().unwrap();
                        l.cert_jobs.insert(v["id"].as_str().unwrap().to_string(), shas.clone());
                        l.ack(if *profile == "pem-profile" { "certificate import zip" } else { "certificate import xml" }, 1);
                    }
                });
            }
            // KPS: in even iterations a batch import of the three key pairs, in odd ones the
            // same three one by one (`POST keypairs` with the private key); then generated
            // creates. A batch takes over a second under this load, so most kills land inside
            // one (items committed one by one, no answer sent); the single calls are
            // acknowledged more often.
            {
                let (stop, ledger, flight) = (stop.clone(), ledger.clone(), flight.clone());
                s.spawn(move || {
                    let base = format!("/v3/{PROJECT}/keypairs");
                    if it % 2 == 0 {
                        let batch = format!("{base}/batch-import");
                        let body = Value::Array(inp.kps_items.clone()).to_string();
                        if let Some((200, v)) =
                            flight.run("kps batch import", || call(d_ref, true, "POST", &batch, Some(&body), &["-H", KPS_TOKEN]))
                        {
                            let mut l = ledger.lock().unwrap();
                            for k in v["succeeded_keypairs"].as_array().into_iter().flatten() {
                                l.kps.insert(k["keypair"]["name"].as_str().unwrap().to_string());
                            }
                            l.ack("kps batch import", 1);
                            if v["failed_keypairs"].as_array().is_some_and(|f| !f.is_empty()) {
                                panic!("KPS batch items failed: {v}");
                            }
                        }
                    } else {
                        for item in &inp.kps_items {
                            if stop.load(Ordering::Relaxed) {
                                return;
                            }
                            let body = item.to_string();
                            if let Some((200, _)) =
                                flight.run("kps import", || call(d_ref, true, "POST", &base, Some(&body), &["-H", KPS_TOKEN]))
                            {
                                let mut l = ledger.lock().unwrap();
                                l.kps.insert(item["keypair"]["name"].as_str().unwrap().to_string());
                                l.ack("kps import", 1);
                            }
                        }
                    }
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let name = format!("kps-{it}-c{n}");
                        n += 1;
                        let body = json!({"keypair": {"name": name}}).to_string();
                        if let Some((200, _)) =
                            flight.run("kps create", || call(d_ref, true, "POST", &base, Some(&body), &["-H", KPS_TOKEN]))
                        {
                            let mut l = ledger.lock().unwrap();
                            l.kps.insert(name);
                            l.ack("kps create", 1);
                        }
                    }
                });
            }
            // 004: RSA keys deployed to both environments (both tokens).
            {
                let (stop, ledger, flight) = (stop.clone(), ledger.clone(), flight.clone());
                s.spawn(move || {
                    for (name, body) in &inp.apiops {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        if let Some((200, _)) = flight.run("004 deploy", || call(d_ref, true, "POST", APIOPS, Some(body), &["-H", OPS])) {
                            let mut l = ledger.lock().unwrap();
                            l.apiops.insert(name.clone());
                            l.ack("004 deploy", 1);
                        }
                    }
                });
            }
            // Rotation (a third cancelled shortly after it starts).
            {
                let (stop, ledger, flight) = (stop.clone(), ledger.clone(), flight.clone());
                s.spawn(move || {
                    let mut rng = rand::thread_rng();
                    while !stop.load(Ordering::Relaxed) {
                        if let Some((202, _)) =
                            flight.run("rotate", || call(d_ref, false, "POST", "/keyport/v1/keysets/rot/rotate", None, &[]))
                        {
                            ledger.lock().unwrap().ack("rotate", 1);
                            if rng.gen_bool(0.33) {
                                std::thread::sleep(Duration::from_millis(rng.gen_range(0..300)));
                                if let Some((s, _)) = flight
                                    .run("rotation cancel", || call(d_ref, false, "POST", "/keyport/v1/keysets/rot/cancel", None, &[]))
                                {
                                    if s < 300 {
                                        ledger.lock().unwrap().ack("rotation cancel", 1);
                                    }
                                }
                            }
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                });
            }
            // Sync passes.
            {
                let (stop, ledger, flight) = (stop.clone(), ledger.clone(), flight.clone());
                s.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let body = r#"{"wait_secs": 5}"#;
                        if let Some((200, _)) = flight.run("sync pass", || call(d_ref, false, "POST", "/keyport/v1/sync", Some(body), &[]))
                        {
                            ledger.lock().unwrap().ack("sync pass", 1);
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                });
            }
            // Mostly 0.2-2 s; one iteration in eight runs 3-5 s, so slow calls (a KPS batch,
            // a sync pass over a large inventory) are acknowledged too.
            let window = if rng.gen_bool(0.125) { 3000..5000 } else { 200..2000 };
            std::thread::sleep(Duration::from_millis(rng.gen_range(window)));
            for op in flight.now() {
                *kill_points.entry(format!("caller: {op}")).or_default() += 1;
            }
            kill(d_ref);
            stop.store(true, Ordering::Relaxed);
        });
        d.kill9();
        let _ = std::fs::remove_dir_all(d.dir.path().join(format!("work/{it}")));
        // What the store says the daemon was in the middle of.
        {
            let db = db(&d);
            for (what, sql) in [
                ("store: creation intent", "SELECT COUNT(*) FROM intents"),
                ("store: delete intent", "SELECT COUNT(*) FROM delete_intents"),
                ("store: tlspc job running", "SELECT COUNT(*) FROM jobs WHERE finished_at IS NULL AND kind NOT LIKE '%cert%'"),
                ("store: certificate-import job running", "SELECT COUNT(*) FROM jobs WHERE finished_at IS NULL AND kind LIKE '%cert%'"),
                ("store: rotation open", "SELECT COUNT(*) FROM rotations WHERE finished_at IS NULL"),
                ("store: sync outbox not empty", "SELECT COUNT(*) FROM sync_outbox"),
            ] {
                if count(&db, sql) > 0 {
                    *kill_points.entry(what.to_string()).or_default() += 1;
                }
            }
            let stages = strings(&d, "SELECT CAST(stage AS TEXT) FROM rotations WHERE finished_at IS NULL");
            for st in stages {
                *kill_points.entry(format!("store: rotation at stage {st}")).or_default() += 1;
            }
        }
        let t = Instant::now();
        let spawned = d.try_spawn();
        timing[0] += t.elapsed().as_secs_f64();
        if let Err(e) = spawned {
            failed_restarts += 1;
            violations.push(format!("#{it}: restart failed: {e}"));
            break;
        }
        let mut l = ledger.lock().unwrap();
        let t = Instant::now();
        violations.extend(check(&d, &bao, &mut l, it));
        timing[1] += t.elapsed().as_secs_f64();
        if !violations.is_empty() {
            let keep = std::env::temp_dir().join(format!("keyport-crash-faces-{}", std::process::id()));
            let _ = Command::new("cp").arg("-a").arg(d.dir.path()).arg(&keep).status();
            eprintln!("crash faces: state kept in {}", keep.display());
            break;
        }
    }
    let mut l = ledger.lock().unwrap();
    if violations.is_empty() {
        violations.extend(vault(&d, &bao, &mut l, true).into_iter().map(|v| format!("final: {v}")));
    }
    let log = d.log();
    let repaired = |s: &str| log.matches(s).count();
    // Answered requests per route: count and median duration (ms), from the access log.
    let mut routes: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for line in log.lines().filter(|l| l.contains("keyport::access")) {
        let field = |k: &str| line.split(&format!(" {k}=")).nth(1).map(|r| r.split(' ').next().unwrap_or("").trim_matches('"').to_string());
        if let (Some(m), Some(r), Some(ms)) = (field("method"), field("route"), field("duration_ms")) {
            routes.entry(format!("{m} {r}")).or_default().push(ms.parse().unwrap_or(0.0));
        }
    }
    let routes: Vec<String> = routes
        .into_iter()
        .filter(|(r, _)| !r.starts_with("GET"))
        .map(|(r, mut ms)| {
            ms.sort_by(f64::total_cmp);
            format!("{r}: {} answered, median {:.0} ms", ms.len(), ms[ms.len() / 2])
        })
        .collect();
    let summary = format!(
        "crash faces: iterations={iterations}, violations={}, failed restarts={failed_restarts}, elapsed={:.0}s (restarts {:.0}s, checks {:.0}s), keys in the vault checked={}\n  acknowledged: {:?}\n  kill points: {:?}\n  repaired: {} unfinished creations undone, {} interrupted deletes finished, {} starts removed half-made objects\n  answered: {}",
        violations.len(),
        started.elapsed().as_secs_f64(),
        timing[0],
        timing[1],
        l.vault_checked.len(),
        l.acks,
        kill_points,
        repaired("repaired: removed an unfinished key creation"),
        repaired("repaired: finished an interrupted delete"),
        repaired("repaired: removed key objects half-made"),
        routes.join("; "),
    );
    eprintln!("{summary}");
    assert!(violations.is_empty() && failed_restarts == 0, "{summary}\n{}\n{}", violations.join("\n"), log);
    // An acknowledged KPS batch is likely in CI mode but not certain (most kills land inside
    // one); an acknowledged KPS key pair of some kind is.
    for op in ["native generate", "native import", "004 deploy", "rotate", "tlspc job"] {
        assert!(l.acks.get(op).copied().unwrap_or(0) > 0, "the workload ran {op}: {summary}");
    }
    let kps: usize = ["kps batch import", "kps import", "kps create"].iter().map(|op| l.acks.get(op).copied().unwrap_or(0)).sum();
    assert!(kps > 0, "the workload ran KPS: {summary}");
}

/// Found by the first version of the loop above, which deployed AES keys through 004: a
/// secret key in a synced namespace failed its sync permanently ("unknown algorithm
/// 'aes-256'", status `failed`), stayed in the outbox and was tried again at every `sync
/// now`, so sync never settled. Sync carries key pairs; a secret key is `not_syncable` with
/// the reason, like a non-exportable key, and never reaches the vault.
#[test]
fn a_004_secret_key_in_a_synced_namespace_is_not_syncable_and_sync_settles() {
    for t in ["curl", "bao"] {
        require(t);
    }
    let bao_dir = tempfile::tempdir().unwrap();
    let bao = Bao::start(bao_dir.path());
    let mut d = config(&bao);
    d.spawn();
    for (name, alg, bytes) in [("aes-one", "AES", 32usize), ("des3-one", "DESede", 24)] {
        let secret: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
        let body = json!({"name": name, "keyType": "SECRET_KEY", "algorithm": alg, "cryptoKeyInfoEnvironmentList": [
            {"environmentName": "Production", "content": b64(&secret)}, {"environmentName": "Test", "content": b64(&secret)}]});
        let (s, v) = d.curl_https("POST", APIOPS, Some(&body.to_string()), &["-H", OPS]);
        assert_eq!(s, 200, "{v}\n{}", d.log());
    }
    let (s, v) = d.curl("POST", "/keyport/v1/sync", Some(r#"{"wait_secs": 60}"#), &[]);
    assert_eq!(s, 200, "{v}");
    let (_, status) = d.curl("GET", "/keyport/v1/sync", None, &[]);
    assert_eq!(status["backlog"], 0, "sync settles: {status:#}");
    let keys = status["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 4, "two keys in two environments: {status:#}");
    for k in keys {
        assert_eq!(k["status"], "not_syncable", "{k}");
        assert!(k["detail"].as_str().unwrap().contains("secret key"), "the reason is given: {k}");
        let (code, t) = bao.call("GET", &format!("transit/keys/{}", k["vault_name"].as_str().unwrap()), None);
        assert_eq!(code, 404, "never in the vault: {t}");
    }
    // A second pass changes nothing: nothing is retried.
    let (s, _) = d.curl("POST", "/keyport/v1/sync", Some(r#"{"wait_secs": 60}"#), &[]);
    assert_eq!(s, 200);
    let (_, again) = d.curl("GET", "/keyport/v1/sync", None, &[]);
    assert!(again["keys"].as_array().unwrap().iter().all(|k| k["status"] == "not_syncable" && k["attempts"] == 0), "{again:#}");
}
