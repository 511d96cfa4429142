//! Memory accounting: the bytes a decoder's weights, KV cache and prefill activations take under
//! a policy, computed from the model's shape alone, so a user sees what fits before loading
//! anything.
//!
//! The weights and the cache follow the engine's placement exactly: projections (q/k/v/o,
//! gate/up/down weights and biases) in the linear-storage dtype, the embedding table in the
//! embedding dtype, the LM head in the LM-head dtype (a tied head is free when its dtype equals
//! the embedding's and a second copy otherwise), RMSNorm weights in the activations dtype, keys and
//! values in the KV-cache dtype. The activations are an estimate of one prefill pass's peak
//! ([`ActivationMemory`]); the engine bounds a pass's positions, so that peak does not grow with
//! the batch or the prompts' lengths.
//!
//! ```
//! use reprolm_precision::{ModelShape, PrecisionPolicy};
//! let shape = ModelShape {
//!     vocab_size: 1000, hidden_size: 64, intermediate_size: 128, num_layers: 2,
//!     num_heads: 4, num_kv_heads: 2, head_dim: 16, tie_word_embeddings: false,
//!     qkv_bias: true, o_bias: false, mlp_bias: false, qk_norm: false,
//! };
//! let fp32 = shape.memory(&PrecisionPolicy::preset("fp32")?, 8, 4096, 8192);
//! let lc = shape.memory(&PrecisionPolicy::preset("layercast")?, 8, 4096, 8192);
//! assert_eq!(lc.weights.projections().bytes * 2, fp32.weights.projections().bytes);
//! // LayerCast computes in f32: its activations are fp32's.
//! assert_eq!(lc.activations, fp32.activations);
//! println!("{lc}");
//! # Ok::<(), reprolm_precision::Error>(())
//! ```

use crate::policy::{dtype_name, Component, PrecisionPolicy};
use candle_core::DType;
use std::collections::BTreeMap;
use std::fmt;

/// The shape of a Llama/Qwen-style decoder: everything the byte counts depend on. Kept free of
/// any config.json spelling so this crate needs no engine; the engine converts its spec into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelShape {
    /// Vocabulary size (rows of the embedding table and the LM head).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_layers: usize,
    /// Number of query heads.
    pub num_heads: usize,
    /// Number of key/value heads.
    pub num_kv_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// The LM head is the embedding table.
    pub tie_word_embeddings: bool,
    /// Bias on q/k/v.
    pub qkv_bias: bool,
    /// Bias on o.
    pub o_bias: bool,
    /// Bias on gate/up/down.
    pub mlp_bias: bool,
    /// RMSNorm weights on each query/key head (Qwen3).
    pub qk_norm: bool,
}

/// A group of weights that one component's dtype places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WeightGroup {
    /// q/k/v/o and gate/up/down weights and biases ([`Component::LinearStorage`]).
    Projections,
    /// The token embedding table ([`Component::Embedding`]).
    Embedding,
    /// The LM head ([`Component::LmHead`]).
    LmHead,
    /// RMSNorm weights ([`Component::Activations`]).
    Norms,
}

impl WeightGroup {
    /// Every group, in the order tables print them.
    pub const ALL: [WeightGroup; 4] = [
        WeightGroup::Projections,
        WeightGroup::Embedding,
        WeightGroup::LmHead,
        WeightGroup::Norms,
    ];

    /// The component whose dtype holds this group.
    pub fn component(self) -> Component {
        match self {
            WeightGroup::Projections => Component::LinearStorage,
            WeightGroup::Embedding => Component::Embedding,
            WeightGroup::LmHead => Component::LmHead,
            WeightGroup::Norms => Component::Activations,
        }
    }

    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            WeightGroup::Projections => "projections",
            WeightGroup::Embedding => "embedding",
            WeightGroup::LmHead => "lm_head",
            WeightGroup::Norms => "norms",
        }
    }
}

