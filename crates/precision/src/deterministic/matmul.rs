//! `x · wᵀ` with one reduction order per output element (see [`ReductionOrder`]).
//!
//! Work is split over blocks of output columns (weight rows) on rayon, never over `K`, and every
//! output element keeps its own accumulators, so neither the thread count nor the block an
//! element falls in changes its value. Rows of `x` are processed in tiles of [`MR`] and weight
//! rows in tiles of [`NR`] to share loads; edge tiles run the same per-element arithmetic.

use super::{
    combine_lanes, require_cpu, tensor_from, tile_lanes, values, Float, ReductionOrder, LANES,
};
use crate::{Error, Result};
use candle_core::{CpuStorage, DType, Storage, Tensor};
use half::{bf16, f16};
use rayon::prelude::*;

/// Rows of `x` per tile: 3 × 4 outputs of 8 f32 lanes fill 12 of AVX2's 16 registers, the
/// fastest of the shapes we timed (the shape never changes a result).
const MR: usize = 3;
/// Weight rows per tile.
const NR: usize = 4;
/// Weight rows per parallel task: widened once per task and reused over every row of `x`.
const NB: usize = 32;
/// Rows of `x` per cache block: the block stays in L2 while a task's weight rows pass over it.
const MB: usize = 64;
/// Elements of K per cache block (a multiple of [`LANES`]): 3 rows of `x` and 4 of `w` of this
/// length fit in L1 with room to spare.
const KC: usize = 512;

/// Runs an `R × C` tile of the accumulators in `acc` (row-major, `nb` outputs per row, the tile's
/// top-left at `at`) over the slices `xs` and `ws`, as [`tile_lanes`] does.
#[inline(always)]
fn accumulate<T: Float, const R: usize, const C: usize>(
    acc: &mut [[T; LANES]],
    nb: usize,
    at: (usize, usize),
    xs: [&[T]; R],
    ws: [&[T]; C],
) {
    let mut t: [[[T; LANES]; C]; R] =
        std::array::from_fn(|r| std::array::from_fn(|c| acc[(at.0 + r) * nb + at.1 + c]));
    tile_lanes(&mut t, xs, ws);
    for (r, row) in t.iter().enumerate() {
        acc[(at.0 + r) * nb + at.1..(at.0 + r) * nb + at.1 + C].copy_from_slice(row);
    }
}

/// A weight's storage, read in place.
#[derive(Clone, Copy)]
enum Rows<'a> {
    BF16(&'a [bf16]),
    F16(&'a [f16]),
    F32(&'a [f32]),
    F64(&'a [f64]),
}

/// Accumulators that can borrow a weight stored in their own type instead of copying it.
trait Borrow: Float {
    fn borrow<'a>(rows: Rows<'a>) -> Option<&'a [Self]>;
}

impl Borrow for f32 {
    fn borrow<'a>(rows: Rows<'a>) -> Option<&'a [f32]> {
        match rows {
            Rows::F32(s) => Some(s),
            _ => None,
        }
    }
}

impl Borrow for f64 {
    fn borrow<'a>(rows: Rows<'a>) -> Option<&'a [f64]> {
        match rows {
            Rows::F64(s) => Some(s),
            _ => None,
        }
    }
}

/// Widens `src[range]` into `out`; exact, because [`operand`] only lets through weights whose
/// dtype the accumulator holds exactly.
fn widen<T: Float>(rows: Rows<'_>, range: std::ops::Range<usize>, out: &mut [T]) {
    match rows {
        Rows::BF16(s) => out
            .iter_mut()
            .zip(&s[range])
            .for_each(|(o, v)| *o = T::from_f64(v.to_f64())),
        Rows::F16(s) => out
            .iter_mut()
            .zip(&s[range])
            .for_each(|(o, v)| *o = T::from_f64(v.to_f64())),
        Rows::F32(s) => out
            .iter_mut()
            .zip(&s[range])
            .for_each(|(o, v)| *o = T::from_f64(*v as f64)),
        Rows::F64(s) => out
            .iter_mut()
            .zip(&s[range])
            .for_each(|(o, v)| *o = T::from_f64(*v)),
    }
}

