//! `reprolm inspect RUN_A RUN_B`: for each sample, whether the two token streams diverge, where, the
//! text around that point, both runs' top candidates there (the near-tie that flipped), and both
//! final answers.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use reprolm_engine::{DecodeSpecialTokens, ResolveOptions, Tokenizer};
use reprolm_metrics::inspect::{
    bitwise, compare_runs, Candidate, FirstDifference, RecordedCandidate, SampleComparison, Side,
};
use reprolm_metrics::LoadedRun;
use serde_json::json;

use crate::args::InspectArgs;
use crate::progress::OutputMode;

/// Tokens of each run's continuation shown after the divergence point.
const AFTER: usize = 12;

/// Compare the runs and print what differs; exit status 0 whether or not they diverge (with
/// `--bitwise`, 1 when they differ).
pub fn command(args: &InspectArgs, mode: OutputMode) -> Result<i32> {
    let load = |p: &Path| {
        LoadedRun::load(p).with_context(|| format!("reading run directory {}", p.display()))
    };
    let (a, b) = (load(&args.run_a)?, load(&args.run_b)?);
    if args.bitwise {
        return bitwise_verdict(&a, &b, mode);
    }
    if let Some(id) = &args.problem {
        let known = |r: &LoadedRun| r.records.iter().any(|x| &x.problem_id == id);
        if !known(&a) && !known(&b) {
            let some: Vec<&str> = a
                .records
                .iter()
                .take(5)
                .map(|r| r.problem_id.as_str())
                .collect();
            return Err(crate::usage(format!(
                "--problem {id}: neither run has this problem (run A's first ids: {})",
                if some.is_empty() {
                    "none".to_string()
                } else {
                    some.join(", ")
                }
            )));
        }
    }
    if a.manifest.model.tokenizer_sha256 != b.manifest.model.tokenizer_sha256 {
        mode.note(
            "warning: the runs used different tokenizers; token ids are compared as they are",
        );
    }
    let tok = tokenizer(args, &a, mode);
    let cmp = compare_runs(&a, &b, args.problem.as_deref()).context("comparing the runs")?;
    let text = |ids: &[u32]| -> String {
        match &tok {
            Some(t) => t
                .decode(ids, DecodeSpecialTokens::Keep)
                .unwrap_or_else(|e| format!("<{e}>")),
            None => format!("{ids:?}"),
        }
    };
    let label = |r: &LoadedRun| {
        r.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let (la, lb) = (label(&a), label(&b));
    let diverging = cmp
        .samples
        .iter()
        .filter(|s| s.diverges_at.is_some())
        .count();

    for s in &cmp.samples {
        let ra = a.record(&s.key).expect("compared samples exist in A");
        let rb = b.record(&s.key).expect("compared samples exist in B");
        let Some(pos) = s.diverges_at else {
            if mode == OutputMode::Json {
                crate::progress::event(
                    "sample",
                    json!({
                        "key": s.key.to_string(), "diverges_at": null, "len": s.a.len,
                        "logprobs_identical": s.logprobs_identical,
                        "max_top1_logprob_delta": s.max_top1_logprob_delta,
                    }),
                );
            } else if args.all {
                println!(
                    "{}: identical ({} tokens{})",
                    s.key,
                    s.a.len,
                    logprob_note(s)
                );
            }
            continue;
        };
        let shared = &ra.token_ids[pos.saturating_sub(args.context)..pos];
        let cont = |ids: &[u32]| ids[pos.min(ids.len())..(pos + AFTER).min(ids.len())].to_vec();
        let (ca, cb) = (cont(&ra.token_ids), cont(&rb.token_ids));
        if mode == OutputMode::Json {
            let cands = |c: &[Candidate]| {
                c.iter()
                    .map(|c| json!({ "token": c.token, "text": text(&[c.token]), "prob": c.prob }))
                    .collect::<Vec<_>>()
            };
            crate::progress::event(
                "sample",
                json!({
                    "key": s.key.to_string(), "diverges_at": pos,
                    "logprobs_identical": s.logprobs_identical,
                    "max_top1_logprob_delta": s.max_top1_logprob_delta,
                    "shared_text": text(shared), "a_text": text(&ca), "b_text": text(&cb),
                    "a": { "len": s.a.len, "token": s.a.token, "candidates": cands(&s.a.candidates), "answer": s.a.answer, "score": s.a.score, "correct": s.a.correct },
                    "b": { "len": s.b.len, "token": s.b.token, "candidates": cands(&s.b.candidates), "answer": s.b.answer, "score": s.b.score, "correct": s.b.correct },
                }),
            );
            continue;
        }
        print_sample(
            s,
            pos,
            &la,
            &lb,
            &text(shared),
            &text(&ca),
            &text(&cb),
            &text,
        );
    }
    let with_lp: Vec<&SampleComparison> = cmp
        .samples
        .iter()
        .filter(|s| s.logprobs_identical.is_some())
        .collect();
    let same = with_lp
        .iter()
        .filter(|s| s.logprobs_identical == Some(true))
        .count();
    let delta = with_lp
        .iter()
        .filter_map(|s| s.max_top1_logprob_delta)
        .fold(0f64, f64::max);
    let lp_note = if with_lp.is_empty() {
        String::new()
    } else {
        format!(
            "; over their shared tokens the top-k log-probabilities are bitwise identical in {same} of {}, \
             largest top-1 log-probability difference {}",
            with_lp.len(),
            sci(delta)
        )
    };
    let summary = format!(
        "{} of {} shared samples diverge{lp_note}{}{}",
        diverging,
        cmp.samples.len(),
        if cmp.only_in_a.is_empty() {
            String::new()
        } else {
            format!("; {} only in {la}", cmp.only_in_a.len())
        },
        if cmp.only_in_b.is_empty() {
            String::new()
        } else {
            format!("; {} only in {lb}", cmp.only_in_b.len())
        },
    );
    mode.result(
        &summary,
        "inspected",
        json!({
            "shared": cmp.samples.len(), "diverging": diverging,
            "only_in_a": cmp.only_in_a.len(), "only_in_b": cmp.only_in_b.len(),
            "with_logprobs": with_lp.len(), "logprobs_identical": same,
            "max_top1_logprob_delta": (!with_lp.is_empty()).then_some(delta),
        }),
    );
    Ok(0)
}

/// `inspect --bitwise`: one verdict, with the first difference named.
fn bitwise_verdict(a: &LoadedRun, b: &LoadedRun, mode: OutputMode) -> Result<i32> {
    for (name, r) in [("A", a), ("B", b)] {
        for note in &r.notes {
            mode.note(&format!("run {name} ({}): {note}", r.path.display()));
        }
    }
    let c = bitwise(a, b).context("comparing the runs")?;
    let lp = |c: Option<RecordedCandidate>| match c {
        Some(c) => format!(
            "token {} logprob {:e} (bits {:#010x})",
            c.token,
            c.logprob(),
            c.logprob_bits
        ),
        None => "nothing".into(),
    };
    let token = |t: Option<u32>| t.map_or("end of response".into(), |t| format!("token {t}"));
    let what = c.first_difference.as_ref().map(|d| match d {
        FirstDifference::Missing { key, only_in } => {
            format!("sample {key} completed in run {only_in:?} only")
        }
        FirstDifference::Candidates {
            key,
            position,
            rank,
            a,
            b,
        } => format!(
            "{}, sample {key}, position {position}, candidate {rank}: A {} vs B {}",
            d.file(),
            lp(*a),
            lp(*b)
        ),
        FirstDifference::Token {
            key,
            position,
            a,
            b,
        } => format!(
            "{}, sample {key}, position {position}: A {} vs B {}",
            d.file(),
            token(*a),
            token(*b)
        ),
        FirstDifference::Field { key, field, a, b } => {
            format!("{}, sample {key}, field {field}: A {a} vs B {b}", d.file())
        }
    });
    let verdict = match &what {
        None => format!(
            "bitwise identical: {} samples, {} tokens (token ids, top-k log-probabilities and scored fields)",
            c.samples, c.tokens
        ),
        Some(w) => format!(
            "not identical: {} of {} samples differ; first difference: {w}",
            c.differing_samples,
            c.samples + c.missing
        ),
    };
    // What the manifests say differs between the runs (device, kernels, policy, batch size, ...):
    // the context of the verdict, e.g. a CPU and a GPU run of one configuration.
    let config = a.manifest.diff_config(&b.manifest);
    let settings = if config.is_empty() {
        "the runs' recorded configurations are the same".to_string()
    } else {
        let fields: Vec<String> = config
            .iter()
            .map(|d| format!("{} (A {}, B {})", d.field, d.existing, d.requested))
            .collect();
        format!(
            "the runs' recorded configurations differ in {}",
            fields.join("; ")
        )
    };
    let config_json: Vec<serde_json::Value> = config
        .iter()
        .map(|d| json!({ "field": d.field, "a": d.existing, "b": d.requested }))
        .collect();
    mode.result(
        &format!("{verdict}\n{settings}"),
        "bitwise",
        json!({
            "identical": c.first_difference.is_none(), "samples": c.samples, "tokens": c.tokens,
            "missing": c.missing, "differing_samples": c.differing_samples,
            "first_difference": c.first_difference, "config_differences": config_json,
        }),
    );
    Ok(if c.first_difference.is_none() { 0 } else { 1 })
}

/// What an identical token stream's numbers did: `, log-probabilities bitwise identical` or the
/// largest top-1 difference (empty without recorded log-probabilities).
fn logprob_note(s: &SampleComparison) -> String {
    match (s.logprobs_identical, s.max_top1_logprob_delta) {
        (Some(true), _) => ", log-probabilities bitwise identical".into(),
        (Some(false), Some(d)) => format!(", top-1 log-probability differs by up to {}", sci(d)),
        (Some(false), None) => ", log-probabilities differ".into(),
        (None, _) => String::new(),
    }
}

/// A log-probability difference: differences between runs are often 1e-7 or smaller, which fixed
/// decimals would print as 0; an exact 0 prints as `0`.
fn sci(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else {
        format!("{x:.3e}")
    }
}

#[allow(clippy::too_many_arguments)] // one printing helper; a struct would only rename the locals
fn print_sample(
    s: &SampleComparison,
    pos: usize,
    la: &str,
    lb: &str,
    shared: &str,
    ca: &str,
    cb: &str,
    text: &dyn Fn(&[u32]) -> String,
) {
    println!(
        "{}: diverges at token {pos} (lengths {} / {})",
        s.key, s.a.len, s.b.len
    );
    println!("  shared   …{shared:?}");
    println!("  {la}: {ca:?}");
    println!("  {lb}: {cb:?}");
    println!("  top candidates at token {pos}:");
    let probs: Vec<f64> =
        s.a.candidates
            .iter()
            .chain(&s.b.candidates)
            .map(|c| c.prob)
            .collect();
    let decimals = decimals_to_tell_apart(&probs);
    let col = |side: &Side| -> Vec<String> {
        if side.candidates.is_empty() {
            return vec!["(response ended)".into()];
        }
        side.candidates
            .iter()
            .map(|c| {
                let mark = if Some(c.token) == side.token {
                    "*"
                } else {
                    " "
                };
                format!(
                    "{mark}{:>w$.decimals$} {:>7} {:?}",
                    c.prob,
                    c.token,
                    text(&[c.token]),
                    w = decimals + 3,
                )
            })
            .collect()
    };
    let (xa, xb) = (col(&s.a), col(&s.b));
    println!("    {:<40} {}", la, lb);
    for i in 0..xa.len().max(xb.len()) {
        println!(
            "    {:<40} {}",
            xa.get(i).map(String::as_str).unwrap_or(""),
            xb.get(i).map(String::as_str).unwrap_or("")
        );
    }
    let ans = |side: &Side| {
        format!(
            "{} ({}, score {})",
            side.answer.as_deref().unwrap_or("no answer"),
            if side.correct { "correct" } else { "wrong" },
            side.score
        )
    };
    println!("  answers: {la}: {} | {lb}: {}", ans(&s.a), ans(&s.b));
}

/// Decimals (5 to 12) that print every pair of different probabilities differently, so that a
/// near tie (`0.25300` beside `0.25300`) shows where the two values part.
fn decimals_to_tell_apart(probs: &[f64]) -> usize {
    (5..=12)
        .find(|&d| {
            probs.iter().enumerate().all(|(i, a)| {
                probs[i + 1..]
                    .iter()
                    .all(|b| a == b || format!("{a:.d$}") != format!("{b:.d$}"))
            })
        })
        .unwrap_or(12)
}

/// The tokenizer to decode with: `--tokenizer`, else the one in run A's model directory (for a Hub
/// model, its snapshot in the local Hub cache; nothing is downloaded). Without one, token ids are
/// shown instead of text.
fn tokenizer(args: &InspectArgs, a: &LoadedRun, mode: OutputMode) -> Option<Tokenizer> {
    let model = &a.manifest.model;
    let path = match (&args.tokenizer, &model.revision) {
        (Some(p), _) => p.clone(),
        (None, Some(commit)) if model.source == "hf-hub" => ResolveOptions::from_env()
            .hub_cache
            .join(format!("models--{}", model.id.replace('/', "--")))
            .join("snapshots")
            .join(commit)
            .join("tokenizer.json"),
        (None, _) => PathBuf::from(&model.source).join("tokenizer.json"),
    };
    match Tokenizer::from_file(&path) {
        Ok(t) => {
            if t.sha256() != a.manifest.model.tokenizer_sha256 {
                mode.note(&format!(
                    "warning: {} differs from the run's tokenizer (sha256 {}); decoded text may be wrong",
                    path.display(),
                    a.manifest.model.tokenizer_sha256
                ));
            }
            Some(t)
        }
        Err(e) => {
            mode.note(&format!(
                "note: cannot decode tokens ({e}); showing token ids (pass --tokenizer FILE)"
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_ties_get_the_decimals_that_part_them() {
        assert_eq!(decimals_to_tell_apart(&[0.5, 0.25]), 5);
        assert_eq!(decimals_to_tell_apart(&[0.253001, 0.253004, 0.1]), 6);
        assert_eq!(decimals_to_tell_apart(&[0.25300001, 0.25300004]), 8);
        // Equal values need no more digits.
        assert_eq!(decimals_to_tell_apart(&[0.3, 0.3]), 5);
    }
}
