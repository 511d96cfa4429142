//! Fused GPU kernels for the decoder's small ops: RMSNorm, the SwiGLU product, RoPE, and a
//! greedy step's token and top-k choice.
//!
//! On a GPU a decode step of a small batch is bound by kernel launches, not by arithmetic: the
//! composed candle ops of one RMSNorm are nine launches, of one RoPE about ten. These kernels
//! (`kernels.cu` beside this file, compiled at run time by NVRTC) do each in one
//! launch and round at the same points as the composed ops, so a fused run computes the same
//! numbers except for the order in which RMSNorm sums its squares. The greedy choice was about 45 launches per step, a dozen of them single-block reductions over
//! the vocabulary; its kernel makes the same exact selection in one.
//!
//! Every function returns `Ok(None)` where it does not apply (CPU tensors, a build without the
//! `cuda` feature, a dtype combination without a kernel, or `--fused-kernels off`, passed in as
//! [`Fusion::Off`]), and the caller then runs the composed ops.

use crate::kernels::Fusion;
use crate::Result;
use candle_core::{DType, Tensor};

/// Whether fused kernels may run for tensors on `device`: a CUDA device, with `fusion` on (the
/// run's [`Kernels::fusion`](crate::kernels::Kernels::fusion), chosen once at load).
pub fn enabled(device: &candle_core::Device, fusion: Fusion) -> bool {
    device.is_cuda() && fusion == Fusion::On
}

/// `weight * (x / sqrt(mean(x²) + eps))` over the last dimension with f32 statistics, the
/// normalised value rounded to `x`'s dtype before the multiply (transformers' order).
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64, fusion: Fusion) -> Result<Option<Tensor>> {
    if !enabled(x.device(), fusion) || x.dtype() != weight.dtype() {
        return Ok(None);
    }
    imp::rms_norm(x, weight, eps)
}

/// `silu(gate) * up`, SiLU in f32 rounded once to the dtype, the product in the dtype.
pub fn silu_mul(gate: &Tensor, up: &Tensor, fusion: Fusion) -> Result<Option<Tensor>> {
    if !enabled(gate.device(), fusion) || gate.dtype() != up.dtype() || gate.dims() != up.dims() {
        return Ok(None);
    }
    imp::silu_mul(gate, up)
}

/// Rotary embedding of `x` laid out `(batch, seq, heads, head_dim)`, returned as
/// `(batch, heads, seq, head_dim)` in the dtype of `cos`/`sin` (`(batch, seq, head_dim / 2)`).
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, fusion: Fusion) -> Result<Option<Tensor>> {
    if !enabled(x.device(), fusion) || cos.dtype() != sin.dtype() {
        return Ok(None);
    }
    let supported = matches!(
        (x.dtype(), cos.dtype()),
        (DType::F32, DType::F32)
            | (DType::BF16, DType::BF16)
            | (DType::F16, DType::F16)
            | (DType::BF16, DType::F32)
            | (DType::F16, DType::F32)
    );
    if !supported {
        return Ok(None);
    }
    imp::rope(x, cos, sin)
}

/// Largest `k` [`greedy_top_k`] handles.
pub const MAX_TOP_K: usize = 8;

/// A greedy step's choice for each row of `(rows, n)` f32 `logits` with their `logprobs`, in one
/// launch: a `(rows, 2 + 2k)` f32 table of the token (the first index of the largest logit), its
/// log-probability, and `k` (index, log-probability) pairs, largest first, the lower index first
/// on a tie. Indices are exact in f32 below 2^24. `k` must be at most `n` and [`MAX_TOP_K`].
pub fn greedy_top_k(
    logits: &Tensor,
    logprobs: &Tensor,
    k: usize,
    fusion: Fusion,
) -> Result<Option<Tensor>> {
    let applies = enabled(logits.device(), fusion)
        && logits.dtype() == DType::F32
        && logprobs.dtype() == DType::F32
        && logits.dims() == logprobs.dims()
        && logits.rank() == 2
        && k <= MAX_TOP_K
        && k <= logits.dim(1)?
        && logits.dim(1)? < 1 << 24;
    if !applies {
        return Ok(None);
    }
    imp::greedy_top_k(logits, logprobs, k)
}

#[cfg(not(feature = "cuda"))]
mod imp {
    use crate::Result;
    use candle_core::Tensor;

    pub fn rms_norm(_: &Tensor, _: &Tensor, _: f64) -> Result<Option<Tensor>> {
        Ok(None)
    }
    pub fn silu_mul(_: &Tensor, _: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }
    pub fn rope(_: &Tensor, _: &Tensor, _: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }
    pub fn greedy_top_k(_: &Tensor, _: &Tensor, _: usize) -> Result<Option<Tensor>> {
        Ok(None)
    }
}

