//! Ending a flight and undoing what it did: newest effect first, each marked `undoing` then
//! `undone`, so that a crash at any point neither skips nor repeats an undo. An undo that fails
//! on a host error (a file it cannot write, a registry it cannot read) is tried again with
//! backoff; until it succeeds the flight log says so, `cleanedUp` stays false, and the tower is
//! told once.

use super::{backoff_ms, directives, report, Pilot};
use crate::journal::{phase, FlightRow, Line};
use crate::Error;
use serde_json::json;
use testpilot_flight::report::{Report, Status};
use testpilot_flight::Timestamp;

impl Pilot {
    /// Ends a running flight: final status, pending prompts withdrawn and a report queued, in
    /// one write; then undoes its effects (or schedules the undo again if the host fails).
    pub fn end_flight(
        &mut self,
        name: &str,
        status: Status,
        why: &str,
        step: Option<u64>,
        now: Timestamp,
    ) -> Result<(), Error> {
        let Some(row) = self.journal.flight(name)? else {
            return Ok(());
        };
        if row.status != Status::Running.as_str() {
            return Ok(());
        }
        let step = step.unwrap_or(row.step);
        let detail = Some(json!({"reason": why}));
        let r = report(
            name,
            row.version,
            row.arm.as_deref(),
            status,
            step,
            now,
            detail,
        );
        self.journal.end_flight(name, why, &r)?;
        self.undo_flight(name, row.undo_tries, now)?;
        Ok(())
    }

    /// An ended flight that is not cleaned up yet: undoes it now, or says when its next try is.
    pub(super) fn undo_due(
        &mut self,
        row: &FlightRow,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, Error> {
        match row.undo_retry_at {
            Some(at) if at > now => Ok(Some(at)),
            _ => self.undo_flight(&row.studyname, row.undo_tries, now),
        }
    }

    /// Undoes a flight; a host error is recorded with the time of the next try, which is
    /// returned. Only fatal errors (the journal, a crash) come out.
    fn undo_flight(
        &mut self,
        name: &str,
        tries: u32,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, Error> {
        let e = match self.cleanup(name, now) {
            Ok(()) => return Ok(None),
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => e,
        };
        let tries = tries + 1;
        let at = Timestamp(now.0 + backoff_ms(tries));
        let line = Line::new(
            "undo",
            format!(
                "undo could not finish: {e}; it failed {tries} time(s) and is tried again at {at}"
            ),
        );
        // The tower hears of it once, when it first fails (and again when it succeeds).
        let r = (tries == 1)
            .then(|| {
                self.cleanup_report(
                    name,
                    now,
                    json!({"cleanedUp": false, "undoError": e.to_string()}),
                )
            })
            .transpose()?
            .flatten();
        self.journal
            .undo_failed(name, tries, at, now, &line, r.as_ref())?;
        Ok(Some(at))
    }

    /// A report saying how the undo of an ended flight stands, with its final status.
    fn cleanup_report(
        &self,
        name: &str,
        now: Timestamp,
        mut detail: serde_json::Value,
    ) -> Result<Option<Report>, Error> {
        let Some(row) = self.journal.flight(name)? else {
            return Ok(None);
        };
        let Some(status) = Status::parse(&row.status) else {
            return Ok(None);
        };
        detail["reason"] = json!(row.reason);
        let arm = row.arm.as_deref();
        let r = report(name, row.version, arm, status, row.step, now, Some(detail));
        Ok(Some(r))
    }

    /// Undoes every effect of an ended flight, newest first, each exactly once; then marks the
    /// flight cleaned up. Safe to call again after a crash at any point.
    pub fn cleanup(&mut self, name: &str, now: Timestamp) -> Result<(), Error> {
        let effects = self.journal.effects(name)?;
        for e in effects.iter().rev() {
            if !matches!(
                e.phase.as_str(),
                phase::INTENT | phase::DONE | phase::UNDOING
            ) || !e.effect.undoable()
            {
                continue;
            }
            if e.phase != phase::UNDOING {
                self.journal.undoing(e.id)?;
            }
            let key = format!("{name}.{}", e.id);
            // Another step (of any flight) changed the same feature or add-on after this one
            // and is still in effect: it keeps its change, and takes over what was there
            // before this one, to put back when it is undone in turn.
            if let Some(next) = self.journal.successor(e)? {
                let what = format!(
                    "undid: {} (flight `{}` changed it since and keeps its change; what was there before goes back when that is undone)",
                    e.summary, next.flight
                );
                let changed = directives::hand_over(self, &key, e, &next)?;
                let successor = changed.as_ref().map(|c| (next.id, c));
                self.journal
                    .undone(e.id, successor, name, now, &Line::new("undo", what))?;
                continue;
            }
            self.faults().point("host undo")?;
            if let Some(what) = directives::undo(self, &key, e)? {
                self.journal
                    .undone(e.id, None, name, now, &Line::new("undo", what))?;
            }
        }
        let tries = self.journal.flight(name)?.map_or(0, |r| r.undo_tries);
        let r = if tries > 0 {
            let detail = json!({"cleanedUp": true, "undoTries": tries + 1});
            self.cleanup_report(name, now, detail)?
        } else {
            None
        };
        self.journal.cleaned_up(name, now, r.as_ref())
    }
}
