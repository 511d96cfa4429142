//! Numerical precision policies for reprolm.
//!
//! A [`PrecisionPolicy`] says, for every component of a decoder, which floating point type holds
//! its values and runs its arithmetic. The engine takes one at load time and obeys it in every op,
//! so that "BF16", "FP32" or "LayerCast" in a report means exactly one thing.
//!
//! ```
//! use reprolm_precision::{Component, PrecisionPolicy};
//! use candle_core::DType;
//!
//! let lc = PrecisionPolicy::resolve("layercast").unwrap();
//! assert_eq!(lc.dtype(Component::LinearStorage), DType::BF16);
//! assert_eq!(lc.dtype(Component::MatmulCompute), DType::F32);
//! println!("{lc}"); // the full table, one line per component
//! ```
//!
//! # What runs in which dtype
//!
//! The components ([`Component`]) and what the engine does with each dtype (printed per policy by
//! [`PrecisionPolicy::describe`] and `Display`):
//!
//! - **Matmuls** in bf16 or f16 take 16-bit operands, accumulate in f32 and round the result once
//!   (cuBLAS on CUDA; on CPU, where candle has no bf16 GEMM, [`matmul`] widens the 16-bit values
//!   to f32 exactly, multiplies in f32 and rounds once, adding a projection's bias before that
//!   rounding as torch's `addmm` does). SiLU runs in f32 and is rounded once; `gate · up` and the
//!   residual adds run in the 16-bit type.
//! - **RMSNorm**: input cast to the norm dtype; mean of squares, `+ eps`, `sqrt` and the
//!   division in the norm dtype; the result cast to the activations dtype and only then multiplied
//!   by the weight, held in the activations dtype (transformers' `LlamaRMSNorm` order).
//! - **RoPE**: inverse frequencies computed in f64 and stored in f32; angles `pos · inv_freq` in
//!   f32 and their cos/sin by [`portable::sin_cos`] (the same bits on every machine; f64 angles
//!   and libm's f64 cos/sin when RoPE is f64); the tables rounded to the RoPE dtype; the rotation
//!   in the RoPE dtype.
//! - **Attention**: queries in the attention dtype against keys and values read back from the KV
//!   cache in its dtype; scores, softmax and the weighted sum of values in f32 (f64 for f64), as
//!   FlashAttention and vLLM's kernels compute them; the output rounded once to the attention
//!   dtype.
//! - **LM head**: the final norm's output is cast to the LM-head dtype, the head weight is held
//!   in it and the matmul runs in it; **logits** are then cast to the logits dtype, and
//!   log-softmax and sampling widen them to f32.
//!
//! The presets:
//!
//! | preset | linear storage | matmul | activations, embedding, RoPE, attention, KV cache | norm | LM head, logits |
//! |---|---|---|---|---|---|
//! | `bf16` | bf16 | bf16 | bf16 | f32 | bf16 |
//! | `fp16` | f16 | f16 | f16 | f32 | f16 |
//! | `fp32` | f32 | f32 | f32 | f32 | f32 |
//! | `layercast` | bf16 | f32 | f32 | f32 | f32 |
//! | `fp32-head` | bf16 | bf16 | bf16 | f32 | f32 |
//!
//! `bf16` and `fp16` are transformers' / vLLM's `--dtype`: every weight and activation in that
//! type, norm statistics and softmax in f32 inside the op. `fp32` upcasts every weight once at
//! load. `layercast` (arXiv 2506.09501) keeps only the projections' weights and biases in bf16
//! and casts each to f32 just for its matmul; embeddings, LM head, norms, RoPE, attention and
//! KV cache are f32. `fp32-head` is `bf16` with the LM head weight, its matmul and the logits in
//! f32 (MiniMax-M1's fix). Custom policies come from TOML files ([`PrecisionPolicy::from_toml_str`]).
//!
//! [`deterministic`] holds the batch-invariant CPU matmul kernels: one reduction order per
//! output, optionally tree-split over K to match a tensor-parallel all-reduce.
//!
//! [`ModelShape::memory`] counts the bytes each policy needs for a model's weights and KV cache.
#![deny(missing_docs)]

#[cfg(feature = "cuda")]
pub mod cuda;
mod describe;
pub mod deterministic;
mod error;
mod file;
mod linear;
mod memory;
mod policy;
pub mod portable;

pub use deterministic::{ComputeMode, ReductionOrder};

pub use error::{Error, Result};
pub use file::POLICY_FILE_VERSION;
pub use linear::{matmul, over_rows, Linear};
pub use memory::{
    format_bytes, ActivationMemory, GroupBytes, KvCacheMemory, MemoryEstimate, ModelShape,
    WeightGroup, WeightMemory,
};
pub use policy::{
    dtype_name, parse_dtype, preset_name, Component, PrecisionPolicy, PRESETS, PRESET_ALIASES,
};
