//! The pages, as maud templates. Every interpolation `( ... )` is escaped by maud.

use super::charts::{self, n, status_label, Day, STATUSES};
use super::readable;
use super::{Ending, ListQuery, Session, POLL_MS};
use crate::lifecycle::{two_person, Action, FlightState, RevisionState};
use crate::results::Results;
use crate::store::{AuditEntry, ErrorReport, FlightDetail, FlightSummary, Progress, Revision};
use axum::http::StatusCode;
use maud::{html, Markup, DOCTYPE};
use serde_json::Value;
use std::collections::BTreeMap;
use testpilot_flight::{Diagnostics, Flight, Timestamp};

// ---------------------------------------------------------------- small pieces

fn when(t: Timestamp) -> String {
    let s = t.to_rfc3339();
    match (s.get(..10), s.get(11..16)) {
        (Some(d), Some(hm)) => format!("{d} {hm} UTC"),
        _ => s,
    }
}

fn ago(now: Timestamp, t: Timestamp) -> String {
    let s = (now.0 - t.0) / 1000;
    match s {
        i64::MIN..=-1 => "just now".into(),
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

fn time(now: Timestamp, t: Timestamp) -> Markup {
    html! { time datetime=(t.to_rfc3339()) title=(when(t)) { (ago(now, t)) } }
}

fn badge(state: FlightState) -> Markup {
    html! { span class={"badge s-" (state.as_str())} { (state.as_str()) } }
}

fn rev_badge(state: RevisionState) -> Markup {
    html! { span class={"badge r-" (state.as_str())} { (state.as_str()) } }
}

pub(super) fn csrf(s: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(s.csrf); }
}

fn layout(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · Test Pilot tower" }
                link rel="stylesheet" href="/ui/assets/style.css";
                script src="/ui/assets/live.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/ui/" { "✈ Test Pilot " span.muted { "tower" } }
                    @if let Some(s) = session {
                        nav {
                            a href="/ui/" { "Flights" }
                            a href="/ui/review" { "Review" }
                            @if s.may(Action::Push) { a href="/ui/push" { "Push a flight" } }
                        }
                        div.who {
                            span { (s.actor.name) } " "
                            span class={"role role-" (s.actor.role.as_str())} { (s.actor.role.as_str()) }
                            @if s.single_user { " " span.badge.warn title="approval by a second person is lifted on this tower" { "single-user" } }
                            form.inline method="post" action="/ui/signout" {
                                (csrf(s))
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub fn error_page(status: StatusCode, message: &str, back: Option<&str>) -> Markup {
    let title = status.canonical_reason().unwrap_or("Error");
    layout(
        title,
        None,
        html! {
            section.error {
                h1 { (status.as_u16()) " · " (title) }
                p.message { (message) }
                p {
                    @if let Some(b) = back { a.button href=(b) { "Go back" } " " }
                    a href="/ui/" { "All flights" }
                }
            }
        },
    )
}

pub fn signin(next: &str, problem: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            section.signin {
                h1 { "Sign in" }
                p { "Paste a tower token. Its role decides what you can do here: authors push flights and send them for review; approvers approve, send back, kill and end them." }
                @if let Some(p) = problem { p.problem role="alert" { (p) } }
                form method="post" action="/ui/signin" {
                    input type="hidden" name="next" value=(next);
                    label for="token" { "Token" }
                    input #token type="password" name="token" autocomplete="current-password" required autofocus placeholder="tp_…";
                    button.primary #signin type="submit" { "Sign in" }
                }
                p.muted { "Make a token on the tower's machine: " code { "testpilot tower token create --role approver --name you@example.com" } }
            }
        },
    )
}

// ---------------------------------------------------------------- the flights list

pub struct ListRow {
    pub summary: FlightSummary,
    pub by_status: BTreeMap<String, u64>,
    pub live_since: Option<Timestamp>,
}

pub struct ListData {
    pub rows: Vec<ListRow>,
    pub total: usize,
    pub counts: Vec<(String, usize)>,
    pub query: ListQuery,
    pub now: Timestamp,
}

fn query_string(q: &ListQuery) -> String {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if let Some(s) = &q.state {
        pairs.push(("state", s));
    }
    if let Some(x) = &q.q {
        pairs.push(("q", x));
    }
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

pub fn index(s: &Session, d: &ListData) -> Markup {
    let qs = query_string(&d.query);
    let count = |st: &str| {
        d.counts
            .iter()
            .find(|(k, _)| k == st)
            .map(|(_, c)| *c)
            .unwrap_or(0)
    };
    layout(
        "Flights",
        Some(s),
        html! {
            div.titlebar {
                h1 { "Flights" }
                span.updated #updated {}
            }
            form.filters method="get" action="/ui/" {
                div.chips {
                    a.chip.on[d.query.state.is_none()] href="/ui/" { "all " span.count { (d.total) } }
                    @for st in FlightState::ALL {
                        a.chip.on[d.query.state.as_deref() == Some(st.as_str())] href={"/ui/?state=" (st.as_str())} {
                            (st.as_str()) " " span.count { (count(st.as_str())) }
                        }
                    }
                }
                @if let Some(st) = &d.query.state { input type="hidden" name="state" value=(st); }
                input #search type="search" name="q" value=(d.query.q.as_deref().unwrap_or("")) placeholder="Search name, description, author" aria-label="search flights";
                button type="submit" { "Search" }
            }
            div #live data-poll={"/ui/live" @if !qs.is_empty() { "?" (qs) }} data-every=(POLL_MS) {
                (index_table(d))
            }
        },
    )
}

pub fn index_table(d: &ListData) -> Markup {
    let c = |r: &ListRow, st: &str| r.by_status.get(st).copied().unwrap_or(0);
    html! {
        @if d.rows.is_empty() {
            div.empty {
                @if d.total == 0 {
                    p { "No flights yet." }
                    p.muted { "Push one with " code { "testpilot flight push FILE" } " or from the Push page." }
                } @else {
                    p { "No flight matches." } p { a href="/ui/" { "Show all flights" } }
                }
            }
        } @else {
            table.flights {
                thead {
                    tr {
                        th { "Flight" } th { "State" } th { "Version" } th { "Author" } th { "Arms" } th { "Live since" }
                        th.num { "Enrolled" } th.num { "Completed" } th.num { "Killed" } th.num { "Failed" }
                    }
                }
                tbody {
                    @for r in &d.rows {
                        @let f = &r.summary;
                        @let enrolled: u64 = r.by_status.iter().filter(|(k, _)| !charts::not_enrolled(k)).map(|(_, v)| v).sum();
                        tr data-flight=(f.studyname) {
                            td.name {
                                a href={"/ui/flights/" (f.studyname)} { (f.studyname) }
                                div.desc { (f.description) }
                            }
                            td { (badge(f.state))
                                @if let Some(p) = &f.pending { " " a.pending href={"/ui/flights/" (f.studyname) "/review"} { "v" (p.version) " " (p.state.as_str()) } }
                            }
                            td.num {
                                "v" (f.live_version.unwrap_or(f.latest_version))
                            }
                            td { (f.author) }
                            td.arms { @for a in &f.arms { code { (a) } } }
                            td.when { @match r.live_since { Some(t) => (time(d.now, t)), None => span.muted { "—" } } }
                            td.num.enrolled { (n(enrolled)) }
                            td.num { (n(c(r, "completed"))) }
                            td.num { (n(c(r, "killed"))) }
                            td.num.bad[c(r, "failed") > 0] { (n(c(r, "failed"))) }
                        }
                    }
                }
            }
        }
    }
}

pub fn review_queue(s: &Session, waiting: &[FlightSummary]) -> Markup {
    layout(
        "Review",
        Some(s),
        html! {
            h1 { "Waiting for review" }
            @if waiting.is_empty() {
                div.empty { p { "Nothing is waiting for approval." } }
            } @else {
                table.flights {
                    thead { tr { th { "Flight" } th { "Revision" } th { "Pushed by" } th { "Live now" } th {} } }
                    tbody {
                        @for f in waiting {
                            tr {
                                td.name { a href={"/ui/flights/" (f.studyname)} { (f.studyname) } div.desc { (f.description) } }
                                td { "v" (f.latest_version) }
                                td { (f.pushed_by) }
                                td { @match f.live_version { Some(v) => { "v" (v) }, None => span.muted { "nothing yet" } } }
                                td { a.button href={"/ui/flights/" (f.studyname) "/review"} { "Review" } }
                            }
                        }
                    }
                }
            }
        },
    )
}

// ---------------------------------------------------------------- one flight

pub struct ProgressData {
    pub progress: Progress,
    pub enrolments: Vec<(String, u64)>,
    pub errors: Vec<ErrorReport>,
    pub flight: Option<Flight>,
}

fn actions(s: &Session, d: &FlightDetail) -> Markup {
    let f = &d.summary;
    let latest = d.revisions.last();
    let latest_state = latest.map(|r| r.state);
    let base = format!("/ui/flights/{}", f.studyname);
    html! {
        div.actions {
            @if latest_state == Some(RevisionState::Draft) && s.may(Action::Review) && !f.state.is_final() {
                form.inline method="post" action={(base) "/submit"} {
                    (csrf(s))
                    input type="hidden" name="version" value=(f.latest_version);
                    button.primary #submit-review type="submit" { "Send v" (f.latest_version) " for review" }
                }
            }
            @if latest_state == Some(RevisionState::Review) {
                a.button.primary #review-link href={(base) "/review"} {
                    @if s.may(Action::Approve) { "Review v" (f.latest_version) } @else { "v" (f.latest_version) " is waiting for review" }
                }
            }
            @if f.state == FlightState::Live && s.may(Action::Kill) {
                a.button.danger #kill-link href={(base) "/kill"} { "Kill…" }
            }
            @if f.state != FlightState::Ended && s.may(Action::End) {
                a.button #end-link href={(base) "/end"} { "End…" }
            }
        }
    }
}

pub fn flight(
    s: &Session,
    d: &FlightDetail,
    p: &ProgressData,
    results: Option<&Results>,
    (from, to): (u64, u64),
    now: Timestamp,
) -> Markup {
    let f = &d.summary;
    let live_since = d
        .audit
        .iter()
        .rev()
        .find(|a| a.action == "approve" && a.version == f.live_version && f.live_version.is_some())
        .map(|a| a.at);
    let shown = d.revisions.iter().find(|r| r.version == to);
    let older = d.revisions.iter().find(|r| r.version == from);
    let polling = f.state != FlightState::Ended;
    // A draft that an approver sent back: say why, where its author looks first.
    let sent_back = d
        .audit
        .iter()
        .rev()
        .find(|a| a.version == Some(f.latest_version))
        .filter(|a| {
            a.action == "sendback"
                && d.revisions.last().map(|r| r.state) == Some(RevisionState::Draft)
        });
    layout(
        &f.studyname,
        Some(s),
        html! {
            div.titlebar {
                h1 { (f.studyname) " " (badge(f.state)) }
                span.updated #updated {}
            }
            p.description { (f.description) }
            dl.facts {
                div { dt { "Author" } dd { (f.author) } }
                div { dt { "Live revision" } dd { @match f.live_version { Some(v) => { "v" (v) }, None => span.muted { "none" } } } }
                div { dt { "Newest revision" } dd { "v" (f.latest_version) " by " (f.pushed_by) } }
                div { dt { "Arms" } dd { @if f.arms.is_empty() { span.muted { "one plan for all" } } @for a in &f.arms { code { (a) } " " } } }
                div { dt { "Live since" } dd { @match live_since { Some(t) => (time(now, t)), None => span.muted { "—" } } } }
                div { dt { "Created" } dd { (time(now, f.created_at)) } }
            }
            @if let Some(e) = sent_back {
                p.sentback #sent-back {
                    "v" (f.latest_version) " was sent back by " strong { (e.actor) } " " (time(now, e.at)) ": "
                    span.comment { "“" (e.detail.get("comment").and_then(Value::as_str).unwrap_or("")) "”" }
                }
            }
            (actions(s, d))
            section #progress {
                h2 { "Progress" }
                @if polling {
                    div #live data-poll={"/ui/flights/" (f.studyname) "/live"} data-every=(POLL_MS) { (progress(d, p)) }
                } @else {
                    div { (progress(d, p)) }
                }
            }
            (super::results::section(results, now))
            section #spec {
                h2 { "Spec of v" (to) " " @if let Some(r) = shown { (rev_badge(r.state)) } }
                @if let Some(r) = shown { (copilot_source(r)) (spec_of(r)) }
            }
            section #revisions {
                h2 { "Revisions and changes" }
                (revisions(f, &d.revisions, now))
                (diff_form(f, &d.revisions, from, to))
                (diff(older.map(|r| &r.spec), shown.map(|r| &r.spec)))
            }
            section #audit {
                h2 { "Audit log" }
                (audit(&d.audit, now))
            }
        },
    )
}

