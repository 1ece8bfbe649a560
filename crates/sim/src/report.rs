//! The report (docs/simulate.md): per flight and arm, overlaps, the engine's outcomes, the
//! load; as JSON for programs and as text for people.

use crate::engine::Runs;
use crate::fleet::{Fleet, Tally};
use crate::load::LoadSummary;
use crate::plot::{sparkline, svg, Series};
use crate::stats::{binomial_p, chi_square_p, wilson};
use crate::Config;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArmReport {
    pub name: String,
    pub enrolled: u64,
    /// The share the arm's ratio implies.
    pub expected: f64,
    pub observed: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlightReport {
    pub studyname: String,
    pub eligible: u64,
    /// Eligible and inside `randomDeploy`.
    pub sampled: u64,
    pub enrolled: u64,
    /// The share of the eligible that `randomDeploy` implies (1 without it).
    pub expected_share: f64,
    /// `sampled / eligible`.
    pub observed_share: f64,
    /// Two-sided binomial test of `sampled` out of `eligible` against `expectedShare`.
    pub p: f64,
    pub arms: Vec<ArmReport>,
    /// Chi-square test of the arms' counts against their ratios (1 without arms).
    pub arms_p: f64,
    /// Outcomes per status, for every enrolled client (estimated when `runs` is a sample).
    pub outcomes: BTreeMap<String, u64>,
    /// Clients of this flight that went through the engine.
    pub runs: u64,
    /// The 95 % interval of each outcome's share, when estimated from a sample.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub outcome_intervals: BTreeMap<String, [f64; 2]>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Overlap {
    pub flights: [String; 2],
    /// People enrolled in both.
    pub people: u64,
    /// Add-ons and features both flights change.
    pub addons: Vec<String>,
    pub features: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EngineReport {
    /// Enrolled clients run through the engine, out of `enrolledClients`.
    pub runs: u64,
    pub enrolled_clients: u64,
    /// Whether outcomes are estimated from a sample (`runs < enrolledClients`).
    pub estimated: bool,
    pub crashes: u64,
    pub offline_periods: u64,
    /// Clients whose flights all ended with something left changed on the machine (0).
    pub leftovers: u64,
    /// Clients where the engine's enrolment disagreed with `enrollment::decide` (0).
    pub disagreements: u64,
    /// Clients stopped after too many engine steps.
    pub stuck: u64,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    pub bin_seconds: f64,
    /// Per flight: enrolments and completions per bin (completions scaled from the sample).
    pub enrolled: BTreeMap<String, Vec<u64>>,
    pub completed: BTreeMap<String, Vec<f64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub clients: u64,
    pub days: f64,
    pub seed: u64,
    pub start: String,
    pub flights: Vec<FlightReport>,
    pub overlaps: Vec<Overlap>,
    pub engine: EngineReport,
    pub load: LoadSummary,
    pub timeline: Timeline,
    pub warnings: Vec<String>,
}

pub fn build(c: &Config, fleet: &Fleet, tally: &Tally, runs: &Runs) -> Report {
    let estimated = runs.runs < runs.enrolled_clients;
    let mut flights = Vec::new();
    for (i, sf) in c.flights.iter().enumerate() {
        let f = &sf.flight;
        let t = &tally.flights[i];
        let expected_share = f
            .random_deploy
            .as_ref()
            .map_or(1.0, |r| (r.lt - r.ge).clamp(0.0, 1.0));
        let total: u64 = f.arms.iter().map(|a| a.ratio).sum();
        let shares: Vec<f64> = f
            .arms
            .iter()
            .map(|a| {
                if total == 0 {
                    0.0
                } else {
                    a.ratio as f64 / total as f64
                }
            })
            .collect();
        let arms = f
            .arms
            .iter()
            .enumerate()
            .map(|(k, a)| ArmReport {
                name: a.name.clone(),
                enrolled: t.arms[k],
                expected: shares[k],
                observed: if t.enrolled == 0 {
                    0.0
                } else {
                    t.arms[k] as f64 / t.enrolled as f64
                },
            })
            .collect();
        let (ran, sample) = &runs.per_flight[i];
        let mut outcomes = BTreeMap::new();
        let mut outcome_intervals = BTreeMap::new();
        for (status, n) in sample {
            let value = if *ran == 0 {
                0
            } else {
                (*n as f64 * t.enrolled as f64 / *ran as f64).round() as u64
            };
            outcomes.insert(status.clone(), value);
            if estimated {
                let (lo, hi) = wilson(*n, *ran);
                outcome_intervals.insert(status.clone(), [lo, hi]);
            }
        }
        flights.push(FlightReport {
            studyname: f.studyname.clone(),
            eligible: t.eligible,
            sampled: t.sampled,
            enrolled: t.enrolled,
            expected_share,
            observed_share: if t.eligible == 0 {
                0.0
            } else {
                t.sampled as f64 / t.eligible as f64
            },
            p: binomial_p(t.sampled, t.eligible, expected_share),
            arms,
            arms_p: chi_square_p(&t.arms, &shares),
            outcomes,
            runs: *ran,
            outcome_intervals,
        });
    }
    let n = c.flights.len();
    let mut overlaps = Vec::new();
    for a in 0..n {
        for b in a + 1..n {
            let people = tally.pairs[a * n + b];
            let (fa, fb) = (&c.flights[a], &c.flights[b]);
            let addons: Vec<String> = fa.addons.intersection(&fb.addons).cloned().collect();
            let features: Vec<String> = fa.features.intersection(&fb.features).cloned().collect();
            if people > 0 || !addons.is_empty() || !features.is_empty() {
                overlaps.push(Overlap {
                    flights: [fa.name().to_string(), fb.name().to_string()],
                    people,
                    addons,
                    features,
                });
            }
        }
    }
    let mut warnings = Vec::new();
    let topics: std::collections::BTreeSet<&String> = c
        .flights
        .iter()
        .flat_map(|f| {
            f.listeners
                .iter()
                .flat_map(|(_, l)| l.iter().flat_map(|x| x.topics.iter()))
        })
        .collect();
    for t in topics {
        if !c.population.behaviour.events.contains_key(t) {
            warnings.push(format!("no event rate for topic `{t}` in the population's behaviour: nobody has these events, so steps waiting on them never resolve"));
        }
    }
    if runs.runs == 0 && runs.enrolled_clients > 0 {
        warnings.push(format!(
            "no enrolled client was run through the engine (--runs 0), so there are no outcomes for the {} enrolled; pass --runs N or all",
            runs.enrolled_clients
        ));
    } else if estimated {
        warnings.push(format!(
            "outcomes are estimated from {} of {} enrolled clients run through the engine (95 % intervals in outcomeIntervals); pass --runs all to run every one",
            runs.runs, runs.enrolled_clients
        ));
    }
    let secs = (fleet.end.0 - fleet.start.0) as f64 / 1000.0 / fleet.bins as f64;
    Report {
        clients: c.clients,
        days: c.days,
        seed: c.seed,
        start: c.start.to_rfc3339(),
        flights,
        overlaps,
        engine: EngineReport {
            runs: runs.runs,
            enrolled_clients: runs.enrolled_clients,
            estimated,
            crashes: runs.crashes,
            offline_periods: runs.offline_periods,
            leftovers: runs.leftovers,
            disagreements: runs.disagreements,
            stuck: runs.stuck,
            errors: runs.errors.clone(),
        },
        load: tally.load.summary(c.capacity),
        timeline: Timeline {
            bin_seconds: secs,
            enrolled: c
                .flights
                .iter()
                .zip(&tally.flights)
                .map(|(f, t)| (f.name().to_string(), t.enrol_bins.clone()))
                .collect(),
            completed: c
                .flights
                .iter()
                .zip(&runs.completed_bins)
                .map(|(f, b)| (f.name().to_string(), b.iter().map(|x| x.round()).collect()))
                .collect(),
        },
        warnings,
    }
}

fn pct(x: f64) -> String {
    format!("{:.2} %", x * 100.0)
}

fn si(x: f64) -> String {
    match x {
        x if x >= 1e9 => format!("{:.2} G", x / 1e9),
        x if x >= 1e6 => format!("{:.2} M", x / 1e6),
        x if x >= 1e3 => format!("{:.2} k", x / 1e3),
        x => format!("{x:.2} "),
    }
}

fn cumulative<T: Copy + Into<f64>>(v: &[T]) -> Vec<f64> {
    let mut acc = 0.0;
    v.iter()
        .map(|x| {
            acc += (*x).into();
            acc
        })
        .collect()
}

impl Report {
    /// The chart of enrolment and completion over virtual time.
    pub fn svg(&self) -> String {
        let enrolled: Vec<Series> = self
            .timeline
            .enrolled
            .iter()
            .map(|(k, v)| Series {
                name: format!("{k} enrolled"),
                values: cumulative(&v.iter().map(|x| *x as f64).collect::<Vec<_>>()),
            })
            .collect();
        let completed: Vec<Series> = self
            .timeline
            .completed
            .iter()
            .map(|(k, v)| Series {
                name: format!("{k} completed"),
                values: cumulative(v),
            })
            .collect();
        svg(
            &format!(
                "{} clients over {} days (seed {})",
                self.clients, self.days, self.seed
            ),
            self.days,
            &enrolled,
            &completed,
        )
    }

    /// The report for people.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let e_ran = self.engine.runs > 0;
        let _ = writeln!(
            o,
            "{} clients, {} days from {}, seed {}",
            self.clients, self.days, self.start, self.seed
        );
        for f in &self.flights {
            let _ = writeln!(o, "\n{}", f.studyname);
            let _ = writeln!(
                o,
                "  eligible {}  sampled {}  enrolled {}",
                f.eligible, f.sampled, f.enrolled
            );
            let verdict = if f.p < 0.001 { "DISAGREES" } else { "agrees" };
            let _ = writeln!(
                o,
                "  sampled share {} (spec {}), binomial p = {:.3}: {verdict}",
                pct(f.observed_share),
                pct(f.expected_share),
                f.p
            );
            for a in &f.arms {
                let _ = writeln!(
                    o,
                    "  arm {:<16} {:>9}  {} (spec {})",
                    a.name,
                    a.enrolled,
                    pct(a.observed),
                    pct(a.expected)
                );
            }
            if !f.arms.is_empty() {
                let _ = writeln!(o, "  arms chi-square p = {:.3}", f.arms_p);
            }
            if f.outcomes.is_empty() && f.enrolled > 0 && e_ran {
                let _ = writeln!(
                    o,
                    "  outcomes: none of its {} enrolled clients was in the engine's sample; pass --runs all for them",
                    f.enrolled
                );
            }
            if !f.outcomes.is_empty() {
                let list: Vec<String> = f
                    .outcomes
                    .iter()
                    .map(|(s, n)| match f.outcome_intervals.get(s) {
                        Some([lo, hi]) => {
                            format!("{s} {n} ({:.1}–{:.1} %)", lo * 100.0, hi * 100.0)
                        }
                        None => format!("{s} {n}"),
                    })
                    .collect();
                let _ = writeln!(
                    o,
                    "  outcomes{}: {}",
                    if f.outcome_intervals.is_empty() {
                        ""
                    } else {
                        " (estimated)"
                    },
                    list.join(", ")
                );
            }
            if let Some(e) = self.timeline.enrolled.get(&f.studyname) {
                let v: Vec<f64> = e.iter().map(|x| *x as f64).collect();
                let _ = writeln!(o, "  enrolment  |{}|", sparkline(&v, 60));
            }
            if let Some(c) = self.timeline.completed.get(&f.studyname) {
                if c.iter().any(|x| *x > 0.0) {
                    let _ = writeln!(o, "  completion |{}|", sparkline(c, 60));
                }
            }
        }
        if !self.overlaps.is_empty() {
            let _ = writeln!(o, "\noverlaps");
            for x in &self.overlaps {
                let mut what = vec![format!("{} people in both", x.people)];
                if !x.addons.is_empty() {
                    what.push(format!("add-ons {}", x.addons.join(", ")));
                }
                if !x.features.is_empty() {
                    what.push(format!("features {}", x.features.join(", ")));
                }
                let _ = writeln!(
                    o,
                    "  {} + {}: {}",
                    x.flights[0],
                    x.flights[1],
                    what.join("; ")
                );
            }
        }
        let e = &self.engine;
        let _ = writeln!(o, "\nengine: {} of {} enrolled clients run{}; {} crashes, {} offline periods, {} with effects left behind, {} disagreements with targeting, {} stuck",
            e.runs, e.enrolled_clients, if e.estimated { " (outcomes estimated)" } else { "" }, e.crashes, e.offline_periods, e.leftovers, e.disagreements, e.stuck);
        for err in &e.errors {
            let _ = writeln!(o, "  error: {err}");
        }
        let l = &self.load;
        let _ = writeln!(
            o,
            "\ntower load, polling every {}s (peak over {:.0}s bins):",
            l.poll_seconds, l.bin_seconds
        );
        for (name, mean, peak) in [
            (
                "index fetches/s",
                l.mean.index_per_second,
                l.peak.index_per_second,
            ),
            (
                "reports/s",
                l.mean.reports_per_second,
                l.peak.reports_per_second,
            ),
            (
                "report requests/s",
                l.mean.report_requests_per_second,
                l.peak.report_requests_per_second,
            ),
            (
                "events/s",
                l.mean.events_per_second,
                l.peak.events_per_second,
            ),
            ("bytes/s", l.mean.bytes_per_second, l.peak.bytes_per_second),
        ] {
            let _ = writeln!(
                o,
                "  {name:<18} mean {:>10}  peak {:>10}",
                si(mean),
                si(peak)
            );
        }
        let _ = writeln!(o, "  needs {} tower(s) at {} index answers/s and {} report requests/s each; with a CDN in front of the index, {} tower(s) and a CDN hit rate of {}",
            l.towers, l.capacity.index_per_second, l.capacity.report_requests_per_second, l.towers_with_cdn, pct(l.cdn_hit_rate));
        for w in &self.warnings {
            let _ = writeln!(o, "\nwarning: {w}");
        }
        o
    }
}
