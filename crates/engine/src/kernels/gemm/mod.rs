//! The GEMM layer: `y = x · Wᵀ (+ b)` for every projection of the decoder, reduced over K in an
//! order that does not depend on how many rows the call has, so a sequence's numbers do not
//! depend on its batch.
//!
//! - **CUDA.** 16-bit and f32 projections run cuBLASLt with one algorithm pinned per weight shape
//!   (`cublaslt`: from a table tuned per GPU type ([`pins`]) or the heuristic's deterministic
//!   choice, checked at each live row count, no fallback), or our own tensor-core kernel (`mma`)
//!   for 16-bit projections under `--gemm mma` ([`InvariantGemm`]); `--kernels heuristic`
//!   ([`KernelChoice::Heuristic`](super::KernelChoice::Heuristic)) restores candle's per-call
//!   cuBLAS choice, which is batch dependent (to reproduce what other engines do). LayerCast
//!   (bf16 weights, f32 compute) always runs `mma`: x is split into three exact bf16 parts in registers and the
//!   tensor-core sums are promoted into f32 every 64 elements of K, so no f32 copy of a weight
//!   is made and the accuracy is that of an f32 GEMM (measured by `reprolm bench gemm`).
//!   The same GEMMs serve the fast path and deterministic mode.
//! - **CPU.** The fixed-order kernel of [`reprolm_precision::deterministic::linear`] in every
//!   mode (the sequential order, or the tree order the mode names): candle's CPU GEMM picks its
//!   path by shape, so a row's bits change with the row count (one row against two at any width,
//!   and at 64 columns also between 2 and 5 rows), while the fixed-order kernel is as fast up to
//!   32 rows and reads 16-bit weights in place. `--kernels heuristic` gives the fast path a
//!   batch-dependent GEMM instead ([`heuristic_cpu_order`]): K cut into more slices the fewer
//!   rows a call has, as GPU libraries' split-K choices do, with the slices' sums rounded to the
//!   compute dtype before they are added, as a reduced-precision split-K reduction does, so that
//!   the paper's effect can be reproduced on a CPU.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use reprolm_engine::kernels::Kernels;
//! use reprolm_engine::kernels::gemm;
//! use reprolm_precision::{ComputeMode, Linear};
//! let w = Tensor::randn(0f32, 1.0, (6, 16), &Device::Cpu)?;
//! let lin = Linear::new(w, None, DType::BF16, DType::BF16)?;
//! let x = Tensor::randn(0f32, 1.0, (3, 16), &Device::Cpu)?;
//! let y = gemm::linear(&lin, &x, ComputeMode::Fast, Kernels::default().gemm_family())?;
//! assert_eq!(y.dims(), &[3, 6]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "cuda")]
pub mod cublaslt;
#[cfg(feature = "cuda")]
pub mod mma;
pub mod pins;
pub mod portable;

pub mod bench;

use crate::Result;
use candle_core::Tensor;
use reprolm_precision::{ComputeMode, Linear, ReductionOrder};

/// The most rows a GEMM of a decode step is tuned for: decode batches. `bench gemm` times row
/// counts up to it inside a CUDA graph, as a decode step runs them, and the pinned cuBLASLt
/// algorithm serves them itself (`cublaslt::PINNED_UP_TO_ROWS`).
pub const DECODE_ROWS: usize = 64;

/// Which batch-invariant GEMM serves 16-bit projections on CUDA (`--gemm`): both reduce K in a
/// fixed order per weight shape, in different orders, so the choice is part of what decides the
/// numbers. LayerCast runs `mma` under either; the CPU has one GEMM and ignores the setting
/// (recorded all the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InvariantGemm {
    /// cuBLASLt with an algorithm pinned per weight shape (the default).
    #[default]
    CublasLt,
    /// Our tensor-core kernel.
    Mma,
}

