//! `POST SSH/KeysetDetails {KeysetFilter, KeyId, LoadKeyData, Offset, PageSize}`: the filter,
//! paging and key-data switch over the `KeySetData` objects the face renders (keysets made by
//! rotation, and single SSH keys shown as keysets of one key). Field names are the WebSDK's as
//! Venafi's Python client sends them (`KeySetFilter` in pyvenafi's `models/ssh.py`), with the
//! singular spellings docs/vendor-apis.md lists accepted too. Every list is "any of"; the
//! filter's fields all hold at once. A field keyport cannot answer (it keeps no MD5
//! fingerprints, no last-use time) is refused with a message, never silently ignored.

use serde::Deserialize;
use serde_json::Value;

/// The most `KeySetData` objects one page holds (and the page size when none is given).
pub const MAX_PAGE_SIZE: usize = 1000;

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub struct DetailsRequest {
    /// One filter object, or a list of them (pyvenafi types it as a list): a keyset matching
    /// any of them is listed. Parsed in [`DetailsRequest::parse`] to say which field is wrong.
    #[serde(rename = "KeysetFilter")]
    keyset_filter_raw: Option<Value>,
    #[serde(skip)]
    pub keyset_filter: Vec<KeysetFilter>,
    /// Keysets holding one of these keys.
    pub key_id: Option<Vec<i64>>,
    /// `false`: `PrivateKeys` and `PublicKeys` are left empty. Unset: loaded (keyport's
    /// behaviour before the field was read; the device script relies on it).
    pub load_key_data: Option<bool>,
    pub offset: Option<usize>,
    pub page_size: Option<usize>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub struct KeysetFilter {
    /// `RSA`, `ECDSA`, `ED25519` (any case).
    pub algorithm: Option<Vec<String>>,
    pub length: Option<Vec<u32>>,
    /// Keysets whose key length is at most this.
    pub max_key_length: Option<u32>,
    /// `User` or `Host`.
    #[serde(rename = "Type")]
    pub kind: Option<String>,
    /// Keyset or key SHA-256 fingerprints (as `FingerprintSHA256` shows them, any case).
    #[serde(rename = "FingerprintsSHA256", alias = "FingerprintSHA256")]
    pub fingerprints_sha256: Option<Vec<String>>,
    /// Keys' `Username` (keyport: the owning principal).
    #[serde(alias = "Username")]
    pub usernames: Option<Vec<String>>,
    /// Keys' `DeviceGuid`: keyport keys are on this host and carry none, so a non-empty list
    /// matches nothing.
    #[serde(alias = "DeviceGuid")]
    pub device_guids: Option<Vec<String>>,
    pub process_statuses: Option<Vec<i64>>,
    /// keyport reports no policy violations (`ViolationStatus` is empty), so a non-empty list
    /// matches nothing.
    pub violation_statuses: Option<Vec<i64>>,
    /// An authorized key's comment: keyport's is `keyport:<namespace>/<keyset>/v<n>`; matched
    /// as a substring of the keyset's `Access` (`<namespace>/<name>`).
    pub authorized_key_comment: Option<Vec<String>>,
    #[serde(rename = "FingerprintsMD5", alias = "FingerprintMD5")]
    pub fingerprints_md5: Option<Vec<String>>,
    pub last_used: Option<Value>,
    pub usage_filter_type: Option<Value>,
}

/// The request's own mistake, for the face's error answer.
#[derive(Debug, PartialEq, Eq)]
pub struct BadRequest(pub String);

impl DetailsRequest {
    /// Parses the body (empty = no filter); says what is wrong.
    pub fn parse(body: &[u8]) -> Result<DetailsRequest, BadRequest> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(DetailsRequest::default());
        }
        let mut r: DetailsRequest = serde_json::from_slice(body).map_err(|e| {
            BadRequest(format!("the KeysetDetails body is not valid: {e}; it takes KeysetFilter, KeyId, LoadKeyData, Offset and PageSize"))
        })?;
        let one = |v: Value| serde_json::from_value::<KeysetFilter>(v).map_err(|e| BadRequest(format!("KeysetFilter is not valid: {e}")));
        r.keyset_filter = match r.keyset_filter_raw.take() {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.into_iter().map(one).collect::<Result<_, _>>()?,
            Some(v @ Value::Object(_)) => vec![one(v)?],
            Some(_) => return Err(BadRequest("KeysetFilter is an object (or a list of objects)".into())),
        };
        if let Some(p) = r.page_size {
            if p == 0 || p > MAX_PAGE_SIZE {
                return Err(BadRequest(format!("PageSize {p} is not 1-{MAX_PAGE_SIZE}")));
            }
        }
        for f in &r.keyset_filter {
            let refused = |what: &str, why: &str| Err(BadRequest(format!("KeysetFilter.{what} is not supported: {why}")));
            if f.fingerprints_md5.as_ref().is_some_and(|v| !v.is_empty()) {
                return refused("FingerprintsMD5", "keyport keeps SHA-256 fingerprints only; filter with FingerprintsSHA256");
            }
            if f.last_used.as_ref().is_some_and(|v| !v.is_null()) || f.usage_filter_type.as_ref().is_some_and(|v| !v.is_null()) {
                return refused("LastUsed/UsageFilterType", "keyport does not record when a key was last used for SSH");
            }
            if let Some(t) = &f.kind {
                if !t.eq_ignore_ascii_case("user") && !t.eq_ignore_ascii_case("host") {
                    return Err(BadRequest(format!("KeysetFilter.Type '{t}' is not User or Host")));
                }
            }
        }
        Ok(r)
    }

    /// Filters, pages and (with `LoadKeyData: false`) empties the key lists of `all`.
    pub fn apply(&self, all: Vec<Value>) -> Vec<Value> {
        let load = self.load_key_data.unwrap_or(true);
        all.into_iter()
            .filter(|k| self.keyset_filter.is_empty() || self.keyset_filter.iter().any(|f| f.matches(k)))
            .filter(|k| self.key_id.as_ref().is_none_or(|ids| keys(k).any(|d| d["KeyId"].as_i64().is_some_and(|i| ids.contains(&i)))))
            .skip(self.offset.unwrap_or(0))
            .take(self.page_size.unwrap_or(MAX_PAGE_SIZE))
            .map(|mut k| {
                if !load {
                    k["PrivateKeys"] = Value::Array(Vec::new());
                    k["PublicKeys"] = Value::Array(Vec::new());
                }
                k
            })
            .collect()
    }
}

