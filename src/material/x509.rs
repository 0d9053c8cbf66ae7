// TEMP STUB
use super::key::{MaterialError, PrivateKey};
pub struct CertInfo { pub der: Vec<u8>, pub subject: String, pub issuer: String, pub subject_der: Vec<u8>, pub serial_hex: String, pub not_before: String, pub not_after: String, pub sha1: String, pub sha256: String, pub public_key: super::spki::PublicKey }
pub fn parse_certificate(_d: &[u8]) -> Result<CertInfo, MaterialError> { Err(MaterialError::Unsupported("stub".into())) }
pub fn parse_certificates(_d: &[u8]) -> Result<Vec<CertInfo>, MaterialError> { Err(MaterialError::Unsupported("stub".into())) }
pub fn check_matches(_c: &CertInfo, _k: &PrivateKey) -> Result<(), MaterialError> { Ok(()) }
