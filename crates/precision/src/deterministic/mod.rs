//! Batch-invariant CPU kernels: every output element is reduced in one fixed order that depends
//! only on the reduction length, never on the batch size, the output width, the row's position
//! or the number of threads.
//!
//! candle's CPU GEMM picks its path by shape (one row takes another path than two), so a
//! sequence's numbers would change with what else is in its batch. The kernels here trade some
//! speed for a documented order:
//!
//! - [`linear`] computes `x · wᵀ (+ bias)`; [`partial_sums`] and [`tree_sum`] expose the same
//!   computation in two steps for tensor parallelism (see [`ReductionOrder`] for the contract).
//!
//! The innermost order (the *lane order*) is the same everywhere: a dot product of length `n`
//! keeps [`LANES`] partial sums; element `i` goes into lane `i % LANES` in increasing `i` as a
//! fused multiply-add (`lane = fma(a[i], b[i], lane)`, one rounding, as GPUs and BLAS kernels
//! compute), and the lanes are combined by halving: lane `l` += lane `l + w` for
//! `w = LANES/2, …, 2, 1`. An FMA is exactly specified, so the vector path (AVX2 + FMA, chosen at
//! run time) and the portable one (which calls the C library's `fma`, much slower) agree bit for
//! bit.
//! Accumulation is in f32 for bf16, f16 and f32 operands (16-bit values widen exactly) and in f64
//! for f64.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use reprolm_precision::deterministic::{linear, ReductionOrder};
//! let x = Tensor::new(&[[1f32, 2.0, 3.0, 4.0]], &Device::Cpu)?;
//! let w = Tensor::new(&[[1f32, 1.0, 1.0, 1.0], [0.5, 0.0, 0.0, 0.0]], &Device::Cpu)?;
//! let y = linear(&x, &w, None, DType::F32, ReductionOrder::tree(2)?)?;
//! assert_eq!(y.to_vec2::<f32>()?, vec![vec![10.0, 0.5]]);
//! # Ok::<(), reprolm_precision::Error>(())
//! ```

mod matmul;
mod mode;

pub use matmul::{linear, partial_sums, round_output, tree_sum};
pub use mode::{ComputeMode, ReductionOrder};

use crate::{Error, Result};
use candle_core::{DType, Tensor};
use std::ops::{Add, Div, Mul, Sub};

/// Number of partial sums a dot product keeps (see the module docs for the order). Eight f32
/// lanes fill one AVX register; the number is part of the numerical contract, not a tuning knob.
pub const LANES: usize = 8;

