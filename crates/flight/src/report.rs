//! Status reports that pilots send and the tower keeps (docs/reports.md).

use crate::diagnostic::{Diagnostics, JsonPath};
use crate::reader::Reader;
use crate::time::{parse_dateish, Timestamp};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use std::fmt;

/// Where a flight is on one machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Completed,
    Declined,
    Failed,
    Killed,
    Expired,
    Timedout,
    Optedout,
    Withdrawn,
    Ineligible,
    Unsampled,
    /// The pilot's last index expired and no newer one could be fetched: a pilot cut off from
    /// its tower cannot hear a kill, so its flights end and are undone (docs/index.md).
    IndexExpired,
}

impl Status {
    pub const ALL: [Status; 12] = [
        Status::Running,
        Status::Completed,
        Status::Declined,
        Status::Failed,
        Status::Killed,
        Status::Expired,
        Status::Timedout,
        Status::Optedout,
        Status::Withdrawn,
        Status::Ineligible,
        Status::Unsampled,
        Status::IndexExpired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Declined => "declined",
            Status::Failed => "failed",
            Status::Killed => "killed",
            Status::Expired => "expired",
            Status::Timedout => "timedout",
            Status::Optedout => "optedout",
            Status::Withdrawn => "withdrawn",
            Status::Ineligible => "ineligible",
            Status::Unsampled => "unsampled",
            Status::IndexExpired => "indexexpired",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Whether the flight has ended on the machine (its effects are being or have been undone).
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Running)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One status change of one flight on one machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Per-client sequence number; `(client, seq)` identifies a report.
    pub seq: u64,
    pub flight: String,
    pub version: u64,
    pub arm: Option<String>,
    pub status: Status,
    /// The 0-based index of the top-level flightplan entry the flight is at (the plan's length
    /// once every entry has resolved).
    pub step: u64,
    #[serde(serialize_with = "rfc3339")]
    pub at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

fn rfc3339<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339())
}

/// The body of `POST /api/v1/reports`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportBatch {
    /// A random id per profile (not the personid).
    pub client: String,
    pub reports: Vec<Report>,
}

/// The largest `seq`, `version` and `step` a report may carry: stores keep them as signed
/// 64-bit integers, so anything larger would come back negative.
pub const MAX_NUMBER: u64 = i64::MAX as u64;
/// The range of `at`: 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z. Outside it a time
/// has no calendar day to count it under (and `i64::MIN` wrapped in the daily series).
pub const AT_RANGE: std::ops::RangeInclusive<i64> = 0..=253_402_300_799_999;
const REPORT_FIELDS: &[&str] = &[
    "seq", "flight", "version", "arm", "status", "step", "at", "detail",
];

/// Whether `s` is a UUID in its usual hyphenated text form.
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

impl ReportBatch {
    /// Reads a batch, or says every problem with its path. `max_reports` bounds the batch.
    pub fn from_json(v: &Value, max_reports: usize) -> Result<ReportBatch, Diagnostics> {
        let (client, reports) = read_batch(v, "report", "reports", max_reports, read_report)?;
        Ok(ReportBatch { client, reports })
    }
}

/// Reads what every batch a pilot sends shares: `{"client": "<uuid>", "<list>": [...]}` with
/// at most `max` items, each read by `item` at its path (`<list>[i]`). Every problem of the
/// envelope and of every item is said; items past `max` are not read.
pub(crate) fn read_batch<T>(
    v: &Value,
    noun: &str,
    list: &str,
    max: usize,
    mut item: impl FnMut(&mut Reader, &Value, &JsonPath) -> Option<T>,
) -> Result<(String, Vec<T>), Diagnostics> {
    let mut r = Reader::default();
    let root = JsonPath::root();
    let fields = ["client", list];
    let Some(o) = r.object(v, &root, &format!("a {noun} batch"), &fields) else {
        return Err(r.diags);
    };
    let client = r.req_string(&o, "client", "the profile's random client id (a UUID)");
    if client.as_deref().is_some_and(|c| !is_uuid(c)) {
        r.error(
            &root.key("client"),
            "`client` must be a UUID like \"0f8fad5b-d9cb-469f-a165-70867728950e\"",
        );
    }
    let mut items = Vec::new();
    if let Some(xs) = r
        .required(&o, list, &format!("the list of {list}"))
        .and_then(|x| r.array(x, &root.key(list)))
    {
        if xs.len() > max {
            r.error(
                &root.key(list),
                format!(
                    "{} {list} in one batch; send at most {max} at a time",
                    xs.len()
                ),
            );
        }
        for (i, x) in xs.iter().enumerate().take(max) {
            if let Some(t) = item(&mut r, x, &root.key(list).index(i)) {
                items.push(t);
            }
        }
    }
    match client {
        // A UUID names the same client in either case: kept in lower case, so a resend in
        // upper case is still a duplicate (docs/reports.md).
        Some(client) if r.diags.is_empty() => Ok((client.to_ascii_lowercase(), items)),
        _ => Err(r.diags),
    }
}

/// An optional `arm` of a report or an event: `None` when absent or null, else a name by the
/// flight's own arm-name rule (so nothing a terminal acts on is ever stored as an arm).
pub(crate) fn read_arm(r: &mut Reader, x: Option<&Value>, path: &JsonPath) -> Option<String> {
    match x {
        None | Some(Value::Null) => None,
        Some(x) => r.string(x, path).and_then(|a| {
            if crate::validate::is_name(&a, crate::event::MAX_ARM_BYTES) {
                Some(a)
            } else {
                r.error(
                    path,
                    format!("`arm` must be an arm's name (1 to {} lowercase letters, digits, `.`, `_` and `-`), or null for a flight without arms", crate::event::MAX_ARM_BYTES),
                );
                None
            }
        }),
    }
}

