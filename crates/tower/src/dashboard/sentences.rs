//! What a flight's results say in words (`docs/api.md#results`): numbers as an author reads
//! them, the verdict on an arm against the control, and one sentence per arm ("happened 12%
//! more often …", "no detectable difference yet", "not enough data yet"). A number the data
//! do not define is said as "not enough data", never as 0.

use super::charts::n;
use crate::results::{ArmResults, Difference, TopicResults};
use maud::{html, Markup};

pub(super) fn finite(x: Option<f64>) -> Option<f64> {
    x.filter(|v| v.is_finite())
}

/// A number as an author reads it: `2.4`, `0.35`, `12.5`, `1,234`; `—` when undefined.
pub fn num(x: Option<f64>) -> String {
    let Some(x) = finite(x) else {
        return "—".into();
    };
    let s = if x.abs() >= 100.0 {
        let r = x.round();
        let digits = n(r.abs() as u64);
        return if r < 0.0 {
            format!("−{digits}")
        } else {
            digits
        };
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    match s.as_str() {
        "-0" => "0".into(),
        _ => s.replacen('-', "−", 1),
    }
}

/// A share or relative change (a fraction) as a percentage: `12%`, `4.5%`, `0.3%`.
pub fn percent(fraction: f64) -> String {
    let p = (fraction * 100.0).abs();
    let s = if p >= 10.0 {
        format!("{p:.0}")
    } else {
        format!("{p:.1}")
    };
    format!("{}%", s.trim_end_matches(".0"))
}

pub(super) fn p_value(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".into()
    } else if p < 0.01 {
        format!("p = {p:.3}")
    } else {
        format!("p = {p:.2}")
    }
}

// ---------------------------------------------------------------- the sentence

/// What an arm's events per client say against the control's.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The difference or its interval is not defined by the data yet.
    NotEnoughData,
    /// The 95 % interval of the difference includes 0.
    NoDifference { p: Option<f64> },
    /// The interval lies wholly above (`more`) or below 0. With `relative`, `size`, `low`
    /// and `high` are fractions of the control's mean; otherwise events per client.
    /// `low` ≤ `high` are magnitudes in the direction of `more`.
    Differs {
        more: bool,
        relative: bool,
        size: f64,
        low: f64,
        high: f64,
        p: Option<f64>,
    },
}

/// The verdict on `d`, the arm's difference from a control whose mean is `control_mean`.
pub fn verdict(d: &Difference, control_mean: Option<f64>) -> Verdict {
    let (Some(diff), Some(low), Some(high)) = (finite(d.diff), finite(d.low), finite(d.high))
    else {
        return Verdict::NotEnoughData;
    };
    let p = finite(d.p);
    if low <= 0.0 && high >= 0.0 {
        return Verdict::NoDifference { p };
    }
    let more = low > 0.0;
    let base = finite(control_mean).filter(|m| *m > 0.0);
    let scale = base.unwrap_or(1.0);
    let (a, b) = ((low / scale).abs(), (high / scale).abs());
    Verdict::Differs {
        more,
        relative: base.is_some(),
        size: (diff / scale).abs(),
        low: a.min(b),
        high: a.max(b),
        p,
    }
}

/// Words and names (shown as code) of a sentence.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Name(String),
}

/// A sentence about a topic's numbers, with names marked so the page shows them as code.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sentence(Vec<Piece>);

impl Sentence {
    fn t(mut self, s: impl Into<String>) -> Self {
        self.0.push(Piece::Text(s.into()));
        self
    }
    fn name(mut self, s: &str) -> Self {
        self.0.push(Piece::Name(s.to_string()));
        self
    }

    /// As plain text, names in backticks.
    #[cfg(test)]
    pub fn text(&self) -> String {
        self.0
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.clone(),
                Piece::Name(x) => format!("`{x}`"),
            })
            .collect()
    }

    pub fn markup(&self) -> Markup {
        html! {
            @for p in &self.0 {
                @match p { Piece::Text(t) => (t), Piece::Name(x) => code { (x) } }
            }
        }
    }
}

