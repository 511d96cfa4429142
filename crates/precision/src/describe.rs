//! What a policy means op by op: the one-line explanation of each component's dtype that
//! `reprolm policies` prints, written from what the engine's decoder actually does.

use crate::policy::{dtype_name, Component, PrecisionPolicy};
use candle_core::DType;
use std::fmt;

/// The dtype that reductions of a `d` computation run in: f32, or f64 when `d` is f64. Softmax,
/// RMSNorm statistics and matmul accumulation never run in a 16-bit type.
fn wide(d: DType) -> &'static str {
    if d == DType::F64 {
        "f64"
    } else {
        "f32"
    }
}

/// How a matmul in `d` runs on the engine's devices.
fn matmul_note(d: DType) -> String {
    match d {
        DType::BF16 | DType::F16 => format!(
            "{n} operands, f32 accumulation, result rounded once to {n} (cuBLAS on CUDA; on \
             CPU the {n} values are widened to f32 exactly and the f32 product rounded)",
            n = dtype_name(d)
        ),
        other => format!("{} operands and accumulation", dtype_name(other)),
    }
}

impl PrecisionPolicy {
    /// One line saying what runs in which dtype for component `c` under this policy.
    ///
    /// ```
    /// use reprolm_precision::{Component, PrecisionPolicy};
    /// let lc = PrecisionPolicy::preset("layercast")?;
    /// assert!(lc.describe(Component::LinearStorage).contains("cast to f32"));
    /// # Ok::<(), reprolm_precision::Error>(())
    /// ```
    pub fn describe(&self, c: Component) -> String {
        let d = self.dtype(c);
        let n = dtype_name(d);
        let act = dtype_name(self.dtype(Component::Activations));
        match c {
            Component::LinearStorage => {
                let compute = self.dtype(Component::MatmulCompute);
                if compute == d {
                    format!("q/k/v/o and gate/up/down weights and biases held in {n}")
                } else {
                    format!(
                        "q/k/v/o and gate/up/down weights and biases held in {n}; cast to {} just \
                         for each matmul, the {n} copy is the only one kept",
                        dtype_name(compute)
                    )
                }
            }
            Component::MatmulCompute => format!(
                "x·Wᵀ + b of every projection: input cast to {n}; {}; bias added {}; SiLU \
                 computed in {w} and rounded to {n}, gate·up in {n}",
                matmul_note(d),
                if matches!(d, DType::BF16 | DType::F16) {
                    "in f32 before that rounding on CPU, in {n} after it on CUDA"
                } else {
                    "in {n}"
                }
                .replace("{n}", n),
                w = wide(d)
            ),
            Component::Activations => format!(
                "residual stream and residual adds, projection outputs, norm weights and norm \
                 outputs held in {n}"
            ),
            Component::Embedding => format!(
                "token embedding table held in {n}; rows gathered in {n}, then cast to {act}"
            ),
            Component::Norm => format!(
                "RMSNorm (and Qwen3's q/k head norms): input cast to {n}; mean of squares, + eps, \
                 1/sqrt and the scaling in {n}; result cast to {act}, then times the {act} weight"
            ),
            Component::Rope => format!(
                "inv_freq computed in f64, stored f32; angles pos·inv_freq and cos/sin in {}; \
                 tables rounded to {n}; q/k rotation (x·cos ± rotate_half(x)·sin) in {n}",
                wide(d)
            ),
            Component::Attention => format!(
                "q·kᵀ ({}); ×1/√head_dim in {w}, rounded to {n}; mask added; softmax in {w}, \
                 probabilities rounded to {n}; probs·v in {n}",
                matmul_note(d),
                w = wide(d)
            ),
            Component::KvCache => format!(
                "keys (after RoPE) and values stored in {n}; attention reads them back from the \
                 cache, so it sees exactly what is stored"
            ),
            Component::LmHead => format!(
                "final-norm output cast to {n}; LM head weight held in {n} (a tied head shares \
                 the embedding table when both are {n}, else holds its own copy); matmul: {}",
                matmul_note(d)
            ),
            Component::Logits => format!(
                "logits returned in {n}; log-softmax and sampling widen them to f32 (or keep f64)"
            ),
        }
    }
}

/// The full table: one row per component with its dtype and what runs in it.
///
/// ```
/// let text = reprolm_precision::PrecisionPolicy::preset("bf16")?.to_string();
/// assert!(text.starts_with("policy bf16\n"));
/// assert!(text.contains("kv_cache        bf16"));
/// # Ok::<(), reprolm_precision::Error>(())
/// ```
impl fmt::Display for PrecisionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "policy {}", self.name)?;
        writeln!(f, "{:<15} {:<5}  what runs in which dtype", "component", "dtype")?;
        for c in Component::ALL {
            writeln!(
                f,
                "{:<15} {:<5}  {}",
                c.key(),
                dtype_name(self.dtype(c)),
                self.describe(c)
            )?;
        }
        Ok(())
    }
}
