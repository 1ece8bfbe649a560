//! The Python package `testpilot` (docs/embedding.md, "Python"): the extension module
//! `testpilot._native`, built by maturin from `pyproject.toml` and re-exported by
//! `python/testpilot/__init__.py`.
//!
//! `Pilot` wraps [`EmbeddedPilot`]; this file only translates at the boundary:
//! - arguments become the shared JSON configuration, read by [`EmbedConfig::from_json`] (so
//!   Python gets the same checks, caps and messages as Rust and C, with its own argument names);
//! - values cross as Python objects (`pythonize`); the person context goes the other way
//!   through Python's own `json.dumps`, which refuses what JSON cannot hold and bounds nesting;
//! - every [`PilotError`] becomes a subclass of `testpilot.Error` carrying the Rust message;
//! - every call into the pilot runs with the GIL released (`Python::detach`), so the
//!   application's other threads go on while the journal is read or written.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDelta, PyDict, PyString};
use pythonize::pythonize;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use testpilot_pilot::embed::MAX_CONFIG_BYTES;
use testpilot_pilot::{EmbedConfig, EmbeddedPilot, Error as PilotError};

create_exception!(
    testpilot,
    Error,
    PyException,
    "Every error the pilot raises; the message says what went wrong and where."
);
create_exception!(
    testpilot,
    ConfigError,
    Error,
    "A bad argument to `Pilot(...)`: the message names the argument."
);
create_exception!(
    testpilot,
    LockedError,
    Error,
    "The profile is in use by another pilot (this process or another); the message names the holder."
);
create_exception!(
    testpilot,
    UsageError,
    Error,
    "A request the pilot cannot carry out: an answer other than \"ok\", \"no\" or \"later\", an unknown prompt or flight, starting twice."
);
create_exception!(
    testpilot,
    ClosedError,
    UsageError,
    "The pilot was closed: open the profile again with a new `Pilot`."
);
create_exception!(
    testpilot,
    HostError,
    Error,
    "The agent stopped abnormally or did not stop in time."
);
create_exception!(
    testpilot,
    JournalError,
    Error,
    "The profile's journal or files could not be read or written."
);

/// The Python exception for a pilot error, with its message.
fn raise(e: PilotError) -> PyErr {
    let msg = e.to_string();
    match e {
        PilotError::Locked { .. } => LockedError::new_err(msg),
        PilotError::Usage(_) => UsageError::new_err(msg),
        PilotError::Host(_) => HostError::new_err(msg),
        PilotError::Journal { .. }
        | PilotError::Sqlite(_)
        | PilotError::Io { .. }
        | PilotError::Crash { .. } => JournalError::new_err(msg),
        _ => Error::new_err(msg),
    }
}

/// The shared configuration's fields as `Pilot`'s arguments are named, so that a message
/// names what the caller wrote.
const ARGUMENT_NAMES: [(&str, &str); 6] = [
    ("configuration.profile", "profile"),
    ("configuration.tower", "tower"),
    ("configuration.publicKey", "public_key"),
    ("configuration.person", "person"),
    ("configuration.poll", "poll"),
    ("\"insecureUnsigned\": true", "insecure_unsigned=True"),
];

fn config_error(e: PilotError) -> PyErr {
    let mut msg = e.to_string();
    for (field, argument) in ARGUMENT_NAMES {
        msg = msg.replace(field, argument);
    }
    ConfigError::new_err(msg)
}

/// A Python value as JSON (for the person context), through `json.dumps`: it refuses sets,
/// objects, NaN and nesting deeper than the interpreter's recursion limit; the text is held
/// to the configuration's size cap before it is parsed.
fn to_json(py: Python<'_>, what: &str, value: &Bound<'_, PyAny>) -> PyResult<Value> {
    let kwargs = PyDict::new(py);
    kwargs.set_item("allow_nan", false)?;
    let text: String = py
        .import("json")?
        .call_method("dumps", (value,), Some(&kwargs))
        .and_then(|t| t.extract())
        .map_err(|e| ConfigError::new_err(format!("{what}: not JSON: {e}")))?;
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::new_err(format!(
            "{what}: {} bytes as JSON, more than the configuration's {MAX_CONFIG_BYTES}",
            text.len()
        )));
    }
    // Strict: `json.dumps({1: "a", "1": "b"})` writes the key "1" twice.
    testpilot_flight::json::from_str(&text)
        .map_err(|e| ConfigError::new_err(format!("{what}: cannot be read as JSON: {e}")))
}