/// `w`'s values in `compute`, as a contiguous tensor the kernel can read in place: the stored
/// weight itself when widening it to the accumulator is exact (bf16/f16 for a 16-bit or f32
/// computation, anything for f64), else a rounded copy.
fn operand(w: &Tensor, compute: DType) -> Result<Tensor> {
    let exact = w.dtype() == compute
        || compute == DType::F64
        || (compute == DType::F32 && matches!(w.dtype(), DType::BF16 | DType::F16));
    let w = if exact {
        w.clone()
    } else {
        w.to_dtype(compute)?
    };
    Ok(w.contiguous()?)
}

/// Checks shapes and the chunking; returns `(m, k, n)`.
fn dims(x: &Tensor, w: &Tensor, order: ReductionOrder) -> Result<(usize, usize, usize)> {
    let shape_err = |reason: String| Error::KernelShape {
        op: "deterministic matmul",
        reason,
    };
    let (m, k) = x
        .dims2()
        .map_err(|_| shape_err(format!("x must be (rows, k), got {:?}", x.dims())))?;
    let (n, kw) = w
        .dims2()
        .map_err(|_| shape_err(format!("w must be (n, k), got {:?}", w.dims())))?;
    if k != kw {
        return Err(shape_err(format!("x has k = {k}, w has k = {kw}")));
    }
    if k % order.chunks() != 0 {
        return Err(shape_err(format!(
            "k = {k} does not split into {} equal chunks",
            order.chunks()
        )));
    }
    require_cpu("deterministic matmul", x)?;
    require_cpu("deterministic matmul", w)?;
    Ok((m, k, n))
}

/// What a task hands back for its block of output columns.
#[derive(Clone, Copy, PartialEq)]
enum Output {
    /// `[chunk][row][col]` partials.
    Partials,
    /// The tree sum of the partials, `[row][col]`.
    Summed,
}

/// Runs the kernel over all column blocks and assembles `[chunk][m][n]` (or `[m][n]`).
fn run<T: Borrow>(
    x: &[T],
    (m, k, n): (usize, usize, usize),
    w: &Tensor,
    chunks: usize,
    output: Output,
) -> Result<Vec<T>> {
    let (guard, layout) = w.storage_and_layout();
    let (start, end) = layout
        .contiguous_offsets()
        .expect("operand() made the weight contiguous");
    let rows = match &*guard {
        Storage::Cpu(CpuStorage::BF16(v)) => Rows::BF16(&v[start..end]),
        Storage::Cpu(CpuStorage::F16(v)) => Rows::F16(&v[start..end]),
        Storage::Cpu(CpuStorage::F32(v)) => Rows::F32(&v[start..end]),
        Storage::Cpu(CpuStorage::F64(v)) => Rows::F64(&v[start..end]),
        _ => {
            return Err(Error::KernelShape {
                op: "deterministic matmul",
                reason: format!("weights in {:?} are not supported", w.dtype()),
            })
        }
    };
    let out_chunks = if output == Output::Partials {
        chunks
    } else {
        1
    };
    let blocks: Vec<(usize, usize, Vec<T>)> = (0..n.div_ceil(NB))
        .into_par_iter()
        .map(|b| {
            let (n0, n1) = (b * NB, ((b + 1) * NB).min(n));
            (
                n0,
                n1 - n0,
                column_block_best(x, m, k, rows, n0..n1, chunks, output),
            )
        })
        .collect();
    let mut out = vec![T::ZERO; out_chunks * m * n];
    for (n0, nb, block) in blocks {
        // `block` is `[chunk][row][col]` with `nb` columns; row `r` of it is row `r` of `out`.
        for (r, src) in block.chunks_exact(nb).enumerate() {
            out[r * n + n0..r * n + n0 + nb].copy_from_slice(src);
        }
    }
    Ok(out)
}

