//! The results section of a flight's page (`docs/api.md#results`): per topic, the arms side
//! by side with their means and shares and 95 % intervals, each arm's difference from the
//! control, a sentence that says what the numbers mean, events per day per arm, and the
//! links to export every event.
//!
//! Like every chart here the SVGs have no `viewBox`: positions along the width are
//! percentages (`charts::at`), so marks stretch with the page and text keeps its size. A
//! number the data do not define (`null` in the results) is drawn as nothing and said as
//! "not enough data", never as 0.

use super::charts::{self, at, n};
use super::sentences::{finite, num, p_value, percent, sentences};
use crate::results::{DayCount, Difference, Results, TopicResults, NO_ARM};
use maud::{html, Markup};
use std::collections::BTreeMap;
use testpilot_flight::Timestamp;

/// How many arm colours the stylesheet has (`arm-0` … `arm-5`); more arms reuse them.
const ARM_COLOURS: usize = 6;
/// At most this many days are drawn per topic (the latest ones).
const MAX_DAYS: usize = 400;

// ---------------------------------------------------------------- interval charts

/// One row of an interval chart: a value and its interval, and what the row says.
struct Mark<'a> {
    arm: &'a str,
    colour: usize,
    value: Option<f64>,
    low: Option<f64>,
    high: Option<f64>,
    says: String,
}

/// Where 0 is and what the widest value is: 0 at the left, or at the middle for
/// differences that may go either way.
#[derive(Debug, Clone, Copy)]
enum Scale {
    FromZero(f64),
    AroundZero(f64),
}

impl Scale {
    fn of(marks: &[Mark], around: bool) -> Scale {
        let widest = marks
            .iter()
            .flat_map(|m| [m.value, m.low, m.high])
            .filter_map(finite)
            .map(f64::abs)
            .fold(0.0, f64::max);
        let w = if widest > 0.0 { widest } else { 1.0 };
        if around {
            Scale::AroundZero(w)
        } else {
            Scale::FromZero(w)
        }
    }
    /// The position of `v`, in % of the width, inside a margin for the marks' ends.
    fn pos(self, v: f64) -> f64 {
        match self {
            Scale::FromZero(w) => 2.0 + 94.0 * v.max(0.0) / w,
            Scale::AroundZero(w) => 50.0 + 46.0 * v / w,
        }
    }
}

const MARK_ROW: f64 = 46.0;

/// Rows of arms, each a label line and beneath it the value as a dot with its 95 % interval
/// as a bar with caps.
fn intervals(caption: &str, marks: &[Mark], around: bool) -> Markup {
    let scale = Scale::of(marks, around);
    let h = MARK_ROW * marks.len() as f64 + 4.0;
    html! {
        figure.chart.intervals {
            figcaption { (caption) }
            svg width="100%" height=(h) role="img" aria-label=(caption) {
                @if around {
                    line.zero x1="50%" x2="50%" y1="20" y2=(h) {}
                }
                @for (i, m) in marks.iter().enumerate() {
                    @let y = i as f64 * MARK_ROW;
                    text.label x="0" y=(y + 16.0) {
                        tspan.armname { (m.arm) }
                        tspan.value dx="8" { (m.says) }
                    }
                    @if let (Some(l), Some(hi)) = (finite(m.low), finite(m.high)) {
                        line.ci x1=(at(scale.pos(l))) x2=(at(scale.pos(hi))) y1=(y + 33.0) y2=(y + 33.0) {}
                        line.ci x1=(at(scale.pos(l))) x2=(at(scale.pos(l))) y1=(y + 26.0) y2=(y + 40.0) {}
                        line.ci x1=(at(scale.pos(hi))) x2=(at(scale.pos(hi))) y1=(y + 26.0) y2=(y + 40.0) {}
                    }
                    @if let Some(v) = finite(m.value) {
                        circle class={"mean arm-" (m.colour % ARM_COLOURS)} cx=(at(scale.pos(v))) cy=(y + 33.0) r="6" {
                            title { (m.arm) ": " (m.says) }
                        }
                    }
                }
            }
        }
    }
}

fn interval_text(
    value: String,
    low: Option<f64>,
    high: Option<f64>,
    fmt: &dyn Fn(f64) -> String,
) -> String {
    match (finite(low), finite(high)) {
        (Some(l), Some(h)) => format!("{value} ({} to {})", fmt(l), fmt(h)),
        _ => value,
    }
}

fn per_client_marks(t: &TopicResults) -> Vec<Mark<'_>> {
    t.arms
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let m = &a.per_client;
            Mark {
                arm: &a.arm,
                colour: i,
                value: m.mean,
                low: m.low,
                high: m.high,
                says: match finite(m.mean) {
                    None => "not enough data yet".into(),
                    Some(v) => interval_text(num(Some(v)), m.low, m.high, &|x| num(Some(x))),
                },
            }
        })
        .collect()
}

