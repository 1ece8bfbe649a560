//! The engine pass: enrolled clients (all, or a random sample) through the pilot in virtual
//! time, on all cores, and their outcomes put together in client order so the same seed
//! gives the same figures.

use crate::client::{ClientRun, World};
use crate::fleet::{arrival, Fleet, Tally};
use crate::load::Load;
use crate::rng::{Rng, Stream};
use crate::{Progress, Stage};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use testpilot_flight::enrollment;

/// What the engine pass found.
#[derive(Debug, Clone)]
pub struct Runs {
    /// Clients run through the engine.
    pub runs: u64,
    /// Clients enrolled in at least one flight.
    pub enrolled_clients: u64,
    /// Per flight: clients of the sample enrolled in it, and their outcomes.
    pub per_flight: Vec<(u64, BTreeMap<String, u64>)>,
    /// Per flight: completions per timeline bin, scaled to the whole fleet.
    pub completed_bins: Vec<Vec<f64>>,
    pub load: Load,
    pub crashes: u64,
    pub offline_periods: u64,
    pub leftovers: u64,
    pub disagreements: u64,
    pub stuck: u64,
    pub other_requests: f64,
    pub errors: Vec<String>,
}

/// A client that ran: its number, the flights it enrolled in, and what happened.
type Done = (u32, Vec<usize>, Result<ClientRun, String>);

/// The clients to run: every enrolled one, or `k` of them drawn from the seed.
fn sample(enrolled: &[u32], k: Option<u64>, seed: u64) -> Vec<u32> {
    let mut v = enrolled.to_vec();
    let Some(k) = k.filter(|k| (*k as usize) < v.len()) else {
        return v;
    };
    let mut r = Rng::new(seed, u64::MAX, Stream::Sample);
    for i in 0..k as usize {
        let j = i + r.below((v.len() - i) as u64) as usize;
        v.swap(i, j);
    }
    v.truncate(k as usize);
    v.sort_unstable();
    v
}

pub fn run(
    world: &World,
    fleet: &Fleet,
    tally: &Tally,
    k: Option<u64>,
    threads: usize,
    progress: Progress,
) -> Result<Runs, String> {
    let chosen = sample(&tally.enrolled_clients, k, world.seed);
    let total = chosen.len() as u64;
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let results: Mutex<Vec<Done>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(&c) = chosen.get(i) else { break };
                    if fleet.cancelled() {
                        break;
                    }
                    let person = fleet.population.person(world.seed, c as u64);
                    let enrolled: Vec<usize> = world
                        .flights
                        .iter()
                        .enumerate()
                        .filter(|(_, f)| {
                            enrollment::decide(&f.flight, &person, world.start).enrolled
                        })
                        .map(|(i, _)| i)
                        .collect();
                    let at = arrival(
                        world.seed,
                        c as u64,
                        world.start,
                        world.behaviour.arrival_ms,
                    );
                    let json = serde_json::Value::Object(person.as_map().clone());
                    let r = world
                        .run(c as u64, json, at, &enrolled)
                        .map_err(|e| format!("client {c}: {e}"));
                    mine.push((c, enrolled, r));
                    progress(
                        Stage::Engine,
                        done.fetch_add(1, Ordering::Relaxed) + 1,
                        total,
                    );
                }
                if let Ok(mut all) = results.lock() {
                    all.extend(mine);
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|r| r.0);
    let n = world.flights.len();
    let weight = if total == 0 {
        0.0
    } else {
        tally.enrolled_clients.len() as f64 / total as f64
    };
    let mut out = Runs {
        runs: total,
        enrolled_clients: tally.enrolled_clients.len() as u64,
        per_flight: vec![(0, BTreeMap::new()); n],
        completed_bins: vec![vec![0.0; fleet.bins]; n],
        load: Load::new(world.load),
        crashes: 0,
        offline_periods: 0,
        leftovers: 0,
        disagreements: 0,
        stuck: 0,
        other_requests: 0.0,
        errors: Vec::new(),
    };
    for (_, enrolled, r) in results {
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                if out.errors.len() < 10 {
                    out.errors.push(e);
                }
                for f in enrolled {
                    out.per_flight[f].0 += 1;
                    *out.per_flight[f].1.entry("error".into()).or_default() += 1;
                }
                continue;
            }
        };
        for e in &r.ends {
            let (count, outcomes) = &mut out.per_flight[e.flight];
            *count += 1;
            *outcomes.entry(e.status.clone()).or_default() += 1;
            if e.status == "completed" {
                if let Some(b) = e.ended_at.and_then(|at| fleet.bin(at)) {
                    out.completed_bins[e.flight][b] += weight;
                }
            }
        }
        for (at, reports, bytes) in &r.reports {
            out.load
                .reports_at(*at, *reports as f64, *bytes as f64, weight);
        }
        for (at, events, bytes) in &r.events {
            out.load
                .events_at(*at, *events as f64, *bytes as f64, weight);
        }
        out.crashes += r.crashes as u64;
        out.offline_periods += r.offline_periods as u64;
        out.leftovers += r.leftovers as u64;
        out.disagreements += r.disagreements as u64;
        out.stuck += r.stuck as u64;
        out.other_requests += r.other_requests as f64 * weight;
    }
    Ok(out)
}
