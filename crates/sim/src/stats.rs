//! The statistics of the report: whether observed shares agree with what the spec implies,
//! and intervals for shares estimated from a sample.

use statrs::distribution::{Binomial, ChiSquared, ContinuousCDF, DiscreteCDF};

/// Two-sided p-value of `k` successes in `n` trials with probability `p`.
pub fn binomial_p(k: u64, n: u64, p: f64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    if p <= 0.0 || p >= 1.0 {
        let exact = (p <= 0.0 && k == 0) || (p >= 1.0 && k == n);
        return if exact { 1.0 } else { 0.0 };
    }
    let Ok(b) = Binomial::new(p, n) else {
        return 1.0;
    };
    let low = b.cdf(k);
    let high = if k == 0 { 1.0 } else { b.sf(k - 1) };
    (2.0 * low.min(high)).min(1.0)
}

/// Pearson's chi-square goodness of fit of `observed` counts to `expected` shares; 1 with
/// fewer than two categories or no observations.
pub fn chi_square_p(observed: &[u64], expected: &[f64]) -> f64 {
    let n: u64 = observed.iter().sum();
    if observed.len() < 2 || n == 0 {
        return 1.0;
    }
    let mut stat = 0.0;
    for (o, e) in observed.iter().zip(expected) {
        let want = e * n as f64;
        if want > 0.0 {
            stat += (*o as f64 - want).powi(2) / want;
        } else if *o > 0 {
            return 0.0;
        }
    }
    match ChiSquared::new((observed.len() - 1) as f64) {
        Ok(c) => c.sf(stat),
        Err(_) => 1.0,
    }
}

/// The Wilson score interval (95 %) of a share `k / n`.
pub fn wilson(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054;
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * ((p * (1.0 - p) / n) + z * z / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fair_and_unfair() {
        assert!(binomial_p(5000, 10_000, 0.5) > 0.9);
        assert!(binomial_p(5300, 10_000, 0.5) < 1e-6);
        assert!(chi_square_p(&[500, 510, 490], &[1.0 / 3.0; 3]) > 0.5);
        assert!(chi_square_p(&[600, 400], &[0.5, 0.5]) < 1e-6);
        let (lo, hi) = wilson(50, 100);
        assert!(lo < 0.5 && hi > 0.5 && hi - lo < 0.21);
    }
}
