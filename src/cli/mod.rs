//! The command line: `keyport serve` runs the daemon; every other subcommand is a client that
//! speaks HTTP/JSON to it over the Unix socket, so it does exactly what `curl --unix-socket`
//! would, with tables for people and `--json` for scripts.

use clap::{Args, Parser, Subcommand, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::path::PathBuf;

mod audit;
mod import;
mod progress;
mod rotation;
mod status;

#[derive(Parser)]
#[command(
    name = "keyport",
    version,
    about = "Host key agent: keys in a PKCS#11 token, vendor key-vault APIs on a local socket",
    after_help = "Exit codes: 0 done; 1 the daemon refused or failed the request; 2 bad usage or config; \
                  3 the daemon is unreachable (no socket, not running, permission denied); \
                  4 partial failure (a sync pass or restore with failed keys)."
)]
pub struct Cli {
    /// How log lines on stderr look: `text` for people (coloured only on a terminal), `json`
    /// (one object per line) for collectors. The level filter is `KEYPORT_LOG` (or `RUST_LOG`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "KEYPORT_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `$JOURNAL_STREAM` (`device:inode`, set by systemd) names this stderr: the journal reads it.
fn journal_stream_is(var: &str, dev: u64, ino: u64) -> bool {
    var.split_once(':').and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?))) == Some((dev, ino))
}

/// Whether stderr goes to the journal (systemd's `StandardError=journal`, the default).
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(var) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let meta = std::io::stderr().as_fd().try_clone_to_owned().map(std::fs::File::from).and_then(|f| f.metadata());
    meta.is_ok_and(|m| journal_stream_is(&var.to_string_lossy(), m.dev(), m.ino()))
}

