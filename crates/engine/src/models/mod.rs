//! Model families: each file turns its config.json into a [`DecoderSpec`]; [`decoder`] runs them.
//!
//! Llama, Qwen2 and Qwen3 are the same pre-norm decoder with different switches (q/k/v bias,
//! q/k RMSNorm, head_dim independent of hidden size, RoPE scaling). One shared implementation
//! keeps the precision policy's reach uniform: a dtype decision made once applies to all three.

pub mod decoder;
pub mod llama;
pub mod qwen2;
pub mod qwen3;
pub mod rope;

use crate::{Error, Result};
use serde::Deserialize;
use std::path::Path;

pub use decoder::{Decoder, DecoderSpec};
pub use rope::{RopeScaling, RopeSpec};

/// A model family this engine implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// `LlamaForCausalLM` (Llama 2/3, DeepSeek-R1-Distill-Llama).
    Llama,
    /// `Qwen2ForCausalLM` (Qwen2/2.5, DeepSeek-R1-Distill-Qwen).
    Qwen2,
    /// `Qwen3ForCausalLM` (Qwen3 dense).
    Qwen3,
}

impl Architecture {
    /// The `architectures` names we accept, as transformers writes them.
    pub const SUPPORTED: [&'static str; 3] =
        ["LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"];

    /// The transformers class name.
    pub fn class_name(self) -> &'static str {
        match self {
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::Qwen2 => "Qwen2ForCausalLM",
            Architecture::Qwen3 => "Qwen3ForCausalLM",
        }
    }
}

#[derive(Deserialize)]
struct ArchProbe {
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    model_type: Option<String>,
}

/// Reads config.json, picks the family from `architectures` (or `model_type`) and returns the
/// family's [`DecoderSpec`].
pub fn spec_from_config_file(path: &Path) -> Result<(Architecture, DecoderSpec)> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    spec_from_config_str(&text, path)
}

/// As [`spec_from_config_file`], from the file's text; `path` is only used in errors.
pub fn spec_from_config_str(text: &str, path: &Path) -> Result<(Architecture, DecoderSpec)> {
    let json = |source| Error::Json {
        path: path.to_path_buf(),
        source,
    };
    let probe: ArchProbe = serde_json::from_str(text).map_err(json)?;
    let named = probe
        .architectures
        .first()
        .cloned()
        .or_else(|| probe.model_type.clone());
    let arch = match (
        probe.architectures.first().map(String::as_str),
        probe.model_type.as_deref(),
    ) {
        (Some("LlamaForCausalLM"), _) | (None, Some("llama")) => Architecture::Llama,
        (Some("Qwen2ForCausalLM"), _) | (None, Some("qwen2")) => Architecture::Qwen2,
        (Some("Qwen3ForCausalLM"), _) | (None, Some("qwen3")) => Architecture::Qwen3,
        _ => {
            return Err(Error::UnsupportedArchitecture {
                path: path.to_path_buf(),
                got: named.unwrap_or_else(|| "(no `architectures` or `model_type`)".into()),
                supported: Architecture::SUPPORTED.to_vec(),
            })
        }
    };
    let spec = match arch {
        Architecture::Llama => serde_json::from_str::<llama::Config>(text)
            .map_err(json)?
            .spec(path)?,
        Architecture::Qwen2 => serde_json::from_str::<qwen2::Config>(text)
            .map_err(json)?
            .spec(path)?,
        Architecture::Qwen3 => serde_json::from_str::<qwen3::Config>(text)
            .map_err(json)?
            .spec(path)?,
    };
    spec.validate(path)?;
    Ok((arch, spec))
}

/// transformers 5 moved `rope_theta` and `rope_scaling` into `rope_parameters`; real checkpoints
/// on the Hub still carry the old fields, so both are read.
#[derive(Debug, Clone, Deserialize, Default)]
pub(crate) struct RopeFields {
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    pub rope_parameters: Option<serde_json::Value>,
}