/// The sentence on `arm` against `control` for `topic`, e.g. "In `grid`, `search` happened
/// 12% more often per client than in `control` (95%: 4% to 20%; p = 0.02)."
pub fn comparison(topic: &str, arm: &ArmResults, control: &ArmResults) -> Sentence {
    let d = arm.vs_control.as_ref().map(|v| &v.per_client);
    let v = d
        .map(|d| verdict(d, control.per_client.mean))
        .unwrap_or(Verdict::NotEnoughData);
    let ns = format!("n = {} and {}", n(arm.clients), n(control.clients));
    let s = Sentence::default();
    match v {
        Verdict::NotEnoughData => s
            .name(&arm.arm)
            .t(" and ")
            .name(&control.arm)
            .t(": not enough data yet to compare ")
            .name(topic)
            .t(format!(" ({ns}).")),
        Verdict::NoDifference { p } => s
            .name(&arm.arm)
            .t(" and ")
            .name(&control.arm)
            .t(": no detectable difference in ")
            .name(topic)
            .t(" yet (")
            .t(p.map(|p| format!("{}, ", p_value(p))).unwrap_or_default())
            .t(format!("{ns}).")),
        Verdict::Differs {
            more,
            relative,
            size,
            low,
            high,
            p,
        } => {
            let dir = if more { "more" } else { "less" };
            let p = p.map(|p| format!("; {}", p_value(p))).unwrap_or_default();
            let s = s.t("In ").name(&arm.arm).t(", ").name(topic);
            if relative {
                s.t(format!(
                    " happened {} {dir} often per client than in ",
                    percent(size)
                ))
                .name(&control.arm)
                .t(format!(" (95%: {} to {}{p}).", percent(low), percent(high)))
            } else {
                let dir = if more { "more" } else { "fewer" };
                s.t(format!(
                    " happened {} {dir} times per client than in ",
                    num(Some(size))
                ))
                .name(&control.arm)
                .t(format!(
                    " (95%: {} to {}{p}).",
                    num(Some(low)),
                    num(Some(high))
                ))
            }
        }
    }
}

/// The sentence on a topic of a flight with one arm (or the control alone).
pub fn summary(topic: &str, a: &ArmResults) -> Sentence {
    let s = Sentence::default();
    match finite(a.per_client.mean) {
        None => s
            .t("Not enough data yet for ")
            .name(topic)
            .t(format!(" (n = {}).", n(a.clients))),
        Some(mean) => {
            let ci = match (finite(a.per_client.low), finite(a.per_client.high)) {
                (Some(l), Some(h)) => format!(" (95%: {} to {})", num(Some(l)), num(Some(h))),
                _ => String::new(),
            };
            let share = finite(a.share.value)
                .map(|v| {
                    format!(
                        ", and {} of {} clients had it at least once",
                        percent(v),
                        n(a.clients)
                    )
                })
                .unwrap_or_default();
            s.name(topic).t(format!(
                " happened {} times per client on average{ci}{share}.",
                num(Some(mean))
            ))
        }
    }
}

