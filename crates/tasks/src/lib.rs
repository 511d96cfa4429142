//! reprolm-tasks: the benchmarks reprolm evaluates, and the registry that lets other crates add more.
//!
//! A [`Task`] knows its data (local jsonl/json/csv/parquet files, a directory of them, or a Hugging
//! Face Hub dataset read through the local cache), turns each record into a [`Problem`] with a
//! stable id, renders the exact prompt the paper's reference implementation sends, and grades a
//! response through `reprolm-scoring`. Tasks are registered with [`inventory::submit!`] as a
//! [`TaskEntry`]; any crate linked into the binary can add one (see `examples/custom-task`).
//!
//! Built-ins: `math500`, `aime24`, `aime25`, `gpqa_diamond`, `livecodebench` (and `_easy`,
//! `_medium`, `_hard`), and the offline synthetic `arith`.
//!
//! ```
//! use reprolm_tasks::{load_task, TaskOptions};
//! let (task, data) = load_task("arith", &TaskOptions::default().with_param("n", "3"))?;
//! let problem = &data.problems[0];
//! let messages = task.messages(problem);
//! assert_eq!(messages[0].role, "user");
//! assert!(messages[0].content.starts_with("What is "));
//! let score = task.score(problem, &format!("\\boxed{{{}}}", problem.answer.as_deref().unwrap()))?;
//! assert!(score.correct);
//! # Ok::<(), reprolm_tasks::Error>(())
//! ```
#![deny(missing_docs)]

pub mod arith;
pub mod builtin;
pub mod data;
mod error;
mod grading;
pub mod hub;
mod options;
mod registry;
mod task;

pub use data::DataFile;
pub use data::{DataSource, HubDataset};
pub use error::{Error, Result};
pub use options::{Params, TaskOption, TaskOptions, DEFAULT_SEED};
pub use registry::{
    entries, find, load_task, make_task, summaries, task_names, TaskEntry, TaskSummary,
};
pub use task::{ChatMessage, Dataset, Problem, Score, Task};

// Plugin crates name `inventory` through this re-export so their `inventory::submit!` uses the same
// version of it as the registry.
pub use inventory;
