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

/// Which of the two runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Which {
    /// The first run given.
    A,
    /// The second.
    B,
}

/// One top-k candidate as recorded: its token id and the bits of its f32 log-probability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RecordedCandidate {
    /// Token id.
    pub token: u32,
    /// `f32::to_bits` of the stored log-probability.
    pub logprob_bits: u32,
}

impl RecordedCandidate {
    /// The log-probability.
    pub fn logprob(&self) -> f32 {
        f32::from_bits(self.logprob_bits)
    }
}

/// Where two runs first differ, for [`bitwise`]: the first sample (in key order) that differs, and
/// the first thing in it, in the order a model produces them (at each position the top-k
/// candidates, then the token chosen from them; the scored fields after the last token).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FirstDifference {
    /// A sample that one run completed and the other did not.
    Missing {
        /// The sample.
        key: SampleKey,
        /// The run that has it.
        only_in: Which,
    },
    /// The top-k candidates at a position (`logprobs.bin`): a different token id or a
    /// log-probability with other bits at `rank` (0 = the best), or a different count.
    Candidates {
        /// The sample.
        key: SampleKey,
        /// Token position in the response.
        position: usize,
        /// The first rank that differs.
        rank: usize,
        /// Run A's candidate there (`None` if it recorded fewer).
        a: Option<RecordedCandidate>,
        /// Run B's.
        b: Option<RecordedCandidate>,
    },
    /// The generated token at a position (`responses.jsonl`, `token_ids`); `None` where that
    /// run's response had already ended.
    Token {
        /// The sample.
        key: SampleKey,
        /// Token position in the response.
        position: usize,
        /// Run A's token.
        a: Option<u32>,
        /// Run B's token.
        b: Option<u32>,
    },
    /// A field of the scored record (`responses.jsonl`) with equal tokens: the decoded text,
    /// the finish reason, the extracted answer, the score or the verdict.
    Field {
        /// The sample.
        key: SampleKey,
        /// The field's name in `responses.jsonl`.
        field: &'static str,
        /// Run A's value, as JSON.
        a: String,
        /// Run B's value.
        b: String,
    },
}

impl FirstDifference {
    /// The file of the run directory the difference is in.
    pub fn file(&self) -> &'static str {
        match self {
            FirstDifference::Candidates { .. } => crate::run_dir::LOGPROBS_FILE,
            _ => crate::run_dir::RESPONSES_FILE,
        }
    }
}

/// What [`bitwise`] found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BitwiseComparison {
    /// Samples both runs completed.
    pub samples: usize,
    /// Generated tokens over those samples, in run A.
    pub tokens: usize,
    /// Samples only one of the runs completed.
    pub missing: usize,
    /// Samples that differ in any way, the missing ones included.
    pub differing_samples: usize,
    /// The first difference, or `None`: the runs are bitwise identical in every generated token,
    /// every recorded top-k candidate and log-probability, and every scored field.
    pub first_difference: Option<FirstDifference>,
}

/// Compares two runs bit for bit on what the model produced: for every sample, in key order, the
/// top-k candidates and their f32 log-probabilities (`logprobs.bin`) and the tokens
/// (`responses.jsonl`) position by position, then the fields scored from them. Timing, paths and
/// the order samples were written in are not compared (continuous batching writes samples as they
/// finish). This is the check behind a claim that a result reproduces exactly, e.g. on another
/// device or batch size.
///
/// ```no_run
/// use reprolm_metrics::{inspect::bitwise, LoadedRun};
/// let a = LoadedRun::load("runs/cpu".as_ref())?;
/// let b = LoadedRun::load("runs/gpu".as_ref())?;
/// match bitwise(&a, &b)?.first_difference {
///     None => println!("bitwise identical"),
///     Some(d) => println!("first difference in {}: {d:?}", d.file()),
/// }
/// # Ok::<(), reprolm_metrics::Error>(())
/// ```
pub fn bitwise(a: &LoadedRun, b: &LoadedRun) -> Result<BitwiseComparison> {
    use std::collections::BTreeSet;
    let keys =
        |r: &LoadedRun| -> BTreeSet<SampleKey> { r.records.iter().map(|x| x.key()).collect() };
    let (ka, kb) = (keys(a), keys(b));
    let mut out = BitwiseComparison {
        samples: 0,
        tokens: 0,
        missing: 0,
        differing_samples: 0,
        first_difference: None,
    };
    for key in ka.union(&kb) {
        let found = match (a.record(key), b.record(key)) {
            (Some(ra), Some(rb)) => {
                out.samples += 1;
                out.tokens += ra.token_ids.len();
                let la = a.logprobs_of(key)?;
                let lb = b.logprobs_of(key)?;
                sample_difference(key, ra, rb, la.as_ref(), lb.as_ref())
            }
            (a_has, _) => {
                out.missing += 1;
                Some(FirstDifference::Missing {
                    key: key.clone(),
                    only_in: if a_has.is_some() { Which::A } else { Which::B },
                })
            }
        };
        if let Some(d) = found {
            out.differing_samples += 1;
            out.first_difference.get_or_insert(d);
        }
    }
    Ok(out)
}