impl InvariantGemm {
    /// `cublaslt` or `mma`.
    ///
    /// ```
    /// use reprolm_engine::kernels::gemm::InvariantGemm;
    /// assert_eq!(InvariantGemm::parse("mma")?, InvariantGemm::Mma);
    /// assert!(InvariantGemm::parse("cublas").unwrap_err().contains("`cublaslt`"));
    /// # Ok::<(), String>(())
    /// ```
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        match text {
            "cublaslt" => Ok(InvariantGemm::CublasLt),
            "mma" => Ok(InvariantGemm::Mma),
            other => Err(format!(
                "unknown GEMM `{other}`: `cublaslt` (pinned cuBLASLt algorithms, the default) or \
                 `mma` (our tensor-core kernel)"
            )),
        }
    }

    /// The name [`parse`](Self::parse) reads.
    pub fn as_str(self) -> &'static str {
        match self {
            InvariantGemm::CublasLt => "cublaslt",
            InvariantGemm::Mma => "mma",
        }
    }

    /// The family it names.
    pub fn family(self) -> GemmFamily {
        match self {
            InvariantGemm::CublasLt => GemmFamily::PinnedCublasLt,
            InvariantGemm::Mma => GemmFamily::Mma,
        }
    }
}

/// Which GEMM serves the projections, as [`Kernels::gemm_family`](super::Kernels::gemm_family)
/// resolves it: one of the batch-invariant families, or candle's under
/// [`KernelChoice::Heuristic`](super::KernelChoice::Heuristic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemmFamily {
    /// cuBLASLt with an algorithm pinned per weight shape (16-bit and f32 operands), our
    /// tensor-core kernel for LayerCast. The default.
    PinnedCublasLt,
    /// Our tensor-core kernel (`mma` in CUDA builds) for 16-bit operands too.
    Mma,
    /// A GEMM that chooses its reduction by the call's shape, as other engines' do: **not** batch
    /// invariant. On CUDA candle's own matmul (cuBLAS choosing its kernel per call); on the CPU
    /// the fixed-order kernel with K split by row count ([`heuristic_cpu_order`]), the slices'
    /// sums rounded to the compute dtype before they are added. For
    /// reproducing the batch dependence the paper measures; deterministic mode is unaffected.
    Heuristic,
    /// The portable tier's GEMM ([`portable`]): the CPU's fixed order on every device.
    Portable,
}

impl GemmFamily {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            GemmFamily::PinnedCublasLt => "cublaslt-pinned",
            GemmFamily::Mma => "mma",
            GemmFamily::Heuristic => "candle (batch dependent)",
            GemmFamily::Portable => "portable",
        }
    }

    /// The name used in reports for the GEMM this family runs on `device` (the CPU's heuristic
    /// GEMM is not candle's, and the CPU has one batch-invariant GEMM whatever `--gemm` says).
    pub fn name_on(self, device: &candle_core::Device) -> &'static str {
        match self {
            GemmFamily::Portable => self.name(),
            _ if device.is_cuda() => self.name(),
            GemmFamily::Heuristic => "split-K by row count, rounded partials (batch dependent)",
            _ => "cpu",
        }
    }
}

/// The GEMM library whose algorithms the projections pin on `device`, with its version
/// (`cuBLASLt 130100`): the pin table is keyed by it, so another version may pin other
/// algorithms and give other bits. `None` on the CPU, and in builds without CUDA.
pub fn library_version(device: &candle_core::Device) -> Option<String> {
    #[cfg(feature = "cuda")]
    if device.is_cuda() {
        return Some(format!("cuBLASLt {}", cublaslt::cublaslt_version()));
    }
    let _ = device;
    None
}

/// The last row count each of `rows` (ascending) stands for when the pinned cuBLASLt GEMM times
/// faster algorithms at those row counts (`cublaslt::Plan::by_rows`): up to the geometric mean of
/// it and the next (rounded down), the last one for every larger count.
///
/// ```
/// use reprolm_engine::kernels::gemm::row_range_ends;
/// assert_eq!(row_range_ends(&[1, 8, 32, 128, 512, 4096]), [2, 16, 64, 256, 1448, usize::MAX]);
/// assert_eq!(row_range_ends(&[1, 8]), [2, usize::MAX]);
/// ```
pub fn row_range_ends(rows: &[usize]) -> Vec<usize> {
    rows.iter()
        .enumerate()
        .map(|(i, &m)| match rows.get(i + 1) {
            Some(&next) => ((m * next) as f64).sqrt() as usize,
            None => usize::MAX,
        })
        .collect()
}

