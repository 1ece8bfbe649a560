//! Time as the flight language sees it: milliseconds since the Unix epoch.
//!
//! This crate never reads a clock. Callers pass `now` in, from a [`Clock`] that the pilot
//! and the tower implement over the system time, and tests and the simulator over virtual time.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use schemars::JsonSchema;
use serde::{Serialize, Serializer};
use serde_json::Value;
use std::fmt;

/// Milliseconds since 1970-01-01T00:00:00Z.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn millis(self) -> i64 {
        self.0
    }
    /// RFC 3339 with milliseconds, in UTC: `2026-04-23T18:25:43.511Z`.
    pub fn to_rfc3339(self) -> String {
        match DateTime::<Utc>::from_timestamp_millis(self.0) {
            Some(dt) => dt.to_rfc3339_opts(SecondsFormat::Millis, true),
            None => self.0.to_string(),
        }
    }
    pub fn plus(self, d: DurationSpec) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(d.ms).unwrap_or(i64::MAX)),
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Where the present moment comes from. Inject it; never read the system clock directly.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// A point in time as an author wrote it (kept, so that it round-trips) and as it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dateish {
    pub at: Timestamp,
    /// The author's text, when they wrote a string.
    pub text: Option<String>,
}

impl Serialize for Dateish {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.text {
            Some(t) => s.serialize_str(t),
            None => s.serialize_i64(self.at.0),
        }
    }
}

impl JsonSchema for Dateish {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Dateish".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "An RFC 3339 date-time (\"2026-04-23T18:25:43.511Z\"), a bare date (\"2026-04-23\", its midnight UTC), or milliseconds since the epoch.",
            "anyOf": [
                {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$"},
                {"type": "integer"}
            ]
        })
    }
}

/// Parses a dateish: an RFC 3339 string, a bare `YYYY-MM-DD` (midnight UTC) or a number of
/// milliseconds since the epoch. The error says what was expected.
pub fn parse_dateish(v: &Value) -> Result<Dateish, String> {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(ms) => Ok(Dateish { at: Timestamp(ms), text: None }),
            None => match n.as_f64() {
                Some(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                    Ok(Dateish { at: Timestamp(f as i64), text: None })
                }
                _ => Err(format!("`{n}` is not a whole number of milliseconds since the epoch")),
            },
        },
        Value::String(s) => parse_date_str(s).map(|at| Dateish { at, text: Some(s.clone()) }),
        other => Err(format!(
            "expected a date: an RFC 3339 string like \"2026-04-23T18:25:43.511Z\", a date like \"2026-04-23\", or milliseconds since the epoch; found {}",
            crate::reader::type_name(other)
        )),
    }
}

fn parse_date_str(s: &str) -> Result<Timestamp, String> {
    let t = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(Timestamp(dt.timestamp_millis()));
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        if let Some(dt) = d.and_hms_opt(0, 0, 0) {
            return Ok(Timestamp(dt.and_utc().timestamp_millis()));
        }
    }
    Err(format!(
        "{} is not a date: write an RFC 3339 date-time with its offset (\"2026-04-23T18:25:43.511Z\") or a date (\"2026-04-23\")",
        crate::diagnostic::quote(s)
    ))
}

/// A length of time as an author wrote it and as it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationSpec {
    pub ms: u64,
    pub text: Option<String>,
}

impl DurationSpec {
    pub fn from_millis(ms: u64) -> Self {
        DurationSpec { ms, text: None }
    }
}

impl DurationSpec {
    /// A duration that keeps a text an author could have written (`"29d"`, `"1d12h"`), for
    /// specs generated from others (the copilot's expansion).
    pub fn from_millis_text(ms: u64) -> Self {
        DurationSpec {
            ms,
            text: Some(format_duration(ms)),
        }
    }
}

/// `ms` in the units [`parse_duration`] reads, largest first: `"29d"`, `"1d12h"`, `"1500ms"`
/// is `"1s500ms"`. Weeks are left as days, which authors read more easily.
pub fn format_duration(ms: u64) -> String {
    const UNITS: [(&str, u64); 5] = [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    if ms == 0 {
        return "0s".into();
    }
    let mut rest = ms;
    let mut out = String::new();
    for (unit, size) in UNITS {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

impl Serialize for DurationSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.text {
            Some(t) => s.serialize_str(t),
            None => s.serialize_u64(self.ms),
        }
    }
}

impl JsonSchema for DurationSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A length of time: \"90s\", \"15m\", \"36h\", \"7d\", \"2w\", combinations like \"1h30m\", or milliseconds.",
            "anyOf": [
                {"type": "string", "pattern": "^\\s*([0-9]+\\s*(ms|s|m|h|d|w)\\s*)+$"},
                {"type": "integer", "minimum": 1}
            ]
        })
    }
}

