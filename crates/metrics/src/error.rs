//! The crate's error type: every variant names the file (and where it helps, the line, record or field) at
//! fault, so a user can go and look.

use std::path::PathBuf;

/// Errors from reading or writing run directories and from building reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read, written or created.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON document or JSON line did not parse into what we expect.
    #[error("{}{}: {source}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Json {
        /// The file at fault.
        path: PathBuf,
        /// The 1-based line for JSON-lines files.
        line: Option<usize>,
        /// The parser's error, with its own position and field name.
        source: serde_json::Error,
    },
    /// A file was written by a format version this build does not know.
    #[error(
        "{}: format_version {found} is not supported (this build reads version {supported}); \
         {hint}",
        path.display()
    )]
    UnsupportedVersion {
        /// The file at fault.
        path: PathBuf,
        /// The version found in the file (`None` prints as "missing").
        found: VersionFound,
        /// The version this build reads and writes.
        supported: u32,
        /// What to do about it.
        hint: &'static str,
    },
    /// A record has a field whose value cannot be right.
    #[error("{}: record {record}: field `{field}`: {reason}", path.display())]
    BadRecord {
        /// The file at fault.
        path: PathBuf,
        /// Which record: a line number for JSON lines, a byte offset for the binary logprobs file.
        record: String,
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The binary logprobs file is damaged somewhere other than its last record, which no kill can cause.
    #[error("{}: corrupt at byte {offset}: {reason}", path.display())]
    Corrupt {
        /// The file at fault.
        path: PathBuf,
        /// Where the bad record starts.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// responses.jsonl and the logprobs file disagree in a way an interrupted append cannot explain.
    #[error("{}: responses and logprobs disagree: {reason}", path.display())]
    Inconsistent {
        /// The run directory at fault.
        path: PathBuf,
        /// Which keys disagree, and how.
        reason: String,
    },
    /// A run directory was asked to continue with a configuration other than the one it was started with.
    #[error("{}: existing run has a different configuration: {}", path.display(), render_diffs(diffs))]
    ConfigMismatch {
        /// The run directory at fault.
        path: PathBuf,
        /// Every differing field, with both values.
        diffs: Vec<crate::run_dir::FieldDiff>,
    },
    /// `RunDir::create` on a directory that already holds a run.
    #[error("{}: already holds a run (manifest.json exists); open it to resume", path.display())]
    AlreadyExists {
        /// The run directory.
        path: PathBuf,
    },
    /// A sample was appended twice.
    #[error("{}: problem `{problem_id}` sample {sample_index} is already recorded", path.display())]
    DuplicateSample {
        /// The run directory.
        path: PathBuf,
        /// The problem id.
        problem_id: String,
        /// The sample index.
        sample_index: u32,
    },
    /// `split_by` named a field that is not a runtime field of a run.
    #[error("cannot split a report by `{field}`: not a runtime field (known: {known})")]
    UnknownField {
        /// The name given.
        field: String,
        /// The names that exist.
        known: String,
    },
    /// Writing a plot failed inside the plotting library.
    #[error("{}: drawing plot: {reason}", path.display())]
    Plot {
        /// The SVG being written.
        path: PathBuf,
        /// The plotting library's message.
        reason: String,
    },
    /// Writing a CSV file failed.
    #[error("{}: {source}", path.display())]
    Csv {
        /// The file at fault.
        path: PathBuf,
        /// The CSV writer's error.
        source: csv::Error,
    },
    /// Writing a Parquet file failed inside the Parquet library.
    #[error("{}: writing parquet: {source}", path.display())]
    Parquet {
        /// The run directory being exported.
        path: PathBuf,
        /// The Parquet writer's error.
        source: parquet::errors::ParquetError,
    },
    /// A folder given to the reference-code importer does not hold that code's output as expected.
    #[error("{}: not reference-code output: {reason}", path.display())]
    NotReferenceOutput {
        /// The folder (or file) at fault.
        path: PathBuf,
        /// What was expected and what was found.
        reason: String,
    },
    /// Reference-code output whose model the path does not name (a folder copied out of
    /// `outputs/.../{exp_name}/{model}`): valid, but the model must be given.
    #[error(
        "{}: the model is not in the path (the reference code writes outputs/.../{{exp_name}}/{{model}}); \
         name it with --model, e.g. --model deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
        path.display()
    )]
    ReferenceModelUnknown {
        /// The folder imported.
        path: PathBuf,
    },
    /// Reference-code output holding several runs (answers files of other batch sizes or dtypes), of which
    /// the batch size and dtype asked for match none or more than one: valid, but one must be chosen.
    #[error(
        "{}: {found}; choose one with --batch-size and/or --dtype (the folder holds {runs})",
        path.display()
    )]
    ReferenceRunNotChosen {
        /// The folder imported.
        path: PathBuf,
        /// What matched: `2 runs match` or `no run matches batch size 32`.
        found: String,
        /// The answers files the folder holds.
        runs: String,
    },
    /// A `.pt` file could not be read as one saved 2-D int64/float32 tensor.
    #[error("{}: {reason}", path.display())]
    TorchFile {
        /// The `.pt` file at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Files of one reference run disagree (token ids vs logprobs shapes, answers vs tensor files).
    #[error("{}: {reason}", path.display())]
    ImportMismatch {
        /// The file at fault.
        path: PathBuf,
        /// How it disagrees, naming the other file.
        reason: String,
    },
    /// The grader given to the importer failed.
    #[error("{}: scoring imported responses: {reason}", path.display())]
    Scoring {
        /// The answers file whose responses were being scored.
        path: PathBuf,
        /// The grader's message.
        reason: String,
    },
    /// A report was asked for a directory that holds no run directory at any depth.
    #[error("{}: no run directories found (a run directory holds manifest.json)", path.display())]
    NoRuns {
        /// The root that was searched.
        path: PathBuf,
    },
}

/// The `format_version` found in a file, kept apart from a plain number so "missing" prints as such.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionFound {
    /// The file names this version.
    Version(u64),
    /// The file has no usable `format_version`.
    Missing,
}

impl std::fmt::Display for VersionFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VersionFound::Version(v) => write!(f, "{v}"),
            VersionFound::Missing => f.write_str("missing"),
        }
    }
}

fn render_diffs(diffs: &[crate::run_dir::FieldDiff]) -> String {
    diffs
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a path to an I/O error; used at every call site so no error leaves without its file.
pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
