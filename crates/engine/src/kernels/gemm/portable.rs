//! The GEMM of the portable kernel tier: `x · wᵀ (+ bias)` in one fixed order on the CPU and the
//! GPU, so that both compute the same bits.
//!
//! The order is the CPU's ([`reprolm_precision::deterministic::linear`] with
//! [`ReductionOrder::SEQUENTIAL`]): element `i` of K goes into lane `i % 8` as a fused
//! multiply-add into an f32 accumulator, the 8 lanes are combined by halving, the bias is added
//! in f32 and the sum rounded once to the dtype. The CUDA body (`portable.cu`) gives each output
//! 8 threads that do exactly that. It is slow by design: the portable tier is for recomputing a
//! published result bit for bit on other hardware, not for speed. The GEMM layer runs the CUDA body
//! under `--kernels portable` ([`GemmFamily::Portable`](super::GemmFamily::Portable)); on the CPU
//! its own fixed-order kernel is this order.

use crate::Result;
use candle_core::{DType, Tensor};
use reprolm_precision::deterministic::{self, ReductionOrder};

/// `x · wᵀ (+ bias)` for `x: (M, K)`, `w: (N, K)` and the bias in `compute` (f32, bf16 or f16;
/// operands of another dtype are rounded to it first), on the operands' device, in the portable
/// order.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// let x = Tensor::new(&[[1f32, 2.0, 3.0]], &Device::Cpu)?;
/// let w = Tensor::new(&[[1f32, 1.0, 1.0], [0.5, 0.0, 2.0]], &Device::Cpu)?;
/// let y = reprolm_engine::kernels::gemm::portable::linear(&x, &w, None, DType::F32)?;
/// assert_eq!(y.to_vec2::<f32>()?, vec![vec![6.0, 6.5]]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn linear(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, compute: DType) -> Result<Tensor> {
    if !matches!(compute, DType::F32 | DType::BF16 | DType::F16) {
        return Err(crate::Error::InvalidRequest(format!(
            "the portable GEMM computes in f32, bf16 or f16, not {compute:?}"
        )));
    }
    if x.device().is_cpu() {
        return Ok(deterministic::linear(
            x,
            w,
            bias,
            compute,
            ReductionOrder::SEQUENTIAL,
        )?);
    }
    imp::linear(x, w, bias, compute)
}

#[cfg(not(feature = "cuda"))]
mod imp {
    use crate::Result;
    use candle_core::{DType, Tensor};

    pub fn linear(x: &Tensor, _: &Tensor, _: Option<&Tensor>, _: DType) -> Result<Tensor> {
        Err(crate::Error::InvalidRequest(format!(
            "the portable GEMM has no body for {:?} in this build (CUDA needs --features cuda)",
            x.device()
        )))
    }
}

#[cfg(feature = "cuda")]
mod imp {
    use crate::Result;
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::WrapErr;
    use candle_core::{CudaStorage, DType, Layout, Shape, Tensor};
    use reprolm_precision::cuda::{ptx, suffix, LinearOperands, Output};

    const SOURCE: &str = include_str!("portable.cu");
    const MODULE: &str = "reprolm_portable_gemm";
    const THREADS: u32 = 256;

    struct PortableLinear;

