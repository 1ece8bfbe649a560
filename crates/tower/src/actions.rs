//! The lifecycle actions — push, review, approve, send back, kill, end — as one service
//! that the HTTP API, the dashboard and `testpilot up` (`local`) all call. One call does
//! everything an action means, whoever asks: the role check and the state rules
//! ([`crate::lifecycle`]), the store's transaction with its audit entry, the metrics, and
//! the refresh of this tower's index when the action changed it.
//!
//! Invariants:
//! - No front end changes a flight any other way; adding an action means adding it here.
//! - The role is checked before anything else (before the database is read), so a caller
//!   without the role learns that first, whatever else is wrong with the request.
//! - When a call returns `Ok` with a `serial`, this tower already serves that index.

use crate::api::AppState;
use crate::error::{Error, Result};
use crate::lifecycle::{permit, Action, Actor};
use crate::metrics::Metrics;
use crate::store::Outcome;
use serde_json::Value;
use testpilot_flight::{copilot, Diagnostics, Flight, JsonPath};

/// The longest `reason` or `comment` kept in the audit log, in characters.
pub const MAX_NOTE_CHARS: usize = 4000;

/// Stores `flight` as a new draft revision (creating the flight on its first push); a push
/// identical to the newest revision changes nothing and says `unchanged`.
pub async fn push(s: &AppState, actor: &Actor, flight: &Flight) -> Result<Outcome> {
    permit(actor, Action::Push)?;
    let out = s.store.push(actor, flight, s.clock.now()).await?;
    done(s, out).await
}

/// Pushes what an author wrote: a flight, or a copilot document (a top-level `copilot` key,
/// docs/copilot.md), which is expanded and stored as the revision with the document beside
/// it. Not valid: [`Error::Invalid`] with every problem and its path, nothing stored.
pub async fn push_document(s: &AppState, actor: &Actor, doc: &Value) -> Result<Outcome> {
    permit(actor, Action::Push)?;
    // Validating (and expanding) a document of up to the body limit is CPU work: it runs off
    // the async workers, so one large push does not stall every other request.
    let owned = doc.clone();
    let checked = tokio::task::spawn_blocking(move || check_document(&owned))
        .await
        .map_err(|e| Error::Internal(format!("validating the document failed: {e}")))??;
    let out = match checked {
        Checked::Copilot(flight) => {
            s.store
                .push_revision(actor, &flight, Some(doc), s.clock.now())
                .await?
        }
        Checked::Flight(flight) => s.store.push(actor, &flight, s.clock.now()).await?,
    };
    done(s, out).await
}

/// A pushed document, validated: a copilot document's expansion, or a flight.
enum Checked {
    Copilot(Box<Flight>),
    Flight(Box<Flight>),
}

/// Validates what an author pushed: every problem with its path, or the flight to store.
fn check_document(doc: &Value) -> Result<Checked> {
    let not_valid = |what: &str, problems: Diagnostics| Error::Invalid {
        message: format!("the {what} is not valid ({} problems)", problems.len()),
        problems,
    };
    if copilot::is_copilot(doc) {
        let (_, flight) =
            copilot::expand_json(doc).map_err(|d| not_valid("copilot document", d))?;
        Ok(Checked::Copilot(Box::new(flight)))
    } else {
        let flight = Flight::from_json(doc).map_err(|d| not_valid("flight", d))?;
        Ok(Checked::Flight(Box::new(flight)))
    }
}

/// Sends the newest revision (a draft) for review. `version`, when given, must be the
/// newest revision's.
pub async fn review(
    s: &AppState,
    actor: &Actor,
    name: &str,
    version: Option<u64>,
) -> Result<Outcome> {
    permit(actor, Action::Review)?;
    let out = s.store.review(actor, name, version, s.clock.now()).await?;
    done(s, out).await
}

/// Approves the revision under review: it goes live and into the index. The two-person
/// rule applies unless the tower runs in single-user mode.
pub async fn approve(
    s: &AppState,
    actor: &Actor,
    name: &str,
    version: Option<u64>,
) -> Result<Outcome> {
    permit(actor, Action::Approve)?;
    let out = s
        .store
        .approve(actor, name, version, s.config.single_user, s.clock.now())
        .await?;
    done(s, out).await
}

/// Sends the revision under review back to its author as a draft. The `comment` (what the
/// author reads: why) is required.
pub async fn send_back(
    s: &AppState,
    actor: &Actor,
    name: &str,
    version: Option<u64>,
    comment: &str,
) -> Result<Outcome> {
    permit(actor, Action::SendBack)?;
    let comment = note("comment", Some(comment))?.ok_or_else(|| {
        invalid(
            "comment",
            "say why you send it back: the comment is what the author reads",
        )
    })?;
    let out = s
        .store
        .send_back(actor, name, version, comment, s.clock.now())
        .await?;
    done(s, out).await
}

/// Kills a live flight: it stays in the index with `kill: true`.
pub async fn kill(
    s: &AppState,
    actor: &Actor,
    name: &str,
    reason: Option<&str>,
) -> Result<Outcome> {
    permit(actor, Action::Kill)?;
    let reason = note("reason", reason)?;
    let out = s.store.kill(actor, name, reason, s.clock.now()).await?;
    done(s, out).await
}

/// Ends a flight: it leaves the index.
pub async fn end(s: &AppState, actor: &Actor, name: &str, reason: Option<&str>) -> Result<Outcome> {
    permit(actor, Action::End)?;
    let reason = note("reason", reason)?;
    let out = s.store.end(actor, name, reason, s.clock.now()).await?;
    done(s, out).await
}

/// What every action does after its transaction: count it, and serve the new index from
/// this tower before answering (other towers hear of it by NOTIFY or polling).
async fn done(s: &AppState, out: Outcome) -> Result<Outcome> {
    Metrics::inc(&s.metrics.management_actions, u64::from(!out.unchanged));
    if out.serial.is_some() {
        s.refresh_index().await?;
    }
    Ok(out)
}

/// A reason or comment: trimmed, `None` when blank, refused when longer than
/// [`MAX_NOTE_CHARS`].
fn note<'a>(field: &str, text: Option<&'a str>) -> Result<Option<&'a str>> {
    let Some(t) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if t.chars().count() > MAX_NOTE_CHARS {
        return Err(invalid(
            field,
            format!("the {field} is longer than {MAX_NOTE_CHARS} characters; say it in fewer"),
        ));
    }
    Ok(Some(t))
}

/// A refusal of one field of the request, which the API answers 422 with its path.
fn invalid(field: &str, message: impl Into<String>) -> Error {
    let message = message.into();
    let mut problems = Diagnostics::default();
    problems.push(&JsonPath::root().key(field), message.clone());
    Error::Invalid { message, problems }
}
