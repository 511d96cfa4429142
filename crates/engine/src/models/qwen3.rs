//! `Qwen3ForCausalLM`: Qwen3 dense models (0.6B..32B). RMSNorm on each query and key head before
//! RoPE, `head_dim` set independently of `hidden_size` (Qwen3-0.6B: 128 with hidden 1024 and 16
//! heads), no q/k/v bias by default.

use super::{refuse_sliding_window, CommonConfig, DecoderSpec, Family};
use crate::Result;
use serde::Deserialize;
use std::path::Path;

/// config.json of a Qwen3 checkpoint, with transformers' field names.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// The fields all families share.
    #[serde(flatten)]
    pub common: CommonConfig,
    /// Bias on q/k/v/o projections.
    #[serde(default)]
    pub attention_bias: bool,
    /// Sliding-window attention switch; must be off.
    #[serde(default)]
    pub use_sliding_window: bool,
}

impl Config {
    /// The decoder this config describes.
    pub fn spec(&self, path: &Path) -> Result<DecoderSpec> {
        refuse_sliding_window(self.use_sliding_window, path)?;
        let family = Family {
            default_rope_theta: 1_000_000.0,
            default_max_position_embeddings: 40960,
            reads_head_dim: true,
            qkv_bias: self.attention_bias,
            o_bias: self.attention_bias,
            mlp_bias: false,
            qk_norm: true,
        };
        self.common.spec(family, path)
    }
}
