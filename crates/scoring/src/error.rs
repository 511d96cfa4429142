//! The scoring crate's error type. Grading itself never fails (a bad answer is a wrong answer); errors come
//! from reading files, such as labelled answer pairs.

use std::path::PathBuf;

/// Errors from reading scoring inputs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line of a labelled-pairs file is malformed.
    #[error("{}:{line}: field `{field}`: {reason}", path.display())]
    BadRecord {
        /// The file at fault.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
