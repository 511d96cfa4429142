//! Errors of the precision crate.

/// Errors from building or parsing a precision policy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A preset name that does not exist.
    #[error("unknown precision policy `{got}`; presets: {}", known.join(", "))]
    UnknownPreset {
        /// The name asked for.
        got: String,
        /// The preset names that exist.
        known: Vec<&'static str>,
    },
    /// A dtype name we do not know, with the component (or key) it was given for.
    #[error("`{key}`: unknown dtype `{got}`; expected one of bf16, f16, f32, f64")]
    UnknownDtype {
        /// The component key or field the dtype was given for.
        key: String,
        /// The dtype string as written.
        got: String,
    },
    /// A policy name that is neither a preset nor a readable `.toml` file.
    #[error("`{got}` is neither a precision preset ({}) nor a policy file ending in .toml", known.join(", "))]
    NotAPolicy {
        /// The name or path given.
        got: String,
        /// The preset names that exist.
        known: Vec<&'static str>,
    },
    /// A policy file could not be read.
    #[error("reading policy file {}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// A policy file that is not valid TOML, or whose whole content is wrong (missing components).
    #[error("{origin}: {reason}")]
    PolicyFile {
        /// The file path, or `<policy string>` for text not read from a file.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// One key of a policy file is wrong: unknown, or its value is not what it must be.
    #[error("{origin}:{line}: `{key}`: {reason}")]
    PolicyKey {
        /// The file path, or `<policy string>`.
        origin: String,
        /// 1-based line of the key.
        line: usize,
        /// The key as written.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A deterministic kernel was handed operands whose shapes do not fit.
    #[error("{op}: {reason}")]
    KernelShape {
        /// The kernel.
        op: &'static str,
        /// What does not fit.
        reason: String,
    },
    /// A tree-ordered reduction was asked for a number of chunks that is not a power of two.
    #[error("a tree-ordered reduction needs a power-of-two number of chunks, got {chunks}")]
    ReductionChunks {
        /// The number asked for.
        chunks: usize,
    },
    /// A deterministic kernel was asked to run on a device it has no implementation for.
    #[error(
        "{op}: this fixed-order kernel runs on the CPU only (on CUDA the engine's GEMM layer \
         is the deterministic one); got a tensor on {device}"
    )]
    DeterministicDevice {
        /// The kernel.
        op: &'static str,
        /// The device the tensor lives on.
        device: String,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The precision crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
