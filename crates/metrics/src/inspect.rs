//! Two runs side by side, sample by sample: whether their token streams diverge, where, and the
//! candidates each run saw at that token, so the near-tie that flipped the output is visible.
//!
//! Decoding tokens to text needs the tokenizer, which this crate does not link; callers decode the
//! token ids they get here.

use serde::Serialize;

use crate::error::Result;
use crate::repro::{divergence, Divergence};
use crate::run_dir::{LoadedRun, SampleKey, PAD_TOKEN};

/// One candidate token and its probability.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Candidate {
    /// Token id.
    pub token: u32,
    /// Probability, `exp` of the stored logprob.
    pub prob: f64,
}

/// One run's side of a divergence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    /// Response length in tokens.
    pub len: usize,
    /// The token generated at the divergence position (`None` if the response ended there).
    pub token: Option<u32>,
    /// The top-k candidates at the divergence position, best first (empty if the response ended).
    pub candidates: Vec<Candidate>,
    /// The grader's extracted answer.
    pub answer: Option<String>,
    /// The score.
    pub score: f64,
    /// Whether it was judged correct.
    pub correct: bool,
}

/// One sample compared across two runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleComparison {
    /// The sample.
    pub key: SampleKey,
    /// Position of the first differing token, or `None` if the streams are identical.
    pub diverges_at: Option<usize>,
    /// Run A's side.
    pub a: Side,
    /// Run B's side.
    pub b: Side,
    /// Over the tokens both runs share (before the divergence, or all of them): whether the
    /// recorded top-k ids and log-probabilities are bitwise the same; `None` without logprobs or
    /// without a shared token.
    pub logprobs_identical: Option<bool>,
    /// Over the same tokens, the largest difference between the runs' top-1 log-probabilities.
    pub max_top1_logprob_delta: Option<f64>,
}

/// The comparison of two runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunComparison {
    /// Samples both runs completed, in run A's order.
    pub samples: Vec<SampleComparison>,
    /// Completed in A only.
    pub only_in_a: Vec<SampleKey>,
    /// Completed in B only.
    pub only_in_b: Vec<SampleKey>,
}

