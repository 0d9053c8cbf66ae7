//! `keyport keysets list|show|delete`, `keyport rotate NAME [--wait]`, `keyport confirm NAME`: clients
//! of `/keyport/v1/keysets` (`keyport keys pubkey` is in `cli/mod.rs`).

use clap::Subcommand;
use serde_json::{json, Value};

use super::{call, enc, exit, request, s, table, Client};

#[derive(Subcommand)]
pub enum KeysetsCmd {
    /// List the keysets you may see, with their stage.
    List {
        #[command(flatten)]
        client: Client,
        /// Only this namespace's keysets.
        #[arg(long)]
        namespace: Option<String>,
    },
    /// Show one keyset: versions, the rotation's stage, its history with hook results.
    Show {
        #[command(flatten)]
        client: Client,
        /// The keyset's name (or its 40-hex KeysetId).
        name: String,
        /// The namespace the keyset is in [default: default].
        #[arg(long)]
        namespace: Option<String>,
    },
    /// Delete a keyset and every version's key (refused while a rotation is under way).
    Delete {
        #[command(flatten)]
        client: Client,
        /// The keyset's name (or its 40-hex KeysetId).
        name: String,
        /// The namespace the keyset is in [default: default].
        #[arg(long)]
        namespace: Option<String>,
    },
}

fn keyset_path(name: &str, namespace: Option<&str>, action: Option<&str>) -> String {
    let mut p = format!("/keyport/v1/keysets/{}", enc(name));
    if let Some(a) = action {
        p.push('/');
        p.push_str(a);
    }
    if let Some(ns) = namespace {
        p.push_str(&format!("?namespace={}", enc(ns)));
    }
    p
}

fn stage(v: &Value) -> String {
    format!("{} {}", s(&v["stage"]), s(&v["stage_name"]))
}

pub fn keysets(cmd: KeysetsCmd) -> i32 {
    match cmd {
        KeysetsCmd::List { client, namespace } => {
            let path = match namespace {
                Some(n) => format!("/keyport/v1/keysets?namespace={}", enc(&n)),
                None => "/keyport/v1/keysets".into(),
            };
            call(&client, "GET", &path, None, |v| {
                table(
                    &["NAMESPACE", "NAME", "TYPE", "ALGORITHM", "VERSION", "STAGE", "STATUS", "LAST ROTATION"],
                    v["keysets"].as_array().into_iter().flatten().map(|k| {
                        let active = k["versions"].as_array().into_iter().flatten().find(|x| x["state"] == "active");
                        vec![
                            s(&k["namespace"]),
                            s(&k["name"]),
                            s(&k["type"]),
                            s(&k["algorithm"]),
                            active.map(|a| s(&a["version"])).unwrap_or_else(|| "-".into()),
                            stage(k),
                            s(&k["process_status"]),
                            s(&k["last_rotation_at"]),
                        ]
                    }),
                )
            })
        }
        KeysetsCmd::Show { client, name, namespace } => call(&client, "GET", &keyset_path(&name, namespace.as_deref(), None), None, |k| {
            println!("keyset    {}/{} ({}, {})", s(&k["namespace"]), s(&k["name"]), s(&k["type"]), s(&k["algorithm"]));
            println!("id        {}", s(&k["id"]));
            println!("stage     {}   status {}", stage(k), s(&k["process_status"]));
            if let Some(e) = k["rotation"]["error"].as_str() {
                println!("error     {e}");
            }
            table(
                &["VERSION", "STATE", "KEY", "NAME", "FINGERPRINT", "CREATED"],
                k["versions"].as_array().into_iter().flatten().map(|v| {
                    vec![s(&v["version"]), s(&v["state"]), s(&v["key_id"]), s(&v["key_name"]), s(&v["fingerprint"]), s(&v["created_at"])]
                }),
            );
            for e in k["history"].as_array().into_iter().flatten() {
                // Hook output is shown by --json; a line per event here.
                println!("{}  {:>5}  {}", s(&e["at"]), s(&e["stage"]), s(&e["event"]));
            }
        }),
        KeysetsCmd::Delete { client, name, namespace } => {
            call(&client, "DELETE", &keyset_path(&name, namespace.as_deref(), None), None, |v| {
                let n = v["keys_deleted"].as_array().map_or(0, Vec::len);
                println!("deleted keyset {}/{} and {n} version key(s)", s(&v["namespace"]), s(&v["name"]));
            })
        }
    }
}

/// `keyport rotate NAME [--wait]`: starts a rotation; with --wait, a line per stage until it
/// ends or waits for a confirmation (exit 0 complete or waiting, 1 failed).
pub fn rotate(client: &Client, name: &str, namespace: Option<&str>, options: Option<u32>, wait: bool) -> i32 {
    let body = options.map(|o| json!({"options": o}));
    if !wait {
        return call(client, "POST", &keyset_path(name, namespace, Some("rotate")), body, |v| {
            println!("rotation {} of {} started", s(&v["rotation"]["id"]), s(&v["keyset"]));
        });
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let fail = |status: u16, v: &Value| {
            eprintln!("error ({status}): {}", v["error"]["message"].as_str().map(String::from).unwrap_or_else(|| v.to_string()));
            exit::REFUSED
        };
        let (st, v) = match request(&client.socket(), "POST", &keyset_path(name, namespace, Some("rotate")), body).await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::UNREACHABLE;
            }
        };
        if st != 202 {
            return fail(st, &v);
        }
        let id = v["rotation"]["id"].clone();
        let mut last = None;
        loop {
            let (st, k) = match request(&client.socket(), "GET", &keyset_path(name, namespace, None), None).await {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("error: {e}");
                    return exit::UNREACHABLE;
                }
            };
            if st != 200 {
                return fail(st, &k);
            }
            let r = &k["rotation"];
            if r["id"] != id {
                eprintln!("error: another rotation replaced this one");
                return exit::REFUSED;
            }
            let now = (k["stage"].clone(), k["process_status"].clone());
            if last.as_ref() != Some(&now) {
                println!("{}  stage {}  status {}", s(&k["name"]), stage(&k), s(&k["process_status"]));
                last = Some(now);
            }
            if r["finished_at"].is_string() {
                println!("{}: {}", s(&k["name"]), s(&r["outcome"]));
                return if r["outcome"] == "complete" { exit::OK } else { exit::REFUSED };
            }
            if k["process_status"] == 8 {
                println!("{}: waiting for a confirmation (`keyport confirm {}`)", s(&k["name"]), s(&k["name"]));
                return exit::OK;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })
}

pub fn confirm(client: &Client, name: &str, namespace: Option<&str>) -> i32 {
    call(client, "POST", &keyset_path(name, namespace, Some("confirm")), None, |v| {
        println!("{}: confirmed; the rotation goes on from stage {}", s(&v["keyset"]), s(&v["rotation"]["stage"]));
    })
}
