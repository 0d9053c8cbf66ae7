//! `[kps]`: the Huawei Cloud KPS face. (Filled in by the KPS face's work.)

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KpsConfig {}
