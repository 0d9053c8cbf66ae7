//! Unencrypted key structures (PKCS#1 RSAPrivateKey, SEC1 ECPrivateKey, PKCS#8
//! PrivateKeyInfo) to and from [`PrivateKey`], with every key checked for consistency:
//! RSA components must agree (CRT values are computed when absent), EC public points are
//! derived from the scalar, Ed25519 public keys from the seed.

use der::asn1::{AnyRef, BitStringRef, ObjectIdentifier, OctetStringRef, UintRef};
use der::{Decode, Encode, Reader, SliceReader, Tag, TagMode, TagNumber, Tagged};
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::BigUint;
use spki::AlgorithmIdentifierRef;
use zeroize::Zeroizing;

use super::{explicit_any, malformed, secret_der, strip_zeros};
use crate::material::algorithm::Algorithm;
use crate::material::key::{MaterialError, PrivateKey, RsaKey, Secret};

pub(crate) const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_RSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
pub(crate) const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
pub(crate) const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_X25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.110");
const OID_X448: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.111");
const OID_ED448: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.113");
const OID_DSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10040.4.1");
const OID_DH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.3.1");

const SUPPORTED: &str = "keyport accepts RSA 2048/3072/4096, EC P-256/P-384/P-521 and Ed25519";

// ---------------------------------------------------------------------------------------------
// RSA

/// PKCS#1 RSAPrivateKey DER.
pub(crate) fn from_pkcs1_der(der: &[u8]) -> Result<PrivateKey, MaterialError> {
    let k = pkcs1::RsaPrivateKey::from_der(der).map_err(|e| malformed("PKCS#1 RSA private key", e))?;
    if k.other_prime_infos.is_some() {
        return Err(MaterialError::Unsupported(format!("multi-prime RSA keys; {SUPPORTED} with two primes")));
    }
    rsa_from_parts(RsaParts {
        n: k.modulus.as_bytes(),
        e: k.public_exponent.as_bytes(),
        d: k.private_exponent.as_bytes(),
        p: k.prime1.as_bytes(),
        q: k.prime2.as_bytes(),
        dp: k.exponent1.as_bytes(),
        dq: k.exponent2.as_bytes(),
        qinv: k.coefficient.as_bytes(),
    })
}

/// Big-endian components as read; `p`/`q`/`dp`/`dq`/`qinv` may be zero (absent).
pub(crate) struct RsaParts<'a> {
    pub n: &'a [u8],
    pub e: &'a [u8],
    pub d: &'a [u8],
    pub p: &'a [u8],
    pub q: &'a [u8],
    pub dp: &'a [u8],
    pub dq: &'a [u8],
    pub qinv: &'a [u8],
}

fn is_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

fn bit_len(b: &[u8]) -> usize {
    let b = strip_zeros(b);
    match b.first() {
        None => 0,
        Some(first) => b.len() * 8 - first.leading_zeros() as usize,
    }
}

fn secret_uint(v: &BigUint) -> Secret {
    Zeroizing::new(v.to_bytes_be())
}

