//! The review page (`/ui/flights/{name}/review`) and its simulation section: an approver
//! (or the author) simulates the revision under review over a population the tower offers
//! and sees its reach before deciding. The simulation is [`crate::simulate::simulate`], the
//! function the API's `POST /api/v1/flights/{name}/simulate` calls (docs/api.md#simulate);
//! this file only reads the form and draws the answer. Nothing here changes a flight.

use super::charts::{self, n, Day};
use super::{checked_form, detail, pages, PageError, PageResult, Session};
use crate::api::AppState;
use crate::error::Error;
use crate::lifecycle::RevisionState;
use crate::simulate::{SimConfig, SimRequest, Simulation};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use maud::{html, Markup};
use testpilot_flight::{Diagnostics, Flight, Timestamp};
use testpilot_sim::report::FlightReport;

/// What the simulation section shows under its form.
pub enum Shown {
    /// The form only.
    Nothing,
    /// The form's problems, each at its field (422).
    Problems(Diagnostics),
    /// The tower is busy, or the simulation took too long (503).
    Busy(String),
    Done(Box<Simulation>),
}

pub async fn review_page(
    State(s): State<AppState>,
    session: Session,
    Path(name): Path<String>,
) -> PageResult {
    page(&s, &session, &name, &SimRequest::default(), Shown::Nothing).await
}

/// `POST /ui/flights/{name}/simulate`: the review page again, with the simulation's answer.
pub async fn simulate(
    State(s): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let form = checked_form(&session, &headers, &body)?;
    let shown = match SimRequest::from_form(&form, &s.config.simulate) {
        Err(d) => (SimRequest::default(), Shown::Problems(d)),
        Ok(req) => match crate::simulate::simulate(&s, &name, &req).await {
            Ok(sim) => (req, Shown::Done(Box::new(sim))),
            Err(Error::Invalid { problems, .. }) => (req, Shown::Problems(problems)),
            Err(Error::Busy(m)) => (req, Shown::Busy(m)),
            Err(e) => {
                return Err(PageError::from(e).back(format!("/ui/flights/{name}/review")));
            }
        },
    };
    page(&s, &session, &name, &shown.0, shown.1).await
}

async fn page(
    s: &AppState,
    session: &Session,
    name: &str,
    req: &SimRequest,
    shown: Shown,
) -> PageResult {
    let d = detail(s, name).await?;
    let under_review = d
        .revisions
        .iter()
        .find(|r| r.version == d.summary.latest_version && r.state == RevisionState::Review);
    let validation = under_review.map(|r| Flight::from_json(&r.spec).map(|_| ()));
    let status = match &shown {
        Shown::Problems(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Shown::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    };
    let simulation = under_review
        .map(|r| section(session, name, r.version, &s.config.simulate, req, &shown))
        .unwrap_or_else(|| html! {});
    Ok(super::html(
        status,
        pages::review(session, &d, under_review, validation.as_ref(), simulation),
    ))
}

fn pct(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let p = x * 100.0;
    if p != 0.0 && p.abs() < 0.1 {
        format!("{p:.3} %")
    } else {
        format!("{p:.1} %")
    }
}

fn p_value(p: f64) -> String {
    if p < 0.001 {
        "< 0.001".into()
    } else {
        format!("{p:.3}")
    }
}

/// The spec's shares agree with the simulated counts unless `p` is below 0.001
/// (docs/simulate.md, "Statistics").
fn verdict(p: f64) -> Markup {
    if p < 0.001 {
        html! { strong.problem { "DISAGREES" } }
    } else {
        html! { span.valid { "agrees" } }
    }
}

/// The form and, under it, what it answered.
fn section(
    s: &Session,
    name: &str,
    version: u64,
    c: &SimConfig,
    req: &SimRequest,
    shown: &Shown,
) -> Markup {
    let l = &c.limits;
    let problems: Vec<(String, String)> = match shown {
        Shown::Problems(d) => d
            .iter()
            .map(|x| (x.path.to_string(), x.message.clone()))
            .collect(),
        _ => Vec::new(),
    };
    html! {
        section #simulation {
            h2 { "Reach: simulate v" (version) " before deciding" }
            p.muted {
                "Runs this revision, beside the flights live now, through the real targeting (and, for the engine runs, the real pilot) "
                "over a population of virtual clients, as " code { "testpilot simulate" } " does. Nothing is changed: no flight, no index, no audit entry."
            }
            form.simform #simulate-form method="post" action={"/ui/flights/" (name) "/simulate#simulation"} {
                (pages::csrf(s))
                input type="hidden" name="version" value=(version);
                div {
                    label for="sim-population" { "Population" }
                    select #sim-population name="population" {
                        @for p in c.populations.all() {
                            option value=(p.name) selected[p.name == req.population] title=(p.source) { (p.name) }
                        }
                    }
                }
                div {
                    label for="sim-clients" { "Clients" }
                    input #sim-clients type="number" name="clients" min="1" max=(l.max_clients) value=(req.clients) required;
                }
                div {
                    label for="sim-days" { "Days" }
                    input #sim-days type="number" name="days" min="0.1" step="any" max=(l.max_days) value=(req.days) required;
                }
                div {
                    label for="sim-seed" { "Seed" }
                    input #sim-seed type="number" name="seed" min="0" value=(req.seed) required;
                }
                div {
                    label for="sim-runs" { "Pilot engine runs" }
                    input #sim-runs type="number" name="runs" min="0" max=(l.max_runs) value=(req.runs) required;
                }
                div { button.primary #simulate type="submit" { "Simulate" } }
            }
            p.muted.hint {
                "Engine runs: with 0, reach, overlaps and polling load come in seconds (a million clients beside ten flights: about 5 s); up to " (n(l.max_runs))
                " enrolled clients, drawn at random, also go through the pilot engine over the days (outcomes, report and event load), "
                "a few milliseconds each (2,000 beside ten flights: about 15 s)."
            }
            @if !problems.is_empty() {
                div.invalid role="alert" #sim-problems {
                    p { "✗ Not simulated: " (problems.len()) " problems." }
                    ul { @for (path, m) in &problems { li { code { (path) } ": " (m) } } }
                }
            }
            @if let Shown::Busy(m) = shown {
                p.problem role="alert" #sim-busy { (m) }
            }
            @if let Shown::Done(sim) = shown {
                (results(sim))
            }
        }
    }
}

