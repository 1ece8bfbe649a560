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
}

/// Every feature in effect: id → value. A feature set by two flights has the later one's value.
pub fn features_in_effect(journal: &Journal) -> Result<HashMap<String, FeatureValue>, Error> {
    let mut st = journal.conn().prepare_cached(
        "SELECT e.flight, e.spec, f.arm, f.version FROM effects e JOIN flights f ON f.studyname = e.flight \
         WHERE e.kind = 'feature' AND e.phase = ?1 ORDER BY e.id",
    )?;
    let rows = st.query_map([phase::DONE], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut out = HashMap::new();
    for row in rows {
        let (flight, spec, arm, version) = row?;
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
                arm,
            },
        );
    }
    Ok(out)
}
