//! `GET keys` a page at a time: `limit` keys after an opaque cursor, in the listing's order
//! (oldest first, then by id). The cursor names the last key of the previous page, so each
//! page is one index range scan (`store::key_pages`) and a key that exists for the whole walk
//! is listed exactly once, whatever is created or deleted between pages.

use base64::Engine;
use serde::Serialize;

use super::authz::Principal;
use super::{App, CoreError};
use crate::store::{After, KeyRecord};

/// Largest page, and the page size when a cursor comes without a limit.
pub const MAX_LIMIT: usize = 1000;

/// Cursor format version: a cursor from another version is refused rather than misread.
const VERSION: &str = "1";

#[derive(Debug, Serialize)]
pub struct KeyPage {
    pub keys: Vec<KeyRecord>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `limit` as a caller wrote it (a query string): 1 to [`MAX_LIMIT`].
pub fn parse_limit(s: &str) -> Result<usize, CoreError> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(CoreError::invalid(
            "invalid_limit",
            format!("limit '{}' is not allowed: give a whole number of keys per page from 1 to {MAX_LIMIT}", shorten(s)),
        )),
    }
}

/// The cursor a page ends with.
pub fn cursor_after(k: &KeyRecord) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{VERSION}|{}|{}", k.created_at, k.id))
}

/// A cursor this API handed out, or a 400 that says what to pass instead.
pub fn parse_cursor(s: &str) -> Result<After, CoreError> {
    let bad = || {
        CoreError::invalid(
            "invalid_cursor",
            format!(
                "cursor '{}' is not one this API returned: pass next_cursor from the previous page unchanged, or leave cursor out to start from the first page",
                shorten(s)
            ),
        )
    };
    // 64-byte ids and a 27-byte time fit well within this.
    if s.len() > 256 {
        return Err(bad());
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let mut parts = text.split('|');
    let (Some(VERSION), Some(at), Some(id), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let id_ok = !id.is_empty() && id.len() <= 128 && id.len() % 2 == 0 && id.bytes().all(|b| b.is_ascii_hexdigit());
    let Ok(created_at) = crate::clock::Timestamp::parse(at) else { return Err(bad()) };
    if !id_ok {
        return Err(bad());
    }
    Ok(After { created_at, id: id.to_string() })
}

/// What a bad value looked like, cut short (a caller's string goes back to the caller only,
/// and never at any length).
fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// One page of the keys `who` may read, filtered by namespace and name.
pub fn list_page(
    app: &App,
    who: &Principal,
    namespace: Option<&str>,
    name: Option<&str>,
    after: Option<&After>,
    limit: usize,
) -> Result<KeyPage, CoreError> {
    let limit = limit.clamp(1, MAX_LIMIT);
    // One more than asked: whether a next page exists is known without a second query, so the
    // last page carries no cursor (no empty trailing page).
    let mut keys = app.store.keys_page(namespace, name, &who.read_visibility(), after, limit + 1)?;
    let more = keys.len() > limit;
    keys.truncate(limit);
    let next_cursor = if more { keys.last().map(cursor_after) } else { None };
    Ok(KeyPage { keys, next_cursor })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_strangers_are_refused() {
        let mut k = crate::store::test_rows::key("0a1b2c", "ns", "n", false);
        k.created_at = "2026-12-03T15:00:00.123456Z".parse().unwrap();
        k.id = "0a1b2c".into();
        let c = cursor_after(&k);
        assert_eq!(parse_cursor(&c).unwrap(), After { created_at: k.created_at, id: k.id.clone() });
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        for bad in [
            "".to_string(),
            "not base64!".into(),
            enc("2|2026-12-03T15:00:00.123456Z|0a"),
            enc("1|yesterday|0a"),
            enc("1|2026-12-03T15:00:00.123456Z|zz"),
            enc("1|2026-12-03T15:00:00.123456Z|0a1"),
            enc("1|2026-12-03T15:00:00.123456Z|0a|x"),
            enc("1|2026-12-03T15:00:00.123456Z|' OR 1=1 --"),
            "A".repeat(300),
        ] {
            let e = parse_cursor(&bad).unwrap_err();
            assert!(matches!(e, CoreError::Invalid { code: "invalid_cursor", .. }), "{bad}: {e}");
            assert!(e.to_string().contains("next_cursor"), "says what to pass: {e}");
        }
    }

    #[test]
    fn limits_are_one_to_the_maximum() {
        assert_eq!(parse_limit("1").unwrap(), 1);
        assert_eq!(parse_limit("1000").unwrap(), MAX_LIMIT);
        for bad in ["0", "1001", "-1", "ten", "", "1e3", "99999999999999999999999"] {
            let e = parse_limit(bad).unwrap_err();
            assert!(e.to_string().contains("from 1 to 1000"), "{bad}: {e}");
        }
    }
}
