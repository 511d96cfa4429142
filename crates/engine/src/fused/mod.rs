//! Fused GPU kernels for the decoder's small ops: RMSNorm, the SwiGLU product, RoPE, and a
//! step's log-softmax and greedy token and top-k choice.
//!
//! On a GPU a decode step of a small batch is bound by kernel launches, not by arithmetic: the
//! composed candle ops of one RMSNorm are nine launches, of one RoPE about ten. These kernels
//! (`kernels.cu` beside this file, compiled at run time by NVRTC) do each in one
//! launch and round at the same points as the composed ops, so a fused run computes the same
//! numbers except for the order in which RMSNorm sums its squares and log-softmax sums its
//! exponentials. The greedy choice was about 45 launches per step, a dozen of them single-block
//! reductions over the vocabulary; its kernels make the same exact selection in two.
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

/// The residual stream's next value `x + delta` (rounded to the dtype) and [`rms_norm`] of it,
/// in one launch: `(sum, normed)`. The same bits as the add followed by [`rms_norm`], since the
/// sum of two values of one 16-bit type rounded through f32 is their correctly rounded sum.
pub fn add_rms_norm(
    x: &Tensor,
    delta: &Tensor,
    weight: &Tensor,
    eps: f64,
    fusion: Fusion,
) -> Result<Option<(Tensor, Tensor)>> {
    if !enabled(x.device(), fusion)
        || x.dtype() != weight.dtype()
        || x.dtype() != delta.dtype()
        || x.dims() != delta.dims()
    {
        return Ok(None);
    }
    imp::add_rms_norm(x, delta, weight, eps)
}

/// `silu(gate) * up`, SiLU in f32 rounded once to the dtype, the product in the dtype.
pub fn silu_mul(gate: &Tensor, up: &Tensor, fusion: Fusion) -> Result<Option<Tensor>> {
    if !enabled(gate.device(), fusion) || !silu_mul_applies(gate, up) {
        return Ok(None);
    }
    imp::silu_mul(gate, up, false)
}

/// Whether the SwiGLU kernels take `gate` and `up`: one dtype and shape, not empty.
fn silu_mul_applies(gate: &Tensor, up: &Tensor) -> bool {
    gate.dtype() == up.dtype() && gate.dims() == up.dims() && gate.elem_count() > 0
}

/// [`silu_mul`] with the portable exponential (`reprolm_precision::portable::exp`) in place of
/// `expf`: the CPU's composed SiLU (`kernels::activation::silu`, then the product in the dtype),
/// bit for bit, on CUDA whatever `--fused-kernels` says (the portable tier's SwiGLU). `Ok(None)`
/// on the CPU, whose composed ops are the reference.
pub fn silu_mul_portable(gate: &Tensor, up: &Tensor) -> Result<Option<Tensor>> {
    if !gate.device().is_cuda() || !silu_mul_applies(gate, up) {
        return Ok(None);
    }
    imp::silu_mul(gate, up, true)
}

/// Rotary embedding of `x` laid out `(batch, seq, heads, head_dim)`, returned in the same layout
/// in the dtype of `cos`/`sin` (`(batch, seq, head_dim / 2)`).
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