/// Rows below which [`heuristic_cpu_order`] splits K, and the most slices it cuts K into.
const HEURISTIC_SPLIT_ROWS: usize = 16;
const HEURISTIC_MAX_SLICES: usize = 8;
/// The fewest elements of K a slice keeps.
const HEURISTIC_MIN_SLICE: usize = 64;

/// The reduction order over K of the CPU's batch-dependent GEMM (`--kernels heuristic`) for a
/// call of `rows` rows: K cut into `16 / rows` slices rounded down to a power of two (8 for 1-2
/// rows, 4 for 3-4, 2 for 5-8, 1 from 9 rows on; each slice at least 64 elements long, K
/// divisible by their count), summed as a tree. GPU BLAS libraries choose split-K this way, to
/// keep their cores busy when a call has few rows, which is what makes a sequence's numbers
/// depend on its batch there. candle's own CPU GEMM changes its order only between one
/// row and more, which bf16's rounding hides, so it could not show the effect.
///
/// ```
/// use reprolm_engine::kernels::gemm::heuristic_cpu_order;
/// let slices = |rows, k| heuristic_cpu_order(rows, k).chunks();
/// assert_eq!([slices(1, 1536), slices(4, 1536), slices(8, 1536), slices(16, 1536)], [8, 4, 2, 1]);
/// assert_eq!(slices(1, 256), 4, "slices keep 64 elements of K");
/// assert_eq!(slices(1, 704), 8, "704 = 8 slices of 88");
/// assert_eq!(slices(1, 100), 1);
/// ```
pub fn heuristic_cpu_order(rows: usize, k: usize) -> ReductionOrder {
    let mut slices = (HEURISTIC_SPLIT_ROWS / rows.max(1)).clamp(1, HEURISTIC_MAX_SLICES);
    slices = 1 << slices.ilog2();
    while slices > 1 && (k % slices != 0 || k / slices < HEURISTIC_MIN_SLICE) {
        slices /= 2;
    }
    ReductionOrder::tree(slices).expect("a power of two")
}

/// `x Wᵀ + b` for the projection `lin` by the GEMM `family` (what
/// [`Kernels::gemm_family`](super::Kernels::gemm_family) resolves): `x` is `(..., in)`, the
/// result `(..., out)` in the layer's compute dtype. See the module docs for which kernel runs
/// where; `mode` gives the CPU's reduction order.
pub fn linear(lin: &Linear, x: &Tensor, mode: ComputeMode, family: GemmFamily) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() {
        if let ComputeMode::Deterministic(order) = mode {
            if order.chunks() > 1 {
                return Err(crate::Error::InvalidRequest(format!(
                    "a matmul reduced in {} tree chunks (the TP-invariant order) runs on the CPU only",
                    order.chunks()
                )));
            }
        }
        return cuda_linear(lin, x, family);
    }
    let order = match mode {
        ComputeMode::Fast if family == GemmFamily::Heuristic => {
            return heuristic_cpu_linear(lin, x)
        }
        ComputeMode::Fast => ReductionOrder::SEQUENTIAL,
        ComputeMode::Deterministic(order) => order,
    };
    Ok(lin.forward_with(x, ComputeMode::Deterministic(order))?)
}