    impl PortableLinear {
        fn launch(
            &self,
            x: (&CudaStorage, &Layout),
            w: (&CudaStorage, &Layout),
            bias: Option<(&CudaStorage, &Layout)>,
        ) -> candle_core::Result<(CudaStorage, Shape)> {
            let dev = x.0.device();
            let (m, k) = x.1.shape().dims2()?;
            let (n, kw) = w.1.shape().dims2()?;
            let dtype = x.0.dtype();
            let bias_ok =
                bias.is_none_or(|(b, l)| b.dtype() == dtype && l.shape().elem_count() == n);
            if k != kw || !widens(w.0.dtype(), dtype) || !bias_ok {
                candle_core::bail!(
                    "portable linear: x {:?} {dtype:?}, w {:?} {:?}",
                    x.1.dims(),
                    w.1.dims(),
                    w.0.dtype()
                );
            }
            let outputs = m * n;
            if outputs * 8 > (u32::MAX as usize) || k > i32::MAX as usize {
                candle_core::bail!("portable linear: {m} x {n} x {k} is too large for one launch");
            }
            let name = format!(
                "portable_linear_{}_{}",
                suffix(dtype)?,
                suffix(w.0.dtype())?
            );
            let func = dev.get_or_load_custom_func(&name, MODULE, ptx(MODULE, SOURCE)?)?;
            let operands = LinearOperands::of(x, w, bias)?;
            let out = Output::alloc(dev, dtype, outputs)?;
            let dims = [m as i32, n as i32, k as i32];
            let mut b = func.builder();
            operands.push(&mut b);
            out.push(&mut b);
            for d in &dims {
                b.arg(d);
            }
            let cfg = LaunchConfig {
                grid_dim: ((outputs * 8).div_ceil(THREADS as usize).max(1) as u32, 1, 1),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            // Safety: the arguments match the kernel's signature; shapes were checked above.
            unsafe { b.launch(cfg) }.w()?;
            Ok((out.into_storage(dev), Shape::from((m, n))))
        }
    }

    reprolm_precision::cuda_linear_op!(PortableLinear, "reprolm-portable-linear");

    /// Whether a weight stored in `storage` is read in place for `compute` (the same dtype, or a
    /// 16-bit weight under f32 compute, which widens exactly); else it is rounded to `compute`
    /// first, as the CPU body rounds it.
    fn widens(storage: DType, compute: DType) -> bool {
        storage == compute || (compute == DType::F32 && matches!(storage, DType::BF16 | DType::F16))
    }

    pub fn linear(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, compute: DType) -> Result<Tensor> {
        let x = x.to_dtype(compute)?.contiguous()?;
        let w = if widens(w.dtype(), compute) {
            w.contiguous()?
        } else {
            w.to_dtype(compute)?.contiguous()?
        };
        Ok(match bias {
            Some(b) => {
                let b = b.to_dtype(compute)?.contiguous()?;
                x.apply_op3_no_bwd(&w, &b, &PortableLinear)?
            }
            None => x.apply_op2_no_bwd(&w, &PortableLinear)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn f64_and_other_dtypes_are_refused() {
        let x = Tensor::zeros((1, 4), DType::F64, &Device::Cpu).unwrap();
        let err = linear(&x, &x, None, DType::F64).unwrap_err().to_string();
        assert!(err.contains("f32, bf16 or f16"), "{err}");
    }
}

/// The CUDA body against the CPU's, bit for bit.
#[cfg(all(test, feature = "cuda"))]
mod gpu_tests {
    use super::*;
    use crate::kernels::gpu_test::{bits, device};
    use candle_core::Device;

    #[test]
    fn the_cuda_body_gives_the_cpus_bits() -> Result<()> {
        let Some(dev) = device() else {
            return Ok(());
        };
        // (compute, weight storage): the 16-bit policies, f32, and LayerCast's bf16 weights
        // under f32 compute.
        for (dtype, storage) in [
            (DType::F32, DType::F32),
            (DType::BF16, DType::BF16),
            (DType::F16, DType::F16),
            (DType::F32, DType::BF16),
            (DType::F32, DType::F16),
        ] {
            // K with and without a tail of fewer than 8, N not a multiple of 4, 1 to 5 rows.
            for (m, n, k) in [(1, 7, 3), (3, 33, 64), (5, 96, 1536), (2, 256, 1001)] {
                let x = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu)?.to_dtype(dtype)?;
                let w =
                    (Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu)? * 0.05)?.to_dtype(storage)?;
                let b = Tensor::randn(0f32, 0.1, n, &Device::Cpu)?.to_dtype(dtype)?;
                for bias in [None, Some(&b)] {
                    let cpu = linear(&x, &w, bias, dtype)?;
                    let gpu = linear(
                        &x.to_device(&dev)?,
                        &w.to_device(&dev)?,
                        bias.map(|b| b.to_device(&dev)).transpose()?.as_ref(),
                        dtype,
                    )?;
                    assert_eq!(
                        bits(&cpu),
                        bits(&gpu),
                        "{dtype:?} x {storage:?} {m}x{n}x{k} bias {}",
                        bias.is_some()
                    );
                }
            }
        }
        Ok(())
    }
}