/// One sentence per arm against the control, or the one summary of a single arm.
pub fn sentences(t: &TopicResults) -> Vec<Sentence> {
    match t.arms.split_first() {
        None => vec![],
        Some((only, [])) => vec![summary(&t.topic, only)],
        Some((control, rest)) => rest
            .iter()
            .map(|a| comparison(&t.topic, a, control))
            .collect(),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::results::{Mean, Share, VsControl, NO_ARM};

    pub(crate) fn diff(diff: f64, low: f64, high: f64, p: f64) -> Difference {
        Difference {
            diff: Some(diff),
            low: Some(low),
            high: Some(high),
            p: Some(p),
        }
    }

    pub(crate) fn arm(
        name: &str,
        clients: u64,
        mean: Option<f64>,
        vs: Option<Difference>,
    ) -> ArmResults {
        ArmResults {
            arm: name.into(),
            clients,
            clients_with_event: clients / 2,
            events: clients * 2,
            per_client: Mean {
                mean,
                low: mean.map(|m| m - 0.5),
                high: mean.map(|m| m + 0.5),
            },
            share: Share {
                value: Some(0.5),
                low: Some(0.4),
                high: Some(0.6),
            },
            vs_control: vs.map(|d| VsControl {
                per_client: d.clone(),
                share: d,
            }),
        }
    }

    #[test]
    fn more_often() {
        let c = arm("control", 48, Some(2.5), None);
        let g = arm("grid", 50, Some(2.8), Some(diff(0.3, 0.1, 0.5, 0.0036)));
        assert_eq!(
            comparison("search-bar-used", &g, &c).text(),
            "In `grid`, `search-bar-used` happened 12% more often per client than in `control` (95%: 4% to 20%; p = 0.004)."
        );
    }

    #[test]
    fn less_often() {
        let c = arm("control", 48, Some(2.5), None);
        let g = arm("grid", 50, Some(2.2), Some(diff(-0.3, -0.5, -0.1, 0.0004)));
        assert_eq!(
            comparison("search-bar-used", &g, &c).text(),
            "In `grid`, `search-bar-used` happened 12% less often per client than in `control` (95%: 4% to 20%; p < 0.001)."
        );
    }

    #[test]
    fn no_detectable_difference() {
        let c = arm("control", 48, Some(2.5), None);
        let g = arm("grid", 50, Some(2.6), Some(diff(0.1, -0.2, 0.4, 0.41)));
        assert_eq!(
            comparison("search-bar-used", &g, &c).text(),
            "`grid` and `control`: no detectable difference in `search-bar-used` yet (p = 0.41, n = 50 and 48)."
        );
    }

    #[test]
    fn not_enough_data() {
        let c = arm("control", 1, Some(1.0), None);
        let nulls = Difference {
            diff: None,
            low: None,
            high: None,
            p: None,
        };
        let g = arm("grid", 0, None, Some(nulls));
        let s = comparison("search-bar-used", &g, &c).text();
        assert_eq!(
            s,
            "`grid` and `control`: not enough data yet to compare `search-bar-used` (n = 0 and 1)."
        );
        // No comparison at all (an arm without vsControl) says the same.
        let g = arm("grid", 0, None, None);
        assert_eq!(comparison("search-bar-used", &g, &c).text(), s);
        // A difference without an interval cannot be judged.
        let half = Difference {
            diff: Some(0.5),
            low: None,
            high: None,
            p: Some(0.01),
        };
        assert_eq!(verdict(&half, Some(1.0)), Verdict::NotEnoughData);
        // Nor can a non-finite one.
        assert_eq!(
            verdict(&diff(f64::NAN, 0.1, 0.2, 0.1), Some(1.0)),
            Verdict::NotEnoughData
        );
    }

    #[test]
    fn a_control_mean_of_zero_gives_absolute_numbers() {
        let c = arm("control", 40, Some(0.0), None);
        let g = arm("grid", 40, Some(0.5), Some(diff(0.5, 0.1, 0.9, 0.02)));
        assert_eq!(
            comparison("opened", &g, &c).text(),
            "In `grid`, `opened` happened 0.5 more times per client than in `control` (95%: 0.1 to 0.9; p = 0.02)."
        );
    }

    #[test]
    fn one_arm_summary() {
        let a = arm(NO_ARM, 50, Some(2.4), None);
        assert_eq!(
            summary("opened", &a).text(),
            "`opened` happened 2.4 times per client on average (95%: 1.9 to 2.9), and 50% of 50 clients had it at least once."
        );
        let a = arm(NO_ARM, 0, None, None);
        assert_eq!(
            summary("opened", &a).text(),
            "Not enough data yet for `opened` (n = 0)."
        );
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(Some(2.4)), "2.4");
        assert_eq!(num(Some(2.0)), "2");
        assert_eq!(num(Some(0.3456)), "0.35");
        assert_eq!(num(Some(12.345)), "12.3");
        assert_eq!(num(Some(-0.3)), "−0.3");
        assert_eq!(num(Some(-0.001)), "0");
        assert_eq!(num(Some(1234.6)), "1,235");
        assert_eq!(num(None), "—");
        assert_eq!(num(Some(f64::INFINITY)), "—");
        assert_eq!(percent(0.123), "12%");
        assert_eq!(percent(0.045), "4.5%");
        assert_eq!(percent(0.04), "4%");
        assert_eq!(percent(-0.2), "20%");
    }
}