/// The CPU's batch-dependent GEMM (`--kernels heuristic`): K cut into the slices of
/// [`heuristic_cpu_order`], each slice's f32 sum rounded to the compute dtype, the slices added
/// in f32 as a tree (the bias with them) and the result rounded once more. That is a split-K GEMM
/// with a reduced-precision reduction, the partial sums passing through the output type, which
/// cuBLAS may choose for 16-bit GEMMs unless told not to (PyTorch's
/// `allow_bf16_reduced_precision_reduction` and candle's `gemm_reduced_precision_bf16` both
/// allow it by default). So a change of split moves a 16-bit output by whole 16-bit roundings,
/// at a large share of the outputs, while f32 compute (fp32, LayerCast) rounds its partials to
/// f32, which changes nothing, and moves only by f32 reassociation. One slice is a plain GEMM
/// with one rounding.
fn heuristic_cpu_linear(lin: &Linear, x: &Tensor) -> Result<Tensor> {
    use reprolm_precision::deterministic::{partial_sums, round_output, tree_sum};
    let k = x.dims().last().copied().unwrap_or(0);
    let order = heuristic_cpu_order(x.elem_count() / k.max(1), k);
    if order.chunks() == 1 {
        return Ok(lin.forward_with(x, ComputeMode::Deterministic(order))?);
    }
    let compute = lin.compute_dtype();
    reprolm_precision::over_rows(x, |rows| {
        let parts = partial_sums(rows, lin.weight(), compute, order)?;
        let parts = parts.to_dtype(compute)?.to_dtype(parts.dtype())?;
        round_output(&tree_sum(&parts)?, lin.bias(), compute)
    })
    .map_err(Into::into)
}

