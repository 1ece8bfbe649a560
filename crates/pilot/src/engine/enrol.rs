//! Enrolment: setting flights up from an accepted index. The ones this person is in start,
//! the others are noted as not eligible or not sampled (with the reasons), killed and withdrawn
//! ones end. A running flight keeps the version it started with ("update only on kill").

use super::schedule::INDEX_EXPIRES;
use super::{report, Pilot};
use crate::journal::{FlightRow, Line, NewFlight};
use crate::Error;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use testpilot_flight::index::IndexPayload;
use testpilot_flight::report::Status;
use testpilot_flight::{enrollment, Flight, Timestamp};

impl Pilot {
    /// Sets up flights from an index that `testpilot_flight::index::accept` accepted, and
    /// keeps its expiry: once it passes with no newer index, running flights end
    /// (`indexexpired`). The expiry is written first, so a crash in between can only make
    /// the pilot ask for the index again, never run flights past an old expiry.
    pub fn apply_accepted(&mut self, payload: &IndexPayload) -> Result<(), Error> {
        let at = payload.expires_at.0.to_string();
        if self.journal.meta(INDEX_EXPIRES)?.as_deref() != Some(at.as_str()) {
            self.journal.set_meta(INDEX_EXPIRES, &at)?;
        }
        self.apply_index(&payload.flights, payload.serial)
    }

    /// Sets up flights from an accepted index: starts the ones this person is in, ends killed
    /// and withdrawn ones. A running flight keeps the version it started with ("update only on
    /// kill").
    pub fn apply_index(&mut self, flights: &[Value], serial: u64) -> Result<(), Error> {
        let now = self.clock.now();
        let optout_all = self.journal.meta("optout_all")?.is_some();
        // Nothing new starts from an expired index.
        let expired = self.index_expires_at()?.is_some_and(|at| now >= at);
        // Problems with an index are noted once, when it is new, not at every poll.
        let fresh = self.journal.meta("last_serial")? != Some(serial.to_string());
        let mut seen = BTreeSet::new();
        for (i, v) in flights.iter().enumerate() {
            let name_hint = v
                .get("studyname")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string();
            let (text, flight) = match super::validated::from_json(v) {
                Ok(f) => f,
                Err(d) => {
                    seen.insert(name_hint.clone());
                    let msg = format!(
                        "flight #{i} (`{name_hint}`) in index serial {serial} is invalid and was skipped: {}",
                        d.iter().map(|x| format!("{}: {}", x.path, x.message)).collect::<Vec<_>>().join("; ")
                    );
                    if fresh {
                        self.journal.note("", now, "index", &msg, None)?;
                    }
                    continue;
                }
            };
            let name = flight.studyname.clone();
            seen.insert(name.clone());
            match self.journal.flight(&name)? {
                Some(row) if row.status == Status::Running.as_str() => {
                    if flight.kill {
                        self.end_flight(&name, Status::Killed, "the flight was killed", None, now)?;
                    }
                }
                // Ran here and ended: a flight runs once per profile.
                Some(row) if row.started_at.is_some() => {}
                existing => {
                    if flight.kill || optout_all || expired {
                        continue;
                    }
                    self.enroll(&flight, &text, existing.as_ref(), now)?;
                }
            }
        }
        for name in self.running()? {
            if !seen.contains(&name) {
                let why = format!("the flight is no longer in the index (serial {serial})");
                self.end_flight(&name, Status::Withdrawn, &why, None, now)?;
            }
        }
        Ok(())
    }

    fn enroll(
        &mut self,
        flight: &Flight,
        spec_text: &str,
        existing: Option<&FlightRow>,
        now: Timestamp,
    ) -> Result<(), Error> {
        let e = enrollment::explain(flight, &self.person, now);
        if e.expired {
            return Ok(());
        }
        let version = flight.version.unwrap_or(0);
        let status = if !e.eligible {
            Status::Ineligible
        } else if !e.sampled {
            Status::Unsampled
        } else {
            Status::Running
        };
        if let Some(row) = existing {
            if row.status == status.as_str() && row.version == version {
                return Ok(());
            }
        }
        let running = status == Status::Running;
        let arm = e.arm.as_deref().filter(|_| running);
        let what = match status {
            Status::Running => format!(
                "started version {version}{}",
                arm.map(|a| format!(" in arm `{a}`")).unwrap_or_default()
            ),
            Status::Ineligible => format!("not eligible for version {version}"),
            _ => format!("not sampled for version {version}"),
        };
        let name = flight.studyname.as_str();
        let line =
            Line::new("status", what).with(json!({"reasons": e.reasons, "bucket": e.bucket}));
        let detail = Some(json!({"reasons": e.reasons}));
        let r = report(name, version, arm, status, 0, now, detail);
        let new = NewFlight {
            name,
            version,
            spec: spec_text,
            arm,
            status,
            started: running.then_some(now),
        };
        self.journal.enroll(&new, now, &line, &r)
    }
}
