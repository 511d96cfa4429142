//! `results.json`: a run's own numbers, written beside its manifest when the run finishes (and
//! again when `reprolm score` re-grades it), so that a single run can be read without a report:
//! accuracy with its 95% interval, unbiased pass@k, response lengths and the cut-off share.
//!
//! The file holds no times, so a run that was killed and resumed writes the same bytes as one that
//! ran straight through.

use std::path::Path;

use serde::Serialize;

use crate::error::io_err;
use crate::metrics::{run_stats, RunObs, RunStats, SampleObs};
use crate::run_dir::{FinishReason, LoadedRun};
use crate::{Error, Result};

/// The file name inside a run directory.
pub const RESULTS_FILE: &str = "results.json";

/// The results.json format this build writes; bumped when a field changes meaning, so that a
/// script reading several runs can tell files of different versions apart.
pub const RESULTS_FORMAT_VERSION: u32 = 1;

/// What `results.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunResults {
    /// [`RESULTS_FORMAT_VERSION`].
    pub format_version: u32,
    /// Model id, as in the manifest.
    pub model: String,
    /// Task name.
    pub task: String,
    /// Precision policy name.
    pub policy: String,
    /// Distinct problems with at least one sample.
    pub problems: usize,
    /// Whether every sample the run was asked for is recorded and the manifest says finished.
    pub finished: bool,
    /// Accuracy (Pass@1 for sampled runs), its Wilson 95% interval, lengths, cut-off share and
    /// pass@k over every recorded sample.
    #[serde(flatten)]
    pub stats: RunStats,
}

/// The results of the run in `dir`, from its recorded responses.
///
/// ```no_run
/// let r = reprolm_metrics::results::compute("runs/my-run".as_ref())?;
/// println!("{:?}", r.stats.accuracy);
/// # Ok::<(), reprolm_metrics::Error>(())
/// ```
pub fn compute(dir: &Path) -> Result<RunResults> {
    let run = LoadedRun::load(dir)?;
    let mut obs = RunObs::new();
    for r in &run.records {
        obs.insert(
            r.key(),
            SampleObs {
                token_ids: r.token_ids.clone(),
                top1_logprobs: Vec::new(),
                correct: r.correct,
                truncated: r.finish_reason == FinishReason::Length,
            },
        );
    }
    let keys: Vec<_> = obs.keys().cloned().collect();
    let problems = keys
        .iter()
        .map(|k| k.problem_id.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    Ok(RunResults {
        format_version: RESULTS_FORMAT_VERSION,
        model: run.manifest.model.id.clone(),
        task: run.manifest.task.name.clone(),
        policy: run.manifest.policy.name.clone(),
        problems,
        finished: run.is_finished(),
        stats: run_stats(&obs, &keys),
    })
}

/// Computes the results of `dir` and writes them to `dir/results.json` atomically (temporary
/// file + rename).
pub fn write(dir: &Path) -> Result<RunResults> {
    let results = compute(dir)?;
    let path = dir.join(RESULTS_FILE);
    let mut text = serde_json::to_string_pretty(&results).map_err(|source| Error::Json {
        path: path.clone(),
        line: None,
        source,
    })?;
    text.push('\n');
    // Already there, same bytes (a finished run asked again): nothing to write, which also lets a
    // finished run in a read-only directory be answered.
    if std::fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(results);
    }
    let tmp = dir.join(format!("{RESULTS_FILE}.tmp"));
    std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    Ok(results)
}
