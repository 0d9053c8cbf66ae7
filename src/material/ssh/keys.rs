//! Turning the components every format stores into a checked [`PrivateKey`]: RSA CRT values
//! are recomputed, an EC scalar is padded and must give the stored point, an Ed25519 seed must
//! give the stored public key.

use crypto_bigint::{NonZero, Uint, U4096, U8192};
use zeroize::Zeroizing;

use super::super::algorithm::Algorithm;
use super::super::key::{MaterialError, PrivateKey, RsaKey, Secret};
use super::wire::strip_zeros;

/// The ECDSA curves SSH names (RFC 5656).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    pub fn from_key_type(t: &str) -> Option<Curve> {
        match t {
            "ecdsa-sha2-nistp256" => Some(Curve::P256),
            "ecdsa-sha2-nistp384" => Some(Curve::P384),
            "ecdsa-sha2-nistp521" => Some(Curve::P521),
            _ => None,
        }
    }

    pub fn from_algorithm(a: Algorithm) -> Option<Curve> {
        match a {
            Algorithm::EcP256 => Some(Curve::P256),
            Algorithm::EcP384 => Some(Curve::P384),
            Algorithm::EcP521 => Some(Curve::P521),
            _ => None,
        }
    }

    pub fn key_type(self) -> &'static str {
        match self {
            Curve::P256 => "ecdsa-sha2-nistp256",
            Curve::P384 => "ecdsa-sha2-nistp384",
            Curve::P521 => "ecdsa-sha2-nistp521",
        }
    }

    /// The curve identifier inside SSH blobs.
    pub fn name(self) -> &'static str {
        &self.key_type()["ecdsa-sha2-".len()..]
    }

    pub fn algorithm(self) -> Algorithm {
        match self {
            Curve::P256 => Algorithm::EcP256,
            Curve::P384 => Algorithm::EcP384,
            Curve::P521 => Algorithm::EcP521,
        }
    }

    /// Bytes of a field element (and of the padded scalar).
    pub fn field_bytes(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }

    /// Checks that `point` is an uncompressed point on the curve.
    pub fn check_point(self, point: &[u8]) -> Result<(), MaterialError> {
        if point.len() != 1 + 2 * self.field_bytes() || point[0] != 0x04 {
            return Err(MaterialError::Malformed(format!("the {} public point is not an uncompressed point", self.name())));
        }
        let ok = match self {
            Curve::P256 => p256::PublicKey::from_sec1_bytes(point).is_ok(),
            Curve::P384 => p384::PublicKey::from_sec1_bytes(point).is_ok(),
            Curve::P521 => p521::PublicKey::from_sec1_bytes(point).is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(MaterialError::Malformed(format!("the {} public point is not on the curve", self.name())))
        }
    }
}

/// An ECDSA key from its scalar (any length up to the field size, leading zeros allowed) and
/// its uncompressed public point; `d·G` must equal the point.
pub fn ec(curve: Curve, d: &[u8], point: &[u8]) -> Result<PrivateKey, MaterialError> {
    let size = curve.field_bytes();
    let d = strip_zeros(d);
    if d.is_empty() || d.len() > size {
        return Err(MaterialError::Malformed(format!("the {} private scalar is out of range", curve.name())));
    }
    let mut padded: Secret = Zeroizing::new(vec![0u8; size]);
    padded[size - d.len()..].copy_from_slice(d);
    curve.check_point(point)?;
    let bad_scalar = || MaterialError::Malformed(format!("the {} private scalar is out of range", curve.name()));
    let matches = match curve {
        Curve::P256 => {
            let sk = p256::SecretKey::from_slice(&padded).map_err(|_| bad_scalar())?;
            p256::PublicKey::from_sec1_bytes(point).is_ok_and(|pk| pk == sk.public_key())
        }
        Curve::P384 => {
            let sk = p384::SecretKey::from_slice(&padded).map_err(|_| bad_scalar())?;
            p384::PublicKey::from_sec1_bytes(point).is_ok_and(|pk| pk == sk.public_key())
        }
        Curve::P521 => {
            let sk = p521::SecretKey::from_slice(&padded).map_err(|_| bad_scalar())?;
            p521::PublicKey::from_sec1_bytes(point).is_ok_and(|pk| pk == sk.public_key())
        }
    };
    if !matches {
        return Err(MaterialError::Malformed("the ECDSA private key does not match its public key".into()));
    }
    Ok(PrivateKey::Ec { algorithm: curve.algorithm(), d: padded, point: point.to_vec() })
}

