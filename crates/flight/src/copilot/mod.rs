//! The copilot document (docs/copilot.md): a short study that expands, deterministically,
//! into an ordinary [`Flight`]. `read` validates it with every problem and its path, like a
//! flight; `expand` writes the flight.
//!
//! ```
//! use testpilot_flight::copilot::Copilot;
//! let doc = serde_json::json!({
//!     "copilot": 1, "studyname": "hello", "author": "a@example.com",
//!     "description": "counts hellos", "arms": [{"name": "control", "features": {}}],
//!     "watch": ["hello"], "duration": "7d"
//! });
//! let study = Copilot::from_json(&doc).unwrap();
//! let flight = study.expand();
//! assert_eq!(flight.arms[0].name, "control");
//! assert!(testpilot_flight::Flight::from_json(&flight.to_json()).is_ok());
//! ```

mod expand;
mod read;

pub use read::{
    MAX_ARMS, MAX_EXPANDED_BYTES, MAX_SURVEY_TEXT_CHARS, MAX_SURVEY_TITLE_CHARS, MAX_WATCH,
};

use crate::spec::Filter;
use crate::time::{Dateish, DurationSpec};
use crate::{Diagnostics, Flight};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The one version of the copilot format there is.
pub const COPILOT_VERSION: u64 = 1;

/// How often a recording streams to the tower when the document does not say (shortened to
/// the duration when that is shorter).
pub const DEFAULT_UPLOAD_EVERY_MS: u64 = 86_400_000;

/// How long a survey waits for its answer when the document does not say.
pub const DEFAULT_SURVEY_EXPIRES_MS: u64 = 7 * 86_400_000;

/// What the expanded flight's `fuse` adds to the longest a plan can take (surveys' expiries,
/// the duration and the wait for the last upload): a pilot that was asleep or offline gets
/// a day to finish on its own before the fuse ends the flight.
pub const FUSE_MARGIN_MS: u64 = 86_400_000;

/// A study in a few lines (docs/copilot.md).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Test Pilot copilot study")]
pub struct Copilot {
    /// The format's version: 1.
    pub copilot: u64,
    /// The expanded flight's unique name: `[a-z0-9][a-z0-9._-]{0,127}`.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9._-]{0,127}$"))]
    pub studyname: String,
    /// Who runs the study; shown in the dashboard and the person's flight log.
    pub author: String,
    /// What the study does, in words the person understands.
    pub description: String,
    /// Where the person can read what the study does and its risks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub infourl: Option<String>,
    /// Who may take part, as a flight's `filter`.
    #[serde(skip_serializing_if = "Filter::is_empty", default)]
    pub filter: Filter,
    /// The share of people who pass the filter that take part, in (0, 1]; default 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<f64>,
    /// The arms; the first is the control. At most 32.
    #[schemars(length(min = 1, max = 32))]
    pub arms: Vec<CopilotArm>,
    /// The event topics recorded: `[a-z0-9][a-z0-9._-]{0,63}`, each once. At most 64.
    #[schemars(length(min = 1, max = 64))]
    pub watch: Vec<String>,
    /// How long each person's recording lasts.
    pub duration: DurationSpec,
    /// How often the recording streams to the tower; default one day (or `duration`, when
    /// shorter), never longer than `duration`.
    #[serde(rename = "uploadEvery", skip_serializing_if = "Option::is_none")]
    pub upload_every: Option<DurationSpec>,
    /// A survey before the study starts and one after it ends.
    #[serde(skip_serializing_if = "Surveys::is_empty", default)]
    pub surveys: Surveys,
    /// No one starts or stays in the study after this.
    #[serde(rename = "endBy", skip_serializing_if = "Option::is_none")]
    pub end_by: Option<Dateish>,
}

/// A branch of the study and the features it changes.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CopilotArm {
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"))]
    pub name: String,
    /// Relative weight (a whole number up to 1,000,000); default 1.
    #[serde(default = "default_ratio")]
    pub ratio: u64,
    /// Feature id → the value it gets (an object). Only the control may change none.
    pub features: BTreeMap<String, Map<String, Value>>,
}

fn default_ratio() -> u64 {
    1
}

/// The optional surveys.
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Surveys {
    /// Asked first; the study starts for a person once they say ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Survey>,
    /// Asked when the recording ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Survey>,
}

impl Surveys {
    pub fn is_empty(&self) -> bool {
        self.before.is_none() && self.after.is_none()
    }
}

/// A survey prompt in the person's message center.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Survey {
    /// Template; at most 200 characters.
    #[schemars(length(max = 200))]
    pub title: String,
    /// Template; at most 4000 characters.
    #[schemars(length(max = 4000))]
    pub text: String,
    /// The survey's address: an https URL template.
    #[schemars(regex(pattern = r"^https://"))]
    pub url: String,
    /// How long the survey waits for an answer; default 7 days.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<DurationSpec>,
}

impl Copilot {
    /// Validates a copilot document and builds it, or returns every problem with its path.
    pub fn from_json(v: &Value) -> Result<Copilot, Diagnostics> {
        read::read(v)
    }

    /// The ordinary flight this study is: the same input gives the same flight, byte for
    /// byte.
    pub fn expand(&self) -> Flight {
        expand::expand(self)
    }

    /// The document as JSON, the form the tower stores beside the flight.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Whether a JSON document is a copilot document rather than a flight: an object with a
/// top-level `copilot` key.
pub fn is_copilot(v: &Value) -> bool {
    v.as_object().is_some_and(|o| o.contains_key("copilot"))
}

/// Validates a copilot document and expands it: the study and its flight, or every problem
/// with its path.
/// The flight is validated again as any flight is: it always passes (the tests hold the
/// expansion to that), but a flight that did not would be refused here, not stored.
pub fn expand_json(v: &Value) -> Result<(Copilot, Flight), Diagnostics> {
    let study = Copilot::from_json(v)?;
    let flight = Flight::from_json(&study.expand().to_json()).map_err(|d| {
        let mut out = Diagnostics::default();
        for x in d {
            out.push(
                &crate::JsonPath::root(),
                format!(
                    "the expanded flight is not valid at {}: {}",
                    x.path, x.message
                ),
            );
        }
        out
    })?;
    Ok((study, flight))
}
