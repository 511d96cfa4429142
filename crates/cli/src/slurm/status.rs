//! `reprolm sweep status ROOT`: each configuration's state, from the run directories first and Slurm
//! second.
//!
//! A finished run directory is done whatever Slurm says (the manifest is the record of a run), so a
//! sweep copied off the cluster still shows its finished runs. For the rest, the latest submission
//! that included the configuration names the job to ask squeue about (queued or running) and, once
//! squeue has forgotten it, sacct (how it ended). A task that is neither finished nor queued failed,
//! and its log's last lines usually say why.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::jobs::{self, Submission};
use super::queue::{JobState, QueueView};
use crate::args::SweepStatusArgs;
use crate::commands::sweep::{finished_state, plan};
use crate::progress::OutputMode;

/// What the run directory of a configuration says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirState {
    /// Finished (the manifest has an end time).
    Finished,
    /// Not finished, or not there yet.
    Unfinished,
    /// The configuration does not resolve, or its directory holds another configuration.
    Invalid(String),
}

/// A configuration's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// The run directory is finished.
    Done,
    /// Slurm runs it.
    Running {
        /// Array job id.
        job: String,
        /// Node list.
        node: String,
    },
    /// Slurm has it queued.
    Pending {
        /// Array job id.
        job: String,
        /// squeue's reason.
        reason: String,
    },
    /// It cannot run, or its task ended without finishing the run.
    Failed {
        /// Array job id, when a task ran.
        job: Option<String>,
        /// What is known of why.
        why: String,
    },
    /// No submission included it.
    NotSubmitted,
    /// Unfinished, and the queue could not be asked whether a task still runs it.
    Unknown {
        /// Array job id.
        job: String,
        /// Why the queue could not be asked.
        why: String,
    },
}

impl RunState {
    /// One word for tables and JSON.
    pub fn name(&self) -> &'static str {
        match self {
            RunState::Done => "done",
            RunState::Running { .. } => "running",
            RunState::Pending { .. } => "pending",
            RunState::Failed { .. } => "failed",
            RunState::NotSubmitted => "not-submitted",
            RunState::Unknown { .. } => "unknown",
        }
    }

    /// The job whose log belongs to this state, if a task ran or runs.
    pub fn job(&self) -> Option<&str> {
        match self {
            RunState::Running { job, .. }
            | RunState::Pending { job, .. }
            | RunState::Unknown { job, .. } => Some(job),
            RunState::Failed { job, .. } => job.as_deref(),
            RunState::Done | RunState::NotSubmitted => None,
        }
    }
}

/// The state of configuration `index` from its directory, the latest submission that included it,
/// and the queue. Pure, so each combination is tested without a cluster.
pub fn classify(
    index: usize,
    dir: &DirState,
    latest: Option<&Submission>,
    view: &QueueView,
) -> RunState {
    match dir {
        DirState::Finished => return RunState::Done,
        DirState::Invalid(why) => {
            return RunState::Failed {
                job: None,
                why: why.clone(),
            }
        }
        DirState::Unfinished => {}
    }
    let Some(sub) = latest else {
        return RunState::NotSubmitted;
    };
    let job = sub.job_id.clone();
    match view.task(&job, index) {
        Some(t) => match &t.state {
            JobState::Running => RunState::Running {
                job,
                node: t.detail.clone(),
            },
            JobState::Pending => RunState::Pending {
                job,
                reason: t.detail.clone(),
            },
            JobState::Completed => RunState::Failed {
                job: Some(job),
                why: "the task completed but left the run directory unfinished".into(),
            },
            JobState::Ended(state) => RunState::Failed {
                job: Some(job),
                why: format!("{state} ({})", t.detail),
            },
        },
        None if view.queue_known() => RunState::Failed {
            job: Some(job),
            why: "the task left the queue without finishing the run".into(),
        },
        None => RunState::Unknown {
            job,
            why: view.squeue_error.clone().unwrap_or_default(),
        },
    }
}

