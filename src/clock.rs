//! One clock and one timestamp type. Every instant keyport stores, compares or renders is a
//! [`Timestamp`]: UTC with microseconds, written `YYYY-MM-DDTHH:MM:SS.ffffffZ` — fixed width,
//! so the store's text order is time order (the key pages' cursor relies on it) — and parsed
//! once where it is read (a row, a caller's filter). Faces render it in their vendor's shape
//! from the typed value (epoch milliseconds for KPS, `/Date(ms)/` for TPP, RFC 3339 elsewhere).

use std::fmt;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

/// A string that is neither an RFC 3339 time nor a `YYYY-MM-DD` date.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a time: use RFC 3339 (2026-01-31T12:00:00Z) or a date (2026-01-31)")]
pub struct BadTimestamp(pub String);

const STORED: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

impl Timestamp {
    /// The clock: the system's wall time, truncated to microseconds (what the store keeps, so
    /// a value compares equal after a round trip).
    pub fn now() -> Timestamp {
        Timestamp::at(OffsetDateTime::now_utc())
    }

    fn at(t: OffsetDateTime) -> Timestamp {
        let t = t.to_offset(UtcOffset::UTC);
        let micros = t.nanosecond() / 1_000 * 1_000;
        Timestamp(t.replace_nanosecond(micros).expect("a truncated nanosecond is in range"))
    }

    /// An RFC 3339 time in any offset, or a date (its midnight UTC).
    pub fn parse(s: &str) -> Result<Timestamp, BadTimestamp> {
        if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
            return Ok(Timestamp::at(t));
        }
        time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
            .map(|d| Timestamp(d.midnight().assume_utc()))
            .map_err(|_| BadTimestamp(s.chars().take(64).collect()))
    }

    pub fn from_unix(secs: i64) -> Option<Timestamp> {
        OffsetDateTime::from_unix_timestamp(secs).ok().map(Timestamp)
    }

    pub fn unix(self) -> i64 {
        self.0.unix_timestamp()
    }

    pub fn unix_millis(self) -> i64 {
        (self.0.unix_timestamp_nanos() / 1_000_000) as i64
    }

    /// How long ago (zero for a time in the future).
    pub fn age(self) -> Duration {
        (OffsetDateTime::now_utc() - self.0).try_into().unwrap_or(Duration::ZERO)
    }

    /// How long until then (zero for a time in the past).
    pub fn until(self) -> Duration {
        (self.0 - OffsetDateTime::now_utc()).try_into().unwrap_or(Duration::ZERO)
    }

    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(time::Duration::try_from(d).unwrap_or(time::Duration::MAX)))
    }

    pub fn minus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(time::Duration::try_from(d).unwrap_or(time::Duration::MAX)))
    }

    /// Whole seconds, RFC 3339 (`2026-01-31T10:00:00Z`): for filters and vendor fields that
    /// carry no fraction.
    pub fn to_seconds_string(self) -> String {
        self.0.replace_nanosecond(0).expect("0 is a nanosecond").format(&Rfc3339).expect("a UTC time formats")
    }

    pub fn as_offset_date_time(self) -> OffsetDateTime {
        self.0
    }
}

impl fmt::Display for Timestamp {
    /// The stored form, written field by field (every key in every answer has one: `time`'s
    /// format-description walk was a visible share of a `GET keys/{id}`); years outside
    /// 0000-9999 take `time`'s own path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        if !(0..=9999).contains(&t.year()) {
            return f.write_str(&t.format(STORED).map_err(|_| fmt::Error)?);
        }
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        )
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for Timestamp {
    type Err = BadTimestamp;
    fn from_str(s: &str) -> Result<Timestamp, BadTimestamp> {
        Timestamp::parse(s)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl rusqlite::types::ToSql for Timestamp {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::from(self.to_string()))
    }
}

/// A stored time that does not parse is a corrupt row: an internal error, never a guess.
impl rusqlite::types::FromSql for Timestamp {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Timestamp> {
        let s = v.as_str()?;
        Timestamp::parse(s).map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::Timestamp;
    use std::time::Duration;

    #[test]
    fn stored_form_is_fixed_width_utc_and_round_trips() {
        let t = Timestamp::parse("2026-01-31T12:00:00.5+02:00").unwrap();
        assert_eq!(t.to_string(), "2026-01-31T10:00:00.500000Z");
        assert_eq!(Timestamp::parse(&t.to_string()).unwrap(), t);
        assert_eq!(Timestamp::parse("2026-01-31").unwrap().to_string(), "2026-01-31T00:00:00.000000Z");
        assert_eq!(Timestamp::parse("2026-01-31T10:00:00Z").unwrap().to_seconds_string(), "2026-01-31T10:00:00Z");
        let now = Timestamp::now();
        assert_eq!(Timestamp::parse(&now.to_string()).unwrap(), now, "now() keeps only what the store keeps");
        assert_eq!(now.to_string().len(), 27);
        assert!(Timestamp::parse("31/01/2026").is_err());
        assert!(Timestamp::parse("").is_err());
    }

    #[test]
    fn the_hand_written_form_is_times_own() {
        for s in ["0000-01-01T00:00:00Z", "1970-01-01T00:00:00.000001Z", "2026-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.5Z"] {
            let t = Timestamp::parse(s).unwrap();
            assert_eq!(t.to_string(), t.0.format(super::STORED).unwrap(), "{s}");
        }
        let now = Timestamp::now();
        assert_eq!(now.to_string(), now.0.format(super::STORED).unwrap());
    }

    #[test]
    fn text_order_is_time_order() {
        let a = Timestamp::parse("2026-01-31T10:00:05Z").unwrap();
        let b = Timestamp::parse("2026-01-31T10:00:05.000001Z").unwrap();
        assert!(a < b && a.to_string() < b.to_string());
    }

    #[test]
    fn arithmetic_and_ages() {
        let t = Timestamp::from_unix(1_800_000_000).unwrap();
        assert_eq!(t.plus(Duration::from_secs(60)).unix(), 1_800_000_060);
        assert_eq!(t.minus(Duration::from_secs(60)).unix(), 1_799_999_940);
        assert_eq!(t.unix_millis(), 1_800_000_000_000);
        assert!(Timestamp::now().plus(Duration::from_secs(3600)).age().is_zero());
        assert!(Timestamp::now().minus(Duration::from_secs(3600)).until().is_zero());
        assert!(Timestamp::now().minus(Duration::from_secs(3600)).age() >= Duration::from_secs(3599));
    }
}
