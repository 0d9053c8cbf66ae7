//! Entry points for the fuzz targets in `fuzz/` (built only with the `fuzzing` feature). One
//! function per parser of untrusted input, each taking the raw bytes and ignoring the result:
//! a target fails only by panicking, hanging or allocating without bound. The wrappers exist
//! so the parsers stay crate-private; they add no logic of their own beyond splitting one
//! input into the several a parser takes.
//!
//! Every key-derivation parameter is checked against `material::limits` as in production:
//! the caps are constants, never relaxed here, so an input that is slow under the caps is a
//! finding.

use serde::de::DeserializeOwned;

use crate::material::{self, bundle, pkcs, ssh, x509};

/// The password every encrypted seed in `fuzz/corpus` is made with (`fuzz/seed-corpus`), so
/// the fuzzer reaches the code after a successful decryption.
pub const PASSWORD: &[u8] = b"fuzz";

/// Any private key the faces accept: the format detection in front of every reader.
pub fn any_private_key(data: &[u8]) {
    let _ = material::read_private_key(data, Some(PASSWORD));
    let _ = material::read_private_key(data, None);
}

/// PEM framing, then the PKCS readers behind it (legacy `DEK-Info` encryption included).
pub fn pem(data: &[u8]) {
    if let Ok(blocks) = pkcs::pem::parse(data) {
        for b in &blocks {
            let _ = b.header("DEK-Info");
        }
    }
    let _ = pkcs::read_private_key(data, Some(PASSWORD));
}

/// PKCS#1 `RSAPrivateKey` DER.
pub fn pkcs1(data: &[u8]) {
    let _ = pkcs::keys::from_pkcs1_der(data);
}

/// SEC1 `ECPrivateKey` DER.
pub fn sec1(data: &[u8]) {
    let _ = pkcs::keys::from_sec1_der(data, None);
}

/// Unencrypted PKCS#8 `PrivateKeyInfo` DER (with SoftHSM's zero padding tolerated).
pub fn pkcs8(data: &[u8]) {
    let _ = pkcs::private_key_from_pkcs8_der(data);
}

/// `EncryptedPrivateKeyInfo` DER: PBES2 (PBKDF2, scrypt) and the PKCS#12 PBE schemes.
pub fn pkcs8_encrypted(data: &[u8]) {
    let _ = pkcs::decrypt_pkcs8(data, &pkcs::pbe::Password::new(PASSWORD));
}

/// A PFX with the MAC, the encrypted parts and the bags inside.
pub fn pkcs12(data: &[u8]) {
    let _ = pkcs::read_pkcs12(data, PASSWORD);
}

/// One DER certificate, and a PEM or DER file of several.
pub fn x509(data: &[u8]) {
    if let Ok(c) = x509::parse_certificate(data) {
        let _ = c.public_key.fingerprint();
    }
    let _ = x509::parse_certificates(data);
}

/// OpenSSH `openssh-key-v1` private keys.
pub fn openssh(data: &[u8]) {
    let _ = ssh::openssh::read(data, Some(PASSWORD));
}

/// PuTTY PPK v2 and v3.
pub fn ppk(data: &[u8]) {
    let _ = ssh::ppk::read(data, Some(PASSWORD));
}

/// ssh.com / SSH2 / Tectia private keys.
pub fn sshcom(data: &[u8]) {
    let _ = ssh::sshcom::read(data, Some(PASSWORD));
}

/// SSH public keys: `authorized_keys` lines and wire blobs (the agent's sign requests name
/// keys by blob).
pub fn ssh_public(data: &[u8]) {
    let _ = ssh::parse_public_blob(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = ssh::parse_public_line(s);
    }
}

/// The DEK's sealed box. An input starting with 0 is a plaintext: it is sealed to the fixed
/// key first (so the fuzzer, which cannot forge a box, still reaches the code after an open,
/// and the round trip is checked); any other input is a box from a caller. What opens is read
/// as the key it claims to be, as the import job does.
pub fn dek_sealed_box(data: &[u8]) {
    const SECRET: [u8; 32] = [7; 32];
    let sealed = match data.split_first() {
        Some((0, plain)) => {
            let pk = crypto_box::SecretKey::from(SECRET).public_key();
            let sealed = pk.seal(&mut rand::rngs::OsRng, plain).expect("sealing never fails");
            let opened = crate::core::dek::open_sealed_box(&SECRET, &sealed).expect("a box sealed to the key opens");
            assert_eq!(&opened[..], plain, "the sealed box round trip changed the data");
            sealed
        }
        _ => data.to_vec(),
    };
    if let Ok(plain) = crate::core::dek::open_sealed_box(&SECRET, &sealed) {
        let _ = material::read_private_key(&plain, Some(PASSWORD));
    }
}