/// The simulation's answer: reach, agreement, arms, overlaps, load, the chart.
fn results(sim: &Simulation) -> Markup {
    let r = &sim.report;
    let Some(f) = sim.flight() else {
        return html! {};
    };
    html! {
        div #sim-results {
            p #sim-summary {
                (n(r.clients)) " clients of population " strong { (sim.population) } " over " (r.days) " days from "
                (r.start.get(..10).unwrap_or(&r.start)) ", seed " (r.seed) "; "
                @match sim.companions.len() {
                    0 => { "no other flight is live." }
                    1 => { "beside the 1 live flight." }
                    k => { "beside the " (k) " live flights." }
                }
            }
            (reach(r.clients, f))
            @if !f.outcomes.is_empty() { (outcomes(f)) }
            (overlaps(sim))
            (load(r))
            (charts::daily(&days(sim)))
            @if r.engine.runs > 0 {
                p.muted #sim-engine {
                    "Pilot engine: " (n(r.engine.runs)) " of " (n(r.engine.enrolled_clients)) " enrolled clients run; "
                    (r.engine.crashes) " crashes, " (r.engine.offline_periods) " offline periods, "
                    (r.engine.leftovers) " with effects left behind, " (r.engine.disagreements) " disagreements with targeting, "
                    (r.engine.stuck) " stuck."
                }
                @if !r.engine.errors.is_empty() {
                    ul.problem { @for e in &r.engine.errors { li { (e) } } }
                }
            }
            @if !r.warnings.is_empty() {
                ul.warn #sim-warnings { @for w in &r.warnings { li { (w) } } }
            }
        }
    }
}

fn reach(clients: u64, f: &FlightReport) -> Markup {
    let of = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    html! {
        h3 { "Reach" }
        div.scroll {
            table.reach #reach {
                thead { tr { th { "" } th.num { "clients" } th.num { "share" } th { "of" } } }
                tbody {
                    tr data-row="eligible" { td { "eligible (the filter lets them in)" } td.num { (n(f.eligible)) } td.num { (pct(of(f.eligible, clients))) } td { "all clients" } }
                    tr data-row="sampled" { td { "sampled (inside randomDeploy)" } td.num { (n(f.sampled)) } td.num { (pct(f.observed_share)) } td { "the eligible; the spec says " (pct(f.expected_share)) } }
                    tr data-row="enrolled" { td { "enrolled" } td.num { (n(f.enrolled)) } td.num { (pct(of(f.enrolled, clients))) } td { "all clients" } }
                }
            }
        }
        p #sim-agreement {
            "Sampled share " (pct(f.observed_share)) " against the spec's " (pct(f.expected_share))
            ": binomial p = " (p_value(f.p)) ", " (verdict(f.p)) "."
        }
        @if !f.arms.is_empty() {
            div.scroll {
                table.reach #sim-arms {
                    thead { tr { th { "arm" } th.num { "enrolled" } th.num { "share" } th.num { "spec" } } }
                    tbody {
                        @for a in &f.arms {
                            tr data-arm=(a.name) { td { code { (a.name) } } td.num { (n(a.enrolled)) } td.num { (pct(a.observed)) } td.num { (pct(a.expected)) } }
                        }
                    }
                }
            }
            p #sim-arms-agreement { "Arms against their ratios: chi-square p = " (p_value(f.arms_p)) ", " (verdict(f.arms_p)) "." }
        }
    }
}

