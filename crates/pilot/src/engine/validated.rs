//! Flights validated from their spec, kept per thread: a tick reads the stored spec of every
//! running flight and each index applied brings every flight again, and validating the same
//! spec again gives the same flight (validation is a pure function of the spec). A simulator
//! running thousands of pilots on one thread validates each flight once.
//!
//! Bounded: the last [`KEPT`] specs; a spec that does not validate is never kept.

use serde_json::Value;
use std::cell::RefCell;
use std::sync::Arc;
use testpilot_flight::{Diagnostics, Flight};

/// How many validated specs a thread keeps.
const KEPT: usize = 32;

struct Validated {
    json: Value,
    /// The spec as the journal stores it (`json` as text).
    text: String,
    flight: Arc<Flight>,
}

thread_local! {
    static KEPT_SPECS: RefCell<(Vec<Validated>, usize)> = const { RefCell::new((Vec::new(), 0)) };
}

fn keep(v: Validated) {
    KEPT_SPECS.with(|k| {
        let (list, next) = &mut *k.borrow_mut();
        if list.len() < KEPT {
            list.push(v);
        } else {
            list[*next] = v;
            *next = (*next + 1) % KEPT;
        }
    });
}

/// The flight a stored spec text validates to.
pub(super) fn from_text(
    text: &str,
    json: impl FnOnce() -> Value,
) -> Result<Arc<Flight>, Diagnostics> {
    let found = KEPT_SPECS.with(|k| {
        k.borrow()
            .0
            .iter()
            .find(|v| v.text == text)
            .map(|v| v.flight.clone())
    });
    if let Some(f) = found {
        return Ok(f);
    }
    let json = json();
    let flight = Arc::new(Flight::from_json(&json)?);
    keep(Validated {
        json,
        text: text.to_string(),
        flight: flight.clone(),
    });
    Ok(flight)
}

/// The flight a spec from an index validates to, with the text the journal stores it as.
pub(super) fn from_json(json: &Value) -> Result<(String, Arc<Flight>), Diagnostics> {
    let found = KEPT_SPECS.with(|k| {
        k.borrow()
            .0
            .iter()
            .find(|v| v.json == *json)
            .map(|v| (v.text.clone(), v.flight.clone()))
    });
    if let Some(f) = found {
        return Ok(f);
    }
    let flight = Arc::new(Flight::from_json(json)?);
    let text = json.to_string();
    keep(Validated {
        json: json.clone(),
        text: text.clone(),
        flight: flight.clone(),
    });
    Ok((text, flight))
}
