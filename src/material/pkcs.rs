// TEMP STUB
use super::key::{MaterialError, PrivateKey};
pub fn read_private_key(_d: &[u8], _p: Option<&[u8]>) -> Result<PrivateKey, MaterialError> { Err(MaterialError::Unsupported("stub".into())) }
pub fn read_pkcs12(_d: &[u8], _p: &[u8]) -> Result<(PrivateKey, Vec<Vec<u8>>), MaterialError> { Err(MaterialError::Unsupported("stub".into())) }