/// RoPE of a layer's new queries and keys and the write of its keys and values into their cache
/// slots, in one launch: `q`, `k`, `v` `(1, tokens, heads, head_dim)` as the projections give
/// them (contiguous, or parts of one stacked output), and `cos`/`sin` `(1, tokens, head_dim / 2)`,
/// all of one dtype, which must also be the pools' (`(kv_heads, slots, head_dim)`). Returns the
/// rotated queries, contiguous. The same numbers as [`rope`] followed by
/// [`write_slots`](crate::kernels::attention::write_slots): the rotation rounds where [`rope`]
/// rounds, and a slot of [`PAD_SLOT`](crate::kv::PAD_SLOT) is written nowhere.
pub fn rope_and_cache_write(
    [q, k, v]: [&Tensor; 3],
    (cos, sin): (&Tensor, &Tensor),
    (keys, values): (&Tensor, &Tensor),
    slots: &Tensor,
    fusion: Fusion,
) -> Result<Option<Tensor>> {
    let dtype = q.dtype();
    let one_dtype = [k, v, cos, sin, keys, values]
        .iter()
        .all(|t| t.dtype() == dtype);
    if !enabled(q.device(), fusion)
        || !one_dtype
        || !matches!(dtype, DType::F32 | DType::BF16 | DType::F16)
        || slots.dtype() != DType::U32
    {
        return Ok(None);
    }
    imp::rope_and_cache_write([q, k, v], (cos, sin), (keys, values), slots)
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

/// `log_softmax` over each row of `(rows, n)` f32 `logits`, in two launches over parts of the row
/// (the composed ops reduce a row in one block each for its max and its sum, and upload their
/// shapes: about a tenth of a millisecond each over a 152k vocabulary). Each row's order is fixed
/// by `n` alone (parts of 2,048 entries, their sums folded in order), so a row's values do not
/// depend on the batch. The sum is grouped otherwise than the composed ops group it, so the
/// last bits differ from theirs.
pub fn log_softmax(logits: &Tensor, fusion: Fusion) -> Result<Option<Tensor>> {
    if !enabled(logits.device(), fusion) || logits.dtype() != DType::F32 || logits.rank() != 2 {
        return Ok(None);
    }
    imp::log_softmax(logits)
}

/// `layout` as `(start, rows, stride)`: rows of `cols` contiguous elements, row `r` starting
/// `start + r * stride`. That is a contiguous tensor (stride `cols`) or a slice of the last
/// dimensions of one (the parts of a stacked GEMM output); `None` for any other layout.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn rows_of(layout: &candle_core::Layout, cols: usize) -> Option<(usize, usize, usize)> {
    let (dims, strides) = (layout.dims(), layout.stride());
    let n: usize = dims.iter().product();
    if cols == 0 || n % cols != 0 {
        return None;
    }
    // The innermost dimensions that are contiguous together.
    let (mut inner, mut i) = (1, dims.len());
    while i > 0 && (dims[i - 1] == 1 || strides[i - 1] == inner) {
        inner *= dims[i - 1];
        i -= 1;
    }
    let start = layout.start_offset();
    if i == 0 {
        return Some((start, n / cols, cols));
    }
    // The outer ones must step by one stride over rows of exactly `cols`.
    if inner != cols {
        return None;
    }
    let (mut rows, mut stride) = (1, None);
    for j in (0..i).rev() {
        if dims[j] == 1 {
            continue;
        }
        match stride {
            None => (rows, stride) = (dims[j], Some(strides[j])),
            Some(s) if strides[j] == s * rows => rows *= dims[j],
            Some(_) => return None,
        }
    }
    Some((start, rows, stride.unwrap_or(cols)))
}

/// The elements `rows` of `cols` (as [`rows_of`] gives them) lie in: from the first row's start
/// to the last row's end.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn row_span((start, rows, stride): (usize, usize, usize), cols: usize) -> std::ops::Range<usize> {
    start..start + rows.saturating_sub(1) * stride + cols
}

#[cfg(not(feature = "cuda"))]
mod imp {
    use crate::Result;
    use candle_core::Tensor;