/// Parses a duration: `"90s"`, `"15m"`, `"36h"`, `"7d"`, `"2w"`, `"500ms"`, combinations such
/// as `"1h30m"`, or a positive number of milliseconds. Zero is refused: it would mean "never
/// wait" or "time out at once", which no author means.
pub fn parse_duration(v: &Value) -> Result<DurationSpec, String> {
    let d = match v {
        Value::Number(n) => match n.as_u64() {
            Some(ms) => DurationSpec { ms, text: None },
            None => return Err(format!("`{n}` is not a whole, positive number of milliseconds")),
        },
        Value::String(s) => DurationSpec { ms: parse_duration_str(s)?, text: Some(s.clone()) },
        other => {
            return Err(format!(
                "expected a duration like \"90s\", \"15m\", \"36h\", \"7d\", \"2w\" or \"1h30m\", or milliseconds; found {}",
                crate::reader::type_name(other)
            ))
        }
    };
    if d.ms == 0 {
        return Err("a duration must be longer than zero".into());
    }
    Ok(d)
}

fn parse_duration_str(s: &str) -> Result<u64, String> {
    let bad = || {
        format!("{} is not a duration: write a number and a unit (ms, s, m, h, d, w), like \"90s\", \"36h\" or \"1h30m\"", crate::diagnostic::quote(s))
    };
    let mut total: u64 = 0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            _ => return Err(bad()),
        };
        rest = rest[unit_len..].trim_start();
        total = n
            .checked_mul(unit)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(|| format!("{} is too long a duration", crate::diagnostic::quote(s)))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dateish_forms() {
        assert_eq!(
            parse_dateish(&json!("2026-04-23T18:25:43.511Z"))
                .unwrap()
                .at,
            Timestamp(1776968743511)
        );
        assert_eq!(
            parse_dateish(&json!("2026-04-23")).unwrap().at,
            Timestamp(1776902400000)
        );
        assert_eq!(
            parse_dateish(&json!("2026-04-23T20:25:43.511+02:00"))
                .unwrap()
                .at,
            Timestamp(1776968743511)
        );
        assert_eq!(parse_dateish(&json!(5)).unwrap().at, Timestamp(5));
        assert!(parse_dateish(&json!("friday")).is_err());
        assert!(parse_dateish(&json!("2026-02-30")).is_err());
        assert!(parse_dateish(&json!(true)).is_err());
        assert_eq!(
            Timestamp(1776968743511).to_rfc3339(),
            "2026-04-23T18:25:43.511Z"
        );
    }

    #[test]
    fn durations() {
        let ms = |s: &str| parse_duration(&json!(s)).map(|d| d.ms);
        assert_eq!(ms("90s"), Ok(90_000));
        assert_eq!(ms("15m"), Ok(900_000));
        assert_eq!(ms("36h"), Ok(129_600_000));
        assert_eq!(ms("7d"), Ok(604_800_000));
        assert_eq!(ms("2w"), Ok(1_209_600_000));
        assert_eq!(ms("1h30m"), Ok(5_400_000));
        assert_eq!(ms("1h 30m"), Ok(5_400_000));
        assert_eq!(ms("250ms"), Ok(250));
        assert!(ms("").is_err());
        assert!(ms("10").is_err());
        assert!(ms("h").is_err());
        assert!(ms("3y").is_err());
        assert!(ms("0s").is_err());
        assert!(ms("99999999999999999999w").is_err());
        assert_eq!(parse_duration(&json!(1500)).unwrap().ms, 1500);
        for ms in [
            1,
            999,
            1_000,
            1_500,
            90_000,
            5_400_000,
            86_400_000,
            2_505_600_000,
        ] {
            let text = format_duration(ms);
            assert_eq!(parse_duration(&json!(text)).unwrap().ms, ms, "{text}");
        }
        assert_eq!(format_duration(2_505_600_000), "29d");
        assert_eq!(format_duration(131_400_000), "1d12h30m");
        assert!(parse_duration(&json!(-1)).is_err());
        assert!(parse_duration(&json!(0)).is_err());
    }
}