/// The last `n` lines of a file, or a line saying it is not there.
pub fn tail(path: &Path, n: usize) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..]
                .iter()
                .map(|l| l.to_string())
                .collect()
        }
        Err(e) => vec![format!("(no log: {}: {e})", path.display())],
    }
}

/// Print the state of every configuration of the sweep submitted into `args.root`.
pub fn command(args: &SweepStatusArgs, mode: OutputMode) -> Result<i32> {
    let root = std::path::absolute(&args.root)
        .with_context(|| format!("resolving {}", args.root.display()))?;
    let subs = jobs::read(&root)?;
    let Some(last) = subs.last() else {
        bail!(
            "{}: no Slurm submission recorded; `sweep status` follows sweeps submitted with \
             `reprolm sweep FILE --executor slurm` (a local sweep's state is its run directories)",
            jobs::jobs_path(&root).display()
        );
    };
    // The sweep file's relative paths (model, data) mean what they meant at submission.
    if last.workdir.is_dir() {
        std::env::set_current_dir(&last.workdir)
            .with_context(|| format!("entering {}", last.workdir.display()))?;
    }
    let plan = plan(&last.sweep_file, Some(&root))?;
    let ids: Vec<String> = subs.iter().map(|s| s.job_id.clone()).collect();
    let view = QueueView::query(&ids);

    let mut rows = Vec::new();
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for (i, p) in plan.runs.iter().enumerate() {
        let index = i + 1;
        let (dir, run_dir): (DirState, Option<PathBuf>) = match &p.config {
            Err(e) => (DirState::Invalid(format!("{e:#}")), None),
            Ok(cfg) => match finished_state(cfg) {
                Ok(true) => (DirState::Finished, Some(cfg.out.clone())),
                Ok(false) => (DirState::Unfinished, Some(cfg.out.clone())),
                Err(e) => (DirState::Invalid(format!("{e:#}")), Some(cfg.out.clone())),
            },
        };
        let state = classify(index, &dir, jobs::latest_for(&subs, index), &view);
        *counts.entry(state.name()).or_default() += 1;
        let log = state.job().map(|j| super::log_path(&root, j, index));
        let log_tail = match (&state, &log) {
            (RunState::Failed { .. } | RunState::Unknown { .. }, Some(l)) => {
                tail(l, args.log_lines)
            }
            _ => Vec::new(),
        };
        rows.push((index, p.label.clone(), run_dir, state, log, log_tail));
    }

    let summary = counts
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = format!(
        "sweep {}: {} configurations: {summary}",
        root.display(),
        plan.runs.len()
    );
    // What Slurm could not tell matters only for runs that are not done.
    if rows
        .iter()
        .any(|r| matches!(r.3, RunState::Failed { .. } | RunState::Unknown { .. }))
    {
        for note in [&view.squeue_error, &view.sacct_error]
            .into_iter()
            .flatten()
        {
            text.push_str(&format!("\n  ({note})"));
        }
    }
    for (index, label, run_dir, state, log, log_tail) in &rows {
        let name = run_dir
            .as_ref()
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "-".into());
        let detail = match state {
            RunState::Running { job, node } => format!("job {job}_{index} on {node}"),
            RunState::Pending { job, reason } => format!("job {job}_{index} {reason}"),
            RunState::Failed { job: Some(j), why } => format!("job {j}_{index}: {why}"),
            RunState::Failed { job: None, why } => why.clone(),
            RunState::Unknown { job, .. } => format!("job {job}_{index}: queue not reachable"),
            RunState::Done | RunState::NotSubmitted => String::new(),
        };
        text.push_str(&format!(
            "\n{index:>4}  {:<13} {name}  [{label}]",
            state.name()
        ));
        if !detail.is_empty() {
            text.push_str(&format!("\n        {detail}"));
        }
        if !log_tail.is_empty() {
            if let Some(l) = log {
                text.push_str(&format!("\n        last lines of {}:", l.display()));
            }
            for line in log_tail {
                text.push_str(&format!("\n        | {line}"));
            }
        }
    }
    let runs: Vec<_> = rows
        .iter()
        .map(|(index, label, run_dir, state, log, log_tail)| {
            json!({"index": index, "label": label, "run_dir": run_dir, "state": state.name(),
                   "job_id": state.job(), "detail": format!("{state:?}"), "log": log,
                   "log_tail": log_tail})
        })
        .collect();
    mode.result(
        &text,
        "sweep_status",
        json!({"root": root, "runs": runs, "squeue_error": view.squeue_error,
               "sacct_error": view.sacct_error}),
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::super::queue::{parse_sacct, parse_squeue, TaskRecord};
    use super::*;

    fn sub(job: &str) -> Submission {
        Submission {
            format_version: jobs::JOBS_FORMAT_VERSION,
            job_id: job.into(),
            cluster: None,
            submitted_at: String::new(),
            source_file: PathBuf::new(),
            workdir: PathBuf::new(),
            sweep_file: PathBuf::new(),
            script: PathBuf::new(),
            runs: 4,
            indices: vec![1, 2, 3, 4],
        }
    }

    fn view(squeue: &str, sacct: &str) -> QueueView {
        let key = |r: TaskRecord| ((r.job_id.clone(), r.index), r);
        QueueView {
            queued: parse_squeue(squeue).unwrap().into_iter().map(key).collect(),
            accounted: parse_sacct(sacct).unwrap().into_iter().map(key).collect(),
            ..QueueView::default()
        }
    }

    #[test]
    fn the_run_directory_comes_first() {
        let v = view("7|1|RUNNING|n1\n", "");
        let s = sub("7");
        assert_eq!(
            classify(1, &DirState::Finished, Some(&s), &v),
            RunState::Done
        );
        assert_eq!(
            classify(1, &DirState::Invalid("bad".into()), Some(&s), &v),
            RunState::Failed {
                job: None,
                why: "bad".into()
            }
        );
        assert_eq!(
            classify(1, &DirState::Unfinished, None, &v),
            RunState::NotSubmitted
        );
    }

    #[test]
    fn the_queue_tells_running_pending_and_failed_apart() {
        let v = view(
            "7|1|RUNNING|n1\n7|2|PENDING|(Resources)\n7|3|CANCELLED|n1\n",
            "7_3|CANCELLED by 0|0:15|n1\n7_4|TIMEOUT|0:0|n2\n",
        );
        let s = sub("7");
        let st = |i| classify(i, &DirState::Unfinished, Some(&s), &v);
        assert_eq!(
            st(1),
            RunState::Running {
                job: "7".into(),
                node: "n1".into()
            }
        );
        assert_eq!(st(2).name(), "pending");
        assert_eq!(
            st(3),
            RunState::Failed {
                job: Some("7".into()),
                why: "CANCELLED (n1)".into()
            }
        );
        assert_eq!(
            st(4),
            RunState::Failed {
                job: Some("7".into()),
                why: "TIMEOUT (exit code 0:0 on n2)".into()
            }
        );
    }

    #[test]
    fn gone_from_the_queue_is_failed_unless_the_queue_is_unreachable() {
        let s = sub("7");
        let known = view("", "");
        assert_eq!(
            classify(2, &DirState::Unfinished, Some(&s), &known).name(),
            "failed"
        );
        let unreachable = QueueView {
            squeue_error: Some("squeue is not installed here".into()),
            ..QueueView::default()
        };
        assert_eq!(
            classify(2, &DirState::Unfinished, Some(&s), &unreachable),
            RunState::Unknown {
                job: "7".into(),
                why: "squeue is not installed here".into()
            }
        );
        assert_eq!(
            classify(2, &DirState::Finished, Some(&s), &unreachable),
            RunState::Done
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.log");
        std::fs::write(&p, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&p, 2), ["b", "c"]);
        assert_eq!(tail(&p, 10), ["a", "b", "c"]);
        assert!(tail(&tmp.path().join("none.log"), 2)[0].starts_with("(no log: "));
    }
}
