//! The group metrics: per run (accuracy with its interval, lengths, truncation, pass@k) and across the
//! runs of a group (Std@Acc, Avg_Std@Output_Length, Div_Index, Avg_Std@top1_prob, Pass@1/pass@k spread).
//!
//! Inputs are the samples every run of the group completed, so unfinished runs are compared on the
//! same problems; [`crate::report()`] decides which samples those are and says so.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::passk::mean_pass_at_k;
use crate::repro::{divergence, length_std, top1_prob_stds, Divergence};
use crate::run_dir::SampleKey;
use crate::stats::{mean, median, std_dev, wilson_interval, Interval, StdKind, Z_95};

/// A value, or the reason it cannot be given ("n/a" in tables).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure<T> {
    /// The value.
    Value(T),
    /// Why there is no value.
    Na(String),
}

impl<T> Measure<T> {
    /// The value, if there is one.
    pub fn value(&self) -> Option<&T> {
        match self {
            Measure::Value(v) => Some(v),
            Measure::Na(_) => None,
        }
    }

    fn from_option(v: Option<T>, reason: impl FnOnce() -> String) -> Self {
        v.map_or_else(|| Measure::Na(reason()), Measure::Value)
    }
}

/// What the metrics need from one sample of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleObs {
    /// Generated token ids.
    pub token_ids: Vec<u32>,
    /// Logprob of the best candidate at each generated position (same length as `token_ids`).
    pub top1_logprobs: Vec<f32>,
    /// Whether the response was scored correct.
    pub correct: bool,
    /// Whether generation hit max_tokens.
    pub truncated: bool,
}

/// One run's samples.
pub type RunObs = BTreeMap<SampleKey, SampleObs>;

/// pass@k at one k.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PassAtK {
    /// k.
    pub k: u32,
    /// Mean over problems of the unbiased estimate.
    pub value: f64,
}

/// Per-run results over the group's common samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunStats {
    /// Samples counted.
    pub n_samples: usize,
    /// Of those, correct.
    pub n_correct: usize,
    /// Share correct (for sampled runs: Pass@1).
    pub accuracy: Measure<f64>,
    /// 95% Wilson interval of the accuracy, treating samples as independent trials.
    pub accuracy_ci95: Measure<Interval>,
    /// Mean response length in tokens.
    pub mean_length: Measure<f64>,
    /// Median response length in tokens.
    pub median_length: Measure<f64>,
    /// Share of responses cut off by max_tokens.
    pub share_truncated: Measure<f64>,
    /// Unbiased pass@k for k = 1..=(fewest samples any problem has); empty for one sample per problem.
    pub pass_at_k: Vec<PassAtK>,
}

/// How many samples diverge, and where.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DivergenceSummary {
    /// Samples compared.
    pub n_samples: usize,
    /// Samples whose token streams are not identical in all runs.
    pub n_diverging: usize,
    /// `n_diverging / n_samples`.
    pub share_diverging: f64,
    /// Mean Div_Index over diverging samples.
    pub mean_index: Measure<f64>,
    /// Median Div_Index over diverging samples.
    pub median_index: Measure<f64>,
}

/// pass@k across the runs of a group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PassAtKSpread {
    /// k.
    pub k: u32,
    /// Mean over runs.
    pub mean: f64,
    /// Standard deviation over runs.
    pub std: Measure<f64>,
}

/// Data behind the plots, kept so a report can redraw them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GroupSeries {
    /// Div_Index of each diverging sample.
    pub divergence_positions: Vec<usize>,
    /// Length standard deviation of each sample (same order as the common samples).
    pub length_std: Vec<f64>,
    /// At each position, the mean over samples (that reach it before their divergence) of the top-1
    /// probability standard deviation.
    pub top1_std_by_position: Vec<f64>,
}

