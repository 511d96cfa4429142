//! Summary statistics used by every metric: mean, standard deviation, median, Wilson interval.
//!
//! Each returns `None` where the statistic is undefined (no data, or one value for a sample standard
//! deviation) instead of a NaN, so a report can say "n/a" and why.

use serde::{Deserialize, Serialize};

/// Which standard deviation the reproducibility metrics use.
///
/// The paper does not say; `Sample` (divide by n - 1) is the unbiased choice and our default,
/// `Population` (divide by n, numpy's default) is there to compare with numbers computed that way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StdKind {
    /// Divide by n - 1; undefined for a single value.
    #[default]
    Sample,
    /// Divide by n.
    Population,
}

/// z for a two-sided 95% interval.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// Arithmetic mean.
///
/// ```
/// assert_eq!(reprolm_metrics::stats::mean(&[1.0, 2.0, 6.0]), Some(3.0));
/// assert_eq!(reprolm_metrics::stats::mean(&[]), None);
/// ```
pub fn mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    Some(xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Standard deviation, two-pass over the values less the first one, so that equal values give
/// exactly 0: the mean of equal values is not always that value in floating point (three times
/// 0.1 summed and divided by 3 is 0.10000000000000002), and the plain two-pass formula then
/// reports a spread of about 1e-17 where there is none.
///
/// ```
/// use reprolm_metrics::stats::{std_dev, StdKind};
/// assert_eq!(std_dev(&[2.0, 4.0], StdKind::Population), Some(1.0));
/// assert_eq!(std_dev(&[5.0], StdKind::Sample), None);
/// assert_eq!(std_dev(&[0.1, 0.1, 0.1], StdKind::Sample), Some(0.0));
/// ```
pub fn std_dev(xs: &[f64], kind: StdKind) -> Option<f64> {
    let dof = match kind {
        StdKind::Sample => xs.len().checked_sub(1)?,
        StdKind::Population => xs.len(),
    };
    if dof == 0 {
        return None;
    }
    let first = xs[0];
    let shifted: Vec<f64> = xs.iter().map(|x| x - first).collect();
    let m = mean(&shifted)?;
    let ss: f64 = shifted.iter().map(|x| (x - m) * (x - m)).sum();
    Some((ss / dof as f64).sqrt())
}

/// Median (mean of the two middle values for an even count).
///
/// ```
/// assert_eq!(reprolm_metrics::stats::median(&[3.0, 1.0, 10.0, 2.0]), Some(2.5));
/// ```
pub fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// A two-sided confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
}

/// Wilson score interval for a binomial proportion.
///
/// Chosen over the normal ("Wald") interval because benchmark accuracies sit near 0 or 1 on small sets
/// (AIME has 30 problems), where Wald collapses to zero width or leaves [0, 1].
///
/// ```
/// use reprolm_metrics::stats::{wilson_interval, Z_95};
/// let ci = wilson_interval(0, 30, Z_95).unwrap();
/// assert_eq!(ci.lo, 0.0);
/// assert!(ci.hi > 0.1 && ci.hi < 0.12);
/// ```
pub fn wilson_interval(successes: u64, n: u64, z: f64) -> Option<Interval> {
    if n == 0 || successes > n {
        return None;
    }
    let n = n as f64;
    let p = successes as f64 / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    Some(Interval {
        lo: (centre - half).max(0.0),
        hi: (centre + half).min(1.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn std_matches_hand_computation() {
        // 0.5, 0.6, 0.7: mean 0.6, squared deviations 0.01, 0, 0.01.
        let xs = [0.5, 0.6, 0.7];
        assert!(close(
            std_dev(&xs, StdKind::Sample).unwrap(),
            (0.02f64 / 2.0).sqrt()
        ));
        assert!(close(
            std_dev(&xs, StdKind::Population).unwrap(),
            (0.02f64 / 3.0).sqrt()
        ));
        // Ties: all equal gives exactly zero, not a rounding residue.
        assert_eq!(std_dev(&[0.1, 0.1, 0.1, 0.1], StdKind::Sample), Some(0.0));
        assert_eq!(std_dev(&[], StdKind::Population), None);
        assert_eq!(std_dev(&[1.0], StdKind::Population), Some(0.0));
    }

    #[test]
    fn median_handles_odd_even_and_ties() {
        assert_eq!(median(&[5.0]), Some(5.0));
        assert_eq!(median(&[7.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[2.0, 2.0, 9.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn wilson_matches_the_closed_form() {
        // 8 of 10 at z = 1.96, worked out term by term.
        let (x, n, z) = (8.0f64, 10.0f64, 1.96f64);
        let p = x / n;
        let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
        let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
        let ci = wilson_interval(8, 10, 1.96).unwrap();
        assert!(
            close(ci.lo, centre - half) && close(ci.hi, centre + half),
            "{ci:?}"
        );
        // Known value: 8/10 at 95% is about (0.490, 0.943).
        assert!(
            (ci.lo - 0.4902).abs() < 1e-3 && (ci.hi - 0.9433).abs() < 1e-3,
            "{ci:?}"
        );
        let all = wilson_interval(10, 10, Z_95).unwrap();
        assert!((all.hi - 1.0).abs() < 1e-12, "{all:?}");
        assert!(all.lo > 0.69 && all.lo < 0.73);
        assert_eq!(wilson_interval(0, 0, Z_95), None);
        assert_eq!(wilson_interval(3, 2, Z_95), None);
    }
}