/// A certificate bundle zip, read for each format a profile may expect.
pub fn zip_bundle(data: &[u8]) {
    for f in [bundle::Format::Pem, bundle::Format::Xml] {
        let _ = bundle::read_zip(data, f, bundle::Limits::default());
    }
}

/// The XML certificate bundle.
pub fn xml_bundle(data: &[u8]) {
    let _ = bundle::read_xml(data, bundle::Limits::default().max_entries);
}

/// The KPS `SDK-HMAC-SHA256` verifier: the input is split at NUL bytes into the
/// `Authorization` value, method, path, query, `x-sdk-date`, body, then header lines
/// (`name: value`).
pub fn kps_signature(data: &[u8]) {
    use crate::api::kps::sign;
    use axum::http::{HeaderMap, HeaderName, HeaderValue};
    let mut parts = data.splitn(7, |&b| b == 0);
    let mut next = || parts.next().unwrap_or_default();
    let (auth, method, path, query, date, body, rest) = (next(), next(), next(), next(), next(), next(), next());
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (method, path, query) = (text(method), text(path), text(query));
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(date) {
        headers.append("x-sdk-date", v);
    }
    headers.append("host", HeaderValue::from_static("localhost"));
    for line in rest.split(|&b| b == b'\n') {
        let Some(i) = line.iter().position(|&b| b == b':') else { continue };
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(&line[..i]), HeaderValue::from_bytes(line[i + 1..].trim_ascii())) {
            headers.append(n, v);
        }
    }
    let _ = sign::percent_decode_str(&query);
    let _ = sign::canonical_uri(&path);
    let _ = sign::parse_sdk_date(&String::from_utf8_lossy(date));
    let req = sign::SignedRequest {
        method: &method,
        path: &path,
        query: Some(query.as_str()).filter(|q| !q.is_empty()),
        headers: &headers,
        body,
    };
    let Ok(auth) = sign::parse_authorization(&text(auth)) else { return };
    let now = sign::parse_sdk_date(&String::from_utf8_lossy(date)).unwrap_or(0);
    let _ = sign::canonical_request(&req, &auth.signed_headers);
    let _ = sign::verify(&req, &auth, b"fuzz-secret-key", now);
}

/// The `import-file` multipart reader and the key reading behind it. The input is the
/// boundary (first line) and the body.
pub fn multipart(data: &[u8]) {
    let (boundary, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let ct = format!("multipart/form-data; boundary={}", String::from_utf8_lossy(boundary));
    let body = axum::body::Bytes::copy_from_slice(body);
    runtime().block_on(crate::api::keys::fuzz_multipart(&ct, body));
}

/// Each face's JSON request bodies and query strings. The first byte picks the face, the rest
/// is the body (and, as text, the query string).
pub fn json_requests(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else { return };
    let query = String::from_utf8_lossy(body);
    match which % 8 {
        0 => crate::api::native::fuzz_request(body, &query),
        1 => crate::api::sign::fuzz_request(body, &query),
        2 => crate::api::sync::fuzz_request(body, &query),
        3 => crate::api::tlspc::fuzz_request(body, &query),
        4 => crate::api::certificates::fuzz_request(body, &query),
        5 => crate::api::keys::fuzz_request(body, &query),
        6 => crate::api::kps::fuzz_request(body),
        _ => crate::api::tpp::fuzz_request(body),
    }
    // The job inputs the faces store and the runner reads back.
    let _ = json::<crate::core::jobs::SealedImportInput>(body);
    let _ = json::<crate::core::certificates::CertImportInput>(body);
}

/// One ssh-agent message (type byte and payload, without the length), decoded as the agent's
/// session does; an `ADD_IDENTITY` key is read by keyport's OpenSSH reader.
pub fn agent_message(data: &[u8]) {
    use ssh_agent_lib::proto::{AddIdentity, PrivateCredential, Request};
    use ssh_agent_lib::ssh_encoding::Decode;
    if let Ok(Request::AddIdentity(AddIdentity { credential: PrivateCredential::Key { .. } })) = Request::decode(&mut &data[..]) {
        let _ = ssh::openssh::read_agent_key(&data[1..]);
    }
}

/// A JSON body as the faces parse it (`serde_json::from_slice`).
pub(crate) fn json<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    serde_json::from_slice(body).ok()
}

/// A query string as axum's `Query` extractor parses it.
pub(crate) fn query<T: DeserializeOwned>(query: &str) -> Option<T> {
    let uri: axum::http::Uri = format!("/?{query}").parse().ok()?;
    axum::extract::Query::<T>::try_from_uri(&uri).ok().map(|q| q.0)
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("a current-thread runtime"))
}
