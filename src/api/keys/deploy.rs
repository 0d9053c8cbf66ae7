//! Deploying a key to environments (tokens), all or nothing, and undeploying it.
//!
//! Deploy: one creation intent per environment (recorded together) → the objects in each
//! token → one store transaction with every inventory row, deployment and audit entry. A
//! failure at any step destroys the objects already made in every token and drops the intents;
//! a crash is undone by start-up reconciliation (the intents name the objects). Replacing an
//! environment's material commits the new row and then destroys the old objects (an intent
//! recorded in the same transaction covers a crash in between).
//!
//! Undeploy: objects first, then the rows (a crash in between leaves rows whose objects are
//! gone, which reconciliation removes).

use rand::RngCore;
use std::sync::Arc;

use super::content::Material;
use super::VendorError;
use crate::core::authz::Principal;
use crate::core::keys::audit;
use crate::core::{App, CoreError};
use crate::store::records::now;
use crate::store::{ApiOpsDeployment, ApiOpsKey, Intent, KeyRecord, NewDeployment, StoreError};
use crate::token::{objects, secret, Token, TokenError};

/// Test hook: the environment whose token step fails after its objects were made
/// (`KEYPORT_TEST_APIOPS_FAIL_ENVIRONMENT`), so tests can watch the rollback. Unset in production.
const FAIL_HOOK: &str = "KEYPORT_TEST_APIOPS_FAIL_ENVIRONMENT";

pub struct Plan {
    pub environment: String,
    pub token: Arc<Token>,
    pub material: Arc<Material>,
    pub alias: Option<String>,
    /// TEXT (JSON body) or FILE (import-file).
    pub source: &'static str,
    /// The inventory row this environment's new material replaces.
    pub replaces: Option<KeyRecord>,
}

pub struct EnvResult {
    pub environment: String,
    pub success: bool,
    pub message: String,
}

/// The inventory name of a key's deployment: `<name>@<environment>`.
pub fn inventory_name(key: &str, environment: &str) -> String {
    format!("{key}@{environment}")
}

struct Staged {
    token: Arc<Token>,
    id: String,
    cka_id: [u8; 16],
}

async fn rollback(app: &App, staged: &[Staged]) {
    for s in staged {
        crate::core::keys::undo(app, &s.token, &s.id, s.cka_id).await;
    }
}

