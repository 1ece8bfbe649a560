//! Pictures drawn on the server as inline SVG: the funnel of clients per flightplan step,
//! the status breakdown as one stacked bar, and enrolments and completions per day.
//!
//! Colours come from CSS classes (`c-<status>`, `c-enrolled`, ...) so that the stylesheet
//! picks them for light and dark mode; the SVG carries no inline style (the dashboard's CSP
//! forbids it) and every label goes through maud, escaped.

use crate::store::ProgressRow;
use maud::{html, Markup};

/// The statuses a client can end in, in the order the breakdown shows them.
pub const STATUSES: [&str; 10] = [
    "running",
    "completed",
    "declined",
    "failed",
    "killed",
    "expired",
    "timedout",
    "optedout",
    "withdrawn",
    "indexexpired",
];

/// Statuses of clients that never enrolled: not counted in the funnel.
pub fn not_enrolled(status: &str) -> bool {
    matches!(status, "ineligible" | "unsampled")
}

pub fn status_label(status: &str) -> &str {
    match status {
        "optedout" => "opted out",
        "timedout" => "timed out",
        "indexexpired" => "index expired",
        other => other,
    }
}

/// `1234567` → `1,234,567`.
pub fn n(x: u64) -> String {
    let s = x.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "0%".into();
    }
    let p = part as f64 * 100.0 / whole as f64;
    if p > 0.0 && p < 1.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// One row of a funnel: clients that reached a step, and those whose flight stopped there
/// without completing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunnelStep {
    pub label: String,
    pub reached: u64,
    pub stopped: u64,
}

/// The funnel of `rows` (every version, optionally one arm) over a plan of `labels.len()`
/// steps; the last row is "every step done".
pub fn funnel_steps(rows: &[ProgressRow], labels: &[String], arm: Option<&str>) -> Vec<FunnelStep> {
    let max_step = rows.iter().map(|r| r.step as usize).max().unwrap_or(0);
    let n = if labels.is_empty() {
        max_step
    } else {
        labels.len()
    };
    let mut steps: Vec<FunnelStep> = (0..=n)
        .map(|k| FunnelStep {
            label: if k == n {
                "every step done".to_string()
            } else {
                labels
                    .get(k)
                    .cloned()
                    .unwrap_or_else(|| format!("step {}", k + 1))
            },
            reached: 0,
            stopped: 0,
        })
        .collect();
    for r in rows {
        if not_enrolled(&r.status) || arm.is_some_and(|a| r.arm.as_deref() != Some(a)) {
            continue;
        }
        let at = (r.step as usize).min(n);
        for s in steps.iter_mut().take(at + 1) {
            s.reached += r.clients;
        }
        if r.status != "running" && r.status != "completed" {
            steps[at].stopped += r.clients;
        }
    }
    steps
}

/// A position or length along an SVG's width, as a percentage of it: charts are drawn
/// without a `viewBox`, so their text is never scaled and stays at the page's font size
/// at any width, while bars and marks stretch. Never `NaN`, never outside 0–100 %.
pub fn at(percent: f64) -> String {
    let p = if percent.is_finite() {
        percent.clamp(0.0, 100.0)
    } else {
        0.0
    };
    format!("{p:.2}%")
}

/// Height of one funnel row: a line of label, then the bar.
const ROW_H: f64 = 48.0;
const BAR_H: f64 = 20.0;

/// A horizontal funnel: one row per step, its label above a bar whose width is relative to
/// the clients enrolled; the part of a bar that stopped at that step (failed, declined, ...)
/// in its status colour. The count sits inside a long bar, after a short one.
pub fn funnel(title: &str, steps: &[FunnelStep]) -> Markup {
    let total = steps.first().map(|s| s.reached).unwrap_or(0);
    let h = ROW_H * steps.len() as f64;
    let share = |x: u64| {
        if total == 0 {
            0.0
        } else {
            100.0 * x as f64 / total as f64
        }
    };
    html! {
        figure.chart.funnel {
            figcaption { (title) }
            svg width="100%" height=(h) role="img" aria-label={(title) ": clients per flightplan step"} {
                @for (i, s) in steps.iter().enumerate() {
                    @let y = i as f64 * ROW_H;
                    @let w = share(s.reached);
                    @let ws = share(s.stopped).min(w);
                    text.label x="0" y=(y + 16.0) {
                        title { (s.label) }
                        @if i + 1 == steps.len() { (shorten(&s.label, 60)) } @else { (i + 1) ". " (shorten(&s.label, 56)) }
                    }
                    rect.track x="0" y=(y + 22.0) width="100%" height=(BAR_H) rx="3" {}
                    @if s.reached > 0 {
                        rect.c-reached x="0" y=(y + 22.0) width=(at(w.max(0.4))) height=(BAR_H) rx="3" {
                            title { (n(s.reached)) " clients reached this step" }
                        }
                    }
                    @if s.stopped > 0 {
                        rect.c-failed x=(at(w - ws)) y=(y + 22.0) width=(at(ws.max(0.4))) height=(BAR_H) {
                            title { (n(s.stopped)) " stopped here without completing" }
                        }
                    }
                    @if w >= 50.0 {
                        text.value.inbar x="0" dx="6" y=(y + 37.0) { (n(s.reached)) " · " (pct(s.reached, total)) }
                    } @else {
                        text.value x=(at(w)) dx="6" y=(y + 37.0) { (n(s.reached)) " · " (pct(s.reached, total)) }
                    }
                }
            }
        }
    }
}