    pub fn rms_norm(_: &Tensor, _: &Tensor, _: f64) -> Result<Option<Tensor>> {
        Ok(None)
    }
    pub fn add_rms_norm(
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        _: f64,
    ) -> Result<Option<(Tensor, Tensor)>> {
        Ok(None)
    }
    pub fn silu_mul(_: &Tensor, _: &Tensor, _: bool) -> Result<Option<Tensor>> {
        Ok(None)
    }
    pub fn rope_and_cache_write(
        _: [&Tensor; 3],
        _: (&Tensor, &Tensor),
        _: (&Tensor, &Tensor),
        _: &Tensor,
    ) -> Result<Option<Tensor>> {
        Ok(None)
    }
    pub fn rope(_: &Tensor, _: &Tensor, _: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }
    pub fn log_softmax(_: &Tensor) -> Result<Option<Tensor>> {
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

    use super::{row_span, rows_of};

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
            // Safety: the arguments match the kernel's signature; sizes were checked above.
            unsafe { b.launch(norm_config(rows, cols)) }.w()?;
            Ok((out.into_storage(dev), xl.shape().clone()))
        }
    }

    /// One block per row, its width set by the row length alone: the sum of squares is reduced
    /// in an order that depends on `cols` only, the same in [`RmsNorm`] and [`AddRmsNorm`].
    fn norm_config(rows: usize, cols: usize) -> LaunchConfig {
        let block = if cols >= 1024 {
            1024
        } else {
            cols.next_power_of_two().clamp(32, 1024)
        } as u32;
        LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (block, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Option<Tensor>> {
        let x = x.contiguous()?;
        Ok(Some(
            x.apply_op2_no_bwd(weight, &RmsNorm { eps: eps as f32 })?,
        ))
    }

    /// `(normed, sum)` stacked in one `(2, ..x's shape)` buffer, the normed rows first (they go
    /// on to a GEMM, which wants its input at the start of an allocation).
    struct AddRmsNorm {
        eps: f32,
    }

    impl candle_core::CustomOp3 for AddRmsNorm {
        fn name(&self) -> &'static str {
            "reprolm-fused-add-rmsnorm"
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
            candle_core::bail!("the fused add + RMSNorm kernel runs on CUDA only")
        }
        fn cuda_fwd(
            &self,
            x: &CudaStorage,
            xl: &Layout,
            a: &CudaStorage,
            al: &Layout,
            w: &CudaStorage,
            wl: &Layout,
        ) -> candle_core::Result<(CudaStorage, Shape)> {
            let dev = x.device();
            let cols = *xl.dims().last().unwrap_or(&1);
            if wl.shape().elem_count() != cols || al.dims() != xl.dims() {
                candle_core::bail!(
                    "add + rmsnorm: weight of {} values, x {:?}, delta {:?}",
                    wl.shape().elem_count(),
                    xl.dims(),
                    al.dims()
                );
            }
            let n = xl.shape().elem_count();
            let rows = n / cols.max(1);
            let func = dev.get_or_load_custom_func(
                &format!("add_rmsnorm_{}", suffix(x.dtype())?),
                MODULE,
                ptx(MODULE, SOURCE)?,
            )?;
            let (xw, aw, ww) = (Words::of(x, xl)?, Words::of(a, al)?, Words::of(w, wl)?);
            let out = Out::alloc(dev, x.dtype(), 2 * n)?;
            let (rows_i, cols_i) = (rows as i32, cols as i32);
            let inv_cols = (1.0 / cols as f64) as f32;
            let mut b = func.builder();
            xw.push(&mut b);
            aw.push(&mut b);
            ww.push(&mut b);
            out.push(&mut b);
            b.arg(&rows_i);
            b.arg(&cols_i);
            b.arg(&inv_cols);
            b.arg(&self.eps);
            // Safety: the arguments match the kernel's signature; sizes were checked above.
            unsafe { b.launch(norm_config(rows, cols)) }.w()?;
            let mut dims = vec![2];
            dims.extend_from_slice(xl.dims());
            Ok((out.into_storage(dev), Shape::from(dims)))
        }
    }

    pub fn add_rms_norm(
        x: &Tensor,
        delta: &Tensor,
        weight: &Tensor,
        eps: f64,
    ) -> Result<Option<(Tensor, Tensor)>> {
        let (x, delta) = (x.contiguous()?, delta.contiguous()?);
        let both = x.apply_op3_no_bwd(&delta, weight, &AddRmsNorm { eps: eps as f32 })?;
        Ok(Some((both.get(1)?, both.get(0)?)))
    }

    /// `silu(gate) * up`; `portable` takes the portable exponential.
    struct SiluMul {
        portable: bool,
    }

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
            let cols = *gl.dims().last().unwrap_or(&1);
            let (Some(g_rows), Some(u_rows)) = (rows_of(gl, cols), rows_of(ul, cols)) else {
                candle_core::bail!("silu * up: gate and up must be rows of {cols} elements");
            };
            let ((_, rows, gs), (_, _, us)) = (g_rows, u_rows);
            let n = rows * cols;
            let func = dev.get_or_load_custom_func(
                &format!(
                    "silu_mul_{}{}",
                    if self.portable { "portable_" } else { "" },
                    suffix(g.dtype())?
                ),
                MODULE,
                ptx(MODULE, SOURCE)?,
            )?;
            let gw = Words::elements(g, row_span(g_rows, cols))?;
            let uw = Words::elements(u, row_span(u_rows, cols))?;
            let out = Out::alloc(dev, g.dtype(), n)?;
            let (n_i, cols_i, gs_i, us_i) = (n as i64, cols as i32, gs as i64, us as i64);
            let mut b = func.builder();
            gw.push(&mut b);
            uw.push(&mut b);
            out.push(&mut b);
            b.arg(&n_i);
            b.arg(&cols_i);
            b.arg(&gs_i);
            b.arg(&us_i);
            // Safety: the arguments match the kernel's signature; every row read lies in the
            // span handed over.
            unsafe { b.launch(elementwise_config(n)) }.w()?;
            Ok((out.into_storage(dev), gl.shape().clone()))
        }
    }

    /// `t` as rows of `cols` elements for a kernel that walks them itself: `t` where its layout
    /// already is such rows ([`rows_of`]; the parts of a stacked output), else a contiguous copy;
    /// with where the rows lie (`(start, rows, stride)`).
    fn in_rows(t: &Tensor, cols: usize) -> Result<(Tensor, (usize, usize, usize))> {
        let t = match rows_of(t.layout(), cols) {
            Some(_) => t.clone(),
            None => t.contiguous()?,
        };
        let rows = rows_of(t.layout(), cols).ok_or_else(|| {
            crate::Error::InvalidRequest(format!(
                "a {:?} tensor is not rows of {cols} elements",
                t.dims()
            ))
        })?;
        Ok((t, rows))
    }

    /// `portable` takes the portable exponential.
    pub fn silu_mul(gate: &Tensor, up: &Tensor, portable: bool) -> Result<Option<Tensor>> {
        let cols = gate.dims().last().copied().unwrap_or(1);
        let ((gate, _), (up, _)) = (in_rows(gate, cols)?, in_rows(up, cols)?);
        Ok(Some(gate.apply_op2_no_bwd(&up, &SiluMul { portable })?))
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
            Ok((out.into_storage(dev), Shape::from((b, l, h, d))))
        }
    }

    pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Option<Tensor>> {
        let (x, cos, sin) = (x.contiguous()?, cos.contiguous()?, sin.contiguous()?);
        Ok(Some(x.apply_op3_no_bwd(&cos, &sin, &Rope)?))
    }

    pub fn rope_and_cache_write(
        [q, k, v]: [&Tensor; 3],
        (cos, sin): (&Tensor, &Tensor),
        (keys, values): (&Tensor, &Tensor),
        slots: &Tensor,
    ) -> Result<Option<Tensor>> {
        let (b, tokens, heads, d) = q.dims4()?;
        let (_, _, kv_heads, _) = k.dims4()?;
        let (pool_heads, pool_slots, pd) = keys.dims3()?;
        let half = d / 2;
        let fits = b == 1
            && tokens > 0
            && d % 2 == 0
            && k.dims() == [1, tokens, kv_heads, d]
            && v.dims() == k.dims()
            && cos.dims() == [1, tokens, half]
            && sin.dims() == cos.dims()
            && (pool_heads, pd) == (kv_heads, d)
            && values.dims() == keys.dims()
            && slots.dims() == [tokens];
        if !fits {
            return Err(crate::Error::InvalidRequest(format!(
                "rope + cache write: q {:?}, k {:?}, v {:?}, cos {:?}, pools {:?}, slots {:?} do \
                 not fit together",
                q.dims(),
                k.dims(),
                v.dims(),
                cos.dims(),
                keys.dims(),
                slots.dims()
            )));
        }
        // q, k and v may be parts of one stacked output: rows of heads x head_dim per token.
        let ((q, q_rows), (k, k_rows), (v, v_rows)) = (
            in_rows(q, heads * d)?,
            in_rows(k, kv_heads * d)?,
            in_rows(v, kv_heads * d)?,
        );
        let (cos, sin) = (cos.contiguous()?, sin.contiguous()?);
        if !(keys.is_contiguous() && values.is_contiguous()) {
            return Err(crate::Error::InvalidRequest(
                "rope + cache write: the pools must be contiguous".into(),
            ));
        }
        let spans = [
            row_span(q_rows, heads * d),
            row_span(k_rows, kv_heads * d),
            row_span(v_rows, kv_heads * d),
        ];
        let guards = [&q, &k, &v, &cos, &sin, keys, values].map(|t| t.storage_and_layout());
        let mut words = Vec::with_capacity(guards.len());
        for (i, (g, l)) in guards.iter().enumerate() {
            match &**g {
                candle_core::Storage::Cuda(c) if i < 3 => {
                    words.push(Words::elements(c, spans[i].clone())?)
                }
                candle_core::Storage::Cuda(c) => words.push(Words::of(c, l)?),
                _ => {
                    return Err(crate::Error::InvalidRequest(
                        "rope + cache write: a tensor is not on the GPU".into(),
                    ))
                }
            }
        }
        let (sg, sl) = slots.storage_and_layout();
        let candle_core::Storage::Cuda(sc) = &*sg else {
            return Err(crate::Error::InvalidRequest(
                "rope + cache write: the slots are not on the GPU".into(),
            ));
        };
        let (s0, s1) = sl.contiguous_offsets().ok_or_else(|| {
            crate::Error::InvalidRequest("rope + cache write: the slots are not contiguous".into())
        })?;
        let slot_view = sc.as_cuda_slice::<u32>()?.slice(s0..s1);
        let dev = sc.device().clone();
        let dtype = q.dtype();
        let func = dev.get_or_load_custom_func(
            &format!("rope_cache_write_{}", suffix(dtype)?),
            MODULE,
            ptx(MODULE, SOURCE)?,
        )?;
        let out = Out::alloc(&dev, dtype, tokens * heads * d)?;
        let ints = [tokens as i32, heads as i32, kv_heads as i32, d as i32];
        let pool_slots = pool_slots as i64;
        let mut bl = func.builder();
        for w in &words[..5] {
            w.push(&mut bl);
        }
        bl.arg(&slot_view);
        out.push(&mut bl);
        // The pools are written in place through their device words: the kernel writes only
        // the slots of this call's tokens, which no other tensor views, and every access to a
        // pool is ordered on the device's one stream (as `write_slots`, an in-place op, is).
        words[5].push(&mut bl);
        words[6].push(&mut bl);
        for x in &ints {
            bl.arg(x);
        }
        bl.arg(&pool_slots);
        let strides = [q_rows, k_rows, v_rows].map(|(_, _, stride)| stride as i64);
        for x in &strides {
            bl.arg(x);
        }
        let n = tokens * (heads + 2 * kv_heads) * half;
        // Safety: the arguments match the kernel's signature; shapes were checked above, and a
        // slot outside the pool (a padding row's) is written nowhere.
        unsafe { bl.launch(elementwise_config(n)) }.w()?;
        let storage = out.into_storage(&dev);
        Ok(Some(Tensor::from_storage(
            candle_core::Storage::Cuda(storage),
            (1, tokens, heads, d),
            candle_core::op::BackpropOp::none(),
            false,
        )))
    }

    /// Threads per block of the greedy top-k kernels (`TOPK_THREADS` in the source).
    const TOPK_THREADS: usize = 256;
    /// Logits per block of the first top-k kernel: a 152k vocabulary is 75 blocks per row.
    const TOPK_CHUNK: usize = 2048;

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
            let ptx = ptx(MODULE, SOURCE)?;
            let part =
                dev.get_or_load_custom_func(&format!("greedy_top_k_part_{list}"), MODULE, ptx)?;
            let merge =
                dev.get_or_load_custom_func(&format!("greedy_top_k_merge_{list}"), MODULE, ptx)?;
            let (lgw, lpw) = (Words::of(lg, lgl)?, Words::of(lp, lpl)?);
            // Parts of TOPK_CHUNK logits (more where a row would need more parts than the merge
            // block has threads).
            let chunk = TOPK_CHUNK.max(n.div_ceil(TOPK_THREADS));
            let parts = n.div_ceil(chunk);
            // Safety: every slot is written by its part's block before the merge reads it.
            let (part_v, part_i, part_bv, part_bi) = unsafe {
                (
                    dev.alloc::<f32>(rows * parts * list)?,
                    dev.alloc::<i32>(rows * parts * list)?,
                    dev.alloc::<f32>(rows * parts)?,
                    dev.alloc::<i32>(rows * parts)?,
                )
            };
            let (n_i, chunk_i) = (n as i32, chunk as i32);
            let mut bl = part.builder();
            lgw.push(&mut bl);
            lpw.push(&mut bl);
            bl.arg(&part_v);
            bl.arg(&part_i);
            bl.arg(&part_bv);
            bl.arg(&part_bi);
            bl.arg(&n_i);
            bl.arg(&chunk_i);
            let cfg = LaunchConfig {
                grid_dim: (rows as u32, parts as u32, 1),
                block_dim: (TOPK_THREADS as u32, 1, 1),
                shared_mem_bytes: 0,
            };
            // Safety: the arguments match the kernel's signature; shapes were checked above.
            unsafe { bl.launch(cfg) }.w()?;
            let width = 2 + 2 * self.k;
            let out = Out::alloc(dev, DType::F32, rows * width)?;
            let (k_i, parts_i) = (self.k as i32, parts as i32);
            let mut bl = merge.builder();
            lpw.push(&mut bl);
            bl.arg(&part_v);
            bl.arg(&part_i);
            bl.arg(&part_bv);
            bl.arg(&part_bi);
            out.push(&mut bl);
            bl.arg(&n_i);
            bl.arg(&k_i);
            bl.arg(&parts_i);
            let cfg = LaunchConfig {
                grid_dim: (rows as u32, 1, 1),
                block_dim: (TOPK_THREADS as u32, 1, 1),
                shared_mem_bytes: 0,
            };
            // Safety: as above; parts <= TOPK_THREADS, one merging thread per part.
            unsafe { bl.launch(cfg) }.w()?;
            Ok((out.into_storage(dev), Shape::from((rows, width))))
        }
    }

    /// Threads per block of the log-softmax kernels (`LSM_THREADS` in the source): also the most
    /// parts a row is cut into.
    const LSM_THREADS: usize = 256;
    /// Entries per part of a row (`LSM_CHUNK`).
    const LSM_CHUNK: usize = 2048;

    struct LogSoftmax;

    impl candle_core::CustomOp1 for LogSoftmax {
        fn name(&self) -> &'static str {
            "reprolm-fused-log-softmax"
        }
        fn cpu_fwd(
            &self,
            _: &candle_core::CpuStorage,
            _: &Layout,
        ) -> candle_core::Result<(candle_core::CpuStorage, Shape)> {
            candle_core::bail!("the fused log-softmax runs on CUDA only")
        }
        fn cuda_fwd(
            &self,
            x: &CudaStorage,
            xl: &Layout,
        ) -> candle_core::Result<(CudaStorage, Shape)> {
            let dev = x.device();
            let (rows, n) = xl.shape().dims2()?;
            let out = Out::alloc(dev, DType::F32, rows * n)?;
            if rows * n == 0 {
                return Ok((out.into_storage(dev), xl.shape().clone()));
            }
            let ptx = ptx(MODULE, SOURCE)?;
            let part = dev.get_or_load_custom_func("log_softmax_part", MODULE, ptx)?;
            let write = dev.get_or_load_custom_func("log_softmax_write", MODULE, ptx)?;
            let xw = Words::of(x, xl)?;
            // A function of n alone: the order of every row's sums.
            let chunk = LSM_CHUNK.max(n.div_ceil(LSM_THREADS));
            let parts = n.div_ceil(chunk);
            // Safety: every (row, part) slot is written by its block before the second launch
            // reads it.
            let (part_m, part_s) = unsafe {
                (
                    dev.alloc::<f32>(rows * parts)?,
                    dev.alloc::<f32>(rows * parts)?,
                )
            };
            let (n_i, chunk_i) = (n as i32, chunk as i32);
            let cfg = LaunchConfig {
                grid_dim: (rows as u32, parts as u32, 1),
                block_dim: (LSM_THREADS as u32, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut bl = part.builder();
            xw.push(&mut bl);
            bl.arg(&part_m);
            bl.arg(&part_s);
            bl.arg(&n_i);
            bl.arg(&chunk_i);
            // Safety: the arguments match the kernel's signature; the shape was checked above.
            unsafe { bl.launch(cfg) }.w()?;
            let mut bl = write.builder();
            xw.push(&mut bl);
            bl.arg(&part_m);
            bl.arg(&part_s);
            out.push(&mut bl);
            bl.arg(&n_i);
            bl.arg(&chunk_i);
            // Safety: as above; parts <= LSM_THREADS, one reading thread per part.
            unsafe { bl.launch(cfg) }.w()?;
            Ok((out.into_storage(dev), xl.shape().clone()))
        }
    }

    pub fn log_softmax(logits: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(logits.contiguous()?.apply_op1_no_bwd(&LogSoftmax)?))
    }

    pub fn greedy_top_k(logits: &Tensor, logprobs: &Tensor, k: usize) -> Result<Option<Tensor>> {
        let (logits, logprobs) = (logits.contiguous()?, logprobs.contiguous()?);
        Ok(Some(logits.apply_op2_no_bwd(&logprobs, &GreedyTopK { k })?))
    }
}

