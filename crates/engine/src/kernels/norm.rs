//! RMSNorm, `weight * (x / sqrt(mean(x²) + eps))` over the last dimension with f32 statistics:
//! one entry point ([`rms_norm`]) whose CPU body sums the squares in the order the fused CUDA
//! kernel does, so that the two devices give a row the same bits.
//!
//! The sum of squares is the only reduction in RMSNorm, and its order decides the last bits.
//! candle's CPU sum takes an AVX2 path where the CPU has one, NEON on ARM and a plain loop
//! elsewhere: the same model gave other RMSNorm bits on an Apple laptop than on an x86 server.
//! The order here is fixed by the row's width alone ([`block_width`]), written with plain f32
//! additions and multiplications (Rust never fuses them), so every CPU computes the same bits, and
//! they are those of the fused CUDA kernel (`rms_denominator` in `fused/kernels.cu`):
//!
//! - `T` threads (the block width for the row) each sum `x[i]²` for `i = t, t + T, t + 2T, …` in
//!   order: `acc = acc + x·x`, each operation rounded to f32;
//! - each warp of 32 threads adds its sums as a butterfly: for `o = 16, 8, 4, 2, 1`, lane `l`
//!   takes `acc[l] + acc[l ^ o]` (an addition commutes bit for bit, so every lane ends with the
//!   same sum);
//! - the first warp holds the warps' sums (zero past the last warp) and adds them by the same
//!   butterfly;
//! - `sqrt(sum * (1/cols) + eps)`, with `1/cols` rounded to f32 (the mean as candle takes it),
//!   then each `x / denominator` rounded to `x`'s dtype and multiplied by the weight in it
//!   (transformers' `LlamaRMSNorm` order).
//!
//! Other compute dtypes (f64 statistics) run candle's composed ops, which sum f64 in order on
//! every CPU.

use crate::kernels::Fusion;
use crate::Result;
use candle_core::{DType, Tensor};

/// Threads the fused CUDA kernel gives a row of `cols` values (`fused::norm_config`): 1024 for
/// rows of 1024 or more, else the next power of two, at least one warp.
///
/// ```
/// use reprolm_engine::kernels::norm::block_width;
/// assert_eq!((block_width(24), block_width(128), block_width(1536)), (32, 128, 1024));
/// ```
pub fn block_width(cols: usize) -> usize {
    if cols >= 1024 {
        1024
    } else {
        cols.next_power_of_two().clamp(32, 1024)
    }
}

/// Lanes of a warp.
const WARP: usize = 32;

/// `weight * (x / sqrt(mean(x²) + eps))` of each row of `x` in `x`'s dtype, with f32 statistics,
/// where a kernel applies: the fused CUDA kernel (with `fusion` on), or on the CPU the same order
/// in Rust. `Ok(None)` elsewhere (another statistics dtype, a weight of another dtype, a CUDA
/// run with fused kernels off, a build without CUDA), and the caller runs the composed ops.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use reprolm_engine::kernels::{norm, Fusion};
/// let x = Tensor::new(&[[3f32, 4.0]], &Device::Cpu)?;
/// let w = Tensor::new(&[1f32, 2.0], &Device::Cpu)?;
/// let y = norm::rms_norm(&x, &w, 0.0, DType::F32, Fusion::On)?.expect("the CPU body applies");
/// // mean(x²) = 12.5; 3 / sqrt(12.5) = 0.8485…
/// let y = y.to_vec2::<f32>()?;
/// assert!((y[0][0] - 0.848_528_1).abs() < 1e-6 && (y[0][1] - 2.262_741_7).abs() < 1e-6);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn rms_norm(
    x: &Tensor,
    weight: &Tensor,
    eps: f64,
    statistics: DType,
    fusion: Fusion,
) -> Result<Option<Tensor>> {
    if statistics != DType::F32 || weight.dtype() != x.dtype() {
        return Ok(None);
    }
    if x.device().is_cpu() {
        return cpu(x, weight, eps).map(Some);
    }
    crate::fused::rms_norm(x, weight, eps, fusion)
}

