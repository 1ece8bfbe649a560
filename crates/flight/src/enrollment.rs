//! Enrollment: putting targeting, sampling, arms, `kill` and `endBy` together, with reasons.

use crate::person::Person;
use crate::sampling;
use crate::spec::Flight;
use crate::targeting::{self, FlightContext};
use crate::time::Timestamp;
use serde::Serialize;

/// Why a person is or is not in a flight: the object `testpilot flight explain --json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub studyname: String,
    pub version: Option<u64>,
    /// The filter passes.
    pub eligible: bool,
    /// `randomDeploy` passes (true when there is none).
    pub sampled: bool,
    /// Eligible, sampled, not killed and not past `endBy`.
    pub enrolled: bool,
    /// The arm the person gets (when the flight has arms), whether or not they are enrolled.
    pub arm: Option<String>,
    /// `truncated_hash(["<personid>", "<keyname>"])`, the 12-hex bucket.
    pub bucket: String,
    /// The `randomDeploy` key the bucket was computed with.
    pub keyname: String,
    pub killed: bool,
    pub expired: bool,
    pub reasons: Vec<String>,
}

/// Whether a person runs a flight: the pilot's decision, without the explanations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub eligible: bool,
    pub sampled: bool,
    pub enrolled: bool,
    /// Index into `flight.arms`.
    pub arm: Option<usize>,
    pub killed: bool,
    pub expired: bool,
}

/// Decides whether `person` runs `flight` at `now`. Same answer as [`explain`], faster: the
/// filter stops at the first criterion that fails and no sentences are written.
pub fn decide(flight: &Flight, person: &Person, now: Timestamp) -> Decision {
    let ctx = FlightContext {
        studyname: &flight.studyname,
        version: flight.version,
    };
    let eligible = targeting::matches(&flight.filter, &ctx, person, now);
    let sampled = flight.random_deploy.as_ref().is_none_or(|r| {
        sampling::in_range48(
            sampling::deploy_hash48(person.personid(), flight.deploy_key()),
            r.ge,
            r.lt,
        )
    });
    let arm = choose_arm(flight, person);
    let killed = flight.kill;
    let expired = flight.end_by.as_ref().is_some_and(|e| now >= e.at);
    Decision {
        eligible,
        sampled,
        enrolled: eligible && sampled && !killed && !expired,
        arm,
        killed,
        expired,
    }
}

fn choose_arm(flight: &Flight, person: &Person) -> Option<usize> {
    if flight.arms.is_empty() {
        return None;
    }
    sampling::choose_arm_by(
        person.personid(),
        &flight.studyname,
        flight.arms.iter().map(|a| a.ratio),
    )
}

/// Decides whether `person` runs `flight` at `now`, and says why.
pub fn explain(flight: &Flight, person: &Person, now: Timestamp) -> Explanation {
    let ctx = FlightContext {
        studyname: &flight.studyname,
        version: flight.version,
    };
    let filter = targeting::evaluate(&flight.filter, &ctx, person, now);
    let mut reasons = filter.reasons;
    if flight.filter.is_empty() {
        reasons.push("no filter: everyone is eligible".into());
    }

    let keyname = flight.deploy_key().to_string();
    let bucket = sampling::deploy_bucket(person.personid(), &keyname);
    let sampled = match &flight.random_deploy {
        None => {
            reasons.push("no randomDeploy: everyone eligible is sampled".into());
            true
        }
        Some(r) => {
            let lo = sampling::fraction_to_key(r.ge);
            let hi = sampling::fraction_to_key(r.lt);
            let inside = sampling::in_range(&bucket, r.ge, r.lt);
            reasons.push(format!(
                "bucket {bucket} for key `{keyname}` is {} [{lo}, {hi}) (randomDeploy ge {}, lt {})",
                if inside { "in" } else { "outside" },
                r.ge,
                r.lt
            ));
            inside
        }
    };

    let arm = choose_arm(flight, person).map(|i| {
        let name = flight.arms[i].name.clone();
        let ratios: Vec<String> = flight
            .arms
            .iter()
            .map(|a| format!("{} {}", a.name, a.ratio))
            .collect();
        reasons.push(format!("arm `{name}` (ratios: {})", ratios.join(", ")));
        name
    });

    let killed = flight.kill;
    if killed {
        reasons.push("the flight is killed".into());
    }
    let expired = flight.end_by.as_ref().is_some_and(|e| now >= e.at);
    if let Some(e) = &flight.end_by {
        if expired {
            reasons.push(format!("endBy {} has passed", e.at));
        }
    }
    Explanation {
        studyname: flight.studyname.clone(),
        version: flight.version,
        eligible: filter.passed,
        sampled,
        enrolled: filter.passed && sampled && !killed && !expired,
        arm,
        bucket,
        keyname,
        killed,
        expired,
        reasons,
    }
}