/// [`linear`] on CUDA with the GEMM family named (for benchmarks that compare them).
#[cfg(feature = "cuda")]
pub fn cuda_linear(lin: &Linear, x: &Tensor, family: GemmFamily) -> Result<Tensor> {
    use candle_core::DType;
    let compute = lin.compute_dtype();
    let w = lin.weight();
    if family == GemmFamily::Heuristic {
        return Ok(lin.forward_with(x, ComputeMode::Fast)?);
    }
    let bias = lin.bias();
    reprolm_precision::over_rows(&x.to_dtype(compute)?, |x2| -> Result<Tensor> {
        Ok(match (compute, w.dtype()) {
            // The CPU's order on the GPU (on the CPU, `linear`'s fixed-order kernel is that order).
            _ if family == GemmFamily::Portable => portable::linear(x2, w, bias, compute)?,
            (DType::F32, DType::BF16) => mma::linear(x2, w, bias)?,
            (c, wd) if c == wd && matches!(c, DType::BF16 | DType::F16) => match family {
                GemmFamily::Mma => mma::linear(x2, w, bias)?,
                _ => cublaslt::linear(x2, w, bias)?,
            },
            (DType::F32, DType::F32) => cublaslt::linear(x2, w, bias)?,
            // Other storage/compute pairs (custom policies): the weight rounded or widened to the
            // compute dtype, then the pinned GEMM of that dtype.
            (c, _) => {
                let wc = w.to_dtype(c)?;
                let bc = bias.map(|b| b.to_dtype(c)).transpose()?;
                cublaslt::linear(x2, &wc, bc.as_ref())?
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// The fast path's row 0 has the same bits whatever the row count, one row included (candle's
    /// CPU GEMM alone gives a single row other bits, and at 64 columns also 5 rows).
    #[test]
    fn the_fast_path_gives_row_0_the_same_bits_for_1_to_64_rows() -> Result<()> {
        let dev = Device::Cpu;
        for (n, k) in [(64, 1536), (704, 256)] {
            let w = (Tensor::randn(0f32, 1.0, (n, k), &dev)? * 0.05)?;
            let b = Tensor::randn(0f32, 0.1, n, &dev)?;
            let x = Tensor::randn(0f32, 1.0, (64, k), &dev)?;
            for (storage, compute) in [
                (DType::F32, DType::F32),
                (DType::BF16, DType::BF16),
                (DType::BF16, DType::F32),
            ] {
                let lin = Linear::new(w.clone(), Some(b.clone()), storage, compute)?;
                let row0 = |m: usize| -> Result<Vec<u64>> {
                    let y = linear(
                        &lin,
                        &x.narrow(0, 0, m)?,
                        ComputeMode::Fast,
                        GemmFamily::PinnedCublasLt,
                    )?;
                    Ok(reprolm_precision::deterministic::value_bits(
                        &y.narrow(0, 0, 1)?,
                    )?)
                };
                let one = row0(1)?;
                for m in 2..=64 {
                    assert!(
                        row0(m)? == one,
                        "{storage:?}/{compute:?} ({n}x{k}): row 0 differs at {m} rows"
                    );
                }
            }
        }
        Ok(())
    }

    /// The CPU's heuristic GEMM is what it claims: rows computed one at a time and sixteen together
    /// get different bits. In f32 the partial sums' rounding to f32 changes nothing, so each row
    /// count runs exactly the tree order it names; in bf16 they pass through bf16, so a large share
    /// of the outputs moves, each within its roundings' bound of the float64 product.
    #[test]
    fn the_heuristic_gemm_moves_rows_with_the_row_count() -> Result<()> {
        let dev = Device::Cpu;
        let (m, n, k) = (16, 1024, 1536);
        let w = (Tensor::randn(0f32, 1.0, (n, k), &dev)? * 0.05)?;
        let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
        let bits = |t: Tensor| reprolm_precision::deterministic::value_bits(&t);
        let heuristic =
            |lin: &Linear, x: &Tensor| linear(lin, x, ComputeMode::Fast, GemmFamily::Heuristic);
        let moved_share = |lin: &Linear| -> Result<f64> {
            let together = bits(heuristic(lin, &x)?)?;
            let mut alone = Vec::with_capacity(m * n);
            for r in 0..m {
                alone.extend(bits(heuristic(lin, &x.narrow(0, r, 1)?)?)?);
            }
            let moved = together.iter().zip(&alone).filter(|(a, b)| a != b).count();
            Ok(moved as f64 / (m * n) as f64)
        };

        let fp32 = Linear::new(w.clone(), None, DType::F32, DType::F32)?;
        let share = moved_share(&fp32)?;
        assert!(share > 0.0, "f32: no output moved between 1 and {m} rows");
        for rows in [1, 4, 16] {
            let xs = x.narrow(0, 0, rows)?;
            let order = ComputeMode::Deterministic(heuristic_cpu_order(rows, k));
            assert_eq!(
                bits(heuristic(&fp32, &xs)?)?,
                bits(linear(&fp32, &xs, order, GemmFamily::PinnedCublasLt)?)?
            );
        }

        let bf16 = Linear::new(w.clone(), None, DType::BF16, DType::BF16)?;
        let share = moved_share(&bf16)?;
        assert!(share > 0.1, "bf16: only {share} of the outputs moved");
        // One row is cut into 8 slices: each partial sum and the result rounded to bf16 (2^-9
        // relative each) keep the output within 2^-8 (sum |x w| + |x . w|) of the exact product.
        let x1 = x.narrow(0, 0, 1)?;
        let y = heuristic(&bf16, &x1)?
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?;
        let (x64, w64) = (
            x1.to_dtype(DType::BF16)?.to_dtype(DType::F64)?,
            w.to_dtype(DType::BF16)?.to_dtype(DType::F64)?,
        );
        let exact = x64.matmul(&w64.t()?)?.flatten_all()?.to_vec1::<f64>()?;
        let size = x64
            .abs()?
            .matmul(&w64.abs()?.t()?)?
            .flatten_all()?
            .to_vec1::<f64>()?;
        for ((y, e), s) in y.iter().zip(&exact).zip(&size) {
            assert!((y - e).abs() <= (s + e.abs()) / 256.0, "{y} against {e}");
        }
        let rows = x.narrow(0, 0, 16)?;
        assert_eq!(
            bits(heuristic(&bf16, &rows)?)?,
            bits(linear(
                &bf16,
                &rows,
                ComputeMode::Deterministic(ReductionOrder::SEQUENTIAL),
                GemmFamily::PinnedCublasLt
            )?)?,
            "16 rows take one slice: the invariant GEMM"
        );
        Ok(())
    }
}
