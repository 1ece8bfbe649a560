//! The flight spec model (docs/flight-spec.md). Build one with [`crate::Flight::from_json`], which
//! validates; the types here serialize back to the same JSON an author writes.

use crate::time::{Dateish, DurationSpec};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A scalar template variable value.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum VarValue {
    String(String),
    Number(f64),
    Bool(bool),
}

impl VarValue {
    /// The text substituted into a template.
    pub fn render(&self) -> String {
        match self {
            VarValue::String(s) => s.clone(),
            VarValue::Number(n) => Value::from(*n)
                .to_string()
                .trim_end_matches(".0")
                .to_string(),
            VarValue::Bool(b) => b.to_string(),
        }
    }
}

pub type Variables = BTreeMap<String, VarValue>;

/// One study or feature deploy.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Test Pilot flight")]
pub struct Flight {
    /// Unique name: `[a-z0-9][a-z0-9._-]{0,127}`.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9._-]{0,127}$"))]
    pub studyname: String,
    /// Who runs the study; shown in the dashboard and the person's flight log.
    pub author: String,
    /// What the study does, in words the person understands.
    pub description: String,
    /// Where the person can read what the study does and its risks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub infourl: Option<String>,
    /// The tower's revision number.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub version: Option<u64>,
    #[serde(skip_serializing_if = "Filter::is_empty", default)]
    pub filter: Filter,
    #[serde(rename = "randomDeploy", skip_serializing_if = "Option::is_none")]
    pub random_deploy: Option<RandomDeploy>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    #[schemars(length(min = 1))]
    pub arms: Vec<Arm>,
    /// What happens during the flight. Optional only when every arm has its own.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    #[schemars(length(min = 1))]
    pub flightplan: Vec<Entry>,
    /// A flight not complete by then ends as `expired`.
    #[serde(rename = "endBy", skip_serializing_if = "Option::is_none")]
    pub end_by: Option<Dateish>,
    /// A flight not complete this long after its start ends as `timedout`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuse: Option<DurationSpec>,
    /// True: end any running copy, undo everything, status `killed`.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub kill: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub variables: Variables,
}

impl Flight {
    /// The flightplan a person in `arm` runs.
    pub fn plan_for(&self, arm: Option<&str>) -> &[Entry] {
        arm.and_then(|a| self.arms.iter().find(|x| x.name == a))
            .and_then(|a| a.flightplan.as_deref())
            .unwrap_or(&self.flightplan)
    }

    /// The `randomDeploy` key: its `keyname`, or the studyname.
    pub fn deploy_key(&self) -> &str {
        self.random_deploy
            .as_ref()
            .and_then(|r| r.keyname.as_deref())
            .unwrap_or(&self.studyname)
    }

    /// The spec as JSON, the form it is stored and served in.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Who may run the flight; every present criterion must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Release channels, e.g. `["beta", "nightly"]`.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub channels: Vec<String>,
    /// linux, macos, windows, android, ios (aliases darwin, mac, win, win32, winnt).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub oses: Vec<String>,
    /// `en-US` matches exactly; `en` matches `en` and every `en-*`.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub locales: Vec<String>,
    /// A semver requirement on `appversion`, e.g. `">=2.3, <3"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versions: Option<String>,
    /// A JEXL expression over `person`, `flight` and `now` that must be a boolean.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
            && self.oses.is_empty()
            && self.locales.is_empty()
            && self.versions.is_none()
            && self.expression.is_none()
    }
}

/// Runs the flight for people whose bucket for `keyname` is in `[ge, lt)`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RandomDeploy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyname: Option<String>,
    #[schemars(range(min = 0.0, max = 1.0))]
    pub ge: f64,
    #[schemars(range(min = 0.0, max = 1.0))]
    pub lt: f64,
}

/// A branch of the flight; each person gets one.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Arm {
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"))]
    pub name: String,
    /// Relative weight (a whole number); shares are `ratio / sum of ratios`.
    pub ratio: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub variables: Variables,
    /// Replaces the flight's flightplan for this arm.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub flightplan: Option<Vec<Entry>>,
}

