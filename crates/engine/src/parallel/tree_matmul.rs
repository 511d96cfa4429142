//! The matmul of the TP-invariant mode: `x · wᵀ` whose reduction over K is a fixed binary tree of
//! fixed chunks, so that splitting K across ranks and summing the ranks' partials in the same
//! tree (the communicator's all-reduce) gives the single-device result bit for bit.
//!
//! K is cut into [`TREE_CHUNKS`] chunks at `floor(c·K / TREE_CHUNKS)`. Each chunk's dot product
//! runs in eight interleaved accumulators (lane `k mod 8`, a fixed order that the compiler can
//! vectorise), the lanes are added in a balanced tree, and the chunk partials are added in the
//! balanced tree whose leaves are the chunks in order. A rank holding K slice `r` of `n` (with
//! `n` dividing [`TREE_CHUNKS`]) holds exactly chunks `r·C/n .. (r+1)·C/n` and computes their
//! subtree; [`tree_sum`](super::comm::tree_sum) over ranks is the top of the same tree. Every
//! output element is computed on its own in this fixed order, so the result of a row or column
//! does not depend on how many other rows (batch size) or columns (column split) are computed
//! with it. Accumulation is in f32 (f64 for f64 operands); 16-bit operands widen exactly.
//!
//! This is a plain CPU kernel, several times slower than candle's GEMM: the price of the mode.

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

/// Number of K chunks of the tree: the largest tensor-parallel size the invariant mode supports.
pub const TREE_CHUNKS: usize = 8;

/// A float the kernel accumulates in.
trait Acc:
    Copy
    + Default
    + Send
    + Sync
    + std::ops::Add<Output = Self>
    + std::ops::Mul<Output = Self>
    + candle_core::WithDType
{
}
impl Acc for f32 {}
impl Acc for f64 {}

/// `a · b` in 8 lanes (element `k` into lane `k mod 8`), lanes added as a balanced tree.
#[inline]
fn dot<T: Acc>(a: &[T], b: &[T]) -> T {
    let mut lanes = [T::default(); 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            lanes[l] = lanes[l] + x[l] * y[l];
        }
    }
    for (l, (x, y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        lanes[l] = lanes[l] + *x * *y;
    }
    ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
}

/// Balanced tree over `parts` in order; the same shape as `comm::tree_sum`.
fn tree<T: Acc>(parts: &[T]) -> T {
    match parts {
        [one] => *one,
        _ => {
            let (a, b) = parts.split_at(parts.len() / 2);
            tree(a) + tree(b)
        }
    }
}

fn product<T: Acc>(x: &[T], w: &[T], rows: usize, cols: usize, k: usize, chunks: usize) -> Vec<T> {
    let bounds: Vec<usize> = (0..=chunks).map(|c| c * k / chunks).collect();
    // Column-major work split: each task owns one weight row (an output column) and walks every
    // input row, so the weight row stays in cache. Element order does not depend on the split.
    let mut out_t = vec![T::default(); rows * cols];
    out_t
        .par_chunks_mut(rows.max(1))
        .enumerate()
        .for_each(|(j, col)| {
            let wj = &w[j * k..(j + 1) * k];
            let mut partial = [T::default(); TREE_CHUNKS];
            for (i, o) in col.iter_mut().enumerate() {
                let xi = &x[i * k..(i + 1) * k];
                for c in 0..chunks {
                    let r = bounds[c]..bounds[c + 1];
                    partial[c] = dot(&xi[r.clone()], &wj[r]);
                }
                *o = tree(&partial[..chunks]);
            }
        });
    // Transpose (cols, rows) -> (rows, cols).
    let mut out = vec![T::default(); rows * cols];
    for (j, col) in out_t.chunks(rows.max(1)).enumerate() {
        for (i, v) in col.iter().enumerate() {
            out[i * cols + j] = *v;
        }
    }
    out
}

