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