fn share_marks(t: &TopicResults) -> Vec<Mark<'_>> {
    t.arms
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let s = &a.share;
            Mark {
                arm: &a.arm,
                colour: i,
                value: s.value,
                low: s.low,
                high: s.high,
                says: match finite(s.value) {
                    None => "not enough data yet".into(),
                    Some(v) => interval_text(
                        format!("{} of {}", percent(v), n(a.clients)),
                        s.low,
                        s.high,
                        &percent,
                    ),
                },
            }
        })
        .collect()
}

fn signed(x: f64) -> String {
    if x > 0.0 {
        format!("+{}", num(Some(x)))
    } else {
        num(Some(x))
    }
}

fn difference_marks(t: &TopicResults) -> Vec<Mark<'_>> {
    t.arms
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, a)| {
            let d = a.vs_control.as_ref().map(|v| &v.per_client);
            let get = |f: fn(&Difference) -> Option<f64>| d.and_then(f);
            let value = get(|d| d.diff);
            Mark {
                arm: &a.arm,
                colour: i,
                value,
                low: get(|d| d.low),
                high: get(|d| d.high),
                says: match finite(value) {
                    None => "not enough data yet".into(),
                    Some(v) => {
                        let s = interval_text(signed(v), get(|d| d.low), get(|d| d.high), &signed);
                        match finite(get(|d| d.p)) {
                            Some(p) => format!("{s}, {}", p_value(p)),
                            None => s,
                        }
                    }
                },
            }
        })
        .collect()
}

// ---------------------------------------------------------------- events per day

/// The days from the first to the last with events, gaps filled with zeros (at most the
/// latest [`MAX_DAYS`]), and per day the events of each arm in `arms`' order. The chart
/// ends at `now`'s day at the latest: days after it (a pilot's clock far ahead) are not
/// drawn, so they cannot push the real days out.
pub fn per_day(days: &[DayCount], arms: &[String], now: Timestamp) -> Vec<(String, Vec<u64>)> {
    let today = now.to_rfc3339();
    let today = today.get(..10).unwrap_or(&today);
    let mut by_day: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for d in days.iter().filter(|d| d.day.as_str() <= today) {
        if let Some(k) = arms.iter().position(|a| *a == d.arm) {
            by_day.entry(&d.day).or_insert_with(|| vec![0; arms.len()])[k] += d.events;
        }
    }
    let parse = |d: &str| {
        testpilot_flight::parse_dateish(&serde_json::Value::String(d.to_string()))
            .ok()
            .map(|x| x.at.0)
    };
    let (first, last) = match (by_day.keys().next(), by_day.keys().next_back()) {
        (Some(f), Some(l)) => (parse(f), parse(l)),
        _ => return vec![],
    };
    let mut out: Vec<(String, Vec<u64>)> = Vec::new();
    if let (Some(first), Some(last)) = (first, last) {
        let count = ((last - first) / 86_400_000 + 1).max(1) as usize;
        let skip = count.saturating_sub(MAX_DAYS);
        for k in skip..count {
            let t = testpilot_flight::Timestamp(first + k as i64 * 86_400_000).to_rfc3339();
            let day = t.get(..10).unwrap_or(&t).to_string();
            let counts = by_day
                .get(day.as_str())
                .cloned()
                .unwrap_or_else(|| vec![0; arms.len()]);
            out.push((day, counts));
        }
    } else {
        // Days that are not dates (the API promises `YYYY-MM-DD`): as they come.
        out = by_day
            .into_iter()
            .rev()
            .take(MAX_DAYS)
            .rev()
            .map(|(d, c)| (d.to_string(), c))
            .collect();
    }
    out
}

