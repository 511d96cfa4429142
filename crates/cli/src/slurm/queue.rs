//! What Slurm says about a sweep's array tasks: squeue for tasks it still holds (queued, running, or
//! recently ended), sacct for its accounting record of ended ones.
//!
//! The parsing is kept apart from running the commands so that it is tested on captured output; the
//! formats are fixed by the flags we pass ([`SQUEUE_FORMAT`], [`SACCT_FORMAT`]), not by site defaults.
//! Either command may be missing (status read on a laptop from a copied root) or refuse (sacct without
//! an accounting database says "Slurm accounting storage is disabled"); callers then know less, not
//! nothing: the run directories still tell done from not done.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::indices::parse_index_set;
use super::tool::{self, ToolOutput};

/// `squeue --format`: array job id, array index (or a folded set), state, reason or node list.
pub const SQUEUE_FORMAT: &str = "%F|%K|%T|%R";

/// `sacct --format`, read with `--parsable2` (fields joined by `|`, no trailing one).
pub const SACCT_FORMAT: &str = "JobID,State,ExitCode,NodeList";

/// How long a client command may take before the queue counts as unreachable.
const TOOL_LIMIT: Duration = Duration::from_secs(30);

/// A job state as Slurm names it (squeue's `%T`, sacct's `State`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for resources or priority (also held, requeued or suspended tasks).
    Pending,
    /// Running, or being set up or torn down on its node.
    Running,
    /// Ended with exit status 0.
    Completed,
    /// Ended otherwise: FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, PREEMPTED, ...
    Ended(String),
}

impl JobState {
    /// Slurm's name; `CANCELLED by 1000` is cancelled.
    pub fn parse(s: &str) -> JobState {
        let name = s
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_end_matches('+');
        match name {
            "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "SUSPENDED" | "STOPPED"
            | "RESV_DEL_HOLD" | "SPECIAL_EXIT" | "RESIZING" => JobState::Pending,
            "RUNNING" | "CONFIGURING" | "COMPLETING" | "SIGNALING" | "STAGE_OUT" => {
                JobState::Running
            }
            "COMPLETED" => JobState::Completed,
            other => JobState::Ended(other.to_string()),
        }
    }

    /// Whether Slurm will still run (or is running) the task: then it must not be submitted again.
    pub fn is_active(&self) -> bool {
        matches!(self, JobState::Pending | JobState::Running)
    }
}

/// One array task as squeue or sacct reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    /// The array's job id (what `sbatch --parsable` printed).
    pub job_id: String,
    /// The array index (the sweep's configuration number).
    pub index: usize,
    /// Its state.
    pub state: JobState,
    /// squeue's reason or node list, or sacct's `exit code on nodes`.
    pub detail: String,
}

/// Parse `squeue --noheader --array --format=SQUEUE_FORMAT` output. Lines of jobs that are not arrays
/// (`%K` is `N/A`) are skipped; folded pending lines (`[4-6]`) give one record per index.
pub fn parse_squeue(text: &str) -> Result<Vec<TaskRecord>> {
    let mut out = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let fields: Vec<&str> = line.trim().splitn(4, '|').collect();
        let [job, index, state, detail] = fields[..] else {
            bail!(
                "squeue output line {}: `{line}`: expected 4 fields joined by `|`",
                n + 1
            );
        };
        if index == "N/A" || index == "(null)" {
            continue;
        }
        let indices =
            parse_index_set(index).with_context(|| format!("squeue output line {}", n + 1))?;
        for index in indices {
            out.push(TaskRecord {
                job_id: job.to_string(),
                index,
                state: JobState::parse(state),
                detail: detail.to_string(),
            });
        }
    }
    Ok(out)
}