/// Sets up logging on stderr. Caller-supplied strings in log fields are escaped by both formats
/// only when logged with `?` (Debug) or in JSON; see docs/SECURITY.md. Under systemd with
/// stderr going to the journal, the text format is replaced by journald's native protocol:
/// each event's fields become journal fields (`KEYPORT_REQUEST_ID=…`, `journalctl -o verbose`)
/// and the level its priority.
pub fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("KEYPORT_LOG")
            .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
            .unwrap_or_else(|_| "info,cryptoki=off".into())
    };
    if format == LogFormat::Text && stderr_is_journal() {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        if let Ok(journal) = tracing_journald::layer() {
            let journal = journal.with_syslog_identifier("keyport".into()).with_field_prefix(Some("KEYPORT".into()));
            tracing_subscriber::registry().with(filter()).with(journal).init();
            return;
        }
    }
    let filter = filter();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground.
    Serve {
        /// Config file; the embedded default (everything under ./run) when absent.
        #[arg(long, env = "KEYPORT_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Print a shell completion script: `keyport completions bash > /etc/bash_completion.d/keyport`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `keyport man | man -l -`.
    Man,
    /// Show the daemon's health: tokens and store.
    Health(Client),
    /// The daemon at a glance: health, tokens, key counts, certificates expiring within 30
    /// days, the sync backlog and last pass. Exit 4 when the daemon is degraded.
    Status(Client),
    /// Keys in the inventory.
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// SSH keysets: their versions and rotation stage.
    Keysets {
        #[command(subcommand)]
        cmd: rotation::KeysetsCmd,
    },
    /// Start a rotation of a keyset; --wait prints a line per stage until it ends or waits.
    Rotate {
        #[command(flatten)]
        client: Client,
        /// The keyset's name (or its 40-hex KeysetId).
        name: String,
        /// The namespace the keyset is in [default: default].
        #[arg(long)]
        namespace: Option<String>,
        /// TPP's Options mask: 1 retry on error, 2 on connection errors, 4 on any (default: policy).
        #[arg(long)]
        options: Option<u32>,
        /// Print a line per stage until the rotation ends or waits for a confirmation.
        #[arg(long)]
        wait: bool,
    },
    /// Confirm a keyset's rotation waiting for a key installation (10250 or 10350).
    Confirm {
        #[command(flatten)]
        client: Client,
        /// The keyset's name (or its 40-hex KeysetId).
        name: String,
        /// The namespace the keyset is in [default: default].
        #[arg(long)]
        namespace: Option<String>,
    },
    /// Export a private key to a file (or stdout), encrypted under a passphrase.
    Export {
        #[command(flatten)]
        client: Client,
        /// The key's id, or its name (with --namespace when the name is in several).
        key: String,
        /// The namespace the named key is in.
        #[arg(long)]
        namespace: Option<String>,
        /// The file format.
        #[arg(long, default_value = "openssh", value_parser = ["pkcs8", "pkcs1", "sec1", "openssh", "putty", "putty-v2", "ssh2", "tectia"])]
        format: String,
        /// File holding the passphrase (its first line). Without it the key is exported
        /// unencrypted, which the namespace policy must allow.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Write here (mode 0600; an existing file is never overwritten) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Sync to the remote vault: status, or a pass now.
    Sync {
        #[command(subcommand)]
        cmd: SyncCmd,
    },
    /// Certificates in the inventory.
    Certs {
        #[command(subcommand)]
        cmd: CertsCmd,
    },
    /// Print an Argon2id PHC string of a password, for `[[tpp.users]] password_hash`. The
    /// password is read from the terminal (twice, not echoed) or from stdin's first line;
    /// never from the command line, where other users could see it in `ps`.
    HashPassword,
    /// The audit log (admin): who did what to which key, refusals and failures included,
    /// newest first.
    Audit(audit::AuditArgs),
    /// Bring keys (exportable in the vault) and their certificates back from the vault into
    /// the token; keys already present are skipped, so it is safe to run again.
    Restore {
        #[command(flatten)]
        client: Client,
        /// Only report what would be restored.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
pub enum SyncCmd {
    /// Per key: status, last pushed version, pending rows, last error, next attempt.
    Status(Client),
    /// Run a pass now (permanent failures are retried too) and show the result.
    Now {
        #[command(flatten)]
        client: Client,
        /// Seconds to wait for the pass to finish (0: do not wait).
        #[arg(long, default_value_t = 120)]
        wait: u64,
    },
    /// A CSR for the vault client key (certificate login): the key is made in the token on
    /// first use and never leaves it. Have your CA sign it; point [sync.cert] certificate at
    /// the result.
    Csr {
        #[command(flatten)]
        client: Client,
        /// Subject common name (the vault's cert role checks it); default: the sync host name.
        #[arg(long)]
        cn: Option<String>,
        /// DNS subject alternative name (repeatable).
        #[arg(long)]
        dns: Vec<String>,
        /// Write the PEM here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum CertsCmd {
    /// List certificates, soonest expiry first: subject, issuer, not-after, linked key.
    List {
        #[command(flatten)]
        client: Client,
        /// Only certificates in this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Only those expiring within this long from now (`30d`, `12h`, `90m`) or before a
        /// date (`2026-01-31`).
        #[arg(long)]
        expiring: Option<String>,
    },
}

/// `30d`, `12h`, `90m`, `45s` from now, or a date / RFC 3339 time, as the API's
/// `expiring_before`.
pub fn expiring_before(s: &str) -> Option<String> {
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let secs = match (num.parse::<i64>(), unit) {
        (Ok(n), "d") => n.checked_mul(86_400),
        (Ok(n), "h") => n.checked_mul(3_600),
        (Ok(n), "m") => n.checked_mul(60),
        (Ok(n), "s") => Some(n),
        _ => return crate::store::records::parse_instant(s),
    }?;
    Some(crate::clock::Timestamp::now().plus(std::time::Duration::from_secs(secs.max(0) as u64)).to_seconds_string())
}

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Check a config file: every problem with its key path and what to do.
    Check {
        /// The config file to check.
        file: PathBuf,
    },
}

#[derive(Args, Clone)]
pub struct Client {
    /// The daemon's Unix socket [default: /run/keyport/keyport.sock when it exists (the
    /// systemd service), else ./run/keyport.sock (`scripts/run`)].
    #[arg(long = "socket", global = true, env = "KEYPORT_SOCKET")]
    pub socket_arg: Option<PathBuf>,
    /// Print the JSON the daemon answered instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Authenticate with this API key instead of the socket's peer credentials (sent as
    /// X-Api-Key). Prefer the environment variable: a command line is visible in `ps`.
    #[arg(long, global = true, env = "KEYPORT_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// Where the systemd service's socket unit puts the socket.
const SYSTEM_SOCKET: &str = "/run/keyport/keyport.sock";
/// Where `scripts/run` (the embedded default config) puts it.
const LOCAL_SOCKET: &str = "./run/keyport.sock";

impl Client {
    /// `--socket`, else `$KEYPORT_SOCKET`, else the system service's socket if it exists, else
    /// the one `scripts/run` makes.
    pub fn socket(&self) -> PathBuf {
        if let Some(p) = &self.socket_arg {
            return p.clone();
        }
        let system = std::path::Path::new(SYSTEM_SOCKET);
        if system.exists() {
            system.to_path_buf()
        } else {
            PathBuf::from(LOCAL_SOCKET)
        }
    }
}

#[derive(Subcommand)]
pub enum KeysCmd {
    /// List keys (filter by namespace and name).
    List {
        #[command(flatten)]
        client: Client,
        /// Only keys in this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Only keys with this name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Show one key, by id or by name.
    Show {
        #[command(flatten)]
        client: Client,
        /// The key's id, or its name (with --namespace when the name is in several).
        key: String,
        /// The namespace the named key is in.
        #[arg(long)]
        namespace: Option<String>,
    },
    /// Print a key's public half: an authorized_keys line (like `ssh-add -L`), or PEM.
    Pubkey {
        #[command(flatten)]
        client: Client,
        /// The key's id, or its name (with --namespace when the name is in several).
        key: String,
        /// The namespace the named key is in.
        #[arg(long)]
        namespace: Option<String>,
        /// PEM SubjectPublicKeyInfo (what `openssl pkey -pubin` reads) instead of OpenSSH.
        #[arg(long)]
        pem: bool,
    },
    /// Import key files into a token (like `ssh-add FILE`); several files are a batch.
    Import(import::ImportArgs),
    /// Generate a key pair in a token.
    Generate {
        #[command(flatten)]
        client: Client,
        /// The key's name (unique in its namespace).
        #[arg(long)]
        name: String,
        /// The key algorithm.
        #[arg(long, value_parser = ["rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384", "ec-p521", "ed25519"])]
        algorithm: String,
        /// Namespace of the key [default: default].
        #[arg(long)]
        namespace: Option<String>,
        /// Token to make it in; default: the first configured.
        #[arg(long)]
        token: Option<String>,
        /// Create the private key extractable (only if the namespace policy allows it).
        #[arg(long)]
        exportable: bool,
    },
    /// Delete a key and its token objects.
    Delete {
        #[command(flatten)]
        client: Client,
        /// The key's id.
        id: String,
    },
}

/// Runs a client subcommand; returns the process exit code.
/// Writes generated text to stdout; a reader that stops early (`| head`) is not an error.
fn print_all(bytes: &[u8]) -> i32 {
    use std::io::Write;
    match std::io::stdout().write_all(bytes) {
        Ok(()) => 0,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("keyport: cannot write to stdout: {e}");
            1
        }
    }
}

pub fn run(cmd: Command) -> i32 {
    match cmd {
        Command::Serve { .. } => unreachable!("serve is handled by main"),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "keyport", &mut out);
            print_all(&out)
        }
        Command::Man => {
            use clap::CommandFactory;
            let mut out = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut out) {
                Ok(()) => print_all(&out),
                Err(e) => {
                    eprintln!("keyport: cannot write the manual page: {e}");
                    1
                }
            }
        }
        Command::Config(ConfigCmd::Check { file }) => match crate::config::load(Some(&file)) {
            Ok(cfg) => {
                println!("{}: ok", file.display());
                // What each token can do, and where keyport's own keys would live (or which
                // feature would be off): never a refusal, the daemon starts either way.
                for line in crate::core::placement::check_config(&cfg) {
                    println!("{line}");
                }
                0
            }
            Err(problems) => {
                for p in problems {
                    eprintln!("{}: {p}", file.display());
                }
                2
            }
        },
        Command::Health(c) => {
            call(&c, "GET", "/keyport/v1/health", None, |v| {
                println!("status: {}", v["status"].as_str().unwrap_or("?"));
                println!("store: {}", if v["store"]["ok"] == true { "ok" } else { "FAILING" });
                for p in v["problems"].as_array().into_iter().flatten() {
                    println!("problem: {}: {}", s(&p["component"]), s(&p["reason"]));
                }
                for p in v["features_off"].as_array().into_iter().flatten() {
                    println!("off: {}: {}", s(&p["component"]), s(&p["reason"]));
                }
                table(
                    &["TOKEN", "PRESENT", "LOGGED IN", "OBJECTS", "LABEL", "ERROR"],
                    v["tokens"].as_array().into_iter().flatten().map(|t| {
                        vec![s(&t["name"]), s(&t["present"]), s(&t["logged_in"]), s(&t["objects"]), s(&t["label"]), s(&t["error"])]
                    }),
                );
                for t in v["tokens"].as_array().into_iter().flatten() {
                    for line in t["can"].as_array().into_iter().flatten() {
                        println!("token {}: {}", s(&t["name"]), s(line));
                    }
                }
            })
        }
        Command::Sync { cmd } => match cmd {
            SyncCmd::Status(c) => call(&c, "GET", "/keyport/v1/sync", None, sync_table),
            SyncCmd::Now { client, wait } => {
                let body = if wait == 0 { json!({}) } else { json!({"wait_secs": wait}) };
                let show = |v: &Value| {
                    if wait > 0 && v["finished"] != true {
                        println!("the pass did not finish within {wait} s; it goes on in the daemon");
                    }
                    sync_table(&v["status"]);
                };
                // A pass that did not finish, stopped early, or left keys failed is not a success.
                let verdict = |v: &Value| {
                    let st = &v["status"];
                    let failed = st["keys"].as_array().into_iter().flatten().any(|k| k["status"] == "failed");
                    if (wait > 0 && v["finished"] != true) || st["last_pass"]["stopped"].is_string() || failed {
                        exit::PARTIAL
                    } else {
                        exit::OK
                    }
                };
                let pb = if wait > 0 { progress::spinner("sync pass running") } else { None };
                let show = |v: &Value| {
                    progress::done(pb);
                    show(v)
                };
                call_with(&client, "POST", "/keyport/v1/sync", Some(body), show, verdict)
            }
            SyncCmd::Csr { client, cn, dns, out } => {
                let mut failed = false;
                let code = call(&client, "POST", "/keyport/v1/sync/csr", Some(json!({"cn": cn, "dns": dns})), |v| {
                    let pem = v["csr"].as_str().unwrap_or_default();
                    match &out {
                        None => print!("{pem}"),
                        Some(f) => match std::fs::write(f, pem) {
                            Ok(()) => println!("wrote {} (key {} in token {})", f.display(), s(&v["public_key_sha256"]), s(&v["token"])),
                            Err(e) => {
                                eprintln!("error: {}: {e}", f.display());
                                failed = true;
                            }
                        },
                    }
                });
                if failed {
                    1
                } else {
                    code
                }
            }
        },
        Command::Export { client, key, namespace, format, passphrase_file, out } => {
            export(&client, &key, namespace.as_deref(), &format, passphrase_file.as_deref(), out.as_deref())
        }
        Command::HashPassword => hash_password(),
        Command::Audit(a) => audit::run(a),
        Command::Status(c) => status::run(&c),
        Command::Keysets { cmd } => rotation::keysets(cmd),
        Command::Rotate { client, name, namespace, options, wait } => rotation::rotate(&client, &name, namespace.as_deref(), options, wait),
        Command::Confirm { client, name, namespace } => rotation::confirm(&client, &name, namespace.as_deref()),
        Command::Restore { client, dry_run } => {
            let failed = |v: &Value| {
                let any = v["items"].as_array().into_iter().flatten().any(|i| i["outcome"] == "failed");
                if any {
                    exit::PARTIAL
                } else {
                    exit::OK
                }
            };
            let pb = progress::spinner(if dry_run { "reading the vault" } else { "restoring from the vault" });
            let show = |v: &Value| {
                progress::done(pb);
                restore_table(v)
            };
            call_with(&client, "POST", "/keyport/v1/sync/restore", Some(json!({"dry_run": dry_run})), show, failed)
        }
        Command::Certs { cmd: CertsCmd::List { client, namespace, expiring } } => {
            let mut q = Vec::new();
            if let Some(n) = namespace {
                q.push(format!("namespace={}", enc(&n)));
            }
            if let Some(e) = expiring {
                let Some(before) = expiring_before(&e) else {
                    eprintln!("error: --expiring '{e}' is not a duration (30d, 12h, 90m) or a date (2026-01-31)");
                    return 2;
                };
                q.push(format!("expiring_before={}", enc(&before)));
            }
            let path =
                if q.is_empty() { "/keyport/v1/certificates".to_string() } else { format!("/keyport/v1/certificates?{}", q.join("&")) };
            call(&client, "GET", &path, None, |v| cert_table(v["certificates"].as_array().cloned().unwrap_or_default()))
        }
        Command::Keys { cmd } => match cmd {
            KeysCmd::List { client, namespace, name } => {
                let mut q = Vec::new();
                if let Some(n) = namespace {
                    q.push(format!("namespace={}", enc(&n)));
                }
                if let Some(n) = name {
                    q.push(format!("name={}", enc(&n)));
                }
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                let answer = rt.block_on(every_key(&client, &q));
                render(&client, answer, |v| key_table(v["keys"].as_array().cloned().unwrap_or_default()), |_| exit::OK)
            }
            KeysCmd::Show { client, key, namespace } => {
                let id = match key_id(&client, &key, namespace.as_deref()) {
                    Ok(id) => id,
                    Err(code) => return code,
                };
                call(&client, "GET", &format!("/keyport/v1/keys/{}", enc(&id)), None, |v| {
                    for (k, val) in v.as_object().into_iter().flatten() {
                        println!("{k:12} {}", s(val));
                    }
                })
            }
            KeysCmd::Import(a) => import::run(a),
            KeysCmd::Pubkey { client, key, namespace, pem } => {
                let id = match key_id(&client, &key, namespace.as_deref()) {
                    Ok(id) => id,
                    Err(code) => return code,
                };
                let mut missing = false;
                let code =
                    call(&client, "GET", &format!("/keyport/v1/keys/{}/public", enc(&id)), None, |v| match (pem, v["openssh"].as_str()) {
                        (true, _) => print!("{}", v["pem"].as_str().unwrap_or_default()),
                        (false, Some(line)) => println!("{line}"),
                        (false, None) => missing = true,
                    });
                if missing {
                    eprintln!("error: this key type has no OpenSSH form; use --pem");
                    return exit::REFUSED;
                }
                code
            }
            KeysCmd::Generate { client, name, algorithm, namespace, token, exportable } => {
                let body = json!({"name": name, "algorithm": algorithm, "namespace": namespace, "token": token, "exportable": exportable});
                call(&client, "POST", "/keyport/v1/keys", Some(body), |v| key_table(vec![v.clone()]))
            }
            KeysCmd::Delete { client, id } => {
                call(&client, "DELETE", &format!("/keyport/v1/keys/{}", enc(&id)), None, |v| println!("deleted {}", s(&v["deleted"])))
            }
        },
    }
}

fn sync_table(v: &Value) {
    if v["enabled"] != true {
        println!("sync: off (no [sync] address configured)");
        return;
    }
    if v["remote"] == "tlspc" {
        println!("remote: tlspc {}   backlog: {} row(s)   encryption key: {}", s(&v["vault"]), s(&v["backlog"]), s(&v["wrapping_key"]));
    } else {
        println!("vault: {}   backlog: {} row(s)   wrapping key: {}", s(&v["vault"]), s(&v["backlog"]), s(&v["wrapping_key"]));
    }
    if v["remote"] != "tlspc" && v["vault_exportable"] != true {
        println!("keys in the vault are not exportable: a one-way copy, `keyport restore` cannot bring them back");
    }
    let a = &v["auth"];
    if a.is_object() {
        let mount = a["mount"].as_str().map(|m| format!(" (auth/{m})")).unwrap_or_default();
        let expires = if a["logged_in"] != true {
            "not logged in".to_string()
        } else {
            a["token_expires_at"].as_str().unwrap_or("no expiry").to_string()
        };
        println!("login: {}{mount}   token expires: {expires}", s(&a["method"]));
        if let Some(e) = a["last_error"].as_str() {
            println!("login failed: {e}");
        }
    }
    if let Some(stopped) = v["last_pass"]["stopped"].as_str() {
        println!("last pass stopped: {stopped}");
    }
    table(
        &["NAMESPACE", "NAME", "STATUS", "VERSION", "PENDING", "NEXT ATTEMPT", "LAST ERROR / DETAIL"],
        v["keys"].as_array().into_iter().flatten().map(|k| {
            let why = if k["last_error"].is_null() { s(&k["detail"]) } else { s(&k["last_error"]) };
            vec![
                s(&k["namespace"]),
                s(&k["name"]),
                s(&k["status"]),
                s(&k["pushed_version"]),
                s(&k["pending"]),
                s(&k["next_attempt_at"]),
                why,
            ]
        }),
    );
}

fn restore_table(v: &Value) {
    table(
        &["NAMESPACE", "NAME", "ALGORITHM", "OUTCOME", "CERTIFICATE", "REASON"],
        v["items"].as_array().into_iter().flatten().map(|k| {
            let cert = k["certificate"].as_str().map_or("-".to_string(), |c| c.chars().take(16).collect());
            vec![s(&k["namespace"]), s(&k["name"]), s(&k["algorithm"]), s(&k["outcome"]), cert, s(&k["reason"])]
        }),
    );
    if let Some(left) = v["destination_left"].as_str() {
        println!("note: {left}");
    }
}

pub(crate) fn cert_table(certs: Vec<Value>) {
    table(
        &["SUBJECT", "ISSUER", "NOT AFTER", "KEY", "NAMESPACE"],
        certs.iter().map(|c| {
            let key = if c["key_name"].is_string() { s(&c["key_name"]) } else { s(&c["key_id"]) };
            vec![s(&c["subject"]), s(&c["issuer"]), s(&c["not_after"]), key, s(&c["namespace"])]
        }),
    );
}

/// Why a client step did not get its answer: the exit code differs.
pub(crate) enum Failure {
    Unreachable(String),
    Refused(String),
}

/// [`resolve_key`] for a command: the id, or the exit code after saying why on stderr.
fn key_id(c: &Client, key: &str, namespace: Option<&str>) -> Result<String, i32> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(resolve_key(c, key, namespace)).map_err(|e| {
        let (message, code) = match e {
            Failure::Unreachable(m) => (m, exit::UNREACHABLE),
            Failure::Refused(m) => (m, exit::REFUSED),
        };
        eprintln!("error: {message}");
        code
    })
}

