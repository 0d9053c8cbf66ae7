//! A real three-node OpenBao Raft cluster on loopback for the sync tests: three `bao server`
//! processes with `storage "raft"` and `retry_join` to each other (free ports, a temp folder),
//! initialised (one key share) and unsealed by the harness, all three voters with a leader, and
//! transit plus KV v2 at `secret/` mounted. Tests ask it for the leader, SIGKILL a node, restart
//! one (unsealed again, rejoined), put a rate-limit quota on a path; every node is stopped when
//! it is dropped.
//!
//! Start-up is kept short: `performance_multiplier = 1` (the default 5× made init wait for an
//! election, docs/vault.md §7), autopilot's server stabilisation time lowered to 1 s before the
//! other nodes join (its 10 s default is most of the "all voters ~15 s later" the issue saw),
//! and every wait is a poll.

use super::*;
use serde_json::{json, Value};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const NODES: usize = 3;

pub struct Node {
    pub api_port: u16,
    pub cluster_port: u16,
    /// `sh` holding `bao server`: it SIGKILLs bao when its stdin closes, which the kernel does
    /// when the test process exits, so a cluster kept in a `static` never outlives the tests.
    shell: Option<(Child, ChildStdin)>,
    /// The `bao server` process id.
    pub pid: Option<u32>,
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    pub root_token: String,
    unseal_key: String,
    /// Rate-limit quotas set, removed by `heal`.
    quotas: Vec<String>,
    /// Rate-limit headers were turned off (`heal` turns them on).
    headers_off: bool,
    /// Each node writes an audit entry per request to its `bao.log` (`start_audited`).
    audited: bool,
}

/// One audited request: which node handled it, OpenBao's operation (`read`, `list`, `create`,
/// `update`, `delete`) and the path.
#[derive(Debug, Clone)]
pub struct Audited {
    pub node: usize,
    pub operation: String,
    pub path: String,
    /// Seconds since the Unix epoch.
    pub time: f64,
    /// Seconds from the request's audit entry to its response's, on that node.
    pub latency: Option<f64>,
}

impl Audited {
    /// A request that changes the vault (each one a Raft log entry on the active node).
    pub fn is_write(&self) -> bool {
        matches!(self.operation.as_str(), "create" | "update" | "delete")
    }
}

/// One cluster for every test of a test binary, one test at a time (`shared`).
static SHARED: Mutex<Option<Cluster>> = Mutex::new(None);

/// The test binary's cluster, started on first use; the guard keeps other tests out until the
/// caller is done. Before it is handed out it is healed: killed nodes restarted and unsealed,
/// quotas removed, three voters and a leader. A test that panicked does not poison it.
pub fn shared() -> MutexGuard<'static, Option<Cluster>> {
    shared_with(false)
}

/// [`shared`], with every node auditing every request ([`Cluster::start_audited`]); a test
/// binary uses one or the other.
pub fn shared_audited() -> MutexGuard<'static, Option<Cluster>> {
    shared_with(true)
}

fn shared_with(audited: bool) -> MutexGuard<'static, Option<Cluster>> {
    let mut g = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    match g.as_mut() {
        Some(c) => {
            assert_eq!(c.audited, audited, "one kind of cluster per test binary");
            c.heal()
        }
        None => *g = Some(Cluster::start_with(audited)),
    }
    g
}