/// Parse `sacct --noheader --parsable2 --format=SACCT_FORMAT` output. Step lines (`123_4.batch`)
/// and jobs that are not arrays are skipped.
pub fn parse_sacct(text: &str) -> Result<Vec<TaskRecord>> {
    let mut out = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let fields: Vec<&str> = line.trim().split('|').collect();
        let [id, state, exit, nodes] = fields[..] else {
            bail!(
                "sacct output line {}: `{line}`: expected 4 fields joined by `|`",
                n + 1
            );
        };
        if id.contains('.') {
            continue;
        }
        let Some((job, index)) = id.split_once('_') else {
            continue;
        };
        let indices =
            parse_index_set(index).with_context(|| format!("sacct output line {}", n + 1))?;
        for index in indices {
            out.push(TaskRecord {
                job_id: job.to_string(),
                index,
                state: JobState::parse(state),
                detail: format!("exit code {exit} on {nodes}"),
            });
        }
    }
    Ok(out)
}

/// What the queue knows about some jobs' tasks, keyed by (job id, index).
#[derive(Debug, Default)]
pub struct QueueView {
    /// squeue's records: the tasks Slurm still holds.
    pub queued: BTreeMap<(String, usize), TaskRecord>,
    /// sacct's records of ended tasks.
    pub accounted: BTreeMap<(String, usize), TaskRecord>,
    /// Why squeue could not be asked, if it could not (then nothing is known to be queued).
    pub squeue_error: Option<String>,
    /// Why sacct could not be asked, if it could not.
    pub sacct_error: Option<String>,
}

impl QueueView {
    /// Ask squeue and sacct about `job_ids` (the ids of this sweep's submissions).
    pub fn query(job_ids: &[String]) -> QueueView {
        let mut view = QueueView::default();
        if job_ids.is_empty() {
            return view;
        }
        let jobs = format!("--jobs={}", job_ids.join(","));
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // --states=all keeps tasks that ended a short while ago (MinJobAge), with how they ended.
        let squeue = tool::run(
            "squeue",
            &args(&[
                "--noheader",
                "--array",
                "--states=all",
                &format!("--format={SQUEUE_FORMAT}"),
                &jobs,
            ]),
            TOOL_LIMIT,
        );
        match squeue {
            ToolOutput::Ok(text) => match parse_squeue(&text) {
                Ok(records) => view.queued = keyed(records),
                Err(e) => view.squeue_error = Some(format!("{e:#}")),
            },
            // Every id is gone from the controller's memory: nothing is queued.
            ToolOutput::Failed(e) if e.contains("Invalid job id") => {}
            ToolOutput::Failed(e) => view.squeue_error = Some(e),
            ToolOutput::Missing => view.squeue_error = Some("squeue is not installed here".into()),
        }
        let sacct = tool::run(
            "sacct",
            &args(&[
                "--noheader",
                "--parsable2",
                &format!("--format={SACCT_FORMAT}"),
                &jobs,
            ]),
            TOOL_LIMIT,
        );
        match sacct {
            ToolOutput::Ok(text) => match parse_sacct(&text) {
                Ok(records) => view.accounted = keyed(records),
                Err(e) => view.sacct_error = Some(format!("{e:#}")),
            },
            ToolOutput::Failed(e) => view.sacct_error = Some(e),
            ToolOutput::Missing => view.sacct_error = Some("sacct is not installed here".into()),
        }
        view
    }

    /// Whether squeue answered, so that a task missing from it has really left the queue.
    pub fn queue_known(&self) -> bool {
        self.squeue_error.is_none()
    }

    /// The best record of a task: squeue's while Slurm holds it, else sacct's.
    pub fn task(&self, job_id: &str, index: usize) -> Option<&TaskRecord> {
        let key = (job_id.to_string(), index);
        self.queued.get(&key).or_else(|| self.accounted.get(&key))
    }
}

