//! `LlamaForCausalLM`: Llama 2/3/3.1 and DeepSeek-R1-Distill-Llama-8B (Llama 3.1 with `llama3`
//! RoPE scaling). Optional attention/MLP biases, untied or tied embeddings.

use super::{default_eps, DecoderSpec, RopeFields};
use crate::Result;
use serde::Deserialize;
use std::path::Path;

/// config.json of a Llama checkpoint, with transformers' field names.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Vocabulary size (rows of the embedding table).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (GQA); equals the query heads when absent.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Per-head width; `hidden_size / num_attention_heads` when absent.
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
    /// Bias on gate/up/down projections.
    #[serde(default)]
    pub mlp_bias: bool,
    /// `hidden_act`; only SiLU is implemented.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(flatten)]
    pub(crate) rope: RopeFields,
}

fn default_max_pos() -> usize {
    4096
}

pub(crate) fn default_act() -> String {
    "silu".into()
}

impl Config {
    /// The decoder this config describes.
    pub fn spec(&self, path: &Path) -> Result<DecoderSpec> {
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
            rope: self.rope.spec(10000.0, path)?,
            max_position_embeddings: self.max_position_embeddings,
            tie_word_embeddings: self.tie_word_embeddings,
            qkv_bias: self.attention_bias,
            o_bias: self.attention_bias,
            mlp_bias: self.mlp_bias,
            qk_norm: false,
            hidden_act: self.hidden_act.clone(),
        })
    }
}