/// [`column_block`] compiled for the widest vector unit this CPU has. The instruction set only
/// changes how many lanes one instruction processes, never which values are combined in which
/// order (and an FMA is exactly specified), so every path gives the same bits; a test checks it.
fn column_block_best<T: Borrow>(
    x: &[T],
    m: usize,
    k: usize,
    rows: Rows<'_>,
    cols: std::ops::Range<usize>,
    chunks: usize,
    output: Output,
) -> Vec<T> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        return unsafe { column_block_avx2(x, m, k, rows, cols, chunks, output) };
    }
    column_block(x, m, k, rows, cols, chunks, output)
}

/// [`column_block`] with AVX2 and FMA enabled: 8 f32 lanes per register, 16 registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn column_block_avx2<T: Borrow>(
    x: &[T],
    m: usize,
    k: usize,
    rows: Rows<'_>,
    cols: std::ops::Range<usize>,
    chunks: usize,
    output: Output,
) -> Vec<T> {
    column_block(x, m, k, rows, cols, chunks, output)
}

/// The outputs of weight rows `cols` for every row of `x`: `[chunk][row][col - cols.start]`
/// partials, or their tree sums.
#[inline(always)]
fn column_block<T: Borrow>(
    x: &[T],
    m: usize,
    k: usize,
    rows: Rows<'_>,
    cols: std::ops::Range<usize>,
    chunks: usize,
    output: Output,
) -> Vec<T> {
    let nb = cols.len();
    let scratch: Vec<T>;
    let w: &[T] = match T::borrow(rows) {
        Some(s) => &s[cols.start * k..cols.end * k],
        None => {
            let mut buf = vec![T::ZERO; nb * k];
            widen(rows, cols.start * k..cols.end * k, &mut buf);
            scratch = buf;
            &scratch
        }
    };
    let kc = k / chunks;
    let mut part = vec![T::ZERO; chunks * m * nb];
    // Lane accumulators of one cache block of rows, kept between the K blocks.
    let mut acc: Vec<[T; LANES]> = Vec::with_capacity(MB * nb);
    for c in 0..chunks {
        let ks = c * kc..(c + 1) * kc;
        let dst = &mut part[c * m * nb..(c + 1) * m * nb];
        for i0 in (0..m).step_by(MB) {
            let i1 = (i0 + MB).min(m);
            acc.clear();
            acc.resize((i1 - i0) * nb, [T::ZERO; LANES]);
            // K in blocks of KC (a multiple of LANES, so element i stays in lane i % LANES and
            // each lane still adds its elements in increasing i): a tile's slices of x and w
            // then stay in L1 while the tiles of this row block pass over them.
            for kb in (ks.start..ks.end).step_by(KC) {
                let kr = kb..(kb + KC).min(ks.end);
                let xr = |i: usize| &x[i * k + kr.start..i * k + kr.end];
                let wr = |j: usize| &w[j * k + kr.start..j * k + kr.end];
                let mut j = 0;
                while j + NR <= nb {
                    let ws: [&[T]; NR] = std::array::from_fn(|t| wr(j + t));
                    let mut i = i0;
                    while i + MR <= i1 {
                        accumulate::<T, MR, NR>(
                            &mut acc,
                            nb,
                            (i - i0, j),
                            std::array::from_fn(|r| xr(i + r)),
                            ws,
                        );
                        i += MR;
                    }
                    for i in i..i1 {
                        accumulate::<T, 1, NR>(&mut acc, nb, (i - i0, j), [xr(i)], ws);
                    }
                    j += NR;
                }
                for j in j..nb {
                    for i in i0..i1 {
                        accumulate::<T, 1, 1>(&mut acc, nb, (i - i0, j), [xr(i)], [wr(j)]);
                    }
                }
            }
            for (o, a) in dst[i0 * nb..i1 * nb].iter_mut().zip(&acc) {
                *o = combine_lanes(*a);
            }
        }
    }
    match output {
        Output::Partials => part,
        Output::Summed => {
            let mut sum = vec![T::ZERO; m * nb];
            tree_sum_slices(&part, chunks, &mut sum);
            sum
        }
    }
}