/// A revision pushed as a copilot document: the document, folded, beside the flight it
/// expanded to.
fn copilot_source(r: &Revision) -> Markup {
    let Some(doc) = &r.copilot else {
        return html! {};
    };
    html! {
        details.copilot #copilot-source {
            summary { "Pushed as a copilot document; the spec below is what it expands to. Show the document" }
            pre { (serde_json::to_string_pretty(doc).unwrap_or_default()) }
        }
    }
}

fn spec_of(r: &Revision) -> Markup {
    match Flight::from_json(&r.spec) {
        Ok(f) => readable::spec(&f, &r.spec),
        Err(_) => html! { pre { (serde_json::to_string_pretty(&r.spec).unwrap_or_default()) } },
    }
}

fn revisions(f: &FlightSummary, revs: &[Revision], now: Timestamp) -> Markup {
    html! {
        table.revisions {
            thead { tr { th { "Revision" } th { "State" } th { "Pushed by" } th { "When" } th {} } }
            tbody {
                @for r in revs.iter().rev() {
                    tr {
                        td { "v" (r.version) }
                        td { (rev_badge(r.state)) }
                        td { (r.created_by) }
                        td { (time(now, r.created_at)) }
                        td { a href={"/ui/flights/" (f.studyname) "?from=" (r.version.saturating_sub(1)) "&to=" (r.version) "#revisions"} { "changes" } }
                    }
                }
            }
        }
    }
}