/// The CPU body of [`rms_norm`] (see the module docs for the order).
fn cpu(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let cols = *x.dims().last().unwrap_or(&1);
    if weight.elem_count() != cols {
        return Err(crate::Error::InvalidRequest(format!(
            "rms_norm: a weight of {} values for rows of {cols}",
            weight.elem_count()
        )));
    }
    // 16-bit values widen to f32 exactly.
    let values = x.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    let w = weight.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    let round = |v: f32| -> f32 {
        match dtype {
            DType::BF16 => half::bf16::from_f32(v).to_f32(),
            DType::F16 => half::f16::from_f32(v).to_f32(),
            _ => v,
        }
    };
    let inv_cols = (1.0 / cols as f64) as f32;
    let eps = eps as f32;
    let mut out = Vec::with_capacity(values.len());
    if cols > 0 {
        for row in values.chunks(cols) {
            let denom = (sum_of_squares(row) * inv_cols + eps).sqrt();
            out.extend(
                row.iter()
                    .zip(&w)
                    .map(|(&v, &w)| round(round(v / denom) * w)),
            );
        }
    }
    Ok(Tensor::from_vec(out, x.shape(), x.device())?.to_dtype(dtype)?)
}

/// The sum of `row`'s squares in the fused kernel's order: per-thread strided sums, a butterfly
/// within each warp, the warps' sums by a butterfly in the first warp.
fn sum_of_squares(row: &[f32]) -> f32 {
    let threads = block_width(row.len());
    let mut acc = vec![0f32; threads];
    for (t, a) in acc.iter_mut().enumerate() {
        for &v in row.iter().skip(t).step_by(threads) {
            *a += v * v;
        }
    }
    let warps: Vec<f32> = acc.chunks(WARP).map(butterfly).collect();
    let mut first = [0f32; WARP];
    first[..warps.len()].copy_from_slice(&warps);
    butterfly(&first)
}

