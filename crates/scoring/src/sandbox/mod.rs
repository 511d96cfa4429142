//! Sandboxed execution of untrusted Python programs, and LiveCodeBench scoring on top of it.
//!
//! [`Sandbox`] runs one program in fresh PID, network, mount, IPC and UTS namespaces, as an
//! unprivileged per-run uid, under resource limits, with a wall-clock timeout that kills every
//! process the program made. [`IsolationReport`] says which of those layers this machine
//! allows. The LiveCodeBench layer ([`grade_problem`], [`grade_many`]) reproduces the reference
//! harness's test semantics (stdin and call-based tests, output comparison, first-failure stop)
//! and turns each run into a [`Verdict`].

mod compare;
mod config;
mod error;
mod lcb;
mod spawn;

pub use config::{IsolationPolicy, Limits, SandboxConfig};
pub use error::{Result, SandboxError};
pub use spawn::{Exit, IsolationReport, RunOutcome, RunRequest, Sandbox};
pub use compare::{compare_output, Mismatch};
pub use lcb::{
    extract_code, grade_code, grade_many, grade_response, GradeJob, GradeOptions, Harness, LcbProblem, ProblemReport,
    StopAt, TestCase, TestKind, TestReport, Verdict,
};