/// Builds an [`RsaKey`] from its components: the size must be one keyport supports, the
/// components must agree (n = p·q, e·d ≡ 1 mod p−1 and q−1), and the CRT values are computed
/// when absent and must match when present. Primes are recovered from (n, e, d) when absent.
pub(crate) fn rsa_from_parts(parts: RsaParts<'_>) -> Result<PrivateKey, MaterialError> {
    let bits = bit_len(parts.n);
    if Algorithm::from_rsa_bits(bits).is_none() {
        return Err(MaterialError::Unsupported(format!("RSA-{bits} keys; {SUPPORTED}")));
    }
    // No component may be longer than the modulus: keeps hostile input from making the
    // big-integer checks below expensive.
    let n_len = strip_zeros(parts.n).len();
    if [parts.e, parts.d, parts.p, parts.q, parts.dp, parts.dq, parts.qinv].iter().any(|c| strip_zeros(c).len() > n_len) {
        return Err(MaterialError::Malformed("an RSA key component is longer than the modulus".into()));
    }
    if is_zero(parts.d) || is_zero(parts.e) {
        return Err(MaterialError::Malformed("the RSA key has no private or public exponent".into()));
    }
    let n = BigUint::from_bytes_be(parts.n);
    let e = BigUint::from_bytes_be(parts.e);
    let d = BigUint::from_bytes_be(parts.d);
    let primes = if is_zero(parts.p) || is_zero(parts.q) {
        Vec::new()
    } else {
        vec![BigUint::from_bytes_be(parts.p), BigUint::from_bytes_be(parts.q)]
    };
    let key = rsa::RsaPrivateKey::from_components(n, e, d, primes).map_err(|err| match err {
        rsa::Error::PublicExponentTooSmall | rsa::Error::PublicExponentTooLarge => {
            MaterialError::Unsupported("RSA public exponent outside 3..2^33; use e = 65537".into())
        }
        _ => MaterialError::Malformed("the RSA key components are inconsistent (n, e, d, p, q do not agree)".into()),
    })?;
    let primes = key.primes();
    let (p, q) = (&primes[0], &primes[1]);
    let (Some(dp), Some(dq)) = (key.dp(), key.dq()) else {
        return Err(MaterialError::Malformed("the RSA primes are invalid".into()));
    };
    let qinv = key.crt_coefficient().ok_or_else(|| MaterialError::Malformed("the RSA primes are invalid".into()))?;
    for (name, given, computed) in [("dP", parts.dp, dp), ("dQ", parts.dq, dq), ("qInv", parts.qinv, &qinv)] {
        if !is_zero(given) && BigUint::from_bytes_be(given) != *computed {
            return Err(MaterialError::Malformed(format!("the RSA CRT value {name} does not match the key")));
        }
    }
    Ok(PrivateKey::Rsa(RsaKey {
        n: key.n().to_bytes_be(),
        e: key.e().to_bytes_be(),
        d: secret_uint(key.d()),
        p: secret_uint(p),
        q: secret_uint(q),
        dp: secret_uint(dp),
        dq: secret_uint(dq),
        qinv: secret_uint(&qinv),
    }))
}

// ---------------------------------------------------------------------------------------------
// EC

fn field_size(alg: Algorithm) -> usize {
    match alg {
        Algorithm::EcP256 => 32,
        Algorithm::EcP384 => 48,
        _ => 66,
    }
}

/// The curve named by an ECParameters value (a DER namedCurve OID); explicit parameters and
/// other curves are refused.
fn curve_from_params(params: AnyRef<'_>) -> Result<Algorithm, MaterialError> {
    if params.tag() != Tag::ObjectIdentifier {
        return Err(MaterialError::Unsupported(
            "explicit EC curve parameters; re-save the key with a named curve (openssl ec -param_enc named_curve)".into(),
        ));
    }
    let der = params.to_der().map_err(|e| malformed("EC curve parameters", e))?;
    match Algorithm::from_ec_params(&der) {
        Some(alg) if alg != Algorithm::Ed25519 => Ok(alg),
        _ => {
            let oid = params.decode_as::<ObjectIdentifier>().map(|o| o.to_string()).unwrap_or_default();
            Err(MaterialError::Unsupported(format!("EC curve {oid}; {SUPPORTED}")))
        }
    }
}

/// SEC1 ECPrivateKey DER. `outer_curve` is the curve from a PKCS#8 AlgorithmIdentifier,
/// if any; the structure's own parameters must agree with it.
pub(crate) fn from_sec1_der(der: &[u8], outer_curve: Option<Algorithm>) -> Result<PrivateKey, MaterialError> {
    let bad = |e| malformed("SEC1 EC private key", e);
    let (d, params, point) = AnyRef::from_der(der)
        .and_then(|any| {
            any.sequence(|r: &mut SliceReader<'_>| {
                let version: u8 = r.decode()?;
                if version != 1 {
                    return Err(Tag::Integer.value_error());
                }
                let d = OctetStringRef::decode(r)?.as_bytes();
                let params = explicit_any(r, TagNumber::N0)?;
                let point = r.context_specific::<BitStringRef<'_>>(TagNumber::N1, TagMode::Explicit)?;
                Ok((d, params, point))
            })
        })
        .map_err(bad)?;
    let inner_curve = params.map(curve_from_params).transpose()?;
    let alg = match (outer_curve, inner_curve) {
        (Some(a), Some(b)) if a != b => {
            return Err(MaterialError::Malformed("the EC key names two different curves".into()));
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => return Err(MaterialError::Malformed("the SEC1 EC key does not name its curve".into())),
    };
    let point = match point {
        Some(bits) => Some(bits.as_bytes().ok_or_else(|| MaterialError::Malformed("EC public key has unused bits".into()))?),
        None => None,
    };
    ec_from_parts(alg, d, point)
}