/// Metrics across the runs of one group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupMetrics {
    /// Runs compared.
    pub n_runs: usize,
    /// Samples present in all runs.
    pub n_samples: usize,
    /// Problems among them.
    pub n_problems: usize,
    /// Mean of the runs' accuracies.
    pub accuracy_mean: Measure<f64>,
    /// Std@Acc: standard deviation of accuracy across runs.
    pub std_acc: Measure<f64>,
    /// Avg_Std@Output_Length: per-sample length std across runs, averaged over samples (tokens).
    pub avg_std_output_length: Measure<f64>,
    /// Div_Index summary.
    pub divergence: Measure<DivergenceSummary>,
    /// Avg_Std@top1_prob as a probability (multiply by 1e4 for the paper's unit).
    pub avg_std_top1_prob: Measure<f64>,
    /// Samples that contributed to Avg_Std@top1_prob (those with a position before divergence).
    pub top1_samples: usize,
    /// pass@k mean and spread across runs; k = 1 is Pass@1. Empty for one sample per problem.
    pub pass_at_k: Vec<PassAtKSpread>,
    /// The samples whose tokens are not the same in every run, in key order: which problems moved.
    pub diverged: Vec<SampleOutcomes>,
    /// The samples graded correct in some runs and wrong in others, in key order: which answers
    /// the runtime configuration changed.
    pub flipped: Vec<SampleOutcomes>,
    /// Plot data.
    pub series: GroupSeries,
}

/// One sample across the runs of a group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleOutcomes {
    /// The problem.
    pub problem_id: String,
    /// The sample of it.
    pub sample_index: u32,
    /// The first token position where the runs' tokens differ (`None`: the same tokens).
    pub first_divergence: Option<usize>,
    /// Whether each run graded it correct, in the group's run order.
    pub correct: Vec<bool>,
    /// Its length in tokens in each run.
    pub lengths: Vec<usize>,
}

/// Per-run statistics over `keys` (all present in `run`).
///
/// ```
/// # use reprolm_metrics::metrics::*;
/// # use reprolm_metrics::run_dir::SampleKey;
/// let obs = |n: usize, correct| SampleObs {
///     token_ids: vec![0; n], top1_logprobs: vec![0.0; n], correct, truncated: false };
/// let run: RunObs = [(SampleKey::new("a", 0), obs(3, true)), (SampleKey::new("b", 0), obs(5, false))].into();
/// let keys: Vec<_> = run.keys().cloned().collect();
/// let s = run_stats(&run, &keys);
/// assert_eq!(s.accuracy.value(), Some(&0.5));
/// assert_eq!(s.mean_length.value(), Some(&4.0));
/// ```
pub fn run_stats(run: &RunObs, keys: &[SampleKey]) -> RunStats {
    let samples: Vec<&SampleObs> = keys.iter().map(|k| &run[k]).collect();
    let n = samples.len();
    let n_correct = samples.iter().filter(|s| s.correct).count();
    let lengths: Vec<f64> = samples.iter().map(|s| s.token_ids.len() as f64).collect();
    let empty = || "no samples".to_string();
    let share =
        |count: usize| Measure::from_option((n > 0).then(|| count as f64 / n as f64), empty);
    RunStats {
        n_samples: n,
        n_correct,
        accuracy: share(n_correct),
        accuracy_ci95: Measure::from_option(
            wilson_interval(n_correct as u64, n as u64, Z_95),
            empty,
        ),
        mean_length: Measure::from_option(mean(&lengths), empty),
        median_length: Measure::from_option(median(&lengths), empty),
        share_truncated: share(samples.iter().filter(|s| s.truncated).count()),
        pass_at_k: run_pass_at_k(run, keys),
    }
}

/// (samples, correct) per problem.
fn per_problem(run: &RunObs, keys: &[SampleKey]) -> Vec<(u64, u64)> {
    let mut by: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for k in keys {
        let e = by.entry(&k.problem_id).or_default();
        e.0 += 1;
        e.1 += u64::from(run[k].correct);
    }
    by.into_values().collect()
}

fn run_pass_at_k(run: &RunObs, keys: &[SampleKey]) -> Vec<PassAtK> {
    let problems = per_problem(run, keys);
    let k_max = problems.iter().map(|p| p.0).min().unwrap_or(0);
    if k_max < 2 && problems.iter().all(|p| p.0 <= 1) {
        return Vec::new();
    }
    (1..=k_max)
        .filter_map(|k| mean_pass_at_k(&problems, k).map(|value| PassAtK { k: k as u32, value }))
        .collect()
}