/// The Ed25519 public key of a 32-byte seed.
pub fn ed25519_public(seed: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(seed).verifying_key().to_bytes()
}

/// An Ed25519 key from its seed; `public`, when the file stores one, must be the seed's.
pub fn ed25519(seed: &[u8], public: &[u8]) -> Result<PrivateKey, MaterialError> {
    let seed: Zeroizing<[u8; 32]> =
        Zeroizing::new(seed.try_into().map_err(|_| MaterialError::Malformed("the Ed25519 private key is not 32 bytes".into()))?);
    let derived = ed25519_public(&seed);
    if public != derived {
        return Err(MaterialError::Malformed("the Ed25519 private key does not match its public key".into()));
    }
    Ok(PrivateKey::Ed25519 { seed, public: derived })
}

/// Largest RSA component accepted (bytes): the modulus is at most 4096 bits.
const RSA_MAX_BYTES: usize = 512;

fn inconsistent() -> MaterialError {
    MaterialError::Malformed("the RSA key components are inconsistent".into())
}

fn big<const L: usize>(b: &[u8]) -> Result<Zeroizing<Uint<L>>, MaterialError> {
    let b = strip_zeros(b);
    let size = L * crypto_bigint::Limb::BYTES;
    if b.len() > RSA_MAX_BYTES || b.len() > size {
        return Err(inconsistent());
    }
    let mut buf: Secret = Zeroizing::new(vec![0u8; size]);
    buf[size - b.len()..].copy_from_slice(b);
    Ok(Zeroizing::new(Uint::<L>::from_be_slice(&buf)))
}

fn be_bytes<const L: usize>(x: &Uint<L>) -> Secret {
    let mut buf: Secret = Zeroizing::new(vec![0u8; L * crypto_bigint::Limb::BYTES]);
    let mut i = buf.len();
    for limb in x.as_words() {
        for byte in limb.to_le_bytes() {
            i -= 1;
            buf[i] = byte;
        }
    }
    Zeroizing::new(strip_zeros(&buf).to_vec())
}

fn nonzero<const L: usize>(x: &Uint<L>) -> Result<NonZero<Uint<L>>, MaterialError> {
    Option::from(NonZero::new(*x)).ok_or_else(inconsistent)
}

/// The RSA sizes keyport keeps, from the modulus.
pub fn check_rsa_size(n: &[u8]) -> Result<(), MaterialError> {
    let n = strip_zeros(n);
    let bits = (n.len() * 8).saturating_sub(n.first().map_or(8, |b| b.leading_zeros() as usize));
    if Algorithm::from_rsa_bits(bits).is_none() {
        return Err(MaterialError::Unsupported(format!(
            "a {bits}-bit RSA key; keyport keeps RSA keys of 2048, 3072 or 4096 bits (generate a new key)"
        )));
    }
    Ok(())
}

