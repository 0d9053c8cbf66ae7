//! `keyport status`: the daemon at a glance, like `certbot certificates`: health and tokens,
//! key counts, certificates expiring within 30 days, the sync backlog and last pass. It reads
//! the same endpoints as `health`, `keys list`, `certs list --expiring 30d` and `sync status`.

use serde_json::json;
use std::collections::BTreeMap;

use super::{exit, s, send, table, Client};

/// Certificates expiring within this many days are listed.
const EXPIRY_DAYS: i64 = 30;

pub fn run(c: &Client) -> i32 {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let before = super::expiring_before(&format!("{EXPIRY_DAYS}d")).unwrap_or_default();
    let got = rt.block_on(async {
        let health = send(c, "GET", "/keyport/v1/health", None).await?;
        let keys = send(c, "GET", "/keyport/v1/keys", None).await?;
        let certs = send(c, "GET", &format!("/keyport/v1/certificates?expiring_before={}", super::enc(&before)), None).await?;
        let sync = send(c, "GET", "/keyport/v1/sync", None).await?;
        Ok::<_, String>((health, keys, certs, sync))
    });
    let ((hs, health), (ks, keys), (cs, certs), (ss, sync)) = match got {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::UNREACHABLE;
        }
    };
    // Health answers 503 with its body when degraded; anything else not 2xx is a refusal.
    for (status, v) in [(if hs == 503 { 200 } else { hs }, &health), (ks, &keys), (cs, &certs), (ss, &sync)] {
        if !(200..300).contains(&status) {
            eprintln!("error ({status}): {}", v["error"]["message"].as_str().map(String::from).unwrap_or_else(|| v.to_string()));
            return exit::REFUSED;
        }
    }
    let degraded = health["status"] != "ok";
    if c.json {
        let all = json!({"health": health, "keys": keys["keys"], "expiring_certificates": certs["certificates"], "sync": sync});
        println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
        return if degraded { exit::PARTIAL } else { exit::OK };
    }
    println!("keyport {}: {}", s(&health["version"]), s(&health["status"]));
    for p in health["problems"].as_array().into_iter().flatten() {
        println!("  problem: {}: {}", s(&p["component"]), s(&p["reason"]));
    }
    println!("store: {} (schema {})", if health["store"]["ok"] == true { "ok" } else { "FAILING" }, s(&health["store"]["schema_version"]));
    let keys = keys["keys"].as_array().cloned().unwrap_or_default();
    let mut per_token: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_ns: BTreeMap<String, usize> = BTreeMap::new();
    let mut missing = 0;
    for k in &keys {
        *per_token.entry(s(&k["token"])).or_default() += 1;
        *per_ns.entry(s(&k["namespace"])).or_default() += 1;
        missing += usize::from(k["status"] == "missing");
    }
    println!();
    table(
        &["TOKEN", "PRESENT", "LOGGED IN", "OBJECTS", "KEYS", "LABEL"],
        health["tokens"].as_array().into_iter().flatten().map(|t| {
            let n = per_token.get(&s(&t["name"])).copied().unwrap_or(0);
            vec![s(&t["name"]), s(&t["present"]), s(&t["logged_in"]), s(&t["objects"]), n.to_string(), s(&t["label"])]
        }),
    );
    let by_ns: Vec<String> = per_ns.iter().map(|(ns, n)| format!("{ns} {n}")).collect();
    println!(
        "\nkeys: {}{}{}",
        keys.len(),
        if by_ns.is_empty() { String::new() } else { format!(" ({})", by_ns.join(", ")) },
        if missing > 0 { format!("; {missing} MISSING from their token") } else { String::new() }
    );
    let certs = certs["certificates"].as_array().cloned().unwrap_or_default();
    println!(
        "\ncertificates expiring within {EXPIRY_DAYS} days: {}",
        if certs.is_empty() { "none".to_string() } else { certs.len().to_string() }
    );
    if !certs.is_empty() {
        super::cert_table(certs);
    }
    println!();
    if sync["enabled"] != true {
        println!("sync: off");
    } else {
        let failed = sync["keys"].as_array().into_iter().flatten().filter(|k| k["status"] == "failed").count();
        println!("sync: {} {}   backlog: {} row(s)   failed keys: {failed}", s(&sync["remote"]), s(&sync["vault"]), s(&sync["backlog"]));
        let p = &sync["last_pass"];
        if p["finished_at"].is_string() {
            println!(
                "last pass: {}   pushed {}, failed {}{}",
                s(&p["finished_at"]),
                s(&p["pushed"]),
                s(&p["failed"]),
                p["stopped"].as_str().map(|w| format!("   stopped: {w}")).unwrap_or_default()
            );
        } else {
            println!("last pass: none yet");
        }
        if let Some(why) = sync["vault_down"]["reason"].as_str() {
            println!("vault unreachable: {why}");
        }
    }
    if degraded {
        exit::PARTIAL
    } else {
        exit::OK
    }
}