fn keyed(records: Vec<TaskRecord>) -> BTreeMap<(String, usize), TaskRecord> {
    records
        .into_iter()
        .map(|r| ((r.job_id.clone(), r.index), r))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from slurm 22.05: `squeue --noheader --array --states=all --format='%F|%K|%T|%R'`.
    const SQUEUE: &str = "\
1|3|COMPLETED|localhost
1|1|COMPLETED|localhost
4|1|RUNNING|localhost
4|2|PENDING|(Resources)
4|3|PENDING|(Priority)
7|N/A|RUNNING|gpu012
9|[5-6]|PENDING|(QOSMaxJobsPerUserLimit)
";

    #[test]
    fn squeue_lines_become_tasks() {
        let t = parse_squeue(SQUEUE).unwrap();
        assert_eq!(t.len(), 7, "{t:?}");
        assert_eq!(
            t[2],
            TaskRecord {
                job_id: "4".into(),
                index: 1,
                state: JobState::Running,
                detail: "localhost".into()
            }
        );
        assert_eq!(t[3].state, JobState::Pending);
        assert_eq!(t[0].state, JobState::Completed);
        let folded: Vec<_> = t
            .iter()
            .filter(|r| r.job_id == "9")
            .map(|r| r.index)
            .collect();
        assert_eq!(folded, [5, 6]);
        assert!(parse_squeue("4|1|RUNNING").is_err());
        assert!(parse_squeue("\n").unwrap().is_empty());
    }

    /// The shape of `sacct --noheader --parsable2 --format=JobID,State,ExitCode,NodeList --jobs=812`.
    const SACCT: &str = "\
812_1|COMPLETED|0:0|gpu003
812_1.batch|COMPLETED|0:0|gpu003
812_1.extern|COMPLETED|0:0|gpu003
812_2|FAILED|1:0|gpu004
812_2.batch|FAILED|1:0|gpu004
812_3|CANCELLED by 1000|0:15|gpu005
812_4|TIMEOUT|0:0|gpu006
812_5|OUT_OF_MEMORY|0:125|gpu007
812_[6-7]|PENDING|0:0|None assigned
813|COMPLETED|0:0|cpu001
";

    #[test]
    fn sacct_lines_become_tasks() {
        let t = parse_sacct(SACCT).unwrap();
        let states: Vec<(usize, JobState)> = t.iter().map(|r| (r.index, r.state.clone())).collect();
        assert_eq!(
            states,
            [
                (1, JobState::Completed),
                (2, JobState::Ended("FAILED".into())),
                (3, JobState::Ended("CANCELLED".into())),
                (4, JobState::Ended("TIMEOUT".into())),
                (5, JobState::Ended("OUT_OF_MEMORY".into())),
                (6, JobState::Pending),
                (7, JobState::Pending),
            ]
        );
        assert_eq!(t[1].detail, "exit code 1:0 on gpu004");
        assert!(parse_sacct("812_1|COMPLETED").is_err());
    }

    #[test]
    fn active_states_are_the_ones_not_to_resubmit() {
        for s in [
            "PENDING",
            "RUNNING",
            "COMPLETING",
            "REQUEUED",
            "CONFIGURING",
        ] {
            assert!(JobState::parse(s).is_active(), "{s}");
        }
        for s in [
            "COMPLETED",
            "FAILED",
            "CANCELLED by 0",
            "TIMEOUT",
            "NODE_FAIL",
            "PREEMPTED",
        ] {
            assert!(!JobState::parse(s).is_active(), "{s}");
        }
    }

    #[test]
    fn squeue_beats_sacct_for_a_task_it_holds() {
        let view = QueueView {
            queued: keyed(parse_squeue("812|3|RUNNING|gpu005\n").unwrap()),
            accounted: keyed(parse_sacct(SACCT).unwrap()),
            ..QueueView::default()
        };
        assert_eq!(view.task("812", 3).unwrap().state, JobState::Running);
        assert_eq!(
            view.task("812", 2).unwrap().state,
            JobState::Ended("FAILED".into())
        );
        assert!(view.task("812", 9).is_none());
    }
}