/// A whole number from 0 to [`MAX_NUMBER`].
fn bounded(r: &mut Reader, x: &Value, path: &JsonPath) -> Option<u64> {
    let n = r.integer(x, path, 0)?;
    if n > MAX_NUMBER {
        r.error(path, format!("{n} is too large; at most {MAX_NUMBER}"));
        return None;
    }
    Some(n)
}

/// The path of the first string (or object key) in `v` holding a NUL character, which
/// PostgreSQL's JSON text cannot hold.
fn nul_at(v: &Value, path: &JsonPath) -> Option<JsonPath> {
    match v {
        Value::String(s) if s.contains('\0') => Some(path.clone()),
        Value::Array(list) => list
            .iter()
            .enumerate()
            .find_map(|(i, x)| nul_at(x, &path.index(i))),
        Value::Object(m) => m.iter().find_map(|(k, x)| {
            if k.contains('\0') {
                Some(path.clone())
            } else {
                nul_at(x, &path.key(k))
            }
        }),
        _ => None,
    }
}

fn read_report(r: &mut Reader, v: &Value, path: &JsonPath) -> Option<Report> {
    let o = r.object(v, path, "a report", REPORT_FIELDS)?;
    let seq = r
        .required(&o, "seq", "the report's sequence number")
        .and_then(|x| bounded(r, x, &path.key("seq")));
    let flight = r.req_string(&o, "flight", "the flight's studyname");
    if flight
        .as_deref()
        .is_some_and(|f| !crate::validate::is_name(f, 128))
    {
        r.error(&path.key("flight"), "`flight` must be a studyname");
    }
    let version = r
        .required(&o, "version", "the flight's version")
        .and_then(|x| bounded(r, x, &path.key("version")));
    let arm = read_arm(r, o.map.get("arm"), &path.key("arm"));
    let status = r
        .required(&o, "status", "the flight's status")
        .and_then(|x| {
            let names: Vec<&'static str> = Status::ALL.iter().map(|s| s.as_str()).collect();
            r.choice(x, &path.key("status"), &names)
        })
        .and_then(Status::parse);
    let step = r
        .required(&o, "step", "the flightplan step")
        .and_then(|x| bounded(r, x, &path.key("step")));
    let at = r
        .required(&o, "at", "when it happened")
        .and_then(|x| match parse_dateish(x) {
            Ok(d) if AT_RANGE.contains(&d.at.0) => Some(d.at),
            Ok(_) => {
                r.error(
                    &path.key("at"),
                    format!(
                        "{} is outside the years 1970 to 9999; send the time of the change",
                        crate::reader::short(x)
                    ),
                );
                None
            }
            Err(e) => {
                r.error(&path.key("at"), e);
                None
            }
        });
    let detail = o.map.get("detail").filter(|d| !d.is_null()).cloned();
    if let Some(d) = &detail {
        if let Some(at) = nul_at(d, &path.key("detail")) {
            r.error(
                &at,
                "text in `detail` must not contain the NUL character (U+0000)",
            );
        }
    }
    Some(Report {
        seq: seq?,
        flight: flight?,
        version: version?,
        arm,
        status: status?,
        step: step?,
        at: at?,
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(extra: Value) -> Vec<String> {
        let mut rep = json!({"seq": 1, "flight": "f", "version": 1, "arm": "a",
                             "status": "running", "step": 0, "at": "2027-01-05T10:00:00Z"});
        for (k, v) in extra.as_object().unwrap() {
            rep[k] = v.clone();
        }
        let b = json!({"client": "0f8fad5b-d9cb-469f-a165-70867728950e", "reports": [rep]});
        match ReportBatch::from_json(&b, 10) {
            Ok(_) => Vec::new(),
            Err(d) => d.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn batch(client: &str, reports: Value) -> Result<ReportBatch, Vec<String>> {
        let b = json!({"client": client, "reports": reports});
        ReportBatch::from_json(&b, 10).map_err(|d| d.iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn client_is_kept_in_lower_case() {
        let rep = json!([{"seq": 1, "flight": "f", "version": 1, "status": "running",
                          "step": 0, "at": "2027-01-05T10:00:00Z"}]);
        let b = batch("0F8FAD5B-D9CB-469F-A165-70867728950E", rep).unwrap();
        assert_eq!(b.client, "0f8fad5b-d9cb-469f-a165-70867728950e");
    }

    #[test]
    fn nul_in_text_is_refused_with_its_path() {
        assert!(problems(json!({})).is_empty());
        assert!(problems(json!({"detail": {"why": ["ok", "fine"]}})).is_empty());
        for (extra, path) in [
            (json!({"arm": "a\u{0}"}), "reports[0].arm"),
            (json!({"arm": ""}), "reports[0].arm"),
            (json!({"arm": "ctl\u{1b}[31m"}), "reports[0].arm"),
            (json!({"arm": "x".repeat(65)}), "reports[0].arm"),
            (
                json!({"detail": {"why": ["ok", "b\u{0}d"]}}),
                "reports[0].detail.why[1]",
            ),
            (json!({"detail": {"k\u{0}": 1}}), "reports[0].detail"),
            (json!({"detail": "\u{0}"}), "reports[0].detail"),
        ] {
            let p = problems(extra.clone());
            assert!(p.iter().any(|m| m.starts_with(path)), "{extra}: {p:?}");
        }
    }
}
