//! Ending a flight and undoing what it did: newest effect first, each marked `undoing` then
//! `undone`, so that a crash at any point neither skips nor repeats an undo.

use super::{directives, report, Pilot};
use crate::journal::{phase, Line};
use crate::Error;
use serde_json::json;
use testpilot_flight::report::Status;
use testpilot_flight::Timestamp;

impl Pilot {
    /// Ends a running flight: final status, pending prompts withdrawn and a report queued, in
    /// one write; then undoes its effects.
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
        self.cleanup(name, now)
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
        self.journal.cleaned_up(name, now)
    }
}
