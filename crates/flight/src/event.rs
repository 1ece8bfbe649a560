//! Recorded events that pilots stream to the tower and the tower keeps (docs/api.md#events).

use crate::diagnostic::{quote_value, Diagnostics, JsonPath};
use crate::reader::Reader;
use crate::report::{read_batch, AT_RANGE, MAX_NUMBER};
use crate::time::Timestamp;
use serde::{Serialize, Serializer};
use serde_json::Value;

/// The largest `seq` an event may carry: 2^53, the largest whole number every JSON reader
/// keeps exactly.
pub const MAX_SEQ: u64 = 1 << 53;
/// The longest `subject`, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 256;
/// The longest `topic`, in characters (`a-z`, `0-9`, `.`, `-`, `_`).
pub const MAX_TOPIC_LENGTH: usize = 64;
/// The longest `arm` name, in bytes: the flight's own arm-name rule.
pub const MAX_ARM_BYTES: usize = 64;

/// One recorded event of one flight on one machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Per-client event sequence number, from 1; `(client, seq)` identifies an event.
    pub seq: u64,
    pub flight: String,
    pub version: u64,
    /// The arm the pilot chose; `None` for a flight without arms.
    pub arm: Option<String>,
    pub topic: String,
    pub subject: Option<String>,
    /// A finite number, or `None`.
    pub value: Option<f64>,
    #[serde(serialize_with = "rfc3339")]
    pub at: Timestamp,
}

fn rfc3339<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339())
}

/// The body of `POST /api/v1/events`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventBatch {
    /// The profile's random id (the one its reports carry).
    pub client: String,
    pub events: Vec<Event>,
}

const EVENT_FIELDS: &[&str] = &[
    "seq", "flight", "version", "arm", "topic", "subject", "value", "at",
];

/// Whether `s` is a topic: 1 to [`MAX_TOPIC_LENGTH`] characters of `a-z`, `0-9`, `.`, `-`, `_`.
pub fn is_topic(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_TOPIC_LENGTH
        && s.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'_')
        })
}

impl EventBatch {
    /// Reads a batch, or says every problem with its path. `max_events` bounds the batch.
    pub fn from_json(v: &Value, max_events: usize) -> Result<EventBatch, Diagnostics> {
        let (client, events) = read_batch(v, "event", "events", max_events, read_event)?;
        Ok(EventBatch { client, events })
    }
}

/// A whole number from `min` to `max`.
fn whole(r: &mut Reader, x: &Value, path: &JsonPath, min: u64, max: u64) -> Option<u64> {
    let n = r.integer(x, path, min)?;
    if n > max {
        r.error(path, format!("{n} is too large; at most {max}"));
        return None;
    }
    Some(n)
}

