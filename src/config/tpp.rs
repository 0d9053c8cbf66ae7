//! `[tpp]`: the Venafi TPP WebSDK SSH face (seed 003). (Filled in by that work.)

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TppConfig {}
