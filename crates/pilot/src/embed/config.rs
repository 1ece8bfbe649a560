//! The configuration an application opens a profile with (docs/embedding.md): the same JSON
//! for Rust, C (`tp_pilot_open`) and Python.

use crate::Error;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;
use testpilot_flight::time::parse_duration;

/// The largest configuration text taken, before it is parsed.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// The shortest poll interval taken: more often only loads the tower.
pub const MIN_POLL: Duration = Duration::from_secs(1);

/// How an embedded pilot runs.
#[derive(Debug, Clone)]
pub struct EmbedConfig {
    /// The profile folder: journal, add-ons, features (created 0700 when missing).
    pub profile: PathBuf,
    /// `http(s)://...` (a tower) or `file://PATH` (a signed index file).
    pub tower: String,
    /// The tower's Ed25519 public key, standard base64 of its 32 bytes.
    pub public_key: Option<String>,
    /// Development only: accept unsigned indexes.
    pub insecure_unsigned: bool,
    /// The person context (`personid` is generated and kept when absent).
    pub person: Option<Value>,
    /// How often to ask the tower for the index (default 15 minutes). With a tower that
    /// streams changes (`GET /control/stream`) the pilot also fetches as soon as it moves.
    pub poll: Duration,
}

impl EmbedConfig {
    pub fn new(profile: impl Into<PathBuf>, tower: impl Into<String>) -> EmbedConfig {
        EmbedConfig {
            profile: profile.into(),
            tower: tower.into(),
            public_key: None,
            insecure_unsigned: false,
            person: None,
            poll: Duration::from_secs(15 * 60),
        }
    }

    /// Reads `{"profile", "tower", "publicKey", "insecureUnsigned", "person", "poll"}`; every
    /// problem names its field.
    pub fn from_json(text: &str) -> Result<EmbedConfig, Error> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(Error::Usage(format!(
                "the configuration is {} bytes, more than {}: it holds a profile, a tower, a key and a person",
                text.len(),
                MAX_CONFIG_BYTES
            )));
        }
        let v: Value = testpilot_flight::json::from_str(text).map_err(|e| {
            Error::Usage(format!(
                "the configuration is not JSON (line {}, column {}): {e}",
                e.line(),
                e.column()
            ))
        })?;
        let Value::Object(map) = v else {
            return Err(Error::Usage(
                "the configuration must be a JSON object like {\"profile\": DIR, \"tower\": URL, \"publicKey\": KEY}".into(),
            ));
        };
        const KNOWN: [&str; 6] = [
            "profile",
            "tower",
            "publicKey",
            "insecureUnsigned",
            "person",
            "poll",
        ];
        for k in map.keys() {
            if !KNOWN.contains(&k.as_str()) {
                let squash = |s: &str| s.replace(['_', '-'], "").to_ascii_lowercase();
                let hint = KNOWN
                    .iter()
                    .find(|n| squash(n) == squash(k))
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                return Err(Error::Usage(format!(
                    "configuration.{k}: unknown field{hint}; known: {}",
                    KNOWN.join(", ")
                )));
            }
        }
        let text_field = |k: &str| -> Result<Option<String>, Error> {
            match map.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.is_empty() && !s.contains('\0') => Ok(Some(s.clone())),
                Some(_) => Err(Error::Usage(format!(
                    "configuration.{k}: expected a non-empty string"
                ))),
            }
        };
        let profile = text_field("profile")?.ok_or_else(|| {
            Error::Usage("configuration.profile: missing: give the profile folder".into())
        })?;
        let tower = text_field("tower")?.ok_or_else(|| {
            Error::Usage(
                "configuration.tower: missing: give the tower's URL or file:// URL of an index"
                    .into(),
            )
        })?;
        // Checked here, so that a bad URL fails at open and not on the agent's thread.
        crate::sync::TowerSource::parse(&tower)
            .map_err(|e| Error::Usage(format!("configuration.tower: {e}")))?;
        let public_key = text_field("publicKey")?;
        if let Some(k) = &public_key {
            testpilot_flight::index::parse_public_key(k)
                .map_err(|e| Error::Usage(format!("configuration.publicKey: {e}")))?;
        }
        let insecure_unsigned = match map.get("insecureUnsigned") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(Error::Usage(
                    "configuration.insecureUnsigned: expected true or false".into(),
                ))
            }
        };
        if public_key.is_none() && !insecure_unsigned {
            return Err(Error::Usage(
                "configuration.publicKey: missing: give the tower's public key (`testpilot tower pubkey` prints it), or \"insecureUnsigned\": true for development".into(),
            ));
        }
        let person = match map.get("person") {
            None | Some(Value::Null) => None,
            Some(p @ Value::Object(_)) => Some(p.clone()),
            Some(_) => {
                return Err(Error::Usage(
                    "configuration.person: expected an object like {\"channel\": \"beta\", \"locale\": \"en-US\"}".into(),
                ))
            }
        };
        let poll = match map.get("poll") {
            None | Some(Value::Null) => Duration::from_secs(15 * 60),
            Some(v) => Duration::from_millis(
                parse_duration(v)
                    .map_err(|e| Error::Usage(format!("configuration.poll: {e}")))?
                    .ms,
            ),
        };
        if poll < MIN_POLL {
            return Err(Error::Usage(format!(
                "configuration.poll: {} ms is too often: poll at least every {} s apart (a tower that streams changes reaches the pilot at once anyway)",
                poll.as_millis(),
                MIN_POLL.as_secs()
            )));
        }
        Ok(EmbedConfig {
            profile: PathBuf::from(profile),
            tower,
            public_key,
            insecure_unsigned,
            person,
            poll,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

    #[test]
    fn reads_every_field() {
        let c = EmbedConfig::from_json(&format!(
            r#"{{"profile": "/tmp/p", "tower": "https://t.example", "publicKey": "{KEY}", "person": {{"channel": "beta"}}, "poll": "60s"}}"#
        ))
        .unwrap();
        assert_eq!(c.poll, Duration::from_secs(60));
        assert_eq!(c.person.unwrap()["channel"], "beta");
    }

    #[test]
    fn names_the_field_that_is_wrong() {
        let cases = [
            ("[]", "must be a JSON object"),
            ("{", "not JSON"),
            (
                r#"{"tower": "file:///x", "insecureUnsigned": true}"#,
                "configuration.profile: missing",
            ),
            (
                r#"{"profile": "p", "tower": "file:///x"}"#,
                "configuration.publicKey: missing",
            ),
            (
                r#"{"profile": "p", "tower": "ftp://x", "insecureUnsigned": true}"#,
                "configuration.tower",
            ),
            (
                r#"{"profile": "p", "tower": "file:///x", "publicKey": "nope"}"#,
                "configuration.publicKey",
            ),
            (
                r#"{"profile": "p", "tower": "file:///x", "insecureUnsigned": true, "poll": "soon"}"#,
                "configuration.poll",
            ),
            (
                r#"{"profile": "p", "tower": "file:///x", "insecureUnsigned": true, "person": 3}"#,
                "configuration.person",
            ),
            (
                r#"{"profile": "p", "tower": "file:///x", "insecureUnsigned": true, "public_key": "k"}"#,
                "did you mean `publicKey`",
            ),
        ];
        for (text, want) in cases {
            let e = EmbedConfig::from_json(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
        let big = format!(r#"{{"profile": "{}"}}"#, "x".repeat(MAX_CONFIG_BYTES));
        assert!(EmbedConfig::from_json(&big)
            .unwrap_err()
            .to_string()
            .contains("more than"));
    }
}
