//! `explain` cases as data: a flight, a person, a moment, and what must come out. The
//! expected buckets are the formulas of docs/flight-spec.md ("Bucketing") computed
//! independently (Python's hashlib).

use crate::{data_dir, json_files, read_json};
use testpilot_flight::enrollment::{decide, explain};
use testpilot_flight::{parse_dateish, Flight, Person};

#[test]
fn explain_vectors() {
    let files = json_files(&data_dir().join("explain"));
    assert!(!files.is_empty());
    for f in files {
        let case = read_json(&f);
        let flight =
            Flight::from_json(&case["flight"]).unwrap_or_else(|d| panic!("{}: {d}", f.display()));
        for (i, p) in case["people"].as_array().unwrap().iter().enumerate() {
            let person = Person::from_json(&p["person"]).unwrap();
            let now = parse_dateish(&case["now"]).unwrap().at;
            let e = explain(&flight, &person, now);
            // The pilot's fast path decides exactly as the explanation says.
            let d = decide(&flight, &person, now);
            assert_eq!(
                (d.eligible, d.sampled, d.enrolled, d.killed, d.expired),
                (e.eligible, e.sampled, e.enrolled, e.killed, e.expired)
            );
            assert_eq!(d.arm.map(|i| flight.arms[i].name.clone()), e.arm);
            let got = serde_json::to_value(&e).unwrap();
            for (k, want) in p["expect"].as_object().unwrap() {
                assert_eq!(
                    &got[k],
                    want,
                    "{} person {i} field {k}; got {got:#}",
                    f.display()
                );
            }
        }
    }
}