/// Sums `chunks` consecutive equal-length slices of `parts` into `out` by the adjacent-pair tree
/// of [`ReductionOrder`], element by element.
fn tree_sum_slices<T: Float>(parts: &[T], chunks: usize, out: &mut [T]) {
    let len = out.len();
    let mut level: Vec<T> = parts.to_vec();
    let mut count = chunks;
    while count > 1 {
        for p in 0..count / 2 {
            for e in 0..len {
                level[p * len + e] = level[2 * p * len + e] + level[(2 * p + 1) * len + e];
            }
        }
        count /= 2;
    }
    out.copy_from_slice(&level[..len]);
}

/// The per-chunk partial sums of `x · wᵀ`: `(chunks, M, N)` in the accumulator dtype (f32, or
/// f64 when `compute` is f64). `x` is `(M, K)` and `w` is `(N, K)`; both are taken as their
/// values in `compute` (rounded to it if they are wider), then widened exactly.
///
/// Chunk `c` is the lane-order dot product over `[c·K/chunks, (c+1)·K/chunks)`. A tensor-parallel
/// rank calls this on its K-slice with `order.chunks() / tp` chunks (see [`ReductionOrder`]).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use reprolm_precision::deterministic::{linear, partial_sums, round_output, tree_sum, ReductionOrder};
/// let x = Tensor::randn(0f32, 1.0, (3, 64), &Device::Cpu)?;
/// let w = Tensor::randn(0f32, 1.0, (5, 64), &Device::Cpu)?;
/// // Two ranks, each holding half of K, two chunks each; one device with four chunks.
/// let p0 = partial_sums(&x.narrow(1, 0, 32)?, &w.narrow(1, 0, 32)?, DType::BF16, ReductionOrder::tree(2)?)?;
/// let p1 = partial_sums(&x.narrow(1, 32, 32)?, &w.narrow(1, 32, 32)?, DType::BF16, ReductionOrder::tree(2)?)?;
/// let ranks = Tensor::stack(&[tree_sum(&p0)?, tree_sum(&p1)?], 0)?;
/// let tp = round_output(&tree_sum(&ranks)?, None, DType::BF16)?;
/// let single = linear(&x, &w, None, DType::BF16, ReductionOrder::tree(4)?)?;
/// assert_eq!(tp.to_dtype(DType::F32)?.to_vec2::<f32>()?, single.to_dtype(DType::F32)?.to_vec2::<f32>()?);
/// # Ok::<(), reprolm_precision::Error>(())
/// ```
pub fn partial_sums(
    x: &Tensor,
    w: &Tensor,
    compute: DType,
    order: ReductionOrder,
) -> Result<Tensor> {
    let d = dims(x, w, order)?;
    let (m, _, n) = d;
    let w = operand(w, compute)?;
    let c = order.chunks();
    if compute == DType::F64 {
        let out = run::<f64>(&values(x, compute)?, d, &w, c, Output::Partials)?;
        tensor_from(out, &[c, m, n])
    } else {
        let out = run::<f32>(&values(x, compute)?, d, &w, c, Output::Partials)?;
        tensor_from(out, &[c, m, n])
    }
}

