//! `[[enrollment_profiles]]`: the certificate import face (seed 001, DigiCert ONE IoT Trust
//! Manager). A profile is what `POST /iot/api/v1/certificate-import/{enrollment_profile_id}`
//! names: where its certificates land, which file type it was set up with, and how large an
//! upload may unpack.

use serde::Deserialize;

use crate::material::bundle::{Format, Limits};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EnrollmentMethod {
    /// The only method this face serves; the vendor's other methods are accepted in the file so
    /// a profile can be described as it is, and refused at upload with the vendor's error.
    CertificateImport,
    Rest,
    Est,
    Scep,
    Acme,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SourceFormat {
    Pem,
    Xml,
}

impl SourceFormat {
    pub fn bundle_format(self) -> Format {
        match self {
            SourceFormat::Pem => Format::Pem,
            SourceFormat::Xml => Format::Xml,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentProfile {
    /// The path parameter (any URL-safe string; the vendor's are UUIDs).
    pub id: String,
    /// Shown in the job object's `enrollment_profile.name`.
    pub name: String,
    /// Namespace the certificates land in; keys in it are matched by public key.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// `CERTIFICATE_IMPORT` for this face; anything else is refused like the vendor does.
    #[serde(default = "default_method")]
    pub enrollment_method: EnrollmentMethod,
    /// The file type the profile's source fields mapping was set up with: `PEM` or `XML`.
    pub source_format: SourceFormat,
    /// Entries in one zip (directories count), and `<certificate>` elements in its XML.
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
    /// Bytes one upload may decompress to, counted while decompressing.
    #[serde(default = "default_max_uncompressed")]
    pub max_uncompressed_bytes: u64,
    /// Decompressed ÷ compressed size, per entry and overall (past the first 64 KiB).
    #[serde(default = "default_max_ratio")]
    pub max_ratio: u64,
}

fn default_namespace() -> String {
    "default".into()
}
fn default_method() -> EnrollmentMethod {
    EnrollmentMethod::CertificateImport
}
fn default_max_entries() -> usize {
    Limits::default().max_entries
}
fn default_max_uncompressed() -> u64 {
    Limits::default().max_total_bytes
}
fn default_max_ratio() -> u64 {
    Limits::default().max_ratio
}

impl EnrollmentProfile {
    pub fn limits(&self) -> Limits {
        Limits { max_entries: self.max_entries, max_total_bytes: self.max_uncompressed_bytes, max_ratio: self.max_ratio }
    }

    /// Problems serde cannot see, as (key, message) pairs under `enrollment_profiles[i]`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.id.is_empty() || self.id.len() > 128 || !self.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            out.push(("id", format!("'{}' must be 1-128 letters, digits, '-' or '_' (it is a URL path segment)", self.id)));
        }
        if !crate::names::is_valid_name(&self.namespace) {
            out.push(("namespace", "namespace names use 1-64 letters, digits, '_' or '-'".into()));
        }
        if self.max_entries == 0 {
            out.push(("max_entries", "must be at least 1".into()));
        }
        if self.max_uncompressed_bytes < 1024 {
            out.push(("max_uncompressed_bytes", "must be at least 1024".into()));
        }
        if self.max_ratio < 2 {
            out.push(("max_ratio", "must be at least 2 (certificates compress about 1.3:1)".into()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_checks() {
        let p: EnrollmentProfile = toml::from_str("id = 'p1'\nname = 'P'\nsource_format = 'XML'\n").unwrap();
        assert_eq!(p.enrollment_method, EnrollmentMethod::CertificateImport);
        assert_eq!(p.namespace, "default");
        assert_eq!(p.limits().max_entries, 1000);
        assert!(p.problems().is_empty());
        let bad: EnrollmentProfile = toml::from_str("id = '../x'\nname = 'P'\nsource_format = 'PEM'\nmax_ratio = 1\n").unwrap();
        let keys: Vec<_> = bad.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["id", "max_ratio"]);
        assert!(toml::from_str::<EnrollmentProfile>("id = 'p'\nname = 'P'\nsource_format = 'DER'\n").is_err());
    }
}
