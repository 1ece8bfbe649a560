//! The OpenFeature provider (cargo feature `openfeature`; docs/embedding.md, "OpenFeature"):
//! an application that reads its flags through OpenFeature reads the features flights set.
//!
//! - Flag key `ID` (a feature's id): the feature's value, an object (struct resolution).
//! - Flag key `ID.PATH` (a dot path into the value, array items by number): that field, as
//!   bool, string, int, float or object. Feature ids may hold dots themselves: the longest
//!   prefix of the key that is a feature in effect is the feature, the rest the path.
//! - `variant`: the arm; `reason`: `SPLIT` when chance picked the value (arms, or a
//!   `randomDeploy` sample), `TARGETING_MATCH` otherwise; flag metadata `studyname`, `version`.
//! - No flight in effect sets it (or the feature lacks the field): the type's default, reason
//!   `DEFAULT`, and flag metadata `message` saying why. A field of another type: the error
//!   `TYPE_MISMATCH` with a message naming the field and both types.
//!
//! Reads take the pilot's in-memory snapshot ([`EmbeddedPilot::feature`]): no I/O, no lock
//! but a read-lock.

use super::{EmbeddedPilot, FeatureValue};
use open_feature::provider::{FeatureProvider, ProviderMetadata, ResolutionDetails};
use open_feature::{
    async_trait, EvaluationContext, EvaluationError, EvaluationErrorCode, EvaluationReason,
    EvaluationResult, FlagMetadata, StructValue, Value,
};
use serde_json::Value as Json;
use std::sync::Arc;

/// The provider's name in OpenFeature's metadata.
pub const PROVIDER_NAME: &str = "testpilot";

/// The longest flag key looked up; longer keys are refused before any work.
pub const MAX_FLAG_KEY_BYTES: usize = 1024;

/// Reads the features of an [`EmbeddedPilot`] for OpenFeature. Give it the pilot the
/// application opened and started (shared in an `Arc`).
pub struct TestPilotProvider {
    pilot: Arc<EmbeddedPilot>,
    metadata: ProviderMetadata,
}

impl TestPilotProvider {
    pub fn new(pilot: Arc<EmbeddedPilot>) -> TestPilotProvider {
        TestPilotProvider {
            pilot,
            metadata: ProviderMetadata::new(PROVIDER_NAME),
        }
    }

    /// The pilot the flags are read from.
    pub fn pilot(&self) -> &Arc<EmbeddedPilot> {
        &self.pilot
    }

    /// Resolves `key` and converts the value it names with `convert` (`None`: another type).
    fn resolve<T: Default>(
        &self,
        key: &str,
        want: &str,
        convert: impl Fn(&Json) -> Option<T>,
    ) -> EvaluationResult<ResolutionDetails<T>> {
        let (feature, path) = match self.find(key)? {
            Ok(found) => found,
            Err(why) => return Ok(default(why)),
        };
        let Some(field) = walk(&feature.value, &path) else {
            return Ok(default(format!(
                "the feature `{}` set by the flight `{}` has no field `{}`",
                &key[..key.len() - path.len() - 1],
                feature.studyname,
                path
            )));
        };
        let Some(value) = convert(field) else {
            let what = if path.is_empty() {
                format!("the feature `{key}`")
            } else {
                format!(
                    "the field `{path}` of the feature `{}`",
                    &key[..key.len() - path.len() - 1]
                )
            };
            return Err(EvaluationError::builder()
                .code(EvaluationErrorCode::TypeMismatch)
                .message(format!(
                    "{what} (set by the flight `{}`) is {}, not {want}",
                    feature.studyname,
                    kind(field)
                ))
                .build());
        };
        let reason = if feature.sampled {
            EvaluationReason::Split
        } else {
            EvaluationReason::TargetingMatch
        };
        let metadata = FlagMetadata::default()
            .with_value("studyname", feature.studyname.clone())
            .with_value(
                "version",
                i64::try_from(feature.version).unwrap_or(i64::MAX),
            );
        Ok(ResolutionDetails {
            value,
            variant: feature.arm,
            reason: Some(reason),
            flag_metadata: Some(metadata),
        })
    }

