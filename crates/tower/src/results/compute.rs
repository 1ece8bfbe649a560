//! Results from rollup numbers alone (docs/api.md#results): pure, no I/O.
//!
//! Per arm and topic the rollups give n (clients enrolled, never fewer than those with an
//! event), the events (Σx over clients, 0 for a client without one), Σx² and the clients
//! with an event. That is all the statistics need:
//! - the mean per client and its interval: mean ± t(0.975, n−1)·s/√n, s² = (nΣx² − (Σx)²) / (n(n−1));
//! - the share with an event and its Wilson score interval;
//! - against the control: Welch's t-test (Welch–Satterthwaite degrees of freedom) on the
//!   means, and the two-proportion z-test (pooled for the p-value, unpooled for the interval).
//!
//! Distributions come from `statrs`. Whatever the data do not define is `None`.

use super::model::*;
use crate::store::{day_label, Rollups, NO_ARM_COLUMN};
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// The most arms, and the most topics, shown beyond the flight's own (from events stored
/// before the tower refused arms and topics not of the flight): the first in name order.
pub const MAX_EXTRA: usize = 32;

/// One arm's numbers for one topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// Clients in the arm.
    pub n: u64,
    /// Clients with at least one event.
    pub with_event: u64,
    /// Events in all (Σx).
    pub sum: u64,
    /// Σx² over clients.
    pub sum_sq: u64,
}

impl Sample {
    fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum as f64 / self.n as f64)
    }

    /// The sample variance of the per-client counts (n − 1 in the denominator), computed
    /// from whole numbers so that no precision is lost before the one division.
    fn variance(&self) -> Option<f64> {
        if self.n < 2 {
            return None;
        }
        let n = self.n as i128;
        let num = n * self.sum_sq as i128 - (self.sum as i128) * (self.sum as i128);
        Some(num.max(0) as f64 / (n * (n - 1)) as f64)
    }

    fn share(&self) -> Option<f64> {
        (self.n > 0).then(|| self.with_event as f64 / self.n as f64)
    }
}

/// The two-sided 97.5 % quantile of the standard normal distribution.
fn z975() -> f64 {
    Normal::standard().inverse_cdf(0.975)
}

fn t975(df: f64) -> Option<f64> {
    StudentsT::new(0.0, 1.0, df)
        .ok()
        .map(|t| t.inverse_cdf(0.975))
        .filter(|q| q.is_finite())
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Events per client: the mean and its 95 % t interval.
pub fn mean_interval(s: &Sample) -> Mean {
    let mean = s.mean();
    let half = s.variance().and_then(|v| {
        let t = t975((s.n - 1) as f64)?;
        finite(t * (v / s.n as f64).sqrt())
    });
    Mean {
        mean,
        low: mean.zip(half).map(|(m, h)| m - h),
        high: mean.zip(half).map(|(m, h)| m + h),
    }
}

/// The share of clients with an event and its 95 % Wilson score interval.
pub fn share_interval(s: &Sample) -> Share {
    let Some(p) = s.share() else {
        return Share {
            value: None,
            low: None,
            high: None,
        };
    };
    let n = s.n as f64;
    let z = z975();
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = z / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Share {
        value: Some(p),
        low: Some((center - half).max(0.0)),
        high: Some((center + half).min(1.0)),
    }
}

/// `arm` minus `control` on events per client: Welch's t-test.
pub fn welch(arm: &Sample, control: &Sample) -> Difference {
    let diff = arm.mean().zip(control.mean()).map(|(a, c)| a - c);
    let (Some(va), Some(vc)) = (arm.variance(), control.variance()) else {
        return Difference {
            diff,
            low: None,
            high: None,
            p: None,
        };
    };
    let (qa, qc) = (va / arm.n as f64, vc / control.n as f64);
    let se2 = qa + qc;
    let none = Difference {
        diff,
        low: None,
        high: None,
        p: None,
    };
    if se2 <= 0.0 || !se2.is_finite() {
        return none;
    }
    let se = se2.sqrt();
    let df = se2 * se2 / (qa * qa / (arm.n - 1) as f64 + qc * qc / (control.n - 1) as f64);
    let (Some(d), Ok(dist)) = (diff, StudentsT::new(0.0, 1.0, df)) else {
        return none;
    };
    let t = d / se;
    let p = 2.0 * dist.sf(t.abs());
    let q = dist.inverse_cdf(0.975);
    Difference {
        diff,
        low: finite(d - q * se),
        high: finite(d + q * se),
        p: finite(p.min(1.0)),
    }
}

/// `arm` minus `control` on the share with an event: the two-proportion z-test (pooled
/// standard error for the p-value, unpooled for the interval).
pub fn two_proportions(arm: &Sample, control: &Sample) -> Difference {
    let (Some(pa), Some(pc)) = (arm.share(), control.share()) else {
        return Difference {
            diff: None,
            low: None,
            high: None,
            p: None,
        };
    };
    let (na, nc) = (arm.n as f64, control.n as f64);
    let d = pa - pc;
    let z = z975();
    let unpooled = (pa * (1.0 - pa) / na + pc * (1.0 - pc) / nc).sqrt();
    let pooled = (arm.with_event + control.with_event) as f64 / (na + nc);
    let se = (pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nc)).sqrt();
    let p = (se > 0.0).then(|| 2.0 * Normal::standard().sf((d / se).abs()));
    Difference {
        diff: Some(d),
        low: finite(d - z * unpooled),
        high: finite(d + z * unpooled),
        p: p.and_then(finite).map(|p| p.min(1.0)),
    }
}

