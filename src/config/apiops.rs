//! `[apiops]`: the project/environment key face (seed 004). (Filled in by that face's work.)

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiOpsConfig {}
