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

use super::jobs;
use super::queue::{JobState, QueueView};
use crate::args::SweepStatusArgs;
use crate::commands::sweep::plan::{finished_state, plan};
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

/// An array task: the job and the index in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskId {
    /// Array job id.
    pub job: String,
    /// Array index.
    pub index: usize,
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.job, self.index)
    }
}

/// A configuration's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// The run directory is finished.
    Done,
    /// Slurm runs it.
    Running {
        /// The task.
        task: TaskId,
        /// Node list.
        node: String,
    },
    /// Slurm has it queued.
    Pending {
        /// The task.
        task: TaskId,
        /// squeue's reason.
        reason: String,
    },
    /// It cannot run, or its task ended without finishing the run.
    Failed {
        /// The task, when one ran.
        task: Option<TaskId>,
        /// What is known of why.
        why: String,
    },
    /// No submission included it.
    NotSubmitted,
    /// Unfinished, and the queue could not be asked whether a task still runs it.
    Unknown {
        /// The task.
        task: TaskId,
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

    /// The task whose log belongs to this state, if a task ran or runs.
    pub fn task(&self) -> Option<&TaskId> {
        match self {
            RunState::Running { task, .. }
            | RunState::Pending { task, .. }
            | RunState::Unknown { task, .. } => Some(task),
            RunState::Failed { task, .. } => task.as_ref(),
            RunState::Done | RunState::NotSubmitted => None,
        }
    }

    /// What to print after the state word.
    pub fn detail(&self) -> String {
        match self {
            RunState::Running { task, node } => format!("job {task} on {node}"),
            RunState::Pending { task, reason } => format!("job {task} {reason}"),
            RunState::Failed {
                task: Some(task),
                why,
            } => format!("job {task}: {why}"),
            RunState::Failed { task: None, why } => why.clone(),
            RunState::Unknown { task, why } => format!("job {task}: queue not reachable ({why})"),
            RunState::Done | RunState::NotSubmitted => String::new(),
        }
    }
}

/// The state of a configuration from its directory, the task of the latest submission that
/// included it, and the queue. Pure, so each combination is tested without a cluster.
pub fn classify(dir: &DirState, latest: Option<TaskId>, view: &QueueView) -> RunState {
    match dir {
        DirState::Finished => return RunState::Done,
        DirState::Invalid(why) => {
            return RunState::Failed {
                task: None,
                why: why.clone(),
            }
        }
        DirState::Unfinished => {}
    }
    let Some(task) = latest else {
        return RunState::NotSubmitted;
    };
    match view.task(&task.job, task.index) {
        Some(t) => match &t.state {
            JobState::Running => RunState::Running {
                task,
                node: t.detail.clone(),
            },
            JobState::Pending => RunState::Pending {
                task,
                reason: t.detail.clone(),
            },
            JobState::Completed => RunState::Failed {
                task: Some(task),
                why: "the task completed but left the run directory unfinished".into(),
            },
            JobState::Ended(state) => RunState::Failed {
                task: Some(task),
                why: format!("{state} ({})", t.detail),
            },
        },
        None if view.queue_known() => RunState::Failed {
            task: Some(task),
            why: "the task left the queue without finishing the run".into(),
        },
        None => RunState::Unknown {
            task,
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
            "{}: no Slurm submission recorded, and no {} of a local sweep: `sweep status` follows \
             sweeps run with `reprolm sweep FILE` (locally or with --executor slurm) into this root",
            jobs::jobs_path(&root).display(),
            crate::commands::sweep::record::LOCAL_RECORD
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
        let latest = run_dir
            .as_ref()
            .and_then(|d| d.file_name())
            .and_then(|n| jobs::latest_for(&subs, &n.to_string_lossy()))
            .map(|(sub, index)| TaskId {
                job: sub.job_id.clone(),
                index,
            });
        let state = classify(&dir, latest, &view);
        *counts.entry(state.name()).or_default() += 1;
        let log = state
            .task()
            .map(|t| super::log_path(&root, &t.job, t.index));
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
        let detail = state.detail();
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
                   "task": state.task().map(|t| t.to_string()), "detail": state.detail(), "log": log,
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

    fn task(index: usize) -> Option<TaskId> {
        Some(TaskId {
            job: "7".into(),
            index,
        })
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
        assert_eq!(classify(&DirState::Finished, task(1), &v), RunState::Done);
        assert_eq!(
            classify(&DirState::Invalid("bad".into()), task(1), &v),
            RunState::Failed {
                task: None,
                why: "bad".into()
            }
        );
        assert_eq!(
            classify(&DirState::Unfinished, None, &v),
            RunState::NotSubmitted
        );
    }

    #[test]
    fn the_queue_tells_running_pending_and_failed_apart() {
        let v = view(
            "7|1|RUNNING|n1\n7|2|PENDING|(Resources)\n7|3|CANCELLED|n1\n",
            "7_3|CANCELLED by 0|0:15|n1\n7_4|TIMEOUT|0:0|n2\n",
        );
        let st = |i| classify(&DirState::Unfinished, task(i), &v);
        assert_eq!(
            st(1),
            RunState::Running {
                task: task(1).unwrap(),
                node: "n1".into()
            }
        );
        assert_eq!(st(1).detail(), "job 7_1 on n1");
        assert_eq!(st(2).name(), "pending");
        assert_eq!(st(3).detail(), "job 7_3: CANCELLED (n1)");
        assert_eq!(
            st(4),
            RunState::Failed {
                task: task(4),
                why: "TIMEOUT (exit code 0:0 on n2)".into()
            }
        );
    }

    #[test]
    fn gone_from_the_queue_is_failed_unless_the_queue_is_unreachable() {
        let known = view("", "");
        assert_eq!(
            classify(&DirState::Unfinished, task(2), &known).name(),
            "failed"
        );
        let unreachable = QueueView {
            squeue_error: Some("squeue is not installed here".into()),
            ..QueueView::default()
        };
        assert_eq!(
            classify(&DirState::Unfinished, task(2), &unreachable),
            RunState::Unknown {
                task: task(2).unwrap(),
                why: "squeue is not installed here".into()
            }
        );
        assert_eq!(
            classify(&DirState::Finished, task(2), &unreachable),
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
