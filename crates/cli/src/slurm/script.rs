//! The sbatch script of a sweep: one job array, one task per configuration.
//!
//! Every task runs the same command with its own index, `reprolm sweep FILE --root ROOT --only
//! $SLURM_ARRAY_TASK_ID`, so the script is short enough to read before submitting (`--dry-run`) and
//! holds no logic of its own: what a task does is what the local executor does for that index, and a
//! requeued or resubmitted task resumes its run directory. Paths are absolute, so the tasks do not
//! depend on the directory sbatch was called from, and `--chdir` is that directory, so relative
//! paths inside the sweep file (`model`, `data`) mean what they meant at submission.

use std::path::PathBuf;

use anyhow::{bail, Result};

/// The `#SBATCH` settings the user chose (`--partition`, `--gpus-per-run`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SbatchOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// GPUs per task, as `--gres=gpu:N` (works with every select plugin, unlike `--gpus`); 0 = none.
    pub gpus_per_run: u32,
    /// `--time`.
    pub time: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// Further options, one `#SBATCH` line each.
    pub extra: Vec<String>,
}

impl SbatchOptions {
    /// Check that every value fits on one `#SBATCH` line.
    pub fn validate(&self) -> Result<()> {
        let named = [
            ("--partition", &self.partition),
            ("--time", &self.time),
            ("--account", &self.account),
        ];
        for (flag, value) in named {
            if let Some(v) = value {
                if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    bail!("{flag} `{v}`: a Slurm name or time has no spaces");
                }
            }
        }
        for o in &self.extra {
            if !o.starts_with('-') {
                bail!("--extra-sbatch `{o}`: sbatch options start with `-`, e.g. --qos=high");
            }
        }
        Ok(())
    }
}

/// Everything the script says.
#[derive(Debug, Clone)]
pub struct ScriptSpec {
    /// `--job-name`.
    pub job_name: String,
    /// `--array`, e.g. `1-4,7`.
    pub array: String,
    /// `--output` pattern; `%A` is the array's job id, `%a` the index.
    pub log_pattern: PathBuf,
    /// `--chdir`.
    pub workdir: PathBuf,
    /// User settings.
    pub options: SbatchOptions,
    /// The command each task runs; `--only $SLURM_ARRAY_TASK_ID` is appended.
    pub command: Vec<String>,
}

/// The script's text.
pub fn render(spec: &ScriptSpec) -> String {
    let mut lines = vec![
        "#!/bin/bash".to_string(),
        "# Written by `reprolm sweep --executor slurm`: one array task per sweep configuration; task".into(),
        "# INDEX runs configuration INDEX and resumes its run directory if an earlier task left it unfinished.".into(),
        format!("#SBATCH --job-name={}", one_token(&spec.job_name)),
        format!("#SBATCH --array={}", spec.array),
        "#SBATCH --ntasks=1".into(),
        format!("#SBATCH --chdir={}", spec.workdir.display()),
        format!("#SBATCH --output={}", spec.log_pattern.display()),
        // A requeued task appends to its log instead of wiping what the first attempt printed.
        "#SBATCH --open-mode=append".into(),
    ];
    let o = &spec.options;
    if let Some(p) = &o.partition {
        lines.push(format!("#SBATCH --partition={p}"));
    }
    if o.gpus_per_run > 0 {
        lines.push(format!("#SBATCH --gres=gpu:{}", o.gpus_per_run));
    }
    if let Some(t) = &o.time {
        lines.push(format!("#SBATCH --time={t}"));
    }
    if let Some(a) = &o.account {
        lines.push(format!("#SBATCH --account={a}"));
    }
    for e in &o.extra {
        lines.push(format!("#SBATCH {e}"));
    }
    lines.push(String::new());
    lines.push("set -euo pipefail".into());
    lines.push(
        "echo \"reprolm sweep task ${SLURM_ARRAY_TASK_ID} of job ${SLURM_ARRAY_JOB_ID} on ${SLURMD_NODENAME:-$(hostname)} at $(date -u +%FT%TZ)\""
            .into(),
    );
    let cmd: Vec<String> = spec.command.iter().map(|a| shell_quote(a)).collect();
    lines.push(format!(
        "exec {} --only \"$SLURM_ARRAY_TASK_ID\"",
        cmd.join(" ")
    ));
    lines.push(String::new());
    lines.join("\n")
}

/// `s` as one word for bash: bare when it is plainly safe, else in single quotes.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A job name without characters that would end the `#SBATCH` line's value.
fn one_token(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(options: SbatchOptions) -> ScriptSpec {
        ScriptSpec {
            job_name: "reprolm-arith precision".into(),
            array: "1-3,5".into(),
            log_pattern: "/r/slurm/logs/%A_%a.log".into(),
            workdir: "/home/me/study".into(),
            options,
            command: vec![
                "/opt/reprolm/bin/reprolm".into(),
                "sweep".into(),
                "/r/slurm/sweep-ab.toml".into(),
                "--root".into(),
                "/r/it's here".into(),
            ],
        }
    }

    #[test]
    fn the_script_runs_one_configuration_per_array_task() {
        let text = render(&spec(SbatchOptions {
            partition: Some("gpu".into()),
            gpus_per_run: 1,
            time: Some("04:00:00".into()),
            account: Some("lab".into()),
            extra: vec!["--qos=high".into(), "--mem=64G".into()],
        }));
        assert!(text.starts_with("#!/bin/bash\n"));
        for line in [
            "#SBATCH --job-name=reprolm-arith_precision",
            "#SBATCH --array=1-3,5",
            "#SBATCH --chdir=/home/me/study",
            "#SBATCH --output=/r/slurm/logs/%A_%a.log",
            "#SBATCH --partition=gpu",
            "#SBATCH --gres=gpu:1",
            "#SBATCH --time=04:00:00",
            "#SBATCH --account=lab",
            "#SBATCH --qos=high",
            "#SBATCH --mem=64G",
            "exec /opt/reprolm/bin/reprolm sweep /r/slurm/sweep-ab.toml --root '/r/it'\\''s here' --only \"$SLURM_ARRAY_TASK_ID\"",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
        }
        // sbatch stops reading #SBATCH lines at the first command.
        let first_cmd = text.lines().position(|l| l == "set -euo pipefail").unwrap();
        assert!(text
            .lines()
            .skip(first_cmd)
            .all(|l| !l.starts_with("#SBATCH")));
    }

    #[test]
    fn unset_options_leave_no_lines() {
        let text = render(&spec(SbatchOptions::default()));
        for absent in ["--partition", "--gres", "--time", "--account"] {
            assert!(!text.contains(absent), "{absent} in\n{text}");
        }
    }

    #[test]
    fn values_that_would_break_a_line_are_refused() {
        let bad = SbatchOptions {
            partition: Some("gpu\n#SBATCH --x".into()),
            ..SbatchOptions::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("--partition"));
        let bad = SbatchOptions {
            extra: vec!["qos=high".into()],
            ..SbatchOptions::default()
        };
        assert!(bad.validate().is_err());
        assert!(SbatchOptions::default().validate().is_ok());
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/a/b-c_d.toml"), "/a/b-c_d.toml");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }
}
