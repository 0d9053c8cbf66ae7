//! How the face writes exported keys: PEM as the vendor shows it (`-----BEGIN RSA PRIVATE
//! KEY-----`, i.e. PKCS#1 for RSA; SEC1 `EC PRIVATE KEY` for EC, as `ssh-keygen -m PEM` and
//! `openssl ec` write; PKCS#8 `PRIVATE KEY` for Ed25519, which has no legacy form), and the
//! batch export's `keypairs.zip` (stored entries, one `<name>.pem` per key pair).

use base64::Engine;
use der::{Decode, Encode};
use zeroize::Zeroizing;

use crate::material::key::{MaterialError, PrivateKey};
use crate::material::pkcs::to_pkcs8_der;

fn pem(label: &str, der: &[u8]) -> Zeroizing<String> {
    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    let mut out = Zeroizing::new(String::with_capacity(b64.len() + b64.len() / 64 + 64));
    out.push_str(&format!("-----BEGIN {label}-----\n"));
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
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

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A ZIP archive with the files stored (no compression), in a zeroizing buffer.
pub fn stored_zip(files: &[(String, Zeroizing<String>)]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::new());
    let mut central = Vec::new();
    // 1980-01-01 00:00, the earliest DOS date.
    let (time, date) = (0u16, 0x21u16);
    for (name, data) in files {
        let offset = out.len() as u32;
        let crc = crc32(data.as_bytes());
        let size = data.len() as u32;
        let fields = |buf: &mut Vec<u8>| {
            buf.extend_from_slice(&20u16.to_le_bytes()); // version needed
            buf.extend_from_slice(&0u16.to_le_bytes()); // flags
            buf.extend_from_slice(&0u16.to_le_bytes()); // stored
            buf.extend_from_slice(&time.to_le_bytes());
            buf.extend_from_slice(&date.to_le_bytes());
            buf.extend_from_slice(&crc.to_le_bytes());
            buf.extend_from_slice(&size.to_le_bytes());
            buf.extend_from_slice(&size.to_le_bytes());
            buf.extend_from_slice(&(name.len() as u16).to_le_bytes());
            buf.extend_from_slice(&0u16.to_le_bytes()); // extra length
        };
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        fields(&mut out);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data.as_bytes());
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        fields(&mut central);
        central.extend_from_slice(&0u16.to_le_bytes()); // comment length
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_and_zip_layout() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        let z = stored_zip(&[("a.pem".into(), Zeroizing::new("hello".into()))]);
        assert_eq!(&z[..4], b"PK\x03\x04");
        assert_eq!(&z[z.len() - 22..z.len() - 18], b"PK\x05\x06");
        assert!(z.windows(5).any(|w| w == b"hello"));
    }
}
