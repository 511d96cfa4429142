//! reprolm-engine: LLM inference on candle for reproducibility studies.
#![deny(missing_docs)]

mod chat_template;
mod digest;
mod error;
mod generation_config;
mod loader;
mod pyjson;
mod source;
mod tokenizer;

pub use chat_template::{ChatMessage, ChatOptions, ChatTemplate, GenerationPrompt};
pub use digest::{sha256_file, FileDigest};
pub use error::{Error, Result};
pub use generation_config::GenerationConfig;
pub use loader::{HubAccess, ModelFiles, ResolveOptions, WEIGHTS_FILE, WEIGHTS_INDEX_FILE};
pub use source::{ModelSource, DEFAULT_REVISION};
pub use tokenizer::{DecodeSpecialTokens, SpecialTokens, Tokenizer};
