//! The features flights have set, as the application reads them: a snapshot in memory, rebuilt
//! from the journal after every round of the agent, so that a read takes no lock but a
//! read-lock and no I/O (well under a microsecond; `benches/embed.rs`).

use crate::journal::{phase, Journal};
use crate::Error;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;

/// A feature's value and the flight (and arm) that set it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureValue {
    pub value: Value,
    pub studyname: String,
    pub version: u64,
    /// The arm the person is in, for flights with arms.
    pub arm: Option<String>,
    /// Whether chance picked this value for the person: the flight has arms, or samples a
    /// share of people (`randomDeploy` narrower than everyone). OpenFeature's reason `SPLIT`.
    pub sampled: bool,
}

/// Every feature in effect: id → value. A feature set by two flights has the later one's value.
pub fn features_in_effect(journal: &Journal) -> Result<HashMap<String, FeatureValue>, Error> {
    let mut st = journal.conn().prepare_cached(
        "SELECT e.flight, e.spec, f.arm, f.version, f.spec FROM effects e JOIN flights f ON f.studyname = e.flight \
         WHERE e.kind = 'feature' AND e.phase = ?1 ORDER BY e.id",
    )?;
    let rows = st.query_map([phase::DONE], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut out = HashMap::new();
    for row in rows {
        let (flight, spec, arm, version, flight_spec) = row?;
        let Ok(spec) = serde_json::from_str::<Value>(&spec) else {
            continue;
        };
        let (Some(id), Some(value)) = (spec.get("id").and_then(Value::as_str), spec.get("value"))
        else {
            continue;
        };
        out.insert(
            id.to_string(),
            FeatureValue {
                value: value.clone(),
                studyname: flight,
                version: version.max(0) as u64,
                sampled: arm.is_some() || samples(&flight_spec),
                arm,
            },
        );
    }
    Ok(out)
}

/// Whether a flight's `randomDeploy` leaves some people out (`ge > 0` or `lt < 1`; see
/// docs/flight-spec.md, Targeting). Without one, everyone eligible is in.
fn samples(flight_spec: &str) -> bool {
    let Ok(spec) = serde_json::from_str::<Value>(flight_spec) else {
        return false;
    };
    let Some(rd) = spec.get("randomDeploy").filter(|r| r.is_object()) else {
        return false;
    };
    let ge = rd.get("ge").and_then(Value::as_f64).unwrap_or(0.0);
    let lt = rd.get("lt").and_then(Value::as_f64).unwrap_or(1.0);
    ge > 0.0 || lt < 1.0
}

#[cfg(test)]
mod tests {
    use super::samples;

    #[test]
    fn a_sample_of_everyone_is_no_sample() {
        assert!(!samples(r#"{"studyname": "a"}"#));
        assert!(!samples(
            r#"{"randomDeploy": {"keyname": "k", "ge": 0, "lt": 1}}"#
        ));
        assert!(samples(r#"{"randomDeploy": {"ge": 0, "lt": 0.5}}"#));
        assert!(samples(r#"{"randomDeploy": {"ge": 0.2, "lt": 1}}"#));
    }
}