/// `poll` as the configuration takes it: a duration text (`"60s"`), milliseconds, or a
/// `datetime.timedelta`.
fn poll_value(poll: &Bound<'_, PyAny>) -> PyResult<Value> {
    if poll.is_instance_of::<PyBool>() {
        return Err(ConfigError::new_err(
            "poll: expected a duration such as \"60s\" or \"15m\", milliseconds, or a datetime.timedelta; not True or False",
        ));
    }
    if let Ok(s) = poll.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    }
    if let Ok(ms) = poll.extract::<i64>() {
        return Ok(json!(ms));
    }
    if poll.is_instance_of::<PyDelta>() {
        let seconds: f64 = poll.call_method0("total_seconds")?.extract()?;
        return Ok(json!((seconds * 1000.0).round() as i64));
    }
    Err(ConfigError::new_err(format!(
        "poll: expected a duration such as \"60s\" or \"15m\", milliseconds, or a datetime.timedelta; got {}",
        poll.get_type().name()?
    )))
}

fn to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    pythonize(py, value).map_err(|e| Error::new_err(format!("cannot hand the value over: {e}")))
}

/// The pilot for one profile, embedded in this application (docs/embedding.md, "Python").
///
/// Pilot(profile, tower, public_key, person=None, poll="60s", *, insecure_unsigned=False)
///
/// profile: the profile folder (created private to this user). tower: a tower's http(s)://
/// URL, or file://PATH of a signed index. public_key: the tower's public key (`testpilot
/// tower pubkey`); None only with insecure_unsigned=True (development). person: the person
/// context for targeting, a dict. poll: how often to fetch the index ("60s", "15m",
/// milliseconds or a timedelta).
///
/// The profile is locked until close() or the end of a `with` block: a second Pilot on it
/// raises LockedError. Every method may be called from any thread; the GIL is released while
/// the pilot works.
#[pyclass(module = "testpilot", frozen)]
struct Pilot {
    /// `None` once closed. Each call clones the `Arc` and lets go of the lock before calling
    /// into the pilot, so a slow call never holds up another thread's.
    inner: Mutex<Option<Arc<EmbeddedPilot>>>,
    profile: String,
}

impl Pilot {
    fn pilot(&self) -> PyResult<Arc<EmbeddedPilot>> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| {
                ClosedError::new_err(format!(
                    "the pilot for the profile {} is closed: open it again with a new Pilot(...)",
                    self.profile
                ))
            })
    }

    /// Runs `f` on the pilot with the GIL released.
    fn call<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&EmbeddedPilot) -> Result<T, PilotError> + Send,
    ) -> PyResult<T> {
        let pilot = self.pilot()?;
        py.detach(|| f(&pilot)).map_err(raise)
    }
}

