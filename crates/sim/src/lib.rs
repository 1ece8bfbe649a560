//! `testpilot simulate`: a virtual fleet through the real targeting, bucketing and pilot
//! engine (docs/simulate.md).
//!
//! Two passes. The targeting pass ([`fleet`]) puts every client through
//! `enrollment::decide` for every flight, on all cores, drawing each person from the seed on
//! the fly: exact counts of eligible, sampled, enrolled and arms, overlaps and the load of
//! polling. The engine pass ([`engine`]) runs enrolled clients (all, or a random `runs` of
//! them) through `testpilot_pilot::Pilot` in virtual time with an in-memory journal and host
//! ([`client`]), with the behaviour model playing the person. The [`report`] puts them
//! together with the statistics ([`stats`]), the load ([`load`]) and a chart ([`plot`]).

pub mod client;
pub mod engine;
pub mod fleet;
pub mod flights;
pub mod load;
pub mod plot;
pub mod population;
pub mod report;
pub mod rng;
pub mod stats;

pub use flights::SimFlight;
pub use population::Population;
pub use report::Report;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use testpilot_flight::Timestamp;

/// The most clients one run may have. Enrolled clients are kept as 32-bit numbers (4 bytes
/// each, for drawing the engine's sample), so a run stays within a few hundred MiB and a
/// client number never wraps.
pub const MAX_CLIENTS: u64 = 100_000_000;

/// What to simulate.
pub struct Config {
    pub population: Population,
    pub flights: Vec<SimFlight>,
    pub clients: u64,
    pub days: f64,
    pub seed: u64,
    /// The launch: targeting is decided at this moment, and clients first poll after it.
    pub start: Timestamp,
    /// How many enrolled clients go through the engine (`None`: every one).
    pub runs: Option<u64>,
    pub poll_ms: i64,
    /// Flights killed during the run, and when (by flight index).
    pub kills: Vec<(usize, Timestamp)>,
    /// The size of the signed index the clients fetch, in bytes.
    pub index_bytes: usize,
    pub capacity: load::Capacity,
    pub threads: usize,
    /// A folder for the stand-in add-on package.
    pub scratch: PathBuf,
    /// Set from another thread to stop the run early: [`simulate`] then returns an error
    /// soon after (between clients), not a partial report.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// The stages of a run, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Targeting,
    Engine,
}

/// Told how far a stage has come: (stage, done, total).
pub type Progress<'a> = &'a (dyn Fn(Stage, u64, u64) + Sync);

/// Runs a simulation.
pub fn simulate(c: &Config, progress: Progress) -> Result<Report, String> {
    if c.clients > MAX_CLIENTS {
        return Err(format!(
            "{} clients is more than one run takes ({MAX_CLIENTS}); the shares are the same with fewer",
            c.clients
        ));
    }
    let end = Timestamp(c.start.0 + (c.days * 86_400_000.0) as i64);
    let model = load::LoadModel::new(c.start, end, c.poll_ms, c.index_bytes as f64);
    let bins = 240;
    let fleet = fleet::Fleet {
        population: &c.population,
        flights: &c.flights,
        clients: c.clients,
        seed: c.seed,
        start: c.start,
        end,
        bins,
        load: &model,
        cancel: c.cancel.as_deref(),
        kills: &c.kills,
    };
    let total = c.clients;
    let mut tally = fleet.run(c.threads, &|done| progress(Stage::Targeting, done, total));
    let stopped = || Err("the simulation was stopped before it ended".to_string());
    if fleet.cancelled() {
        return stopped();
    }
    std::fs::create_dir_all(&c.scratch)
        .map_err(|e| format!("cannot create {}: {e}", c.scratch.display()))?;
    let package = flights::stand_in_path(&c.scratch);
    std::fs::write(&package, flights::STAND_IN)
        .map_err(|e| format!("cannot write {}: {e}", package.display()))?;
    let world = client::World {
        flights: &c.flights,
        behaviour: &c.population.behaviour,
        seed: c.seed,
        start: c.start,
        end,
        load: &model,
        kills: &c.kills,
        scratch: c.scratch.clone(),
    };
    let runs = engine::run(&world, &fleet, &tally, c.runs, c.threads, progress)?;
    if fleet.cancelled() {
        return stopped();
    }
    tally.load.add(&runs.load);
    Ok(report::build(c, &fleet, &tally, &runs))
}
