//! The JSON Schema of the flight spec, generated from the model.

/// The JSON Schema (2020-12) of a flight, as `testpilot flight schema` prints it.
pub fn flight_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(crate::spec::Flight)).unwrap_or_default()
}