fn outcomes(f: &FlightReport) -> Markup {
    html! {
        h3 { "Outcomes" @if !f.outcome_intervals.is_empty() { " (estimated from " (n(f.runs)) " runs)" } }
        ul #sim-outcomes {
            @for (status, k) in &f.outcomes {
                li {
                    code { (status) } " " (n(*k))
                    @if let Some([lo, hi]) = f.outcome_intervals.get(status) { span.muted { " (" (pct(*lo)) "–" (pct(*hi)) ")" } }
                }
            }
        }
    }
}

fn overlaps(sim: &Simulation) -> Markup {
    let mine: Vec<_> = sim
        .report
        .overlaps
        .iter()
        .filter(|o| o.flights.contains(&sim.studyname))
        .collect();
    html! {
        h3 { "Overlaps with the flights live now" }
        @if mine.is_empty() {
            p #sim-overlaps { @if sim.companions.is_empty() { "No flight is live." } @else { "None: no one enrolled in both, no add-on or feature changed by both." } }
        } @else {
            div.scroll {
                table.reach #sim-overlaps {
                    thead { tr { th { "live flight" } th.num { "people in both" } th { "add-ons both change" } th { "features both change" } } }
                    tbody {
                        @for o in &mine {
                            @let other = if o.flights[0] == sim.studyname { &o.flights[1] } else { &o.flights[0] };
                            tr { td { a href={"/ui/flights/" (other)} { (other) } } td.num { (n(o.people)) } td { (o.addons.join(", ")) } td { (o.features.join(", ")) } }
                        }
                    }
                }
            }
        }
    }
}

fn load(r: &testpilot_sim::Report) -> Markup {
    let l = &r.load;
    let rate = |x: f64| {
        if x >= 100.0 {
            n(x.round() as u64)
        } else {
            format!("{x:.2}")
        }
    };
    html! {
        h3 { "Load on the tower" }
        div.scroll {
            table.reach #sim-load {
                thead { tr { th { "per second" } th.num { "mean" } th.num { "peak" } } }
                tbody {
                    tr { td { "index fetches" } td.num { (rate(l.mean.index_per_second)) } td.num { (rate(l.peak.index_per_second)) } }
                    tr { td { "reports" } td.num { (rate(l.mean.reports_per_second)) } td.num { (rate(l.peak.reports_per_second)) } }
                    tr { td { "report requests" } td.num { (rate(l.mean.report_requests_per_second)) } td.num { (rate(l.peak.report_requests_per_second)) } }
                    tr { td { "events" } td.num { (rate(l.mean.events_per_second)) } td.num { (rate(l.peak.events_per_second)) } }
                    tr { td { "bytes" } td.num { (rate(l.mean.bytes_per_second)) } td.num { (rate(l.peak.bytes_per_second)) } }
                }
            }
        }
        p.muted {
            "Polling every " (l.poll_seconds / 60.0) " min, the peak over " (format!("{:.0}", l.bin_seconds / 60.0)) "-minute bins; "
            "that needs " (l.towers) " tower(s) at " (n(l.capacity.index_per_second as u64)) " index answers/s and "
            (n(l.capacity.report_requests_per_second as u64)) " report requests/s each (BENCHMARKS.md)."
        }
    }
}

/// The revision's enrolments and completions per simulated day, from the report's
/// timeline, for the dashboard's own chart.
fn days(sim: &Simulation) -> Vec<Day> {
    let r = &sim.report;
    let t = &r.timeline;
    let count = r.days.ceil().max(1.0) as usize;
    let start = testpilot_flight::parse_dateish(&serde_json::Value::String(r.start.clone()))
        .map(|d| d.at)
        .unwrap_or(Timestamp(0));
    let mut days: Vec<Day> = (0..count)
        .map(|i| Day {
            day: Timestamp(start.0 + i as i64 * 86_400_000)
                .to_rfc3339()
                .get(..10)
                .unwrap_or("")
                .to_string(),
            enrolled: 0,
            completed: 0,
        })
        .collect();
    let day_of = |i: usize| ((i as f64 * t.bin_seconds / 86_400.0) as usize).min(count - 1);
    if let Some(e) = t.enrolled.get(&sim.studyname) {
        for (i, k) in e.iter().enumerate() {
            days[day_of(i)].enrolled += k;
        }
    }
    if let Some(c) = t.completed.get(&sim.studyname) {
        for (i, k) in c.iter().enumerate() {
            days[day_of(i)].completed += k.max(0.0).round() as u64;
        }
    }
    days
}
