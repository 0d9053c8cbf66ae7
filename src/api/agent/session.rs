//! One agent request → one core call → one answer. The wire format of messages is
//! `ssh-agent-lib`'s; anything keyport does not do, and anything refused, is
//! SSH_AGENT_FAILURE (the protocol has no richer error: the daemon log and the audit say why).

use ssh_agent_lib::proto::{Identity, PublicCredential, Request, Response};
use ssh_agent_lib::ssh_encoding::Decode;

use super::keys;
use crate::core::authz::{Peer, Principal};
use crate::core::sign::{self, SignCaller};
use crate::core::SharedApp;
use crate::material::algorithm::Algorithm;

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
        Request::AddIdentity(_) | Request::AddIdConstrained(_) => add_identity(app, &principal),
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
    match sign::signable_keys(app, caller).await {
        Ok(list) => Response::IdentitiesAnswer(
            list.into_iter()
                .filter_map(|(rec, pk)| {
                    let kd = keys::key_data(&pk)?;
                    Some(Identity { credential: PublicCredential::Key(kd), comment: format!("{}/{}", rec.namespace, rec.name) })
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
    let kd = match &req.credential {
        PublicCredential::Key(k) => k.clone(),
        PublicCredential::Cert(c) => c.public_key().clone(),
    };
    let Some(pk) = keys::public_key(&kd) else {
        tracing::info!(principal = ?caller.principal.name, "agent: sign request for a key type keyport does not hold");
        return Response::Failure;
    };
    let rec = match sign::key_for_public(app, caller, &pk) {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(principal = ?caller.principal.name, "agent: sign refused: {e}");
            return Response::Failure;
        }
    };
    let Some(alg) = Algorithm::parse(&rec.algorithm) else { return Response::Failure };
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

fn add_identity(app: &SharedApp, principal: &Principal) -> Response {
    match &app.config.agent.add {
        None => {
            tracing::info!(principal = ?principal.name, "agent: ssh-add refused ([agent] add is not set)");
            Response::Failure
        }
        Some(_) => {
            // Import through the agent is not built yet: refuse rather than pretend.
            tracing::info!(principal = ?principal.name, "agent: ssh-add import is not supported by this build");
            Response::Failure
        }
    }
}
