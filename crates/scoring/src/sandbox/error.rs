//! Errors of the sandbox itself (never of the program it runs: those are verdicts).

use std::path::PathBuf;

/// Why the sandbox could not run, or could not judge, a program.
///
/// A program that crashes, loops or prints the wrong answer is not an error: it gets a
/// [`Verdict`](crate::sandbox::Verdict). These variants mean the harness failed, so a caller
/// should record them as `SandboxError` verdicts and look at the machine, not at the model.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A system call made while preparing or supervising a run failed.
    #[error("sandbox: {call} failed: {source}")]
    Sys {
        /// The call and its argument, e.g. `pipe2` or `clone(CLONE_NEWPID|...)`.
        call: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file the sandbox reads or writes on the host could not be used.
    #[error("sandbox: {path}: {source}")]
    Io {
        /// The host path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The sandboxed child failed between fork and exec (mount, setuid, rlimit, exec, ...).
    #[error("sandbox: child setup step `{step}` failed: {source}")]
    ChildSetup {
        /// The step that failed, e.g. `bind /usr` or `execve /usr/bin/python3`.
        step: String,
        /// errno reported by the child.
        source: std::io::Error,
    },
    /// The configured Python interpreter could not be found or queried.
    #[error("sandbox: python interpreter `{interpreter}`: {reason}")]
    Interpreter {
        /// What was configured (a name looked up on PATH, or a path).
        interpreter: String,
        /// What went wrong.
        reason: String,
    },
    /// Isolation was required but the kernel or privileges do not allow it.
    #[error(
        "sandbox: isolation layer `{layer}` unavailable: {reason} (set `isolation = best-effort` to run without it)"
    )]
    IsolationUnavailable {
        /// The missing layer, e.g. `pid+net+mount namespaces`.
        layer: &'static str,
        /// Why.
        reason: String,
    },
    /// A configuration value is out of range.
    #[error("sandbox: config field `{field}`: {reason}")]
    Config {
        /// The field name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A LiveCodeBench problem record is malformed.
    #[error("livecodebench problem `{problem}`: field `{field}`: {reason}")]
    Problem {
        /// The problem id (`question_id`), or `?` when not yet known.
        problem: String,
        /// The field that is malformed.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl SandboxError {
    /// The last OS error, tagged with the call that produced it.
    pub(crate) fn last_os(call: impl Into<String>) -> Self {
        SandboxError::Sys {
            call: call.into(),
            source: std::io::Error::last_os_error(),
        }
    }
}

/// Shorthand for sandbox results.
pub type Result<T, E = SandboxError> = std::result::Result<T, E>;
