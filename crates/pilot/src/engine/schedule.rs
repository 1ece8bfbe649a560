//! What is due: [`Pilot::tick`] goes over every flight, ends the ones whose time is up (their
//! `endBy`, their fuse, the index they came from), walks the others' plans as far as they go,
//! expires prompts, carries out the person's relayed wishes, and says when to come back.

use super::{min_wake, Pilot};
use crate::journal::FlightRow;
use crate::Error;
use std::sync::Arc;
use testpilot_flight::report::Status;
use testpilot_flight::spec::Entry;
use testpilot_flight::{Diagnostics, Flight, Timestamp};

/// Where the expiry of the last accepted index is kept (ms since the epoch).
pub(super) const INDEX_EXPIRES: &str = "index_expires_at";

impl Pilot {
    /// Moves every flight as far as it goes now. Returns when something is next due by the
    /// clock (`None`: only something from outside can move a flight on: an answer, an event).
    pub fn tick(&mut self) -> Result<Option<Timestamp>, Error> {
        let now = self.clock.now();
        self.process_requests()?;
        let mut wake = self.expire_prompts(now)?;
        // Nothing in a tick writes it: read once for every flight.
        let index_expiry = self.index_expires_at()?;
        for row in self.journal.flights()? {
            if self.interrupted() {
                break;
            }
            let name = row.studyname.clone();
            let result = if row.status == Status::Running.as_str() {
                self.advance_flight(row, now, index_expiry)
            } else if !row.cleaned_up && row.started_at.is_some() {
                self.undo_due(&row, now)
            } else {
                Ok(None)
            };
            match result {
                Ok(w) => wake = min_wake(wake, w),
                Err(e) if e.is_fatal() => return Err(e),
                // The host or the machine failed under this flight (a full disk, a file it
                // cannot write): the flight ends failed, and its undo is tried again with
                // backoff if it fails too. Other flights go on.
                Err(e) => {
                    let why = format!("stopped on an error: {e}");
                    self.note_once(&name, now, "error", &why)?;
                    self.end_flight(&name, Status::Failed, &why, None, now)?;
                    wake = min_wake(wake, Some(Timestamp(now.0 + 60_000)));
                }
            }
        }
        Ok(wake)
    }

    /// Adds a timeline line unless it repeats the flight's last one.
    pub(super) fn note_once(
        &mut self,
        flight: &str,
        now: Timestamp,
        kind: &str,
        what: &str,
    ) -> Result<(), Error> {
        if self
            .journal
            .timeline(flight)?
            .last()
            .is_some_and(|t| t.what == what)
        {
            return Ok(());
        }
        self.journal.note(flight, now, kind, what, None)
    }

    /// The flights still running.
    pub fn running(&self) -> Result<Vec<String>, Error> {
        Ok(self
            .journal
            .flights()?
            .into_iter()
            .filter(|f| f.status == Status::Running.as_str())
            .map(|f| f.studyname)
            .collect())
    }

    /// When the last accepted index expires, if the pilot took one from a tower.
    pub fn index_expires_at(&self) -> Result<Option<Timestamp>, Error> {
        Ok(self
            .journal
            .meta(INDEX_EXPIRES)?
            .and_then(|v| v.parse().ok())
            .map(Timestamp))
    }

    fn expire_prompts(&mut self, now: Timestamp) -> Result<Option<Timestamp>, Error> {
        let mut wake = None;
        for p in self.journal.open_prompts()? {
            match p.expires_at {
                Some(e) if e <= now => self.journal.expire_prompt(&p, now)?,
                Some(e) => wake = min_wake(wake, Some(e)),
                None => {}
            }
        }
        Ok(wake)
    }

    /// Carries out the person's wishes relayed by other processes (opt-out).
    pub fn process_requests(&mut self) -> Result<(), Error> {
        for r in self.journal.open_requests()? {
            if r.kind == "optout" {
                if let Err(e) = self.optout(r.flight.as_deref()) {
                    if !matches!(e, Error::Usage(_)) {
                        return Err(e);
                    }
                    let now = self.clock.now();
                    let flight = r.flight.as_deref().unwrap_or("");
                    self.journal
                        .note(flight, now, "optout", &e.to_string(), None)?;
                }
            }
            let now = self.clock.now();
            self.journal.finish_request(r.id, now)?;
        }
        Ok(())
    }

