//! Run directories and the reproducibility metrics computed from them.
//!
//! A run writes its results through [`RunDir`] (manifest, responses, top-k logprobs; resumable after a
//! kill). [`report()`] later reads every run directory under a root, groups runs that differ only in
//! runtime configuration, and computes the metrics of "Give Me FP32 or Give Me Death?" (Yuan et al.,
//! 2025): Std@Acc, Avg_Std@Output_Length, Div_Index and Avg_Std@top1_prob, plus Pass@1 spread and
//! unbiased pass@k for sampled runs. The crate does not link the inference engine: it only reads files.
//! [`import_reference`](import_reference::import_reference) brings runs made with the paper's reference
//! code (vLLM, `torch.save` logprobs) into run directories, so they get the same metrics.
//!
//! ```
//! use reprolm_metrics::run_dir::{Durability, FinishReason, LogprobsRecord, Manifest, ResponseRecord, RunDir};
//! use reprolm_metrics::{generate, ReportOptions};
//!
//! let root = tempfile::tempdir()?;
//! for batch_size in [1, 8] {
//!     let mut manifest = Manifest::example();
//!     manifest.batch_size = batch_size;
//!     let mut run = RunDir::create(&root.path().join(format!("bs{batch_size}")), manifest, Durability::Flush)?;
//!     let tokens = if batch_size == 1 { vec![3, 4] } else { vec![3, 5] };
//!     let mut lp = LogprobsRecord::new("p1", 0, 5);
//!     for &t in &tokens {
//!         lp.push_position(&[t], &[-0.1]);
//!     }
//!     run.append(&ResponseRecord::new("p1", 0, 9, "...", tokens, FinishReason::Stop), &lp)?;
//! }
//! let (report, files) = generate(root.path(), &ReportOptions::default())?;
//! let div = report.groups[0].metrics().unwrap().divergence.value().unwrap();
//! assert_eq!(div.mean_index.value(), Some(&1.0)); // the streams part at token 1
//! assert!(files.markdown.exists());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod error;
pub mod export;
pub mod import_reference;
pub mod inspect;
pub mod metrics;
pub mod passk;
pub mod report;
pub mod repro;
pub mod results;
pub mod run_dir;
pub mod stats;

pub use error::{Error, Result};
pub use report::{generate, report, write_report, Report, ReportOptions};
pub use run_dir::{LoadedRun, Manifest, RunDir};
pub use stats::StdKind;
