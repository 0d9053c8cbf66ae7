//! How the face writes exported keys: PEM as the vendor shows it (`-----BEGIN RSA PRIVATE
//! KEY-----`, i.e. PKCS#1 for RSA; SEC1 `EC PRIVATE KEY` for EC, as `ssh-keygen -m PEM` and
//! `openssl ec` write; PKCS#8 `PRIVATE KEY` for Ed25519, which has no legacy form), and the
//! batch export's `keypairs.zip` (stored entries, one `<name>.pem` per key pair).

use der::{Decode, Encode};
use zeroize::Zeroizing;

use crate::material::key::{MaterialError, PrivateKey};
use crate::material::pkcs::to_pkcs8_der;

fn pem(label: &str, der: &[u8]) -> Zeroizing<String> {
    crate::material::pkcs::pem::encode(label, "", der)
}

pub fn private_key_pem(key: &PrivateKey) -> Result<Zeroizing<String>, MaterialError> {
    let bad = |e: der::Error| MaterialError::Malformed(e.to_string());
    match key {
        PrivateKey::Rsa(_) => {
            // PKCS#8's privateKey OCTET STRING holds exactly the PKCS#1 RSAPrivateKey.
            let p8 = to_pkcs8_der(key)?;
            let info = pkcs8::PrivateKeyInfo::from_der(&p8).map_err(bad)?;
            Ok(pem("RSA PRIVATE KEY", info.private_key))
        }
        PrivateKey::Ec { algorithm, d, point } => {
            let params = algorithm.ec_params().ok_or_else(|| MaterialError::Unsupported("EC key without a named curve".into()))?;
            let oid = der::asn1::ObjectIdentifier::from_der(params).map_err(bad)?;
            let k = sec1::EcPrivateKey { private_key: d, parameters: Some(sec1::EcParameters::NamedCurve(oid)), public_key: Some(point) };
            let der = Zeroizing::new(k.to_der().map_err(bad)?);
            Ok(pem("EC PRIVATE KEY", &der))
        }
        PrivateKey::Ed25519 { .. } => Ok(pem("PRIVATE KEY", &to_pkcs8_der(key)?)),
    }
}

/// The batch export's `keypairs.zip`: one stored `<name>.pem` per key pair.
pub fn stored_zip(files: &[(String, Zeroizing<String>)]) -> Result<Zeroizing<Vec<u8>>, MaterialError> {
    crate::material::archive::stored_zip(&files.iter().map(|(n, d)| (n.as_str(), d.as_bytes())).collect::<Vec<_>>())
}