pub async fn deploy(app: &App, who: &Principal, key: &ApiOpsKey, new_key: bool, plans: Vec<Plan>) -> Result<Vec<EnvResult>, VendorError> {
    // Changing an existing key (a PUT, or import-file with override=true) is an update,
    // whatever permissions let the caller reach this point.
    if !new_key || plans.iter().any(|p| p.replaces.is_some()) {
        crate::core::keys::require_update(who, &key.namespace)?;
    }
    let exportable = crate::core::keys::exportable(app, &key.namespace, app.config.apiops.exportable).map_err(VendorError::from)?;
    let staged: Vec<Staged> = plans
        .iter()
        .map(|p| {
            let mut cka_id = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut cka_id);
            Staged { token: p.token.clone(), id: hex::encode(cka_id), cka_id }
        })
        .collect();
    let intents: Vec<Intent> = plans
        .iter()
        .zip(&staged)
        .map(|(p, s)| Intent {
            key_id: s.id.clone(),
            token: p.token.name.clone(),
            cka_id: s.cka_id.to_vec(),
            namespace: key.namespace.clone(),
            name: inventory_name(&key.name, &p.environment),
            op: "apiops-deploy".into(),
            created_at: now(),
        })
        .collect();
    let replacing: Vec<String> = plans.iter().filter_map(|p| p.replaces.as_ref().map(|r| r.id.clone())).collect();
    app.store.apiops_add_intents(&intents, &replacing).map_err(|e| match e {
        StoreError::NameTaken { .. } => super::duplicate(&key.name),
        e => CoreError::from(e).into(),
    })?;

    let fail_env = std::env::var(FAIL_HOOK).ok();
    let mut fingerprints = Vec::new();
    for (i, (p, s)) in plans.iter().zip(&staged).enumerate() {
        let (material, cka_id, label) = (p.material.clone(), s.cka_id, key.name.clone());
        let fail = fail_env.as_deref() == Some(p.environment.as_str());
        let made = p
            .token
            .run(move |c| {
                objects::destroy(c, &cka_id)?;
                let fingerprint = match &*material {
                    Material::Secret { kind, value } => {
                        secret::create_secret_key(c, *kind, value, &cka_id, &label, exportable)?;
                        format!("secret:{}", hex::encode(cka_id))
                    }
                    Material::Private(k) => {
                        let pk = objects::import_private_key(c, k, &cka_id, &label, exportable)?;
                        pk.fingerprint().map_err(|e| TokenError::Refused {
                            token: c.token.into(),
                            operation: "fingerprint",
                            detail: e.to_string(),
                        })?
                    }
                    Material::Public(pk) => {
                        let crate::material::spki::PublicKey::Rsa { modulus, exponent } = pk else {
                            return Err(TokenError::Refused {
                                token: c.token.into(),
                                operation: "public key import",
                                detail: "only RSA".into(),
                            });
                        };
                        secret::create_rsa_public_key(c, modulus, exponent, &cka_id, &label)?;
                        pk.fingerprint().map_err(|e| TokenError::Refused {
                            token: c.token.into(),
                            operation: "fingerprint",
                            detail: e.to_string(),
                        })?
                    }
                };
                if fail {
                    return Err(TokenError::Refused {
                        token: c.token.into(),
                        operation: "deploy",
                        detail: format!("test hook {FAIL_HOOK}"),
                    });
                }
                Ok(fingerprint)
            })
            .await;
        match made {
            Ok(f) => fingerprints.push(f),
            Err(e) => {
                rollback(app, &staged[..=i]).await;
                for s in &staged[i + 1..] {
                    let _ = app.store.drop_intent(&s.id);
                }
                let status = match &e {
                    TokenError::Refused { .. } | TokenError::NotFound { .. } => axum::http::StatusCode::BAD_REQUEST,
                    TokenError::Transient { .. } | TokenError::Config { .. } => axum::http::StatusCode::SERVICE_UNAVAILABLE,
                };
                return Err(VendorError::new(
                    status,
                    format!("Deployment to environment ({}) failed: {e}. Nothing was deployed to any environment.", p.environment),
                ));
            }
        }
    }

    if !app.pause_before_commit.is_zero() {
        tracing::warn!(key = ?key.name, "test hook: pausing before the store commit");
        tokio::time::sleep(app.pause_before_commit).await;
    }
    let at = now();
    let records: Vec<KeyRecord> = plans
        .iter()
        .zip(&staged)
        .zip(&fingerprints)
        .map(|((p, s), f)| KeyRecord {
            id: s.id.clone(),
            name: inventory_name(&key.name, &p.environment),
            namespace: key.namespace.clone(),
            owner: who.name.clone(),
            token: p.token.name.clone(),
            cka_id: s.cka_id.to_vec(),
            algorithm: p.material.inventory_algorithm(),
            fingerprint: f.clone(),
            exportable: exportable || matches!(*p.material, Material::Public(_)),
            origin: "apiops".into(),
            created_at: at.clone(),
            status: Default::default(),
        })
        .collect();
    let deployments: Vec<ApiOpsDeployment> = plans
        .iter()
        .zip(&staged)
        .map(|(p, s)| ApiOpsDeployment {
            project: key.project.clone(),
            name: key.name.clone(),
            environment: p.environment.clone(),
            key_id: s.id.clone(),
            alias: p.alias.clone(),
            source: p.source.into(),
            created_at: at.clone(),
        })
        .collect();
    let rows: Vec<NewDeployment> = records
        .iter()
        .zip(&deployments)
        .zip(&plans)
        .map(|((k, d), p)| NewDeployment { key: k, deployment: d, replaces: p.replaces.as_ref() })
        .collect();
    let audits: Vec<_> = records
        .iter()
        .zip(&plans)
        .map(|(r, p)| {
            audit(who, "apiops.key.deploy", &key.namespace, &r.id, "ok", Some(format!("{}/{} → {}", key.project, key.name, p.environment)))
        })
        .collect();
    if let Err(e) = app.store.apiops_commit(new_key.then_some(key), &rows, &audits) {
        rollback(app, &staged).await;
        return Err(match e {
            StoreError::NameTaken { .. } => super::duplicate(&key.name),
            e => CoreError::from(e).into(),
        });
    }
    // The replaced material: its rows are gone and an intent covers its objects.
    for old in plans.iter().filter_map(|p| p.replaces.as_ref()) {
        if let Some(token) = app.tokens.get(Some(&old.token)) {
            let cka: [u8; 16] = old.cka_id.clone().try_into().unwrap_or([0; 16]);
            crate::core::keys::undo(app, token, &old.id, cka).await;
        }
    }
    tracing::info!(project = ?key.project, key = ?key.name, environments = plans.len(), principal = ?who.name, "apiops key deployed");
    Ok(plans
        .iter()
        .map(|p| EnvResult { environment: p.environment.clone(), success: true, message: "Deployed successfully".into() })
        .collect())
}

/// Destroys each deployment's objects, then removes the rows of those that went (and the key
/// itself when `drop_key` and every environment went).
pub async fn undeploy(
    app: &App,
    who: &Principal,
    key: &ApiOpsKey,
    deployments: Vec<ApiOpsDeployment>,
    drop_key: bool,
) -> Result<Vec<EnvResult>, VendorError> {
    let mut results = Vec::new();
    let mut gone = Vec::new();
    let mut audits = Vec::new();
    for d in deployments {
        let rec = app.store.key(&d.key_id).map_err(|e| VendorError::from(CoreError::from(e)))?;
        let outcome = match rec.as_ref().and_then(|r| app.tokens.get(Some(&r.token)).map(|t| (r, t))) {
            None => Ok(()), // the row or its token is gone: nothing left to destroy
            Some((r, token)) => {
                let cka = r.cka_id.clone();
                token.run(move |c| objects::destroy(c, &cka)).await.map(|_| ())
            }
        };
        match outcome {
            Ok(()) => {
                gone.push(d.key_id.clone());
                audits.push(audit(
                    who,
                    "apiops.key.undeploy",
                    &key.namespace,
                    &d.key_id,
                    "ok",
                    Some(format!("{}/{} ← {}", key.project, key.name, d.environment)),
                ));
                results.push(EnvResult { environment: d.environment, success: true, message: "Undeployed successfully".into() });
            }
            Err(e) => results.push(EnvResult { environment: d.environment, success: false, message: format!("Undeployment failed: {e}") }),
        }
    }
    let all = results.iter().all(|r| r.success);
    app.store.apiops_remove(&key.project, &key.name, &gone, drop_key && all, &audits).map_err(|e| VendorError::from(CoreError::from(e)))?;
    Ok(results)
}
