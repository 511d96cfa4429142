//! Rotary position embeddings: inverse frequencies (with the scaling types real checkpoints
//! use) and cos/sin tables for arbitrary per-sequence positions.

use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::path::Path;

/// How a checkpoint rescales RoPE frequencies for long contexts.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Every frequency divided by `factor` (transformers' `linear`).
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// Llama 3.1's wavelength-dependent scaling (DeepSeek-R1-Distill-Llama-8B).
    Llama3 {
        /// Divisor for low frequencies.
        factor: f64,
        /// Wavelengths above `original_max / low_freq_factor` are fully scaled.
        low_freq_factor: f64,
        /// Wavelengths below `original_max / high_freq_factor` are left alone.
        high_freq_factor: f64,
        /// The context length the model was pre-trained with.
        original_max_position_embeddings: f64,
    },
}

impl RopeScaling {
    /// Parses a `rope_scaling` (or transformers 5 `rope_parameters`) object.
    pub fn from_json(v: &serde_json::Value, path: &Path) -> Result<Self> {
        let field = |name: &str| -> Result<f64> {
            v.get(name)
                .and_then(|x| x.as_f64())
                .ok_or_else(|| Error::BadField {
                    path: path.to_path_buf(),
                    field: format!("rope_scaling.{name}"),
                    reason: "missing or not a number".into(),
                })
        };
        let kind = v
            .get("rope_type")
            .or_else(|| v.get("type"))
            .and_then(|t| t.as_str())
            .unwrap_or("default");
        match kind {
            "default" => Ok(RopeScaling::None),
            "linear" => Ok(RopeScaling::Linear {
                factor: field("factor")?,
            }),
            "llama3" => Ok(RopeScaling::Llama3 {
                factor: field("factor")?,
                low_freq_factor: field("low_freq_factor")?,
                high_freq_factor: field("high_freq_factor")?,
                original_max_position_embeddings: field("original_max_position_embeddings")?,
            }),
            other => Err(Error::BadField {
                path: path.to_path_buf(),
                field: "rope_scaling.rope_type".into(),
                reason: format!("`{other}` is not supported; supported: default, linear, llama3"),
            }),
        }
    }
}

/// RoPE parameters of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeSpec {
    /// The base (`rope_theta`).
    pub theta: f64,
    /// Frequency scaling.
    pub scaling: RopeScaling,
}

