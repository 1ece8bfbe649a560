//! The Test Pilot client engine (docs/flight-spec.md): runs flights on one machine, durably, with
//! guaranteed undo.
//!
//! - [`journal`]: the SQLite journal in the profile. Every effect is written as an intent
//!   before it happens and as done after, with what undoes it.
//! - [`engine`]: the flightplan interpreter. Its decisions depend only on the journal, the
//!   host's answers and the time it is given, so it runs the same in real and virtual time.
//! - [`host`]: what the application provides (add-ons, features, notifications), and
//!   [`reference`](mod@reference), the host the standalone agent uses, over files in the profile.
//! - [`sync`]: the seed's core loop: fetch the index, verify it, set up flights, report.
//! - [`stream`]: recorded events streamed to the tower, in batches, with retries.
//! - [`pins`]: the keys the index may be signed with: pinned, following rotations.
//! - [`push`]: listening to the tower's push stream, to fetch a changed index at once.
//! - [`flightlog`]: what the person sees: the flight log, the message center, opt-out.
//! - [`agent`]: the long-running agent: one per profile, answers shutdown cleanly.
//! - [`embed`]: the pilot inside an application, the one API behind the C ABI, Python and
//!   OpenFeature.

pub mod agent;
pub mod clock;
pub mod effect;
pub mod embed;
pub mod engine;
mod error;
pub mod faults;
pub mod flightlog;
pub mod host;
pub mod journal;
pub mod net;
pub mod package;
pub mod pins;
pub mod push;
pub mod reference;
pub mod stream;
pub mod sync;

pub use agent::{run_agent, AgentConfig, TowerSource};
pub use clock::{ManualClock, SystemClock};
pub use embed::{EmbedConfig, EmbeddedPilot, FeatureValue};
pub use engine::Pilot;
pub use error::Error;
pub use faults::Faults;
pub use host::Host;
pub use journal::{Journal, JOURNAL_VERSION};
pub use reference::ReferenceHost;
