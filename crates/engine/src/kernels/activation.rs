//! SiLU, `x / (1 + e^-x)`, for the MLP's composed path (the fused `silu · up` kernel serves GPUs
//! with fused kernels on). On the CPU an f32 SiLU takes the portable exponential
//! ([`reprolm_precision::portable::exp`]) rather than libm's, so its bits do not depend on the
//! machine's C library; elsewhere (CUDA, f64) it is candle's op, in the same formula.

use crate::Result;
use candle_core::{DType, Tensor};

/// SiLU of every element of `x`, in `x`'s dtype.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[0f32, 1.0, -2.0], &Device::Cpu)?;
/// let y = reprolm_engine::kernels::activation::silu(&x)?.to_vec1::<f32>()?;
/// assert_eq!(y[0], 0.0);
/// assert!((y[1] - 1.0 / (1.0 + (-1f32).exp())).abs() < 1e-7);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn silu(x: &Tensor) -> Result<Tensor> {
    if !(x.device().is_cpu() && x.dtype() == DType::F32) {
        return Ok(candle_nn::ops::silu(x)?);
    }
    let exp = reprolm_precision::portable::exp;
    let values = x.flatten_all()?.to_vec1::<f32>()?;
    let out: Vec<f32> = values.iter().map(|&v| v / (1.0 + exp(-v))).collect();
    Ok(Tensor::from_vec(out, x.shape(), x.device())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Against float64 over the range activations take, and through the infinities.
    #[test]
    fn cpu_silu_matches_float64() -> Result<()> {
        let x = (Tensor::randn(0f32, 6.0, 100_000, &Device::Cpu)?).to_vec1::<f32>()?;
        let mut all = x.clone();
        all.extend([
            0.0,
            -0.0,
            90.0,
            -90.0,
            -200.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ]);
        let y = silu(&Tensor::new(all.as_slice(), &Device::Cpu)?)?.to_vec1::<f32>()?;
        for (&v, &got) in all.iter().zip(&y) {
            let want = v as f64 / (1.0 + (-(v as f64)).exp());
            if v == f32::NEG_INFINITY {
                assert!(got.is_nan() || got == 0.0, "silu(-inf) = {got}");
                continue;
            }
            if v == f32::INFINITY {
                assert_eq!(got, f32::INFINITY);
                continue;
            }
            // Below -88, e^-x overflows f32 and the formula gives -0 for a true value under
            // 1e-36 (as libm's and candle's do): an absolute floor covers it.
            let err = (got as f64 - want).abs() - 1e-36;
            assert!(
                err <= 3.0 * f32::EPSILON as f64 * want.abs().max(f32::MIN_POSITIVE as f64),
                "silu({v}) = {got}, want {want}"
            );
        }
        Ok(())
    }
}