fn diff_form(f: &FlightSummary, revs: &[Revision], from: u64, to: u64) -> Markup {
    html! {
        form.diffpick method="get" action={"/ui/flights/" (f.studyname)} {
            "Compare "
            select name="from" aria-label="from revision" {
                option value="0" selected[from == 0] { "nothing" }
                @for r in revs { option value=(r.version) selected[r.version == from] { "v" (r.version) } }
            }
            " with "
            select name="to" aria-label="to revision" {
                @for r in revs { option value=(r.version) selected[r.version == to] { "v" (r.version) } }
            }
            " "
            button type="submit" { "Show" }
        }
    }
}

fn short(v: &Option<Value>) -> String {
    match v {
        None => String::new(),
        Some(Value::String(s)) => format!("\"{s}\""),
        Some(other) => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// The changes from `a` to `b` (the spec's `version` left out), as a table.
pub fn diff(a: Option<&Value>, b: Option<&Value>) -> Markup {
    let strip = |v: Option<&Value>| {
        let mut v = v
            .cloned()
            .unwrap_or_else(|| Value::Object(Default::default()));
        if let Some(o) = v.as_object_mut() {
            o.remove("version");
        }
        v
    };
    let changes = crate::diff::diff(&strip(a), &strip(b));
    html! {
        @if changes.is_empty() {
            p.muted.nodiff { "No changes." }
        } @else {
            table.diff {
                thead { tr { th { "Where" } th { "Change" } th { "Before" } th { "After" } } }
                tbody {
                    @for c in &changes {
                        tr class={"op-" (c.op)} {
                            td { code { (c.path) } }
                            td { (c.op) }
                            td.before { code { (short(&c.from)) } }
                            td.after { code { (short(&c.to)) } }
                        }
                    }
                }
            }
        }
    }
}

fn audit_detail(e: &AuditEntry) -> Markup {
    let get = |k: &str| e.detail.get(k).and_then(Value::as_str).map(str::to_string);
    let changes = e
        .detail
        .get("changes")
        .and_then(Value::as_array)
        .map(|a| a.len());
    html! {
        @if let Some(c) = get("comment") { span.comment { "“" (c) "”" } }
        @if let Some(r) = get("reason") { span.comment { "reason: " (r) } }
        @if let Some(n) = get("note") { span.warn { (n) } }
        @if let Some(c) = changes { span.muted { (c) " changes" } }
        @if e.detail.get("created").is_some() { span.muted { "created the flight" } }
    }
}

fn audit(entries: &[AuditEntry], now: Timestamp) -> Markup {
    html! {
        @if entries.is_empty() { p.muted { "Nothing yet." } } @else {
            table.audit {
                thead { tr { th { "When" } th { "Who" } th { "Did" } th { "Revision" } th { "Details" } } }
                tbody {
                    @for e in entries.iter().rev() {
                        tr {
                            td { (time(now, e.at)) }
                            td { (e.actor) }
                            td { span class={"act act-" (e.action)} { (e.action) } }
                            td { @if let Some(v) = e.version { "v" (v) } }
                            td { (audit_detail(e)) }
                        }
                    }
                }
            }
        }
    }
}

/// The live part of a flight's page: numbers, the status bar, funnels, the daily chart and
/// the latest errors. Also served alone for polling.
pub fn progress(d: &FlightDetail, p: &ProgressData) -> Markup {
    let pr = &p.progress;
    let get = |k: &str| pr.by_status.get(k).copied().unwrap_or(0);
    let enrolled: u64 = pr
        .by_status
        .iter()
        .filter(|(k, _)| !charts::not_enrolled(k))
        .map(|(_, v)| v)
        .sum();
    let not_enrolled = get("ineligible") + get("unsampled");
    let statuses: Vec<(String, u64)> = STATUSES.iter().map(|s| (s.to_string(), get(s))).collect();
    let labels = p
        .flight
        .as_ref()
        .map(|f| readable::step_labels(&f.flightplan, &readable::known_variables(f, None)))
        .unwrap_or_default();
    let overall = charts::funnel_steps(&pr.breakdown, &labels, None);
    let arms: Vec<(String, Vec<String>)> = p
        .flight
        .as_ref()
        .map(|f| {
            f.arms
                .iter()
                .map(|a| {
                    (
                        a.name.clone(),
                        readable::step_labels(
                            f.plan_for(Some(&a.name)),
                            &readable::known_variables(f, Some(&a.name)),
                        ),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let completed: BTreeMap<&str, u64> = pr
        .daily
        .iter()
        .map(|x| {
            (
                x.day.as_str(),
                x.by_status.get("completed").copied().unwrap_or(0),
            )
        })
        .collect();
    let mut days: BTreeMap<&str, Day> = BTreeMap::new();
    for x in &pr.daily {
        days.insert(
            &x.day,
            Day {
                day: x.day.clone(),
                enrolled: 0,
                completed: completed.get(x.day.as_str()).copied().unwrap_or(0),
            },
        );
    }
    for (day, c) in &p.enrolments {
        days.entry(day.as_str())
            .or_insert_with(|| Day {
                day: day.clone(),
                enrolled: 0,
                completed: 0,
            })
            .enrolled = *c;
    }
    let days: Vec<Day> = days.into_values().collect();
    let errors: Vec<&ErrorReport> = p
        .errors
        .iter()
        .filter(|e| {
            !matches!(
                e.status.as_str(),
                "running" | "completed" | "ineligible" | "unsampled"
            )
        })
        .take(8)
        .collect();
    html! {
        div.kpis data-clients=(enrolled) {
            div.kpi { span.v #kpi-enrolled { (n(enrolled)) } span.k { "enrolled" } }
            div.kpi { span.v #kpi-running { (n(get("running"))) } span.k { "running" } }
            div.kpi.good { span.v #kpi-completed { (n(get("completed"))) } span.k { "completed" } }
            div.kpi.bad[get("failed") > 0] { span.v #kpi-failed { (n(get("failed"))) } span.k { "failed" } }
            div.kpi { span.v { (n(get("killed"))) } span.k { "killed" } }
            div.kpi.muted { span.v { (n(not_enrolled)) } span.k { "not eligible or sampled" } }
            div.kpi.muted { span.v { (n(pr.reports)) } span.k { "reports" } }
        }
        @if enrolled == 0 {
            p.muted.noclients {
                @match d.summary.state {
                    FlightState::Draft | FlightState::Review => "No client runs this flight yet: it is not live.",
                    _ => "No client has reported on this flight yet.",
                }
            }
        }
        @if enrolled > 0 {
            (charts::status_bar(&statuses))
            div.funnels {
                (charts::funnel("All clients, by flightplan step", &overall))
                @for (arm, labels) in &arms {
                    (charts::funnel(&format!("Arm {arm}"), &charts::funnel_steps(&pr.breakdown, labels, Some(arm))))
                }
            }
            (charts::daily(&days))
        }
        h3 { "Latest errors" }
        @if errors.is_empty() {
            p.muted { "None among the latest reports." }
        } @else {
            table.errors {
                thead { tr { th { "When" } th { "Status" } th { "Step" } th { "Arm" } th { "Version" } th { "Detail" } th { "Client" } } }
                tbody {
                    @for e in &errors {
                        tr {
                            td { (when(e.at)) }
                            td { span class={"st c-text-" (e.status)} { (status_label(&e.status)) } }
                            td { (e.step + 1) }
                            td { @if let Some(a) = &e.arm { code { (a) } } }
                            td { "v" (e.version) }
                            td.detail { code { (serde_json::to_string(&e.detail).unwrap_or_default()) } }
                            td { code.client title=(e.client) { (e.client.get(..8).unwrap_or(&e.client)) "…" } }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- review, push, confirm

pub fn review(
    s: &Session,
    d: &FlightDetail,
    under_review: Option<&Revision>,
    validation: Option<&Result<(), Diagnostics>>,
    simulation: Markup,
) -> Markup {
    let f = &d.summary;
    let base = format!("/ui/flights/{}", f.studyname);
    let live = f
        .live_version
        .and_then(|v| d.revisions.iter().find(|r| r.version == v));
    layout(
        &format!("Review {}", f.studyname),
        Some(s),
        html! {
            p.crumbs { a href=(base) { "← " (f.studyname) } }
            @match under_review {
                None => {
                    h1 { "Nothing to review" }
                    p { "No revision of " code { (f.studyname) } " is waiting for approval. The newest is v" (f.latest_version) "." }
                }
                Some(r) => {
                    h1 { "Review " (f.studyname) " v" (r.version) }
                    p { "Pushed by " strong { (r.created_by) } " " (time(Timestamp(r.created_at.0), r.created_at)) " (" (when(r.created_at)) ")." }
                    h2 { "Validation" }
                    @match validation {
                        Some(Ok(())) => p.valid #validation { "✓ The spec is valid." },
                        Some(Err(diags)) => {
                            div.invalid #validation {
                                p { "✗ " (diags.len()) " problems:" }
                                ul { @for x in diags.iter() { li { code { (x.path.to_string()) } ": " (x.message) } } }
                            }
                        }
                        None => {},
                    }
                    h2 {
                        @match live { Some(l) => { "Changes from the live revision v" (l.version) }, None => { "Changes (nothing is live yet)" } }
                    }
                    (diff(live.map(|l| &l.spec), Some(&r.spec)))
                    (simulation)
                    h2 { "Decision" }
                    @if s.may(Action::Approve) {
                        @let own = two_person(
                            &s.actor.name,
                            d.revisions.iter().map(|x| (x.version, x.created_by.as_str())),
                            f.live_version,
                            s.single_user,
                        );
                        @let own = !matches!(own, Ok(false));
                        div.decide {
                            form method="post" action={(base) "/approve"} {
                                (csrf(s))
                                input type="hidden" name="version" value=(r.version);
                                @if own && !s.single_user {
                                    button.primary #approve type="submit" disabled { "Approve v" (r.version) }
                                    p.muted #own-revision { "You pushed a revision of this flight since it was last live, so someone else must approve it." }
                                } @else {
                                    button.primary #approve type="submit" { "Approve v" (r.version) " and make it live" }
                                    @if own { p.warn { "Single-user mode: you are approving a revision you pushed; the audit log will say so." } }
                                }
                            }
                            form method="post" action={(base) "/sendback"} {
                                (csrf(s))
                                input type="hidden" name="version" value=(r.version);
                                label for="comment" { "Or send it back to its author, saying why:" }
                                textarea #comment name="comment" rows="3" required placeholder="What needs to change" {}
                                button #sendback type="submit" { "Send back" }
                            }
                        }
                    } @else {
                        p.muted { "Your role (" (s.actor.role.as_str()) ") cannot approve; an approver decides." }
                    }
                    h2 { "The spec under review" }
                    (spec_of(r))
                }
            }
        },
    )
}

pub fn push(s: &Session, text: &str, problems: Option<&[(String, String)]>) -> Markup {
    layout(
        "Push a flight",
        Some(s),
        html! {
            h1 { "Push a flight" }
            p { "Paste a flight spec or a copilot document (JSON). It is validated (a copilot document is expanded into its flight and kept beside it), stored as a new draft revision, and you can then send it for review." }
            @if let Some(ps) = problems {
                div.invalid role="alert" #problems {
                    p { "✗ Not pushed: " (ps.len()) " problems." }
                    ul { @for (path, m) in ps { li { code { (path) } ": " (m) } } }
                }
            }
            form method="post" action="/ui/push" {
                (csrf(s))
                textarea #spec name="spec" rows="22" spellcheck="false" required { (text) }
                button.primary #push type="submit" { "Validate and push" }
            }
        },
    )
}

/// Clients a kill or end affects.
#[derive(Debug, Clone, Copy)]
pub struct Affected {
    pub enrolled: u64,
    pub running: u64,
}

pub fn confirm(
    s: &Session,
    f: &FlightSummary,
    a: Affected,
    how: Ending,
    problem: Option<&str>,
) -> Markup {
    let running = a.running;
    let verb = how.verb();
    let base = format!("/ui/flights/{}", f.studyname);
    layout(
        &format!("{verb} {}", f.studyname),
        Some(s),
        html! {
            p.crumbs { a href=(base) { "← " (f.studyname) } }
            section.confirm.danger[how == Ending::Kill] {
                h1 { @if how == Ending::Kill { "Kill " } @else { "End " } code { (f.studyname) } "?" }
                p.affects #affects {
                    "This affects " strong { (n(a.enrolled)) " clients" } " enrolled in "
                    code { (f.studyname) } ", " strong { (n(running)) } " of them running it now."
                }
                @match how {
                    Ending::Kill => p { "Every pilot running it stops it and undoes what it changed; their status becomes " em { "killed" } ". It stays in the index as killed. This cannot be undone." },
                    Ending::End => p { "The flight leaves the index; pilots still running it stop and undo it (status " em { "withdrawn" } "). A pending revision is dropped. This cannot be undone." },
                }
                @if let Some(pr) = problem { p.problem role="alert" { (pr) } }
                form method="post" action={(base) "/" (verb)} {
                    (csrf(s))
                    label for="reason" { "Why (kept in the audit log)" }
                    input #reason type="text" name="reason" maxlength="500";
                    label for="confirm" { "Type " code { (f.studyname) } " to confirm" }
                    input #confirm type="text" name="confirm" required autocomplete="off" spellcheck="false";
                    div.buttons {
                        button.danger #do-confirm type="submit" { @if how == Ending::Kill { "Kill " } @else { "End " } (f.studyname) " for " (n(a.enrolled)) " clients" }
                        a.button href=(base) { "Cancel" }
                    }
                }
            }
        },
    )
}
