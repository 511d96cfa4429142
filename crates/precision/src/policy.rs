//! The precision policy: which dtype each component of a decoder uses.

use crate::{Error, Result};
use candle_core::DType;

/// A part of a decoder whose numbers a policy can place in a dtype.
///
/// The split follows where real serving stacks differ: vLLM's `--dtype bfloat16` keeps everything
/// in bf16 but accumulates norms and softmax in f32 inside its kernels; LayerCast (arXiv 2506.09501)
/// stores only the linear weights in bf16 and computes everything in f32; MiniMax-M1's fix lifts
/// only the LM head to f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Component {
    /// Storage of the weights and biases of the attention and MLP projections (q/k/v/o, gate/up/down).
    LinearStorage,
    /// The dtype those projections' matmuls run in; weights are cast to it just in time.
    MatmulCompute,
    /// The residual stream and every activation between ops.
    Activations,
    /// The token embedding table.
    Embedding,
    /// RMSNorm: the dtype the mean of squares and the scaling are computed in.
    Norm,
    /// RoPE: the cos/sin tables and the rotation.
    Rope,
    /// Attention: q·kᵀ, softmax and the weighted sum of values.
    Attention,
    /// The key/value cache.
    KvCache,
    /// The LM head weight and its matmul.
    LmHead,
    /// The logits handed to log-softmax and sampling (log-softmax itself always runs in f32).
    Logits,
}

impl Component {
    /// Every component, in the order tables print them.
    pub const ALL: [Component; 10] = [
        Component::LinearStorage,
        Component::MatmulCompute,
        Component::Activations,
        Component::Embedding,
        Component::Norm,
        Component::Rope,
        Component::Attention,
        Component::KvCache,
        Component::LmHead,
        Component::Logits,
    ];

    /// The key used in TOML policy files and manifests.
    pub fn key(self) -> &'static str {
        match self {
            Component::LinearStorage => "linear_storage",
            Component::MatmulCompute => "matmul_compute",
            Component::Activations => "activations",
            Component::Embedding => "embedding",
            Component::Norm => "norm",
            Component::Rope => "rope",
            Component::Attention => "attention",
            Component::KvCache => "kv_cache",
            Component::LmHead => "lm_head",
            Component::Logits => "logits",
        }
    }

    /// The component with this key, if any.
    pub fn from_key(key: &str) -> Option<Component> {
        Component::ALL.into_iter().find(|c| c.key() == key)
    }
}

/// The preset names, in the order `reprolm policies` lists them.
pub const PRESETS: [&str; 5] = ["bf16", "fp16", "fp32", "layercast", "fp32-head"];

/// Other names of the uniform presets: the dtype names of torch, vLLM's `--dtype` and the paper's
/// scripts (`eval_main.py --dtype bfloat16`), as `(alias, preset)`.
pub const PRESET_ALIASES: [(&str, &str); 6] = [
    ("bfloat16", "bf16"),
    ("float16", "fp16"),
    ("half", "fp16"),
    ("float32", "fp32"),
    ("float", "fp32"),
    ("f32", "fp32"),
];

/// The preset a name or alias stands for (`bfloat16` is `bf16`), if any.
///
/// ```
/// assert_eq!(reprolm_precision::preset_name("bfloat16"), Some("bf16"));
/// assert_eq!(reprolm_precision::preset_name("layercast"), Some("layercast"));
/// assert_eq!(reprolm_precision::preset_name("bf17"), None);
/// ```
pub fn preset_name(name: &str) -> Option<&'static str> {
    PRESETS.iter().copied().find(|p| *p == name).or_else(|| {
        PRESET_ALIASES
            .iter()
            .find(|(alias, _)| *alias == name)
            .map(|(_, p)| *p)
    })
}

/// Which dtype each [`Component`] uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrecisionPolicy {
    /// The policy's name (a preset name, or the name given in a policy file).
    pub name: String,
    dtypes: [DType; 10],
}

impl PrecisionPolicy {
    /// One dtype for every component, except norms, which accumulate in at least f32 as every
    /// serving kernel (vLLM's fused RMSNorm, transformers' `LlamaRMSNorm`) does whatever `--dtype`
    /// says. (An f64 policy keeps its norms in f64: it is a reference and must not round to f32.)
    fn uniform(name: &str, dtype: DType) -> Self {
        let mut p = PrecisionPolicy {
            name: name.to_string(),
            dtypes: [dtype; 10],
        };
        if dtype.size_in_bytes() < 4 {
            p.set(Component::Norm, DType::F32);
        }
        p
    }

