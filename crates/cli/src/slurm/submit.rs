//! `reprolm sweep FILE --executor slurm`: submit the configurations that still need running as one
//! job array.
//!
//! Before submitting, every configuration is resolved (a typo fails here, not in hundreds of queued
//! tasks), finished run directories are left out, and so are configurations an earlier submission
//! still has queued or running, so two tasks never write one run directory. The array tasks read a
//! copy of the sweep file kept in the sweep root, named by its content: editing the file later does
//! not change what queued tasks run, and their index keeps naming the configuration it named.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::indices::format_index_set;
use super::jobs::{self, Submission, SubmittedTask, JOBS_FORMAT_VERSION};
use super::queue::QueueView;
use super::script::{self, SbatchOptions, ScriptSpec};
use super::tool::{self, ToolOutput};
use crate::args::{SlurmArgs, SweepArgs};
use crate::commands::sweep::plan::{finished_state, SweepPlan};
use crate::progress::OutputMode;

/// File name of the script in the sweep root's Slurm folder.
pub const SCRIPT_FILE: &str = "sweep.sbatch";

/// The first Slurm-only flag set in `a`, for refusing it under the local executor.
pub fn slurm_only_flag(a: &SlurmArgs) -> Option<&'static str> {
    [
        ("--partition", a.partition.is_some()),
        ("--gpus-per-run", a.gpus_per_run > 0),
        ("--time", a.time.is_some()),
        ("--account", a.account.is_some()),
        ("--extra-sbatch", !a.extra_sbatch.is_empty()),
    ]
    .into_iter()
    .find(|(_, set)| *set)
    .map(|(flag, _)| flag)
}

/// The user's Slurm flags as script options; `--extra-sbatch` values split at whitespace.
pub fn sbatch_options(a: &SlurmArgs) -> Result<SbatchOptions> {
    let o = SbatchOptions {
        partition: a.partition.clone(),
        gpus_per_run: a.gpus_per_run,
        time: a.time.clone(),
        account: a.account.clone(),
        extra: a
            .extra_sbatch
            .iter()
            .flat_map(|s| s.split_whitespace().map(str::to_string))
            .collect(),
    };
    o.validate()?;
    Ok(o)
}