/// Sums `(chunks, …)` partials (f32 or f64, `chunks` a power of two) over dim 0 by the
/// adjacent-pair binary tree of [`ReductionOrder`]: the single-device order, and the order of a
/// tree all-reduce over ranks holding consecutive chunks.
pub fn tree_sum(partials: &Tensor) -> Result<Tensor> {
    require_cpu("tree sum", partials)?;
    let dims = partials.dims();
    let chunks = *dims.first().ok_or_else(|| Error::KernelShape {
        op: "tree sum",
        reason: "partials need a leading chunk dimension".into(),
    })?;
    if !chunks.is_power_of_two() {
        return Err(Error::ReductionChunks { chunks });
    }
    let rest = &dims[1..];
    let len: usize = rest.iter().product();
    match partials.dtype() {
        DType::F64 => {
            let p = values::<f64>(partials, DType::F64)?;
            let mut out = vec![0f64; len];
            tree_sum_slices(&p, chunks, &mut out);
            tensor_from(out, rest)
        }
        DType::F32 => {
            let p = values::<f32>(partials, DType::F32)?;
            let mut out = vec![0f32; len];
            tree_sum_slices(&p, chunks, &mut out);
            tensor_from(out, rest)
        }
        other => Err(Error::KernelShape {
            op: "tree sum",
            reason: format!("partials must be f32 or f64 accumulators, got {other:?}"),
        }),
    }
}

/// Finishes a reduced product: adds `bias` (its values in `compute`, widened) in the accumulator
/// dtype, then rounds once to `compute`, as torch's `addmm` and cuBLAS's bias epilogue do.
pub fn round_output(sum: &Tensor, bias: Option<&Tensor>, compute: DType) -> Result<Tensor> {
    let acc = sum.dtype();
    let y = match bias {
        Some(b) => sum.broadcast_add(&b.to_dtype(compute)?.to_dtype(acc)?)?,
        None => sum.clone(),
    };
    Ok(y.to_dtype(compute)?)
}

