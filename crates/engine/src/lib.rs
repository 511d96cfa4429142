//! reprolm-engine: LLM inference on candle for reproducibility studies.
#![deny(missing_docs)]

mod error;

pub use error::{Error, Result};
