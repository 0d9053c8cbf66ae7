//! Certificate bundles as DigiCert ONE IoT Trust Manager takes them (seed 001): a zip holding
//! one or more `.pem` files, or one `.xml` file in the vendor's structure:
//!
//! ```xml
//! <certificates>
//!   <certificate><pem>MIIB…(base64 DER, no header, no line breaks)</pem></certificate>
//! </certificates>
//! ```
//!
//! The zip is untrusted. The whole upload is refused (nothing is stored) for: more entries than
//! the limit; entries with absolute paths, `..`, backslashes, drive letters or non-UTF-8 names;
//! symlinks and special files; encrypted entries; nested archives (by name or by content);
//! files that are neither `.pem` nor `.xml`; a format other than the profile's; a zip bomb. The
//! bomb checks run while decompressing (the headers' sizes are never trusted): the running total
//! of decompressed bytes is capped, and so is its ratio to the compressed bytes, per entry and
//! for the whole upload. XML is read with quick-xml, which never expands entities or loads
//! anything external; a DOCTYPE, an entity or character reference, or a processing instruction
//! refuses the file anyway, so nothing in it can even ask.
//!
//! Inside an accepted bundle, each `.pem` file (or each `<certificate>`) is an entry that
//! succeeds or fails alone: a PEM that is not a certificate fails just that entry.

use std::io::{Cursor, Read};

use base64::Engine;
use quick_xml::events::Event;

use super::x509::{self, CertInfo, MAX_CERT_FILE_BYTES};

/// Caps for one upload.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Zip entries (directories included), and `<certificate>` elements in an XML bundle.
    pub max_entries: usize,
    /// Decompressed bytes across all entries.
    pub max_total_bytes: u64,
    /// Decompressed ÷ compressed bytes, per entry and overall, once past [`RATIO_FLOOR`].
    pub max_ratio: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_entries: 1000, max_total_bytes: 16 * 1024 * 1024, max_ratio: 100 }
    }
}

/// The ratio cap applies once an entry (or the upload) has produced this many bytes: a tiny
/// file may compress very well without being a bomb.
pub const RATIO_FLOOR: u64 = 64 * 1024;
/// Nesting depth of XML elements.
const MAX_XML_DEPTH: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Pem,
    Xml,
}

impl Format {
    /// The vendor's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Pem => "PEM",
            Format::Xml => "XML",
        }
    }
}

/// One `.pem` file or one `<certificate>`: its certificates (a chain keeps its order), or why
/// it failed.
#[derive(Debug, Clone)]
pub struct Entry {
    pub source: String,
    pub result: Result<Vec<CertInfo>, String>,
}

#[derive(Debug, Clone)]
pub struct Bundle {
    pub format: Format,
    pub entries: Vec<Entry>,
}

impl Bundle {
    /// Certificates read plus entries that failed (a failed entry counts as one).
    pub fn total(&self) -> usize {
        self.entries.iter().map(|e| e.result.as_ref().map_or(1, |c| c.len())).sum()
    }
}

/// Why a whole upload is refused. Messages say what is wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("the file is not a readable zip archive: {0}")]
    NotAZip(String),
    #[error("the zip holds {found} entries; at most {max} are accepted per upload: split the bundle")]
    TooManyEntries { found: usize, max: usize },
    #[error("the zip decompresses to more than {max} bytes; split the bundle")]
    TooLarge { max: u64 },
    #[error("entry '{entry}' decompresses more than {max}:1 (a zip bomb?); the upload is refused")]
    RatioExceeded { entry: String, max: u64 },
    #[error("entry '{0}' has an unsafe path (absolute, '..', backslash, drive letter or not UTF-8)")]
    UnsafePath(String),
    #[error("entry '{0}' is a symbolic link or special file; only regular .pem or .xml files are accepted")]
    NotRegular(String),
    #[error("entry '{0}' is encrypted; upload an unencrypted zip")]
    Encrypted(String),
    #[error("entry '{0}' is an archive inside the archive; nested archives are not accepted")]
    Nested(String),
    #[error("entry '{0}' is neither a .pem nor a .xml file")]
    UnexpectedFile(String),
    #[error("the zip holds {found} data but the enrollment profile was set up with {expected} files; upload {expected} files")]
    FormatMismatch { expected: &'static str, found: &'static str },
    #[error("the zip mixes .pem and .xml files; upload one kind, as set up in the enrollment profile")]
    MixedFormats,
    #[error("an XML bundle holds exactly one .xml file; this zip holds {0}")]
    SeveralXml(usize),
    #[error("the zip holds no certificate file")]
    Empty,
    #[error("entry '{entry}' cannot be read: {detail}")]
    Unreadable { entry: String, detail: String },
    #[error("the XML file is refused: {0}")]
    Xml(String),
}