impl RopeFields {
    pub(crate) fn spec(&self, default_theta: f64, path: &Path) -> Result<RopeSpec> {
        let params = self.rope_parameters.as_ref().filter(|v| v.is_object());
        let theta = params
            .and_then(|p| p.get("rope_theta"))
            .and_then(|v| v.as_f64())
            .or(self.rope_theta)
            .unwrap_or(default_theta);
        // Frequencies are theta^(-2i/d): a base of 1 or less has none that rotate.
        if !(theta.is_finite() && theta > 1.0) {
            return Err(Error::BadField {
                path: path.to_path_buf(),
                field: "rope_theta".into(),
                reason: format!("{theta} is not a finite number above 1"),
            });
        }
        let scaling_json = match (params, &self.rope_scaling) {
            (_, Some(s)) if !s.is_null() => Some(s),
            (Some(p), _) => Some(p),
            _ => None,
        };
        let scaling = match scaling_json {
            None => RopeScaling::None,
            Some(v) => RopeScaling::from_json(v, path)?,
        };
        Ok(RopeSpec { theta, scaling })
    }
}

fn default_eps() -> f64 {
    1e-6
}

fn default_act() -> String {
    "silu".into()
}

/// The config.json fields every family shares, with transformers' names.
#[derive(Debug, Clone, Deserialize)]
pub struct CommonConfig {
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
    /// Per-head width, for families that read it; `hidden_size / num_attention_heads` otherwise.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Longest supported context; the family's default when absent.
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
    /// Whether the LM head reuses the embedding table.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// `hidden_act`; only SiLU is implemented.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(flatten)]
    pub(crate) rope: RopeFields,
}

/// What a family adds to the shared fields: its defaults and its switches.
pub(crate) struct Family {
    pub default_rope_theta: f64,
    pub default_max_position_embeddings: usize,
    /// Whether config.json's `head_dim` is honoured (Qwen2 always derives it).
    pub reads_head_dim: bool,
    pub qkv_bias: bool,
    pub o_bias: bool,
    pub mlp_bias: bool,
    pub qk_norm: bool,
}

impl CommonConfig {
    pub(crate) fn spec(&self, family: Family, path: &Path) -> Result<DecoderSpec> {
        let derived_head_dim = self.hidden_size / self.num_attention_heads.max(1);
        let head_dim = match (family.reads_head_dim, self.head_dim) {
            (true, Some(d)) => d,
            _ => derived_head_dim,
        };
        Ok(DecoderSpec {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_hidden_layers,
            num_heads: self.num_attention_heads,
            num_kv_heads: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            head_dim,
            rms_norm_eps: self.rms_norm_eps,
            rope: self.rope.spec(family.default_rope_theta, path)?,
            max_position_embeddings: self
                .max_position_embeddings
                .unwrap_or(family.default_max_position_embeddings),
            tie_word_embeddings: self.tie_word_embeddings,
            qkv_bias: family.qkv_bias,
            o_bias: family.o_bias,
            mlp_bias: family.mlp_bias,
            qk_norm: family.qk_norm,
            hidden_act: self.hidden_act.clone(),
        })
    }
}

/// Sliding-window attention is not implemented; a config that turns it on is refused.
pub(crate) fn refuse_sliding_window(on: bool, path: &Path) -> Result<()> {
    if on {
        return Err(Error::BadField {
            path: path.to_path_buf(),
            field: "use_sliding_window".into(),
            reason: "sliding-window attention is not implemented; set it to false".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rope_base_that_cannot_rotate_is_refused_naming_the_field() {
        let config = |theta: &str| {
            format!(
                r#"{{"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
                "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
                "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 50,
                "rms_norm_eps": 1e-6, "rope_theta": {theta}}}"#
            )
        };
        let path = Path::new("models/x/config.json");
        assert!(spec_from_config_str(&config("10000.0"), path).is_ok());
        for bad in ["0.0", "-5.0", "1.0"] {
            let err = spec_from_config_str(&config(bad), path)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("rope_theta") && err.contains("models/x/config.json"),
                "{bad}: {err}"
            );
        }
    }
}