    /// A named preset: `bf16`, `fp16`, `fp32`, `layercast` or `fp32-head`, or an alias of one
    /// ([`PRESET_ALIASES`]; the policy then carries the preset's own name).
    pub fn preset(name: &str) -> Result<Self> {
        let p = match preset_name(name).unwrap_or(name) {
            "bf16" => Self::uniform("bf16", DType::BF16),
            "fp16" => Self::uniform("fp16", DType::F16),
            "fp32" => Self::uniform("fp32", DType::F32),
            "layercast" => {
                let mut p = Self::uniform("layercast", DType::F32);
                p.set(Component::LinearStorage, DType::BF16);
                p
            }
            "fp32-head" => {
                let mut p = Self::uniform("fp32-head", DType::BF16);
                p.set(Component::LmHead, DType::F32);
                p.set(Component::Logits, DType::F32);
                p
            }
            other => {
                return Err(Error::UnknownPreset {
                    got: other.to_string(),
                    known: PRESETS.to_vec(),
                })
            }
        };
        Ok(p)
    }

    /// Every component in float32: the reproducibility baseline.
    pub fn fp32() -> Self {
        Self::uniform("fp32", DType::F32)
    }

    /// Every component in float64, norms included; a CPU-only reference that tests measure the
    /// other policies against (it is not a preset, since no serving stack runs it).
    pub fn fp64_reference() -> Self {
        Self::uniform("fp64-reference", DType::F64)
    }

    /// The dtype of a component.
    pub fn dtype(&self, c: Component) -> DType {
        self.dtypes[c as usize]
    }

    /// Sets the dtype of one component.
    pub fn set(&mut self, c: Component, dtype: DType) {
        self.dtypes[c as usize] = dtype;
    }

    /// Returns the policy with one component changed.
    pub fn with(mut self, c: Component, dtype: DType) -> Self {
        self.set(c, dtype);
        self
    }

    /// The policy as (component key, dtype name) pairs, for manifests and tables.
    pub fn table(&self) -> Vec<(&'static str, &'static str)> {
        Component::ALL
            .iter()
            .map(|&c| (c.key(), dtype_name(self.dtype(c))))
            .collect()
    }
}

/// The short name of a dtype as policies write it (`bf16`, `f16`, `f32`, `f64`).
pub fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        DType::F32 => "f32",
        DType::F64 => "f64",
        _ => "unsupported",
    }
}

/// Parses a dtype name; `key` names the field it came from so the error can point at it.
pub fn parse_dtype(key: &str, s: &str) -> Result<DType> {
    match s.trim().to_ascii_lowercase().as_str() {
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "f16" | "fp16" | "float16" | "half" => Ok(DType::F16),
        "f32" | "fp32" | "float32" | "float" => Ok(DType::F32),
        "f64" | "fp64" | "float64" | "double" => Ok(DType::F64),
        _ => Err(Error::UnknownDtype {
            key: key.to_string(),
            got: s.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_place_components_as_documented() {
        let lc = PrecisionPolicy::preset("layercast").unwrap();
        for c in Component::ALL {
            let want = if c == Component::LinearStorage {
                DType::BF16
            } else {
                DType::F32
            };
            assert_eq!(lc.dtype(c), want, "{c:?}");
        }
        let head = PrecisionPolicy::preset("fp32-head").unwrap();
        assert_eq!(head.dtype(Component::LmHead), DType::F32);
        assert_eq!(head.dtype(Component::Attention), DType::BF16);
        let bf16 = PrecisionPolicy::preset("bf16").unwrap();
        assert_eq!(bf16.dtype(Component::Norm), DType::F32);
        assert_eq!(bf16.dtype(Component::KvCache), DType::BF16);
    }

    #[test]
    fn unknown_preset_lists_the_known_ones() {
        let err = PrecisionPolicy::preset("fp8").unwrap_err().to_string();
        assert!(err.contains("`fp8`") && err.contains("layercast"), "{err}");
    }

    #[test]
    fn component_keys_round_trip() {
        for c in Component::ALL {
            assert_eq!(Component::from_key(c.key()), Some(c));
        }
        assert_eq!(Component::from_key("lm-head"), None);
    }
}
