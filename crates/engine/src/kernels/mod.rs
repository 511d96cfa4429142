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

/// The switches besides the precision policy and the compute mode that decide a run's numbers on
/// `device`, by name, for the run manifest (where resuming compares them): the GEMM family
/// (`REPROLM_GEMM`), whether fused GPU kernels replace composed ops (`REPROLM_FUSED_KERNELS`), and
/// where tokens are chosen (`REPROLM_HOST_PICK`). On the CPU only `REPROLM_GEMM=candle` applies.
///
/// ```
/// let k = reprolm_engine::kernels::recorded(&candle_core::Device::Cpu);
/// assert_eq!(k["gemm"], "cpu");
/// assert_eq!(k["token_choice"], "host");
/// ```
pub fn recorded(device: &candle_core::Device) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if device.is_cuda() {
        out.insert("gemm".into(), gemm::GemmFamily::from_env().name().into());
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
        let gemm = match gemm::GemmFamily::from_env() {
            gemm::GemmFamily::Candle => gemm::GemmFamily::Candle.name(),
            _ => "cpu",
        };
        out.insert("gemm".into(), gemm.into());
        out.insert("token_choice".into(), "host".into());
    }
    out
}

/// Whether a forward pass in `mode` gives each sequence logits that do not depend on its batch
/// (see [`Decoder::batch_invariant`](crate::Decoder::batch_invariant)): every mode but the fast
/// path with candle's batch-dependent GEMM (`REPROLM_GEMM=candle`).
pub fn batch_invariant(mode: reprolm_precision::ComputeMode) -> bool {
    mode.is_deterministic() || gemm::GemmFamily::from_env() != gemm::GemmFamily::Candle
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