/// Metrics across `runs` over `keys` (each present in every run). `runs` must be non-empty.
pub fn group_metrics(runs: &[&RunObs], keys: &[SampleKey], kind: StdKind) -> GroupMetrics {
    let n_runs = runs.len();
    let n_samples = keys.len();
    let n_problems = keys
        .iter()
        .map(|k| &k.problem_id)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let per_run: Vec<RunStats> = runs.iter().map(|r| run_stats(r, keys)).collect();
    let accs: Vec<f64> = per_run
        .iter()
        .filter_map(|s| s.accuracy.value().copied())
        .collect();
    let needs_runs = || format!("needs at least 2 runs; this group has {n_runs}");
    let no_samples = || "no sample is present in all runs".to_string();
    let cross = |xs: &[f64]| -> Measure<f64> {
        if n_runs < 2 {
            Measure::Na(needs_runs())
        } else if xs.is_empty() {
            Measure::Na(no_samples())
        } else {
            Measure::from_option(std_dev(xs, kind), needs_runs)
        }
    };
    let std_acc = cross(&accs);

    let mut series = GroupSeries::default();
    let mut diverging = Vec::new();
    let mut top1_means = Vec::new();
    let mut pos_sum: Vec<f64> = Vec::new();
    let mut pos_count: Vec<u32> = Vec::new();
    let (mut diverged, mut flipped) = (Vec::new(), Vec::new());
    for key in keys {
        let samples: Vec<&SampleObs> = runs.iter().map(|r| &r[key]).collect();
        let seqs: Vec<&[u32]> = samples.iter().map(|s| s.token_ids.as_slice()).collect();
        let lengths: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        if let Some(s) = length_std(&lengths, kind) {
            series.length_std.push(s);
        }
        let div = divergence(&seqs);
        if let Divergence::At(i) = div {
            diverging.push(i);
        }
        let correct: Vec<bool> = samples.iter().map(|s| s.correct).collect();
        let outcome = || SampleOutcomes {
            problem_id: key.problem_id.clone(),
            sample_index: key.sample_index,
            first_divergence: match div {
                Divergence::At(i) => Some(i),
                _ => None,
            },
            correct: correct.clone(),
            lengths: lengths.clone(),
        };
        if matches!(div, Divergence::At(_)) {
            diverged.push(outcome());
        }
        if correct.iter().any(|&c| c != correct[0]) {
            flipped.push(outcome());
        }
        if n_runs >= 2 {
            let upto = div.shared_len(&seqs);
            let lps: Vec<&[f32]> = samples.iter().map(|s| s.top1_logprobs.as_slice()).collect();
            let stds = top1_prob_stds(&lps, upto, kind);
            if let Some(m) = mean(&stds) {
                top1_means.push(m);
            }
            if pos_sum.len() < stds.len() {
                pos_sum.resize(stds.len(), 0.0);
                pos_count.resize(stds.len(), 0);
            }
            for (p, s) in stds.iter().enumerate() {
                pos_sum[p] += s;
                pos_count[p] += 1;
            }
        }
    }
    series.top1_std_by_position = pos_sum
        .iter()
        .zip(&pos_count)
        .map(|(s, &c)| s / f64::from(c))
        .collect();
    series.divergence_positions = diverging.clone();

    let divergence = if n_runs < 2 {
        Measure::Na(needs_runs())
    } else if n_samples == 0 {
        Measure::Na(no_samples())
    } else {
        let idx: Vec<f64> = diverging.iter().map(|&i| i as f64).collect();
        let none = || "no sample diverges".to_string();
        Measure::Value(DivergenceSummary {
            n_samples,
            n_diverging: diverging.len(),
            share_diverging: diverging.len() as f64 / n_samples as f64,
            mean_index: Measure::from_option(mean(&idx), none),
            median_index: Measure::from_option(median(&idx), none),
        })
    };
    let avg_std_top1_prob = if n_runs < 2 {
        Measure::Na(needs_runs())
    } else if n_samples == 0 {
        Measure::Na(no_samples())
    } else {
        Measure::from_option(mean(&top1_means), || {
            "no sample has a token before its divergence (all diverge at token 0 or are empty)"
                .to_string()
        })
    };
    let avg_std_output_length = if n_runs < 2 {
        Measure::Na(needs_runs())
    } else {
        Measure::from_option(mean(&series.length_std), no_samples)
    };

    let k_max = per_run.iter().map(|s| s.pass_at_k.len()).min().unwrap_or(0);
    let pass_at_k = (0..k_max)
        .map(|i| {
            let vals: Vec<f64> = per_run.iter().map(|s| s.pass_at_k[i].value).collect();
            PassAtKSpread {
                k: per_run[0].pass_at_k[i].k,
                mean: mean(&vals).unwrap_or(0.0),
                std: cross(&vals),
            }
        })
        .collect();

    GroupMetrics {
        n_runs,
        n_samples,
        n_problems,
        accuracy_mean: Measure::from_option(mean(&accs), no_samples),
        std_acc,
        avg_std_output_length,
        divergence,
        avg_std_top1_prob,
        top1_samples: top1_means.len(),
        pass_at_k,
        diverged,
        flipped,
        series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample whose top-1 probabilities are given directly.
    fn obs(tokens: &[u32], probs: &[f64], correct: bool, truncated: bool) -> SampleObs {
        assert_eq!(tokens.len(), probs.len());
        SampleObs {
            token_ids: tokens.to_vec(),
            top1_logprobs: probs.iter().map(|p| p.ln() as f32).collect(),
            correct,
            truncated,
        }
    }

    fn key(p: &str) -> SampleKey {
        SampleKey::new(p, 0)
    }

    fn sstd(xs: &[f64]) -> f64 {
        let m = xs.iter().sum::<f64>() / xs.len() as f64;
        (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// Three greedy runs, four problems:
    /// - p1: all agree (3 tokens), all correct.
    /// - p2: runs 0 and 1 agree, run 2 diverges at 2 (a tie between two runs), lengths 4, 4, 6.
    /// - p3: all empty responses (identical, nothing to measure top-1 on), all wrong.
    /// - p4: run 1 differs at token 0; run 2 truncated.
    fn three_runs() -> Vec<RunObs> {
        let r0 = RunObs::from([
            (key("p1"), obs(&[1, 2, 3], &[0.9, 0.8, 0.7], true, false)),
            (
                key("p2"),
                obs(&[5, 6, 7, 8], &[0.5, 0.6, 0.7, 0.8], true, false),
            ),
            (key("p3"), obs(&[], &[], false, false)),
            (key("p4"), obs(&[9, 9], &[0.3, 0.3], false, false)),
        ]);
        let r1 = RunObs::from([
            (key("p1"), obs(&[1, 2, 3], &[0.91, 0.8, 0.7], true, false)),
            (
                key("p2"),
                obs(&[5, 6, 7, 8], &[0.5, 0.62, 0.7, 0.8], true, false),
            ),
            (key("p3"), obs(&[], &[], false, false)),
            (key("p4"), obs(&[4, 9], &[0.35, 0.3], true, false)),
        ]);
        let r2 = RunObs::from([
            (key("p1"), obs(&[1, 2, 3], &[0.92, 0.8, 0.7], true, false)),
            (
                key("p2"),
                obs(
                    &[5, 6, 1, 1, 1, 1],
                    &[0.5, 0.64, 0.4, 0.9, 0.9, 0.9],
                    false,
                    false,
                ),
            ),
            (key("p3"), obs(&[], &[], false, false)),
            (key("p4"), obs(&[9, 9, 9], &[0.3, 0.3, 0.3], false, true)),
        ]);
        vec![r0, r1, r2]
    }

    #[test]
    fn greedy_group_matches_hand_computation() {
        let runs = three_runs();
        let refs: Vec<&RunObs> = runs.iter().collect();
        let keys: Vec<SampleKey> = runs[0].keys().cloned().collect();
        let g = group_metrics(&refs, &keys, StdKind::Sample);
        assert_eq!((g.n_runs, g.n_samples, g.n_problems), (3, 4, 4));

        // Accuracies: run0 2/4, run1 3/4, run2 1/4.
        let accs = [0.5, 0.75, 0.25];
        assert!(close(*g.accuracy_mean.value().unwrap(), 0.5, 1e-15));
        assert!(close(*g.std_acc.value().unwrap(), sstd(&accs), 1e-15));
        assert!(close(*g.std_acc.value().unwrap(), 0.25, 1e-15));

        // Lengths per problem: p1 3,3,3; p2 4,4,6; p3 0,0,0; p4 2,2,3.
        let want_len =
            (sstd(&[3.0; 3]) + sstd(&[4.0, 4.0, 6.0]) + 0.0 + sstd(&[2.0, 2.0, 3.0])) / 4.0;
        assert!(close(
            *g.avg_std_output_length.value().unwrap(),
            want_len,
            1e-12
        ));

        // Divergence: p2 at 2, p4 at 0; p1 and p3 identical.
        let d = g.divergence.value().unwrap();
        assert_eq!((d.n_samples, d.n_diverging), (4, 2));
        assert_eq!(d.share_diverging, 0.5);
        assert_eq!(d.mean_index.value(), Some(&1.0));
        assert_eq!(d.median_index.value(), Some(&1.0));
        assert_eq!(g.series.divergence_positions, [2, 0]);

        // Top-1 std: p1 over 3 positions: sstd(.9,.91,.92)=0.01, then 0, 0 -> 0.01/3.
        // p2 over 2 positions: 0 and sstd(.6,.62,.64)=0.02 -> 0.01. p3: no positions. p4: diverges at 0.
        let p1 = sstd(&[0.9, 0.91, 0.92]) / 3.0;
        let p2 = sstd(&[0.6, 0.62, 0.64]) / 2.0;
        assert_eq!(g.top1_samples, 2);
        // f32 logprobs carry ~6e-8 relative error into each probability.
        assert!(
            close(*g.avg_std_top1_prob.value().unwrap(), (p1 + p2) / 2.0, 1e-7),
            "{:?}",
            g.avg_std_top1_prob
        );
        let by_pos = &g.series.top1_std_by_position;
        assert_eq!(by_pos.len(), 3);
        assert!(close(by_pos[0], 0.01 / 2.0, 1e-7), "{by_pos:?}"); // p1: 0.01, p2: 0
        assert!(close(by_pos[1], 0.02 / 2.0, 1e-7), "{by_pos:?}"); // p1: 0, p2: 0.02
        assert!(close(by_pos[2], 0.0, 1e-7), "{by_pos:?}"); // only p1

        // Greedy: no pass@k.
        assert!(g.pass_at_k.is_empty());

        // Per run: run 2 truncated one of four; median length of (3, 6, 0, 3) is 3.
        let s = run_stats(&runs[2], &keys);
        assert_eq!(s.share_truncated.value(), Some(&0.25));
        assert_eq!(s.median_length.value(), Some(&3.0));
        assert_eq!(s.mean_length.value(), Some(&3.0));
        let ci = s.accuracy_ci95.value().unwrap();
        assert!(ci.lo < 0.25 && ci.hi > 0.25);
    }

    #[test]
    fn population_std_option_changes_the_divisor() {
        let runs = three_runs();
        let refs: Vec<&RunObs> = runs.iter().collect();
        let keys: Vec<SampleKey> = runs[0].keys().cloned().collect();
        let g = group_metrics(&refs, &keys, StdKind::Population);
        let want = (0.0625f64 * 2.0 / 3.0).sqrt(); // deviations -0, +.25, -.25 from 0.5
        assert!(close(*g.std_acc.value().unwrap(), want, 1e-15));
    }

    #[test]
    fn single_run_metrics_are_na_with_a_reason() {
        let runs = three_runs();
        let keys: Vec<SampleKey> = runs[0].keys().cloned().collect();
        let g = group_metrics(&[&runs[0]], &keys, StdKind::Population);
        for m in [&g.std_acc, &g.avg_std_output_length, &g.avg_std_top1_prob] {
            assert_eq!(
                *m,
                Measure::Na("needs at least 2 runs; this group has 1".into())
            );
        }
        assert!(g.divergence.value().is_none());
        assert_eq!(g.accuracy_mean.value(), Some(&0.5));
    }

    #[test]
    fn all_agreeing_runs_have_zero_spread() {
        let runs = three_runs();
        let refs = [&runs[0], &runs[0], &runs[0]];
        let keys: Vec<SampleKey> = runs[0].keys().cloned().collect();
        let g = group_metrics(&refs, &keys, StdKind::Sample);
        assert_eq!(g.std_acc.value(), Some(&0.0));
        assert_eq!(g.avg_std_output_length.value(), Some(&0.0));
        assert_eq!(g.avg_std_top1_prob.value(), Some(&0.0));
        let d = g.divergence.value().unwrap();
        assert_eq!(d.n_diverging, 0);
        assert_eq!(d.mean_index, Measure::Na("no sample diverges".into()));
        // Empty-only samples give no top-1 positions at all.
        let k3 = [key("p3")];
        let g = group_metrics(&refs, &k3, StdKind::Sample);
        assert!(
            matches!(g.avg_std_top1_prob, Measure::Na(ref r) if r.contains("no sample has a token"))
        );
        let g = group_metrics(&refs, &[], StdKind::Sample);
        assert_eq!(
            g.std_acc,
            Measure::Na("no sample is present in all runs".into())
        );
    }

    #[test]
    fn sampled_runs_get_pass_at_k_across_runs() {
        // Two runs, two problems, three samples each.
        // run A: q1 correct 1/3, q2 3/3; run B: q1 2/3, q2 0/3.
        let mk = |q1: [bool; 3], q2: [bool; 3]| -> RunObs {
            let mut r = RunObs::new();
            for (i, c) in q1.into_iter().enumerate() {
                r.insert(SampleKey::new("q1", i as u32), obs(&[1], &[0.5], c, false));
            }
            for (i, c) in q2.into_iter().enumerate() {
                r.insert(SampleKey::new("q2", i as u32), obs(&[2], &[0.5], c, false));
            }
            r
        };
        let a = mk([true, false, false], [true, true, true]);
        let b = mk([true, true, false], [false, false, false]);
        let keys: Vec<SampleKey> = a.keys().cloned().collect();
        let g = group_metrics(&[&a, &b], &keys, StdKind::Sample);
        // pass@1: A (1/3 + 1)/2 = 2/3, B (2/3 + 0)/2 = 1/3.
        // pass@2: (n=3): c=1 -> 1 - C(2,2)/C(3,2) = 2/3; c=3 -> 1; c=2 -> 1; c=0 -> 0.
        //   A: (2/3 + 1)/2 = 5/6; B: (1 + 0)/2 = 1/2.
        // pass@3: A: (1 + 1)/2 = 1; B: (1 + 0)/2 = 1/2.
        let want = [(2.0 / 3.0, 1.0 / 3.0), (5.0 / 6.0, 0.5), (1.0, 0.5)];
        assert_eq!(g.pass_at_k.len(), 3);
        for (p, (wa, wb)) in g.pass_at_k.iter().zip(want) {
            assert!(close(p.mean, (wa + wb) / 2.0, 1e-12), "k={} {p:?}", p.k);
            assert!(
                close(*p.std.value().unwrap(), sstd(&[wa, wb]), 1e-12),
                "k={} {p:?}",
                p.k
            );
        }
        // Accuracy over all samples equals pass@1 when every problem has the same n.
        assert!(close(*g.accuracy_mean.value().unwrap(), 0.5, 1e-12));
        assert_eq!(g.n_problems, 2);
        let sa = run_stats(&a, &keys);
        assert_eq!(
            sa.pass_at_k.iter().map(|p| p.k).collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }
}
