//! The one error type of this crate.
//!
//! Every variant that comes from data names where: the file (and line or row), the task, the field.
//! A user who sees "missing field" must be able to open the file at the right place without a debugger.

use std::path::PathBuf;

/// Errors from finding, loading and scoring tasks.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// One record of a data file could not be parsed (bad JSON on a line, a bad CSV row).
    #[error("{path}:{line}: {reason}")]
    Malformed {
        /// The data file (for a zip member: `archive.zip!member`).
        path: PathBuf,
        /// 1-based line (jsonl, csv) or record number (json array, parquet row).
        line: usize,
        /// What was wrong.
        reason: String,
    },
    /// A data file as a whole could not be read in its format (not a parquet file, a bad zip, a wrong
    /// password).
    #[error("{path}: {reason}")]
    BadFile {
        /// The data file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A record lacks a field the task needs.
    #[error("task `{task}`: {location}: missing field `{field}`")]
    MissingField {
        /// The task that needs the field.
        task: String,
        /// The field, or alternatives separated by ` or `.
        field: String,
        /// `file:line` of the record.
        location: String,
    },
    /// A field is present but unusable (wrong type, undecodable content).
    #[error("task `{task}`: {location}: field `{field}`: {reason}")]
    BadField {
        /// The task reading the field.
        task: String,
        /// The field.
        field: String,
        /// `file:line` of the record.
        location: String,
        /// What was wrong.
        reason: String,
    },
    /// Two problems of one dataset have the same id; runs key responses by id, so this is refused.
    #[error("task `{task}`: problem id `{id}` appears twice ({first} and {second})")]
    DuplicateId {
        /// The task.
        task: String,
        /// The repeated id.
        id: String,
        /// Where it first appeared.
        first: String,
        /// Where it appeared again.
        second: String,
    },
    /// No task of that name is registered.
    #[error("unknown task `{name}`; available tasks: {available}")]
    UnknownTask {
        /// The name asked for.
        name: String,
        /// Every registered name, comma-separated.
        available: String,
    },
    /// Two registry entries share a name.
    #[error("task name `{name}` is registered twice: by {first} and by {second}")]
    DuplicateTask {
        /// The shared name.
        name: String,
        /// Origin (module path) of one entry.
        first: String,
        /// Origin (module path) of the other.
        second: String,
    },
    /// An option the task does not know.
    #[error("task `{task}`: unknown option `{key}`; accepted options: {accepted}")]
    UnknownOption {
        /// The task.
        task: String,
        /// The key given.
        key: String,
        /// The keys the task accepts.
        accepted: String,
    },
    /// An option with a value the task cannot use.
    #[error("task `{task}`: option `{key}` = `{value}`: {reason}")]
    BadOption {
        /// The task.
        task: String,
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// A data source the task cannot use, or one that yields nothing.
    #[error("task `{task}`: data source {source_desc}: {reason}")]
    Source {
        /// The task.
        task: String,
        /// The source as the user gave it.
        source_desc: String,
        /// What was wrong.
        reason: String,
    },
    /// A file of a Hub dataset could not be found in the cache or downloaded.
    #[error("Hub dataset `{repo}` (revision {revision}), file `{file}`: {reason}")]
    Hub {
        /// The dataset repository, `owner/name`.
        repo: String,
        /// The revision asked for.
        revision: String,
        /// The file inside the repository.
        file: String,
        /// What was wrong.
        reason: String,
    },
    /// Scoring could not run at all (for example the code sandbox cannot start on this machine).
    /// A wrong or unparsable response is not an error: it scores 0.
    #[error("task `{task}`, problem `{problem}`: scoring failed: {reason}")]
    Scoring {
        /// The task.
        task: String,
        /// The problem id.
        problem: String,
        /// What failed.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