#[cfg(test)]
mod tests {
    use super::rows_of;
    use candle_core::{DType, Device, Tensor};

    #[test]
    fn rows_of_reads_contiguous_tensors_and_parts_of_a_stacked_output() -> crate::Result<()> {
        let dev = Device::Cpu;
        // A stacked q/k/v output: 5 tokens of (6 + 2 + 2) heads of width 4.
        let qkv = Tensor::zeros((1, 5, 10, 4), DType::F32, &dev)?;
        assert_eq!(rows_of(qkv.layout(), 40), Some((0, 5, 40)));
        assert_eq!(
            rows_of(qkv.layout(), 8),
            Some((0, 25, 8)),
            "any divisor of a whole tensor"
        );
        let k = qkv.narrow(2, 6, 2)?;
        assert_eq!(rows_of(k.layout(), 8), Some((24, 5, 40)));
        // gate and up halves of a stacked (1, 5, 2 * 7) output.
        let gate_up = Tensor::zeros((1, 5, 14), DType::F32, &dev)?;
        let up = gate_up.narrow(2, 7, 7)?;
        assert_eq!(rows_of(up.layout(), 7), Some((7, 5, 14)));
        // One token: its one row, wherever it starts.
        let one = Tensor::zeros((1, 1, 10, 4), DType::F32, &dev)?.narrow(2, 6, 2)?;
        assert_eq!(rows_of(one.layout(), 8), Some((24, 1, 8)));
        // Not rows of a stride: a transpose, and a row width the parts do not make up.
        let t = Tensor::zeros((6, 4), DType::F32, &dev)?.t()?;
        assert_eq!(rows_of(t.layout(), 6), None);
        assert_eq!(rows_of(k.layout(), 4), None);
        Ok(())
    }
}