fn daily(t: &TopicResults, arms: &[String], now: Timestamp) -> Markup {
    let days = per_day(&t.days, arms, now);
    let max = days
        .iter()
        .flat_map(|(_, c)| c.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let slot = 100.0 / days.len().max(1) as f64;
    let bar = slot * 0.8 / arms.len().max(1) as f64;
    let bottom = charts::plot_y(0, max);
    html! {
        figure.chart.daily.events {
            figcaption {
                "Events per day (UTC): "
                @for (i, a) in arms.iter().enumerate() {
                    svg.swatch viewBox="0 0 10 10" { rect class={"arm-" (i % ARM_COLOURS)} width="10" height="10" rx="2" {} }
                    " " (a) " "
                }
            }
            @if days.is_empty() {
                p.muted { "No events yet." }
            } @else {
                div.plot {
                    (charts::y_axis(max))
                    svg.bars width="100%" height=(charts::PLOT_H) role="img" aria-label={"events of " (t.topic) " per day and arm"} {
                        (charts::grid(max))
                        @for (i, (day, counts)) in days.iter().enumerate() {
                            @let x0 = i as f64 * slot + slot * 0.1;
                            @for (k, c) in counts.iter().enumerate() {
                                @if *c > 0 {
                                    rect class={"arm-" (k % ARM_COLOURS)} x=(at(x0 + k as f64 * bar)) y=(charts::plot_y(*c, max)) width=(at(bar)) height=(bottom - charts::plot_y(*c, max)) {
                                        title { (day) ", " (arms[k]) ": " (n(*c)) " events" }
                                    }
                                }
                            }
                            @if let Some(alt) = charts::day_label(i, days.len()) {
                                (charts::day_text(day, i, days.len(), x0, slot * 0.8, alt))
                            }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- the section

fn ci(low: Option<f64>, high: Option<f64>, fmt: &dyn Fn(f64) -> String) -> String {
    match (finite(low), finite(high)) {
        (Some(l), Some(h)) => format!("{} to {}", fmt(l), fmt(h)),
        _ => "—".into(),
    }
}

fn table(t: &TopicResults) -> Markup {
    let pc = |x: f64| percent(x);
    let pp = |x: f64| {
        let s = format!("{:.1}", x * 100.0);
        let s = s.trim_end_matches(".0");
        if x > 0.0 {
            format!("+{s} pts")
        } else {
            format!("{} pts", s.replacen('-', "−", 1))
        }
    };
    let diff = |d: Option<&Difference>, fmt: &dyn Fn(f64) -> String| match d {
        None => html! { span.muted { "control" } },
        Some(d) => html! {
            @match finite(d.diff) {
                None => span.muted { "not enough data" },
                Some(x) => {
                    (fmt(x))
                    span.muted { " (" (ci(d.low, d.high, fmt)) @if let Some(p) = finite(d.p) { "; " (p_value(p)) } ")" }
                }
            }
        },
    };
    html! {
        div.scroll {
            table.results {
                thead {
                    tr {
                        th { "Arm" } th.num { "Clients" } th.num { "With event" } th.num { "Events" }
                        th { "Per client (95%)" } th { "Share (95%)" }
                        @if t.arms.len() > 1 { th { "Per client vs control" } th { "Share vs control" } }
                    }
                }
                tbody {
                    @for (i, a) in t.arms.iter().enumerate() {
                        tr {
                            td {
                                svg.swatch viewBox="0 0 10 10" { rect class={"arm-" (i % ARM_COLOURS)} width="10" height="10" rx="2" {} }
                                " " code { (a.arm) }
                            }
                            td.num { (n(a.clients)) }
                            td.num { (n(a.clients_with_event)) }
                            td.num { (n(a.events)) }
                            td { (num(a.per_client.mean)) span.muted { " (" (ci(a.per_client.low, a.per_client.high, &|x| num(Some(x)))) ")" } }
                            td { (finite(a.share.value).map(pc).unwrap_or_else(|| "—".into())) span.muted { " (" (ci(a.share.low, a.share.high, &pc)) ")" } }
                            @if t.arms.len() > 1 {
                                td { (diff(a.vs_control.as_ref().map(|v| &v.per_client), &signed)) }
                                td { (diff(a.vs_control.as_ref().map(|v| &v.share), &pp)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn topic(t: &TopicResults, arms: &[String], now: Timestamp) -> Markup {
    let control = t.arms.first().map(|a| a.arm.as_str()).unwrap_or(NO_ARM);
    html! {
        article.topic data-topic=(t.topic) {
            h3 { code { (t.topic) } }
            ul.verdicts {
                @for s in sentences(t) { li.verdict { (s.markup()) } }
            }
            div.pair {
                (intervals("Events per client: mean and 95% interval", &per_client_marks(t), false))
                (intervals("Share of clients with the event, and 95% interval", &share_marks(t), false))
            }
            @if t.arms.len() > 1 {
                (intervals(&format!("Events per client: difference from {control}, and 95% interval"), &difference_marks(t), true))
            }
            (table(t))
            (daily(t, arms, now))
        }
    }
}

/// The results section of a flight's page; nothing when there are no results to show or
/// the flight records no topics (it has no `instrument` step that streams to the tower).
/// `now` is the tower's clock: the daily charts end at its day.
pub fn section(r: Option<&Results>, now: Timestamp) -> Markup {
    let Some(r) = r.filter(|r| !r.topics.is_empty()) else {
        return html! {};
    };
    let base = format!("/ui/flights/{}", r.studyname);
    html! {
        section #results {
            h2 { "Results" }
            p.muted {
                "From the events the flight's pilots recorded and uploaded. "
                @match r.arms.first() {
                    Some(c) if r.arms.len() > 1 => { "Every arm is compared with the first, " code { (c) } ", the control." }
                    _ => { "The flight has one arm: no comparison." }
                }
            }
            p.exports {
                "Every event: "
                a #export-csv href={(base) "/events.csv"} download { "events.csv" }
                " · "
                a #export-jsonl href={(base) "/events.jsonl"} download { "events.jsonl" }
            }
            @for t in &r.topics { (topic(t, &r.arms, now)) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::fixtures;
    use crate::dashboard::sentences::tests::{arm, diff};
    use crate::results::Share;

    /// 2027-01-10T12:00:00Z.
    const NOW: i64 = 1_799_582_400_000;

    /// Every number drawn into an SVG: no NaN, no infinity, no negative size.
    fn check_svg(html: &str) {
        assert!(!html.contains("NaN"), "NaN in {html}");
        assert!(!html.contains("inf"), "infinity in {html}");
        for attr in ["width=\"-", "height=\"-", "x=\"-", "cx=\"-", "r=\"-"] {
            assert!(!html.contains(attr), "{attr} in {html}");
        }
    }

    #[test]
    fn the_fixture_results_render() {
        let r = fixtures::results("newtab");
        let html = section(Some(&r), Timestamp(NOW)).into_string();
        check_svg(&html);
        assert!(html.contains("id=\"results\""));
        assert!(html.contains("href=\"/ui/flights/newtab/events.csv\""));
        assert!(html.contains("href=\"/ui/flights/newtab/events.jsonl\""));
        assert!(html.contains("more often per client than in <code>control</code>"));
        assert!(html.contains("no detectable difference"));
        assert!(html.contains("not enough data yet"));
        // One circle per arm and topic with a mean, in the arm's colour.
        assert!(html.contains("class=\"mean arm-1\""));
        assert_eq!(section(None, Timestamp(NOW)).into_string(), "");
    }

    #[test]
    fn nulls_and_odd_numbers_draw_nothing_wrong() {
        let nulls = Difference {
            diff: None,
            low: None,
            high: None,
            p: None,
        };
        let mut none = arm("b", 0, None, Some(nulls));
        none.share = Share {
            value: None,
            low: None,
            high: None,
        };
        let mut weird = arm(
            "c",
            3,
            Some(f64::NAN),
            Some(diff(f64::INFINITY, -1.0, f64::NAN, f64::NAN)),
        );
        weird.per_client.low = Some(-5.0);
        let t = TopicResults {
            topic: "x".into(),
            arms: vec![arm("a", 0, Some(0.0), None), none, weird],
            days: vec![
                DayCount {
                    day: "2027-01-05".into(),
                    arm: "a".into(),
                    events: 0,
                },
                DayCount {
                    day: "not a day".into(),
                    arm: "zzz".into(),
                    events: 3,
                },
            ],
        };
        let r = Results {
            studyname: "odd".into(),
            arms: vec!["a".into(), "b".into(), "c".into()],
            topics: vec![t],
        };
        let html = section(Some(&r), Timestamp(NOW)).into_string();
        check_svg(&html);
        assert!(html.contains("not enough data yet"));
        // A flight that records no topics has no section.
        let empty = Results {
            studyname: "empty".into(),
            arms: vec![NO_ARM.into()],
            topics: vec![],
        };
        assert_eq!(section(Some(&empty), Timestamp(NOW)).into_string(), "");
    }

    #[test]
    fn days_are_filled_and_capped() {
        let d = |day: &str, arm: &str, events| DayCount {
            day: day.into(),
            arm: arm.into(),
            events,
        };
        let arms = vec!["a".to_string(), "b".to_string()];
        let got = per_day(
            &[
                d("2027-01-05", "a", 3),
                d("2027-01-08", "b", 2),
                d("2027-01-05", "b", 1),
            ],
            &arms,
            Timestamp(NOW),
        );
        assert_eq!(
            got,
            vec![
                ("2027-01-05".to_string(), vec![3, 1]),
                ("2027-01-06".to_string(), vec![0, 0]),
                ("2027-01-07".to_string(), vec![0, 0]),
                ("2027-01-08".to_string(), vec![0, 2]),
            ]
        );
        let long = per_day(
            &[d("2020-01-01", "a", 1), d("2027-01-01", "a", 1)],
            &arms,
            Timestamp(NOW),
        );
        assert_eq!(long.len(), MAX_DAYS);
        assert_eq!(long.last().unwrap().0, "2027-01-01");
        assert!(per_day(&[], &arms, Timestamp(NOW)).is_empty());
        // A day far after the tower's today is not drawn and pushes nothing out.
        let ahead = per_day(
            &[d("2027-01-05", "a", 3), d("9999-12-31", "b", 7)],
            &arms,
            Timestamp(NOW),
        );
        assert_eq!(ahead, vec![("2027-01-05".to_string(), vec![3, 0])]);
        let today = per_day(&[d("2027-01-10", "a", 1)], &arms, Timestamp(NOW));
        assert_eq!(today.len(), 1, "today's events are drawn");
    }
}
