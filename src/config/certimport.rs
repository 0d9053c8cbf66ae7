//! `[[enrollment_profiles]]`: the certificate import face (seed 001). (Filled in by that work.)

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentProfile {}
