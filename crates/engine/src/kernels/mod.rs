//! The kernels the decoder's layers call, one module per family, each with its CPU and CUDA
//! bodies side by side so that the model code never branches on the device.
//!
//! - [`gemm`]: every projection (q/k/v/o, gate/up/down, LM head) through one GEMM layer whose
//!   reduction order over K does not depend on the number of rows.
//! - [`attention`]: causal attention over the paged KV cache, each query reduced over its own
//!   sequence's keys in fixed splits, for prefill and decode alike.
//! - [`sampling`]: the sampled choice of the next token, on integers, the same bits on the CPU
//!   and the GPU.

pub mod attention;
pub mod gemm;
pub mod sampling;

use std::collections::BTreeMap;

/// Which kernels compute a run's numbers (`--kernels`): the batch-invariant ones, the default, with
/// which a sequence's numbers do not depend on its batch; or the batch-dependent choices other
/// engines make (candle's matmul: cuBLAS picking its kernel per call, candle's CPU GEMM taking
/// another path for one row), for reproducing the problem the paper measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KernelChoice {
    /// Batch invariant (the GEMM layer and the fixed-split attention).
    #[default]
    Invariant,
    /// The projections through candle's own matmul: batch dependent.
    Heuristic,
}

impl KernelChoice {
    /// `invariant` or `heuristic`.
    ///
    /// ```
    /// use reprolm_engine::kernels::KernelChoice;
    /// assert_eq!(KernelChoice::parse("heuristic")?, KernelChoice::Heuristic);
    /// assert!(KernelChoice::parse("fast").unwrap_err().contains("invariant"));
    /// # Ok::<(), String>(())
    /// ```
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        match text {
            "invariant" => Ok(KernelChoice::Invariant),
            "heuristic" => Ok(KernelChoice::Heuristic),
            other => Err(format!(
                "unknown kernels `{other}`: `invariant` (batch invariant, the default) or \
                 `heuristic` (batch dependent, as other engines)"
            )),
        }
    }

    /// The name [`parse`](Self::parse) reads, as manifests record it.
    pub fn as_str(self) -> &'static str {
        match self {
            KernelChoice::Invariant => "invariant",
            KernelChoice::Heuristic => "heuristic",
        }
    }
}

/// Everything besides the precision policy's dtypes that decides a run's numbers on `device`, by
/// name, for the run manifest (where resuming compares it whole): the kernel choice and the GEMM
/// family it gives, the order of the matmuls' reduction over K (`mode`), the attention route and
/// its split size (from the policy's attention and KV-cache dtypes and the model's `head_dim`),
/// whether fused GPU kernels replace composed ops (`REPROLM_FUSED_KERNELS`), and where tokens are
/// chosen (`REPROLM_HOST_PICK`).
///
/// ```
/// use candle_core::Device;
/// use reprolm_engine::kernels::{recorded, KernelChoice};
/// use reprolm_precision::{ComputeMode, PrecisionPolicy, ReductionOrder};
/// let bf16 = PrecisionPolicy::preset("bf16")?;
/// let k = recorded(&Device::Cpu, KernelChoice::Invariant, ComputeMode::Fast, &bf16, 128);
/// assert_eq!((k["kernels"].as_str(), k["gemm"].as_str()), ("invariant", "cpu"));
/// assert_eq!((k["token_choice"].as_str(), k["reduction"].as_str()), ("host", "sequential"));
/// assert_eq!(k["attention"], "cpu, splits of 256");
/// let k = recorded(&Device::Cpu, KernelChoice::Heuristic, ComputeMode::Fast, &bf16, 128);
/// assert_eq!((k["gemm"].as_str(), k["reduction"].as_str()), ("candle (batch dependent)", "batch dependent"));
/// let tree = ComputeMode::Deterministic(ReductionOrder::tree(4)?);
/// let k = recorded(&Device::Cpu, KernelChoice::Invariant, tree, &bf16, 128);
/// assert_eq!(k["reduction"], "tree of 4 chunks");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn recorded(
    device: &candle_core::Device,
    choice: KernelChoice,
    mode: reprolm_precision::ComputeMode,
    policy: &reprolm_precision::PrecisionPolicy,
    head_dim: usize,
) -> BTreeMap<String, String> {
    use reprolm_precision::{Component, ComputeMode};
    let mut out = BTreeMap::new();
    out.insert("kernels".into(), choice.as_str().into());
    let family = match mode {
        ComputeMode::Fast => gemm::GemmFamily::for_choice(choice),
        ComputeMode::Deterministic(_) => gemm::GemmFamily::from_env(),
    };
    let reduction = match mode {
        ComputeMode::Deterministic(order) if order.chunks() > 1 => {
            format!("tree of {} chunks", order.chunks())
        }
        _ if family == gemm::GemmFamily::Candle => "batch dependent".into(),
        _ if device.is_cuda() => "fixed per weight shape".into(),
        _ => "sequential".into(),
    };
    out.insert("reduction".into(), reduction);
    out.insert(
        "attention".into(),
        attention::route_name(
            device,
            policy.dtype(Component::Attention),
            policy.dtype(Component::KvCache),
            head_dim,
        ),
    );
    if device.is_cuda() {
        out.insert("gemm".into(), family.name().into());
        let fused = if reprolm_precision::fused_kernels_enabled() {
            "on"
        } else {
            "off"
        };
        out.insert("fused_kernels".into(), fused.into());
        let pick = if crate::generate::host_pick() {
            "host"
        } else {
            "device"
        };
        out.insert("token_choice".into(), pick.into());
    } else {
        let gemm = match family {
            gemm::GemmFamily::Candle => family.name(),
            _ => "cpu",
        };
        out.insert("gemm".into(), gemm.into());
        out.insert("token_choice".into(), "host".into());
    }
    out
}

/// Whether a forward pass in `mode` gives each sequence logits that do not depend on its batch
/// (see [`Decoder::batch_invariant`](crate::Decoder::batch_invariant)): every mode but the fast
/// path with the heuristic kernels (deterministic mode overrides the choice).
pub fn batch_invariant(mode: reprolm_precision::ComputeMode, choice: KernelChoice) -> bool {
    mode.is_deterministic() || choice == KernelChoice::Invariant
}

/// Whether every kernel family has a batch-invariant body for `device` (the CPU and CUDA; not
/// Metal), so that deterministic mode can be asked for there.
pub fn batch_invariant_on(device: &candle_core::Device) -> bool {
    device.is_cpu() || device.is_cuda()
}

/// What the GPU unit tests of the kernels share: the device (or a note that there is none) and
/// the bits of a result.
#[cfg(all(test, feature = "cuda"))]
pub(crate) mod gpu_test {
    use candle_core::{DType, Device, Tensor};

    /// CUDA device 0, or `None` after saying the test is skipped (CI has no GPU).
    pub fn device() -> Option<Device> {
        match Device::new_cuda(0) {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("skipped: no CUDA device ({e})");
                None
            }
        }
    }

    /// Every value's f32 bits.
    pub fn bits(t: &Tensor) -> Vec<u32> {
        t.to_dtype(DType::F32)
            .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
            .expect("readable")
            .into_iter()
            .map(f32::to_bits)
            .collect()
    }
}
