//! A lenient PEM reader: RFC 7468 blocks, plus the RFC 1421 headers (`Proc-Type`, `DEK-Info`)
//! that OpenSSL's legacy key encryption writes; and the one PEM writer every format and face
//! uses ([`encode`]). Text outside blocks (OpenSSL's "Bag Attributes",
//! comments) is ignored. Decoded contents live in zeroizing buffers: the base64 of an
//! unencrypted key is the key.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use zeroize::Zeroizing;

use crate::material::key::MaterialError;

pub(crate) struct PemBlock {
    pub label: String,
    /// RFC 1421 headers in file order, names as written.
    pub headers: Vec<(String, String)>,
    pub der: Zeroizing<Vec<u8>>,
}

impl PemBlock {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The one PEM writer: `label`, optional RFC 1421 `headers` (each line ending in `\n`, then a
/// blank line, as OpenSSL's legacy encryption writes; empty for RFC 7468 blocks), base64 in
/// 64-column lines. Written into a zeroizing buffer sized up front, so a key's base64 is never
/// left behind by a reallocation. (`pem-rfc7468` cannot write headers.)
pub fn encode(label: &str, headers: &str, der: &[u8]) -> Zeroizing<String> {
    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    let mut out = Zeroizing::new(String::with_capacity(2 * (label.len() + 16) + headers.len() + b64.len() + b64.len() / 64 + 2));
    out.push_str(BEGIN);
    out.push_str(label);
    out.push_str("-----\n");
    out.push_str(headers);
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(END);
    out.push_str(label);
    out.push_str("-----\n");
    out
}

const BEGIN: &str = "-----BEGIN ";
const END: &str = "-----END ";
const DASHES: &str = "-----";

/// True when the data holds at least one PEM BEGIN line.
pub fn looks_like_pem(data: &[u8]) -> bool {
    data.windows(BEGIN.len()).any(|w| w == BEGIN.as_bytes())
}

const LENIENT: GeneralPurpose =
    GeneralPurpose::new(&base64::alphabet::STANDARD, GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent));

/// Every PEM block in `data`, in order.
pub(crate) fn parse(data: &[u8]) -> Result<Vec<PemBlock>, MaterialError> {
    let text = std::str::from_utf8(data).map_err(|_| MaterialError::Malformed("PEM data is not UTF-8 text".into()))?;
    let mut blocks = Vec::new();
    let mut lines = text.lines().map(|l| l.trim_end());
    while let Some(line) = lines.next() {
        let Some(label) = boundary(line.trim_start(), BEGIN) else { continue };
        let label = label.to_string();
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut body = Zeroizing::new(String::new());
        let mut in_headers = true;
        let mut ended = false;
        for line in lines.by_ref() {
            let trimmed = line.trim_start();
            if let Some(end_label) = boundary(trimmed, END) {
                if end_label != label {
                    return Err(MaterialError::Malformed(format!("PEM block BEGIN {label} is closed by END {end_label}")));
                }
                ended = true;
                break;
            }
            if in_headers {
                if trimmed.is_empty() {
                    if !headers.is_empty() {
                        in_headers = false;
                    }
                    continue;
                }
                if let Some((k, v)) = trimmed.split_once(':') {
                    headers.push((k.trim().to_string(), v.trim().to_string()));
                    continue;
                }
                if line.starts_with([' ', '\t']) && !headers.is_empty() {
                    // RFC 1421 header continuation line.
                    let last = headers.last_mut().expect("non-empty");
                    last.1.push_str(trimmed);
                    continue;
                }
                in_headers = false;
            }
            body.extend(trimmed.chars().filter(|c| !c.is_ascii_whitespace()));
        }
        if !ended {
            return Err(MaterialError::Malformed(format!("PEM block {label} has no END line")));
        }
        let der = Zeroizing::new(
            LENIENT.decode(body.as_bytes()).map_err(|_| MaterialError::Malformed(format!("PEM block {label} is not valid base64")))?,
        );
        if der.is_empty() {
            return Err(MaterialError::Malformed(format!("PEM block {label} is empty")));
        }
        blocks.push(PemBlock { label, headers, der });
    }
    Ok(blocks)
}

fn boundary<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    line.strip_prefix(prefix)?.strip_suffix(DASHES).map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_blocks_headers_and_ignores_surrounding_text() {
        let text = "Bag Attributes\n    localKeyID: 01\n-----BEGIN RSA PRIVATE KEY-----\r\nProc-Type: 4,ENCRYPTED\r\nDEK-Info: AES-128-CBC,00112233\r\n\r\nAAEC\r\nAw==\r\n-----END RSA PRIVATE KEY-----\r\n\n-----BEGIN CERTIFICATE-----\nBAU\n-----END CERTIFICATE-----\n";
        let blocks = parse(text.as_bytes()).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "RSA PRIVATE KEY");
        assert_eq!(blocks[0].header("proc-type"), Some("4,ENCRYPTED"));
        assert_eq!(blocks[0].header("DEK-Info"), Some("AES-128-CBC,00112233"));
        assert_eq!(blocks[0].der.as_slice(), &[0, 1, 2, 3]);
        assert_eq!(blocks[1].label, "CERTIFICATE");
        assert!(blocks[1].headers.is_empty());
        assert_eq!(blocks[1].der.as_slice(), &[4, 5]);
    }

    #[test]
    fn rejects_broken_blocks() {
        for bad in [
            "-----BEGIN PRIVATE KEY-----\nAAAA\n",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END CERTIFICATE-----\n",
            "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
        ] {
            assert!(matches!(parse(bad.as_bytes()), Err(MaterialError::Malformed(_))), "{bad}");
        }
        assert!(parse(&[0xff, 0xfe]).is_err());
    }
}