/// Every `KeyData` of a `KeySetData`.
fn keys(k: &Value) -> impl Iterator<Item = &Value> {
    ["PrivateKeys", "PublicKeys"].into_iter().flat_map(move |f| k[f].as_array().into_iter().flatten())
}

/// Whether any of `wanted` (case-insensitive) is one of `have`.
fn any_of(wanted: &[String], mut have: impl Iterator<Item = String>) -> bool {
    have.any(|h| wanted.iter().any(|w| w.eq_ignore_ascii_case(&h)))
}

impl KeysetFilter {
    pub fn matches(&self, k: &Value) -> bool {
        let str_of = |v: &Value| v.as_str().map(String::from);
        let length = k["Length"].as_u64().unwrap_or(0) as u32;
        let fingerprints = || std::iter::once(&k["FingerprintSHA256"]).chain(keys(k).map(|d| &d["FingerprintSHA256"])).filter_map(str_of);
        self.algorithm.as_ref().is_none_or(|a| any_of(a, str_of(&k["Algorithm"]).into_iter()))
            && self.length.as_ref().is_none_or(|l| l.contains(&length))
            && self.max_key_length.is_none_or(|m| length <= m)
            && self.kind.as_ref().is_none_or(|t| k["Type"].as_str().is_some_and(|x| x.eq_ignore_ascii_case(t)))
            && self.fingerprints_sha256.as_ref().is_none_or(|f| any_of(f, fingerprints()))
            && self.usernames.as_ref().is_none_or(|u| any_of(u, keys(k).filter_map(|d| str_of(&d["Username"]))))
            && self.device_guids.as_ref().is_none_or(|g| any_of(g, keys(k).filter_map(|d| str_of(&d["DeviceGuid"]))))
            && self.process_statuses.as_ref().is_none_or(|p| k["ProcessStatus"].as_i64().is_some_and(|s| p.contains(&s)))
            && self
                .violation_statuses
                .as_ref()
                .is_none_or(|v| k["ViolationStatus"].as_array().into_iter().flatten().any(|s| s.as_i64().is_some_and(|s| v.contains(&s))))
            && self.authorized_key_comment.as_ref().is_none_or(|c| {
                let access = k["Access"].as_str().unwrap_or_default().to_ascii_lowercase();
                c.iter().any(|c| {
                    let c = c.to_ascii_lowercase();
                    let c = c.strip_prefix("keyport:").unwrap_or(&c);
                    let c = c.rsplit_once("/v").filter(|(_, n)| n.bytes().all(|b| b.is_ascii_digit())).map_or(c, |(a, _)| a);
                    !access.is_empty() && access.contains(c)
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sets() -> Vec<Value> {
        let key = |id: i64, user: &str, fp: &str| json!({"KeyId": id, "Username": user, "FingerprintSHA256": fp});
        vec![
            json!({"KeysetId": "a", "Access": "default/deploy", "Type": "User", "Algorithm": "ED25519", "Length": 256,
                   "FingerprintSHA256": "FPA", "ProcessStatus": 8, "ViolationStatus": [],
                   "PrivateKeys": [key(1, "root", "FPA"), key(2, "root", "FPB")], "PublicKeys": [key(1, "root", "FPA")]}),
            json!({"KeysetId": "b", "Access": "web/host", "Type": "Host", "Algorithm": "RSA", "Length": 3072,
                   "FingerprintSHA256": "FPC", "ProcessStatus": 0, "ViolationStatus": [],
                   "PrivateKeys": [key(3, "ops", "FPC")], "PublicKeys": []}),
        ]
    }

    fn ids(r: &DetailsRequest) -> Vec<String> {
        r.apply(sets()).iter().map(|k| k["KeysetId"].as_str().unwrap().to_string()).collect()
    }

    fn req(body: Value) -> DetailsRequest {
        DetailsRequest::parse(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn filters_page_and_key_data() {
        assert_eq!(ids(&req(json!({}))), ["a", "b"]);
        assert_eq!(ids(&req(json!({"KeysetFilter": {"Algorithm": ["rsa"]}}))), ["b"]);
        assert_eq!(ids(&req(json!({"KeysetFilter": {"Type": "user"}}))), ["a"]);
        assert_eq!(ids(&req(json!({"KeysetFilter": {"Length": [3072, 4096]}}))), ["b"]);
        assert_eq!(ids(&req(json!({"KeysetFilter": {"MaxKeyLength": 2048}}))), ["a"]);
        // The pending key's fingerprint finds its keyset; the singular spelling is accepted.
        assert_eq!(ids(&req(json!({"KeysetFilter": {"FingerprintsSHA256": ["fpb"]}}))), ["a"]);
        assert_eq!(ids(&req(json!({"KeysetFilter": {"FingerprintSHA256": ["FPC"]}}))), ["b"]);
        assert_eq!(ids(&req(json!({"KeysetFilter": {"Usernames": ["ops"]}}))), ["b"]);
        assert_eq!(ids(&req(json!({"KeysetFilter": {"ProcessStatuses": [8]}}))), ["a"]);
        assert!(ids(&req(json!({"KeysetFilter": {"DeviceGuids": ["{x}"]}}))).is_empty());
        assert!(ids(&req(json!({"KeysetFilter": {"ViolationStatuses": [17]}}))).is_empty());
        assert_eq!(ids(&req(json!({"KeysetFilter": {"AuthorizedKeyComment": ["keyport:web/host/v2"]}}))), ["b"]);
        assert_eq!(ids(&req(json!({"KeysetFilter": {"Algorithm": ["ED25519"], "Usernames": ["ops"]}}))), Vec::<String>::new());
        // Nulls (a client that sends every field) are no filter.
        assert_eq!(ids(&req(json!({"KeysetFilter": {"Algorithm": null, "LastUsed": null, "Type": null}}))), ["a", "b"]);
        assert_eq!(ids(&req(json!({"KeyId": [3]}))), ["b"]);
        // A list of filters (pyvenafi's type): any of them.
        assert_eq!(ids(&req(json!({"KeysetFilter": [{"Type": "Host"}, {"ProcessStatuses": [8]}]}))), ["a", "b"]);
        assert_eq!(ids(&req(json!({"KeysetFilter": [{"Type": "Host"}]}))), ["b"]);
        assert_eq!(ids(&req(json!({"Offset": 1}))), ["b"]);
        assert_eq!(ids(&req(json!({"PageSize": 1}))), ["a"]);
        assert_eq!(ids(&req(json!({"Offset": 5}))), Vec::<String>::new());
        let bare = req(json!({"LoadKeyData": false})).apply(sets());
        assert_eq!((bare[0]["PrivateKeys"].as_array().unwrap().len(), bare[0]["PublicKeys"].as_array().unwrap().len()), (0, 0));
        let full = req(json!({"LoadKeyData": true})).apply(sets());
        assert_eq!(full[0]["PrivateKeys"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn what_it_cannot_answer_is_refused_with_a_reason() {
        let bad = |b: &str| DetailsRequest::parse(b.as_bytes()).unwrap_err().0;
        assert!(bad(r#"{"PageSize": 0}"#).contains("PageSize 0"));
        assert!(bad(r#"{"PageSize": 5000}"#).contains("1-1000"));
        assert!(bad(r#"{"Offset": -1}"#).contains("not valid"));
        assert!(bad(r#"{"KeysetFilter": {"FingerprintsMD5": ["ab"]}}"#).contains("SHA-256"));
        assert!(bad(r#"{"KeysetFilter": {"LastUsed": "2026-01-01T00:00:00Z"}}"#).contains("last used"));
        assert!(bad(r#"{"KeysetFilter": {"Type": "Router"}}"#).contains("User or Host"));
        assert!(bad(r#"{"KeysetFilter": {"Colour": ["red"]}}"#).contains("Colour"));
        assert!(bad("not json").contains("not valid"));
    }
}