/// `x · wᵀ` over `chunks` K chunks for `x` of shape `(..., k)` and `w` of shape `(n, k)`, as the
/// partial sum in the accumulation dtype (f32, or f64 when `dtype` is f64), shape `(..., n)`.
/// Both operands are first rounded to `dtype`, as a `dtype` kernel would see them.
///
/// `chunks` is [`TREE_CHUNKS`] for a whole K, `TREE_CHUNKS / n` for a rank's slice of `n`.
pub(crate) fn tree_product(
    x: &Tensor,
    w: &Tensor,
    dtype: DType,
    chunks: usize,
) -> candle_core::Result<Tensor> {
    if chunks == 0 || chunks > TREE_CHUNKS {
        candle_core::bail!("tree_product: {chunks} chunks, expected 1..={TREE_CHUNKS}");
    }
    if !x.device().is_cpu() {
        candle_core::bail!("the tree-ordered matmul of the TP-invariant mode runs on the CPU only");
    }
    let dims = x.dims().to_vec();
    let k = *dims.last().unwrap_or(&0);
    let (n, wk) = w.dims2()?;
    if wk != k {
        candle_core::bail!("tree_product: x has K = {k}, w is ({n}, {wk})");
    }
    let rows: usize = dims[..dims.len().saturating_sub(1)].iter().product();
    let acc = super::comm::accumulation_dtype(dtype);
    let widen = |t: &Tensor| t.to_dtype(dtype)?.to_dtype(acc)?.flatten_all();
    let (xf, wf) = (widen(x)?, widen(w)?);
    let mut out_dims = dims;
    *out_dims.last_mut().unwrap() = n;
    let dev = &Device::Cpu;
    match acc {
        DType::F64 => {
            let out = product(&xf.to_vec1::<f64>()?, &wf.to_vec1::<f64>()?, rows, n, k, chunks);
            Tensor::from_vec(out, out_dims, dev)
        }
        _ => {
            let out = product(&xf.to_vec1::<f32>()?, &wf.to_vec1::<f32>()?, rows, n, k, chunks);
            Tensor::from_vec(out, out_dims, dev)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::comm::tree_sum;

    fn bits(t: &Tensor) -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .into_iter()
            .map(f32::to_bits)
            .collect()
    }

    #[test]
    fn rank_partials_summed_in_the_tree_equal_the_whole_product_bitwise() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let (m, k, n) = (5, 200, 24);
        let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev)?;
        let whole = tree_product(&x, &w, DType::F32, TREE_CHUNKS)?;
        for tp in [2, 4, 8] {
            let parts: Vec<Tensor> = (0..tp)
                .map(|r| {
                    let (s, len) = (r * k / tp, k / tp);
                    tree_product(&x.narrow(1, s, len)?, &w.narrow(1, s, len)?, DType::F32, TREE_CHUNKS / tp)
                })
                .collect::<candle_core::Result<_>>()?;
            assert_eq!(bits(&tree_sum(&parts)?), bits(&whole), "tp {tp}");
        }
        // A different association is not bitwise equal (so the test can fail).
        let left_to_right = (0..4).try_fold(None::<Tensor>, |acc, r| {
            let p = tree_product(&x.narrow(1, r * 50, 50)?, &w.narrow(1, r * 50, 50)?, DType::F32, 2)?;
            Ok::<_, candle_core::Error>(Some(match acc { None => p, Some(a) => (a + p)? }))
        })?.unwrap();
        assert_ne!(bits(&left_to_right), bits(&whole));
        Ok(())
    }

    #[test]
    fn a_row_or_column_does_not_depend_on_the_others() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (7, 64), &dev)?;
        let w = Tensor::randn(0f32, 1.0, (12, 64), &dev)?;
        let all = tree_product(&x, &w, DType::F32, TREE_CHUNKS)?;
        let row = tree_product(&x.narrow(0, 3, 1)?, &w, DType::F32, TREE_CHUNKS)?;
        assert_eq!(bits(&row), bits(&all.narrow(0, 3, 1)?));
        let cols = tree_product(&x, &w.narrow(0, 4, 4)?, DType::F32, TREE_CHUNKS)?;
        assert_eq!(bits(&cols), bits(&all.narrow(1, 4, 4)?.contiguous()?));
        Ok(())
    }

    #[test]
    fn agrees_with_a_float64_product() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 37), &dev)?;
        let w = Tensor::randn(0f32, 1.0, (9, 37), &dev)?;
        let got = tree_product(&x, &w, DType::F32, TREE_CHUNKS)?;
        assert_eq!(got.dims(), &[2, 3, 9]);
        let want = x.to_dtype(DType::F64)?.broadcast_matmul(&w.to_dtype(DType::F64)?.t()?)?;
        let err = (got.to_dtype(DType::F64)? - want)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(err < 1e-5, "{err}");
        // bf16 operands are rounded first, the sum stays f32.
        let got16 = tree_product(&x, &w, DType::BF16, TREE_CHUNKS)?;
        assert_eq!(got16.dtype(), DType::F32);
        Ok(())
    }
}