/// `GET keys` page by page (1000 keys each, following `next_cursor`) into one `{"keys": […]}`,
/// so a large store never needs one huge answer. The first refusal is the answer.
async fn every_key(c: &Client, filters: &[String]) -> Result<(u16, Value), String> {
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = filters.to_vec();
        q.push("limit=1000".into());
        if let Some(cur) = &cursor {
            q.push(format!("cursor={}", enc(cur)));
        }
        let (status, v) = send(c, "GET", &format!("/keyport/v1/keys?{}", q.join("&")), None).await?;
        if !(200..300).contains(&status) {
            return Ok((status, v));
        }
        keys.extend(v["keys"].as_array().cloned().unwrap_or_default());
        match v["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return Ok((status, json!({ "keys": keys }))),
        }
    }
}

/// A key given by id or by name: an id first; else a name, which must be unique (in the
/// namespace, when given).
pub(crate) async fn resolve_key(c: &Client, key: &str, namespace: Option<&str>) -> Result<String, Failure> {
    let message = |status: u16, v: &Value| {
        format!("({status}) {}", v["error"]["message"].as_str().map(String::from).unwrap_or_else(|| v.to_string()))
    };
    let (status, v) = send(c, "GET", &format!("/keyport/v1/keys/{}", enc(key)), None).await.map_err(Failure::Unreachable)?;
    if status == 200 && namespace.is_none_or(|ns| v["namespace"] == ns) {
        return Ok(key.to_string());
    }
    let mut path = format!("/keyport/v1/keys?name={}", enc(key));
    if let Some(ns) = namespace {
        path.push_str(&format!("&namespace={}", enc(ns)));
    }
    let (status, v) = send(c, "GET", &path, None).await.map_err(Failure::Unreachable)?;
    if status != 200 {
        return Err(Failure::Refused(message(status, &v)));
    }
    match v["keys"].as_array().map(Vec::as_slice).unwrap_or_default() {
        [one] => Ok(s(&one["id"])),
        [] => Err(Failure::Refused(format!("(404) no key with id or name '{key}'"))),
        many => Err(Failure::Refused(format!("{} keys are named '{key}'; give --namespace or the id", many.len()))),
    }
}

