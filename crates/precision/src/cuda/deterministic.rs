//! The batch-invariant matmul and attention on CUDA (`deterministic.cu`): the GPU side of
//! [`ComputeMode::Deterministic`](crate::ComputeMode).
//!
//! Each output element is computed by one warp in an order fixed by the reduction length alone
//! (the source file states it exactly), so a row's numbers do not depend on the batch it is in.
//! They are not the CPU kernels' numbers: the guarantee is per device type.

use super::{ptx, suffix, LinearOperands, Output, Words};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaStorage, DType, Layout, Shape, Tensor};

const SOURCE: &str = include_str!("deterministic.cu");
const MODULE: &str = "reprolm_deterministic";
/// Rows of `x` one warp takes (`MT` in the source).
const ROWS_PER_WARP: usize = 8;
/// Warps per block.
const WARPS: usize = 4;
/// Most chunks the kernel's tree holds (`2^(MAXLV - 1)`).
pub const MAX_CHUNKS: usize = 128;

struct LinearOp {
    chunks: usize,
}

impl LinearOp {
    fn launch(
        &self,
        x: (&CudaStorage, &Layout),
        w: (&CudaStorage, &Layout),
        bias: Option<(&CudaStorage, &Layout)>,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let dev = x.0.device();
        let (m, k) = x.1.shape().dims2()?;
        let (n, kw) = w.1.shape().dims2()?;
        if k != kw || k % self.chunks != 0 {
            candle_core::bail!(
                "deterministic matmul: x {:?} and w {:?} with {} chunks",
                x.1.dims(),
                w.1.dims(),
                self.chunks
            );
        }
        let name = format!(
            "det_linear_{}_{}",
            suffix(x.0.dtype())?,
            suffix(w.0.dtype())?
        );
        let func = dev.get_or_load_custom_func(&name, MODULE, ptx(MODULE, SOURCE)?)?;
        let operands = LinearOperands::of(x, w, bias)?;
        let out = Output::alloc(dev, x.0.dtype(), m * n)?;
        let dims = [m as i32, n as i32, k as i32, self.chunks as i32];
        let mut b = func.builder();
        operands.push(&mut b);
        out.push(&mut b);
        for d in &dims {
            b.arg(d);
        }
        let cfg = LaunchConfig {
            grid_dim: (
                m.div_ceil(ROWS_PER_WARP) as u32,
                n.div_ceil(WARPS) as u32,
                1,
            ),
            block_dim: ((32 * WARPS) as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        // Safety: the arguments match the kernel's signature; shapes were checked above.
        unsafe { b.launch(cfg) }.w()?;
        Ok((out.into_storage(dev), Shape::from((m, n))))
    }
}

super::cuda_linear_op!(LinearOp, "reprolm-deterministic-linear");

/// `x · wᵀ (+ bias)` for `x: (M, K)` and `w: (N, K)` on CUDA, in `compute`: `x` and the bias are
/// taken in `compute`; `w` is read in its own dtype when widening it to f32 is exact (f32, or
/// bf16/f16 under a 16-bit or f32 computation), else rounded to `compute` first. f32 accumulation,
/// `chunks` a power of two dividing `K` (at most [`MAX_CHUNKS`]).
pub fn linear(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    compute: DType,
    chunks: usize,
) -> candle_core::Result<Tensor> {
    if !chunks.is_power_of_two() || chunks > MAX_CHUNKS {
        candle_core::bail!(
            "deterministic matmul: {chunks} chunks (a power of two up to {MAX_CHUNKS})"
        );
    }
    let x = x.to_dtype(compute)?.contiguous()?;
    let exact = matches!(
        (w.dtype(), compute),
        (DType::F32, DType::F32)
            | (DType::BF16, DType::F32 | DType::BF16)
            | (DType::F16, DType::F32 | DType::F16)
    );
    let w = if exact {
        w.clone()
    } else {
        w.to_dtype(compute)?
    }
    .contiguous()?;
    let op = LinearOp { chunks };
    match bias {
        Some(b) => x.apply_op3_no_bwd(&w, &b.to_dtype(compute)?.contiguous()?, &op),
        None => x.apply_op2_no_bwd(&w, &op),
    }
}

struct AttentionOp {
    starts: Vec<i32>,
    past: usize,
    scale: f32,
}

impl candle_core::CustomOp3 for AttentionOp {
    fn name(&self) -> &'static str {
        "reprolm-deterministic-attention"
    }
    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, Shape)> {
        candle_core::bail!("the CUDA deterministic attention got CPU tensors")
    }
    fn cuda_fwd(
        &self,
        q: &CudaStorage,
        ql: &Layout,
        k: &CudaStorage,
        kl: &Layout,
        v: &CudaStorage,
        vl: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let dev = q.device();
        let (b, h, l, d) = ql.shape().dims4()?;
        let (kb, kvh, t, kd) = kl.shape().dims4()?;
        if kb != b || kd != d || vl.dims() != kl.dims() || h % kvh != 0 || d > 256 {
            candle_core::bail!(
                "deterministic attention: q {:?}, k {:?}, v {:?} (head_dim up to 256)",
                ql.dims(),
                kl.dims(),
                vl.dims()
            );
        }
        if self.starts.len() != b || t != self.past + l {
            candle_core::bail!(
                "deterministic attention: {} row starts, {} past slots for q {:?}, k {:?}",
                self.starts.len(),
                self.past,
                ql.dims(),
                kl.dims()
            );
        }
        let func = dev.get_or_load_custom_func(
            &format!("det_attention_{}", suffix(q.dtype())?),
            MODULE,
            ptx(MODULE, SOURCE)?,
        )?;
        let starts = dev.clone_htod(self.starts.as_slice())?;
        let (qw, kw, vw) = (Words::of(q, ql)?, Words::of(k, kl)?, Words::of(v, vl)?);
        let out = Output::alloc(dev, q.dtype(), b * h * l * d)?;
        let dims = [
            b as i32,
            h as i32,
            kvh as i32,
            l as i32,
            t as i32,
            d as i32,
            self.past as i32,
        ];
        let mut a = func.builder();
        qw.push(&mut a);
        kw.push(&mut a);
        vw.push(&mut a);
        a.arg(&starts);
        out.push(&mut a);
        for x in &dims {
            a.arg(x);
        }
        a.arg(&self.scale);
        let rows = b * h * l;
        let cfg = LaunchConfig {
            grid_dim: (rows.div_ceil(WARPS) as u32, 1, 1),
            block_dim: ((32 * WARPS) as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        // Safety: the arguments match the kernel's signature; shapes were checked above.
        unsafe { a.launch(cfg) }.w()?;
        Ok((out.into_storage(dev), ql.shape().clone()))
    }
}

/// Causal attention on CUDA for `q: (batch, heads, queries, head_dim)` over the cache
/// `k, v: (batch, kv_heads, past + queries, head_dim)`, rows left-padded by `starts`, in `dtype`
/// (operands converted to it; f32 arithmetic, rounded where a `dtype` attention rounds).
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    starts: &[usize],
    past: usize,
    scale: f64,
    dtype: DType,
) -> candle_core::Result<Tensor> {
    let prep = |t: &Tensor| -> candle_core::Result<Tensor> { t.to_dtype(dtype)?.contiguous() };
    let op = AttentionOp {
        starts: starts.iter().map(|&s| s as i32).collect(),
        past,
        scale: scale as f32,
    };
    prep(q)?.apply_op3_no_bwd(&prep(k)?, &prep(v)?, &op)
}
