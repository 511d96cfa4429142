//! The engine's error type: every variant names the file, field or request at fault.

use std::path::PathBuf;

/// Errors from loading a model or generating with it.
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
    /// A JSON file did not parse.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        /// The file at fault.
        path: PathBuf,
        /// The parser's error, with line and column.
        source: serde_json::Error,
    },
    /// A field of a configuration file is missing or has a value we cannot use.
    #[error("{}: field `{field}`: {reason}", path.display())]
    BadField {
        /// The file at fault.
        path: PathBuf,
        /// The field name as written in the file.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `architectures` in config.json names a model family we do not implement.
    #[error("{}: unsupported architecture `{got}`; supported: {}", path.display(), supported.join(", "))]
    UnsupportedArchitecture {
        /// The config.json at fault.
        path: PathBuf,
        /// The architecture it names.
        got: String,
        /// The architectures this engine implements.
        supported: Vec<&'static str>,
    },
    /// A model was named by something that is neither an existing directory nor a Hub repository id.
    #[error("model `{spec}`: {reason}")]
    BadModelSource {
        /// What the user wrote.
        spec: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A file the model needs is absent (locally, or from the Hub cache when offline).
    #[error("model file `{file}` not found in {location}{hint}")]
    MissingFile {
        /// The file name, e.g. `tokenizer.json`.
        file: String,
        /// Where we looked (a directory, or a Hub repo and revision).
        location: String,
        /// How to fix it, starting with "; " when present.
        hint: String,
    },
    /// The Hub client failed (network, authentication, unknown repo).
    #[error("hub {repo}: {reason}")]
    Hub {
        /// The repository id.
        repo: String,
        /// The client's message.
        reason: String,
    },
    /// tokenizer.json could not be loaded or a text could not be (de)tokenized.
    #[error("tokenizer {}: {reason}", path.display())]
    Tokenizer {
        /// The tokenizer file (or the model directory) at fault.
        path: PathBuf,
        /// The tokenizer's message.
        reason: String,
    },
    /// The chat template failed to parse or to render.
    #[error("chat template: {0}")]
    ChatTemplate(String),
    /// A weight is missing from the safetensors files or has the wrong shape.
    #[error("weights {}: {reason}", location.display())]
    Weights {
        /// The safetensors file or model directory.
        location: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A model's shape does not split over the requested number of tensor-parallel ranks.
    #[error("tensor parallelism over {tp} ranks: `{field}` = {value}: {reason}")]
    TensorParallelSplit {
        /// The config.json field (or `tp` itself) at fault.
        field: &'static str,
        /// Its value.
        value: usize,
        /// The requested number of ranks.
        tp: usize,
        /// What is wrong.
        reason: String,
    },
    /// Tensor parallelism was asked for where it is not available.
    #[error("tensor parallelism on {device}: {reason}")]
    TensorParallelDevice {
        /// The device, as `cpu` or `cuda:N`.
        device: String,
        /// Why not.
        reason: String,
    },
    /// A collective operation between tensor-parallel ranks failed.
    #[error("{op} on rank {rank}: {reason}")]
    Collective {
        /// The collective (`all_reduce_sum`, `all_gather`) or `forward`.
        op: &'static str,
        /// The rank that reports it.
        rank: usize,
        /// What happened.
        reason: String,
    },
    /// A generation request or sampling parameter is invalid.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The KV cache's block pool has too few free blocks for the tokens asked for.
    #[error(
        "the KV cache is full: {needed} more blocks of {block_size} tokens are needed, {free} of \
         its {blocks} blocks ({bytes}) are free; give it more memory (--kv-cache-memory) or run \
         fewer sequences at once"
    )]
    KvCacheFull {
        /// Blocks the request needs beyond what its sequences hold.
        needed: usize,
        /// Blocks free in the pool.
        free: usize,
        /// Blocks in the pool.
        blocks: usize,
        /// Tokens per block.
        block_size: usize,
        /// The pool's size, formatted.
        bytes: String,
    },
    /// A precision policy could not be built or applied.
    #[error(transparent)]
    Precision(#[from] reprolm_precision::Error),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl Error {
    /// Whether this is a rank released because another rank of its group failed (the other
    /// rank's error says what went wrong).
    pub fn is_group_abort(&self) -> bool {
        matches!(self, Error::Collective { reason, .. } if reason == GROUP_ABORTED)
    }
}

/// The reason of a [`Error::Collective`] raised in a rank released by another's failure.
pub(crate) const GROUP_ABORTED: &str = "another rank of the group failed";

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
