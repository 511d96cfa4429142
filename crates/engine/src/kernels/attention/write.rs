//! Writing new keys or values into their slots of a pool, in place.

use crate::kv::PAD_SLOT;
use crate::{Error, Result};
use candle_core::{CpuStorage, InplaceOp3, Layout, Tensor};

/// Writes row `t` of `src: (tokens, kv_heads, head_dim)` into slot `slots[t]` of
/// `pool: (kv_heads, slots, head_dim)` (same dtype), in place: nothing else of the pool moves.
/// A row whose slot is [`PAD_SLOT`] is written nowhere (a padding row of a captured step); any
/// other slot outside the pool is an error on the CPU and written nowhere on CUDA.
pub fn write_slots(pool: &Tensor, src: &Tensor, slots: &Tensor) -> Result<()> {
    let (ph, _, pd) = pool.dims3()?;
    let (t, sh, sd) = src.dims3()?;
    if (ph, pd) != (sh, sd) || pool.dtype() != src.dtype() || slots.dims() != [t] {
        return Err(Error::InvalidRequest(format!(
            "cache write: {:?} {:?} rows at {:?} slots do not fit a {:?} {:?} pool",
            src.dims(),
            src.dtype(),
            slots.dims(),
            pool.dims(),
            pool.dtype()
        )));
    }
    let src = src.contiguous()?;
    let slots = slots.contiguous()?;
    Ok(pool.inplace_op3(&src, &slots, &WriteSlots)?)
}

struct WriteSlots;

fn copy_rows<T: Copy>(
    pool: &mut [T],
    pl: &Layout,
    src: &[T],
    sl: &Layout,
    slots: &[u32],
) -> candle_core::Result<()> {
    let (heads, pool_slots, d) = pl.shape().dims3()?;
    let (_, src_heads, _) = sl.shape().dims3()?;
    let (Some((p0, _)), Some((s0, _))) = (pl.contiguous_offsets(), sl.contiguous_offsets()) else {
        candle_core::bail!("cache write: the pool and the rows must be contiguous");
    };
    for g in 0..heads {
        for (t, &slot) in slots.iter().enumerate() {
            if slot == PAD_SLOT {
                continue;
            }
            let slot = slot as usize;
            if slot >= pool_slots {
                candle_core::bail!("cache write: slot {slot} is outside the pool");
            }
            let to = p0 + (g * pool_slots + slot) * d;
            let from = s0 + (t * src_heads + g) * d;
            pool[to..to + d].copy_from_slice(&src[from..from + d]);
        }
    }
    Ok(())
}

impl InplaceOp3 for WriteSlots {
    fn name(&self) -> &'static str {
        "reprolm-paged-write"
    }

    fn cpu_fwd(
        &self,
        pool: &mut CpuStorage,
        pl: &Layout,
        src: &CpuStorage,
        sl: &Layout,
        slots: &CpuStorage,
        il: &Layout,
    ) -> candle_core::Result<()> {
        let slots = match slots {
            CpuStorage::U32(v) => {
                let (a, b) = il
                    .contiguous_offsets()
                    .ok_or_else(|| candle_core::Error::Msg("cache write: slots".into()))?;
                &v[a..b]
            }
            _ => candle_core::bail!("cache write: slots must be u32"),
        };
        match (pool, src) {
            (CpuStorage::BF16(p), CpuStorage::BF16(s)) => copy_rows(p, pl, s, sl, slots),
            (CpuStorage::F16(p), CpuStorage::F16(s)) => copy_rows(p, pl, s, sl, slots),
            (CpuStorage::F32(p), CpuStorage::F32(s)) => copy_rows(p, pl, s, sl, slots),
            (CpuStorage::F64(p), CpuStorage::F64(s)) => copy_rows(p, pl, s, sl, slots),
            _ => candle_core::bail!("cache write: no kernel for this dtype"),
        }
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        pool: &mut candle_core::CudaStorage,
        pl: &Layout,
        src: &candle_core::CudaStorage,
        sl: &Layout,
        slots: &candle_core::CudaStorage,
        il: &Layout,
    ) -> candle_core::Result<()> {
        use candle_core::backend::BackendStorage;
        use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
        use candle_core::cuda_backend::WrapErr;
        use candle_core::DType;
        let dev = pool.device().clone();
        let (heads, pool_slots, d) = pl.shape().dims3()?;
        let (tokens, _, _) = sl.shape().dims3()?;
        let whole = |l: &Layout| {
            l.contiguous_offsets()
                .ok_or_else(|| candle_core::Error::Msg("cache write: not contiguous".into()))
        };
        let (p0, p1) = whole(pl)?;
        let (s0, s1) = whole(sl)?;
        let (i0, i1) = whole(il)?;
        let slots = slots.as_cuda_slice::<u32>()?.slice(i0..i1);
        let name = format!(
            "paged_write_{}",
            reprolm_precision::cuda::suffix(pool.dtype())?
        );
        let func = dev.get_or_load_custom_func(
            &name,
            super::cuda::MODULE,
            super::cuda::module_ptx(&dev)?,
        )?;
        let cfg = LaunchConfig {
            grid_dim: (tokens as u32, heads as u32, 1),
            block_dim: (d.min(256) as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        let (t, dd, ps) = (tokens as i32, d as i32, pool_slots as i64);
        macro_rules! launch {
            ($ty:ty) => {{
                let src = src.as_cuda_slice::<$ty>()?.slice(s0..s1);
                let mut dst = pool.as_cuda_slice_mut::<$ty>()?.slice_mut(p0..p1);
                let mut b = func.builder();
                b.arg(&src);
                b.arg(&slots);
                b.arg(&t);
                b.arg(&dd);
                b.arg(&ps);
                b.arg(&mut dst);
                // Safety: the arguments match the kernel's signature; every slot was checked
                // against the pool by the block tables that produced it.
                unsafe { b.launch(cfg) }.w()?;
            }};
        }
        match pool.dtype() {
            DType::F32 => launch!(f32),
            DType::BF16 => launch!(half::bf16),
            DType::F16 => launch!(half::f16),
            other => candle_core::bail!("cache write: no CUDA kernel for {other:?}"),
        }
        Ok(())
    }
}