#[pymethods]
impl Pilot {
    /// Opens the profile (creating it, private to this user) and takes its lock; nothing runs
    /// until `start()`. Raises `ConfigError` naming a bad argument, `LockedError` when another
    /// pilot holds the profile.
    #[new]
    #[pyo3(
        signature = (profile, tower, public_key, person=None, poll=None, *, insecure_unsigned=false),
        text_signature = "(profile, tower, public_key, person=None, poll='60s', *, insecure_unsigned=False)"
    )]
    fn new(
        py: Python<'_>,
        profile: std::path::PathBuf,
        tower: String,
        public_key: Option<String>,
        person: Option<Bound<'_, PyAny>>,
        poll: Option<Bound<'_, PyAny>>,
        insecure_unsigned: bool,
    ) -> PyResult<Pilot> {
        let profile_text = profile
            .to_str()
            .ok_or_else(|| ConfigError::new_err("profile: the path is not valid UTF-8"))?
            .to_string();
        let person = match person {
            None => Value::Null,
            Some(p) if p.is_none() => Value::Null,
            Some(p) => to_json(py, "person", &p)?,
        };
        let poll = match poll {
            None => json!(DEFAULT_POLL),
            Some(p) => poll_value(&p)?,
        };
        let text = json!({
            "profile": profile_text, "tower": tower, "publicKey": public_key,
            "insecureUnsigned": insecure_unsigned, "person": person, "poll": poll,
        })
        .to_string();
        let config = EmbedConfig::from_json(&text).map_err(config_error)?;
        let pilot = py
            .detach(|| EmbeddedPilot::open(config, None))
            .map_err(raise)?;
        Ok(Pilot {
            inner: Mutex::new(Some(Arc::new(pilot))),
            profile: profile_text,
        })
    }

    /// Starts the agent on a thread of its own: it fetches the index at once, then every `poll`,
    /// and runs the flights this person takes part in. Raises `UsageError` when already started
    /// or stopped.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        self.call(py, |p| p.start())
    }

    /// Whether the agent runs (started, not stopped, not failed).
    #[getter]
    fn running(&self, py: Python<'_>) -> bool {
        match self.pilot() {
            Ok(p) => py.detach(|| p.running()),
            Err(_) => false,
        }
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    /// The profile folder.
    #[getter]
    fn profile(&self) -> &str {
        &self.profile
    }

    /// The value a flight set for feature `id` (a dict), or None when no live flight sets it.
    /// Read from memory: no I/O.
    fn feature<'py>(&self, py: Python<'py>, id: String) -> PyResult<Bound<'py, PyAny>> {
        match self.call(py, |p| Ok(p.feature(&id)))? {
            Some(f) => to_py(py, &f.value),
            None => Ok(py.None().into_bound(py)),
        }
    }

    /// `{"value", "studyname", "version", "arm"}` for feature `id`: its value and the flight
    /// (and arm) that set it; None when no live flight sets it.
    fn feature_info<'py>(&self, py: Python<'py>, id: String) -> PyResult<Bound<'py, PyAny>> {
        match self.call(py, |p| Ok(p.feature(&id)))? {
            Some(f) => to_py(py, &json!(f)),
            None => Ok(py.None().into_bound(py)),
        }
    }

    /// Every feature flights have set: `{id: value}`.
    fn features<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let all = self.call(py, |p| Ok(p.features()))?;
        let values: serde_json::Map<String, Value> =
            all.into_iter().map(|(id, f)| (id, f.value)).collect();
        to_py(py, &Value::Object(values))
    }

    /// The flights running on this machine: `[{"studyname", "version", "arm", "step",
    /// "statusLine", "startedAt"}]`.
    fn flights<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let flights = self.call(py, |p| p.active_flights())?;
        to_py(py, &Value::Array(flights))
    }

    /// Feeds an event: `observe` steps waiting for `topic` (and `subject`, when they name one)
    /// go on, and recordings watching it record it. Returns the event's id.
    #[pyo3(signature = (topic, subject=None, value=None))]
    fn observe(
        &self,
        py: Python<'_>,
        topic: String,
        subject: Option<String>,
        value: Option<f64>,
    ) -> PyResult<i64> {
        self.call(py, |p| p.observe(&topic, subject.as_deref(), value))
    }

    /// The prompts waiting for the person (as `testpilot later list --json`): each has an
    /// `id` to `answer`.
    fn prompts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let prompts = self.call(py, |p| p.prompts())?;
        to_py(py, &Value::Array(prompts))
    }

    /// Answers prompt `id` with "ok", "no" or "later"; anything else raises `UsageError`.
    fn answer(&self, py: Python<'_>, id: i64, answer: String) -> PyResult<()> {
        self.call(py, |p| p.answer(id, &answer))
    }

    /// The flight log: the list `testpilot log --json` prints.
    fn log<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let log = self.call(py, |p| p.log())?;
        to_py(py, &Value::Array(log))
    }

    /// Leaves `flight` (or, with None, every flight, and starts no new ones), undoing what it
    /// did. Returns the names of the flights ended.
    #[pyo3(signature = (flight=None))]
    fn optout(&self, py: Python<'_>, flight: Option<String>) -> PyResult<Vec<String>> {
        self.call(py, |p| p.optout(flight.as_deref()))
    }

    /// Asks the agent to fetch the index now.
    fn sync_now(&self, py: Python<'_>) -> PyResult<()> {
        self.call(py, |p| {
            p.sync_now();
            Ok(())
        })
    }

    /// Stops the agent after the journal write under way (waiting up to 10 s). Flights stay
    /// as they are and go on at the next start. Raises the error the agent stopped with, if any.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        self.call(py, |p| p.stop())
    }

    /// Stops the agent and lets go of the profile, so that another pilot may open it. Every
    /// later call raises `ClosedError`; closing again does nothing.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let taken = self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(pilot) = taken else {
            return Ok(());
        };
        // The profile's lock goes with the last reference: at once, unless another thread is
        // in a call right now, then when that call returns.
        py.detach(move || pilot.stop()).map_err(raise)
    }

    fn __enter__(slf: Py<Pilot>) -> Py<Pilot> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let state = if self.closed() { "closed" } else { "open" };
        format!("<testpilot.Pilot profile={:?} {state}>", self.profile)
    }
}

/// How often a Python pilot fetches the index unless told otherwise.
const DEFAULT_POLL: &str = "60s";

#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Pilot>()?;
    m.add("Error", py.get_type::<Error>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("LockedError", py.get_type::<LockedError>())?;
    m.add("UsageError", py.get_type::<UsageError>())?;
    m.add("ClosedError", py.get_type::<ClosedError>())?;
    m.add("HostError", py.get_type::<HostError>())?;
    m.add("JournalError", py.get_type::<JournalError>())?;
    m.add("DEFAULT_POLL", DEFAULT_POLL)?;
    Ok(())
}
