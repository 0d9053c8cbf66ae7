//! Readers against fixtures the real openssl CLI makes, plus hand-built hostile input.

use std::time::{Duration, Instant};

use super::testutil::{der_oid, der_uint, tlv, Alg, Work};
use super::*;
use crate::material::algorithm::Algorithm;

const PW: &[u8] = b"correct horse";
const PASS: &str = "pass:correct horse";

fn spki(key: &PrivateKey) -> Vec<u8> {
    key.public_key().spki_der().unwrap()
}

fn read_ok(data: &[u8], password: Option<&[u8]>) -> PrivateKey {
    match read_private_key(data, password) {
        Ok(k) => k,
        Err(e) => panic!("read failed: {e}"),
    }
}

/// Every plain form openssl writes for this algorithm parses to the same key, whose public
/// key is openssl's, and to_pkcs8_der reproduces openssl's PKCS#8 DER byte for byte.
fn plain_forms(alg: Alg) {
    let w = Work::new();
    let pkcs8_pem = w.key(alg, "k.pem");
    let expected = w.public_der("k.pem");
    let pkcs8_der = w.run(&["pkcs8", "-topk8", "-nocrypt", "-in", "k.pem", "-outform", "DER"]);
    let mut forms: Vec<(&str, Vec<u8>)> = vec![("pkcs8 pem", pkcs8_pem), ("pkcs8 der", pkcs8_der.clone())];
    match alg {
        Alg::Ed25519 => {}
        a if a.is_rsa() => {
            forms.push(("pkcs1 pem", w.run(&["rsa", "-in", "k.pem", "-traditional"])));
            forms.push(("pkcs1 der", w.run(&["rsa", "-in", "k.pem", "-traditional", "-outform", "DER"])));
        }
        _ => {
            forms.push(("sec1 pem", w.run(&["ec", "-in", "k.pem"])));
            forms.push(("sec1 der", w.run(&["ec", "-in", "k.pem", "-outform", "DER"])));
            // `openssl ecparam -genkey` style: an EC PARAMETERS block before the key.
            let curve = match alg {
                Alg::P256 => "prime256v1",
                Alg::P384 => "secp384r1",
                _ => "secp521r1",
            };
            let mut with_params = w.run(&["ecparam", "-name", curve]);
            assert!(with_params.starts_with(b"-----BEGIN EC PARAMETERS-----"));
            with_params.extend(w.run(&["ec", "-in", "k.pem"]));
            forms.push(("sec1 pem with params block", with_params));
        }
    }
    for (what, data) in forms {
        let key = match read_private_key(&data, None) {
            Ok(k) => k,
            Err(e) => panic!("{alg:?} {what}: {e}"),
        };
        assert_eq!(key.algorithm().unwrap(), alg.keyport(), "{alg:?} {what}");
        assert_eq!(spki(&key), expected, "{alg:?} {what}: public key differs from openssl's");
        assert!(to_pkcs8_der(&key).unwrap().as_slice() == pkcs8_der.as_slice(), "{alg:?} {what}: PKCS#8 re-encoding differs");
    }
    let key = private_key_from_pkcs8_der(&pkcs8_der).unwrap();
    assert_eq!(spki(&key), expected);
}

#[test]
fn plain_rsa_2048() {
    plain_forms(Alg::Rsa2048);
}
#[test]
fn plain_rsa_3072() {
    plain_forms(Alg::Rsa3072);
}
#[test]
fn plain_rsa_4096() {
    plain_forms(Alg::Rsa4096);
}
#[test]
fn plain_ec_p256() {
    plain_forms(Alg::P256);
}
#[test]
fn plain_ec_p384() {
    plain_forms(Alg::P384);
}
#[test]
fn plain_ec_p521() {
    plain_forms(Alg::P521);
}
#[test]
fn plain_ed25519() {
    plain_forms(Alg::Ed25519);
}