/// One arm of one topic, with its difference from the control (`None` for the control).
pub fn arm_results(name: &str, s: &Sample, control: Option<&Sample>) -> ArmResults {
    ArmResults {
        arm: name.to_string(),
        clients: s.n,
        clients_with_event: s.with_event,
        events: s.sum,
        per_client: mean_interval(s),
        share: share_interval(s),
        vs_control: control.map(|c| VsControl {
            per_client: welch(s, c),
            share: two_proportions(s, c),
        }),
    }
}

/// The results of a flight: `arms` are the flight's arm names in order (empty for a flight
/// without arms), `watched` the topics its recordings watch, in order.
pub fn compute(studyname: &str, arms: &[String], watched: &[String], r: &Rollups) -> Results {
    // Arms as stored ('' for none) and as shown; arms seen only in the data come after the
    // flight's own, so nothing counted is hidden.
    let mut columns: Vec<String> = if arms.is_empty() {
        vec![NO_ARM_COLUMN.to_string()]
    } else {
        arms.to_vec()
    };
    let seen = r
        .arms
        .keys()
        .map(|(a, _)| a)
        .chain(r.days.keys().map(|(_, _, a)| a));
    let mut extra: Vec<&String> = seen.filter(|a| !columns.contains(a)).collect();
    extra.sort();
    extra.dedup();
    columns.extend(extra.into_iter().take(MAX_EXTRA).cloned());
    let shown = |c: &str| {
        if c == NO_ARM_COLUMN {
            NO_ARM.to_string()
        } else {
            c.to_string()
        }
    };
    let mut topics: Vec<String> = watched.to_vec();
    let mut more: Vec<&String> = r
        .arms
        .keys()
        .map(|(_, t)| t)
        .filter(|t| !topics.contains(t))
        .collect();
    more.sort();
    more.dedup();
    topics.extend(more.into_iter().take(MAX_EXTRA).cloned());

    let topics = topics
        .iter()
        .map(|topic| {
            let samples: Vec<Sample> = columns
                .iter()
                .map(|arm| {
                    let roll = r
                        .arms
                        .get(&(arm.clone(), topic.clone()))
                        .copied()
                        .unwrap_or_default();
                    let enrolled = r.enrolled.get(arm).copied().unwrap_or(0);
                    Sample {
                        n: enrolled.max(roll.clients_with_event),
                        with_event: roll.clients_with_event,
                        sum: roll.events,
                        sum_sq: roll.sum_sq,
                    }
                })
                .collect();
            let arms = columns
                .iter()
                .zip(&samples)
                .enumerate()
                .map(|(i, (name, s))| arm_results(&shown(name), s, (i > 0).then(|| &samples[0])))
                .collect();
            let days = r
                .days
                .iter()
                .filter(|((t, _, _), _)| t == topic)
                .map(|((_, day, arm), n)| (*day, columns.iter().position(|c| c == arm), arm, *n))
                .collect::<Vec<_>>();
            let mut days = days;
            days.sort_by_key(|(day, pos, _, _)| (*day, *pos));
            TopicResults {
                topic: topic.clone(),
                arms,
                days: days
                    .into_iter()
                    .map(|(day, _, arm, events)| DayCount {
                        day: day_label(day),
                        arm: shown(arm),
                        events,
                    })
                    .collect(),
            }
        })
        .collect();
    Results {
        studyname: studyname.to_string(),
        arms: columns.iter().map(|c| shown(c)).collect(),
        topics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ArmRollup;

    #[test]
    fn arms_and_topics_not_of_the_flight_are_capped() {
        let mut r = Rollups::default();
        for i in 0..100 {
            let one = ArmRollup {
                events: 1,
                clients_with_event: 1,
                sum_sq: 1,
            };
            r.arms
                .insert((format!("made-up-{i:03}"), "search".into()), one);
            r.arms.insert(("control".into(), format!("t{i:03}")), one);
            r.days
                .insert(("search".into(), 20_000, format!("day-arm-{i:03}")), 1);
        }
        let arms = ["control".to_string(), "new".to_string()];
        let res = compute("bar", &arms, &["search".to_string()], &r);
        assert_eq!(res.arms.len(), 2 + MAX_EXTRA);
        assert_eq!(res.arms[2], "day-arm-000", "the first in name order");
        assert_eq!(res.topics.len(), 1 + MAX_EXTRA);
        assert_eq!(res.topics[1].topic, "t000");
        assert!(res.topics.iter().all(|t| t.arms.len() == 2 + MAX_EXTRA));
    }
}