/// The accumulator type of a kernel: f32, or f64 for f64 policies.
pub(crate) trait Float:
    Copy
    + Send
    + Sync
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + 'static
{
    const ZERO: Self;
    /// The candle dtype of this accumulator.
    const DTYPE: DType;
    /// `self · a + b` with one rounding.
    fn mul_add(self, a: Self, b: Self) -> Self;
    fn from_f64(v: f64) -> Self;
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    const DTYPE: DType = DType::F32;
    fn mul_add(self, a: Self, b: Self) -> Self {
        f32::mul_add(self, a, b)
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const DTYPE: DType = DType::F64;
    fn mul_add(self, a: Self, b: Self) -> Self {
        f64::mul_add(self, a, b)
    }
    fn from_f64(v: f64) -> Self {
        v
    }
}

/// The accumulator dtype for a computation in `dtype`: f64 for f64, f32 otherwise.
pub fn accumulator_dtype(dtype: DType) -> DType {
    if dtype == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

/// The values of `t` rounded to `dtype` and widened to the accumulator `T`, row-major.
fn values<T: Float>(t: &Tensor, dtype: DType) -> Result<Vec<T>> {
    let t = t.to_dtype(dtype)?.to_dtype(T::DTYPE)?.flatten_all()?;
    Ok(match T::DTYPE {
        DType::F64 => cast_vec(t.to_vec1::<f64>()?),
        _ => cast_vec(t.to_vec1::<f32>()?),
    })
}

/// Moves a `Vec<f32>`/`Vec<f64>` into `Vec<T>` when `T` is that type (checked by `TypeId`).
fn cast_vec<S: 'static, T: 'static>(v: Vec<S>) -> Vec<T> {
    let any: Box<dyn std::any::Any> = Box::new(v);
    *any.downcast::<Vec<T>>()
        .expect("accumulator type matches its dtype")
}

/// A tensor of `T` values with `dims`, on the CPU.
fn tensor_from<T: Float>(v: Vec<T>, dims: &[usize]) -> Result<Tensor> {
    let dev = candle_core::Device::Cpu;
    Ok(match T::DTYPE {
        DType::F64 => Tensor::from_vec(cast_vec::<T, f64>(v), dims, &dev)?,
        _ => Tensor::from_vec(cast_vec::<T, f32>(v), dims, &dev)?,
    })
}

/// Fails unless `t` lives on the CPU: these kernels have no GPU implementation, and a silent
/// fallback to a non-deterministic kernel would defeat their purpose.
fn require_cpu(op: &'static str, t: &Tensor) -> Result<()> {
    if t.device().is_cpu() {
        Ok(())
    } else {
        Err(Error::DeterministicDevice {
            op,
            device: format!("{:?}", t.device().location()),
        })
    }
}

/// The dot product of `a` and `b` (equal lengths) in the lane order of the module docs.
#[cfg(test)]
fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let [[s]] = tile::<T, 1, 1>([a], [b]);
    s
}

/// `R × C` dot products at once: `out[r][c] = dot(xs[r], ws[c])`. Each output keeps its own
/// [`LANES`] accumulators, so its value is the same as a lone [`dot`]; sharing the loads across
/// the tile is only what makes it fast.
///
/// The last, partial block of `n % LANES` elements is run as a full block padded with zeros: the
/// padded lanes get `fma(0, 0, lane)`, which leaves them unchanged (an accumulator that starts at
/// `+0.0` never becomes `-0.0` in round-to-nearest), so the order is the documented one, and the
/// accumulators can stay in registers (a loop over a variable number of lanes would force them
/// into memory and cost a factor of five).
#[cfg(test)]
fn tile<T: Float, const R: usize, const C: usize>(xs: [&[T]; R], ws: [&[T]; C]) -> [[T; C]; R] {
    let mut acc = [[[T::ZERO; LANES]; C]; R];
    tile_lanes(&mut acc, xs, ws);
    std::array::from_fn(|r| std::array::from_fn(|c| combine_lanes(acc[r][c])))
}

/// The lane loop of [`tile`] on accumulators that may already hold the sums of earlier
/// elements: element `i` of the slices goes into lane `i % LANES`, so a caller that splits a
/// reduction into pieces whose lengths are multiples of [`LANES`] and runs them in order gets
/// the same lanes as one call over the whole.
#[inline(always)]
fn tile_lanes<T: Float, const R: usize, const C: usize>(
    acc: &mut [[[T; LANES]; C]; R],
    xs: [&[T]; R],
    ws: [&[T]; C],
) {
    let n = xs[0].len();
    let full = n - n % LANES;
    let mut i = 0;
    while i < full {
        let xb: [&[T; LANES]; R] =
            std::array::from_fn(|r| xs[r][i..i + LANES].try_into().expect("lane block"));
        let wb: [&[T; LANES]; C] =
            std::array::from_fn(|c| ws[c][i..i + LANES].try_into().expect("lane block"));
        lane_block(acc, xb, wb);
        i += LANES;
    }
    if full < n {
        let pad = |s: &[T]| {
            let mut p = [T::ZERO; LANES];
            p[..n - full].copy_from_slice(&s[full..n]);
            p
        };
        let xp: [[T; LANES]; R] = std::array::from_fn(|r| pad(xs[r]));
        let wp: [[T; LANES]; C] = std::array::from_fn(|c| pad(ws[c]));
        lane_block(
            acc,
            std::array::from_fn(|r| &xp[r]),
            std::array::from_fn(|c| &wp[c]),
        );
    }
}

/// One block of [`LANES`] elements into every accumulator of a tile.
#[inline(always)]
fn lane_block<T: Float, const R: usize, const C: usize>(
    acc: &mut [[[T; LANES]; C]; R],
    xb: [&[T; LANES]; R],
    wb: [&[T; LANES]; C],
) {
    for r in 0..R {
        for c in 0..C {
            for l in 0..LANES {
                acc[r][c][l] = xb[r][l].mul_add(wb[c][l], acc[r][c][l]);
            }
        }
    }
}

/// Halving combination of the lanes: `l += l + w` for `w = LANES/2 … 1`; the result is lane 0.
#[inline(always)]
fn combine_lanes<T: Float>(mut a: [T; LANES]) -> T {
    let mut w = LANES / 2;
    while w > 0 {
        for l in 0..w {
            a[l] = a[l] + a[l + w];
        }
        w /= 2;
    }
    a[0]
}

/// Every bit of a tensor's values, each widened to f64 (exact from any float dtype), in order:
/// what a bitwise comparison of two results compares, whatever their dtype.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use reprolm_precision::deterministic::value_bits;
/// let t = Tensor::new(&[1.5f32, -0.0], &Device::Cpu)?;
/// assert_eq!(value_bits(&t)?, [1.5f64.to_bits(), (-0.0f64).to_bits()]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn value_bits(t: &Tensor) -> candle_core::Result<Vec<u64>> {
    Ok(t.to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?
        .into_iter()
        .map(f64::to_bits)
        .collect())
}

