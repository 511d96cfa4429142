//! Unbiased pass@k (Chen et al., 2021, "Evaluating Large Language Models Trained on Code").
//!
//! With n samples of which c are correct, pass@k = 1 - C(n-c, k) / C(n, k). The binomials overflow for
//! the n the paper uses, so the ratio is computed as the product prod_{i=n-c+1}^{n} (1 - k/i), which stays
//! in [0, 1] at every step.

/// Unbiased pass@k for one problem; `None` if `k` is 0, `k > n` or `c > n`.
///
/// ```
/// use reprolm_metrics::passk::pass_at_k;
/// assert_eq!(pass_at_k(4, 0, 2), Some(0.0));
/// assert_eq!(pass_at_k(4, 3, 2), Some(1.0)); // any 2 of 4 include a correct one
/// assert!((pass_at_k(4, 1, 1).unwrap() - 0.25).abs() < 1e-15);
/// ```
pub fn pass_at_k(n: u64, c: u64, k: u64) -> Option<f64> {
    if k == 0 || k > n || c > n {
        return None;
    }
    if n - c < k {
        return Some(1.0);
    }
    let k = k as f64;
    let fail: f64 = (n - c + 1..=n).map(|i| 1.0 - k / i as f64).product();
    Some(1.0 - fail)
}

/// pass@k averaged over problems, each given as (samples, correct); `None` if any problem has fewer
/// than `k` samples or there are no problems.
///
/// ```
/// use reprolm_metrics::passk::mean_pass_at_k;
/// assert_eq!(mean_pass_at_k(&[(2, 2), (2, 0)], 1), Some(0.5));
/// ```
pub fn mean_pass_at_k(problems: &[(u64, u64)], k: u64) -> Option<f64> {
    if problems.is_empty() {
        return None;
    }
    let mut sum = 0.0;
    for &(n, c) in problems {
        sum += pass_at_k(n, c, k)?;
    }
    Some(sum / problems.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// C(n, k) in f64 by the multiplicative formula: an independent route to the same number.
    fn binom(n: u64, k: u64) -> f64 {
        if k > n {
            return 0.0;
        }
        (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
    }

    #[test]
    fn matches_the_binomial_definition() {
        for n in 1..=20u64 {
            for c in 0..=n {
                for k in 1..=n {
                    let want = 1.0 - binom(n - c, k) / binom(n, k);
                    let got = pass_at_k(n, c, k).unwrap();
                    assert!(
                        (got - want).abs() < 1e-12,
                        "n={n} c={c} k={k}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn hand_cases_and_edges() {
        // n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10.
        assert!((pass_at_k(5, 2, 2).unwrap() - 0.7).abs() < 1e-15);
        // pass@1 is c/n.
        assert!((pass_at_k(16, 5, 1).unwrap() - 5.0 / 16.0).abs() < 1e-15);
        assert_eq!(pass_at_k(3, 1, 4), None);
        assert_eq!(pass_at_k(3, 4, 1), None);
        assert_eq!(pass_at_k(3, 1, 0), None);
        // Large n stays finite and in range where the binomials overflow f64.
        let p = pass_at_k(2000, 3, 100).unwrap();
        let want = 1.0
            - (1998..=2000)
                .map(|i| 1.0 - 100.0 / i as f64)
                .product::<f64>();
        assert!((p - want).abs() < 1e-15 && p > 0.0 && p < 1.0);
        assert_eq!(mean_pass_at_k(&[(4, 1), (2, 1)], 3), None);
        assert_eq!(mean_pass_at_k(&[], 1), None);
        // (4,1) at k=2: 1 - C(3,2)/C(4,2) = 0.5; (4,4): 1.
        assert!((mean_pass_at_k(&[(4, 1), (4, 4)], 2).unwrap() - 0.75).abs() < 1e-15);
    }
}