/// A flightplan entry: one directive, or a list of entries run in parallel.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Entry {
    Directive(Directive),
    Parallel(#[schemars(length(min = 1))] Vec<Entry>),
}

/// One step of a flightplan.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
pub enum Directive {
    /// Resolves true when the time comes.
    Wait(Wait),
    /// An HTTP request; true on 2xx, retried on network errors and 5xx.
    Ping(Ping),
    /// A survey or message shown to the person (alias `ui`).
    #[serde(alias = "ui")]
    External(External),
    /// Install, uninstall or ensure an add-on.
    Addon(Addon),
    /// Set a feature value (restored on undo).
    Feature(Feature),
    /// Resolves true once a topic has been observed `count` times.
    Observe(Observe),
    /// Delivers a notification to the application.
    Notify(Notify),
    /// Records events and uploads them (the copilot recorder).
    Instrument(Instrument),
    /// Writes to the flight log.
    Log(Text),
    /// Sets the flight's status line.
    Status(Text),
    /// Writes a message to the flight log for the person.
    Message(Text),
}

impl Directive {
    /// The `action` name, as written in a flightplan.
    pub fn action(&self) -> &'static str {
        match self {
            Directive::Wait(_) => "wait",
            Directive::Ping(_) => "ping",
            Directive::External(_) => "external",
            Directive::Addon(_) => "addon",
            Directive::Feature(_) => "feature",
            Directive::Observe(_) => "observe",
            Directive::Notify(_) => "notify",
            Directive::Instrument(_) => "instrument",
            Directive::Log(_) => "log",
            Directive::Status(_) => "status",
            Directive::Message(_) => "message",
        }
    }
}

/// Exactly one of `until` and `for`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Wait {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<Dateish>,
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<DurationSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Post,
    Put,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ping {
    /// URL template (http or https); substituted values are percent-encoded.
    pub url: String,
    /// Default GET.
    #[serde(default = "default_method")]
    pub method: Method,
    /// JSON body (POST and PUT); strings in it are templates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PromptType {
    Survey,
    Message,
}