/// The fused kernels against the launches they replace, bit for bit.
#[cfg(all(test, feature = "cuda"))]
mod gpu_tests {
    use super::*;
    use crate::kernels::attention::write_slots;
    use crate::kernels::gpu_test::{bits, device};
    use crate::kv::PAD_SLOT;

    const DTYPES: [DType; 3] = [DType::F32, DType::BF16, DType::F16];

    /// The portable SwiGLU on the GPU against the CPU's composed one (the portable exponential's
    /// SiLU in f32, rounded to the dtype, times `up` in the dtype), bit for bit.
    #[test]
    fn portable_silu_mul_gives_the_cpus_bits() -> Result<()> {
        let Some(dev) = device() else {
            return Ok(());
        };
        let cpu = candle_core::Device::Cpu;
        for dtype in DTYPES {
            let gate = (Tensor::randn(0f32, 4.0, (7, 1000), &cpu)?).to_dtype(dtype)?;
            let up = (Tensor::randn(0f32, 1.0, (7, 1000), &cpu)?).to_dtype(dtype)?;
            let want =
                crate::kernels::activation::silu(&gate.to_dtype(DType::F32)?)?.to_dtype(dtype)?;
            let want = (want * &up)?;
            let got = silu_mul_portable(&gate.to_device(&dev)?, &up.to_device(&dev)?)?
                .expect("the kernel applies");
            assert_eq!(bits(&got), bits(&want), "{dtype:?}");
        }
        Ok(())
    }