/// Compare two runs, optionally only the samples of one problem.
///
/// ```no_run
/// use reprolm_metrics::{inspect::compare_runs, LoadedRun};
/// let a = LoadedRun::load("runs/bf16-bs1".as_ref())?;
/// let b = LoadedRun::load("runs/bf16-bs8".as_ref())?;
/// for s in compare_runs(&a, &b, None)?.samples {
///     if let Some(pos) = s.diverges_at {
///         println!("{}: diverges at {pos}: {:?} vs {:?}", s.key, s.a.candidates, s.b.candidates);
///     }
/// }
/// # Ok::<(), reprolm_metrics::Error>(())
/// ```
pub fn compare_runs(a: &LoadedRun, b: &LoadedRun, problem: Option<&str>) -> Result<RunComparison> {
    let wanted = |k: &SampleKey| problem.is_none_or(|p| k.problem_id == p);
    let keys_a: Vec<SampleKey> = a.records.iter().map(|r| r.key()).filter(wanted).collect();
    let keys_b: Vec<SampleKey> = b.records.iter().map(|r| r.key()).filter(wanted).collect();
    let set_b: std::collections::HashSet<&SampleKey> = keys_b.iter().collect();
    let set_a: std::collections::HashSet<&SampleKey> = keys_a.iter().collect();
    let mut samples = Vec::new();
    for key in keys_a.iter().filter(|k| set_b.contains(k)) {
        let (ra, rb) = (
            a.record(key).expect("listed"),
            b.record(key).expect("listed"),
        );
        let div = divergence(&[&ra.token_ids, &rb.token_ids]);
        let pos = match div {
            Divergence::Identical => None,
            Divergence::At(i) => Some(i),
        };
        let side = |run: &LoadedRun, r: &crate::run_dir::ResponseRecord| -> Result<Side> {
            let (token, candidates) = match pos {
                Some(i) if i < r.token_ids.len() => {
                    let cands = match run.logprobs_of(key)? {
                        Some(lp) => {
                            let (ids, lps) = lp.position(i);
                            ids.iter()
                                .zip(lps)
                                .filter(|(&t, _)| t != PAD_TOKEN)
                                .map(|(&token, &lp)| Candidate {
                                    token,
                                    prob: f64::from(lp).exp(),
                                })
                                .collect()
                        }
                        None => Vec::new(),
                    };
                    (Some(r.token_ids[i]), cands)
                }
                _ => (None, Vec::new()),
            };
            Ok(Side {
                len: r.token_ids.len(),
                token,
                candidates,
                answer: r.extracted_answer.clone(),
                score: r.score,
                correct: r.correct,
            })
        };
        let shared = pos.unwrap_or(ra.token_ids.len().min(rb.token_ids.len()));
        let (logprobs_identical, max_top1_logprob_delta) =
            match (a.logprobs_of(key)?, b.logprobs_of(key)?) {
                // No shared token (divergence at the first): nothing to compare.
                (Some(la), Some(lb)) if shared > 0 => {
                    let n = shared.min(la.len()).min(lb.len());
                    let mut same = la.len().min(shared) == lb.len().min(shared);
                    let mut delta = 0f64;
                    for i in 0..n {
                        let ((ia, pa), (ib, pb)) = (la.position(i), lb.position(i));
                        same &= ia == ib
                            && pa
                                .iter()
                                .map(|x| x.to_bits())
                                .eq(pb.iter().map(|x| x.to_bits()));
                        if let (Some(&x), Some(&y)) = (pa.first(), pb.first()) {
                            delta = delta.max((f64::from(x) - f64::from(y)).abs());
                        }
                    }
                    (Some(same), Some(delta))
                }
                _ => (None, None),
            };
        samples.push(SampleComparison {
            key: key.clone(),
            diverges_at: pos,
            a: side(a, ra)?,
            b: side(b, rb)?,
            logprobs_identical,
            max_top1_logprob_delta,
        });
    }
    Ok(RunComparison {
        samples,
        only_in_a: keys_a
            .iter()
            .filter(|k| !set_b.contains(k))
            .cloned()
            .collect(),
        only_in_b: keys_b
            .iter()
            .filter(|k| !set_a.contains(k))
            .cloned()
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_dir::{
        Durability, FinishReason, LogprobsRecord, Manifest, ResponseRecord, RunDir,
    };

    fn write(dir: &std::path::Path, samples: &[(&str, &[u32])]) {
        let mut run = RunDir::create(dir, Manifest::example(), Durability::Flush).unwrap();
        for (id, toks) in samples {
            let mut r = ResponseRecord::new(*id, 0, 1, "", toks.to_vec(), FinishReason::Stop);
            r.extracted_answer = Some(format!("{}", toks.len()));
            let mut lp = LogprobsRecord::new(*id, 0, 5);
            for &t in *toks {
                // The generated token first at 0.51, a runner-up (t + 100) at 0.49: a near tie.
                lp.push_position(&[t, t + 100], &[0.51f32.ln(), 0.49f32.ln()]);
            }
            run.append(&r, &lp).unwrap();
        }
    }

    #[test]
    fn finds_the_flip_and_its_candidates() {
        let dir = tempfile::tempdir().unwrap();
        let (pa, pb) = (dir.path().join("a"), dir.path().join("b"));
        write(
            &pa,
            &[("p1", &[1, 2, 3]), ("p2", &[4, 5, 6, 7]), ("p3", &[9])],
        );
        write(
            &pb,
            &[("p1", &[1, 2, 3]), ("p2", &[4, 5, 105]), ("p4", &[9])],
        );
        let (a, b) = (LoadedRun::load(&pa).unwrap(), LoadedRun::load(&pb).unwrap());
        let c = compare_runs(&a, &b, None).unwrap();
        assert_eq!(c.only_in_a, [SampleKey::new("p3", 0)]);
        assert_eq!(c.only_in_b, [SampleKey::new("p4", 0)]);
        assert_eq!(c.samples.len(), 2);
        assert_eq!(c.samples[0].diverges_at, None);
        let s = &c.samples[1];
        assert_eq!(s.diverges_at, Some(2));
        assert_eq!((s.a.token, s.b.token), (Some(6), Some(105)));
        assert_eq!(
            s.a.candidates.iter().map(|c| c.token).collect::<Vec<_>>(),
            [6, 106]
        );
        assert!((s.a.candidates[0].prob - 0.51).abs() < 1e-6);
        assert_eq!((s.a.len, s.b.len), (4, 3));
        assert_eq!(s.b.answer.as_deref(), Some("3"));
        let only = compare_runs(&a, &b, Some("p2")).unwrap();
        assert_eq!(only.samples.len(), 1);
        assert!(only.only_in_a.is_empty());
    }
}