/// The first line of a passphrase file (without its line end), in zeroized memory.
pub(crate) fn read_passphrase_file(f: &std::path::Path) -> Result<zeroize::Zeroizing<String>, String> {
    let bytes = zeroize::Zeroizing::new(std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?);
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    std::str::from_utf8(first)
        .map(|p| zeroize::Zeroizing::new(p.to_string()))
        .map_err(|_| format!("{}: the passphrase is not UTF-8", f.display()))
}

/// `keyport export`: resolve the key, ask the daemon, write the file without overwriting.
fn export(
    c: &Client,
    key: &str,
    namespace: Option<&str>,
    format: &str,
    passphrase_file: Option<&std::path::Path>,
    out: Option<&std::path::Path>,
) -> i32 {
    let fail = |msg: String| {
        eprintln!("error: {msg}");
        1
    };
    let passphrase = match passphrase_file.map(read_passphrase_file).transpose() {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    if let Some(path) = out {
        if path.exists() {
            return fail(format!("{} exists; keyport export never overwrites a file", path.display()));
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let result: Result<Value, String> = rt.block_on(async {
        let message = |status: u16, v: &Value| {
            format!("({status}) {}", v["error"]["message"].as_str().map(String::from).unwrap_or_else(|| v.to_string()))
        };
        let id = resolve_key(c, key, namespace).await.map_err(|e| match e {
            Failure::Unreachable(m) | Failure::Refused(m) => m,
        })?;
        let body = json!({"format": format, "passphrase": passphrase.as_ref().map(|p| p.as_str())});
        let (status, v) = send(c, "POST", &format!("/keyport/v1/keys/{}/export", enc(&id)), Some(body)).await?;
        if status != 200 {
            return Err(message(status, &v));
        }
        Ok(v)
    });
    let v = match result {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let text = zeroize::Zeroizing::new(v["private_key"].as_str().unwrap_or_default().to_string());
    match out {
        None => {
            print!("{}", text.as_str());
            0
        }
        Some(path) => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
            match file.and_then(|mut f| f.write_all(text.as_bytes()).and_then(|_| f.sync_all())) {
                Ok(()) => {
                    eprintln!(
                        "wrote {} ({}, {})",
                        path.display(),
                        s(&v["format"]),
                        if v["encrypted"] == true { "encrypted" } else { "NOT encrypted" }
                    );
                    0
                }
                Err(e) => fail(format!("{}: {e}", path.display())),
            }
        }
    }
}

fn key_table(keys: Vec<Value>) {
    table(
        &["ID", "NAME", "NAMESPACE", "ALGORITHM", "TOKEN", "EXPORTABLE", "CREATED"],
        keys.iter().map(|k| {
            vec![
                s(&k["id"]),
                s(&k["name"]),
                s(&k["namespace"]),
                s(&k["algorithm"]),
                s(&k["token"]),
                s(&k["exportable"]),
                s(&k["created_at"]),
            ]
        }),
    );
}

pub(crate) fn s(v: &Value) -> String {
    match v {
        // A daemon's answer may carry a caller's string: no terminal control codes in a table.
        Value::String(x) if x.chars().any(char::is_control) => x.escape_debug().to_string(),
        Value::String(x) => x.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

pub(crate) fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

pub(crate) fn table(head: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let rows: Vec<Vec<String>> = rows.collect();
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<width$}", width = w[i])).collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(head.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
}

/// One request over the socket. Errors print the daemon's message; exit 1.
/// Exit codes every client subcommand uses (documented in `keyport --help` and docs/cli.md).
pub mod exit {
    /// Done.
    pub const OK: i32 = 0;
    /// The daemon answered with an error (a refusal, a bad request, or a failure on its side).
    pub const REFUSED: i32 = 1;
    /// Bad usage or a bad config file (clap's own usage errors exit 2 as well).
    pub const USAGE: i32 = 2;
    /// The daemon could not be reached (no socket, nobody listening, permission denied).
    pub const UNREACHABLE: i32 = 3;
    /// The request was accepted but part of the work failed (a sync pass with failed keys, a
    /// restore with failed items).
    pub const PARTIAL: i32 = 4;
}

pub(crate) fn call(c: &Client, method: &str, path: &str, body: Option<Value>, show: impl FnOnce(&Value)) -> i32 {
    call_with(c, method, path, body, show, |_| exit::OK)
}

/// `call`, where `verdict` turns a successful answer into an exit code (0, or 4 for partial
/// failure) whether or not `--json` is set.
pub(crate) fn call_with(
    c: &Client,
    method: &str,
    path: &str,
    body: Option<Value>,
    show: impl FnOnce(&Value),
    verdict: impl FnOnce(&Value) -> i32,
) -> i32 {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    render(c, rt.block_on(send(c, method, path, body)), show, verdict)
}

/// Prints an answer (JSON with `--json`, else `show` on success or the error's message) and
/// returns the exit code.
fn render(c: &Client, answer: Result<(u16, Value), String>, show: impl FnOnce(&Value), verdict: impl FnOnce(&Value) -> i32) -> i32 {
    match answer {
        Ok((status, v)) => {
            if c.json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            }
            if (200..300).contains(&status) {
                if !c.json {
                    show(&v);
                }
                verdict(&v)
            } else {
                if !c.json {
                    let msg = v["error"]["message"].as_str().map(String::from).unwrap_or_else(|| v.to_string());
                    eprintln!("error ({status}): {msg}");
                }
                exit::REFUSED
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::UNREACHABLE
        }
    }
}

pub async fn request(socket: &std::path::Path, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value), String> {
    request_with(socket, None, method, path, body).await
}

/// [`request`] as the client's principal: its API key, if it has one.
pub async fn send(c: &Client, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value), String> {
    request_with(&c.socket(), c.api_key.as_deref(), method, path, body).await
}

async fn request_with(
    socket: &std::path::Path,
    api_key: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let stream = tokio::net::UnixStream::connect(socket).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => format!(
            "permission denied on {}: this user may not use the socket (its mode and group are listen.socket_mode and listen.socket_group); ask the daemon's administrator",
            socket.display()
        ),
        _ => format!("cannot connect to {}: {e}; is `keyport serve` running? (--socket or KEYPORT_SOCKET)", socket.display()),
    })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let bytes = body.map(|b| serde_json::to_vec(&b).expect("json")).unwrap_or_default();
    let mut req = hyper::Request::builder().method(method).uri(path).header("host", "localhost").header("content-type", "application/json");
    if let Some(k) = api_key {
        req = req.header("x-api-key", k);
    }
    let req = req.body(Full::new(Bytes::from(bytes))).map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    let v = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
    };
    Ok((status, v))
}

/// `keyport hash-password`.
fn hash_password() -> i32 {
    let password = match read_password() {
        Ok(p) => p,
        Err(m) => {
            eprintln!("error: {m}");
            return 1;
        }
    };
    if password.is_empty() {
        eprintln!("error: the password is empty");
        return 1;
    }
    println!("{}", crate::config::hash_password(password.as_bytes()));
    0
}

/// The password from the terminal (echo off, asked twice) or from stdin's first line.
fn read_password() -> Result<zeroize::Zeroizing<String>, String> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    let read_line = || -> Result<zeroize::Zeroizing<String>, String> {
        let mut line = zeroize::Zeroizing::new(String::new());
        stdin.lock().read_line(&mut line).map_err(|e| format!("reading the password: {e}"))?;
        let trimmed = zeroize::Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_string());
        Ok(trimmed)
    };
    if !stdin.is_terminal() {
        return read_line();
    }
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let saved = tcgetattr(&stdin).map_err(|e| format!("the terminal: {e}"))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    let ask = |prompt: &str| -> Result<zeroize::Zeroizing<String>, String> {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet).map_err(|e| format!("the terminal: {e}"))?;
        let line = read_line();
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
        eprintln!();
        line
    };
    let first = ask("Password: ")?;
    let again = ask("Again: ")?;
    if *first != *again {
        return Err("the passwords differ".into());
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    #[test]
    fn journal_stream_matches_device_and_inode() {
        assert!(super::journal_stream_is("8:12345", 8, 12345));
        assert!(!super::journal_stream_is("8:12345", 8, 1));
        assert!(!super::journal_stream_is("garbage", 8, 12345));
    }

    /// Every argument of every subcommand says what it is for (in --help, completions, man).
    #[test]
    fn every_argument_has_help() {
        use clap::CommandFactory;
        fn walk(c: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in c.get_arguments() {
                if a.get_help().is_none() && !["help", "version"].contains(&a.get_id().as_str()) {
                    missing.push(format!("{path} {}", a.get_id()));
                }
            }
            for s in c.get_subcommands() {
                walk(s, &format!("{path} {}", s.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "keyport", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }

    #[test]
    fn expiring_durations_and_dates() {
        let in30 = super::expiring_before("30d").unwrap();
        let now = crate::store::records::now().to_seconds_string();
        assert!(in30 > now && in30.ends_with('Z'), "{in30}");
        assert!(super::expiring_before("12h").unwrap() < in30);
        assert_eq!(super::expiring_before("2026-01-31").unwrap(), "2026-01-31T00:00:00Z");
        assert!(super::expiring_before("soon").is_none());
        assert!(super::expiring_before("d").is_none());
    }
}