/// Pads `d` to the field size, checks it is a valid scalar, derives the public point and
/// compares it with `stored_point` when the file carries one.
pub(crate) fn ec_from_parts(alg: Algorithm, d: &[u8], stored_point: Option<&[u8]>) -> Result<PrivateKey, MaterialError> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;

    let size = field_size(alg);
    let d = strip_zeros(d);
    if d.len() > size {
        return Err(MaterialError::Malformed("the EC private scalar is longer than the curve allows".into()));
    }
    let mut padded: Secret = Zeroizing::new(vec![0u8; size]);
    padded[size - d.len()..].copy_from_slice(d);
    let out_of_range = || MaterialError::Malformed("the EC private scalar is out of range for the curve".into());
    let (uncompressed, compressed) = match alg {
        Algorithm::EcP256 => {
            let sk = p256::SecretKey::from_slice(&padded).map_err(|_| out_of_range())?;
            let pk = sk.public_key();
            (pk.to_encoded_point(false).as_bytes().to_vec(), pk.to_encoded_point(true).as_bytes().to_vec())
        }
        Algorithm::EcP384 => {
            let sk = p384::SecretKey::from_slice(&padded).map_err(|_| out_of_range())?;
            let pk = sk.public_key();
            (pk.to_encoded_point(false).as_bytes().to_vec(), pk.to_encoded_point(true).as_bytes().to_vec())
        }
        Algorithm::EcP521 => {
            let sk = p521::SecretKey::from_slice(&padded).map_err(|_| out_of_range())?;
            let pk = sk.public_key();
            (pk.to_encoded_point(false).as_bytes().to_vec(), pk.to_encoded_point(true).as_bytes().to_vec())
        }
        _ => return Err(MaterialError::Unsupported(format!("{alg} is not an EC curve"))),
    };
    if let Some(stored) = stored_point {
        if stored != uncompressed.as_slice() && stored != compressed.as_slice() {
            return Err(MaterialError::Malformed("the public key stored with the EC private key does not match it".into()));
        }
    }
    Ok(PrivateKey::Ec { algorithm: alg, d: padded, point: uncompressed })
}

// ---------------------------------------------------------------------------------------------
// Ed25519

pub(crate) fn ed25519_from_seed(seed: &[u8], stored_public: Option<&[u8]>) -> Result<PrivateKey, MaterialError> {
    let seed: Zeroizing<[u8; 32]> =
        Zeroizing::new(seed.try_into().map_err(|_| MaterialError::Malformed("the Ed25519 private key is not 32 bytes".into()))?);
    let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    if let Some(stored) = stored_public {
        if stored != public {
            return Err(MaterialError::Malformed("the public key stored with the Ed25519 private key does not match it".into()));
        }
    }
    Ok(PrivateKey::Ed25519 { seed, public })
}

// ---------------------------------------------------------------------------------------------
// PKCS#8

/// PKCS#8 PrivateKeyInfo (v1 or v2) DER, exactly one structure with nothing after it.
pub(crate) fn from_pkcs8_der(der: &[u8]) -> Result<PrivateKey, MaterialError> {
    let info = pkcs8::PrivateKeyInfo::from_der(der).map_err(|e| malformed("PKCS#8 private key", e))?;
    let alg = info.algorithm;
    match alg.oid {
        OID_RSA => {
            if alg.parameters.is_some_and(|p| !p.is_null()) {
                return Err(MaterialError::Malformed("RSA key with unexpected algorithm parameters".into()));
            }
            from_pkcs1_der(info.private_key)
        }
        OID_EC => {
            let params = alg.parameters.ok_or_else(|| MaterialError::Malformed("the EC key does not name its curve".into()))?;
            let curve = curve_from_params(params)?;
            from_sec1_der(info.private_key, Some(curve))
        }
        OID_ED25519 => {
            if alg.parameters.is_some() {
                return Err(MaterialError::Malformed("Ed25519 key with algorithm parameters".into()));
            }
            let seed = OctetStringRef::from_der(info.private_key).map_err(|e| malformed("Ed25519 private key", e))?;
            ed25519_from_seed(seed.as_bytes(), info.public_key)
        }
        OID_RSA_PSS => Err(MaterialError::Unsupported(
            "RSA-PSS-restricted keys (OID 1.2.840.113549.1.1.10); export the key as plain RSA (rsaEncryption)".into(),
        )),
        OID_ED448 => Err(MaterialError::Unsupported(format!("Ed448 keys; {SUPPORTED}"))),
        OID_X25519 | OID_X448 => Err(MaterialError::Unsupported(format!("X25519/X448 key-agreement keys; {SUPPORTED}"))),
        OID_DSA => Err(MaterialError::Unsupported(format!("DSA keys; {SUPPORTED}"))),
        OID_DH => Err(MaterialError::Unsupported(format!("Diffie-Hellman keys; {SUPPORTED}"))),
        other => Err(MaterialError::Unsupported(format!("key algorithm {other}; {SUPPORTED}"))),
    }
}

