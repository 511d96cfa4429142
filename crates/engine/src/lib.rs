//! reprolm-engine: LLM inference on candle for reproducibility studies.
//!
//! Llama, Qwen2 and Qwen3 decoders whose every op runs in the dtype a
//! [`PrecisionPolicy`](reprolm_precision::PrecisionPolicy) assigns, a left-padded KV cache for
//! batches of prompts of different lengths, greedy and seeded sampling with a random stream per
//! request, and the top-k log-probabilities of every generated token.
#![deny(missing_docs)]

mod error;
pub mod generate;
pub mod kv_cache;
pub mod models;
pub mod sampling;

pub use error::{Error, Result};
pub use generate::{generate, Batch, FinishReason, Generation, Request};
pub use kv_cache::KvCache;
pub use models::decoder::LogitsFor;
pub use models::{spec_from_config_file, Architecture, Decoder, DecoderSpec};
pub use sampling::{RequestRng, SamplingParams};
