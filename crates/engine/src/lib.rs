//! reprolm-engine: LLM inference on candle for reproducibility studies.
//!
//! Llama, Qwen2 and Qwen3 decoders whose every op runs in the dtype a
//! [`PrecisionPolicy`](reprolm_precision::PrecisionPolicy) assigns, a paged KV cache ([`kv`]:
//! fixed-size blocks in one pool, a block table per sequence, no padding), a scheduler that
//! batches requests continuously or in static groups within the cache's memory ([`Scheduler`]),
//! greedy and seeded sampling whose noise belongs to the request and the position (the same
//! tokens on any batch, device or resume), and the top-k log-probabilities of every generated
//! token. A decoder can be split over tensor-parallel ranks ([`parallel`]), with a mode whose
//! results do not depend on their number.
//!
//! A sequence's logits do not depend on its batch, its position in it, the other sequences'
//! lengths, or how its prompt was chunked ([`Scheduler::with_prefill_chunk`]): every matmul reduces
//! in an order fixed by its shape ([`kernels::gemm`]) and attention reduces each query over its
//! own keys in fixed splits ([`kernels::attention`]).
//! Everything besides the policy that decides the numbers is one value,
//! [`Kernels`](kernels::Kernels) (the kernel choice, deterministic mode, the tensor-parallel
//! reduction, fused kernels, where tokens are chosen, CUDA graphs for decode ([`decode_graph`])),
//! given at load
//! ([`LoadOptions::kernels`]) or to [`Decoder::set_kernels`]; its deterministic mode
//! ([`ComputeMode::Deterministic`](reprolm_precision::ComputeMode)) also offers, on the CPU, the
//! tree order that makes results independent of the tensor-parallel size.
#![deny(missing_docs)]

mod chat_template;
pub mod decode_graph;
mod device;
pub mod device_top_k;
mod digest;
mod error;
mod fused;
pub mod generate;
mod generation_config;
pub mod kernels;
pub mod kv;
mod loader;
mod model;
pub mod models;
pub mod parallel;
mod pyjson;
pub mod sampling;
mod scheduler;
mod source;
pub mod throughput;
mod tokenizer;

pub use chat_template::{ChatMessage, ChatOptions, ChatTemplate, GenerationPrompt};
pub use device::{device_label, device_name, parse_device};
pub use digest::{sha256_file, FileDigest};
pub use error::{Error, Result};
pub use generate::{FinishReason, Generation, Request};
pub use generation_config::GenerationConfig;
pub use kv::{KvCache, KvCacheSize, SeqId};
pub use loader::{HubAccess, ModelFiles, ResolveOptions, WEIGHTS_FILE, WEIGHTS_INDEX_FILE};
pub use model::{check_policy_on_device, LoadOptions, Model, ModelIdentity};
pub use models::decoder::LogitsFor;
pub use models::{spec_from_config_file, Architecture, Decoder, DecoderSpec};
pub use parallel::{Communicator, LocalComm, TensorParallel, TpMode};
pub use sampling::{NoiseKey, SamplingParams};
pub use scheduler::{generate, Batching, Scheduler};
pub use source::{ModelSource, DEFAULT_REVISION};
pub use tokenizer::{DecodeSpecialTokens, SpecialTokens, Tokenizer};

/// The README's Rust examples, compiled as doctests so they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
