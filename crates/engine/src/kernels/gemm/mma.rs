//! Our tensor-core linear (`mma.cu`): `x · Wᵀ (+ b)` for 16-bit weights, with x in the weight's
//! type or in f32 (LayerCast: x split into three exact bf16 parts in registers, no f32 copy of W).
//!
//! Every kernel of the file reduces K in the one order the source states (stretches of
//! [`STRETCH`] promoted into f32, grouped as [`grouping`] says from `(N, K)` alone), so a row's
//! result does not depend on how many rows are in the call; the launcher picks the kernel by row
//! count only for speed.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaStorage, DType, Layout, Shape, Tensor};
use reprolm_precision::cuda::{
    allow_dynamic_shared, multiprocessors, ptx_for_device, LinearOperands, Output,
};

const SOURCE: &str = include_str!("mma.cu");
const MODULE: &str = "reprolm_mma_linear";

/// Elements of K per tensor-core stretch (`STRETCH` in the source): each stretch's sum starts
/// from zero in the tensor cores and is then added in f32.
pub const STRETCH: usize = 64;
/// The most rows the decode kernels take (8 per tensor-core column tile, up to 4 tiles).
pub const SMALL_ROWS: usize = 32;
/// The most groups a weight's K is cut into.
pub const MAX_GROUPS: usize = 32;
/// Weight rows per decode block (4 warps of 32): `SPLIT_N` in the source.
const SPLIT_N: usize = 128;
/// Threads per decode block (`SPLIT_THREADS` in the source).
const SPLIT_THREADS: u32 = 128;
/// (16 weight rows, group) pairs the grouping aims for, i.e. about 1000 decode work items of 128
/// weight rows: about four items for each of the 264 blocks an H100/H200 (132 SMs) runs at once,
/// so that blocks finish close together (one item and a bit each would leave the GPU mostly idle
/// for the bit). Part of the numerical contract: [`grouping`] must not change with the GPU.
const TARGET_WARPS: usize = 8192;
/// Dynamic shared memory of a decode launch: the weight ring, `WSLOTS` stretches of the block's
/// 128 weight rows (the x ring is static).
const SPLIT_W_RING_BYTES: usize = 4 * SPLIT_N * STRETCH * 2;
/// Slots of the tiled kernel's shared-memory ring (`TSTAGES` in the source).
const TILED_STAGES: usize = 4;
/// Weight rows and rows of x per tiled block (`TN`, `TM` in the source).
const TILED_N: usize = 128;
const TILED_M: usize = 64;

/// Dynamic shared memory of a tiled launch, in bytes (`TiledSmem` in the source): the ring of
/// weight and x stretches, and for f32 x two buffers of its three split parts.
fn tiled_shared_bytes(x_f32: bool) -> usize {
    let w = TILED_N * STRETCH * 2;
    let (x, split) = if x_f32 {
        (TILED_M * STRETCH * 4, 3 * TILED_M * STRETCH * 2)
    } else {
        (TILED_M * STRETCH * 2, 0)
    };
    TILED_STAGES * (w + x) + 2 * split
}

/// How the kernels split a weight of `n` rows and `k` columns: `(stretches per group, groups)`.
/// A function of the weight's shape alone (the row count never enters), which is what makes the
/// result batch invariant. More groups give a decode step more warps; up to [`MAX_GROUPS`].
///
/// ```
/// use reprolm_engine::kernels::gemm::mma::grouping;
/// assert_eq!(grouping(1536, 8960), (5, 28)); // 140 stretches: 28 groups of 5
/// assert_eq!(grouping(151936, 1536), (24, 1)); // the LM head has warps enough
/// ```
pub fn grouping(n: usize, k: usize) -> (usize, usize) {
    let stretches = k.div_ceil(STRETCH).max(1);
    let tiles = n.div_ceil(16).max(1);
    let want = TARGET_WARPS
        .div_ceil(tiles)
        .clamp(1, MAX_GROUPS)
        .min(stretches);
    let spg = stretches.div_ceil(want);
    (spg, stretches.div_ceil(spg))
}

