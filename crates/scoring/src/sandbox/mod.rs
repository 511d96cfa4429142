//! Sandboxed execution of untrusted Python programs, and LiveCodeBench scoring on top of it.
//!
//! [`Sandbox`] runs one program in fresh PID, network, mount, IPC and UTS namespaces, as an
//! unprivileged per-run uid, under resource limits and a memory bound for all its processes
//! together (a memory cgroup per run, or resident-set accounting where none can be made: see
//! [`MemoryControl`]), with a wall-clock timeout that kills every process the program made. Its
//! output is captured outside it, with a bound. [`Workers`] says how many programs a machine can
//! run at once at that memory bound. [`IsolationReport`] says which of those layers this machine
//! allows; copy its `warnings` into the run manifest. The LiveCodeBench layer
//! ([`grade_response`], [`grade_many`]) reproduces the reference harness's test semantics
//! (stdin and call-based tests, output comparison, per-test timeout, problem budget,
//! first-failure stop) and turns each run into a [`Verdict`].
//!
//! Creating namespaces and dropping to another uid needs root (CAP_SYS_ADMIN, CAP_SETUID).
//! Without them [`Sandbox::new`] fails, unless [`IsolationPolicy::BestEffort`] is chosen, in
//! which case the report lists what is missing.
//!
//! ```no_run
//! use std::sync::Arc;
//! use reprolm_scoring::sandbox::{grade_many, GradeJob, GradeOptions, LcbProblem, Sandbox, SandboxConfig};
//!
//! let sandbox = Sandbox::new(SandboxConfig::default())?;
//! for warning in &sandbox.isolation().warnings {
//!     eprintln!("warning: {warning}");
//! }
//! let line = std::fs::read_to_string("test.jsonl").unwrap();
//! let problem = Arc::new(LcbProblem::from_json_line(line.lines().next().unwrap())?);
//! let jobs = vec![GradeJob { problem, response: "```python\nprint(input())\n```".into() }];
//! let reports = grade_many(&sandbox, &jobs, 8, &GradeOptions::default())?;
//! println!("pass@1 = {}", reports.iter().filter(|r| r.passed).count() as f64 / reports.len() as f64);
//! # Ok::<(), reprolm_scoring::sandbox::SandboxError>(())
//! ```

mod compare;
mod config;
mod error;
mod lcb;
mod memory;
mod private_tests;
mod spawn;

pub use compare::{compare_output, Mismatch};
pub use config::{IsolationPolicy, Limits, MemoryControl, SandboxConfig};
pub use error::{Result, SandboxError};
pub use lcb::{
    extract_code, grade_code, grade_many, grade_response, GradeJob, GradeOptions, Harness,
    LcbProblem, ProblemReport, StopAt, TestCase, TestKind, TestReport, Verdict,
};
pub use memory::{available_memory, Workers};
pub use spawn::{
    Exit, IsolationReport, RunOutcome, RunRequest, Sandbox, CLOCK_FD, STDOUT_IN_MEMORY,
};