/// Encrypts the key with `args` added to `openssl pkcs8 -topk8`, then checks: the right
/// password reads it (PEM and DER), a wrong one is WrongPassword, none is PasswordRequired.
fn encrypted_pkcs8(w: &Work, alg: Alg, args: &[&str]) {
    w.key(alg, "k.pem");
    let expected = w.public_der("k.pem");
    let mut pem_args = vec!["pkcs8", "-topk8", "-in", "k.pem", "-passout", PASS];
    pem_args.extend_from_slice(args);
    let pem = w.run(&pem_args);
    assert!(pem.starts_with(b"-----BEGIN ENCRYPTED PRIVATE KEY-----"), "{args:?}");
    let mut der_args = pem_args.clone();
    der_args.extend_from_slice(&["-outform", "DER"]);
    let der = w.run(&der_args);
    for data in [&pem, &der] {
        let key = match read_private_key(data, Some(PW)) {
            Ok(k) => k,
            Err(e) => panic!("{alg:?} {args:?}: {e}"),
        };
        assert_eq!(spki(&key), expected, "{alg:?} {args:?}");
        assert_eq!(read_private_key(data, Some(b"wrong")).unwrap_err(), MaterialError::WrongPassword, "{args:?}");
        assert_eq!(read_private_key(data, Some(b"")).unwrap_err(), MaterialError::WrongPassword, "{args:?}");
        assert_eq!(read_private_key(data, None).unwrap_err(), MaterialError::PasswordRequired, "{args:?}");
    }
}

#[test]
fn pbes2_pbkdf2_variants() {
    let w = Work::new();
    for args in [
        &["-v2", "aes-128-cbc", "-v2prf", "hmacWithSHA1"][..],
        &["-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA256"],
        &["-v2", "aes-192-cbc", "-v2prf", "hmacWithSHA512"],
        &["-v2", "des3", "-v2prf", "hmacWithSHA256"],
        &["-v2", "des3", "-v2prf", "hmacWithSHA1"],
    ] {
        encrypted_pkcs8(&w, Alg::P256, args);
    }
    // The OpenSSL 3 default (what vcert also sends) on RSA and Ed25519.
    encrypted_pkcs8(&w, Alg::Rsa2048, &["-v2", "aes-256-cbc"]);
    encrypted_pkcs8(&w, Alg::Ed25519, &["-v2", "aes-256-cbc"]);
}

#[test]
fn pbes2_scrypt() {
    let w = Work::new();
    // Small N keeps the unoptimised test build quick; the default N is exercised below.
    encrypted_pkcs8(&w, Alg::P384, &["-scrypt", "-scrypt_N", "1024", "-scrypt_r", "8", "-scrypt_p", "1"]);
    w.key(Alg::P256, "k.pem");
    let pem = w.run(&["pkcs8", "-topk8", "-in", "k.pem", "-scrypt", "-passout", PASS]);
    assert_eq!(spki(&read_ok(&pem, Some(PW))), w.public_der("k.pem"));
}

#[test]
fn pkcs12_pbe_in_pkcs8() {
    let w = Work::new();
    encrypted_pkcs8(&w, Alg::P256, &["-v1", "PBE-SHA1-3DES"]);
    encrypted_pkcs8(&w, Alg::Rsa2048, &["-v1", "PBE-SHA1-3DES"]);
    encrypted_pkcs8(&w, Alg::P256, &["-v1", "PBE-SHA1-2DES"]);
}

