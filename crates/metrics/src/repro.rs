//! Per-sample reproducibility measures across runs: where token streams diverge (Div_Index), how much
//! response lengths spread, and how much the top-1 probability moves before the divergence.
//!
//! These take one sample's observations from every run of a group; [`crate::metrics`] averages them over
//! the samples of a group.

use crate::stats::{mean, std_dev, StdKind};

/// Where the runs' token sequences for one sample stop being all equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Divergence {
    /// Every run produced the same sequence (including all empty).
    Identical,
    /// Position of the first token at which not all runs agree: the common-prefix length, the paper's
    /// Div_Index. A run that stops while others go on diverges where it stopped.
    At(usize),
}

impl Divergence {
    /// Number of leading positions all runs share (the whole length when identical).
    pub fn shared_len(&self, seqs: &[&[u32]]) -> usize {
        match *self {
            Divergence::At(i) => i,
            Divergence::Identical => seqs.first().map_or(0, |s| s.len()),
        }
    }
}

/// Compare the runs' token sequences for one sample.
///
/// ```
/// use reprolm_metrics::repro::{divergence, Divergence};
/// assert_eq!(divergence(&[&[1, 2, 3], &[1, 2, 4]]), Divergence::At(2));
/// assert_eq!(divergence(&[&[1, 2], &[1, 2, 3]]), Divergence::At(2));
/// assert_eq!(divergence(&[&[1, 2], &[1, 2]]), Divergence::Identical);
/// ```
pub fn divergence(seqs: &[&[u32]]) -> Divergence {
    let Some((first, rest)) = seqs.split_first() else {
        return Divergence::Identical;
    };
    if rest.iter().all(|s| s == first) {
        return Divergence::Identical;
    }
    let min_len = seqs.iter().map(|s| s.len()).min().unwrap_or(0);
    let prefix = (0..min_len)
        .take_while(|&i| rest.iter().all(|s| s[i] == first[i]))
        .count();
    Divergence::At(prefix)
}

/// Standard deviation of the response length (in tokens) across runs.
///
/// ```
/// use reprolm_metrics::{repro::length_std, stats::StdKind};
/// assert_eq!(length_std(&[10, 10, 16], StdKind::Population), Some(8f64.sqrt()));
/// ```
pub fn length_std(lengths: &[usize], kind: StdKind) -> Option<f64> {
    let xs: Vec<f64> = lengths.iter().map(|&l| l as f64).collect();
    std_dev(&xs, kind)
}

/// At each of the first `upto` positions, the standard deviation across runs of the top-1 probability
/// (each run's best candidate, `exp` of its logprob, in f64). Before the divergence every greedy run
/// generated the same token, which is its top-1 candidate, so this is the spread of one token's
/// probability.
///
/// # Panics
/// If a run has fewer than `upto` positions.
///
/// ```
/// use reprolm_metrics::{repro::top1_prob_stds, stats::StdKind};
/// let a = [0.0f32.ln(), 0.5f32.ln()];
/// let b = [0.0f32.ln(), 0.7f32.ln()];
/// let s = top1_prob_stds(&[&a, &b], 2, StdKind::Population);
/// assert!((s[1] - 0.1).abs() < 1e-7);
/// ```
pub fn top1_prob_stds(top1_logprobs: &[&[f32]], upto: usize, kind: StdKind) -> Vec<f64> {
    let mut column = vec![0.0; top1_logprobs.len()];
    (0..upto)
        .map(|p| {
            for (c, run) in column.iter_mut().zip(top1_logprobs) {
                *c = f64::from(run[p]).exp();
            }
            std_dev(&column, kind).unwrap_or(0.0)
        })
        .collect()
}

/// The per-sample Avg_Std@top1_prob: the mean of [`top1_prob_stds`]; `None` when there is no position
/// before the divergence.
pub fn mean_top1_prob_std(top1_logprobs: &[&[f32]], upto: usize, kind: StdKind) -> Option<f64> {
    mean(&top1_prob_stds(top1_logprobs, upto, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divergence_cases() {
        // Ties of the index across runs: two runs agree, the third differs at 1.
        assert_eq!(
            divergence(&[&[5, 6, 7], &[5, 6, 7], &[5, 9, 7]]),
            Divergence::At(1)
        );
        // Different at the first token.
        assert_eq!(divergence(&[&[1], &[2]]), Divergence::At(0));
        // Empty responses: all empty is identical; one empty diverges at 0.
        assert_eq!(divergence(&[&[], &[]]), Divergence::Identical);
        assert_eq!(divergence(&[&[], &[3]]), Divergence::At(0));
        assert_eq!(divergence(&[]), Divergence::Identical);
        assert_eq!(divergence(&[&[4, 4]]), Divergence::Identical);
        let seqs: [&[u32]; 2] = [&[1, 2, 3], &[1, 2, 3]];
        assert_eq!(divergence(&seqs).shared_len(&seqs), 3);
    }

    #[test]
    fn top1_std_is_per_position_spread_of_probabilities() {
        // Probabilities chosen so the sample std is easy by hand:
        // pos 0: 0.9, 0.9, 0.9 -> 0; pos 1: 0.4, 0.5, 0.6 -> sqrt(0.02/2) = 0.1.
        let lp = |ps: &[f64]| ps.iter().map(|p| p.ln() as f32).collect::<Vec<f32>>();
        let (a, b, c) = (
            lp(&[0.9, 0.4, 0.1]),
            lp(&[0.9, 0.5, 0.2]),
            lp(&[0.9, 0.6, 0.9]),
        );
        let runs: [&[f32]; 3] = [&a, &b, &c];
        let stds = top1_prob_stds(&runs, 2, StdKind::Sample);
        assert_eq!(stds.len(), 2);
        assert!(stds[0].abs() < 1e-7, "{stds:?}");
        // f32 logprobs round-trip the probabilities to ~1e-8.
        assert!((stds[1] - 0.1).abs() < 1e-7, "{stds:?}");
        let m = mean_top1_prob_std(&runs, 2, StdKind::Sample).unwrap();
        assert!((m - 0.05).abs() < 1e-7);
        assert_eq!(mean_top1_prob_std(&runs, 0, StdKind::Sample), None);
    }

    #[test]
    fn length_std_cases() {
        assert_eq!(length_std(&[7, 7, 7], StdKind::Sample), Some(0.0));
        assert_eq!(length_std(&[0, 4], StdKind::Sample), Some(8f64.sqrt()));
        assert_eq!(length_std(&[3], StdKind::Sample), None);
    }
}