impl RopeSpec {
    /// Inverse frequencies for a head of `head_dim`, computed in f64 and rounded once to f32,
    /// the dtype transformers keeps them in.
    pub fn inv_freq(&self, head_dim: usize) -> Vec<f32> {
        let half = head_dim / 2;
        (0..half)
            .map(|i| {
                // The portable power, not libm's: every machine gets the same frequencies.
                let base = 1.0
                    / reprolm_precision::portable::pow_f64(
                        self.theta,
                        (2 * i) as f64 / head_dim as f64,
                    );
                let scaled = match &self.scaling {
                    RopeScaling::None => base,
                    RopeScaling::Linear { factor } => base / factor,
                    RopeScaling::Llama3 {
                        factor,
                        low_freq_factor,
                        high_freq_factor,
                        original_max_position_embeddings,
                    } => {
                        let low_wavelen = original_max_position_embeddings / low_freq_factor;
                        let high_wavelen = original_max_position_embeddings / high_freq_factor;
                        let wavelen = 2.0 * std::f64::consts::PI / base;
                        if wavelen < high_wavelen {
                            base
                        } else if wavelen > low_wavelen {
                            base / factor
                        } else {
                            let smooth = (original_max_position_embeddings / wavelen
                                - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * base / factor + smooth * base
                        }
                    }
                };
                scaled as f32
            })
            .collect()
    }
}

/// cos/sin tables for the positions `(batch, seq)` as two `(batch, seq, head_dim / 2)` tensors.
///
/// The angles are `position * inv_freq` in f32, as transformers forms them with autocast off, and
/// their cos/sin are [`portable::sin_cos`](reprolm_precision::portable::sin_cos)'s: rounded once
/// from f64 (within 0.51 ulps), and the same bits on every machine, where the platform's `sinf`
/// and `cosf` differ between libms in the last bit. Only then are the tables rounded to `dtype`,
/// the policy's RoPE dtype. With f64 the angles are formed in f64 from the same f32 frequencies
/// and taken by f64 `sin`/`cos`.
pub fn cos_sin(
    inv_freq: &[f32],
    positions: &[Vec<usize>],
    dtype: DType,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let b = positions.len();
    let l = positions.first().map_or(0, Vec::len);
    let half = inv_freq.len();
    let mut cos = Vec::with_capacity(b * l * half);
    let mut sin = Vec::with_capacity(b * l * half);
    let wide = dtype == DType::F64;
    for row in positions {
        for &p in row {
            for &f in inv_freq {
                if wide {
                    let a = p as f64 * f as f64;
                    cos.push(a.cos());
                    sin.push(a.sin());
                } else {
                    let (s, c) = reprolm_precision::portable::sin_cos(p as f32 * f);
                    cos.push(c as f64);
                    sin.push(s as f64);
                }
            }
        }
    }
    let to_tensor = |v: Vec<f64>| -> Result<Tensor> {
        let t = if wide {
            Tensor::from_vec(v, (b, l, half), device)?
        } else {
            let v32: Vec<f32> = v.into_iter().map(|x| x as f32).collect();
            Tensor::from_vec(v32, (b, l, half), device)?.to_dtype(dtype)?
        };
        Ok(t)
    };
    Ok((to_tensor(cos)?, to_tensor(sin)?))
}

/// Rotates `x` `(batch, seq, heads, head_dim)` by the tables from [`cos_sin`], in the tables'
/// dtype: `[x1, x2] -> [x1 cos - x2 sin, x2 cos + x1 sin]` (the non-interleaved "rotate half"
/// layout of Llama and Qwen checkpoints).
pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let dtype = cos.dtype();
    let x = x.to_dtype(dtype)?;
    let half = x.dim(3)? / 2;
    let x1 = x.narrow(3, 0, half)?;
    let x2 = x.narrow(3, half, half)?;
    // (batch, seq, half) -> (batch, seq, 1, half) to broadcast over heads.
    let cos = cos.unsqueeze(2)?;
    let sin = sin.unsqueeze(2)?;
    let r1 = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
    let r2 = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
    Ok(Tensor::cat(&[r1, r2], 3)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_scaling_leaves_high_frequencies_and_divides_low_ones() {
        let plain = RopeSpec {
            theta: 500000.0,
            scaling: RopeScaling::None,
        };
        let scaled = RopeSpec {
            theta: 500000.0,
            scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192.0,
            },
        };
        let (a, b) = (plain.inv_freq(128), scaled.inv_freq(128));
        assert_eq!(a[0], b[0], "highest frequency is unchanged");
        let last = a.len() - 1;
        assert!(
            (a[last] / 8.0 - b[last]).abs() <= f32::EPSILON * a[last],
            "lowest is divided by factor"
        );
        assert!(b.iter().zip(&a).all(|(s, p)| s <= p));
    }

    #[test]
    fn rotation_preserves_norm_and_is_identity_at_position_zero() -> Result<()> {
        let dev = Device::Cpu;
        let spec = RopeSpec {
            theta: 10000.0,
            scaling: RopeScaling::None,
        };
        let inv = spec.inv_freq(8);
        // (batch, seq, heads, head_dim): three positions, two heads.
        let x = Tensor::randn(0f32, 1.0, (1, 3, 2, 8), &dev)?;
        let (c, s) = cos_sin(&inv, &[vec![0, 5, 9]], DType::F32, &dev)?;
        let y = apply(&x, &c, &s)?;
        let x0 = x.narrow(1, 0, 1)?.flatten_all()?.to_vec1::<f32>()?;
        let y0 = y.narrow(1, 0, 1)?.flatten_all()?.to_vec1::<f32>()?;
        assert_ne!(
            x.narrow(1, 1, 1)?.flatten_all()?.to_vec1::<f32>()?,
            y.narrow(1, 1, 1)?.flatten_all()?.to_vec1::<f32>()?,
            "position 5 is rotated"
        );
        assert_eq!(x0, y0);
        let nx = x.sqr()?.sum_all()?.to_scalar::<f32>()?;
        let ny = y.sqr()?.sum_all()?.to_scalar::<f32>()?;
        assert!((nx - ny).abs() < 1e-4 * nx);
        Ok(())
    }

    #[test]
    fn unknown_scaling_type_names_the_field() {
        let v = serde_json::json!({"rope_type": "yarn", "factor": 4.0});
        let err = RopeScaling::from_json(&v, Path::new("config.json"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rope_scaling.rope_type") && err.contains("yarn"),
            "{err}"
        );
    }
}