/// The status breakdown: one stacked bar of every client's latest status, and a legend
/// with counts that always lists every ending, zero or not.
pub fn status_bar(by_status: &[(String, u64)]) -> Markup {
    let total: u64 = by_status.iter().map(|(_, c)| c).sum();
    let w = 720.0;
    let mut x = 0.0;
    let mut segments = Vec::new();
    for (status, c) in by_status {
        if *c > 0 && total > 0 {
            let bw = w * *c as f64 / total as f64;
            segments.push((status, *c, x, bw));
            x += bw;
        }
    }
    html! {
        figure.chart.statusbar {
            figcaption { "Where every enrolled client is now" }
            svg.bar viewBox={"0 0 " (w) " 28"} preserveAspectRatio="none" role="img" aria-label="status breakdown" {
                rect.track x="0" y="2" width=(w) height="24" rx="4" {}
                @for (status, c, x, bw) in &segments {
                    rect class={"c-" (status)} x=(x) y="2" width=(bw.max(2.0)) height="24" {
                        title { (status_label(status)) ": " (n(*c)) }
                    }
                }
            }
            ul.legend {
                @for (status, c) in by_status {
                    li.zero[*c == 0] {
                        svg.swatch viewBox="0 0 10 10" { rect class={"c-" (status)} width="10" height="10" rx="2" {} }
                        span.name { (status_label(status)) }
                        " "
                        strong { (n(*c)) }
                        span.muted { " " (pct(*c, total)) }
                    }
                }
            }
        }
    }
}

/// One day of the time series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    pub day: String,
    pub enrolled: u64,
    pub completed: u64,
}

/// The y axis of a bar chart drawn in two SVGs side by side (see [`daily`]): the axis in
/// its own narrow SVG, so the plot beside it can be all percentages.
pub const PLOT_H: f64 = 220.0;
const PLOT_BOTTOM: f64 = 24.0;
const PLOT_TOP: f64 = 10.0;

/// The y of value `v` on a plot whose top is `max`.
pub fn plot_y(v: u64, max: u64) -> f64 {
    let plot_h = PLOT_H - PLOT_BOTTOM - PLOT_TOP;
    PLOT_TOP + plot_h - plot_h * v as f64 / max.max(1) as f64
}

/// The y axis (0, half, max) of a plot: an SVG as wide as its longest number.
pub fn y_axis(max: u64) -> Markup {
    let ticks = [0, max / 2, max];
    let chars = ticks.iter().map(|t| n(*t).len()).max().unwrap_or(1);
    let w = 10.0 + 9.0 * chars as f64;
    html! {
        svg.yaxis width=(w) height=(PLOT_H) aria-hidden="true" {
            @for t in ticks {
                text.axis x=(w - 6.0) y=(plot_y(t, max) + 4.0) text-anchor="end" { (n(t)) }
            }
        }
    }
}

/// Grid lines at 0, half and max, across the plot.
pub fn grid(max: u64) -> Markup {
    html! {
        @for t in [0, max / 2, max] {
            line.grid x1="0" x2="100%" y1=(plot_y(t, max)) y2=(plot_y(t, max)) {}
        }
    }
}

/// Which day labels to show for `days` days: about eight; every second of them is `alt`,
/// which the stylesheet hides on narrow screens. `None` for a day without a label.
pub fn day_label(i: usize, days: usize) -> Option<bool> {
    let every = (days / 8).max(1);
    // The last day always; no other label right before it.
    if (i.is_multiple_of(every) && i + every / 2 + 1 < days) || i + 1 == days {
        Some((i / every) % 2 == 1)
    } else {
        None
    }
}

/// A day's label under its bars (`x`, `w`: where they are, in %): the first starts at its
/// bars and the last ends at them, so neither is cut at the plot's edge.
pub fn day_text(day: &str, i: usize, days: usize, x: f64, w: f64, alt: bool) -> Markup {
    let (x, anchor) = if i == 0 && days > 1 {
        (x, "start")
    } else if i + 1 == days && days > 1 {
        (x + w, "end")
    } else {
        (x + w / 2.0, "middle")
    };
    html! {
        text.axis.alt[alt] x=(at(x)) y=(PLOT_H - 6.0) text-anchor=(anchor) { (day.get(5..).unwrap_or(day)) }
    }
}

