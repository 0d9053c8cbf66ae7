//! One key in several tokens (the 004 face's environments): deployed all or nothing through
//! the creation sequence (`create::create_all`, the vendor key and its deployments committed
//! with the inventory rows), and undeployed token first, rows after.
//!
//! Each deployment is its own inventory row named `<name>@<environment>` (its token objects
//! carry CKA_LABEL = name). New material for an environment replaces its row in the same
//! transaction; the old objects go after the commit (an intent covers a crash in between).

use std::sync::Arc;

use rand::RngCore;

use super::authz::Principal;
use super::create::{create_all, CreateError, NewKey};
use super::keys::audit;
use super::material::Material;
use super::{App, CoreError};
use crate::material::spki::PublicKey;
use crate::store::{ApiOpsDeployment, ApiOpsKey, FaceRows, KeyRecord};
use crate::token::{objects, Token};

/// One environment to deploy to.
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

/// The inventory name of a key's deployment: `<name>@<environment>`.
pub fn inventory_name(key: &str, environment: &str) -> String {
    format!("{key}@{environment}")
}

/// Deploys `key` to every planned environment, or to none; `new_key` inserts the vendor key in
/// the same transaction. A failure names the environment by its position in `plans`.
pub async fn deploy(app: &App, who: &Principal, key: &ApiOpsKey, new_key: bool, plans: Vec<Plan>) -> Result<Vec<KeyRecord>, CreateError> {
    let fail = |error| CreateError { item: None, error };
    // Changing an existing key (a PUT, or import-file with override=true) is an update,
    // whatever permissions let the caller reach this point.
    if !new_key || plans.iter().any(|p| p.replaces.is_some()) {
        super::keys::require_update(who, &key.namespace).map_err(fail)?;
    }
    let policy = super::keys::exportable(app, &key.namespace, app.config.apiops.exportable).map_err(fail)?;
    // What each environment's token can hold, before anything is reserved or made.
    for (i, p) in plans.iter().enumerate() {
        match &*p.material {
            Material::Private(k) => {
                let alg = k.algorithm().map_err(|e| CreateError { item: Some(i), error: super::import::material_error(e) })?;
                super::token_caps::check_import(&app.tokens, &p.token, alg, policy)
                    .map_err(|error| CreateError { item: Some(i), error })?;
            }
            Material::Secret { .. } => {
                super::token_caps::check_import_secret(&app.tokens, &p.token).map_err(|error| CreateError { item: Some(i), error })?;
            }
            Material::Public(_) => {}
        }
    }
    let keys: Vec<NewKey> = plans
        .iter()
        .map(|p| {
            let mut cka_id = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut cka_id);
            let exportable = p.material.exportable(policy);
            let make = p.material.clone().make(policy);
            let kind = p.material.inventory_algorithm();
            let name = inventory_name(&key.name, &p.environment);
            let mut k =
                NewKey::new(key.namespace.clone(), name, p.token.clone(), cka_id, kind, exportable, "apiops", "apiops-deploy", make);
            k.label = key.name.clone();
            k.audit = ("apiops.key.deploy".into(), Some(format!("{}/{} → {}", key.project, key.name, p.environment)));
            k.replaces = p.replaces.clone();
            k
        })
        .collect();
    let vendor_key = new_key.then(|| key.clone());
    let recs = create_all(app, who, keys, |recs: &[KeyRecord], _: &[Option<PublicKey>]| FaceRows::ApiOps {
        key: vendor_key,
        deployments: plans
            .iter()
            .zip(recs)
            .map(|(p, r)| ApiOpsDeployment {
                project: key.project.clone(),
                name: key.name.clone(),
                environment: p.environment.clone(),
                key_id: r.id.clone(),
                alias: p.alias.clone(),
                source: p.source.into(),
                created_at: r.created_at,
            })
            .collect(),
    })
    .await?;
    tracing::info!(project = ?key.project, key = ?key.name, environments = recs.len(), principal = ?who.name, "apiops key deployed");
    Ok(recs)
}

/// Destroys each deployment's objects, then removes the rows of those that went (and the
/// vendor key itself when `drop_key` and every environment went). Per deployment: its
/// environment and whether its objects went.
pub async fn undeploy(
    app: &App,
    who: &Principal,
    key: &ApiOpsKey,
    deployments: Vec<ApiOpsDeployment>,
    drop_key: bool,
) -> Result<Vec<(String, Result<(), CoreError>)>, CoreError> {
    // A deployment's key adopted as a keyset's active or pending version is the keyset's to
    // delete (as for the native key delete): nothing is destroyed.
    for d in &deployments {
        if let Some(v) = app.store.keyset_version_of_key(&d.key_id)?.filter(|v| v.state == "active" || v.state == "pending") {
            return Err(CoreError::Conflict(format!(
                "the key of environment '{}' is the {} version {} of an SSH keyset; delete the keyset (keyport keysets delete) \
                 or rotate it first",
                d.environment, v.state, v.version
            )));
        }
    }
    let mut results = Vec::new();
    let mut gone = Vec::new();
    let mut audits = Vec::new();
    for d in deployments {
        let rec = app.store.key(&d.key_id)?;
        let outcome = match rec.as_ref().and_then(|r| app.tokens.get(Some(&r.token)).map(|t| (r, t))) {
            None => Ok(()), // the row or its token is gone: nothing left to destroy
            Some((r, token)) => {
                let cka = r.cka_id.clone();
                token.run(move |c| objects::destroy(c, &cka)).await.map(|_| ()).map_err(CoreError::from)
            }
        };
        if outcome.is_ok() {
            gone.push(d.key_id.clone());
            let detail = format!("{}/{} ← {}", key.project, key.name, d.environment);
            audits.push(audit(who, "apiops.key.undeploy", &key.namespace, &d.key_id, "ok", Some(detail)));
        }
        results.push((d.environment, outcome));
    }
    let all = results.iter().all(|(_, r)| r.is_ok());
    app.store.apiops_remove(&key.project, &key.name, &gone, drop_key && all, &audits)?;
    Ok(results)
}

/// A vendor key's description and aliases, with its audit entry.
pub fn update(
    app: &App,
    who: &Principal,
    key: &ApiOpsKey,
    description: Option<&str>,
    aliases: &[(String, Option<String>)],
) -> Result<(), CoreError> {
    let entry = audit(who, "apiops.key.update", &key.namespace, &format!("{}/{}", key.project, key.name), "ok", None);
    app.store.apiops_update(&key.project, &key.name, description, aliases, &entry)?;
    Ok(())
}
