//! Handing a sweep to Slurm instead of scheduling it ourselves.
//!
//! A study is hundreds of runs, more than one machine holds, and the clusters researchers use run
//! Slurm. So `reprolm sweep FILE --executor slurm` writes one sbatch script whose job array has one
//! task per configuration, each task running `reprolm sweep FILE --only INDEX` with this very binary:
//! the run directories are the ones the local executor makes, and a task that is killed, timed out or
//! requeued resumes its run like any other. What was submitted is recorded in the sweep root, so
//! `reprolm sweep status ROOT` can put Slurm's view next to the run directories, and re-submitting
//! only asks for the configurations that are neither finished nor still queued.
//!
//! Files in the sweep root, beside the run directories:
//! ```text
//! slurm/sweep.sbatch          the script last submitted (sbatch keeps its own copy of each)
//! slurm/sweep-<hash>.toml     the sweep file as submitted, which the array tasks read
//! slurm/jobs.jsonl            one line per submission: job id, configurations, files
//! slurm/logs/<job>_<INDEX>.log  each array task's output
//! ```

pub mod indices;
pub mod jobs;
pub mod placement;
pub mod queue;
pub mod script;
pub mod status;
pub mod submit;
mod tool;

use std::path::{Path, PathBuf};

/// The folder of the sweep root that holds the Slurm files.
pub const SLURM_DIR: &str = "slurm";

/// The Slurm folder of a sweep root.
pub fn slurm_dir(root: &Path) -> PathBuf {
    root.join(SLURM_DIR)
}

/// The log of array task `index` of job `job_id` (the script's `--output` pattern, filled in).
pub fn log_path(root: &Path, job_id: &str, index: usize) -> PathBuf {
    slurm_dir(root)
        .join("logs")
        .join(format!("{job_id}_{index}.log"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::args::{Cli, Command, ExecutorArg, SweepAction};

    fn sweep(argv: &[&str]) -> crate::args::SweepArgs {
        let mut full = vec!["reprolm", "sweep"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full).unwrap().command {
            Command::Sweep(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn status_is_a_subcommand_and_anything_else_a_sweep_file() {
        let a = sweep(&["status", "runs/x"]);
        match a.action {
            Some(SweepAction::Status(s)) => assert_eq!(s.root, std::path::Path::new("runs/x")),
            other => panic!("{other:?}"),
        }
        let a = sweep(&[
            "s.toml",
            "--executor",
            "slurm",
            "--gpus-per-run",
            "2",
            "--extra-sbatch",
            "--qos=high --mem=8G",
        ]);
        assert!(a.action.is_none());
        assert_eq!(a.file.as_deref(), Some(std::path::Path::new("s.toml")));
        assert_eq!(a.executor, ExecutorArg::Slurm);
        assert_eq!(a.slurm.gpus_per_run, 2);
        assert_eq!(a.slurm.extra_sbatch, ["--qos=high --mem=8G"]);
        assert_eq!(sweep(&["s.toml"]).executor, ExecutorArg::Local);
        assert!(Cli::try_parse_from(["reprolm", "sweep"]).is_err());
        assert!(Cli::try_parse_from(["reprolm", "sweep", "status"]).is_err());
    }
}