    /// Ends a flight (or, with `None`, every running one and all future ones) at the person's
    /// wish, undoing everything it did.
    pub fn optout(&mut self, flight: Option<&str>) -> Result<Vec<String>, Error> {
        let now = self.clock.now();
        match flight {
            None => {
                if self.journal.meta("optout_all")?.is_none() {
                    let line = crate::journal::Line::new("optout", "the person opted out of all flights: running ones end and new ones will not start");
                    self.journal.opt_out_all(now, &line)?;
                }
                let mut ended = Vec::new();
                for name in self.running()? {
                    let why = "the person opted out of all flights";
                    self.end_flight(&name, Status::Optedout, why, None, now)?;
                    ended.push(name);
                }
                Ok(ended)
            }
            Some(name) => {
                let row = self.journal.flight(name)?.ok_or_else(|| {
                    Error::Usage(format!(
                        "this profile knows no flight named `{name}`; `testpilot log` lists them"
                    ))
                })?;
                if row.status != Status::Running.as_str() {
                    return Err(Error::Usage(format!(
                        "flight `{name}` is not running (it is {})",
                        row.status
                    )));
                }
                self.end_flight(name, Status::Optedout, "the person opted out", None, now)?;
                Ok(vec![name.to_string()])
            }
        }
    }

    /// Why a running flight must end now, whatever step it is at, or when that will be.
    fn deadline(
        &self,
        flight: &Flight,
        row: &FlightRow,
        now: Timestamp,
        index_expiry: Option<Timestamp>,
    ) -> Result<Result<Option<Timestamp>, (Status, String)>, Error> {
        // A pilot cut off from its tower can no longer hear a kill: once the index it took the
        // flight from has expired and no newer one came, the flight ends (docs/index.md).
        if let Some(at) = index_expiry.filter(|at| now >= *at) {
            return Ok(Err((
                Status::IndexExpired,
                format!("the index expired at {at} and no newer one could be fetched"),
            )));
        }
        if let Some(end) = &flight.end_by {
            if now >= end.at {
                return Ok(Err((
                    Status::Expired,
                    format!("endBy {} passed before the flight completed", end.at),
                )));
            }
        }
        let fuse_at = match (&flight.fuse, row.started_at) {
            (Some(f), Some(s)) => Some(s.plus(f.clone())),
            _ => None,
        };
        if let Some(at) = fuse_at.filter(|at| now >= *at) {
            let fuse = flight
                .fuse
                .as_ref()
                .map(|f| serde_json::to_value(f).unwrap_or_default().to_string())
                .unwrap_or_default();
            return Ok(Err((
                Status::Timedout,
                format!("the fuse of {fuse} burnt out at {at} before the flight completed"),
            )));
        }
        let end_by = flight.end_by.as_ref().map(|e| e.at);
        Ok(Ok(min_wake(min_wake(end_by, fuse_at), index_expiry)))
    }

    /// The flight a row's stored spec validates to.
    fn flight_of(&self, row: &FlightRow) -> Result<Arc<Flight>, Diagnostics> {
        super::validated::from_text(&row.spec, || row.spec_json())
    }

    /// Walks a running flight's plan as far as it goes now.
    fn advance_flight(
        &mut self,
        row: FlightRow,
        now: Timestamp,
        index_expiry: Option<Timestamp>,
    ) -> Result<Option<Timestamp>, Error> {
        let name = row.studyname.clone();
        let flight = match self.flight_of(&row) {
            Ok(f) => f,
            Err(d) => {
                let why = format!(
                    "its stored spec no longer validates: {}",
                    d.iter()
                        .map(|x| x.message.clone())
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                self.end_flight(&name, Status::Failed, &why, None, now)?;
                return Ok(None);
            }
        };
        let deadline = match self.deadline(&flight, &row, now, index_expiry)? {
            Ok(at) => at,
            Err((status, why)) => {
                self.end_flight(&name, status, &why, None, now)?;
                return Ok(None);
            }
        };
        let plan: Vec<Entry> = flight.plan_for(row.arm.as_deref()).to_vec();
        let mut cx = self.context(flight, row, now)?;
        loop {
            let step = cx.row.step as usize;
            if step >= plan.len() {
                let why = "every step of the flightplan resolved true";
                let end = Some(plan.len() as u64);
                self.end_flight(&name, Status::Completed, why, end, now)?;
                return Ok(None);
            }
            match self.advance_entry(&mut cx, &plan[step], &step.to_string())? {
                super::Outcome::True => self.reach_step(&mut cx, step as u64 + 1, plan.len())?,
                super::Outcome::False(why) => {
                    let why = format!("step {step}: {why}");
                    self.end_flight(&name, Status::Declined, &why, None, now)?;
                    return Ok(None);
                }
                super::Outcome::Failed(why) => {
                    let why = format!("step {step}: {why}");
                    self.end_flight(&name, Status::Failed, &why, None, now)?;
                    return Ok(None);
                }
                super::Outcome::Pending(w) => return Ok(min_wake(w, deadline)),
            }
        }
    }
}
