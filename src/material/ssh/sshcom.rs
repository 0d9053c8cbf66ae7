pub const BEGIN: &str = "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----";
pub fn read(_d: &[u8], _p: Option<&[u8]>) -> Result<(super::super::key::PrivateKey, String), super::super::key::MaterialError> { Err(super::super::key::MaterialError::Unsupported("not implemented yet".into())) }