#[cfg(feature = "cuda")]
mod imp {
    use crate::Result;
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::WrapErr;
    use candle_core::{CudaStorage, DType, Layout, Shape, Tensor};
    use reprolm_precision::cuda::{ptx, suffix, Output as Out, Words};

    const SOURCE: &str = include_str!("kernels.cu");
    const MODULE: &str = "reprolm_fused";

    fn elementwise_config(n: usize) -> LaunchConfig {
        let block = 256u32;
        let grid = n.div_ceil(block as usize).clamp(1, 65_535) as u32;
        LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (block, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    struct RmsNorm {
        eps: f32,
    }

    impl candle_core::CustomOp2 for RmsNorm {
        fn name(&self) -> &'static str {
            "reprolm-fused-rmsnorm"
        }
        fn cpu_fwd(
            &self,
            _: &candle_core::CpuStorage,
            _: &Layout,
            _: &candle_core::CpuStorage,
            _: &Layout,
        ) -> candle_core::Result<(candle_core::CpuStorage, Shape)> {
            candle_core::bail!("the fused RMSNorm kernel runs on CUDA only")
        }
        fn cuda_fwd(
            &self,
            x: &CudaStorage,
            xl: &Layout,
            w: &CudaStorage,
            wl: &Layout,
        ) -> candle_core::Result<(CudaStorage, Shape)> {
            let dev = x.device();
            let cols = *xl.dims().last().unwrap_or(&1);
            if wl.shape().elem_count() != cols {
                candle_core::bail!(
                    "rmsnorm weight has {} values for rows of {cols}",
                    wl.shape().elem_count()
                );
            }
            let n = xl.shape().elem_count();
            let rows = n / cols.max(1);
            let func = dev.get_or_load_custom_func(
                &format!("rmsnorm_{}", suffix(x.dtype())?),
                MODULE,
                ptx(MODULE, SOURCE)?,
            )?;
            let (xw, ww) = (Words::of(x, xl)?, Words::of(w, wl)?);
            let out = Out::alloc(dev, x.dtype(), n)?;
            let cols_i = cols as i32;
            let mut b = func.builder();
            xw.push(&mut b);
            ww.push(&mut b);
            out.push(&mut b);
            let inv_cols = (1.0 / cols as f64) as f32;
            b.arg(&cols_i);
            b.arg(&inv_cols);
            b.arg(&self.eps);
            let block = if cols >= 1024 {
                1024
            } else {
                cols.next_power_of_two().clamp(32, 1024)
            } as u32;
            let cfg = LaunchConfig {
                grid_dim: (rows as u32, 1, 1),
                block_dim: (block, 1, 1),
                shared_mem_bytes: 0,
            };
            // Safety: the arguments match the kernel's signature; sizes were checked above.
            unsafe { b.launch(cfg) }.w()?;
            Ok((out.into_storage(dev), xl.shape().clone()))
        }
    }

    pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Option<Tensor>> {
        let x = x.contiguous()?;
        Ok(Some(
            x.apply_op2_no_bwd(weight, &RmsNorm { eps: eps as f32 })?,
        ))
    }

    struct SiluMul;

    impl candle_core::CustomOp2 for SiluMul {
        fn name(&self) -> &'static str {
            "reprolm-fused-silu-mul"
        }
        fn cpu_fwd(
            &self,
            _: &candle_core::CpuStorage,
            _: &Layout,
            _: &candle_core::CpuStorage,
            _: &Layout,
        ) -> candle_core::Result<(candle_core::CpuStorage, Shape)> {
            candle_core::bail!("the fused SiLU kernel runs on CUDA only")
        }
        fn cuda_fwd(
            &self,
            g: &CudaStorage,
            gl: &Layout,
            u: &CudaStorage,
            ul: &Layout,
        ) -> candle_core::Result<(CudaStorage, Shape)> {
            let dev = g.device();
            let n = gl.shape().elem_count();
            let func = dev.get_or_load_custom_func(
                &format!("silu_mul_{}", suffix(g.dtype())?),
                MODULE,
                ptx(MODULE, SOURCE)?,
            )?;
            let (gw, uw) = (Words::of(g, gl)?, Words::of(u, ul)?);
            let out = Out::alloc(dev, g.dtype(), n)?;
            let n_i = n as i64;
            let mut b = func.builder();
            gw.push(&mut b);
            uw.push(&mut b);
            out.push(&mut b);
            b.arg(&n_i);
            // Safety: the arguments match the kernel's signature.
            unsafe { b.launch(elementwise_config(n)) }.w()?;
            Ok((out.into_storage(dev), gl.shape().clone()))
        }
    }

    pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Option<Tensor>> {
        let (gate, up) = (gate.contiguous()?, up.contiguous()?);
        Ok(Some(gate.apply_op2_no_bwd(&up, &SiluMul)?))
    }

    struct Rope;

    impl candle_core::CustomOp3 for Rope {
        fn name(&self) -> &'static str {
            "reprolm-fused-rope"
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
            candle_core::bail!("the fused RoPE kernel runs on CUDA only")
        }
        fn cuda_fwd(
            &self,
            x: &CudaStorage,
            xl: &Layout,
            c: &CudaStorage,
            cl: &Layout,
            s: &CudaStorage,
            sl: &Layout,
        ) -> candle_core::Result<(CudaStorage, Shape)> {
            let dev = x.device();
            let (b, l, h, d) = xl.shape().dims4()?;
            if cl.dims() != [b, l, d / 2] || sl.dims() != cl.dims() || d % 2 != 0 {
                candle_core::bail!("rope: cos/sin {:?} do not fit x {:?}", cl.dims(), xl.dims());
            }
            let func = dev.get_or_load_custom_func(
                &format!("rope_{}_{}", suffix(x.dtype())?, suffix(c.dtype())?),
                MODULE,
                ptx(MODULE, SOURCE)?,
            )?;
            let (xw, cw, sw) = (Words::of(x, xl)?, Words::of(c, cl)?, Words::of(s, sl)?);
            let n = b * l * h * d;
            let out = Out::alloc(dev, c.dtype(), n)?;
            let dims = [b as i32, l as i32, h as i32, d as i32];
            let mut bl = func.builder();
            xw.push(&mut bl);
            cw.push(&mut bl);
            sw.push(&mut bl);
            out.push(&mut bl);
            for v in &dims {
                bl.arg(v);
            }
            // Safety: the arguments match the kernel's signature; shapes were checked above.
            unsafe { bl.launch(elementwise_config(n / 2)) }.w()?;
            Ok((out.into_storage(dev), Shape::from((b, h, l, d))))
        }
    }

    pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Option<Tensor>> {
        let (x, cos, sin) = (x.contiguous()?, cos.contiguous()?, sin.contiguous()?);
        Ok(Some(x.apply_op3_no_bwd(&cos, &sin, &Rope)?))
    }

    struct GreedyTopK {
        k: usize,
    }

    impl candle_core::CustomOp2 for GreedyTopK {
        fn name(&self) -> &'static str {
            "reprolm-fused-greedy-top-k"
        }
        fn cpu_fwd(
            &self,
            _: &candle_core::CpuStorage,
            _: &Layout,
            _: &candle_core::CpuStorage,
            _: &Layout,
        ) -> candle_core::Result<(candle_core::CpuStorage, Shape)> {
            candle_core::bail!("the fused greedy top-k runs on CUDA only")
        }
        fn cuda_fwd(
            &self,
            lg: &CudaStorage,
            lgl: &Layout,
            lp: &CudaStorage,
            lpl: &Layout,
        ) -> candle_core::Result<(CudaStorage, Shape)> {
            let dev = lg.device();
            let (rows, n) = lgl.shape().dims2()?;
            if lpl.dims() != lgl.dims() || self.k > n {
                candle_core::bail!(
                    "greedy top-{}: logits {:?}, log-probabilities {:?}",
                    self.k,
                    lgl.dims(),
                    lpl.dims()
                );
            }
            // The smallest compiled list length that holds k (at least 1, for the token alone).
            let list = self.k.max(1).next_power_of_two();
            let func = dev.get_or_load_custom_func(
                &format!("greedy_top_k_{list}"),
                MODULE,
                ptx(MODULE, SOURCE)?,
            )?;
            let (lgw, lpw) = (Words::of(lg, lgl)?, Words::of(lp, lpl)?);
            let width = 2 + 2 * self.k;
            let out = Out::alloc(dev, DType::F32, rows * width)?;
            let ints = [n as i32, self.k as i32];
            let mut bl = func.builder();
            lgw.push(&mut bl);
            lpw.push(&mut bl);
            out.push(&mut bl);
            for v in &ints {
                bl.arg(v);
            }
            let cfg = LaunchConfig {
                grid_dim: (rows as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            // Safety: the arguments match the kernel's signature; shapes were checked above.
            unsafe { bl.launch(cfg) }.w()?;
            Ok((out.into_storage(dev), Shape::from((rows, width))))
        }
    }

    pub fn greedy_top_k(logits: &Tensor, logprobs: &Tensor, k: usize) -> Result<Option<Tensor>> {
        let (logits, logprobs) = (logits.contiguous()?, logprobs.contiguous()?);
        Ok(Some(logits.apply_op2_no_bwd(&logprobs, &GreedyTopK { k })?))
    }
}
