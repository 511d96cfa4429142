//! The batch-invariant attention on CUDA (`deterministic.cu`): the GPU side of
//! [`ComputeMode::Deterministic`](crate::ComputeMode)'s attention. (Its matmuls run the engine's
//! GEMM layer, `reprolm_engine::kernels::gemm`, which is batch invariant in every mode.)
//!
//! Each query row is reduced by one warp in an order fixed by its own row's keys alone (the source
//! file states it exactly), so a row's numbers do not depend on the batch it is in. They are not
//! the CPU kernels' numbers: the guarantee is per device type.

use super::{ptx, suffix, Output, Words};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaStorage, DType, Layout, Shape, Tensor};

const SOURCE: &str = include_str!("deterministic.cu");
const MODULE: &str = "reprolm_deterministic";
/// Warps (query rows) per block.
const WARPS: usize = 4;

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
