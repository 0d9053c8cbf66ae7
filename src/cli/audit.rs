//! `keyport audit`: the daemon's audit log (`GET /keyport/v1/audit`, admin), newest first.

use clap::Args;
use serde_json::Value;

use super::{call, enc, exit, s, table, Client};

#[derive(Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub client: Client,
    /// Only entries from this long ago (`24h`, `7d`, `90m`) or this date / RFC 3339 time on.
    #[arg(long)]
    pub since: Option<String>,
    /// Only entries about this key id.
    #[arg(long)]
    pub key: Option<String>,
    /// Only entries of this principal (`-` for callers no principal matched).
    #[arg(long)]
    pub principal: Option<String>,
    /// At most this many entries (1-1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

/// `24h` → the instant 24 hours ago; a date or time as it is.
fn since(v: &str) -> Option<String> {
    let (num, unit) = v.split_at(v.len().saturating_sub(1));
    let secs = match (num.parse::<i64>(), unit) {
        (Ok(n), "d") => n.checked_mul(86_400),
        (Ok(n), "h") => n.checked_mul(3_600),
        (Ok(n), "m") => n.checked_mul(60),
        (Ok(n), "s") => Some(n),
        _ => return crate::store::records::parse_instant(v),
    }?;
    Some(crate::clock::Timestamp::now().minus(std::time::Duration::from_secs(secs.max(0) as u64)).to_seconds_string())
}

pub fn run(a: AuditArgs) -> i32 {
    let mut q = vec![format!("limit={}", a.limit)];
    if let Some(v) = &a.since {
        let Some(t) = since(v) else {
            eprintln!("error: --since '{v}' is not a duration (24h, 7d, 90m) or a date (2026-01-31)");
            return exit::USAGE;
        };
        q.push(format!("since={}", enc(&t)));
    }
    if let Some(k) = &a.key {
        q.push(format!("key={}", enc(k)));
    }
    if let Some(p) = &a.principal {
        q.push(format!("principal={}", enc(p)));
    }
    call(&a.client, "GET", &format!("/keyport/v1/audit?{}", q.join("&")), None, |v: &Value| {
        table(
            &["AT", "PRINCIPAL", "ACTION", "NAMESPACE", "KEY", "OUTCOME", "DETAIL"],
            v["entries"].as_array().into_iter().flatten().map(|e| {
                vec![
                    s(&e["at"]),
                    s(&e["principal"]),
                    s(&e["action"]),
                    s(&e["namespace"]),
                    s(&e["key_id"]),
                    s(&e["outcome"]),
                    s(&e["detail"]),
                ]
            }),
        );
        if v["next_before"].is_i64() {
            println!("(more: narrow with --since, --key or --principal, or raise --limit)");
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn since_durations_and_dates() {
        assert!(super::since("24h").unwrap() < crate::store::records::now().to_string());
        assert_eq!(super::since("2026-01-31").as_deref(), Some("2026-01-31T00:00:00Z"));
        assert!(super::since("soon").is_none());
    }
}
