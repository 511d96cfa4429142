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