#[test]
fn unsupported_pbe_schemes_say_so() {
    let w = Work::new();
    w.key(Alg::P256, "k.pem");
    // PBES1 (needs OpenSSL's legacy provider for MD5/DES; skip that one if it is absent).
    if let Ok(pem) = w.try_run(&[
        "pkcs8",
        "-topk8",
        "-in",
        "k.pem",
        "-v1",
        "PBE-MD5-DES",
        "-passout",
        PASS,
        "-provider",
        "legacy",
        "-provider",
        "default",
    ]) {
        match read_private_key(&pem, Some(PW)) {
            Err(MaterialError::Unsupported(m)) => assert!(m.contains("PBES1") && m.contains("aes-256-cbc"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    // A PBES2 with an AES-GCM cipher, built by hand since OpenSSL 3.0 will not write one.
    let gcm = encrypted_pbes2(
        &tlv(0x30, &[&der_oid("1.2.840.113549.1.5.12"), &tlv(0x30, &[&tlv(0x04, &[&[1; 8]]), &der_uint(2048)])]),
        &tlv(0x30, &[&der_oid("2.16.840.1.101.3.4.1.46"), &tlv(0x30, &[&tlv(0x04, &[&[0; 12]])])]),
    );
    match read_private_key(&gcm, Some(PW)) {
        Err(MaterialError::Unsupported(m)) => assert!(m.contains("AES-GCM"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// EncryptedPrivateKeyInfo with PBES2 parameters made of the given KDF and cipher
/// AlgorithmIdentifiers, around 32 bytes of junk.
fn encrypted_pbes2(kdf: &[u8], cipher: &[u8]) -> Vec<u8> {
    let alg = tlv(0x30, &[&der_oid("1.2.840.113549.1.5.13"), &tlv(0x30, &[kdf, cipher])]);
    tlv(0x30, &[&alg, &tlv(0x04, &[&[0x5a; 32]])])
}

fn aes256_cbc() -> Vec<u8> {
    tlv(0x30, &[&der_oid("2.16.840.1.101.3.4.1.42"), &tlv(0x04, &[&[0; 16]])])
}

fn assert_too_expensive(data: &[u8], password: &[u8], what: &str) {
    let start = Instant::now();
    let err = read_private_key(data, Some(password)).unwrap_err();
    assert!(matches!(err, MaterialError::KdfTooExpensive(_)), "{what}: {err:?}");
    assert!(start.elapsed() < Duration::from_millis(500), "{what}: the KDF ran before the cap was checked");
}

#[test]
fn kdf_caps_are_enforced_before_deriving() {
    let pbkdf2 = |iter: u64| {
        tlv(
            0x30,
            &[
                &der_oid("1.2.840.113549.1.5.12"),
                &tlv(0x30, &[&tlv(0x04, &[&[1; 8]]), &der_uint(iter), &tlv(0x30, &[&der_oid("1.2.840.113549.2.9"), &[5, 0]])]),
            ],
        )
    };
    assert_too_expensive(&encrypted_pbes2(&pbkdf2(10_000_000), &aes256_cbc()), PW, "PBKDF2 10M");
    assert_too_expensive(&encrypted_pbes2(&pbkdf2(u64::MAX), &aes256_cbc()), PW, "PBKDF2 2^64-1");
    // An iteration count wider than 64 bits.
    let huge = tlv(0x30, &[&der_oid("1.2.840.113549.1.5.12"), &tlv(0x30, &[&tlv(0x04, &[&[1; 8]]), &tlv(0x02, &[&[0x7f; 12]])])]);
    assert_too_expensive(&encrypted_pbes2(&huge, &aes256_cbc()), PW, "PBKDF2 96-bit");
    // Under the cap, the KDF runs and the junk fails to decrypt.
    assert_eq!(read_private_key(&encrypted_pbes2(&pbkdf2(1000), &aes256_cbc()), Some(PW)).unwrap_err(), MaterialError::WrongPassword);

    let scrypt = |n: u64, r: u64, p: u64| {
        tlv(0x30, &[&der_oid("1.3.6.1.4.1.11591.4.11"), &tlv(0x30, &[&tlv(0x04, &[&[1; 8]]), &der_uint(n), &der_uint(r), &der_uint(p)])])
    };
    assert_too_expensive(&encrypted_pbes2(&scrypt(1 << 20, 8, 1), &aes256_cbc()), PW, "scrypt 1 GiB");
    assert_too_expensive(&encrypted_pbes2(&scrypt(1 << 14, 1 << 20, 1), &aes256_cbc()), PW, "scrypt huge r");
    assert_too_expensive(&encrypted_pbes2(&scrypt(1 << 10, 8, 17), &aes256_cbc()), PW, "scrypt p=17");
    assert_too_expensive(&encrypted_pbes2(&scrypt(1 << 16, 8, 16), &aes256_cbc()), PW, "scrypt 64 MiB × p=16");
    assert_too_expensive(&encrypted_pbes2(&pbkdf2(600_001), &aes256_cbc()), PW, "PBKDF2 over 600,000");
    assert!(matches!(read_private_key(&encrypted_pbes2(&scrypt(1000, 8, 1), &aes256_cbc()), Some(PW)), Err(MaterialError::Malformed(_))));

    // PKCS#12 PBE (pbeWithSHAAnd3-KeyTripleDES-CBC) with 5M iterations.
    let alg = tlv(0x30, &[&der_oid("1.2.840.113549.1.12.1.3"), &tlv(0x30, &[&tlv(0x04, &[&[1; 8]]), &der_uint(5_000_000)])]);
    let p12pbe = tlv(0x30, &[&alg, &tlv(0x04, &[&[0x5a; 32]])]);
    assert_too_expensive(&p12pbe, PW, "PKCS#12 PBE 5M");
}

#[test]
fn legacy_pem_encryption() {
    let w = Work::new();
    let mut cases: Vec<(Alg, Vec<&str>, &str)> = Vec::new();
    for cipher in ["-aes128", "-aes192", "-aes256", "-des3"] {
        cases.push((Alg::Rsa2048, vec!["rsa", "-traditional", cipher], "RSA PRIVATE KEY"));
        cases.push((Alg::P256, vec!["ec", cipher], "EC PRIVATE KEY"));
    }
    cases.push((Alg::P521, vec!["ec", "-aes256"], "EC PRIVATE KEY"));
    for (alg, args, label) in cases {
        w.key(alg, "k.pem");
        let expected = w.public_der("k.pem");
        let mut full = args.clone();
        full.extend_from_slice(&["-in", "k.pem", "-passout", PASS]);
        let pem = w.run(&full);
        let text = String::from_utf8(pem.clone()).unwrap();
        assert!(text.contains(&format!("BEGIN {label}")) && text.contains("DEK-Info:"), "{args:?}: {text}");
        assert_eq!(spki(&read_ok(&pem, Some(PW))), expected, "{args:?}");
        assert_eq!(read_private_key(&pem, Some(b"wrong")).unwrap_err(), MaterialError::WrongPassword, "{args:?}");
        assert_eq!(read_private_key(&pem, None).unwrap_err(), MaterialError::PasswordRequired, "{args:?}");
    }
    // Unknown DEK-Info ciphers are named.
    w.key(Alg::P256, "k.pem");
    let pem = String::from_utf8(w.run(&["ec", "-aes256", "-in", "k.pem", "-passout", PASS])).unwrap();
    let camellia = pem.replace("AES-256-CBC", "CAMELLIA-256-CBC");
    match read_private_key(camellia.as_bytes(), Some(PW)) {
        Err(MaterialError::Unsupported(m)) => assert!(m.contains("CAMELLIA-256-CBC") && m.contains("AES-256-CBC"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ec_key_without_public_point_or_with_a_wrong_one() {
    let w = Work::new();
    for alg in [Alg::P256, Alg::P384, Alg::P521] {
        w.key(alg, "k.pem");
        let expected = w.public_der("k.pem");
        let sec1 = w.run(&["ec", "-in", "k.pem", "-no_public"]);
        assert_eq!(spki(&read_ok(&sec1, None)), expected, "{alg:?} SEC1 without public key");
        w.write("nopub.pem", &sec1);
        let pkcs8 = w.run(&["pkcs8", "-topk8", "-nocrypt", "-in", "nopub.pem", "-outform", "DER"]);
        assert_eq!(spki(&read_ok(&pkcs8, None)), expected, "{alg:?} PKCS#8 without public key");
    }
    // A stored public point from another key is refused.
    w.key(Alg::P256, "a.pem");
    w.fresh_key(Alg::P256, "b.pem");
    let a = w.run(&["ec", "-in", "a.pem", "-outform", "DER"]);
    let b = w.run(&["ec", "-in", "b.pem", "-outform", "DER"]);
    // SEC1 P-256 from openssl: the 65-byte point is the last thing in the structure.
    let mut mixed = a.clone();
    let n = mixed.len();
    mixed[n - 65..].copy_from_slice(&b[b.len() - 65..]);
    match read_private_key(&mixed, None) {
        Err(MaterialError::Malformed(m)) => assert!(m.contains("does not match"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ec_scalar_is_padded_to_the_field_size() {
    // d = 1: the public key is the generator.
    let PrivateKey::Ec { d, point, algorithm } = keys::ec_from_parts(Algorithm::EcP256, &[1], None).unwrap() else { panic!() };
    assert_eq!(algorithm, Algorithm::EcP256);
    assert_eq!(d.len(), 32);
    assert_eq!(d[31], 1);
    assert_eq!(
        hex::encode(point),
        "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c2964fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
    );
    let PrivateKey::Ec { d, .. } = keys::ec_from_parts(Algorithm::EcP521, &[0, 0, 7], None).unwrap() else { panic!() };
    assert_eq!(d.len(), 66);
    assert!(matches!(keys::ec_from_parts(Algorithm::EcP256, &[0; 32], None), Err(MaterialError::Malformed(_))));
    assert!(matches!(keys::ec_from_parts(Algorithm::EcP256, &[0xff; 33], None), Err(MaterialError::Malformed(_))));
}

#[test]
fn rsa_crt_values_are_computed_and_checked() {
    let w = Work::new();
    w.key(Alg::Rsa2048, "k.pem");
    let der = w.run(&["rsa", "-in", "k.pem", "-traditional", "-outform", "DER"]);
    let full = keys::from_pkcs1_der(&der).unwrap();
    let PrivateKey::Rsa(k) = &full else { panic!() };
    let parts = |p: &[u8], q: &[u8], dp: &[u8], dq: &[u8], qinv: &[u8]| {
        keys::rsa_from_parts(keys::RsaParts { n: &k.n, e: &k.e, d: &k.d, p, q, dp, dq, qinv })
    };
    // CRT values missing: computed, equal to openssl's.
    let PrivateKey::Rsa(c) = parts(&k.p, &k.q, &[0], &[0], &[0]).unwrap() else { panic!() };
    assert_eq!((c.dp.as_slice(), c.dq.as_slice(), c.qinv.as_slice()), (k.dp.as_slice(), k.dq.as_slice(), k.qinv.as_slice()));
    // Primes missing too: recovered from n, e, d.
    let PrivateKey::Rsa(r) = parts(&[0], &[0], &[0], &[0], &[0]).unwrap() else { panic!() };
    let mut primes = [r.p.to_vec(), r.q.to_vec()];
    primes.sort();
    let mut expected = [k.p.to_vec(), k.q.to_vec()];
    expected.sort();
    assert_eq!(primes, expected);
    // Inconsistent values are refused.
    let mut bad_qinv = k.qinv.to_vec();
    bad_qinv[10] ^= 1;
    assert!(matches!(parts(&k.p, &k.q, &k.dp, &k.dq, &bad_qinv), Err(MaterialError::Malformed(_))));
    let mut bad_p = k.p.to_vec();
    bad_p[10] ^= 1;
    assert!(matches!(parts(&bad_p, &k.q, &k.dp, &k.dq, &k.qinv), Err(MaterialError::Malformed(_))));
}

#[test]
fn unsupported_key_types_and_sizes() {
    let w = Work::new();
    let cases: [(&[&str], &str); 5] = [
        (&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"], "RSA-1024"),
        (&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:secp256k1"], "1.3.132.0.10"),
        (&["-algorithm", "ED448"], "Ed448"),
        (&["-algorithm", "X25519"], "X25519"),
        (&["-algorithm", "RSA-PSS", "-pkeyopt", "rsa_keygen_bits:2048"], "RSA-PSS"),
    ];
    for (args, needle) in cases {
        let mut full = vec!["genpkey"];
        full.extend_from_slice(args);
        let pem = w.run(&full);
        match read_private_key(&pem, None) {
            Err(MaterialError::Unsupported(m)) => assert!(m.contains(needle), "{needle}: {m}"),
            other => panic!("{needle}: {other:?}"),
        }
    }
    // Explicit curve parameters.
    w.key(Alg::P256, "k.pem");
    let explicit = w.run(&["ec", "-in", "k.pem", "-param_enc", "explicit"]);
    match read_private_key(&explicit, None) {
        Err(MaterialError::Unsupported(m)) => assert!(m.contains("named curve"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn softhsm_zero_padding_is_tolerated() {
    let w = Work::new();
    w.key(Alg::P256, "k.pem");
    let der = w.run(&["pkcs8", "-topk8", "-nocrypt", "-in", "k.pem", "-outform", "DER"]);
    let mut padded = der.clone();
    padded.extend_from_slice(&[0; 7]);
    assert_eq!(pkcs8_der_strip_padding(&padded).unwrap(), der.as_slice());
    assert_eq!(pkcs8_der_strip_padding(&der).unwrap(), der.as_slice());
    assert_eq!(spki(&private_key_from_pkcs8_der(&padded).unwrap()), w.public_der("k.pem"));
    assert_eq!(spki(&read_ok(&padded, None)), w.public_der("k.pem"));
    padded.push(1);
    assert!(matches!(pkcs8_der_strip_padding(&padded), Err(MaterialError::Malformed(_))));
    assert!(matches!(private_key_from_pkcs8_der(&padded), Err(MaterialError::Malformed(_))));
    assert!(matches!(pkcs8_der_strip_padding(&der[..der.len() - 1]), Err(MaterialError::Malformed(_))));
    assert!(matches!(pkcs8_der_strip_padding(&[0x30, 0x80, 0, 0]), Err(MaterialError::Malformed(_))));
    assert!(matches!(pkcs8_der_strip_padding(&[]), Err(MaterialError::Malformed(_))));
}

#[test]
fn truncated_and_corrupted_input_never_panics() {
    let w = Work::new();
    w.key(Alg::Rsa2048, "r.pem");
    w.key(Alg::P384, "e.pem");
    w.key(Alg::Ed25519, "d.pem");
    let blobs = [
        w.run(&["pkcs8", "-topk8", "-nocrypt", "-in", "r.pem", "-outform", "DER"]),
        w.run(&["rsa", "-in", "r.pem", "-traditional", "-outform", "DER"]),
        w.run(&["ec", "-in", "e.pem", "-outform", "DER"]),
        w.run(&["pkcs8", "-topk8", "-nocrypt", "-in", "d.pem", "-outform", "DER"]),
        w.run(&["pkcs8", "-topk8", "-in", "e.pem", "-passout", PASS, "-outform", "DER", "-iter", "1"]),
        w.run(&["pkcs8", "-topk8", "-in", "e.pem", "-passout", PASS, "-v1", "PBE-SHA1-3DES", "-outform", "DER", "-iter", "1"]),
    ];
    for blob in &blobs {
        let step = (blob.len() / 40).max(1);
        for cut in (0..blob.len()).step_by(step) {
            let r = read_private_key(&blob[..cut], Some(PW));
            assert!(r.is_err(), "a key cut at {cut} of {} was accepted", blob.len());
            assert!(!matches!(r, Err(MaterialError::WrongPassword)) || cut > blob.len() / 2, "cut at {cut}: {r:?}");
        }
        for i in (0..blob.len()).step_by(step) {
            let mut bad = blob.clone();
            bad[i] ^= 0x41;
            let _ = read_private_key(&bad, Some(PW));
        }
    }
    // Truncated PEM: the END line is missing, or the base64 is cut.
    let pem = w.key(Alg::P256, "k.pem");
    let text = String::from_utf8(pem).unwrap();
    assert!(matches!(read_private_key(&text.as_bytes()[..text.len() - 30], None), Err(MaterialError::Malformed(_))));
    let lines: Vec<&str> = text.lines().collect();
    let cut = [lines[0], lines[1], lines[lines.len() - 1]].join("\n");
    assert!(matches!(read_private_key(cut.as_bytes(), None), Err(MaterialError::Malformed(_))));
}

#[test]
fn garbage_is_reported_as_such() {
    let garbage_b64 = b"-----BEGIN PRIVATE KEY-----\nThis is not base64 at all!\n-----END PRIVATE KEY-----\n";
    assert!(matches!(read_private_key(garbage_b64, None), Err(MaterialError::Malformed(_))));
    let valid_b64_not_der = b"-----BEGIN PRIVATE KEY-----\naGVsbG8gd29ybGQ=\n-----END PRIVATE KEY-----\n";
    assert!(matches!(read_private_key(valid_b64_not_der, None), Err(MaterialError::Malformed(_))));
    assert!(matches!(read_private_key(b"hello world", None), Err(MaterialError::UnknownFormat(_))));
    assert!(matches!(read_private_key(&[0x30, 0x06, 0x01, 0x01, 0xff, 0x01, 0x01, 0x00], None), Err(MaterialError::UnknownFormat(_))));
    assert!(matches!(read_private_key(&[0x30], None), Err(MaterialError::Malformed(_))));
    assert!(matches!(read_private_key(b"", None), Err(MaterialError::Malformed(_))));
    let cert_only = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    match read_private_key(cert_only, None) {
        Err(MaterialError::UnknownFormat(m)) => assert!(m.contains("CERTIFICATE"), "{m}"),
        other => panic!("{other:?}"),
    }
    let openssh = b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
    assert!(matches!(read_private_key(openssh, None), Err(MaterialError::UnknownFormat(_))));
    let big = vec![b'A'; crate::material::limits::MAX_KEY_FILE_BYTES + 1];
    assert!(matches!(read_private_key(&big, None), Err(MaterialError::Malformed(_))));
    assert!(matches!(read_pkcs12(&big, PW), Err(MaterialError::Malformed(_))));
    assert!(matches!(private_key_from_pkcs8_der(&big), Err(MaterialError::Malformed(_))));
}

#[test]
fn two_keys_in_one_pem_are_refused() {
    let w = Work::new();
    let mut both = w.key(Alg::P256, "a.pem");
    both.extend(w.key(Alg::Ed25519, "b.pem"));
    assert!(matches!(read_private_key(&both, None), Err(MaterialError::Unsupported(_))));
}

#[test]
fn error_messages_do_not_leak_key_bytes() {
    let w = Work::new();
    w.key(Alg::P256, "k.pem");
    let der = w.run(&["ec", "-in", "k.pem", "-outform", "DER"]);
    let PrivateKey::Ec { d, .. } = read_ok(&der, None) else { panic!() };
    let d_hex = hex::encode(d.as_slice());
    for i in 0..der.len() {
        for cut in [i, der.len()] {
            let mut bad = der[..cut].to_vec();
            if let Some(b) = bad.get_mut(i) {
                *b ^= 0x80;
            }
            if let Err(e) = read_private_key(&bad, None) {
                let msg = format!("{e} {e:?}").to_lowercase();
                assert!(!msg.contains(&d_hex[..16]), "{msg}");
            }
        }
    }
    assert_eq!(format!("{:?}", read_ok(&der, None)), "PrivateKey(ec-p256)");
}

// ---------------------------------------------------------------------------------------------
// PKCS#12

/// root → intermediate → leaf, with the leaf key of `alg`. Files: leaf.pem (key), leaf.crt,
/// inter.crt, root.crt, and others.crt holding root then intermediate (reverse chain order).
fn chain(w: &Work, alg: Alg) {
    w.key(alg, "leaf.pem");
    w.key(Alg::P256, "root.key");
    w.fresh_key(Alg::P256, "inter.key");
    w.self_signed("root.key", "/CN=Test Root/O=keyport", "root.crt");
    w.issued("inter.key", "/CN=Test Intermediate/O=keyport", "root.crt", "root.key", true, "inter.crt");
    w.issued("leaf.pem", "/CN=leaf.example/O=keyport", "inter.crt", "inter.key", false, "leaf.crt");
    let mut others = w.read("root.crt");
    others.extend(w.read("inter.crt"));
    w.write("others.crt", &others);
}

fn check_pfx(w: &Work, extra: &[&str], password: &str) {
    let mut args = vec!["pkcs12", "-export", "-inkey", "leaf.pem", "-in", "leaf.crt", "-certfile", "others.crt", "-out", "a.p12"];
    let pass = format!("pass:{password}");
    args.extend_from_slice(&["-passout", &pass]);
    args.extend_from_slice(extra);
    w.run(&args);
    let pfx = w.read("a.p12");
    let (key, certs) = match read_pkcs12(&pfx, password.as_bytes()) {
        Ok(v) => v,
        Err(e) => panic!("{extra:?}: {e}"),
    };
    assert_eq!(spki(&key), w.public_der("leaf.pem"), "{extra:?}");
    let expected: Vec<Vec<u8>> = ["leaf.crt", "inter.crt", "root.crt"].iter().map(|c| w.cert_der(c)).collect();
    assert_eq!(certs, expected, "{extra:?}: chain order");
    assert_eq!(read_pkcs12(&pfx, b"wrong").unwrap_err(), MaterialError::WrongPassword, "{extra:?}");
}

#[test]
fn pkcs12_openssl3_default() {
    let w = Work::new();
    chain(&w, Alg::Rsa2048);
    // OpenSSL 3's default: PBES2/PBKDF2-SHA256/AES-256-CBC for both parts, HMAC-SHA-256 MAC.
    check_pfx(&w, &[], "correct horse");
}

#[test]
fn pkcs12_legacy_3des_rc2() {
    let w = Work::new();
    chain(&w, Alg::P384);
    check_pfx(&w, &["-legacy"], "correct horse");
    // Both parts 3DES.
    check_pfx(&w, &["-legacy", "-certpbe", "PBE-SHA1-3DES"], "correct horse");
}

#[test]
fn pkcs12_variants() {
    let w = Work::new();
    chain(&w, Alg::Ed25519);
    // Empty password, non-ASCII password, no MAC, unencrypted certificates, SHA-512 MAC.
    check_pfx(&w, &[], "");
    check_pfx(&w, &[], "pässwörd");
    check_pfx(&w, &["-nomac"], "correct horse");
    check_pfx(&w, &["-certpbe", "NONE"], "correct horse");
    check_pfx(&w, &["-macalg", "sha512"], "correct horse");
    // Key only.
    w.run(&["pkcs12", "-export", "-inkey", "leaf.pem", "-nocerts", "-passout", PASS, "-out", "k.p12"]);
    let (key, certs) = read_pkcs12(&w.read("k.p12"), PW).unwrap();
    assert_eq!(spki(&key), w.public_der("leaf.pem"));
    assert!(certs.is_empty());
    // No key at all.
    w.run(&["pkcs12", "-export", "-nokeys", "-in", "leaf.crt", "-passout", PASS, "-out", "c.p12"]);
    assert!(matches!(read_pkcs12(&w.read("c.p12"), PW), Err(MaterialError::Malformed(_))));
}

#[test]
fn pkcs12_with_a_foreign_certificate_is_a_mismatch() {
    let w = Work::new();
    w.key(Alg::P256, "k.pem");
    w.fresh_key(Alg::P256, "other.pem");
    w.self_signed("other.pem", "/CN=other", "other.crt");
    // openssl refuses `-in` certificates that do not match the key, but adds `-certfile`
    // ones even with -nocerts.
    w.run(&["pkcs12", "-export", "-inkey", "k.pem", "-certfile", "other.crt", "-nocerts", "-passout", PASS, "-out", "m.p12"]);
    assert_eq!(read_pkcs12(&w.read("m.p12"), PW).unwrap_err(), MaterialError::CertificateMismatch);
}

#[test]
fn pkcs12_hostile_input() {
    let w = Work::new();
    chain(&w, Alg::P256);
    check_pfx(&w, &["-iter", "1", "-nomaciter"], "correct horse");
    let pfx = w.read("a.p12");
    let step = (pfx.len() / 60).max(1);
    for cut in (0..pfx.len()).step_by(step) {
        assert!(read_pkcs12(&pfx[..cut], PW).is_err(), "cut at {cut}");
    }
    for i in 0..pfx.len() {
        let mut bad = pfx.clone();
        bad[i] ^= 0x41;
        assert!(read_pkcs12(&bad, PW).is_err(), "flip at {i} accepted");
    }
    // A MAC asking for 5M iterations is refused before the work.
    let mac = tlv(
        0x30,
        &[
            &tlv(0x30, &[&tlv(0x30, &[&der_oid("2.16.840.1.101.3.4.2.1"), &[5, 0]]), &tlv(0x04, &[&[0; 32]])]),
            &tlv(0x04, &[&[1; 8]]),
            &der_uint(5_000_000),
        ],
    );
    let auth_safe = tlv(0x04, &[&tlv(0x30, &[])]);
    let content_info = tlv(0x30, &[&der_oid("1.2.840.113549.1.7.1"), &tlv(0xa0, &[&auth_safe])]);
    let hostile = tlv(0x30, &[&der_uint(3), &content_info, &mac]);
    let start = Instant::now();
    assert!(matches!(read_pkcs12(&hostile, PW), Err(MaterialError::KdfTooExpensive(_))));
    assert!(start.elapsed() < Duration::from_millis(500));
    assert!(matches!(read_pkcs12(b"not a pfx", PW), Err(MaterialError::Malformed(_))));
}

/// A PFX without MAC around the given authenticated-safe ContentInfos.
fn handmade_pfx(parts: &[Vec<u8>]) -> Vec<u8> {
    let parts: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
    let auth_safe = tlv(0x04, &[&tlv(0x30, &parts)]);
    let content_info = tlv(0x30, &[&der_oid("1.2.840.113549.1.7.1"), &tlv(0xa0, &[&auth_safe])]);
    tlv(0x30, &[&der_uint(3), &content_info])
}

#[test]
fn pkcs12_work_per_file_is_bounded() {
    let w = Work::new();
    // Two plain key bags: refused as a second key, before any work on it.
    w.key(Alg::P256, "a.pem");
    w.key(Alg::Ed25519, "b.pem");
    let key_bag = |file: &str| {
        let der = w.run(&["pkcs8", "-topk8", "-nocrypt", "-in", file, "-outform", "DER"]);
        tlv(0x30, &[&der_oid("1.2.840.113549.1.12.10.1.1"), &tlv(0xa0, &[&der])])
    };
    let data_part = |bags: &[&[u8]]| tlv(0x30, &[&der_oid("1.2.840.113549.1.7.1"), &tlv(0xa0, &[&tlv(0x04, &[&tlv(0x30, bags)])])]);
    let one = handmade_pfx(&[data_part(&[&key_bag("a.pem")])]);
    let (key, certs) = read_pkcs12(&one, b"").unwrap();
    assert_eq!(spki(&key), w.public_der("a.pem"));
    assert!(certs.is_empty());
    let two = handmade_pfx(&[data_part(&[&key_bag("a.pem"), &key_bag("b.pem")])]);
    assert!(matches!(read_pkcs12(&two, b""), Err(MaterialError::Unsupported(_))));

    // Many password-encrypted parts, each allowed up to the per-KDF cap: refused up front.
    let pbkdf2 = tlv(0x30, &[&der_oid("1.2.840.113549.1.5.12"), &tlv(0x30, &[&tlv(0x04, &[&[1; 8]]), &der_uint(1_000_000)])]);
    let alg = tlv(0x30, &[&der_oid("1.2.840.113549.1.5.13"), &tlv(0x30, &[&pbkdf2, &aes256_cbc()])]);
    let eci = tlv(0x30, &[&der_oid("1.2.840.113549.1.7.1"), &alg, &tlv(0x80, &[&[0x5a; 32]])]);
    let encrypted_part = tlv(0x30, &[&der_oid("1.2.840.113549.1.7.6"), &tlv(0xa0, &[&tlv(0x30, &[&der_uint(0), &eci])])]);
    let many = handmade_pfx(&vec![encrypted_part; 4]);
    let start = Instant::now();
    assert!(matches!(read_pkcs12(&many, PW), Err(MaterialError::KdfTooExpensive(_))));
    assert!(start.elapsed() < Duration::from_millis(500));
}
