//! Test fixtures made with the real `openssl` CLI. A missing openssl fails the tests that need
//! it (`scripts/deps` installs it); no test skips.
//! Generated keys are cached in memory for the test run (RSA-4096 takes seconds); each test
//! works in its own temporary directory.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alg {
    Rsa2048,
    Rsa3072,
    Rsa4096,
    P256,
    P384,
    P521,
    Ed25519,
}

impl Alg {
    pub const ALL: [Alg; 7] = [Alg::Rsa2048, Alg::Rsa3072, Alg::Rsa4096, Alg::P256, Alg::P384, Alg::P521, Alg::Ed25519];

    fn genpkey_args(self) -> &'static [&'static str] {
        match self {
            Alg::Rsa2048 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            Alg::Rsa3072 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"],
            Alg::Rsa4096 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096"],
            Alg::P256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            Alg::P384 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            Alg::P521 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"],
            Alg::Ed25519 => &["-algorithm", "ED25519"],
        }
    }

    pub fn is_rsa(self) -> bool {
        matches!(self, Alg::Rsa2048 | Alg::Rsa3072 | Alg::Rsa4096)
    }

    pub fn keyport(self) -> crate::material::algorithm::Algorithm {
        use crate::material::algorithm::Algorithm as A;
        match self {
            Alg::Rsa2048 => A::Rsa2048,
            Alg::Rsa3072 => A::Rsa3072,
            Alg::Rsa4096 => A::Rsa4096,
            Alg::P256 => A::EcP256,
            Alg::P384 => A::EcP384,
            Alg::P521 => A::EcP521,
            Alg::Ed25519 => A::Ed25519,
        }
    }
}

static KEYS: [OnceLock<Vec<u8>>; 7] = [const { OnceLock::new() }; 7];

/// Panics unless openssl runs: `scripts/test` installs it, so a missing one is a failure.
pub(crate) fn have_openssl() -> bool {
    static HAVE: OnceLock<bool> = OnceLock::new();
    let have = *HAVE.get_or_init(|| Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success()));
    assert!(have, "the openssl CLI is required for these tests (scripts/deps installs it)");
    have
}

pub(crate) struct Work {
    pub dir: tempfile::TempDir,
}

impl Work {
    /// Panics when openssl is missing (`have_openssl`).
    pub fn new() -> Work {
        have_openssl();
        Work { dir: tempfile::tempdir().expect("tempdir") }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs openssl in the work directory; panics with its stderr on failure.
    pub fn run(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("openssl").args(args).current_dir(self.dir.path()).output().expect("run openssl");
        assert!(out.status.success(), "openssl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    /// Like `run`, but reports failure instead of panicking.
    pub fn try_run(&self, args: &[&str]) -> Result<Vec<u8>, String> {
        let out = Command::new("openssl").args(args).current_dir(self.dir.path()).output().expect("run openssl");
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    pub fn write(&self, name: &str, data: &[u8]) {
        std::fs::write(self.path(name), data).expect("write fixture");
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).expect("read fixture")
    }

    /// Writes the run's cached key of this algorithm (PKCS#8 PEM) as `name`.
    pub fn key(&self, alg: Alg, name: &str) -> Vec<u8> {
        let pem = KEYS[Alg::ALL.iter().position(|a| *a == alg).expect("listed")]
            .get_or_init(|| {
                let mut args = vec!["genpkey"];
                args.extend_from_slice(alg.genpkey_args());
                self.run(&args)
            })
            .clone();
        self.write(name, &pem);
        pem
    }

    /// A fresh key (not cached) written as `name`.
    pub fn fresh_key(&self, alg: Alg, name: &str) -> Vec<u8> {
        let mut args = vec!["genpkey"];
        args.extend_from_slice(alg.genpkey_args());
        args.extend_from_slice(&["-out", name]);
        self.run(&args);
        self.read(name)
    }

    /// `openssl pkey -pubout -outform DER` of a private key file.
    pub fn public_der(&self, key_file: &str) -> Vec<u8> {
        self.run(&["pkey", "-in", key_file, "-pubout", "-outform", "DER"])
    }

    /// A self-signed certificate for `key_file`, PEM, written as `out`.
    pub fn self_signed(&self, key_file: &str, subject: &str, out: &str) -> Vec<u8> {
        self.run(&["req", "-x509", "-key", key_file, "-subj", subject, "-days", "30", "-out", out]);
        self.read(out)
    }

    /// A certificate for `key_file` issued by `ca_cert`/`ca_key`, PEM, written as `out`.
    pub fn issued(&self, key_file: &str, subject: &str, ca_cert: &str, ca_key: &str, is_ca: bool, out: &str) -> Vec<u8> {
        let csr = format!("{out}.csr");
        self.run(&["req", "-new", "-key", key_file, "-subj", subject, "-out", &csr]);
        let ext = format!("{out}.ext");
        self.write(&ext, if is_ca { b"basicConstraints=critical,CA:TRUE\n" } else { b"basicConstraints=CA:FALSE\n" });
        self.run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            ca_cert,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            &ext,
            "-out",
            out,
        ]);
        self.read(out)
    }

    /// DER of a PEM certificate file.
    pub fn cert_der(&self, pem_file: &str) -> Vec<u8> {
        self.run(&["x509", "-in", pem_file, "-outform", "DER"])
    }
}

/// A DER TLV with a one-byte tag, for hand-built test structures.
pub(crate) fn tlv(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let content: Vec<u8> = parts.concat();
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().iter().copied().skip_while(|&b| b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(&content);
    out
}

pub(crate) fn der_uint(v: u64) -> Vec<u8> {
    let mut bytes: Vec<u8> = v.to_be_bytes().iter().copied().skip_while(|&b| b == 0).collect();
    if bytes.first().is_none_or(|b| b & 0x80 != 0) {
        bytes.insert(0, 0);
    }
    tlv(0x02, &[&bytes])
}

pub(crate) fn der_oid(dotted: &str) -> Vec<u8> {
    let oid = der::asn1::ObjectIdentifier::new_unwrap(dotted);
    tlv(0x06, &[oid.as_bytes()])
}
