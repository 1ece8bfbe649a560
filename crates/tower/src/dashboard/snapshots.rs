//! Recently computed progress aggregates, so that a flight page kept open by a whole team,
//! each tab polling, costs the database one aggregation per change rather than one per tab.
//!
//! A snapshot of a flight is reused while this tower has accepted no report since it was
//! taken (exact on SQLite, where one process takes every report) and it is younger than
//! [`MAX_AGE_MS`] on the tower's clock (which bounds how stale it can be when other towers
//! on a PostgreSQL database take reports, or reports are written without the HTTP API).

use crate::api::AppState;
use crate::error::Result;
use crate::store::{ErrorReport, Progress};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use testpilot_flight::Timestamp;

/// How long a snapshot may serve at most, in ms of the tower's clock.
pub const MAX_AGE_MS: i64 = 5_000;
/// Snapshots kept at most (all are dropped when full: they are cheap to retake).
const MAX_ENTRIES: usize = 256;

/// The aggregates of one flight's progress.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub progress: Progress,
    pub enrolments: Vec<(String, u64)>,
    pub errors: Vec<ErrorReport>,
}

struct Entry {
    taken_at: Timestamp,
    /// `reports_accepted` of the tower when the snapshot was taken.
    reports_seen: u64,
    snapshot: Arc<Snapshot>,
}

type Key = (String, String);

fn entries() -> &'static Mutex<HashMap<Key, Entry>> {
    static ENTRIES: OnceLock<Mutex<HashMap<Key, Entry>>> = OnceLock::new();
    ENTRIES.get_or_init(Default::default)
}

/// The flight's progress aggregates, from a fresh enough snapshot or from the store.
pub async fn progress(s: &AppState, name: &str) -> Result<Arc<Snapshot>> {
    // Keyed by the database too: tests run several towers in one process.
    let key = (s.store.url().to_string(), name.to_string());
    // Read before querying: a report accepted while we query makes the snapshot stale.
    let seen = s.metrics.reports_accepted.load(Ordering::SeqCst);
    let now = s.clock.now();
    if let Ok(map) = entries().lock() {
        if let Some(e) = map.get(&key) {
            let age = now.0 - e.taken_at.0;
            if e.reports_seen == seen && (0..MAX_AGE_MS).contains(&age) {
                return Ok(e.snapshot.clone());
            }
        }
    }
    let (progress, enrolments, errors) = tokio::try_join!(
        s.store.progress(name),
        s.store.enrolments_per_day(name),
        s.store.recent_errors(name, 200),
    )?;
    let snapshot = Arc::new(Snapshot {
        progress,
        enrolments,
        errors,
    });
    if let Ok(mut map) = entries().lock() {
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(
            key,
            Entry {
                taken_at: now,
                reports_seen: seen,
                snapshot: snapshot.clone(),
            },
        );
    }
    Ok(snapshot)
}