/// An RSA key from n, e, d, p, q (big-endian magnitudes). Checks n = p·q and e·d ≡ 1 modulo
/// p−1 and q−1, then computes dp, dq and qinv = q⁻¹ mod p (what PKCS#11 calls
/// CKA_COEFFICIENT; OpenSSH's and PuTTY's iqmp are the same value, ssh.com stores p⁻¹ mod q,
/// so it is always recomputed rather than trusted).
pub fn rsa(n: &[u8], e: &[u8], d: &[u8], p: &[u8], q: &[u8]) -> Result<RsaKey, MaterialError> {
    check_rsa_size(n)?;
    let (nb, eb, db, pb, qb) = (big::<{ U8192::LIMBS }>(n)?, big(e)?, big(d)?, big(p)?, big(q)?);
    let one = U8192::ONE;
    let three = U8192::from_u8(3);
    let odd = |x: &U8192| x.as_words()[0] & 1 == 1;
    if *eb < three || !odd(&eb) || *pb < three || *qb < three || !odd(&pb) || !odd(&qb) || *eb >= *nb || *db >= *nb {
        return Err(inconsistent());
    }
    if *nb != pb.wrapping_mul(&*qb) {
        return Err(inconsistent());
    }
    let pm1 = nonzero(&pb.wrapping_sub(&one))?;
    let qm1 = nonzero(&qb.wrapping_sub(&one))?;
    let dp = Zeroizing::new(db.rem(&pm1));
    let dq = Zeroizing::new(db.rem(&qm1));
    // e < n < 2^4096 and dp < p < 2^4096, so the products fit in 8192 bits.
    if eb.wrapping_mul(&*dp).rem(&pm1) != one || eb.wrapping_mul(&*dq).rem(&qm1) != one {
        return Err(inconsistent());
    }
    let (p4, q4) = (big::<{ U4096::LIMBS }>(p)?, big::<{ U4096::LIMBS }>(q)?);
    let p4nz = nonzero(&*p4)?;
    let qmodp = Zeroizing::new(q4.rem(&p4nz));
    let (qinv, ok) = qmodp.inv_odd_mod_bounded(&p4, qmodp.bits(), p4.bits());
    let qinv = Zeroizing::new(qinv);
    if !bool::from(ok) {
        return Err(inconsistent());
    }
    Ok(RsaKey {
        n: be_bytes(&*nb).to_vec(),
        e: be_bytes(&*eb).to_vec(),
        d: be_bytes(&*db),
        p: be_bytes(&*pb),
        q: be_bytes(&*qb),
        dp: be_bytes(&*dp),
        dq: be_bytes(&*dq),
        qinv: be_bytes(&*qinv),
    })
}

/// What an SSH key-type name means for keyport: the types it cannot keep get a message that
/// says why and what to use instead.
pub fn unsupported_key_type(t: &str) -> MaterialError {
    let msg = if t == "ssh-dss" {
        "DSA (ssh-dss) keys are obsolete and not kept; generate an Ed25519, ECDSA or RSA key instead".to_owned()
    } else if t.starts_with("sk-") {
        format!("{t} is a FIDO security-key handle whose private key stays on the authenticator; it cannot be imported (use an Ed25519, ECDSA or RSA key)")
    } else if t.ends_with("-cert-v01@openssh.com") {
        format!("{t} is an OpenSSH certificate, not a private key; import the private key it certifies")
    } else {
        format!(
            "key type {:?}; keyport keeps ssh-rsa, ecdsa-sha2-nistp256/384/521 and ssh-ed25519 keys",
            t.chars().take(64).collect::<String>()
        )
    };
    MaterialError::Unsupported(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A toy RSA key is too small for `rsa()` (size check), so the arithmetic is checked on a
    // real key in the OpenSSH tests; here only the helpers.
    #[test]
    fn bytes_round_trip_and_strip() {
        let x = big::<{ U8192::LIMBS }>(&[0, 0, 1, 2, 3]).unwrap();
        assert_eq!(&be_bytes(&*x)[..], [1, 2, 3]);
        assert_eq!(&be_bytes(&U8192::ZERO)[..], [] as [u8; 0]);
        assert!(big::<{ U8192::LIMBS }>(&[1u8; 513]).is_err());
    }

    #[test]
    fn rsa_sizes() {
        let mut n = vec![0u8; 256];
        n[0] = 0x80;
        assert!(check_rsa_size(&n).is_ok());
        n[0] = 0x40;
        assert!(matches!(check_rsa_size(&n), Err(MaterialError::Unsupported(m)) if m.contains("2047-bit")));
    }

    #[test]
    fn ec_rejects_zero_and_foreign_points() {
        let g = hex::decode(concat!(
            "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296",
            "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
        ))
        .unwrap();
        assert!(ec(Curve::P256, &[1], &g).is_ok());
        assert!(ec(Curve::P256, &[0, 1], &g).is_ok());
        assert!(ec(Curve::P256, &[2], &g).is_err());
        assert!(ec(Curve::P256, &[], &g).is_err());
        assert!(ec(Curve::P256, &[1u8; 33], &g).is_err());
        assert!(ec(Curve::P384, &[1], &g).is_err());
    }

    #[test]
    fn ed25519_rfc8032_vector() {
        let seed = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60").unwrap();
        let public = hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a").unwrap();
        assert!(ed25519(&seed, &public).is_ok());
        assert!(ed25519(&seed, &[0u8; 32]).is_err());
        assert!(ed25519(&seed[1..], &public).is_err());
    }
}
