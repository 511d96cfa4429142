//! Where under Slurm a run executed, recorded in its manifest.
//!
//! The GPU model is already in every manifest (`device.name`, from the device itself), which is what
//! `report` groups by. What Slurm adds is the way back from a run directory to the job, its log and
//! the node, for when one run of a sweep looks odd: "it ran on gpu017" is the first question. The
//! record is a manifest key outside the shared schema, so manifests without it (local runs, runs
//! from before it existed) read as before.

use serde::{Deserialize, Serialize};

/// Manifest key of the record.
pub const MANIFEST_KEY: &str = "slurm";

/// The Slurm job a run's first session ran in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlurmPlacement {
    /// `SLURM_JOB_ID`: this task's own job id.
    pub job_id: String,
    /// `SLURM_ARRAY_JOB_ID`: the array's job id (the one `sbatch` printed), for array tasks.
    pub array_job_id: Option<String>,
    /// `SLURM_ARRAY_TASK_ID`: the array index, which is the sweep's configuration number.
    pub array_task_id: Option<String>,
    /// `SLURMD_NODENAME`: the node.
    pub node: Option<String>,
    /// `SLURM_CLUSTER_NAME`.
    pub cluster: Option<String>,
}

impl SlurmPlacement {
    /// The placement of this process, if it runs inside a Slurm job.
    pub fn from_env() -> Option<SlurmPlacement> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// The placement the variables `var` looks up describe; `None` outside a job.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Option<SlurmPlacement> {
        let get = |k: &str| var(k).filter(|v| !v.is_empty());
        Some(SlurmPlacement {
            job_id: get("SLURM_JOB_ID")?,
            array_job_id: get("SLURM_ARRAY_JOB_ID"),
            array_task_id: get("SLURM_ARRAY_TASK_ID"),
            node: get("SLURMD_NODENAME"),
            cluster: get("SLURM_CLUSTER_NAME"),
        })
    }

    /// The manifest value.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("plain strings serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_from_the_job_environment_only() {
        let env = [
            ("SLURM_JOB_ID", "815"),
            ("SLURM_ARRAY_JOB_ID", "812"),
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURMD_NODENAME", "gpu017"),
        ];
        let lookup = |k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let p = SlurmPlacement::from_vars(lookup).unwrap();
        assert_eq!(p.array_task_id.as_deref(), Some("3"));
        assert_eq!(p.node.as_deref(), Some("gpu017"));
        assert_eq!(p.cluster, None);
        assert_eq!(p.to_json()["job_id"], "815");
        let back: SlurmPlacement = serde_json::from_value(p.to_json()).unwrap();
        assert_eq!(back, p);
        assert_eq!(SlurmPlacement::from_vars(|_| None), None);
        assert_eq!(SlurmPlacement::from_vars(|_| Some(String::new())), None);
    }
}
