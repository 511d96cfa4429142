//! A run directory as one JSON Lines file for analysis outside reprolm (pandas:
//! `pd.read_json(path, lines=True)`): one line per sample with its response record and, position by
//! position, the top-k token ids and log-probabilities that `logprobs.bin` holds.
//!
//! A line: `problem_id`, `sample_index`, `response`, `token_ids`, `finish_reason`, `correct`,
//! `score`, `extracted_answer`, `prompt_tokens`, then `top_ids` and `top_logprobs`, two lists with
//! one list of k entries per generated token (ranks in descending probability). A position with
//! fewer than k candidates has `null` in the missing ranks (the binary file's padding, token id
//! `u32::MAX` and `-inf`, has no JSON form).

use std::io::Write;

use serde_json::{json, Value};

use crate::run_dir::{LoadedRun, PAD_TOKEN};
use crate::{Error, Result};

/// Writes every sample of `run` as one JSON line to `out`; returns how many.
pub fn export_jsonl(run: &LoadedRun, out: &mut impl Write) -> Result<usize> {
    let mut n = 0;
    let path = run.path.join("export");
    for pair in run.samples()? {
        let (r, lp) = pair?;
        let (mut ids, mut lps) = (Vec::with_capacity(lp.len()), Vec::with_capacity(lp.len()));
        for i in 0..lp.len() {
            let (ti, tl) = lp.position(i);
            let real = |t: &u32| *t != PAD_TOKEN;
            ids.push(Value::from(
                ti.iter()
                    .map(|t| real(t).then_some(*t))
                    .collect::<Vec<Option<u32>>>(),
            ));
            lps.push(Value::from(
                ti.iter()
                    .zip(tl)
                    .map(|(t, l)| (real(t) && l.is_finite()).then_some(f64::from(*l)))
                    .collect::<Vec<Option<f64>>>(),
            ));
        }
        let line = json!({
            "problem_id": r.problem_id,
            "sample_index": r.sample_index,
            "response": r.response,
            "token_ids": r.token_ids,
            "finish_reason": r.finish_reason,
            "correct": r.correct,
            "score": r.score,
            "extracted_answer": r.extracted_answer,
            "prompt_tokens": r.prompt_tokens,
            "question": r.question,
            "gold_answer": r.gold_answer,
            "prompt": r.prompt,
            "top_ids": ids,
            "top_logprobs": lps,
        });
        writeln!(out, "{line}").map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        n += 1;
    }
    Ok(n)
}
