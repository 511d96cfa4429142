//! `LlamaForCausalLM`: Llama 2/3/3.1 and DeepSeek-R1-Distill-Llama-8B (Llama 3.1 with `llama3`
//! RoPE scaling). Optional attention/MLP biases, untied or tied embeddings.

use super::{CommonConfig, DecoderSpec, Family};
use crate::Result;
use serde::Deserialize;
use std::path::Path;

/// config.json of a Llama checkpoint, with transformers' field names.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// The fields all families share.
    #[serde(flatten)]
    pub common: CommonConfig,
    /// Bias on q/k/v/o projections.
    #[serde(default)]
    pub attention_bias: bool,
    /// Bias on gate/up/down projections.
    #[serde(default)]
    pub mlp_bias: bool,
}

impl Config {
    /// The decoder this config describes.
    pub fn spec(&self, path: &Path) -> Result<DecoderSpec> {
        let family = Family {
            default_rope_theta: 10000.0,
            default_max_position_embeddings: 4096,
            reads_head_dim: true,
            qkv_bias: self.attention_bias,
            o_bias: self.attention_bias,
            mlp_bias: self.mlp_bias,
            qk_norm: false,
        };
        self.common.spec(family, path)
    }
}
