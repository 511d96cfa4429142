//! Run directories and the reproducibility metrics computed from them.
//!
//! A run writes its results through [`run_dir::RunDir`]; [`report::report`] later reads every run
//! directory under a root, groups runs that differ only in runtime configuration, and computes the
//! metrics of "Give Me FP32 or Give Me Death?" (Yuan et al., 2025): Std@Acc, Avg_Std@Output_Length,
//! Div_Index and Avg_Std@top1_prob, plus pass@k for sampled runs.
#![deny(missing_docs)]

pub mod error;
pub mod metrics;
pub mod passk;
pub mod report;
pub mod repro;
pub mod run_dir;
pub mod stats;

pub use error::{Error, Result};
pub use report::{generate, report, write_report, Report, ReportOptions};
pub use run_dir::{LoadedRun, Manifest, RunDir};
pub use stats::StdKind;