fn read_event(r: &mut Reader, v: &Value, path: &JsonPath) -> Option<Event> {
    let o = r.object(v, path, "an event", EVENT_FIELDS)?;
    let seq = r
        .required(&o, "seq", "the event's sequence number, from 1")
        .and_then(|x| whole(r, x, &path.key("seq"), 1, MAX_SEQ));
    let flight = r.req_string(&o, "flight", "the flight's studyname");
    if flight
        .as_deref()
        .is_some_and(|f| !crate::validate::is_name(f, 128))
    {
        r.error(&path.key("flight"), "`flight` must be a studyname");
    }
    let version = r
        .required(&o, "version", "the flight's version")
        .and_then(|x| whole(r, x, &path.key("version"), 0, MAX_NUMBER));
    let arm = crate::report::read_arm(r, o.map.get("arm"), &path.key("arm"));
    let topic = r.req_string(&o, "topic", "the topic recorded");
    if topic.as_deref().is_some_and(|t| !is_topic(t)) {
        r.error(
            &path.key("topic"),
            format!(
                "`topic` must be 1 to {MAX_TOPIC_LENGTH} characters of a-z, 0-9, `.`, `-`, `_`"
            ),
        );
    }
    let subject = match o.map.get("subject") {
        None | Some(Value::Null) => Some(None),
        Some(x) => match r.string(x, &path.key("subject")) {
            Some(s) if s.len() > MAX_SUBJECT_BYTES => {
                r.error(
                    &path.key("subject"),
                    format!(
                        "`subject` is {} bytes; at most {MAX_SUBJECT_BYTES}",
                        s.len()
                    ),
                );
                None
            }
            Some(s) if s.contains('\0') => {
                r.error(
                    &path.key("subject"),
                    "`subject` must not contain the NUL character (U+0000)",
                );
                None
            }
            Some(s) => Some(Some(s)),
            None => None,
        },
    };
    let value = match o.map.get("value") {
        None | Some(Value::Null) => Some(None),
        Some(x) => match r.number(x, &path.key("value")) {
            Some(f) if f.is_finite() => Some(Some(f)),
            Some(_) => {
                r.error(
                    &path.key("value"),
                    "`value` must be a finite number, or null",
                );
                None
            }
            None => None,
        },
    };
    let at = r
        .required(&o, "at", "when it happened (RFC 3339)")
        .and_then(|x| {
            let parsed = x
                .as_str()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s.trim()).ok())
                .map(|d| d.timestamp_millis());
            match parsed {
                Some(ms) if AT_RANGE.contains(&ms) => Some(Timestamp(ms)),
                Some(_) => {
                    r.error(&path.key("at"), "`at` is outside the years 1970 to 9999");
                    None
                }
                None => {
                    r.error(
                        &path.key("at"),
                        format!(
                            "expected an RFC 3339 date-time like \"2027-01-05T10:00:00Z\", found {}",
                            quote_value(x)
                        ),
                    );
                    None
                }
            }
        });
    Some(Event {
        seq: seq?,
        flight: flight?,
        version: version?,
        arm,
        topic: topic?,
        subject: subject?,
        value: value?,
        at: at?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const C: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    fn ev(extra: Value) -> Value {
        let mut e = json!({"seq": 1, "flight": "f", "version": 1, "arm": null, "topic": "t.x",
                           "subject": null, "value": null, "at": "2027-01-05T10:00:00Z"});
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    }

    fn problems(e: Value) -> Vec<String> {
        match EventBatch::from_json(&json!({"client": C, "events": [e]}), 10) {
            Ok(_) => Vec::new(),
            Err(d) => d.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn a_good_event_reads() {
        let b = EventBatch::from_json(
            &json!({"client": C, "events": [ev(json!({"arm": "a", "value": 2.5, "subject": "s"}))]}),
            10,
        )
        .unwrap();
        assert_eq!(b.events[0].value, Some(2.5));
        assert_eq!(b.events[0].at, Timestamp(1_799_143_200_000));
        // Serializes back to the shape it was read from.
        let again = EventBatch::from_json(&serde_json::to_value(&b).unwrap(), 10).unwrap();
        assert_eq!(again, b);
        // The client in upper case is the same client, kept in lower case.
        let upper = EventBatch::from_json(
            &json!({"client": C.to_ascii_uppercase(), "events": [ev(json!({"arm": "a", "value": 2.5, "subject": "s"}))]}),
            10,
        )
        .unwrap();
        assert_eq!(upper, b);
    }

    #[test]
    fn bad_events_say_where() {
        for (e, path) in [
            (ev(json!({"seq": -1})), "events[0].seq"),
            (ev(json!({"seq": 0})), "events[0].seq"),
            (ev(json!({"seq": 1.5})), "events[0].seq"),
            (ev(json!({"seq": MAX_SEQ + 1})), "events[0].seq"),
            (ev(json!({"topic": "Has Space"})), "events[0].topic"),
            (ev(json!({"topic": "x".repeat(65)})), "events[0].topic"),
            (ev(json!({"subject": "x".repeat(257)})), "events[0].subject"),
            (ev(json!({"value": "1"})), "events[0].value"),
            (ev(json!({"at": 1_799_143_200_000u64})), "events[0].at"),
            (ev(json!({"at": "yesterday"})), "events[0].at"),
            (ev(json!({"arm": ""})), "events[0].arm"),
            (ev(json!({"arm": "Has Space"})), "events[0].arm"),
            (ev(json!({"arm": "a\u{0}"})), "events[0].arm"),
            (ev(json!({"arm": "x".repeat(65)})), "events[0].arm"),
            (ev(json!({"subject": "a\u{0}b"})), "events[0].subject"),
            (ev(json!({"topic": "t\u{0}"})), "events[0].topic"),
            (ev(json!({"flight": "Not A Name"})), "events[0].flight"),
            (ev(json!({"extra": 1})), "events[0].extra"),
        ] {
            let p = problems(e.clone());
            assert!(p.iter().any(|m| m.starts_with(path)), "{e}: {p:?}");
        }
        assert!(problems(ev(json!({"seq": MAX_SEQ}))).is_empty());
        assert!(problems(ev(json!({"subject": "é".repeat(128)}))).is_empty());
        let too_many = json!({"client": C, "events": [ev(json!({})), ev(json!({"seq": 2}))]});
        assert!(EventBatch::from_json(&too_many, 1).is_err());
        let bad_client = json!({"client": "me", "events": []});
        assert!(EventBatch::from_json(&bad_client, 1).is_err());
    }
}