    #[test]
    fn add_rms_norm_gives_the_bits_of_the_add_then_the_norm() -> Result<()> {
        let Some(dev) = device() else {
            return Ok(());
        };
        for dtype in DTYPES {
            for cols in [24, 1536, 3584] {
                let rand = |rows: usize, scale: f64| -> Result<Tensor> {
                    Ok((Tensor::randn(0f32, 1.0, (1, rows, cols), &dev)? * scale)?
                        .to_dtype(dtype)?)
                };
                let (x, delta) = (rand(5, 3.0)?, rand(5, 0.5)?);
                let w = (Tensor::randn(1f32, 0.1, cols, &dev)?).to_dtype(dtype)?;
                let (sum, normed) =
                    add_rms_norm(&x, &delta, &w, 1e-6, Fusion::On)?.expect("the kernel applies");
                let want_sum = (&x + &delta)?;
                let want = rms_norm(&want_sum, &w, 1e-6, Fusion::On)?.expect("the kernel applies");
                assert_eq!(bits(&sum), bits(&want_sum), "{dtype:?} {cols}: sum");
                assert_eq!(bits(&normed), bits(&want), "{dtype:?} {cols}: normed");
                assert_eq!(
                    normed.layout().start_offset(),
                    0,
                    "the GEMM input comes first"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn rope_and_cache_write_gives_the_bits_of_rope_then_the_writes() -> Result<()> {
        let Some(dev) = device() else {
            return Ok(());
        };
        let (tokens, heads, kv_heads, d, pool_slots) = (5, 6, 2, 64, 48);
        let slots = Tensor::new(&[7u32, 30, PAD_SLOT, 0, 41], &dev)?;
        for dtype in DTYPES {
            let rand = |shape: &[usize]| -> Result<Tensor> {
                Ok(Tensor::randn(0f32, 1.0, shape, &dev)?.to_dtype(dtype)?)
            };
            // q, k and v as the decoder has them: parts of one stacked projection output.
            let qkv = rand(&[1, tokens, heads + 2 * kv_heads, d])?;
            let q = qkv.narrow(2, 0, heads)?;
            let k = qkv.narrow(2, heads, kv_heads)?;
            let v = qkv.narrow(2, heads + kv_heads, kv_heads)?;
            let (cos, sin) = (rand(&[1, tokens, d / 2])?, rand(&[1, tokens, d / 2])?);
            let pools = rand(&[2, kv_heads, pool_slots, d])?;
            let pool = |i: usize| -> Result<Tensor> { Ok(pools.get(i)?.copy()?) };
            let (keys, values) = (pool(0)?, pool(1)?);
            let q_rot = rope_and_cache_write(
                [&q, &k, &v],
                (&cos, &sin),
                (&keys, &values),
                &slots,
                Fusion::On,
            )?
            .expect("the kernel applies");
            let (want_keys, want_values) = (pool(0)?, pool(1)?);
            let want_q = rope(&q, &cos, &sin, Fusion::On)?.expect("the kernel applies");
            let want_k = rope(&k, &cos, &sin, Fusion::On)?.expect("the kernel applies");
            write_slots(&want_keys, &want_k.squeeze(0)?, &slots)?;
            write_slots(&want_values, &v.squeeze(0)?, &slots)?;
            assert_eq!(bits(&q_rot), bits(&want_q), "{dtype:?}: rotated queries");
            assert_eq!(bits(&keys), bits(&want_keys), "{dtype:?}: key pool");
            assert_eq!(bits(&values), bits(&want_values), "{dtype:?}: value pool");
            assert_ne!(
                bits(&keys),
                bits(&pools.get(0)?),
                "{dtype:?}: keys were written"
            );
        }
        Ok(())
    }

    #[test]
    fn silu_mul_reads_the_halves_of_a_stacked_output_as_it_reads_copies() -> Result<()> {
        let Some(dev) = device() else {
            return Ok(());
        };
        for dtype in DTYPES {
            let gate_up = (Tensor::randn(0f32, 3.0, (1, 5, 2 * 96), &dev)?).to_dtype(dtype)?;
            let (gate, up) = (gate_up.narrow(2, 0, 96)?, gate_up.narrow(2, 96, 96)?);
            let strided = silu_mul(&gate, &up, Fusion::On)?.expect("the kernel applies");
            let copies = silu_mul(&gate.contiguous()?, &up.contiguous()?, Fusion::On)?
                .expect("the kernel applies");
            assert_eq!(bits(&strided), bits(&copies), "{dtype:?}");
        }
        Ok(())
    }
}