/// The kernel family for an operand pair: `(name prefix, output dtype)`.
fn family(x: DType, w: DType) -> Option<(&'static str, DType)> {
    match (x, w) {
        (DType::F32, DType::BF16) => Some(("mma_linear_f32_bf16", DType::F32)),
        (DType::BF16, DType::BF16) => Some(("mma_linear_bf16_bf16", DType::BF16)),
        (DType::F16, DType::F16) => Some(("mma_linear_f16_f16", DType::F16)),
        _ => None,
    }
}

/// Whether [`linear`] serves `x` of `x_dtype` against a weight of `w_dtype` with `k` columns.
pub fn serves(x_dtype: DType, w_dtype: DType, k: usize) -> bool {
    family(x_dtype, w_dtype).is_some() && k % 8 == 0
}

/// Which kernel a launch with `m` rows uses: `split1/2/4` (decode: about two blocks per SM, each
/// taking (128 weight rows, group) items in turn; the groups' sums then folded by `fold`) or
/// `tiled` (tiles of 128 weight rows x 64 rows streamed through a ring of shared memory, every
/// group in one block). Only speed depends on it.
pub fn kernel_for_rows(m: usize) -> &'static str {
    match m {
        0..=8 => "split1",
        9..=16 => "split2",
        17..=SMALL_ROWS => "split4",
        _ => "tiled",
    }
}

/// Decode blocks resident on one SM (`__launch_bounds__(256, 2)` in the source): a decode launch
/// has this many per SM, each taking work items in turn.
const SPLIT_BLOCKS_PER_SM: usize = 2;

/// A null device pointer, for the decode kernels' group buffer when there is one group.
static NULL: u64 = 0;

struct MmaLinear;

impl MmaLinear {
    fn launch(
        &self,
        x: (&CudaStorage, &Layout),
        w: (&CudaStorage, &Layout),
        bias: Option<(&CudaStorage, &Layout)>,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let dev = x.0.device();
        let (m, k) = x.1.shape().dims2()?;
        let (n, kw) = w.1.shape().dims2()?;
        let Some((prefix, out_dtype)) = family(x.0.dtype(), w.0.dtype()) else {
            candle_core::bail!(
                "tensor-core linear: no kernel for x {:?} and w {:?}",
                x.0.dtype(),
                w.0.dtype()
            );
        };
        if k != kw || k % 8 != 0 || m == 0 {
            candle_core::bail!("tensor-core linear: x {:?}, w {:?}", x.1.dims(), w.1.dims());
        }
        let kernel = kernel_for_rows(m);
        let ptx = ptx_for_device(dev, MODULE, SOURCE)?;
        let name = format!("{prefix}_{kernel}");
        let func = dev.get_or_load_custom_func(&name, MODULE, ptx)?;
        let (spg, groups) = grouping(n, k);
        let operands = LinearOperands::of(x, w, bias)?;
        let out = Output::alloc(dev, out_dtype, m * n)?;
        let dims = [m as i32, n as i32, k as i32, spg as i32, groups as i32];
        let mut b = func.builder();
        operands.push(&mut b);
        out.push(&mut b);
        if kernel == "tiled" {
            let shared = tiled_shared_bytes(x.0.dtype() == DType::F32);
            allow_dynamic_shared(dev, &func, &name, shared)?;
            for d in &dims {
                b.arg(d);
            }
            let cfg = LaunchConfig {
                grid_dim: (n.div_ceil(TILED_N) as u32, m.div_ceil(TILED_M) as u32, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: shared as u32,
            };
            // Safety: the arguments match the kernel's signature; shapes were checked above and
            // alignment by `linear`.
            unsafe { b.launch(cfg) }.w()?;
            return Ok((out.into_storage(dev), Shape::from((m, n))));
        }
        // Decode: the groups' sums go to `partial` (one plane of m x n per group) and are folded
        // by a second launch; with one group the decode kernel writes y itself.
        let partial = if groups > 1 {
            // Safety: the decode kernel writes every element of every group's plane before the
            // fold (a later launch on the same stream) reads it.
            Some(unsafe { dev.alloc::<f32>(groups * m * n) }?)
        } else {
            None
        };
        match &partial {
            Some(p) => b.arg(p),
            None => b.arg(&NULL),
        };
        for d in &dims {
            b.arg(d);
        }
        let items = n.div_ceil(SPLIT_N) * groups;
        let blocks = items.min(SPLIT_BLOCKS_PER_SM * multiprocessors(dev)?);
        allow_dynamic_shared(dev, &func, &name, SPLIT_W_RING_BYTES)?;
        let cfg = LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (SPLIT_THREADS, 1, 1),
            shared_mem_bytes: SPLIT_W_RING_BYTES as u32,
        };
        // Safety: as above; a block's items are disjoint from every other block's.
        unsafe { b.launch(cfg) }.w()?;
        if let Some(partial) = &partial {
            let fold = dev.get_or_load_custom_func(&format!("{prefix}_fold"), MODULE, ptx)?;
            let mut b = fold.builder();
            b.arg(partial);
            operands.push_bias(&mut b);
            out.push(&mut b);
            let (m, n, groups) = (m as i32, n as i32, groups as i32);
            b.arg(&m);
            b.arg(&n);
            b.arg(&groups);
            // Safety: every plane of `partial` was written by the decode launch before it on this
            // stream; the bias (if any) has n elements.
            unsafe { b.launch(LaunchConfig::for_num_elems((m * n) as u32)) }.w()?;
        }
        Ok((out.into_storage(dev), Shape::from((m, n))))
    }
}