/// [`value_bits`] for this module's tests.
#[cfg(test)]
fn bits(t: &Tensor) -> Vec<u64> {
    value_bits(t).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_follows_the_documented_lane_order() {
        // 11 elements: lanes 0..2 take two products, lanes 3..7 one.
        let a: Vec<f32> = (0..11).map(|i| 1.0 + i as f32 * 1e-3).collect();
        let b: Vec<f32> = (0..11).map(|i| (i as f32 - 5.0) * 0.37).collect();
        let mut lanes = [0f32; LANES];
        for i in 0..11 {
            lanes[i % LANES] = a[i].mul_add(b[i], lanes[i % LANES]);
        }
        let l = lanes;
        let want = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
        assert_eq!(dot(&a, &b).to_bits(), want.to_bits());
    }

    #[test]
    fn the_multiply_add_is_fused() {
        // Elements 0 and 8 share lane 0: lane = fma(a, a, c · 1). (1 + 2^-13)² = 1 + 2^-12 + 2^-26,
        // and c = -(1 + 2^-12): only a fused multiply-add keeps the 2^-26.
        let a = 1.0f32 + 2f32.powi(-13);
        let c = -(1.0f32 + 2f32.powi(-12));
        let mut x = [0f32; 9];
        let mut w = [0f32; 9];
        (x[0], w[0], x[8], w[8]) = (c, 1.0, a, a);
        assert_eq!(a * a + c, 0.0);
        assert_eq!(dot(&x, &w), 2f32.powi(-26));
    }

    #[test]
    fn a_tile_equals_its_lone_dot_products() {
        let k = 37;
        let xs: Vec<Vec<f32>> = (0..2)
            .map(|r| {
                (0..k)
                    .map(|i| ((i * 7 + r * 3) % 11) as f32 * 0.1 - 0.5)
                    .collect()
            })
            .collect();
        let ws: Vec<Vec<f32>> = (0..3)
            .map(|c| {
                (0..k)
                    .map(|i| ((i * 5 + c) % 13) as f32 * 0.07 - 0.4)
                    .collect()
            })
            .collect();
        let t = tile::<f32, 2, 3>([&xs[0], &xs[1]], [&ws[0], &ws[1], &ws[2]]);
        for r in 0..2 {
            for c in 0..3 {
                assert_eq!(t[r][c].to_bits(), dot(&xs[r], &ws[c]).to_bits());
            }
        }
    }
}