impl PromptType {
    pub fn as_str(self) -> &'static str {
        match self {
            PromptType::Survey => "survey",
            PromptType::Message => "message",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WaitFor {
    Ok,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct External {
    #[serde(rename = "type")]
    pub kind: PromptType,
    /// Template.
    pub title: String,
    /// Template.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub text: String,
    /// URL template; required for surveys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `"ok"`: resolve true on ok, false on no or expiry. Absent: true once shown.
    #[serde(rename = "waitFor", skip_serializing_if = "Option::is_none")]
    pub wait_for: Option<WaitFor>,
    /// How long the prompt stays pending before it expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<DurationSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AddonOp {
    Install,
    Uninstall,
    Ensure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    None,
    Notify,
    Warn,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Addon {
    #[serde(rename = "do")]
    pub op: AddonOp,
    /// Add-on id, used as one folder name: 1 to 200 letters, digits and `@ . _ - { } +`, not
    /// starting or ending with `.`, without `..`, and not a name the host keeps for itself
    /// (`registry.json`) or a Windows device name (`addon_id_problem` is the rule).
    pub id: String,
    /// Package URL (https, http or file); needs `sha256`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Package path on the machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Lowercase hex SHA-256 of the package.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Default notify: the person is told.
    #[serde(default = "default_permission")]
    pub permission: Permission,
    /// Shown to the person with `notify` and `warn` (template).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Feature {
    pub id: String,
    pub value: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Observe {
    pub topic: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Default 1.
    #[schemars(range(min = 1))]
    #[serde(default = "default_count")]
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// Template.
    pub topic: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Strings in it are templates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Instrument {
    pub watch: Vec<String>,
    #[serde(rename = "for")]
    pub for_: DurationSpec,
    /// https or http URL template the recording is uploaded to once, at the end. Without it
    /// the recording streams to the tower that served the index (`POST /api/v1/events`),
    /// every `uploadEvery` and at the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload: Option<String>,
    /// How often a streamed recording is sent (only without `upload`; default one day).
    #[serde(rename = "uploadEvery", skip_serializing_if = "Option::is_none")]
    pub upload_every: Option<DurationSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Text {
    /// Template.
    pub text: String,
}

fn default_method() -> Method {
    Method::Get
}
fn default_permission() -> Permission {
    Permission::Notify
}
fn default_count() -> u64 {
    1
}

/// The longest add-on id, in bytes (well under every file system's limit for one name).
pub const MAX_ADDON_ID_LENGTH: usize = 200;

/// Names a host keeps beside the add-on folders, compared without case (file systems on
/// macOS and Windows ignore it): the reference host's registry and its temporary file.
pub const RESERVED_ADDON_IDS: &[&str] = &["registry.json", "registry.json.tmp"];

/// Why `id` cannot be an add-on id, or `None` when it can. The one rule for add-on ids:
/// validation applies it to every `addon` directive, and a host that keeps each add-on in a
/// folder named by its id (the pilot's reference host) applies it again before touching the
/// disk, so an id is always one safe path component that names nothing of the host's own.
///
/// An id is 1 to [`MAX_ADDON_ID_LENGTH`] ASCII letters, digits and `@ . _ - { } +` (so
/// `helper@example.com` and `{8-4-4-4-12 uuid}` ids are fine, and `/`, `\`, NUL, spaces and
/// control characters never are); it does not start or end with `.` (no `.`, `..` or hidden
/// folders such as the host's `.backup`, no name Windows would trim), holds no `..`, and is
/// none of [`RESERVED_ADDON_IDS`] nor a Windows device name (`con`, `nul`, `com1`, …).
///
/// ```
/// use testpilot_flight::spec::addon_id_problem;
/// assert_eq!(addon_id_problem("helper@example.com"), None);
/// assert_eq!(addon_id_problem("{6b1e4b2a-1f4e-4a43-9a0c-2d4b5c6d7e8f}"), None);
/// assert!(addon_id_problem("registry.json").is_some());
/// assert!(addon_id_problem("../etc").is_some());
/// ```
pub fn addon_id_problem(id: &str) -> Option<String> {
    const ALLOWED: &str = "use 1 to 200 letters, digits and `@ . _ - { } +`";
    if id.is_empty() {
        return Some(format!("it is empty: {ALLOWED}"));
    }
    if id.len() > MAX_ADDON_ID_LENGTH {
        return Some(format!(
            "it is {} bytes long; the limit is {MAX_ADDON_ID_LENGTH}",
            id.len()
        ));
    }
    if let Some(c) = id.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '_' | '-' | '{' | '}' | '+'))
    }) {
        let what = match c {
            '/' | '\\' => "a path separator".to_string(),
            c if c.is_control() => "a control character".to_string(),
            c => format!("the character {}", serde_json::Value::String(c.to_string())),
        };
        return Some(format!("it contains {what}: {ALLOWED}"));
    }
    if id.starts_with('.') || id.ends_with('.') || id.contains("..") {
        return Some(format!(
            "it starts or ends with `.` or holds `..`, which name folders a host keeps for itself: {ALLOWED}, with `.` only between other characters"
        ));
    }
    let lower = id.to_ascii_lowercase();
    if RESERVED_ADDON_IDS.contains(&lower.as_str()) {
        return Some(format!(
            "it is the name of a file the host keeps beside the add-ons ({})",
            RESERVED_ADDON_IDS.join(", ")
        ));
    }
    let stem = lower.split('.').next().unwrap_or("");
    let device = matches!(stem, "con" | "prn" | "aux" | "nul")
        || (stem.len() == 4
            && (stem.starts_with("com") || stem.starts_with("lpt"))
            && stem.as_bytes()[3].is_ascii_digit());
    if device {
        return Some(format!(
            "`{stem}` is a device name on Windows, where no folder can have it"
        ));
    }
    None
}
