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
    /// The configuration numbers (array indices) this job runs.
    pub indices: Vec<usize>,
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

/// The latest submission that ran configuration `index`, if any.
pub fn latest_for(subs: &[Submission], index: usize) -> Option<&Submission> {
    subs.iter().rev().find(|s| s.indices.contains(&index))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(job: &str, indices: &[usize]) -> Submission {
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
            indices: indices.to_vec(),
        }
    }

    #[test]
    fn submissions_append_and_the_latest_wins() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(super::super::slurm_dir(tmp.path())).unwrap();
        assert!(read(tmp.path()).unwrap().is_empty());
        append(tmp.path(), &sub("10", &[1, 2, 3, 4])).unwrap();
        append(tmp.path(), &sub("11", &[3])).unwrap();
        let subs = read(tmp.path()).unwrap();
        assert_eq!(subs, [sub("10", &[1, 2, 3, 4]), sub("11", &[3])]);
        assert_eq!(latest_for(&subs, 3).unwrap().job_id, "11");
        assert_eq!(latest_for(&subs, 2).unwrap().job_id, "10");
        assert!(latest_for(&subs, 5).is_none());
    }

    #[test]
    fn an_unknown_version_is_refused_with_its_line() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(super::super::slurm_dir(tmp.path())).unwrap();
        append(tmp.path(), &sub("10", &[1])).unwrap();
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
