//! `Qwen3ForCausalLM`: Qwen3 dense models (0.6B..32B). RMSNorm on each query and key head before
//! RoPE, `head_dim` set independently of `hidden_size`, no q/k/v bias by default.

use super::{default_eps, llama::default_act, DecoderSpec, RopeFields};
use crate::{Error, Result};
use serde::Deserialize;
use std::path::Path;

/// config.json of a Qwen3 checkpoint, with transformers' field names.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (GQA).
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Per-head width (Qwen3-0.6B: 128 with hidden 1024 and 16 heads).
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Longest supported context.
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    /// Whether the LM head reuses the embedding table.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Bias on q/k/v/o projections.
    #[serde(default)]
    pub attention_bias: bool,
    /// Sliding-window attention switch; must be off.
    #[serde(default)]
    pub use_sliding_window: bool,
    /// `hidden_act`; only SiLU is implemented.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(flatten)]
    pub(crate) rope: RopeFields,
}

fn default_max_pos() -> usize {
    40960
}

impl Config {
    /// The decoder this config describes.
    pub fn spec(&self, path: &Path) -> Result<DecoderSpec> {
        if self.use_sliding_window {
            return Err(Error::BadField {
                path: path.to_path_buf(),
                field: "use_sliding_window".into(),
                reason: "sliding-window attention is not implemented; set it to false".into(),
            });
        }
        Ok(DecoderSpec {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_hidden_layers,
            num_heads: self.num_attention_heads,
            num_kv_heads: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            head_dim: self
                .head_dim
                .unwrap_or(self.hidden_size / self.num_attention_heads.max(1)),
            rms_norm_eps: self.rms_norm_eps,
            rope: self.rope.spec(1_000_000.0, path)?,
            max_position_embeddings: self.max_position_embeddings,
            tie_word_embeddings: self.tie_word_embeddings,
            qkv_bias: self.attention_bias,
            o_bias: self.attention_bias,
            mlp_bias: false,
            qk_norm: true,
            hidden_act: self.hidden_act.clone(),
        })
    }
}
