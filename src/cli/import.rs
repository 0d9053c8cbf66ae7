//! `keyport keys import FILE…`: key files into the token through `POST /keyport/v1/keys/import`,
//! like `ssh-add FILE`. Several files are a batch: each is imported on its own, a table says
//! what happened to each, and the exit code is 4 when some failed.

use base64::Engine;
use clap::Args;
use serde_json::{json, Value};
use std::path::PathBuf;

use super::{exit, progress, s, send, table, Client};

/// Key files larger than this are not keys.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

#[derive(Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub client: Client,
    /// Key files: PEM/DER PKCS#1, SEC1, PKCS#8 (plain or encrypted), PKCS#12, OpenSSH, PuTTY
    /// PPK, ssh.com/Tectia. A PEM file may hold the key's certificates too.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// File holding the passphrase of the key files (its first line).
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
    /// The key's certificate (PEM, with its chain), stored with it.
    #[arg(long)]
    pub certificate: Option<PathBuf>,
    /// The key's name (one file only); default: the certificate's CN, else `key-<fingerprint>`.
    #[arg(long)]
    pub name: Option<String>,
    /// Namespace to import into [default: default].
    #[arg(long)]
    pub namespace: Option<String>,
    /// Keep the private key extractable (only if the namespace policy allows it).
    #[arg(long)]
    pub exportable: bool,
    /// Token to import into; default: the first configured.
    #[arg(long)]
    pub token: Option<String>,
}

fn read(path: &std::path::Path) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("{}: {} bytes is too large for a key file", path.display(), meta.len()));
    }
    std::fs::read(path).map(zeroize::Zeroizing::new).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn run(a: ImportArgs) -> i32 {
    if a.name.is_some() && a.files.len() > 1 {
        eprintln!("error: --name names one key; import the files one by one to name each");
        return exit::USAGE;
    }
    let passphrase = match &a.passphrase_file {
        None => None,
        Some(f) => match super::read_passphrase_file(f) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::USAGE;
            }
        },
    };
    let certificate = match &a.certificate {
        None => None,
        Some(f) => match read(f) {
            Ok(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::USAGE;
            }
        },
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let pb = progress::bar(a.files.len() as u64, "importing");
    let mut results = Vec::new();
    let (mut ok, mut failed) = (0, 0);
    for f in &a.files {
        if let Some(pb) = &pb {
            pb.set_message(f.display().to_string());
        }
        let outcome = match read(f) {
            Err(e) => json!({"file": f.display().to_string(), "outcome": "failed", "reason": e}),
            Ok(bytes) => {
                let body = json!({
                    "data": base64::engine::general_purpose::STANDARD.encode(&*bytes),
                    "passphrase": passphrase.as_ref().map(|p| p.as_str()),
                    "certificate": certificate,
                    "name": a.name,
                    "namespace": a.namespace,
                    "exportable": a.exportable.then_some(true),
                    "token": a.token,
                });
                match rt.block_on(send(&a.client, "POST", "/keyport/v1/keys/import", Some(body))) {
                    Err(e) => {
                        progress::done(pb);
                        eprintln!("error: {e}");
                        return exit::UNREACHABLE;
                    }
                    Ok((status, v)) if (200..300).contains(&status) => {
                        let k = &v["key"];
                        let outcome = if v["imported"] == true { "imported" } else { "already present" };
                        json!({"file": f.display().to_string(), "outcome": outcome, "id": k["id"], "name": k["name"],
                               "namespace": k["namespace"], "algorithm": k["algorithm"], "reason": v["message"]})
                    }
                    Ok((status, v)) => {
                        let msg = v["error"]["message"].as_str().map(String::from).unwrap_or_else(|| v.to_string());
                        json!({"file": f.display().to_string(), "outcome": "failed", "status": status, "reason": msg})
                    }
                }
            }
        };
        if outcome["outcome"] == "failed" {
            failed += 1;
        } else {
            ok += 1;
        }
        results.push(outcome);
        if let Some(pb) = &pb {
            pb.inc(1);
        }
    }
    progress::done(pb);
    if a.client.json {
        println!("{}", serde_json::to_string_pretty(&json!({"results": results})).unwrap_or_default());
    } else {
        table(
            &["FILE", "OUTCOME", "ID", "NAME", "NAMESPACE", "ALGORITHM", "REASON"],
            results.iter().map(|r: &Value| {
                vec![s(&r["file"]), s(&r["outcome"]), s(&r["id"]), s(&r["name"]), s(&r["namespace"]), s(&r["algorithm"]), s(&r["reason"])]
            }),
        );
    }
    match (ok, failed) {
        (_, 0) => exit::OK,
        (0, _) => exit::REFUSED,
        _ => exit::PARTIAL,
    }
}