/// Submit (or with `--dry-run` print) the sweep's job array.
pub fn command(plan: &SweepPlan, args: &SweepArgs, mode: OutputMode) -> Result<i32> {
    let options = sbatch_options(&args.slurm)?;
    let source = args.file.as_deref().context("a sweep file is required")?;
    let bad: Vec<String> = plan
        .runs
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            p.config
                .as_ref()
                .err()
                .map(|e| format!("[{}] {}: {e:#}", i + 1, p.label))
        })
        .collect();
    if !bad.is_empty() {
        bail!(
            "sweep file {}: {} configurations cannot run, nothing submitted:\n  {}",
            plan.file,
            bad.len(),
            bad.join("\n  ")
        );
    }
    let root = std::path::absolute(&plan.root)
        .with_context(|| format!("resolving {}", plan.root.display()))?;
    let selected = plan.selected(args.only)?;

    let mut done = Vec::new();
    for &i in &selected {
        let cfg = plan.runs[i - 1].config.as_ref().expect("checked above");
        if finished_state(cfg)? {
            done.push(i);
        }
    }
    let earlier = jobs::read(&root)?;
    let mut queued = Vec::new();
    if !earlier.is_empty() {
        let ids: Vec<String> = earlier.iter().map(|s| s.job_id.clone()).collect();
        let view = QueueView::query(&ids);
        if let Some(e) = &view.squeue_error {
            bail!(
                "{}: cannot ask squeue whether earlier tasks of this sweep still run ({e}); \
                 submitting now could run a configuration twice",
                jobs::jobs_path(&root).display()
            );
        }
        for &i in &selected {
            if done.contains(&i) {
                continue;
            }
            if let Some((sub, index)) = jobs::latest_for(&earlier, &run_name(plan, i)) {
                if view
                    .queued
                    .get(&(sub.job_id.clone(), index))
                    .is_some_and(|t| t.state.is_active())
                {
                    queued.push(i);
                }
            }
        }
    }
    let todo: Vec<usize> = selected
        .iter()
        .copied()
        .filter(|i| !done.contains(i) && !queued.contains(i))
        .collect();
    let standing = format!(
        "{} of {} configurations already finished, {} still queued or running",
        done.len(),
        selected.len(),
        queued.len()
    );
    if todo.is_empty() {
        mode.result(
            &format!("sweep {}: nothing to submit: {standing}", plan.file),
            "sweep_submitted",
            json!({"root": root, "job_id": null, "indices": [], "finished": done, "queued": queued}),
        );
        return Ok(0);
    }

    let text = std::fs::read(source)
        .with_context(|| format!("reading sweep file {}", source.display()))?;
    let digest = Sha256::digest(&text);
    let hash: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let dir = super::slurm_dir(&root);
    let frozen = dir.join(format!("sweep-{hash}.toml"));
    let script_path = dir.join(SCRIPT_FILE);
    let exe = std::env::current_exe().context("finding this reprolm binary for the script")?;
    let workdir = std::env::current_dir().context("reading the working directory")?;
    let array = format_index_set(&todo);
    let spec = ScriptSpec {
        job_name: format!("reprolm-{}", stem(source)),
        array: array.clone(),
        log_pattern: dir.join("logs").join("%A_%a.log"),
        workdir,
        options,
        command: vec![
            exe.display().to_string(),
            "sweep".into(),
            frozen.display().to_string(),
            "--root".into(),
            root.display().to_string(),
        ],
    };
    let script_text = script::render(&spec);
    if args.dry_run {
        mode.note(&format!(
            "sweep {}: would submit {} configurations ({standing}); the script:",
            plan.file,
            todo.len()
        ));
        mode.result(
            script_text.trim_end(),
            "sweep_script",
            json!({"root": root, "indices": todo, "script": script_text}),
        );
        return Ok(0);
    }

    std::fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("creating {}", dir.join("logs").display()))?;
    if !frozen.exists() {
        std::fs::write(&frozen, &text).with_context(|| format!("writing {}", frozen.display()))?;
    }
    std::fs::write(&script_path, &script_text)
        .with_context(|| format!("writing {}", script_path.display()))?;
    let out = tool::run(
        "sbatch",
        &["--parsable".to_string(), script_path.display().to_string()],
        Duration::from_secs(120),
    );
    let printed = match out {
        ToolOutput::Ok(s) => s,
        ToolOutput::Missing => bail!(
            "sbatch is not installed here; run this on a Slurm login node, or see the script with --dry-run"
        ),
        ToolOutput::Failed(e) => bail!("submitting {}: {e}", script_path.display()),
    };
    let (job_id, cluster) = parse_parsable(&printed)?;
    let sub = Submission {
        format_version: JOBS_FORMAT_VERSION,
        job_id: job_id.clone(),
        cluster,
        submitted_at: crate::commands::run::now(),
        source_file: source.to_path_buf(),
        workdir: spec.workdir.clone(),
        sweep_file: frozen,
        script: script_path.clone(),
        runs: plan.runs.len(),
        tasks: todo
            .iter()
            .map(|&index| SubmittedTask {
                index,
                run: run_name(plan, index),
            })
            .collect(),
    };
    jobs::append(&root, &sub)?;
    mode.result(
        &format!(
            "sweep {}: submitted job {job_id}, array {array}: {} configurations ({standing}); \
             follow it with `reprolm sweep status {}`",
            plan.file,
            todo.len(),
            root.display()
        ),
        "sweep_submitted",
        json!({"root": root, "job_id": job_id, "indices": todo, "finished": done, "queued": queued,
               "script": script_path}),
    );
    Ok(0)
}

/// The run directory name of configuration `index` (resolved: checked before any use).
fn run_name(plan: &SweepPlan, index: usize) -> String {
    plan.runs[index - 1]
        .config
        .as_ref()
        .map(|c| c.run_name())
        .unwrap_or_default()
}

/// `sbatch --parsable` prints `JOBID` or `JOBID;CLUSTER`.
pub fn parse_parsable(printed: &str) -> Result<(String, Option<String>)> {
    let line = printed
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let (id, cluster) = match line.split_once(';') {
        Some((id, c)) => (id, Some(c.to_string())),
        None => (line, None),
    };
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        bail!(
            "sbatch --parsable printed `{}`, not a job id",
            printed.trim()
        );
    }
    Ok((id.to_string(), cluster))
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sweep".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_from_sbatch() {
        assert_eq!(parse_parsable("812\n").unwrap(), ("812".into(), None));
        assert_eq!(
            parse_parsable("812;west\n").unwrap(),
            ("812".into(), Some("west".into()))
        );
        assert!(parse_parsable("sbatch: error: Batch job submission failed").is_err());
        assert!(parse_parsable("").is_err());
    }

    #[test]
    fn extra_options_split_and_local_runs_refuse_slurm_flags() {
        let a = SlurmArgs {
            extra_sbatch: vec!["--qos=high  --mem=64G".into(), "--exclusive".into()],
            ..SlurmArgs::default()
        };
        assert_eq!(
            sbatch_options(&a).unwrap().extra,
            ["--qos=high", "--mem=64G", "--exclusive"]
        );
        assert_eq!(slurm_only_flag(&a), Some("--extra-sbatch"));
        assert_eq!(slurm_only_flag(&SlurmArgs::default()), None);
    }
}