/// PKCS#1 RSAPrivateKey DER (two primes, CRT parameters included): the inner key of a PKCS#8
/// and the body of a traditional `RSA PRIVATE KEY`.
pub(crate) fn pkcs1_der(k: &RsaKey) -> Result<Secret, MaterialError> {
    fn uint(b: &[u8]) -> Result<UintRef<'_>, MaterialError> {
        UintRef::new(strip_zeros(b)).map_err(|e| MaterialError::Malformed(format!("cannot encode the key: {e}")))
    }
    secret_der(&pkcs1::RsaPrivateKey {
        modulus: uint(&k.n)?,
        public_exponent: uint(&k.e)?,
        private_exponent: uint(&k.d)?,
        prime1: uint(&k.p)?,
        prime2: uint(&k.q)?,
        exponent1: uint(&k.dp)?,
        exponent2: uint(&k.dq)?,
        coefficient: uint(&k.qinv)?,
        other_prime_infos: None,
    })
}

/// Unencrypted PKCS#8 v1 DER: RSA as rsaEncryption + PKCS#1, EC as id-ecPublicKey with the
/// named curve + SEC1 (with the public point, curve only in the outer identifier, as
/// OpenSSL writes it), Ed25519 per RFC 8410.
pub(crate) fn to_pkcs8_der(key: &PrivateKey) -> Result<Zeroizing<Vec<u8>>, MaterialError> {
    let enc = |e: der::Error| MaterialError::Malformed(format!("cannot encode the key: {e}"));
    let (oid, params, inner): (ObjectIdentifier, Option<AnyRef<'_>>, Secret) = match key {
        PrivateKey::Rsa(k) => (OID_RSA, Some(AnyRef::NULL), pkcs1_der(k)?),
        PrivateKey::Ec { algorithm, d, point } => {
            let curve = algorithm.ec_params().ok_or_else(|| MaterialError::Unsupported("not an EC curve".into()))?;
            let sec1 = sec1::EcPrivateKey { private_key: d, parameters: None, public_key: Some(point) };
            (OID_EC, Some(AnyRef::from_der(curve).map_err(enc)?), secret_der(&sec1)?)
        }
        PrivateKey::Ed25519 { seed, .. } => (OID_ED25519, None, secret_der(&OctetStringRef::new(seed.as_slice()).map_err(enc)?)?),
    };
    let info =
        pkcs8::PrivateKeyInfo { algorithm: AlgorithmIdentifierRef { oid, parameters: params }, private_key: &inner, public_key: None };
    secret_der(&info)
}

/// Which unencrypted or encrypted structure a DER blob holds, judged from its first two
/// elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DerKind {
    Pkcs8,
    EncryptedPkcs8,
    Pkcs1,
    Sec1,
}

pub(crate) fn classify(der: &[u8]) -> Result<DerKind, MaterialError> {
    let unknown = || MaterialError::UnknownFormat("the DER data is not a PKCS#1, SEC1 or PKCS#8 private key".into());
    let mut outer = SliceReader::new(der).map_err(|_| unknown())?;
    let header = outer.peek_header().map_err(|_| unknown())?;
    if header.tag != Tag::Sequence {
        return Err(unknown());
    }
    let (first, second) = outer
        .sequence(|r| {
            let first = r.peek_tag()?;
            r.tlv_bytes()?;
            let second = r.peek_tag()?;
            // Leave the rest unread; only the shape matters here.
            let rest = r.remaining_len();
            r.read_slice(rest)?;
            Ok((first, second))
        })
        .map_err(|e| malformed("DER key", e))?;
    match (first, second) {
        (Tag::Integer, Tag::Sequence) => Ok(DerKind::Pkcs8),
        (Tag::Integer, Tag::Integer) => Ok(DerKind::Pkcs1),
        (Tag::Integer, Tag::OctetString) => Ok(DerKind::Sec1),
        (Tag::Sequence, Tag::OctetString) => Ok(DerKind::EncryptedPkcs8),
        _ => Err(unknown()),
    }
}