/// `x · wᵀ (+ bias)` for `x: (M, K)`, `w: (N, K)`, in `compute`: operands rounded to `compute`
/// and widened exactly, reduced in `order` in the accumulator dtype, the bias added before the
/// single rounding to `compute`. Each output element depends only on its row of `x`, its row of
/// `w`, the bias element and `order`: not on `M`, `N`, the row's index or the thread count.
/// Equals `round_output(tree_sum(partial_sums(x, w, compute, order)), bias, compute)`.
pub fn linear(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    compute: DType,
    order: ReductionOrder,
) -> Result<Tensor> {
    let d = dims(x, w, order)?;
    let (m, _, n) = d;
    let w = operand(w, compute)?;
    let c = order.chunks();
    let sum = if compute == DType::F64 {
        tensor_from(
            run::<f64>(&values(x, compute)?, d, &w, c, Output::Summed)?,
            &[m, n],
        )?
    } else {
        tensor_from(
            run::<f32>(&values(x, compute)?, d, &w, c, Output::Summed)?,
            &[m, n],
        )?
    };
    round_output(&sum, bias, compute)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deterministic::{bits, LANES};
    use candle_core::Device;

    fn randn(dims: (usize, usize), seed: u64) -> Tensor {
        // A small LCG keeps the operands the same on every run and machine.
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let v: Vec<f32> = (0..dims.0 * dims.1)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
            })
            .collect();
        Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
    }

    const SEQ: ReductionOrder = ReductionOrder::SEQUENTIAL;

    #[test]
    fn stays_within_the_f32_error_bound_of_a_float64_reference() -> Result<()> {
        let (m, k, n) = (5, 300, 7);
        let (x, w) = (randn((m, k), 1), randn((n, k), 2));
        for order in [SEQ, ReductionOrder::tree(4)?] {
            let got = linear(&x, &w, None, DType::F32, order)?.to_dtype(DType::F64)?;
            let (x64, w64) = (x.to_dtype(DType::F64)?, w.to_dtype(DType::F64)?);
            let want = x64.matmul(&w64.t()?)?;
            let abs = x64.abs()?.matmul(&w64.abs()?.t()?)?;
            // Each lane sums about k/LANES products, then log2(LANES) lane and log2(chunks) tree
            // additions: a textbook bound of (terms + depth) · eps · Σ|x·w|.
            let depth = k / LANES + 3 + order.chunks().ilog2() as usize + 1;
            let bound = (abs * (depth as f64 * f32::EPSILON as f64))?;
            let excess = ((got - want)?.abs()? - bound)?
                .max_all()?
                .to_scalar::<f64>()?;
            assert!(
                excess <= 0.0,
                "{order:?}: error exceeds the bound by {excess}"
            );
        }
        Ok(())
    }

    #[test]
    fn cache_blocking_keeps_the_documented_order() -> Result<()> {
        // K longer than a cache block (and not a multiple of it or of LANES): every output must
        // still be the plain lane-order dot product, and with chunks the tree of per-chunk dots.
        let (m, k, n) = (4, 2 * KC + 3 * LANES + 5, 6);
        let (x, w) = (randn((m, k), 30), randn((n, k), 31));
        let got: Vec<Vec<f32>> = linear(&x, &w, None, DType::F32, SEQ)?.to_vec2()?;
        let (xv, wv): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (x.to_vec2()?, w.to_vec2()?);
        for i in 0..m {
            for j in 0..n {
                assert_eq!(
                    got[i][j].to_bits(),
                    super::super::dot(&xv[i], &wv[j]).to_bits()
                );
            }
        }
        let k4 = 4 * (KC + 88);
        let (x, w) = (randn((m, k4), 32), randn((n, k4), 33));
        let got: Vec<Vec<f32>> =
            linear(&x, &w, None, DType::F32, ReductionOrder::tree(4)?)?.to_vec2()?;
        let (xv, wv): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (x.to_vec2()?, w.to_vec2()?);
        let c = k4 / 4;
        for i in 0..m {
            for j in 0..n {
                let p: Vec<f32> = (0..4)
                    .map(|q| {
                        super::super::dot(&xv[i][q * c..(q + 1) * c], &wv[j][q * c..(q + 1) * c])
                    })
                    .collect();
                let want = (p[0] + p[1]) + (p[2] + p[3]);
                assert_eq!(got[i][j].to_bits(), want.to_bits());
            }
        }
        Ok(())
    }

    #[test]
    fn f64_accumulates_in_f64() -> Result<()> {
        let (x, w) = (
            randn((3, 40), 3).to_dtype(DType::F64)?,
            randn((4, 40), 4).to_dtype(DType::F64)?,
        );
        let got = linear(&x, &w, None, DType::F64, SEQ)?;
        assert_eq!(got.dtype(), DType::F64);
        let err = (got - x.matmul(&w.t()?)?)?
            .abs()?
            .max_all()?
            .to_scalar::<f64>()?;
        assert!(err < 1e-12, "{err}");
        Ok(())
    }

    #[test]
    fn a_row_does_not_depend_on_the_row_count_or_its_position() -> Result<()> {
        let (k, n) = (72, 37);
        let w = randn((n, k), 5);
        let b = randn((1, n), 6).squeeze(0)?;
        let x = randn((70, k), 7); // crosses a cache block (64 rows)
        for dt in [DType::F32, DType::BF16, DType::F16] {
            let all = linear(&x, &w, Some(&b), dt, SEQ)?;
            for (row, m) in [(0, 1), (0, 2), (1, 3), (4, 5), (66, 67), (69, 70)] {
                let start = row + 1 - m.min(row + 1);
                let part = linear(&x.narrow(0, start, m)?, &w, Some(&b), dt, SEQ)?;
                assert_eq!(
                    bits(&part.narrow(0, row - start, 1)?),
                    bits(&all.narrow(0, row, 1)?),
                    "{dt:?} row {row} in a batch of {m}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn a_column_does_not_depend_on_which_other_columns_are_computed() -> Result<()> {
        let (m, k, n) = (3, 48, 45); // 45 columns: a full task block, tiles and an edge
        let (x, w) = (randn((m, k), 8), randn((n, k), 9));
        for order in [SEQ, ReductionOrder::tree(2)?] {
            let all = linear(&x, &w, None, DType::BF16, order)?;
            for (start, len) in [(0, 1), (7, 30), (33, 12), (44, 1)] {
                let shard = linear(&x, &w.narrow(0, start, len)?, None, DType::BF16, order)?;
                assert_eq!(bits(&shard), bits(&all.narrow(1, start, len)?));
            }
        }
        Ok(())
    }

    #[test]
    fn the_thread_count_does_not_change_a_bit() -> Result<()> {
        let (x, w) = (randn((9, 64), 10), randn((100, 64), 11));
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| linear(&x, &w, None, DType::F32, ReductionOrder::tree(2).unwrap()))
                .map(|t| bits(&t))
        };
        assert_eq!(run(1)?, run(2)?);
        assert_eq!(run(1)?, run(3)?);
        Ok(())
    }

    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        let (m, k, n) = (7, 76, 9);
        let x: Vec<f32> = randn((m, k), 20).flatten_all().unwrap().to_vec1().unwrap();
        let w = randn((n, k), 21).to_dtype(DType::BF16).unwrap();
        let (guard, _) = w.storage_and_layout();
        let Storage::Cpu(CpuStorage::BF16(wv)) = &*guard else {
            unreachable!("a bf16 CPU tensor")
        };
        for (chunks, output) in [
            (1, Output::Summed),
            (4, Output::Partials),
            (4, Output::Summed),
        ] {
            let generic = column_block::<f32>(&x, m, k, Rows::BF16(wv), 0..n, chunks, output);
            let best = column_block_best::<f32>(&x, m, k, Rows::BF16(wv), 0..n, chunks, output);
            let g: Vec<u32> = generic.iter().map(|v| v.to_bits()).collect();
            let b: Vec<u32> = best.iter().map(|v| v.to_bits()).collect();
            assert_eq!(g, b, "chunks {chunks}");
        }
    }

    #[test]
    fn sixteen_bit_weights_widen_exactly() -> Result<()> {
        // LayerCast: bf16 weights, f32 compute, equals f32 weights holding the same values.
        let (x, w) = (
            randn((4, 40), 12),
            randn((6, 40), 13).to_dtype(DType::BF16)?,
        );
        let lc = linear(&x, &w, None, DType::F32, SEQ)?;
        let f32w = linear(&x, &w.to_dtype(DType::F32)?, None, DType::F32, SEQ)?;
        assert_eq!(bits(&lc), bits(&f32w));
        Ok(())
    }

    #[test]
    fn tensor_parallel_shards_reproduce_the_single_device_tree() -> Result<()> {
        let (m, k, n) = (3, 96, 10);
        let (x, w) = (randn((m, k), 14), randn((n, k), 15));
        let b = randn((1, n), 16).squeeze(0)?;
        for dt in [DType::F32, DType::BF16] {
            let single = linear(&x, &w, Some(&b), dt, ReductionOrder::tree(4)?)?;
            for tp in [2, 4] {
                let slice = k / tp;
                let ranks: Vec<Tensor> = (0..tp)
                    .map(|r| {
                        partial_sums(
                            &x.narrow(1, r * slice, slice)?,
                            &w.narrow(1, r * slice, slice)?,
                            dt,
                            ReductionOrder::tree(4 / tp)?,
                        )
                    })
                    .collect::<Result<_>>()?;
                // A tree all-reduce of the ranks' own tree sums ...
                let sums: Vec<Tensor> = ranks.iter().map(tree_sum).collect::<Result<_>>()?;
                let allreduce = tree_sum(&Tensor::stack(&sums, 0)?)?;
                // ... and one tree over every rank's partials, in rank order.
                let gathered = tree_sum(&Tensor::cat(&ranks, 0)?)?;
                assert_eq!(bits(&allreduce), bits(&gathered), "{dt:?} tp {tp}");
                let tp_out = round_output(&allreduce, Some(&b), dt)?;
                assert_eq!(bits(&tp_out), bits(&single), "{dt:?} tp {tp}");
            }
        }
        Ok(())
    }

    #[test]
    fn chunks_must_divide_k() {
        let (x, w) = (randn((1, 10), 1), randn((2, 10), 2));
        let err = linear(&x, &w, None, DType::F32, ReductionOrder::tree(4).unwrap()).unwrap_err();
        assert!(err.to_string().contains("4 equal chunks"), "{err}");
    }
}
