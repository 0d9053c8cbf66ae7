//! What a signed blob is, for the audit entry: an SSH userauth request (RFC 4252 §7: the
//! session identifier comes first, then SSH_MSG_USERAUTH_REQUEST), an SSHSIG blob
//! (`ssh-keygen -Y sign`, PROTOCOL.sshsig), or opaque bytes (a key exchange hash when sshd uses
//! keyport as its HostKeyAgent; anything the native API signs). Only hashes and short names are
//! kept: never the session identifier itself.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::material::ssh::wire::Reader;

const SSH_MSG_USERAUTH_REQUEST: u8 = 50;
/// Longest caller-supplied name kept in an audit entry.
const MAX_NAME: usize = 128;

fn short(b: &[u8]) -> Value {
    let s = String::from_utf8_lossy(&b[..b.len().min(MAX_NAME)]).into_owned();
    Value::String(s)
}

/// Audit fields describing `data`: always `data_sha256`; for a userauth request also
/// `kind = "ssh-userauth"`, `session_sha256`, `ssh_user`, `ssh_service`, `ssh_method`; for an
/// SSHSIG blob `kind = "sshsig"` and `sshsig_namespace`.
pub fn describe(data: &[u8]) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("data_sha256".into(), hex::encode(Sha256::digest(data)).into());
    if let Some(u) = userauth(data) {
        m.insert("kind".into(), "ssh-userauth".into());
        m.insert("session_sha256".into(), hex::encode(Sha256::digest(u.session)).into());
        m.insert("ssh_user".into(), short(u.user));
        m.insert("ssh_service".into(), short(u.service));
        m.insert("ssh_method".into(), short(u.method));
    } else if let Some(ns) = sshsig_namespace(data) {
        m.insert("kind".into(), "sshsig".into());
        m.insert("sshsig_namespace".into(), short(ns));
    }
    m
}

struct Userauth<'a> {
    session: &'a [u8],
    user: &'a [u8],
    service: &'a [u8],
    method: &'a [u8],
}

fn userauth(data: &[u8]) -> Option<Userauth<'_>> {
    let mut r = Reader::new(data);
    let session = r.string("session").ok()?;
    // Session identifiers are hash outputs: 20 (SHA-1) to 64 (SHA-512) bytes.
    if !(16..=64).contains(&session.len()) || r.bytes(1, "type").ok()? != [SSH_MSG_USERAUTH_REQUEST] {
        return None;
    }
    let user = r.string("user").ok()?;
    let service = r.string("service").ok()?;
    let method = r.string("method").ok()?;
    if !method.starts_with(b"publickey") {
        return None;
    }
    Some(Userauth { session, user, service, method })
}

fn sshsig_namespace(data: &[u8]) -> Option<&[u8]> {
    let rest = data.strip_prefix(b"SSHSIG")?;
    Reader::new(rest).string("namespace").ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::material::ssh::wire::Writer;

    #[test]
    fn a_userauth_request_is_recognised_and_only_hashes_are_kept() {
        let session = [7u8; 32];
        let mut w = Writer::new();
        w.string(&session);
        let mut data = w.into_bytes();
        data.push(SSH_MSG_USERAUTH_REQUEST);
        let mut w = Writer::new();
        w.string(b"alice\"\n").string(b"ssh-connection").string(b"publickey");
        data.extend(w.into_bytes());
        data.push(1);
        let m = describe(&data);
        assert_eq!(m["kind"], "ssh-userauth");
        assert_eq!(m["session_sha256"], hex::encode(Sha256::digest(session)));
        assert_eq!(m["ssh_user"], "alice\"\n");
        let text = Value::Object(m).to_string();
        assert!(!text.contains(&hex::encode(session)), "the session identifier itself is never kept");
        assert!(text.contains(r#"alice\"\n"#), "caller strings are JSON-escaped: {text}");
    }

    #[test]
    fn sshsig_and_opaque_data() {
        let mut data = b"SSHSIG".to_vec();
        let mut w = Writer::new();
        w.string(b"file").string(b"").string(b"sha512").string(&[1; 64]);
        data.extend(w.into_bytes());
        assert_eq!(describe(&data)["sshsig_namespace"], "file");
        let m = describe(&[0u8; 32]);
        assert!(m.get("kind").is_none() && m.contains_key("data_sha256"));
        // Truncated userauth: no panic, just opaque.
        assert!(describe(&[0, 0, 0, 32, 1, 2]).get("kind").is_none());
    }
}