reprolm_precision::cuda_linear_op!(MmaLinear, "reprolm-mma-linear");

/// `x · wᵀ (+ bias)` for `x: (M, K)` and `w: (N, K)` (bias `(N,)` in w's dtype) on CUDA, in the
/// order of the module docs. Output in f32 for f32 `x` (LayerCast), else in `x`'s dtype.
pub fn linear(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> candle_core::Result<Tensor> {
    let (_, k) = x.dims2()?;
    if !serves(x.dtype(), w.dtype(), k) {
        candle_core::bail!(
            "tensor-core linear: no kernel for x {:?} {:?} against w {:?} {:?} (K must be a multiple of 8)",
            x.dtype(),
            x.dims(),
            w.dtype(),
            w.dims()
        );
    }
    // 16-byte loads need 16-byte aligned rows; a view that starts elsewhere is copied.
    super::cublaslt::apply_aligned(x, w, bias, &MmaLinear)
}

/// On a real GPU (`cargo test --release --features cuda -p reprolm-engine gemm`); without a CUDA
/// device each test says so and passes vacuously.
#[cfg(test)]
mod gpu_tests {
    use super::*;

    use crate::kernels::gpu_test::{bits, device as gpu};

    /// Every row count from 1 to 70 and a few more (every decode kernel and the tiled one, with
    /// partial tiles in both directions) gives every row the bits it gets in a call of 200 rows,
    /// for LayerCast and bf16, K with a partial stretch: one stretch per group (300 x 200: 4
    /// groups, fewer stretches than the tiled kernel's ring has slots) and three (1040 x 4104:
    /// 22 groups, the ring wrapping many times). Two wider weights give each decode block several
    /// items in turn, the stream of stretches running on across their ends: 3584 x 2048 (28
    /// columns x 32 groups of one stretch: three or four items a block on a 132-SM GPU) and
    /// 131080 x 136 (1025 columns, one group: the decode kernel writes y itself), at the row
    /// counts where the kernel changes.
    #[test]
    fn each_row_has_the_same_bits_at_every_row_count() -> candle_core::Result<()> {
        let Some(dev) = gpu() else { return Ok(()) };
        assert_eq!(
            [
                grouping(300, 200),
                grouping(1040, 4104),
                grouping(3584, 2048),
                grouping(131080, 136)
            ],
            [(1, 4), (3, 22), (1, 32), (3, 1)]
        );
        let every: Vec<usize> = (1..=70).chain([128, 129, 200]).collect();
        let edges = vec![1, 7, 8, 9, 16, 17, 31, 32, 33, 200];
        for (n, k, rows) in [
            (300, 200, &every),
            (1040, 4104, &every),
            (3584, 2048, &edges),
            (131080, 136, &edges),
        ] {
            let w = (Tensor::randn(0f32, 1.0, (n, k), &dev)? * 0.05)?.to_dtype(DType::BF16)?;
            let b = Tensor::randn(0f32, 0.1, n, &dev)?.to_dtype(DType::BF16)?;
            for x_dtype in [DType::F32, DType::BF16] {
                let x = Tensor::randn(0f32, 1.0, (200, k), &dev)?.to_dtype(x_dtype)?;
                let all = linear(&x, &w, Some(&b))?;
                for &m in rows {
                    let part = linear(&x.narrow(0, 0, m)?, &w, Some(&b))?;
                    assert_eq!(
                        bits(&part),
                        bits(&all.narrow(0, 0, m)?),
                        "{n}x{k}, {x_dtype:?}, {m} rows"
                    );
                }
            }
        }
        Ok(())
    }

    /// LayerCast's three-part product against float64, next to candle's true-FP32 GEMM of the
    /// widened weight: within 2x its error (and both tiny), from the decode kernel (8 rows) and
    /// the tiled one (100 rows: two tiles' worth of warps).
    #[test]
    fn layercast_is_as_accurate_as_an_f32_gemm() -> candle_core::Result<()> {
        let Some(dev) = gpu() else { return Ok(()) };
        for (n, k, m) in [
            (256, 1536, 8),
            (64, 8960, 8),
            (256, 1536, 100),
            (200, 8960, 100),
        ] {
            let w = (Tensor::randn(0f32, 1.0, (n, k), &dev)? * 0.02)?.to_dtype(DType::BF16)?;
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
            let exact = x
                .to_dtype(DType::F64)?
                .matmul(&w.to_dtype(DType::F64)?.t()?)?;
            let err = |y: Tensor| -> candle_core::Result<f64> {
                (y.to_dtype(DType::F64)? - &exact)?
                    .abs()?
                    .max_all()?
                    .to_scalar::<f64>()
            };
            let ours = err(linear(&x, &w, None)?)?;
            let fp32 = err(x.matmul(&w.to_dtype(DType::F32)?.t()?)?)?;
            eprintln!("{n}x{k}, {m} rows: tensor-core LayerCast {ours:.3e}, f32 GEMM {fp32:.3e}");
            assert!(
                ours <= 2.0 * fp32.max(1e-7),
                "{n}x{k}, {m} rows: {ours:e} vs f32 GEMM {fp32:e}"
            );
        }
        Ok(())
    }

    /// The pinned cuBLASLt GEMM with its faster algorithms per row count gives every row the
    /// bits the pinned algorithm alone gives it in a call of 4096 rows, at row counts in every
    /// range and on each side of the ranges' edges, bf16 and f32, bias or none.
    #[test]
    fn the_faster_algorithms_keep_the_pinned_bits() -> candle_core::Result<()> {
        use super::super::cublaslt::{self, Plan};
        let Some(dev) = gpu() else { return Ok(()) };
        for (n, k, dtype, with_bias) in [
            (1536, 1536, DType::BF16, true),
            (8960, 1536, DType::BF16, false),
            (1536, 8960, DType::BF16, false),
            (1536, 1536, DType::F32, false),
        ] {
            let w = (Tensor::randn(0f32, 1.0, (n, k), &dev)? * 0.02)?.to_dtype(dtype)?;
            let b = Tensor::randn(0f32, 0.1, n, &dev)?.to_dtype(dtype)?;
            let b = with_bias.then_some(&b);
            let x = Tensor::randn(0f32, 1.0, (4096, k), &dev)?.to_dtype(dtype)?;
            let key = cublaslt::key_for(&w, with_bias)?;
            let plan = cublaslt::plan_on(cublaslt::cuda_device(&w)?, key)?;
            // The pinned algorithm alone: a plan of its configuration has no faster ones.
            let config = plan.pinned();
            let alone = std::sync::Arc::new(Plan::with_algo(key, &config)?.expect("it runs"));
            let all = cublaslt::linear_with(&alone, &x, &w, b)?;
            for m in [
                1, 2, 3, 5, 8, 9, 16, 17, 31, 32, 33, 63, 64, 65, 128, 200, 255, 256, 257, 512,
                1023, 1024, 1025, 4096,
            ] {
                let y = cublaslt::linear(&x.narrow(0, 0, m)?, &w, b)?;
                assert_eq!(
                    bits(&y),
                    bits(&all.narrow(0, 0, m)?),
                    "{n}x{k} {dtype:?}, {m} rows"
                );
            }
            eprintln!("{n}x{k} {dtype:?}: {}", plan.describe());
        }
        Ok(())
    }

    /// Weights stacked by rows into one GEMM (q/k/v, gate/up) give each part's outputs the bits
    /// of the part's own GEMM, at decode and prefill row counts, on the 1.5B and 7B shapes: a
    /// split-K-free cuBLASLt kernel reduces each output over K alone, whatever N is.
    #[test]
    fn stacked_weights_keep_each_parts_bits() -> candle_core::Result<()> {
        let Some(dev) = gpu() else { return Ok(()) };
        for (parts, k, with_bias) in [
            (&[1536usize, 256, 256][..], 1536, true),
            (&[8960, 8960][..], 1536, false),
            (&[3584, 512, 512][..], 3584, true),
            (&[18944, 18944][..], 3584, false),
        ] {
            let ws = parts
                .iter()
                .map(|&n| (Tensor::randn(0f32, 1.0, (n, k), &dev)? * 0.02)?.to_dtype(DType::BF16))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let bs = parts
                .iter()
                .map(|&n| Tensor::randn(0f32, 0.1, n, &dev)?.to_dtype(DType::BF16))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let w = Tensor::cat(&ws, 0)?;
            let b = Tensor::cat(&bs, 0)?;
            for m in [1, 3, 8, 32, 64, 512] {
                let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?.to_dtype(DType::BF16)?;
                let all = super::super::cublaslt::linear(&x, &w, with_bias.then_some(&b))?;
                let mut at = 0;
                for (wp, bp) in ws.iter().zip(&bs) {
                    let n = wp.dim(0)?;
                    let own = super::super::cublaslt::linear(&x, wp, with_bias.then_some(bp))?;
                    assert_eq!(
                        bits(&all.narrow(1, at, n)?),
                        bits(&own),
                        "{parts:?} x {k}, part at {at}, {m} rows"
                    );
                    at += n;
                }
            }
        }
        Ok(())
    }

    /// The pinned cuBLASLt GEMM gives row 0 the same bits at every row count.
    #[test]
    fn the_pinned_gemm_keeps_row_0_at_every_row_count() -> candle_core::Result<()> {
        let Some(dev) = gpu() else { return Ok(()) };
        let (n, k) = (1536, 1536);
        let w = (Tensor::randn(0f32, 1.0, (n, k), &dev)? * 0.02)?.to_dtype(DType::BF16)?;
        let b = Tensor::randn(0f32, 0.1, n, &dev)?.to_dtype(DType::BF16)?;
        let x = Tensor::randn(0f32, 1.0, (4096, k), &dev)?.to_dtype(DType::BF16)?;
        let row0 = |m: usize| -> candle_core::Result<Vec<u64>> {
            let y = super::super::cublaslt::linear(&x.narrow(0, 0, m)?, &w, Some(&b))?;
            Ok(bits(&y.narrow(0, 0, 1)?))
        };
        let one = row0(1)?;
        for m in [2, 3, 7, 8, 9, 31, 64, 100, 512, 4096] {
            assert_eq!(row0(m)?, one, "{m} rows");
        }
        Ok(())
    }
}
