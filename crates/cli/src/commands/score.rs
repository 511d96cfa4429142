//! `reprolm score DIR`: grade a run's responses again (after a grader fix, say) without generating.
//!
//! The problems are reloaded with the task settings the manifest recorded, and must hash to the
//! manifest's dataset digest, so a response is never graded against another problem's answer.

use std::path::Path;

use anyhow::{bail, Context, Result};
use reprolm_metrics::run_dir::{write_responses, RESPONSES_FILE};
use reprolm_metrics::LoadedRun;
use reprolm_tasks::{DataSource, TaskOptions};
use serde_json::json;

use crate::commands::run::TASK_OPTIONS_KEY;
use crate::progress::OutputMode;

/// Re-score `dir`; the exit status is 1 when some response could not be graded.
pub fn command(dir: &Path, mode: OutputMode) -> Result<i32> {
    let run =
        LoadedRun::load(dir).with_context(|| format!("reading run directory {}", dir.display()))?;
    let m = &run.manifest;
    let mut options = TaskOptions::default().with_seed(m.seed);
    if let Some(rec) = m.extra.get(TASK_OPTIONS_KEY) {
        if let Some(seed) = rec.get("seed").and_then(|s| s.as_u64()) {
            options.seed = seed;
        }
        if let Some(params) = rec.get("params").and_then(|p| p.as_object()) {
            for (k, v) in params {
                options = options.with_param(k.clone(), v.as_str().unwrap_or_default());
            }
        }
        if let Some(d) = rec.get("data").and_then(|d| d.as_str()) {
            let source = DataSource::parse(d).map_err(|e| {
                anyhow::anyhow!(
                    "{}: field `{TASK_OPTIONS_KEY}.data`: {e}",
                    dir.join("manifest.json").display()
                )
            })?;
            options = options.with_data(source);
        }
    }
    let (task, data) = reprolm_tasks::load_task(&m.task.name, &options)
        .with_context(|| format!("{}: loading task `{}`", dir.display(), m.task.name))?;
    if task.version() != m.task.version {
        bail!(
            "{}: the run was made with task `{}` version {}, this build has version {}; its prompts or grading \
             changed, so generate a new run instead of re-scoring this one",
            dir.display(),
            m.task.name,
            m.task.version,
            task.version()
        );
    }
    if data.sha256() != m.task.dataset_sha256 {
        bail!(
            "{}: the task's data now hashes to {}, the run recorded {} (task.dataset_sha256); the problems changed",
            dir.display(),
            data.sha256(),
            m.task.dataset_sha256
        );
    }
    let mut items = Vec::new();
    for r in &run.records {
        let p = data.get(&r.problem_id).with_context(|| {
            format!(
                "{}: problem `{}` is not in task `{}`",
                dir.join(RESPONSES_FILE).display(),
                r.problem_id,
                m.task.name
            )
        })?;
        items.push((p, r.response.as_str()));
    }
    let mut records = run.records.clone();
    let (mut changed, mut errors) = (0, 0);
    for (r, (p, text)) in records.iter_mut().zip(&items) {
        let before = (r.correct, r.score);
        match task.score(p, text) {
            Ok(s) => {
                r.score = s.score.clamp(0.0, 1.0);
                r.correct = s.correct;
                r.extracted_answer = s.extracted;
                r.score_detail = s.detail;
            }
            Err(e) => {
                errors += 1;
                mode.note(&format!(
                    "warning: {}: grading failed, recorded as wrong: {e}",
                    r.key()
                ));
                r.score = 0.0;
                r.correct = false;
                r.extracted_answer = None;
                r.score_detail = json!({ "error": e.to_string() });
            }
        }
        if before != (r.correct, r.score) {
            changed += 1;
        }
    }
    let path = dir.join(RESPONSES_FILE);
    if !run.notes.is_empty() {
        mode.note(&format!("{}: {}", dir.display(), run.notes.join("; ")));
    }
    write_responses(&path, &records).with_context(|| format!("writing {}", path.display()))?;
    if run.is_finished() {
        reprolm_metrics::results::write(dir).with_context(|| {
            format!(
                "{}: writing {}",
                dir.display(),
                reprolm_metrics::results::RESULTS_FILE
            )
        })?;
    }
    let correct = records.iter().filter(|r| r.correct).count();
    mode.result(
        &format!(
            "{}: re-scored {} responses, {changed} changed; accuracy {:.3} ({correct}/{})",
            dir.display(),
            records.len(),
            correct as f64 / records.len().max(1) as f64,
            records.len()
        ),
        "scored",
        json!({ "dir": dir, "responses": records.len(), "changed": changed, "correct": correct, "errors": errors }),
    );
    Ok(i32::from(errors > 0))
}