/// Checks a zip entry's name: relative, no `..`, no backslash, no drive letter, no NUL.
fn safe_name(raw: &[u8]) -> Result<&str, BundleError> {
    let lossy = || String::from_utf8_lossy(raw).into_owned();
    let name = std::str::from_utf8(raw).map_err(|_| BundleError::UnsafePath(lossy()))?;
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name.contains('\0')
        || name.as_bytes().get(1) == Some(&b':')
        || name.split('/').any(|c| c == "..");
    if bad {
        return Err(BundleError::UnsafePath(name.into()));
    }
    Ok(name)
}

/// macOS Finder adds resource forks under `__MACOSX/` and `.DS_Store` files: skipped unread.
fn is_os_litter(name: &str) -> bool {
    name.starts_with("__MACOSX/") || name.rsplit('/').next() == Some(".DS_Store")
}

fn extension(name: &str) -> String {
    let file = name.rsplit('/').next().unwrap_or(name);
    file.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default()
}

const ARCHIVE_EXTENSIONS: &[&str] = &["zip", "jar", "war", "apk", "gz", "tgz", "tar", "bz2", "xz", "7z", "rar", "zst", "p12", "pfx"];

/// Content that is an archive whatever its name says.
fn looks_like_archive(b: &[u8]) -> bool {
    b.starts_with(b"PK\x03\x04")
        || b.starts_with(b"PK\x05\x06")
        || b.starts_with(b"PK\x07\x08")
        || b.starts_with(&[0x1f, 0x8b])
        || b.starts_with(b"7z\xbc\xaf")
        || b.starts_with(b"Rar!")
}

/// Counts decompressed bytes as they arrive and stops the read at the first limit crossed.
struct Meter {
    limits: Limits,
    archive_len: u64,
    total: u64,
}