/// Polls `f` every 50 ms until it gives `Some`, or panics with `what` after `limit`.
pub fn poll<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Cluster {
    /// Three nodes, initialised, unsealed, all voters, a leader, transit and KV v2 mounted.
    pub fn start() -> Cluster {
        Cluster::start_with(false)
    }

    /// [`Cluster::start`] with a declarative file audit device (`audit "file"` in each node's
    /// configuration, to its stdout, so each node's `bao.log`): every request a node handles
    /// is one JSON line there, read back with [`Cluster::audit_since`].
    pub fn start_audited() -> Cluster {
        Cluster::start_with(true)
    }

    fn start_with(audited: bool) -> Cluster {
        require("bao");
        require("curl");
        let t = Instant::now();
        let nodes = (0..NODES).map(|_| Node { api_port: free_port(), cluster_port: free_port(), shell: None, pid: None }).collect();
        let mut c = Cluster {
            dir: cluster_dir(),
            nodes,
            root_token: String::new(),
            unseal_key: String::new(),
            quotas: Vec::new(),
            headers_off: false,
            audited,
        };
        for i in 0..NODES {
            c.write_config(i);
            c.spawn(i);
        }
        // Node 0 is initialised; the others join it through retry_join once unsealed.
        poll(Duration::from_secs(30), "node 0 listening", || (c.health(0) == 501).then_some(()));
        let (s, v) = c.call_as(0, None, "POST", "sys/init", Some(json!({"secret_shares": 1, "secret_threshold": 1})));
        assert_eq!(s, 200, "init: {v}");
        c.root_token = v["root_token"].as_str().unwrap().to_string();
        c.unseal_key = v["keys_base64"][0].as_str().unwrap().to_string();
        c.unseal(0);
        poll(Duration::from_secs(30), "node 0 active", || (c.health(0) == 200).then_some(()));
        let (s, v) = c.call(
            0,
            "POST",
            "sys/storage/raft/autopilot/configuration",
            Some(json!({"server_stabilization_time": "1s", "cleanup_dead_servers": false})),
        );
        assert!(s == 200 || s == 204, "autopilot configuration: {s} {v}");
        // The others join through retry_join and take the same unseal key; both at once.
        std::thread::scope(|s| {
            for i in 1..NODES {
                let c = &c;
                s.spawn(move || c.unseal(i));
            }
        });
        c.wait_healthy(Duration::from_secs(60));
        for (path, body) in [
            ("sys/mounts/transit", json!({"type": "transit"})),
            ("sys/mounts/secret", json!({"type": "kv", "options": {"version": "2"}})),
            ("sys/quotas/config", json!({"enable_rate_limit_response_headers": true})),
        ] {
            let (s, v) = c.call(c.leader(), "POST", path, Some(body));
            assert!(s == 200 || s == 204, "{path}: {s} {v}");
        }
        // KV v2 finishes setting up its mount in the background, and each standby notices on
        // its own ("Waiting for the primary to upgrade…", a 400): wait until every node reads.
        poll(Duration::from_secs(30), "KV v2 at secret/ takes writes", || {
            let (s, _) = c.call(c.leader(), "POST", "secret/data/harness/ready", Some(json!({"data": {"ok": "1"}})));
            (s == 200).then_some(())
        });
        for i in 0..NODES {
            poll(Duration::from_secs(30), &format!("KV v2 readable on node {i}"), || {
                (c.call(i, "GET", "secret/data/harness/ready", None).0 == 200).then_some(())
            });
        }
        eprintln!("raft cluster up in {:.1} s: {:?}", t.elapsed().as_secs_f64(), c.addresses());
        c
    }

    fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node{i}"))
    }

    fn write_config(&self, i: usize) {
        let dir = self.node_dir(i);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let joins: String =
            self.nodes.iter().map(|n| format!("  retry_join {{ leader_api_addr = \"http://127.0.0.1:{}\" }}\n", n.api_port)).collect();
        let n = &self.nodes[i];
        let audit = if self.audited { "audit \"file\" \"harness\" {\n  options {\n    file_path = \"stdout\"\n  }\n}\n" } else { "" };
        let hcl = format!(
            r#"storage "raft" {{
  path = "{data}"
  node_id = "node{i}"
  performance_multiplier = 1
{joins}}}
listener "tcp" {{
  address = "127.0.0.1:{api}"
  cluster_address = "127.0.0.1:{cluster}"
  tls_disable = 1
}}
api_addr = "http://127.0.0.1:{api}"
cluster_addr = "http://127.0.0.1:{cluster}"
{audit}"#,
            data = dir.join("data").display(),
            api = n.api_port,
            cluster = n.cluster_port,
        );
        std::fs::write(dir.join("bao.hcl"), hcl).unwrap();
    }

    fn spawn(&mut self, i: usize) {
        let dir = self.node_dir(i);
        let mut shell = Command::new("sh")
            .arg("-c")
            .arg(r#"bao server -config="$1" >>"$2" 2>&1 & echo $!; read _; kill -9 $! 2>/dev/null"#)
            .arg("sh")
            .arg(dir.join("bao.hcl"))
            .arg(dir.join("bao.log"))
            .env("HOME", &dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(shell.stdout.take().unwrap()).read_line(&mut line).unwrap();
        self.nodes[i].pid = Some(line.trim().parse().expect("the shell prints bao's pid"));
        let stdin = shell.stdin.take().unwrap();
        self.nodes[i].shell = Some((shell, stdin));
    }

    /// Sends the unseal key until the node is unsealed (a joining node takes it once its
    /// retry_join reached the leader).
    pub fn unseal(&self, i: usize) {
        poll(Duration::from_secs(60), &format!("node {i} unsealed"), || {
            let (s, v) = self.call_as(i, None, "POST", "sys/unseal", Some(json!({"key": self.unseal_key})));
            (s == 200 && v["sealed"] == false).then_some(())
        });
    }

    pub fn address(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].api_port)
    }

    pub fn addresses(&self) -> Vec<String> {
        (0..NODES).map(|i| self.address(i)).collect()
    }

    /// `sys/health` status: 200 active, 429 standby, 503 sealed, 501 not initialised, 0 down.
    pub fn health(&self, i: usize) -> u16 {
        self.call_as(i, None, "GET", "sys/health", None).0
    }

    /// The active node, waiting (up to 30 s) for an election.
    pub fn leader(&self) -> usize {
        poll(Duration::from_secs(30), "an active node", || (0..NODES).find(|&i| self.health(i) == 200))
    }

    /// A node that is up, unsealed and not the leader.
    pub fn standby(&self) -> usize {
        poll(Duration::from_secs(30), "a standby node", || (0..NODES).find(|&i| self.health(i) == 429))
    }

    /// Waits until every node is up and unsealed, one is active, and the Raft configuration
    /// lists all three as voters.
    pub fn wait_healthy(&self, limit: Duration) {
        poll(limit, "three voters, one leader", || {
            let codes: Vec<u16> = (0..NODES).map(|i| self.health(i)).collect();
            if codes.iter().filter(|&&c| c == 200).count() != 1 || codes.iter().any(|&c| c != 200 && c != 429) {
                return None;
            }
            let (s, v) = self.call(codes.iter().position(|&c| c == 200).unwrap(), "GET", "sys/storage/raft/configuration", None);
            let servers = v["data"]["config"]["servers"].as_array().cloned().unwrap_or_default();
            (s == 200 && servers.len() == NODES && servers.iter().all(|s| s["voter"] == true)).then_some(())
        });
    }

    /// SIGKILL: no clean leave, as a crashed host. Returns once its port is closed.
    pub fn kill9(&mut self, i: usize) {
        if let Some(pid) = self.nodes[i].pid.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
        if let Some((mut shell, stdin)) = self.nodes[i].shell.take() {
            drop(stdin);
            let _ = shell.wait();
        }
        poll(Duration::from_secs(10), &format!("node {i} down"), || (self.health(i) == 0).then_some(()));
    }

    /// Restarts killed nodes, removes quotas, and waits for three voters and a leader.
    pub fn heal(&mut self) {
        for i in 0..NODES {
            if self.nodes[i].shell.is_none() {
                self.restart(i);
            }
        }
        self.wait_healthy(Duration::from_secs(60));
        for q in std::mem::take(&mut self.quotas) {
            self.remove_rate_limit(&q);
        }
        if std::mem::take(&mut self.headers_off) {
            self.set_rate_limit_headers(true);
            self.headers_off = false;
        }
    }

    /// Starts a killed node again and unseals it; it rejoins as a standby.
    pub fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].shell.is_none(), "node {i} is running");
        self.spawn(i);
        poll(Duration::from_secs(30), &format!("node {i} listening"), || (self.health(i) != 0).then_some(()));
        self.unseal(i);
    }

    /// A `sys/quotas/rate-limit` quota of `rate` requests per second on `path` (per client,
    /// per node); response headers are on (`Retry-After`, `X-Ratelimit-*`).
    pub fn set_rate_limit(&mut self, name: &str, path: &str, rate: u32) {
        self.quotas.push(name.to_string());
        let (s, v) = self.call(
            self.leader(),
            "POST",
            &format!("sys/quotas/rate-limit/{name}"),
            Some(json!({"path": path, "rate": rate, "interval": "1s"})),
        );
        assert_eq!(s, 204, "{v}");
    }

    /// Turns the `Retry-After` / `X-Ratelimit-*` headers on 429s (and successes) on or off
    /// (`sys/quotas/config`; the harness starts with them on, `heal` turns them on again).
    pub fn set_rate_limit_headers(&mut self, on: bool) {
        self.headers_off |= !on;
        let (s, v) = self.call(self.leader(), "POST", "sys/quotas/config", Some(json!({"enable_rate_limit_response_headers": on})));
        assert_eq!(s, 204, "{v}");
    }

    pub fn remove_rate_limit(&mut self, name: &str) {
        self.quotas.retain(|q| q != name);
        let (s, v) = self.call(self.leader(), "DELETE", &format!("sys/quotas/rate-limit/{name}"), None);
        assert_eq!(s, 204, "{v}");
    }

    /// Where each node's log ends now: pass to [`Cluster::audit_since`].
    pub fn audit_mark(&self) -> Vec<u64> {
        (0..NODES).map(|i| std::fs::metadata(self.node_dir(i).join("bao.log")).map(|m| m.len()).unwrap_or(0)).collect()
    }

    /// The requests every node audited since `mark` (an audited cluster only).
    pub fn audit_since(&self, mark: &[u64]) -> Vec<Audited> {
        use std::io::{Read, Seek};
        assert!(self.audited, "start the cluster with start_audited");
        let mut out: Vec<Audited> = Vec::new();
        let mut pending = std::collections::HashMap::new();
        for (i, from) in mark.iter().enumerate() {
            let mut f = std::fs::File::open(self.node_dir(i).join("bao.log")).unwrap();
            f.seek(std::io::SeekFrom::Start(*from)).unwrap();
            let mut text = String::new();
            f.read_to_string(&mut text).unwrap();
            for line in text.lines().filter(|l| l.starts_with('{')) {
                let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
                let time = v["time"]
                    .as_str()
                    .and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
                    .map_or(0.0, |t| t.unix_timestamp_nanos() as f64 / 1e9);
                let id = v["request"]["id"].as_str().unwrap_or_default().to_string();
                match v["type"].as_str() {
                    Some("request") => {
                        pending.insert((i, id), out.len());
                        out.push(Audited {
                            node: i,
                            operation: v["request"]["operation"].as_str().unwrap_or_default().to_string(),
                            path: v["request"]["path"].as_str().unwrap_or_default().to_string(),
                            time,
                            latency: None,
                        });
                    }
                    Some("response") => {
                        if let Some(k) = pending.remove(&(i, id)) {
                            out[k].latency = Some(time - out[k].time);
                        }
                    }
                    _ => {}
                }
            }
        }
        out
    }

    /// A call to node `i` with the root token.
    pub fn call(&self, i: usize, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(i, Some(&self.root_token), method, path, body)
    }

    fn call_as(&self, i: usize, token: Option<&str>, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut c = Command::new("curl");
        c.args(["-sS", "-m", "10", "-o", "-", "-w", "\n%{http_code}", "-X", method]);
        if let Some(t) = token {
            c.args(["-H", &format!("X-Vault-Token: {t}")]);
        }
        if let Some(b) = body {
            c.args(["-H", "content-type: application/json", "--data-binary", &b.to_string()]);
        }
        c.arg(format!("{}/v1/{path}", self.address(i)));
        let out = c.output().unwrap();
        if !out.status.success() {
            return (0, Value::Null); // not listening
        }
        parse_curl(out)
    }

    /// Transit key `name` as the leader sees it (`None`: 404).
    pub fn transit_key(&self, name: &str) -> Option<Value> {
        let (s, v) = self.call(self.leader(), "GET", &format!("transit/keys/{name}"), None);
        match s {
            200 => Some(v["data"].clone()),
            404 => None,
            _ => panic!("GET transit/keys/{name}: {s} {v}"),
        }
    }

    /// Transit key names that start with `prefix`.
    pub fn transit_keys(&self, prefix: &str) -> Vec<String> {
        let (s, v) = self.call(self.leader(), "LIST", "transit/keys", None);
        if s == 404 {
            return Vec::new();
        }
        assert_eq!(s, 200, "{v}");
        v["data"]["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|k| k.as_str())
            .filter(|k| k.starts_with(prefix))
            .map(String::from)
            .collect()
    }

    /// A keyport daemon syncing the `default` namespace as `host` to the cluster at
    /// `addresses` (one address or several), with the root token; `sync_extra` is added to
    /// `[sync]`.
    pub fn daemon(&self, host: &str, addresses: &[String], sync_extra: &str) -> Daemon {
        let mut d = Daemon::config("");
        let token = d.dir.path().join("vault.token");
        std::fs::write(&token, format!("{}\n", self.root_token)).unwrap();
        let mut text = std::fs::read_to_string(&d.config).unwrap();
        let addr = match addresses {
            [one] => format!("address = \"{one}\""),
            many => format!("addresses = {}", serde_json::to_string(many).unwrap()),
        };
        text.push_str(&format!(
            r#"
[sync]
{addr}
token = {{ file = "{token}" }}
host = "{host}"
interval_secs = 3600
jitter_secs = 0
retry_base_secs = 1
namespaces = ["default"]
{sync_extra}
"#,
            token = token.display()
        ));
        std::fs::write(&d.config, text).unwrap();
        d.spawn();
        d
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..NODES {
            self.kill9(i);
        }
    }
}

/// A folder for the cluster's data under the build's temp folder; folders left by earlier runs
/// (a shared cluster is never dropped) are removed once their test process is gone.
fn cluster_dir() -> tempfile::TempDir {
    let root = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let owner = std::fs::read_to_string(e.path().join("owner.pid")).ok().and_then(|p| p.trim().parse::<u32>().ok());
        if e.file_name().to_string_lossy().starts_with("raft-")
            && owner.is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    let dir = tempfile::Builder::new().prefix("raft-").tempdir_in(root).unwrap();
    std::fs::write(dir.path().join("owner.pid"), std::process::id().to_string()).unwrap();
    dir
}
