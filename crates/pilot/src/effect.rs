//! What a step did (or is about to do) to the machine or the network, as the journal keeps it.
//!
//! Stored as today's two columns, `kind` and `spec` (JSON), so journals written before this
//! type existed load unchanged: the variants' field names are the stored JSON's keys.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "spec", rename_all = "kebab-case")]
pub enum Effect {
    /// A notification delivered to the application (not undone: it cannot be taken back).
    Notify {
        topic: String,
        subject: Option<String>,
        data: Option<Value>,
    },
    /// A feature set to `value`; undo puts back `prior` (`None`: it was unset).
    Feature {
        id: String,
        value: Value,
        prior: Option<Value>,
    },
    /// An add-on installed (or ensured) from a checked package; undo removes it and puts back
    /// what the host kept aside.
    AddonInstall {
        id: String,
        sha256: String,
        source: String,
        op: String,
    },
    /// An add-on uninstalled and kept aside; undo puts it back.
    AddonUninstall { id: String },
    /// Events recorded by an `instrument` step (ids after `after`, up to time `until`); undo
    /// deletes them.
    Record {
        watch: Vec<String>,
        after: i64,
        until: i64,
    },
    /// A streaming recording (`instrument` without `upload`): the watched topics observed
    /// after event id `after`, from the step's start `from` until `until`, kept in the
    /// journal's recordings until the tower accepts them; undo deletes what is left.
    Stream {
        watch: Vec<String>,
        after: i64,
        from: i64,
        until: i64,
    },
    /// A `ping` request sent off the machine (never repeated, not undone).
    Ping(Sent),
    /// An `instrument` upload sent off the machine (never repeated, not undone).
    Upload(Sent),
}

/// A request sent off the machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sent {
    pub method: String,
    pub url: String,
    pub body: Option<Value>,
    pub attempt: u32,
}

/// The kinds whose effects the undo reverses, in the order of [`Effect`]'s variants.
pub const UNDOABLE: [&str; 5] = [
    "feature",
    "addon-install",
    "addon-uninstall",
    "record",
    "stream",
];

impl Effect {
    /// The stored `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Effect::Notify { .. } => "notify",
            Effect::Feature { .. } => "feature",
            Effect::AddonInstall { .. } => "addon-install",
            Effect::AddonUninstall { .. } => "addon-uninstall",
            Effect::Record { .. } => "record",
            Effect::Stream { .. } => "stream",
            Effect::Ping(_) => "ping",
            Effect::Upload(_) => "upload",
        }
    }

    /// The stored `spec` column.
    pub fn spec(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        v.get_mut("spec").map(Value::take).unwrap_or(Value::Null)
    }

    /// Reads the stored columns back, or says what is wrong with them.
    pub fn from_stored(kind: &str, spec: Value) -> Result<Effect, String> {
        serde_json::from_value(json!({"kind": kind, "spec": spec}))
            .map_err(|e| format!("a `{kind}` effect that cannot be read: {e}"))
    }

    /// Whether ending the flight reverses this effect.
    pub fn undoable(&self) -> bool {
        UNDOABLE.contains(&self.kind())
    }

    /// The add-on or feature this effect changes (what a later flight may change again).
    pub fn target(&self) -> Option<&str> {
        match self {
            Effect::Feature { id, .. }
            | Effect::AddonInstall { id, .. }
            | Effect::AddonUninstall { id } => Some(id),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored forms journals already hold must read back, and write back identically.
    #[test]
    fn stored_forms_round_trip() {
        let cases = [
            (
                "feature",
                json!({"id": "f", "value": {"on": true}, "prior": null}),
            ),
            (
                "feature",
                json!({"id": "f", "value": {"on": true}, "prior": {"on": false}}),
            ),
            (
                "addon-install",
                json!({"id": "a@x", "sha256": "00", "source": "file:///a.zip", "op": "install"}),
            ),
            ("addon-uninstall", json!({"id": "a@x"})),
            (
                "notify",
                json!({"topic": "t", "subject": null, "data": {"k": 1}}),
            ),
            (
                "record",
                json!({"watch": ["a", "b"], "after": 3, "until": 9}),
            ),
            (
                "stream",
                json!({"watch": ["a"], "after": 3, "from": 5, "until": 9}),
            ),
            (
                "ping",
                json!({"method": "GET", "url": "https://x.test/", "body": null, "attempt": 1}),
            ),
            (
                "upload",
                json!({"method": "POST", "url": "https://x.test/", "body": {"e": []}, "attempt": 2}),
            ),
        ];
        for (kind, spec) in cases {
            let e = Effect::from_stored(kind, spec.clone()).unwrap();
            assert_eq!(e.kind(), kind);
            assert_eq!(e.spec(), spec, "{kind}");
        }
        assert!(Effect::from_stored("feature", json!({"id": 1}))
            .unwrap_err()
            .contains("`feature` effect"));
        assert!(Effect::from_stored("teleport", json!({})).is_err());
    }
}