/// Bytes of one weight group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupBytes {
    /// Which weights.
    pub group: WeightGroup,
    /// Parameters stored for them (0 for a tied LM head that shares the embedding's storage).
    pub params: u64,
    /// The dtype they are stored in.
    pub dtype: DType,
    /// `params × dtype size`.
    pub bytes: u64,
}

/// Bytes held by a model's weights under one policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightMemory {
    /// One entry per [`WeightGroup`], in [`WeightGroup::ALL`] order.
    pub groups: Vec<GroupBytes>,
}

impl WeightMemory {
    /// The entry of one group.
    pub fn group(&self, g: WeightGroup) -> GroupBytes {
        self.groups[g as usize]
    }

    /// The projections' entry: what LayerCast halves.
    pub fn projections(&self) -> GroupBytes {
        self.group(WeightGroup::Projections)
    }

    /// All weight bytes.
    pub fn total_bytes(&self) -> u64 {
        self.groups.iter().map(|g| g.bytes).sum()
    }

    /// Bytes by dtype name (`bf16`, `f32`, ...), the way the engine reports what it holds.
    pub fn by_dtype(&self) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        for g in self.groups.iter().filter(|g| g.params > 0) {
            *out.entry(dtype_name(g.dtype)).or_insert(0) += g.bytes;
        }
        out
    }
}

/// Bytes of a KV cache for `batch` sequences of `context` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvCacheMemory {
    /// Number of sequences.
    pub batch: u64,
    /// Tokens per sequence (prompt + generated).
    pub context: u64,
    /// The dtype keys and values are stored in.
    pub dtype: DType,
    /// Bytes per token over all layers, keys and values.
    pub bytes_per_token: u64,
    /// `batch × context × bytes_per_token`.
    pub bytes: u64,
}

/// The activations a prefill forward pass holds at its peak, for `tokens` prompt positions in one
/// pass: in the MLP, the residual stream and its normed copy (2 × hidden), the stacked gate/up
/// output (2 × intermediate) and SiLU(gate) · up (intermediate), per position, in the policy's
/// activation dtype. The MLP's intermediate width is the largest of any layer's tensors, and a
/// layer's tensors are freed before the next layer's are made, so one layer's MLP is the peak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivationMemory {
    /// Prompt positions in one prefill pass (the engine's bound on them).
    pub tokens: u64,
    /// The activations' dtype.
    pub dtype: DType,
    /// Bytes per position at the peak.
    pub bytes_per_token: u64,
    /// `tokens × bytes_per_token`.
    pub bytes: u64,
}

/// Weights, KV cache and prefill activations for one policy, batch and context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// The policy's name.
    pub policy: String,
    /// The weights.
    pub weights: WeightMemory,
    /// The KV cache.
    pub kv_cache: KvCacheMemory,
    /// The peak activations of one prefill pass.
    pub activations: ActivationMemory,
}

impl MemoryEstimate {
    /// Weights plus KV cache plus prefill activations.
    pub fn total_bytes(&self) -> u64 {
        self.weights.total_bytes() + self.kv_cache.bytes + self.activations.bytes
    }
}

impl ModelShape {
    fn group_params(&self, g: WeightGroup) -> u64 {
        let (h, i, d) = (
            self.hidden_size as u64,
            self.intermediate_size as u64,
            self.head_dim as u64,
        );
        let (q, kv) = (self.num_heads as u64 * d, self.num_kv_heads as u64 * d);
        let layers = self.num_layers as u64;
        match g {
            WeightGroup::Projections => {
                let mut per_layer = h * q + 2 * h * kv + q * h + 3 * h * i;
                if self.qkv_bias {
                    per_layer += q + 2 * kv;
                }
                if self.o_bias {
                    per_layer += h;
                }
                if self.mlp_bias {
                    per_layer += 2 * i + h;
                }
                layers * per_layer
            }
            WeightGroup::Embedding | WeightGroup::LmHead => self.vocab_size as u64 * h,
            WeightGroup::Norms => {
                let qk = if self.qk_norm { 2 * d } else { 0 };
                layers * (2 * h + qk) + h
            }
        }
    }

