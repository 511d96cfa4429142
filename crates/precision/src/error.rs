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
    #[error("`{key}`: unknown dtype `{got}`; expected one of bf16, f16, f32")]
    UnknownDtype {
        /// The component key or field the dtype was given for.
        key: String,
        /// The dtype string as written.
        got: String,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The precision crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