/// The first difference within one sample both runs completed (see [`FirstDifference`]). Without
/// logprobs in either run, only tokens and fields are compared.
fn sample_difference(
    key: &SampleKey,
    ra: &crate::run_dir::ResponseRecord,
    rb: &crate::run_dir::ResponseRecord,
    la: Option<&crate::run_dir::LogprobsRecord>,
    lb: Option<&crate::run_dir::LogprobsRecord>,
) -> Option<FirstDifference> {
    let recorded = |l: &crate::run_dir::LogprobsRecord, i: usize| -> Vec<RecordedCandidate> {
        if i >= l.len() {
            return Vec::new();
        }
        let (ids, lps) = l.position(i);
        ids.iter()
            .zip(lps)
            .map(|(&token, lp)| RecordedCandidate {
                token,
                logprob_bits: lp.to_bits(),
            })
            .collect()
    };
    let len = ra.token_ids.len().max(rb.token_ids.len());
    for position in 0..len {
        if let (Some(la), Some(lb)) = (la, lb) {
            let (ca, cb) = (recorded(la, position), recorded(lb, position));
            if ca != cb {
                let rank = ca.iter().zip(&cb).take_while(|(x, y)| x == y).count();
                return Some(FirstDifference::Candidates {
                    key: key.clone(),
                    position,
                    rank,
                    a: ca.get(rank).copied(),
                    b: cb.get(rank).copied(),
                });
            }
        }
        let (ta, tb) = (ra.token_ids.get(position), rb.token_ids.get(position));
        if ta != tb {
            return Some(FirstDifference::Token {
                key: key.clone(),
                position,
                a: ta.copied(),
                b: tb.copied(),
            });
        }
    }
    let json = |v: serde_json::Result<String>| v.unwrap_or_else(|e| format!("<{e}>"));
    let fields: [(&'static str, String, String); 5] = [
        (
            "response",
            json(serde_json::to_string(&ra.response)),
            json(serde_json::to_string(&rb.response)),
        ),
        (
            "finish_reason",
            json(serde_json::to_string(&ra.finish_reason)),
            json(serde_json::to_string(&rb.finish_reason)),
        ),
        (
            "extracted_answer",
            json(serde_json::to_string(&ra.extracted_answer)),
            json(serde_json::to_string(&rb.extracted_answer)),
        ),
        ("score", ra.score.to_string(), rb.score.to_string()),
        ("correct", ra.correct.to_string(), rb.correct.to_string()),
    ];
    fields
        .into_iter()
        .find(|(_, x, y)| x != y)
        .map(|(field, a, b)| FirstDifference::Field {
            key: key.clone(),
            field,
            a,
            b,
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

    /// A run of `samples` (problem id, tokens), written in the given order, each position's
    /// candidates the token at `top(id, position)` and a runner-up.
    fn run_of(
        dir: &std::path::Path,
        samples: &[(&str, &[u32])],
        top: impl Fn(&str, usize) -> f32,
    ) -> LoadedRun {
        let mut run = RunDir::create(dir, Manifest::example(), Durability::Flush).unwrap();
        for (id, toks) in samples {
            let mut r = ResponseRecord::new(*id, 0, 1, "text", toks.to_vec(), FinishReason::Stop);
            r.extracted_answer = Some("7".into());
            let mut lp = LogprobsRecord::new(*id, 0, 5);
            for (i, &t) in toks.iter().enumerate() {
                lp.push_position(&[t, t + 100], &[top(id, i), -1.5]);
            }
            run.append(&r, &lp).unwrap();
        }
        LoadedRun::load(dir).unwrap()
    }

    #[test]
    fn bitwise_finds_nothing_in_the_same_samples_written_in_another_order() {
        let dir = tempfile::tempdir().unwrap();
        let top = |_: &str, i: usize| -0.25 - i as f32 / 8.0;
        let a = run_of(
            &dir.path().join("a"),
            &[("p1", &[1, 2]), ("p2", &[4, 5, 6])],
            top,
        );
        let b = run_of(
            &dir.path().join("b"),
            &[("p2", &[4, 5, 6]), ("p1", &[1, 2])],
            top,
        );
        let c = bitwise(&a, &b).unwrap();
        assert_eq!((c.samples, c.tokens, c.differing_samples), (2, 5, 0));
        assert_eq!(c.first_difference, None);
    }

    #[test]
    fn bitwise_names_the_first_difference_in_key_order_and_position() {
        let dir = tempfile::tempdir().unwrap();
        let top = |_: &str, i: usize| -0.25 - i as f32 / 8.0;
        let a = run_of(
            &dir.path().join("a"),
            &[("p1", &[1, 2, 3]), ("p2", &[4, 5, 6])],
            top,
        );
        // One ulp apart at p2's position 1, the tokens unchanged; p1's last token differs.
        let ulp = |id: &str, i: usize| {
            let v = top(id, i);
            if (id, i) == ("p2", 1) {
                f32::from_bits(v.to_bits() + 1)
            } else {
                v
            }
        };
        let b = run_of(
            &dir.path().join("b"),
            &[("p2", &[4, 5, 6]), ("p1", &[1, 2, 9])],
            ulp,
        );
        let c = bitwise(&a, &b).unwrap();
        assert_eq!(c.differing_samples, 2);
        let first = c.first_difference.unwrap();
        assert_eq!(first.file(), crate::run_dir::LOGPROBS_FILE);
        // p1 sorts first; its candidates at position 2 already differ (token 3 against 9).
        match first {
            FirstDifference::Candidates {
                key,
                position,
                rank,
                a,
                b,
            } => {
                assert_eq!((key, position, rank), (SampleKey::new("p1", 0), 2, 0));
                assert_eq!((a.unwrap().token, b.unwrap().token), (3, 9));
            }
            other => panic!("{other:?}"),
        }
        // p2 alone: the one-ulp log-probability, at rank 0 of position 1.
        let only_p2 = |r: &LoadedRun| LoadedRun {
            records: r
                .records
                .iter()
                .filter(|x| x.problem_id == "p2")
                .cloned()
                .collect(),
            ..r.clone()
        };
        match bitwise(&only_p2(&a), &only_p2(&b))
            .unwrap()
            .first_difference
        {
            Some(FirstDifference::Candidates {
                position: 1,
                rank: 0,
                a,
                b,
                ..
            }) => {
                assert_eq!(a.unwrap().logprob_bits + 1, b.unwrap().logprob_bits);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bitwise_reports_missing_samples_token_lengths_and_fields() {
        let dir = tempfile::tempdir().unwrap();
        let top = |_: &str, _: usize| -0.5;
        let a = run_of(&dir.path().join("a"), &[("p1", &[1, 2]), ("p3", &[7])], top);
        let b = run_of(&dir.path().join("b"), &[("p1", &[1, 2]), ("p2", &[7])], top);
        let c = bitwise(&a, &b).unwrap();
        assert_eq!((c.samples, c.missing), (1, 2));
        assert_eq!(
            c.first_difference,
            Some(FirstDifference::Missing {
                key: SampleKey::new("p2", 0),
                only_in: Which::B
            })
        );
        assert_eq!(c.differing_samples, 2);
        // Without logprobs in the picture: a response one token longer.
        let a = run_of(&dir.path().join("c"), &[("p1", &[1, 2])], top);
        let mut b = run_of(&dir.path().join("d"), &[("p1", &[1, 2, 3])], top);
        b.logprobs = None;
        assert_eq!(
            bitwise(&a, &b).unwrap().first_difference,
            Some(FirstDifference::Token {
                key: SampleKey::new("p1", 0),
                position: 2,
                a: None,
                b: Some(3)
            })
        );
        // Same tokens, another extracted answer.
        let mut b = run_of(&dir.path().join("e"), &[("p1", &[1, 2])], top);
        b.records[0].extracted_answer = Some("8".into());
        let d = bitwise(&a, &b).unwrap().first_difference.unwrap();
        assert_eq!(d.file(), crate::run_dir::RESPONSES_FILE);
        assert!(
            matches!(&d, FirstDifference::Field { field: "extracted_answer", a, b, .. } if a == "\"7\"" && b == "\"8\""),
            "{d:?}"
        );
    }
}