    /// Distinct parameters of the model (a tied LM head counted once), whatever the policy.
    pub fn parameter_count(&self) -> u64 {
        let head = if self.tie_word_embeddings {
            0
        } else {
            self.group_params(WeightGroup::LmHead)
        };
        self.group_params(WeightGroup::Projections)
            + self.group_params(WeightGroup::Embedding)
            + head
            + self.group_params(WeightGroup::Norms)
    }

    /// Bytes of the weights under `policy`, by group.
    pub fn weight_memory(&self, policy: &PrecisionPolicy) -> WeightMemory {
        let groups = WeightGroup::ALL
            .into_iter()
            .map(|g| {
                let dtype = policy.dtype(g.component());
                let shared = g == WeightGroup::LmHead
                    && self.tie_word_embeddings
                    && dtype == policy.dtype(Component::Embedding);
                let params = if shared { 0 } else { self.group_params(g) };
                GroupBytes {
                    group: g,
                    params,
                    dtype,
                    bytes: params * dtype.size_in_bytes() as u64,
                }
            })
            .collect();
        WeightMemory { groups }
    }

    /// Bytes of a KV cache under `policy` holding `context` tokens for each of `batch` sequences.
    pub fn kv_cache_memory(
        &self,
        policy: &PrecisionPolicy,
        batch: usize,
        context: usize,
    ) -> KvCacheMemory {
        let dtype = policy.dtype(Component::KvCache);
        let bytes_per_token = 2
            * self.num_layers as u64
            * self.num_kv_heads as u64
            * self.head_dim as u64
            * dtype.size_in_bytes() as u64;
        KvCacheMemory {
            batch: batch as u64,
            context: context as u64,
            dtype,
            bytes_per_token,
            bytes: bytes_per_token * batch as u64 * context as u64,
        }
    }

    /// The peak activations of a prefill pass over `tokens` prompt positions under `policy`
    /// ([`ActivationMemory`]).
    pub fn prefill_activation_memory(
        &self,
        policy: &PrecisionPolicy,
        tokens: usize,
    ) -> ActivationMemory {
        let dtype = policy.dtype(Component::Activations);
        let per_token = 2 * self.hidden_size as u64 + 3 * self.intermediate_size as u64;
        let bytes_per_token = per_token * dtype.size_in_bytes() as u64;
        ActivationMemory {
            tokens: tokens as u64,
            dtype,
            bytes_per_token,
            bytes: bytes_per_token * tokens as u64,
        }
    }

    /// Weights, KV cache and the activations of prefill passes of `prefill_tokens` positions
    /// together: what `reprolm memory` prints.
    pub fn memory(
        &self,
        policy: &PrecisionPolicy,
        batch: usize,
        context: usize,
        prefill_tokens: usize,
    ) -> MemoryEstimate {
        MemoryEstimate {
            policy: policy.name.clone(),
            weights: self.weight_memory(policy),
            kv_cache: self.kv_cache_memory(policy, batch, context),
            activations: self.prefill_activation_memory(policy, prefill_tokens),
        }
    }
}

/// `12.34 GB (11.49 GiB)`: decimal gigabytes as papers and GPU specs quote them, binary in
/// parentheses as allocators report them.
pub fn format_bytes(bytes: u64) -> String {
    format!(
        "{:.2} GB ({:.2} GiB)",
        bytes as f64 / 1e9,
        bytes as f64 / (1u64 << 30) as f64
    )
}

