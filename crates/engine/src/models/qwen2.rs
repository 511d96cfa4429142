//! `Qwen2ForCausalLM`: Qwen2/2.5 and DeepSeek-R1-Distill-Qwen-1.5B/7B/14B/32B. Bias on q/k/v (not
//! on o), tied embeddings in the small models. Sliding-window attention is not implemented and is
//! refused when a config turns it on.

use super::{refuse_sliding_window, CommonConfig, DecoderSpec, Family};
use crate::Result;
use serde::Deserialize;
use std::path::Path;

/// config.json of a Qwen2 checkpoint, with transformers' field names.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// The fields all families share (`head_dim` is always derived for Qwen2).
    #[serde(flatten)]
    pub common: CommonConfig,
    /// Sliding-window attention switch; must be off.
    #[serde(default)]
    pub use_sliding_window: bool,
}

impl Config {
    /// The decoder this config describes.
    pub fn spec(&self, path: &Path) -> Result<DecoderSpec> {
        refuse_sliding_window(self.use_sliding_window, path)?;
        let family = Family {
            default_rope_theta: 10000.0,
            default_max_position_embeddings: 32768,
            reads_head_dim: false,
            qkv_bias: true,
            o_bias: false,
            mlp_bias: false,
            qk_norm: false,
        };
        self.common.spec(family, path)
    }
}
