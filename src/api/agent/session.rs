//! One agent request → one core call → one answer. The wire format of messages is
//! `ssh-agent-lib`'s; anything keyport does not do, and anything refused, is
//! SSH_AGENT_FAILURE (the protocol has no richer error: the daemon log and the audit say why).

use ssh_agent_lib::proto::{Identity, PrivateCredential, PublicCredential, Request, Response};
use ssh_agent_lib::ssh_encoding::{Decode, Encode};

use super::keys;
use crate::core::authz::{Peer, Principal};
use crate::core::import::{import_key, ImportOutcome, ImportRequest};
use crate::core::sign::{self, SignCaller};
use crate::core::{CoreError, SharedApp};

/// Answers one message (its type byte and payload, without the length).
pub async fn handle(app: &SharedApp, peer: Peer, message: &[u8]) -> Response {
    let request = match Request::decode(&mut &message[..]) {
        Ok(r) => r,
        Err(ssh_agent_lib::proto::Error::UnsupportedCommand { command }) => {
            tracing::debug!(?peer, command, "agent: unknown message type");
            return Response::Failure;
        }
        Err(e) => {
            tracing::info!(?peer, kind = message.first().copied(), error = ?e.to_string(), "agent: malformed message");
            return Response::Failure;
        }
    };
    // Identified per request, so a SIGHUP reload applies to open connections too.
    let principal = match app.authz.read().expect("poisoned").identify(&peer, None) {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(?peer, "agent request refused: {e}");
            return Response::Failure;
        }
    };
    let caller = SignCaller { principal: &principal, peer, via: "agent" };
    match request {
        Request::RequestIdentities => identities(app, &caller).await,
        Request::SignRequest(req) => sign_request(app, &caller, req).await,
        Request::AddIdentity(ssh_agent_lib::proto::AddIdentity { credential: PrivateCredential::Key { .. } }) => {
            add_identity(app, &principal, &message[1..]).await
        }
        // A lifetime or confirm constraint (`ssh-add -t`, `-c`) cannot hold for a key written
        // into the token for good, and certificates are not stored: refused, not ignored.
        Request::AddIdentity(_) | Request::AddIdConstrained(_) => {
            tracing::info!(principal = ?principal.name, "agent: ssh-add with a certificate or constraints refused");
            Response::Failure
        }
        // Removing keys is `keyport keys delete`, a deliberate act; a lock would stop every
        // user of the daemon, not just the caller. Smartcard and extension requests have no
        // meaning here.
        other => {
            tracing::debug!(principal = ?principal.name, kind = other.message_id(), "agent: request not supported");
            Response::Failure
        }
    }
}

async fn identities(app: &SharedApp, caller: &SignCaller<'_>) -> Response {
    match sign::identities(app, caller).await {
        Ok(list) => Response::IdentitiesAnswer(
            list.into_iter()
                .filter_map(|id| {
                    let comment = format!("{}/{}", id.key.namespace, id.key.name);
                    let credential = match id.certificate {
                        Some(c) => PublicCredential::Cert(c),
                        None => PublicCredential::Key(keys::key_data(&id.public)?),
                    };
                    Some(Identity { credential, comment })
                })
                .collect(),
        ),
        Err(e) => {
            tracing::warn!(principal = ?caller.principal.name, error = %e, "agent: listing keys failed");
            Response::Failure
        }
    }
}

async fn sign_request(app: &SharedApp, caller: &SignCaller<'_>, req: ssh_agent_lib::proto::SignRequest) -> Response {
    // A certificate signs with the key it certifies.
    let mut blob = Vec::new();
    if req.credential.key_data().encode(&mut blob).is_err() {
        return Response::Failure;
    }
    let rec = match sign::key_for_blob(app, caller, &blob) {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(principal = ?caller.principal.name, "agent: sign refused: {e}");
            return Response::Failure;
        }
    };
    let Some(alg) = rec.algorithm.pair() else { return Response::Failure };
    let scheme = keys::scheme_for(alg, req.flags);
    match sign::sign(app, caller, &rec, Some(scheme), &req.data).await {
        Ok(sig) => match keys::ssh_signature(&sig) {
            Some(s) => Response::SignResponse(s),
            None => {
                tracing::error!(key = %rec.id, scheme = sig.scheme.name(), "agent: the token's signature has no SSH encoding");
                Response::Failure
            }
        },
        Err(e) => {
            tracing::info!(principal = ?caller.principal.name, key = %rec.id, "agent: sign failed: {e}");
            Response::Failure
        }
    }
}

/// `ssh-add FILE` with `[agent] add = "<namespace>"`: the key goes into the token through the
/// core import (needs `import` there; exportable only if the namespace's policy says so). The
/// key's fields are read by keyport's OpenSSH reader, which checks the pair is consistent.
async fn add_identity(app: &SharedApp, principal: &Principal, body: &[u8]) -> Response {
    let Some(namespace) = app.config.agent.add.clone() else {
        tracing::info!(principal = ?principal.name, "agent: ssh-add refused ([agent] add is not set)");
        return Response::Failure;
    };
    let (key, comment) = match crate::material::ssh::openssh::read_agent_key(body) {
        Ok(k) => k,
        Err(e) => {
            tracing::info!(principal = ?principal.name, "agent: ssh-add key refused: {e}");
            return Response::Failure;
        }
    };
    let request = |name: Option<String>| ImportRequest {
        key: key.clone(),
        certificates: Vec::new(),
        name,
        namespace: namespace.clone(),
        exportable: None,
        token: None,
    };
    let mut r = import_key(app, principal, request(key_name(&comment)), None).await;
    if matches!(r, Err(CoreError::Conflict(_))) {
        // The comment's name is taken by another key: fall back to `key-<fingerprint>`.
        r = import_key(app, principal, request(None), None).await;
    }
    match r {
        Ok(ImportOutcome::Imported(rec)) => {
            tracing::info!(principal = ?principal.name, key = %rec.id, namespace = ?rec.namespace, name = ?rec.name, "agent: ssh-add imported a key into the token");
            Response::Success
        }
        Ok(ImportOutcome::AlreadyPresent(rec)) => {
            tracing::info!(principal = ?principal.name, key = %rec.id, "agent: ssh-add of a key already in the namespace");
            Response::Success
        }
        Err(e) => {
            tracing::info!(principal = ?principal.name, "agent: ssh-add import failed: {e}");
            Response::Failure
        }
    }
}

/// A key name from an ssh-add comment (`user@host`, a file path): its last path element with
/// what key names cannot hold replaced; `None` when nothing is left.
fn key_name(comment: &str) -> Option<String> {
    let last = comment.rsplit('/').next().unwrap_or_default();
    let name: String = last.chars().map(|c| if c.is_ascii_alphanumeric() || "._-@".contains(c) { c } else { '_' }).take(100).collect();
    let name = name.trim_start_matches('.').to_string();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn key_names_from_comments() {
        assert_eq!(super::key_name("alice@host").as_deref(), Some("alice@host"));
        assert_eq!(super::key_name("/home/a/.ssh/id_ed25519").as_deref(), Some("id_ed25519"));
        assert_eq!(super::key_name("a b\nc").as_deref(), Some("a_b_c"));
        assert_eq!(super::key_name(""), None);
        assert_eq!(super::key_name("..."), None);
    }
}