/// A warp's `acc = acc + shfl_xor(acc, o)` for `o = 16, 8, 4, 2, 1`, as lane 0 ends it.
fn butterfly(lanes: &[f32]) -> f32 {
    let mut a = [0f32; WARP];
    a.copy_from_slice(lanes);
    let mut o = WARP / 2;
    while o > 0 {
        let prev = a;
        for (l, v) in a.iter_mut().enumerate() {
            *v = prev[l] + prev[l ^ o];
        }
        o /= 2;
    }
    a[0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn rand(rows: usize, cols: usize, dtype: DType, seed: u64) -> Result<Tensor> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let v: Vec<f32> = (0..rows * cols)
            .map(|_| rng.random_range(-4f32..4.0))
            .collect();
        Ok(Tensor::from_vec(v, (rows, cols), &Device::Cpu)?.to_dtype(dtype)?)
    }

    /// Against a float64 RMSNorm, relative to each value: in f32, the sum of squares (up to 5
    /// terms per thread, then 10 tree levels) is within about 15 roundings of the exact one and
    /// its square root half that, then the division and the weight's product add one each; a
    /// 16-bit output rounds twice more (half an ulp each), which dominates; below the normal range
    /// an ulp is absolute.
    #[test]
    fn matches_a_float64_rms_norm() -> Result<()> {
        // Relative bound, and the spacing of the dtype's subnormals (f16's start at 2^-14).
        for (dtype, bound, tiny) in [
            (DType::F32, 16.0 * f32::EPSILON as f64, 2f64.powi(-149)),
            (DType::BF16, 3.0 * 2f64.powi(-8), 2f64.powi(-133)),
            (DType::F16, 3.0 * 2f64.powi(-11), 2f64.powi(-24)),
        ] {
            for cols in [1, 24, 128, 896, 1536, 3584, 5000] {
                let x = rand(3, cols, dtype, cols as u64)?;
                let w = rand(1, cols, DType::F32, 7)?
                    .squeeze(0)?
                    .affine(0.25, 1.0)?
                    .to_dtype(dtype)?;
                let got = rms_norm(&x, &w, 1e-6, DType::F32, Fusion::On)?
                    .expect("the CPU body applies")
                    .to_dtype(DType::F64)?
                    .to_vec2::<f64>()?;
                let x64 = x.to_dtype(DType::F64)?.to_vec2::<f64>()?;
                let w64 = w.to_dtype(DType::F64)?.to_vec1::<f64>()?;
                for (r, row) in x64.iter().enumerate() {
                    let ms = row.iter().map(|v| v * v).sum::<f64>() / cols as f64;
                    let denom = (ms + 1e-6).sqrt();
                    for (c, &v) in row.iter().enumerate() {
                        let want = v / denom * w64[c];
                        assert!(
                            (got[r][c] - want).abs() <= bound * want.abs() + tiny,
                            "{dtype:?} cols {cols} [{r}][{c}]: {} against {want}",
                            got[r][c]
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// The butterfly is the warp shuffle's: every lane ends with the same sum, and for values
    /// that add exactly the sum is the plain one.
    #[test]
    fn the_butterfly_adds_every_lane() {
        let lanes: Vec<f32> = (0..32).map(|i| i as f32).collect();
        assert_eq!(butterfly(&lanes), (0..32).sum::<i32>() as f32);
        // 1 and 31 values of 2^-24: a sequential sum loses every small term (1 + 2^-24 ties to
        // 1). The butterfly loses only lane 16's, which it adds to lane 0 first; then lane 0
        // gains 2, 4, 8 and 16 of them at once, each sum exact: 1 + 30 * 2^-24.
        let e = 2f32.powi(-24);
        let mut lanes = vec![e; 32];
        lanes[0] = 1.0;
        assert_eq!(lanes.iter().fold(0f32, |s, &v| s + v), 1.0);
        assert_eq!(butterfly(&lanes), 1.0 + 30.0 * e);
    }

    /// A row's result depends on its own values only: not on the other rows, their number, or
    /// its place among them.
    #[test]
    fn a_row_does_not_depend_on_the_others() -> Result<()> {
        let bits = reprolm_precision::deterministic::value_bits;
        for dtype in [DType::F32, DType::BF16] {
            let x = rand(9, 896, dtype, 3)?;
            let w = rand(1, 896, dtype, 4)?.squeeze(0)?;
            let all = rms_norm(&x, &w, 1e-6, DType::F32, Fusion::On)?.expect("applies");
            for (start, m) in [(4, 1), (3, 2), (0, 9)] {
                let part = rms_norm(&x.narrow(0, start, m)?, &w, 1e-6, DType::F32, Fusion::Off)?
                    .expect("applies");
                assert_eq!(bits(&part)?, bits(&all.narrow(0, start, m)?)?, "{dtype:?}");
            }
        }
        Ok(())
    }

    #[test]
    fn other_statistics_and_mixed_dtypes_are_left_to_the_composed_ops() -> Result<()> {
        let x = rand(2, 8, DType::BF16, 1)?;
        let w = rand(1, 8, DType::BF16, 2)?.squeeze(0)?;
        assert!(rms_norm(&x, &w, 1e-6, DType::F64, Fusion::On)?.is_none());
        assert!(rms_norm(&x, &w.to_dtype(DType::F32)?, 1e-6, DType::F32, Fusion::On)?.is_none());
        Ok(())
    }
}

/// The CPU body against the fused CUDA kernel, bit for bit.
#[cfg(all(test, feature = "cuda"))]
mod gpu_tests {
    use super::*;
    use crate::kernels::gpu_test::{bits, device};
    use candle_core::Device;

    #[test]
    fn the_cpu_and_the_fused_kernel_give_the_same_bits() -> Result<()> {
        let Some(dev) = device() else {
            return Ok(());
        };
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            for cols in [1, 24, 128, 896, 1536, 3584, 5000] {
                let x = (Tensor::randn(0f32, 2.0, (5, cols), &Device::Cpu)?).to_dtype(dtype)?;
                let w = (Tensor::randn(1f32, 0.1, cols, &Device::Cpu)?).to_dtype(dtype)?;
                let on_cpu = rms_norm(&x, &w, 1e-6, DType::F32, Fusion::On)?.expect("CPU body");
                let on_gpu = rms_norm(
                    &x.to_device(&dev)?,
                    &w.to_device(&dev)?,
                    1e-6,
                    DType::F32,
                    Fusion::On,
                )?
                .expect("the fused kernel applies");
                assert_eq!(bits(&on_cpu), bits(&on_gpu), "{dtype:?} cols {cols}");
            }
        }
        Ok(())
    }
}
