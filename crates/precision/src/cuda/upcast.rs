//! LayerCast's matmul for a decode step's few rows on CUDA (`upcast.cu`): bf16 weights widened to
//! f32 in registers instead of in an f32 copy of the whole matrix.
//!
//! At batch 1 the composed path (a cast kernel, then an f32 GEMM) reads 2 bytes, writes 4 and
//! reads 4 again for every weight; this kernel reads the 2. It accumulates in f32 in its own order,
//! so its results differ from cuBLAS's in the last bits, as two f32 GEMM algorithms do.

use super::{ptx, LinearOperands, Output};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaStorage, DType, Layout, Shape, Tensor};

const SOURCE: &str = include_str!("upcast.cu");
const MODULE: &str = "reprolm_upcast";
/// The most rows the kernel takes (its largest compile-time row count).
pub const MAX_ROWS: usize = 8;
/// Warps (output columns) per block.
const WARPS: usize = 8;

struct UpcastGemv;

impl UpcastGemv {
    fn launch(
        &self,
        x: (&CudaStorage, &Layout),
        w: (&CudaStorage, &Layout),
        bias: Option<(&CudaStorage, &Layout)>,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let dev = x.0.device();
        let (m, k) = x.1.shape().dims2()?;
        let (n, kw) = w.1.shape().dims2()?;
        if k != kw || m == 0 || m > MAX_ROWS || k % 8 != 0 {
            candle_core::bail!("upcast matmul: x {:?}, w {:?}", x.1.dims(), w.1.dims());
        }
        let r = m.next_power_of_two();
        let func = dev.get_or_load_custom_func(
            &format!("upcast_gemv_bf16_r{r}"),
            MODULE,
            ptx(MODULE, SOURCE)?,
        )?;
        let operands = LinearOperands::of(x, w, bias)?;
        let out = Output::alloc(dev, DType::F32, m * n)?;
        let dims = [m as i32, n as i32, k as i32];
        let mut b = func.builder();
        operands.push(&mut b);
        out.push(&mut b);
        for d in &dims {
            b.arg(d);
        }
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(WARPS) as u32, 1, 1),
            block_dim: ((32 * WARPS) as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        // Safety: the arguments match the kernel's signature; shapes were checked above and
        // alignment by `upcast_linear`.
        unsafe { b.launch(cfg) }.w()?;
        Ok((out.into_storage(dev), Shape::from((m, n))))
    }
}

super::cuda_linear_op!(UpcastGemv, "reprolm-upcast-gemv");

/// Whether a 16-byte vector load at element `offset` of a `bytes`-wide dtype is aligned (the
/// allocation itself is).
fn aligned(offset: usize, bytes: usize) -> bool {
    (offset * bytes) % 16 == 0
}

/// `x · wᵀ (+ bias)` in f32 for `x: (M, K)` f32 with `M <= MAX_ROWS` and `w: (N, K)`, bias `(N,)`
/// both bf16, on CUDA; `None` where the kernel does not apply (other dtypes or shapes, more rows,
/// `K` not a multiple of 8, unaligned views), and the caller runs cast + GEMM.
pub fn upcast_linear(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
) -> candle_core::Result<Option<Tensor>> {
    let (m, k) = x.dims2()?;
    let applies = x.device().is_cuda()
        && x.dtype() == DType::F32
        && w.dtype() == DType::BF16
        && bias.is_none_or(|b| b.dtype() == DType::BF16 && b.rank() == 1)
        && (1..=MAX_ROWS).contains(&m)
        && k % 8 == 0
        && w.dims2()?.1 == k;
    if !applies {
        return Ok(None);
    }
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    if !aligned(x.layout().start_offset(), 4) || !aligned(w.layout().start_offset(), 2) {
        return Ok(None);
    }
    let y = match bias {
        Some(b) => x.apply_op3_no_bwd(&w, &b.contiguous()?, &UpcastGemv)?,
        None => x.apply_op2_no_bwd(&w, &UpcastGemv)?,
    };
    Ok(Some(y))
}

/// Against the cast + f32 GEMM it replaces, on a real GPU (`cargo test --release --features cuda
/// -p reprolm-precision upcast`); without a CUDA device the test says so and passes vacuously.
#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn upcast_linear_is_the_f32_product_of_the_widened_weight() -> candle_core::Result<()> {
        let dev = match Device::new_cuda(0) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("skipped: no CUDA device ({e})");
                return Ok(());
            }
        };
        let (n, k) = (300, 1536);
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev)?.to_dtype(DType::BF16)?;
        let b = Tensor::randn(0f32, 1.0, n, &dev)?.to_dtype(DType::BF16)?;
        for rows in [1, 3, 8] {
            let x = Tensor::randn(0f32, 1.0, (rows, k), &dev)?;
            for bias in [None, Some(&b)] {
                let got = upcast_linear(&x, &w, bias)?.expect("applies");
                let mut want = x.matmul(&w.to_dtype(DType::F32)?.t()?)?;
                if let Some(b) = bias {
                    want = want.broadcast_add(&b.to_dtype(DType::F32)?)?;
                }
                // Two f32 accumulation orders: within a few ulps of the sum of |terms|.
                let scale = x.abs()?.matmul(&w.to_dtype(DType::F32)?.abs()?.t()?)?;
                let err = ((got - want)?.abs()? / scale)?
                    .max_all()?
                    .to_scalar::<f32>()?;
                assert!(err < 1e-5, "rows {rows}: relative error {err}");
            }
        }
        // More rows than the kernel takes: the caller's cast + GEMM runs instead.
        let x = Tensor::randn(0f32, 1.0, (MAX_ROWS + 1, k), &dev)?;
        assert!(upcast_linear(&x, &w, None)?.is_none());
        Ok(())
    }
}