    /// The feature a flag key names and the dot path after its id (`""`: the whole value), or
    /// why none is in effect.
    #[allow(clippy::type_complexity)]
    fn find(&self, key: &str) -> EvaluationResult<Result<(FeatureValue, String), String>> {
        if key.len() > MAX_FLAG_KEY_BYTES {
            return Err(EvaluationError::builder()
                .code(EvaluationErrorCode::ParseError)
                .message(format!(
                    "the flag key is {} bytes, more than {MAX_FLAG_KEY_BYTES}: give a feature id and a dot path into its value",
                    key.len()
                ))
                .build());
        }
        if let Some(f) = self.pilot.feature(key) {
            return Ok(Ok((f, String::new())));
        }
        for (i, _) in key.rmatch_indices('.') {
            if let Some(f) = self.pilot.feature(&key[..i]) {
                return Ok(Ok((f, key[i + 1..].to_string())));
            }
        }
        Ok(Err(format!(
            "no flight in effect on this machine sets the feature `{key}`"
        )))
    }
}

/// The type's default, reason `DEFAULT`, and why in the flag metadata's `message`.
fn default<T: Default>(why: String) -> ResolutionDetails<T> {
    tracing::debug!("OpenFeature: {why}");
    ResolutionDetails {
        value: T::default(),
        variant: None,
        reason: Some(EvaluationReason::Default),
        flag_metadata: Some(FlagMetadata::default().with_value("message", why)),
    }
}

/// The value at a dot path (`""`: the value itself); numbers index arrays.
fn walk<'a>(value: &'a Json, path: &str) -> Option<&'a Json> {
    if path.is_empty() {
        return Some(value);
    }
    path.split('.').try_fold(value, |v, seg| match v {
        Json::Object(m) => m.get(seg),
        Json::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a bool",
        Json::Number(n) if n.is_i64() => "an integer",
        Json::Number(_) => "a number with a fraction",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

/// A JSON value as OpenFeature's; `null` fields of objects are left out (OpenFeature has no
/// null), a `null` in a list makes it unconvertible.
fn to_value(v: &Json) -> Option<Value> {
    Some(match v {
        Json::Null => return None,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64()?),
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(a) => Value::Array(a.iter().map(to_value).collect::<Option<_>>()?),
        Json::Object(m) => Value::Struct(to_struct(m)?),
    })
}

fn to_struct(m: &serde_json::Map<String, Json>) -> Option<StructValue> {
    let mut s = StructValue::default();
    for (k, v) in m.iter().filter(|(_, v)| !v.is_null()) {
        s.add_field(k, to_value(v)?);
    }
    Some(s)
}

#[async_trait]
impl FeatureProvider for TestPilotProvider {
    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    async fn resolve_bool_value(
        &self,
        flag_key: &str,
        _: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        self.resolve(flag_key, "a bool", Json::as_bool)
    }

    async fn resolve_int_value(
        &self,
        flag_key: &str,
        _: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        self.resolve(flag_key, "an integer", Json::as_i64)
    }

    async fn resolve_float_value(
        &self,
        flag_key: &str,
        _: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        self.resolve(flag_key, "a number", Json::as_f64)
    }

    async fn resolve_string_value(
        &self,
        flag_key: &str,
        _: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        self.resolve(flag_key, "a string", |v| v.as_str().map(str::to_string))
    }

    async fn resolve_struct_value(
        &self,
        flag_key: &str,
        _: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        self.resolve(flag_key, "an object without null in its lists", |v| {
            v.as_object().and_then(to_struct)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn walks_dot_paths_through_objects_and_lists() {
        let v = json!({"a": {"b": [10, {"c": true}]}});
        assert_eq!(walk(&v, ""), Some(&v));
        assert_eq!(walk(&v, "a.b.0"), Some(&json!(10)));
        assert_eq!(walk(&v, "a.b.1.c"), Some(&json!(true)));
        assert_eq!(walk(&v, "a.b.x"), None);
        assert_eq!(walk(&v, "a.b.0.c"), None);
        assert_eq!(walk(&v, "nope"), None);
    }

    #[test]
    fn converts_json_leaving_out_null_fields() {
        let s = to_struct(
            json!({"n": null, "i": 3, "f": 0.5, "l": ["x"], "o": {"b": false}})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert!(!s.fields.contains_key("n"));
        assert_eq!(s.fields["i"], Value::Int(3));
        assert_eq!(s.fields["f"], Value::Float(0.5));
        assert_eq!(s.fields["l"], Value::Array(vec![Value::String("x".into())]));
        assert!(to_value(&json!([1, null])).is_none());
        assert_eq!(
            to_value(&json!(u64::MAX)),
            Some(Value::Float(u64::MAX as f64))
        );
    }
}