impl Meter {
    /// Reads one entry to its end, `chunk` bytes at a time, checking every chunk.
    fn read_entry<R: Read>(&mut self, name: &str, declared_compressed: u64, mut r: R) -> Result<Vec<u8>, BundleError> {
        // A header may claim any compressed size; the archive itself bounds the truth.
        let compressed = declared_compressed.min(self.archive_len).max(1);
        let mut out = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = r.read(&mut chunk).map_err(|e| BundleError::Unreadable { entry: name.into(), detail: e.to_string() })?;
            if n == 0 {
                return Ok(out);
            }
            let entry_out = out.len() as u64 + n as u64;
            self.total += n as u64;
            if self.total > self.limits.max_total_bytes {
                return Err(BundleError::TooLarge { max: self.limits.max_total_bytes });
            }
            let ratio = self.limits.max_ratio;
            if (entry_out > RATIO_FLOOR && entry_out > ratio.saturating_mul(compressed))
                || (self.total > RATIO_FLOOR && self.total > ratio.saturating_mul(self.archive_len.max(1)))
            {
                return Err(BundleError::RatioExceeded { entry: name.into(), max: ratio });
            }
            out.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Reads an uploaded zip for a profile set up with `expected` files.
pub fn read_zip(data: &[u8], expected: Format, limits: Limits) -> Result<Bundle, BundleError> {
    let mut zip = zip::ZipArchive::new(Cursor::new(data)).map_err(|e| BundleError::NotAZip(e.to_string()))?;
    if zip.len() > limits.max_entries {
        return Err(BundleError::TooManyEntries { found: zip.len(), max: limits.max_entries });
    }
    // First every entry's metadata, so a hostile entry anywhere refuses the upload before a
    // single byte is decompressed.
    let mut files: Vec<(usize, String, Format, u64)> = Vec::new();
    for i in 0..zip.len() {
        let e = zip.by_index_raw(i).map_err(|e| BundleError::NotAZip(e.to_string()))?;
        let name = safe_name(e.name_raw())?.to_string();
        if e.is_symlink() {
            return Err(BundleError::NotRegular(name));
        }
        if let Some(mode) = e.unix_mode() {
            let kind = mode & 0o170000;
            if kind != 0 && kind != 0o100000 && kind != 0o040000 {
                return Err(BundleError::NotRegular(name));
            }
        }
        if e.encrypted() {
            return Err(BundleError::Encrypted(name));
        }
        if e.is_dir() || is_os_litter(&name) {
            continue;
        }
        let ext = extension(&name);
        let format = match ext.as_str() {
            "pem" => Format::Pem,
            "xml" => Format::Xml,
            e if ARCHIVE_EXTENSIONS.contains(&e) => return Err(BundleError::Nested(name)),
            _ => return Err(BundleError::UnexpectedFile(name)),
        };
        files.push((i, name, format, e.compressed_size()));
    }
    let pems = files.iter().filter(|f| f.2 == Format::Pem).count();
    let xmls = files.len() - pems;
    let found = match (pems, xmls) {
        (0, 0) => return Err(BundleError::Empty),
        (_, 0) => Format::Pem,
        (0, _) => Format::Xml,
        _ => return Err(BundleError::MixedFormats),
    };
    if found != expected {
        return Err(BundleError::FormatMismatch { expected: expected.as_str(), found: found.as_str() });
    }
    if found == Format::Xml && xmls > 1 {
        return Err(BundleError::SeveralXml(xmls));
    }
    let mut meter = Meter { limits, archive_len: data.len() as u64, total: 0 };
    let mut contents = Vec::new();
    for (i, name, _, compressed) in &files {
        let e = zip.by_index(*i).map_err(|e| BundleError::Unreadable { entry: name.clone(), detail: e.to_string() })?;
        let bytes = meter.read_entry(name, *compressed, e)?;
        if looks_like_archive(&bytes) {
            return Err(BundleError::Nested(name.clone()));
        }
        contents.push((name.clone(), bytes));
    }
    let entries = match found {
        Format::Pem => contents.into_iter().map(|(name, bytes)| Entry { result: read_pem_file(&bytes), source: name }).collect(),
        Format::Xml => read_xml(&contents[0].1, limits.max_entries)?,
    };
    Ok(Bundle { format: found, entries })
}

/// One `.pem` file: one certificate or a chain. Anything else fails this entry only.
fn read_pem_file(bytes: &[u8]) -> Result<Vec<CertInfo>, String> {
    if bytes.len() > MAX_CERT_FILE_BYTES {
        return Err(format!("the file is over {MAX_CERT_FILE_BYTES} bytes"));
    }
    x509::parse_certificates(bytes).map_err(|e| match e {
        super::key::MaterialError::UnknownFormat(_) => "not a certificate: the file holds no PEM CERTIFICATE block".to_string(),
        e => e.to_string(),
    })
}

/// One `<pem>` text: base64 of a DER certificate, without PEM header/footer. Whitespace around
/// and inside (indentation, wrapped lines) is tolerated; a header is not.
fn read_xml_pem(text: &str) -> Result<Vec<CertInfo>, String> {
    if text.contains("-----") {
        return Err("the <pem> element must hold the base64 body only, without -----BEGIN/END----- lines".into());
    }
    let body: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if body.is_empty() {
        return Err("the <pem> element is empty".into());
    }
    if body.len() > MAX_CERT_FILE_BYTES {
        return Err(format!("the <pem> element is over {MAX_CERT_FILE_BYTES} bytes"));
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|_| "the <pem> element is not valid base64".to_string())?;
    x509::parse_certificate(&der).map(|c| vec![c]).map_err(|e| e.to_string())
}

/// The vendor's XML structure. Unknown elements inside `<certificate>` are skipped; anything
/// that could reach outside the document (DOCTYPE, entities, processing instructions) refuses
/// the whole file.
pub fn read_xml(data: &[u8], max_certificates: usize) -> Result<Vec<Entry>, BundleError> {
    let data = data.strip_prefix(b"\xef\xbb\xbf").unwrap_or(data);
    let text = std::str::from_utf8(data).map_err(|_| BundleError::Xml("the file is not UTF-8".into()))?;
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let xml_err = |e: quick_xml::Error, pos: u64| BundleError::Xml(format!("malformed at byte {pos}: {e}"));

    // Path of open element names; what we collect for the current <certificate>.
    let mut stack: Vec<String> = Vec::new();
    let mut entries = Vec::new();
    let mut pem: Option<String> = None;
    let mut pems_in_cert = 0usize;
    let mut seen_root = false;
    loop {
        let pos = reader.buffer_position();
        let ev = reader.read_event().map_err(|e| xml_err(e, pos))?;
        match ev {
            Event::Decl(d) => {
                if let Some(enc) = d.encoding() {
                    let enc = enc.map_err(|e| BundleError::Xml(e.to_string()))?;
                    if !enc.eq_ignore_ascii_case(b"utf-8") && !enc.eq_ignore_ascii_case(b"utf8") {
                        return Err(BundleError::Xml(format!("encoding '{}' is not accepted; use UTF-8", String::from_utf8_lossy(&enc))));
                    }
                }
            }
            Event::DocType(_) => return Err(BundleError::Xml("a DOCTYPE is not accepted (no DTDs, no entities)".into())),
            Event::GeneralRef(r) => {
                return Err(BundleError::Xml(format!(
                    "entity or character references are not accepted (&{};)",
                    String::from_utf8_lossy(&r)
                )))
            }
            Event::PI(_) => return Err(BundleError::Xml("processing instructions are not accepted".into())),
            Event::Comment(_) => {}
            Event::Start(s) => {
                let name = String::from_utf8_lossy(s.local_name().as_ref()).into_owned();
                if stack.len() >= MAX_XML_DEPTH {
                    return Err(BundleError::Xml(format!("elements nest deeper than {MAX_XML_DEPTH}")));
                }
                open(&mut stack, &name, &mut seen_root)?;
                if stack.len() == 1 {
                    pem = None;
                    pems_in_cert = 0;
                    if entries.len() >= max_certificates {
                        return Err(BundleError::TooManyEntries { found: entries.len() + 1, max: max_certificates });
                    }
                }
                if stack.len() == 2 && name == "pem" {
                    pems_in_cert += 1;
                    pem = Some(String::new());
                }
                stack.push(name);
            }
            Event::Empty(s) => {
                let name = String::from_utf8_lossy(s.local_name().as_ref()).into_owned();
                open(&mut stack, &name, &mut seen_root)?;
                if stack.len() == 1 {
                    // <certificate/>: an entry without a certificate.
                    if entries.len() >= max_certificates {
                        return Err(BundleError::TooManyEntries { found: entries.len() + 1, max: max_certificates });
                    }
                    entries.push(Entry {
                        source: format!("certificate[{}]", entries.len()),
                        result: Err("the <certificate> element is empty".into()),
                    });
                } else if stack.len() == 2 && name == "pem" {
                    pems_in_cert += 1;
                }
            }
            Event::Text(t) => {
                let s = t.decode().map_err(|e| BundleError::Xml(e.to_string()))?;
                collect_text(&stack, &mut pem, &s)?;
            }
            Event::CData(t) => {
                let s = t.decode().map_err(|e| BundleError::Xml(e.to_string()))?;
                collect_text(&stack, &mut pem, &s)?;
            }
            Event::End(_) => {
                let closed = stack.pop().unwrap_or_default();
                if stack.len() == 1 && closed == "certificate" {
                    let source = format!("certificate[{}]", entries.len());
                    let result = match (pems_in_cert, pem.take()) {
                        (1, Some(text)) => read_xml_pem(&text),
                        (0, _) => Err("the <certificate> element has no <pem>".into()),
                        (1, None) => Err("the <pem> element is empty".into()),
                        _ => Err("the <certificate> element has more than one <pem>".into()),
                    };
                    entries.push(Entry { source, result });
                }
            }
            Event::Eof if !stack.is_empty() => {
                return Err(BundleError::Xml(format!("the file ends inside <{}>", stack.last().map(String::as_str).unwrap_or(""))))
            }
            Event::Eof => break,
        }
    }
    if !seen_root {
        return Err(BundleError::Xml("no <certificates> element".into()));
    }
    if entries.is_empty() {
        return Err(BundleError::Xml("<certificates> holds no <certificate>".into()));
    }
    Ok(entries)
}

/// Checks an element against the vendor's structure at its depth.
fn open(stack: &mut [String], name: &str, seen_root: &mut bool) -> Result<(), BundleError> {
    match stack.len() {
        0 if name == "certificates" && !*seen_root => {
            *seen_root = true;
            Ok(())
        }
        0 => Err(BundleError::Xml(format!("the root element must be a single <certificates>, not <{name}>"))),
        1 if name == "certificate" => Ok(()),
        1 => Err(BundleError::Xml(format!("<certificates> may hold only <certificate> elements, not <{name}>"))),
        // Inside <certificate>: <pem>, and other (mapped) fields that are skipped.
        _ => Ok(()),
    }
}

fn collect_text(stack: &[String], pem: &mut Option<String>, s: &str) -> Result<(), BundleError> {
    if stack.len() == 3 && stack[2] == "pem" {
        if let Some(p) = pem.as_mut() {
            if p.len() + s.len() > MAX_CERT_FILE_BYTES * 2 {
                return Err(BundleError::Xml(format!("a <pem> element is over {MAX_CERT_FILE_BYTES} bytes")));
            }
            p.push_str(s);
        }
        Ok(())
    } else if stack.len() <= 2 && !s.trim().is_empty() {
        Err(BundleError::Xml("text outside <pem> elements".into()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