impl fmt::Display for MemoryEstimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "policy {}", self.policy)?;
        writeln!(
            f,
            "{:<12} {:<5} {:>15} {:>16}  size",
            "weights", "dtype", "params", "bytes"
        )?;
        for g in &self.weights.groups {
            let size = if g.group == WeightGroup::LmHead && g.params == 0 {
                "shared with embedding".to_string()
            } else {
                format_bytes(g.bytes)
            };
            writeln!(
                f,
                "{:<12} {:<5} {:>15} {:>16}  {size}",
                g.group.name(),
                dtype_name(g.dtype),
                g.params,
                g.bytes
            )?;
        }
        let w = self.weights.total_bytes();
        writeln!(
            f,
            "{:<12} {:<5} {:>15} {:>16}  {}",
            "all weights",
            "",
            "",
            w,
            format_bytes(w)
        )?;
        let kv = &self.kv_cache;
        writeln!(
            f,
            "{:<12} {:<5} {:>15} {:>16}  {}  ({} x {} tokens, {} bytes/token)",
            "kv_cache",
            dtype_name(kv.dtype),
            "",
            kv.bytes,
            format_bytes(kv.bytes),
            kv.batch,
            kv.context,
            kv.bytes_per_token
        )?;
        let a = &self.activations;
        writeln!(
            f,
            "{:<12} {:<5} {:>15} {:>16}  {}  (prefill passes of {} tokens, {} bytes/token)",
            "activations",
            dtype_name(a.dtype),
            "",
            a.bytes,
            format_bytes(a.bytes),
            a.tokens,
            a.bytes_per_token
        )?;
        let t = self.total_bytes();
        writeln!(
            f,
            "{:<12} {:<5} {:>15} {:>16}  {}",
            "total",
            "",
            "",
            t,
            format_bytes(t)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(tie: bool) -> ModelShape {
        ModelShape {
            vocab_size: 10,
            hidden_size: 4,
            intermediate_size: 6,
            num_layers: 2,
            num_heads: 2,
            num_kv_heads: 1,
            head_dim: 2,
            tie_word_embeddings: tie,
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            qk_norm: false,
        }
    }

    #[test]
    fn a_tied_head_is_free_in_the_same_dtype_and_a_copy_otherwise() {
        let shape = tiny(true);
        let lc = PrecisionPolicy::preset("layercast").unwrap();
        assert_eq!(shape.weight_memory(&lc).group(WeightGroup::LmHead).bytes, 0);
        let head = PrecisionPolicy::preset("fp32-head").unwrap();
        let m = shape.weight_memory(&head);
        assert_eq!(m.group(WeightGroup::LmHead).bytes, 10 * 4 * 4);
        assert_eq!(m.group(WeightGroup::Embedding).bytes, 10 * 4 * 2);
    }

    #[test]
    fn kv_bytes_scale_with_batch_context_and_dtype() {
        let shape = tiny(false);
        let fp32 = shape.kv_cache_memory(&PrecisionPolicy::fp32(), 3, 5);
        // 2 (k, v) x 2 layers x 1 kv head x 2 dims x 4 bytes.
        assert_eq!(fp32.bytes_per_token, 32);
        assert_eq!(fp32.bytes, 32 * 15);
        let bf16 = shape.kv_cache_memory(&PrecisionPolicy::preset("bf16").unwrap(), 3, 5);
        assert_eq!(bf16.bytes * 2, fp32.bytes);
    }

    #[test]
    fn prefill_activations_scale_with_the_tokens_and_the_activation_dtype() {
        let shape = tiny(false);
        let fp32 = shape.prefill_activation_memory(&PrecisionPolicy::fp32(), 7);
        // 2 x hidden 4 + 3 x intermediate 6 = 26 values per position, 4 bytes each.
        assert_eq!(fp32.bytes_per_token, 26 * 4);
        assert_eq!(fp32.bytes, 7 * 26 * 4);
        let bf16 = shape.prefill_activation_memory(&PrecisionPolicy::preset("bf16").unwrap(), 7);
        assert_eq!(bf16.bytes * 2, fp32.bytes);
        let lc = shape.prefill_activation_memory(&PrecisionPolicy::preset("layercast").unwrap(), 7);
        assert_eq!(lc, fp32, "LayerCast computes in f32");
    }

    #[test]
    fn by_dtype_adds_up_to_the_total() {
        let m = tiny(false).weight_memory(&PrecisionPolicy::preset("layercast").unwrap());
        let sum: u64 = m.by_dtype().values().sum();
        assert_eq!(sum, m.total_bytes());
        assert_eq!(m.by_dtype()["bf16"], m.projections().bytes);
    }
}
