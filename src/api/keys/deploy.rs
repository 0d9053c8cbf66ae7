//! The 004 face's deploy and undeploy: the core does the work (`core::deploy`, all or nothing
//! across environments); this file words the outcome per environment as the vendor does.

use super::VendorError;
use crate::core::authz::Principal;
use crate::core::create::CreateError;
use crate::core::{App, CoreError};
use crate::store::{ApiOpsDeployment, ApiOpsKey};

pub use crate::core::deploy::Plan;

pub struct EnvResult {
    pub environment: String,
    pub success: bool,
    pub message: String,
}

pub async fn deploy(app: &App, who: &Principal, key: &ApiOpsKey, new_key: bool, plans: Vec<Plan>) -> Result<Vec<EnvResult>, VendorError> {
    let environments: Vec<String> = plans.iter().map(|p| p.environment.clone()).collect();
    match crate::core::deploy::deploy(app, who, key, new_key, plans).await {
        Ok(_) => Ok(environments
            .into_iter()
            .map(|environment| EnvResult { environment, success: true, message: "Deployed successfully".into() })
            .collect()),
        Err(CreateError { error: CoreError::Conflict(_), .. }) => Err(super::duplicate(&key.name)),
        Err(CreateError { item: Some(i), error }) => {
            let message =
                format!("Deployment to environment ({}) failed: {error}. Nothing was deployed to any environment.", environments[i]);
            Err(VendorError::new(VendorError::from(error).status, message))
        }
        Err(CreateError { item: None, error }) => Err(error.into()),
    }
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
    let results = crate::core::deploy::undeploy(app, who, key, deployments, drop_key).await?;
    Ok(results
        .into_iter()
        .map(|(environment, outcome)| match outcome {
            Ok(()) => EnvResult { environment, success: true, message: "Undeployed successfully".into() },
            Err(e) => EnvResult { environment, success: false, message: format!("Undeployment failed: {e}") },
        })
        .collect())
}
