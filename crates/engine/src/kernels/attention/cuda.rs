//! The CUDA body of [`super::paged_attention`] (`paged.cu`).

use super::{PagedQueries, KV_SPLIT};
use crate::{Error, Result};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::op::BackpropOp;
use candle_core::{CudaStorage, DType, Storage, Tensor};
use reprolm_precision::cuda::{ptx, suffix, Output, Words};

pub(super) const SOURCE: &str = include_str!("paged.cu");
pub(super) const MODULE: &str = "reprolm_paged_attention";
/// Threads per block (`THREADS` in the source).
const THREADS: u32 = 128;
/// Query tokens × kv heads below which a query's splits run in parallel blocks (decode): with
/// fewer blocks than this the GPU would idle while each block walked its splits in turn.
const PARALLEL_SPLITS_BELOW: usize = 4096;
/// The most memory the partial results of parallel splits may take.
const PARTIAL_BYTES: usize = 256 << 20;

/// A null device pointer: "no partial results" (the kernel then folds in-block).
static NULL: u64 = 0;

fn cuda<'a>(s: &'a Storage, what: &str) -> Result<&'a CudaStorage> {
    match s {
        Storage::Cuda(c) => Ok(c),
        _ => Err(Error::InvalidRequest(format!(
            "paged attention on CUDA: {what} is not on the GPU"
        ))),
    }
}

fn words<'a>(s: &'a Storage, l: &candle_core::Layout, what: &str) -> Result<Words<'a>> {
    Ok(Words::of(cuda(s, what)?, l)?)
}

fn index<'a>(
    s: &'a Storage,
    l: &candle_core::Layout,
    what: &str,
) -> Result<candle_core::cuda_backend::cudarc::driver::CudaView<'a, u32>> {
    let c = cuda(s, what)?.as_cuda_slice::<u32>()?;
    let (a, b) = l.contiguous_offsets().ok_or_else(|| {
        Error::InvalidRequest(format!("paged attention: {what} is not contiguous"))
    })?;
    Ok(c.slice(a..b))
}

pub(super) fn attention(
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    queries: &PagedQueries,
    scale: f64,
    dtype: DType,
) -> Result<Tensor> {
    if dtype == DType::F64 || keys.dtype() == DType::F64 {
        return Err(Error::InvalidRequest(
            "attention in f64 runs on the CPU only".into(),
        ));
    }
    let [seq, pos, tables] = queries.on_device.as_ref().ok_or_else(|| {
        Error::InvalidRequest("paged attention: the batch was built for the CPU".into())
    })?;
    let (heads, tokens, d) = q.dims3()?;
    let (kv_heads, slots, _) = keys.dims3()?;
    let splits_cap = (queries.max_pos + 1).div_ceil(KV_SPLIT);
    let partial = splits_cap > 1
        && tokens * kv_heads < PARALLEL_SPLITS_BELOW
        && tokens * heads * splits_cap * (d + 2) * 4 <= PARTIAL_BYTES;

    let (qg, ql) = q.storage_and_layout();
    let (kg, kl) = keys.storage_and_layout();
    let (vg, vl) = values.storage_and_layout();
    let (sg, sl) = seq.storage_and_layout();
    let (pg, pl) = pos.storage_and_layout();
    let (tg, tl) = tables.storage_and_layout();
    let qs = cuda(&qg, "q")?;
    let dev = qs.device().clone();
    let (qw, kw, vw) = (
        words(&qg, ql, "q")?,
        words(&kg, kl, "the key pool")?,
        words(&vg, vl, "the value pool")?,
    );
    let (sv, pv, tv) = (
        index(&sg, sl, "the sequence indices")?,
        index(&pg, pl, "the positions")?,
        index(&tg, tl, "the block tables")?,
    );
    let ptx = ptx(MODULE, SOURCE)?;
    let (qn, kn) = (suffix(dtype)?, suffix(keys.dtype())?);
    let func = dev.get_or_load_custom_func(&format!("paged_attention_{qn}_{kn}"), MODULE, ptx)?;
    let out = Output::alloc(&dev, dtype, heads * tokens * d)?;
    let (part_acc, part_ml) = if partial {
        // Safety: the fold kernel reads only the partial results the first kernel wrote (the
        // splits each query has).
        unsafe {
            (
                Some(dev.alloc::<f32>(tokens * heads * splits_cap * d)?),
                Some(dev.alloc::<f32>(tokens * heads * splits_cap * 2)?),
            )
        }
    } else {
        (None, None)
    };
    let dims = [
        queries.width as i32,
        tokens as i32,
        heads as i32,
        kv_heads as i32,
        d as i32,
    ];
    let slots = slots as i64;
    let scale = scale as f32;
    let cap = splits_cap as i32;
    {
        let mut b = func.builder();
        qw.push(&mut b);
        kw.push(&mut b);
        vw.push(&mut b);
        b.arg(&sv);
        b.arg(&pv);
        b.arg(&tv);
        for x in &dims {
            b.arg(x);
        }
        b.arg(&slots);
        b.arg(&scale);
        b.arg(&cap);
        match (&part_acc, &part_ml) {
            (Some(a), Some(m)) => {
                b.arg(a);
                b.arg(m);
            }
            _ => {
                b.arg(&NULL);
                b.arg(&NULL);
            }
        }
        out.push(&mut b);
        let cfg = LaunchConfig {
            grid_dim: (
                tokens as u32,
                kv_heads as u32,
                if partial { splits_cap as u32 } else { 1 },
            ),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // Safety: the arguments match the kernel's signature; shapes were checked by the caller.
        unsafe { b.launch(cfg) }.w()?;
    }
    if let (Some(a), Some(m)) = (&part_acc, &part_ml) {
        let fold = dev.get_or_load_custom_func(&format!("paged_fold_{qn}"), MODULE, ptx)?;
        let mut b = fold.builder();
        b.arg(&pv);
        b.arg(&dims[1]);
        b.arg(&dims[2]);
        b.arg(&dims[4]);
        b.arg(&cap);
        b.arg(a);
        b.arg(m);
        out.push(&mut b);
        let cfg = LaunchConfig {
            grid_dim: (tokens as u32, heads as u32, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // Safety: as above; every (token, head) row of the partial results was written.
        unsafe { b.launch(cfg) }.w()?;
    }
    let storage: CudaStorage = out.into_storage(&dev);
    Ok(Tensor::from_storage(
        Storage::Cuda(storage),
        (heads, tokens, d),
        BackpropOp::none(),
        false,
    ))
}