/// Enrolments and completions per day as paired bars, with a y axis and a few day labels.
pub fn daily(days: &[Day]) -> Markup {
    let max = days
        .iter()
        .map(|d| d.enrolled.max(d.completed))
        .max()
        .unwrap_or(0)
        .max(1);
    let slot = 100.0 / days.len().max(1) as f64;
    let bar = slot * 0.4;
    let bottom = plot_y(0, max);
    html! {
        figure.chart.daily {
            figcaption {
                "Per day (UTC): "
                svg.swatch viewBox="0 0 10 10" { rect.c-enrolled width="10" height="10" rx="2" {} }
                " enrolments "
                svg.swatch viewBox="0 0 10 10" { rect.c-completed width="10" height="10" rx="2" {} }
                " completions"
            }
            @if days.is_empty() {
                p.muted { "No reports yet." }
            } @else {
                div.plot {
                    (y_axis(max))
                    svg.bars width="100%" height=(PLOT_H) role="img" aria-label="enrolments and completions per day" {
                        (grid(max))
                        @for (i, d) in days.iter().enumerate() {
                            @let x0 = i as f64 * slot + (slot - 2.0 * bar) / 2.0;
                            rect.c-enrolled x=(at(x0)) y=(plot_y(d.enrolled, max)) width=(at(bar)) height=(bottom - plot_y(d.enrolled, max)) {
                                title { (d.day) ": " (n(d.enrolled)) " enrolled" }
                            }
                            rect.c-completed x=(at(x0 + bar)) y=(plot_y(d.completed, max)) width=(at(bar)) height=(bottom - plot_y(d.completed, max)) {
                                title { (d.day) ": " (n(d.completed)) " completed" }
                            }
                            @if let Some(alt) = day_label(i, days.len()) {
                                (day_text(d.day.as_str(), i, days.len(), x0, 2.0 * bar, alt))
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(arm: &str, status: &str, step: u64, clients: u64) -> ProgressRow {
        ProgressRow {
            version: 1,
            arm: Some(arm.into()),
            status: status.into(),
            step,
            clients,
        }
    }

    #[test]
    fn funnel_counts_reached_and_stopped() {
        let rows = [
            row("a", "running", 0, 5),
            row("a", "failed", 1, 2),
            row("b", "completed", 2, 3),
            row("b", "ineligible", 0, 100),
        ];
        let labels = vec!["one".to_string(), "two".to_string()];
        let got: Vec<(u64, u64)> = funnel_steps(&rows, &labels, None)
            .iter()
            .map(|s| (s.reached, s.stopped))
            .collect();
        assert_eq!(got, [(10, 0), (5, 2), (3, 0)]);
        let a: Vec<u64> = funnel_steps(&rows, &labels, Some("a"))
            .iter()
            .map(|s| s.reached)
            .collect();
        assert_eq!(a, [7, 2, 0]);
    }

    #[test]
    fn day_labels_never_crowd() {
        let shown = |days| {
            (0..days)
                .filter(|i| day_label(*i, days).is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(shown(3), [0, 1, 2]);
        assert_eq!(shown(20), [0, 2, 4, 6, 8, 10, 12, 14, 16, 19]);
        assert_eq!(day_label(2, 20), Some(true));
        assert!(shown(400).len() <= 10);
    }

    #[test]
    fn positions_are_always_percentages_in_range() {
        assert_eq!(at(12.345), "12.35%");
        assert_eq!(at(f64::NAN), "0.00%");
        assert_eq!(at(-3.0), "0.00%");
        assert_eq!(at(f64::INFINITY), "0.00%");
        assert_eq!(at(250.0), "100.00%");
    }

    #[test]
    fn charts_have_no_viewbox_that_scales_text() {
        let steps = vec![
            FunnelStep {
                label: "one".into(),
                reached: 10,
                stopped: 2,
            },
            FunnelStep {
                label: "every step done".into(),
                reached: 0,
                stopped: 0,
            },
        ];
        let f = funnel("All", &steps).into_string();
        assert!(
            !f.contains("viewBox") && f.contains("width=\"100%\""),
            "{f}"
        );
        assert!(f.contains(">10 · 100%</text>") && !f.contains("NaN"));
        let d = daily(&[Day {
            day: "2026-04-23".into(),
            enrolled: 3,
            completed: 1,
        }])
        .into_string();
        assert_eq!(
            d.matches("viewBox").count(),
            2,
            "only the legend's swatches: {d}"
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(n(0), "0");
        assert_eq!(n(999), "999");
        assert_eq!(n(1000), "1,000");
        assert_eq!(n(1234567), "1,234,567");
        assert_eq!(pct(1, 3), "33%");
        assert_eq!(pct(1, 1000), "0.1%");
    }
}
