//! `slurm/jobs.jsonl`: the record of what was submitted for a sweep root.
//!
//! squeue forgets a job minutes after it ends and sacct is not on every cluster, so the sweep root
//! itself keeps which job ran which configurations, and from which copy of the sweep file. One line
//! per submission, appended, so a later submission never rewrites an earlier record.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The format of a line this build writes and the only one it reads.
pub const JOBS_FORMAT_VERSION: u32 = 1;

/// File name of the record in the sweep root's Slurm folder.
pub const JOBS_FILE: &str = "jobs.jsonl";

/// One `sbatch` of a sweep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// See [`JOBS_FORMAT_VERSION`].
    pub format_version: u32,
    /// The array's job id, as `sbatch --parsable` printed it.
    pub job_id: String,
    /// The cluster, when sbatch named one (federations print `id;cluster`).
    pub cluster: Option<String>,
    /// When it was submitted, RFC 3339 UTC.
    pub submitted_at: String,
    /// The sweep file the user gave.
    pub source_file: PathBuf,
    /// The directory sbatch was called from and the tasks run in; relative paths in the sweep file
    /// are relative to it.
    pub workdir: PathBuf,
    /// The copy of it the array tasks read.
    pub sweep_file: PathBuf,
    /// The script submitted.
    pub script: PathBuf,
    /// Configurations in the sweep.
    pub runs: usize,
    /// The configurations this job runs.
    pub tasks: Vec<SubmittedTask>,
}

/// One configuration of a submission. The run directory's name, not the index, is what identifies a
/// configuration across submissions: after the sweep file gains an axis value, index 3 may name
/// another configuration, while a directory name always names the same one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmittedTask {
    /// Array index (the configuration's number in the submitted copy of the sweep file).
    pub index: usize,
    /// Name of its run directory under the sweep root.
    pub run: String,
}

/// The record's path under `root`.
pub fn jobs_path(root: &Path) -> PathBuf {
    super::slurm_dir(root).join(JOBS_FILE)
}

/// Append `s` to the record under `root`.
pub fn append(root: &Path, s: &Submission) -> Result<()> {
    let path = jobs_path(root);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let line = serde_json::to_string(s).context("serializing the submission")?;
    writeln!(f, "{line}").with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Every submission recorded under `root`, oldest first; none when nothing was submitted.
pub fn read(root: &Path) -> Result<Vec<Submission>> {
    let path = jobs_path(root);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), n + 1))?;
        let version = v.get("format_version").and_then(|v| v.as_u64());
        if version != Some(u64::from(JOBS_FORMAT_VERSION)) {
            bail!(
                "{}:{}: field `format_version`: expected {JOBS_FORMAT_VERSION}, got {}",
                path.display(),
                n + 1,
                version.map_or("none".into(), |v| v.to_string())
            );
        }
        out.push(
            serde_json::from_value(v).with_context(|| format!("{}:{}", path.display(), n + 1))?,
        );
    }
    Ok(out)
}

/// The latest submission that included the run directory named `run`, with the array index it had
/// there.
pub fn latest_for<'a>(subs: &'a [Submission], run: &str) -> Option<(&'a Submission, usize)> {
    subs.iter()
        .rev()
        .find_map(|s| s.tasks.iter().find(|t| t.run == run).map(|t| (s, t.index)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(job: &str, runs: &[&str]) -> Submission {
        Submission {
            format_version: JOBS_FORMAT_VERSION,
            job_id: job.into(),
            cluster: None,
            submitted_at: "2026-01-01T00:00:00Z".into(),
            source_file: "s.toml".into(),
            workdir: "/home/me".into(),
            sweep_file: "root/slurm/sweep-0.toml".into(),
            script: "root/slurm/sweep.sbatch".into(),
            runs: 4,
            tasks: runs
                .iter()
                .enumerate()
                .map(|(i, r)| SubmittedTask {
                    index: i + 1,
                    run: r.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn submissions_append_and_the_latest_wins() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(super::super::slurm_dir(tmp.path())).unwrap();
        assert!(read(tmp.path()).unwrap().is_empty());
        append(tmp.path(), &sub("10", &["a", "b", "c", "d"])).unwrap();
        // An edited sweep file numbers `c` 1 now.
        append(tmp.path(), &sub("11", &["c"])).unwrap();
        let subs = read(tmp.path()).unwrap();
        assert_eq!(subs, [sub("10", &["a", "b", "c", "d"]), sub("11", &["c"])]);
        let job = |run| latest_for(&subs, run).map(|(s, i)| (s.job_id.as_str(), i));
        assert_eq!(job("c"), Some(("11", 1)));
        assert_eq!(job("b"), Some(("10", 2)));
        assert_eq!(job("e"), None);
    }

    #[test]
    fn an_unknown_version_is_refused_with_its_line() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(super::super::slurm_dir(tmp.path())).unwrap();
        append(tmp.path(), &sub("10", &["a"])).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(jobs_path(tmp.path()))
            .unwrap();
        writeln!(f, "{{\"format_version\": 9, \"job_id\": \"12\"}}").unwrap();
        let e = format!("{:#}", read(tmp.path()).unwrap_err());
        assert!(
            e.contains("jobs.jsonl:2: field `format_version`: expected 1, got 9"),
            "{e}"
        );
    }
}
