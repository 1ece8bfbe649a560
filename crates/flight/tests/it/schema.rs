//! The JSON Schema agrees with validation: every flight validation accepts, the schema
//! accepts; the bad cases that are about one field alone, the schema refuses too.

use crate::{data_dir, examples_dir, json_files, read_json};
use testpilot_flight::schema::flight_schema;

fn validator() -> (boon::Schemas, boon::SchemaIndex) {
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler
        .add_resource("flight.schema.json", flight_schema())
        .unwrap();
    let idx = compiler
        .compile("flight.schema.json", &mut schemas)
        .unwrap();
    (schemas, idx)
}

#[test]
fn schema_accepts_every_valid_flight() {
    let (schemas, idx) = validator();
    let mut files = json_files(&examples_dir());
    files.extend(json_files(&data_dir().join("good")));
    for f in files {
        let v = read_json(&f);
        if let Err(e) = schemas.validate(&v, idx) {
            panic!("{}: the schema refuses a valid flight: {e:#}", f.display());
        }
    }
}

#[test]
fn schema_refuses_field_level_mistakes() {
    let (schemas, idx) = validator();
    for name in [
        "unknown-fields",
        "wrong-types",
        "random-deploy-range",
        "arms",
        "studyname",
        "directives",
        "not-an-object",
    ] {
        let v = read_json(&data_dir().join("bad").join(format!("{name}.json")));
        assert!(
            schemas.validate(&v, idx).is_err(),
            "the schema accepts bad/{name}.json"
        );
    }
}
