//! The CUDA body of [`super::paged_attention`] (`paged.cu`).

use super::{PagedQueries, KV_SPLIT};
use crate::{Error, Result};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaView, LaunchArgs, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::WrapErr;
use candle_core::op::BackpropOp;
use candle_core::{CudaStorage, DType, Storage, Tensor};
use reprolm_precision::cuda::{allow_dynamic_shared, ptx_for_device, suffix, Output, Words};

const SOURCE: &str = include_str!("paged.cu");
pub(super) const MODULE: &str = "reprolm_paged_attention";

/// The PTX of the attention kernels and the cache write (one module), for `dev`'s own
/// architecture: the tensor-core route needs `mma` and `ldmatrix`, which NVRTC's default target
/// lacks. Every user of [`MODULE`] must come through here, as the PTX is cached by module name.
pub(super) fn module_ptx(dev: &candle_core::CudaDevice) -> candle_core::Result<&'static str> {
    ptx_for_device(dev, MODULE, SOURCE)
}
/// Threads per block of the split kernels (`THREADS` in the source).
const THREADS: u32 = 128;
/// Threads per block of the prefill kernel (`PREFILL_THREADS`).
const PREFILL_THREADS: u32 = 256;
/// Statistics the prefill kernel keeps per query row (`ROW_STATS`).
const ROW_STATS: usize = 7;
/// Query rows whose scores the f32 kernels compute together (`ROW_ILP`).
const ROW_ILP: usize = 8;
/// Query rows (tokens × query heads of one kv head) a prefill block takes at most: each split's
/// keys and values are read once for all of them, and their scores fit in shared memory.
const PREFILL_ROWS: usize = 48;
/// Query tokens × kv heads below which a query's splits run in parallel blocks (decode): with
/// fewer blocks than this the GPU would idle while each block walked its splits in turn.
pub(super) const PARALLEL_SPLITS_BELOW: usize = 4096;
/// The most memory the partial results of parallel splits may take.
const PARTIAL_BYTES: usize = 256 << 20;
/// Positions per chunk of the tensor-core route (`TC_CHUNK` in the source).
const TC_CHUNK: usize = super::TENSOR_CORE_SPLIT;
/// The widest head the tensor-core route takes (`TC_MAX_D`).
const TC_MAX_D: usize = super::TENSOR_CORE_MAX_HEAD_DIM;
/// Threads of a tensor-core decode block: 4 warps that share one chunk (`TC_SPLIT_WARPS`).
const TC_SPLIT_THREADS: u32 = 128;
/// Query rows of a tensor-core prefill block: 4 warps of 16 (`TC_WARPS`).
const TC_ROWS: usize = 64;
/// Shared memory of a tensor-core prefill block: two chunks' keys and values, rows padded by 8.
const TC_SHARED: usize = 2 * 2 * TC_CHUNK * (TC_MAX_D + 8) * 2;
/// The most memory the tensor-core route's partial results (one per chunk) may take, as for the
/// f32 route: beyond it (long contexts at large batches) the tiles fold in registers instead,
/// which needs no buffer and gives the same bits.
const TC_PARTIAL_BYTES: usize = PARTIAL_BYTES;

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

fn index<'a>(s: &'a Storage, l: &candle_core::Layout, what: &str) -> Result<CudaView<'a, u32>> {
    let c = cuda(s, what)?.as_cuda_slice::<u32>()?;
    let (a, b) = l.contiguous_offsets().ok_or_else(|| {
        Error::InvalidRequest(format!("paged attention: {what} is not contiguous"))
    })?;
    Ok(c.slice(a..b))
}

/// The arguments both attention kernels begin with, in their order: q, the key and value pools,
/// each query's sequence and position, the block tables, (width, tokens, heads, kv_heads, d),
/// the pools' slots and the scale.
struct Inputs<'a> {
    q: Words<'a>,
    keys: Words<'a>,
    values: Words<'a>,
    seq: CudaView<'a, u32>,
    pos: CudaView<'a, u32>,
    tables: CudaView<'a, u32>,
    dims: [i32; 5],
    slots: i64,
    scale: f32,
}

impl Inputs<'_> {
    fn push<'b>(&'b self, b: &mut LaunchArgs<'b>) {
        self.q.push(b);
        self.keys.push(b);
        self.values.push(b);
        b.arg(&self.seq);
        b.arg(&self.pos);
        b.arg(&self.tables);
        for x in &self.dims {
            b.arg(x);
        }
        b.arg(&self.slots);
        b.arg(&self.scale);
    }
}

/// Hands `f` the device and the kernels' leading arguments for q, the pools and the batch's device
/// buffers (its sequence indices, positions and block tables), with the scale.
fn with_inputs<R>(
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    queries: &PagedQueries,
    scale: f64,
    f: impl FnOnce(&candle_core::CudaDevice, &Inputs<'_>) -> Result<R>,
) -> Result<R> {
    let [seq, pos, tables] = queries.on_device.as_ref().ok_or_else(|| {
        Error::InvalidRequest("paged attention: the batch was built for the CPU".into())
    })?;
    let (tokens, heads, d) = q.dims3()?;
    let (kv_heads, slots, _) = keys.dims3()?;
    let (qg, ql) = q.storage_and_layout();
    let (kg, kl) = keys.storage_and_layout();
    let (vg, vl) = values.storage_and_layout();
    let (sg, sl) = seq.storage_and_layout();
    let (pg, pl) = pos.storage_and_layout();
    let (tg, tl) = tables.storage_and_layout();
    let dev = cuda(&qg, "q")?.device().clone();
    let inputs = Inputs {
        q: words(&qg, ql, "q")?,
        keys: words(&kg, kl, "the key pool")?,
        values: words(&vg, vl, "the value pool")?,
        seq: index(&sg, sl, "the sequence indices")?,
        pos: index(&pg, pl, "the positions")?,
        tables: index(&tg, tl, "the block tables")?,
        dims: [
            queries.width as i32,
            tokens as i32,
            heads as i32,
            kv_heads as i32,
            d as i32,
        ],
        slots: slots as i64,
        scale: scale as f32,
    };
    f(&dev, &inputs)
}

/// A kernel's `(tokens, heads, d)` output as a tensor.
fn output_tensor(
    out: Output,
    dev: &candle_core::CudaDevice,
    dims: (usize, usize, usize),
) -> Tensor {
    let storage: CudaStorage = out.into_storage(dev);
    Tensor::from_storage(Storage::Cuda(storage), dims, BackpropOp::none(), false)
}

pub(super) fn attention(
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    queries: &PagedQueries,
    scale: f64,
    dtype: DType,
) -> Result<Tensor> {
    let (tokens, heads, d) = q.dims3()?;
    let kv_heads = keys.dim(0)?;
    let tc = super::tensor_core_route(dtype, keys.dtype(), d);
    // The tensor-core route reads q in 4-byte words and the pools in 16-byte pieces.
    let aligned = |t: &Tensor| t.layout().start_offset() % 8 == 0;
    if tc && !(aligned(keys) && aligned(values)) {
        return Err(Error::InvalidRequest(
            "paged attention: the key and value pools must start on a 16-byte boundary".into(),
        ));
    }
    let q_copy;
    let q = if tc && !aligned(q) {
        q_copy = q.copy()?;
        &q_copy
    } else {
        q
    };
    let splits_cap = (queries.max_pos + 1).div_ceil(KV_SPLIT);
    let partial = splits_cap > 1
        && tokens * kv_heads < PARALLEL_SPLITS_BELOW
        && tokens * heads * splits_cap * (d + 2) * 4 <= PARTIAL_BYTES;
    with_inputs(q, keys, values, queries, scale, |dev, inputs| {
        let ptx = module_ptx(dev)?;
        let (qn, kn) = (suffix(dtype)?, suffix(keys.dtype())?);
        let out = Output::alloc(dev, dtype, heads * tokens * d)?;
        if tc {
            tc_attention(dev, ptx, inputs, queries, qn, &out)?;
        } else if !partial {
            let tiles = tiles(queries, (PREFILL_ROWS / (heads / kv_heads)).max(1));
            let rows =
                tiles.chunks(2).map(|t| t[1] as usize).max().unwrap_or(1) * (heads / kv_heads);
            // The score loop reads query rows in groups of ROW_ILP, the last group past the
            // tile's rows: ROW_ILP rows of slack keep it inside the allocation.
            let shared = KV_SPLIT * 8 + rows * (2 * d + KV_SPLIT + ROW_STATS) * 4 + ROW_ILP * d * 4;
            let name = format!("paged_prefill_{qn}_{kn}");
            launch_tiles(
                dev,
                ptx,
                &name,
                inputs,
                &tiles,
                PREFILL_THREADS,
                shared,
                &out,
            )?;
        } else {
            let name = format!("paged_attention_{qn}_{kn}");
            split_then_fold(
                dev, ptx, &name, THREADS, KV_SPLIT, splits_cap, inputs, qn, &out,
            )?;
        }
        Ok(output_tensor(out, dev, (tokens, heads, d)))
    })
}

/// The tensor-core route (`paged_tc_*`): chunks of one query in parallel warps, folded by
/// `paged_fold_*`, when the tiles would be thin (decode: a token's query heads fill few of a
/// warp's 16 rows); else tiles of consecutive positions whose rows share each chunk's keys and
/// values (prefill). Both give a query the same bits.
fn tc_attention(
    dev: &candle_core::CudaDevice,
    ptx: &'static str,
    inputs: &Inputs<'_>,
    queries: &PagedQueries,
    qn: &str,
    out: &Output,
) -> Result<()> {
    let [_, tokens, heads, kv_heads, d] = inputs.dims.map(|x| x as usize);
    let rep = heads / kv_heads;
    let chunks_cap = (queries.max_pos + 1).div_ceil(TC_CHUNK);
    let tiles = tiles(queries, (TC_ROWS / rep).max(1));
    let n_tiles = tiles.len() / 2;
    let thin = tokens * rep < 16 * n_tiles;
    if thin && tokens * heads * chunks_cap * (d + 2) * 4 <= TC_PARTIAL_BYTES {
        let name = format!("paged_tc_split_{qn}");
        split_then_fold(
            dev,
            ptx,
            &name,
            TC_SPLIT_THREADS,
            TC_CHUNK,
            chunks_cap,
            inputs,
            qn,
            out,
        )
    } else {
        let name = format!("paged_tc_prefill_{qn}");
        let block = 32 * (TC_ROWS / 16) as u32;
        launch_tiles(dev, ptx, &name, inputs, &tiles, block, TC_SHARED, out)
    }
}

/// A split kernel `name` (`block` threads per (query token, kv head, split), each writing its
/// split's partial result; `splits_cap` splits of `span` positions at most), then
/// `paged_fold_{qn}`, which folds each query's splits in order into `out`.
#[allow(clippy::too_many_arguments)]
fn split_then_fold(
    dev: &candle_core::CudaDevice,
    ptx: &'static str,
    name: &str,
    block: u32,
    span: usize,
    splits_cap: usize,
    inputs: &Inputs<'_>,
    qn: &str,
    out: &Output,
) -> Result<()> {
    let [_, tokens, heads, kv_heads, d] = inputs.dims.map(|x| x as usize);
    // Safety: the fold kernel reads only the partial results the first kernel wrote (the splits
    // each query has).
    let (part_acc, part_ml) = unsafe {
        (
            dev.alloc::<f32>(tokens * heads * splits_cap * d)?,
            dev.alloc::<f32>(tokens * heads * splits_cap * 2)?,
        )
    };
    let cap = splits_cap as i32;
    let func = dev.get_or_load_custom_func(name, MODULE, ptx)?;
    let mut b = func.builder();
    inputs.push(&mut b);
    b.arg(&cap);
    b.arg(&part_acc);
    b.arg(&part_ml);
    let cfg = LaunchConfig {
        grid_dim: (tokens as u32, kv_heads as u32, splits_cap as u32),
        block_dim: (block, 1, 1),
        shared_mem_bytes: 0,
    };
    // Safety: the arguments match the kernel's signature; shapes were checked by the caller.
    unsafe { b.launch(cfg) }.w()?;
    let fold = dev.get_or_load_custom_func(&format!("paged_fold_{qn}"), MODULE, ptx)?;
    let mut b = fold.builder();
    b.arg(&inputs.pos);
    b.arg(&inputs.dims[1]);
    b.arg(&inputs.dims[2]);
    b.arg(&inputs.dims[4]);
    b.arg(&cap);
    let span = span as i32;
    b.arg(&span);
    b.arg(&part_acc);
    b.arg(&part_ml);
    out.push(&mut b);
    let cfg = LaunchConfig {
        grid_dim: (tokens as u32, heads as u32, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    // Safety: as above; every (token, head) row of the partial results was written.
    unsafe { b.launch(cfg) }.w()?;
    Ok(())
}

/// A tiled kernel `name`: one block of `block` threads and `shared` bytes of dynamic shared
/// memory per (tile, kv head), `tiles` as [`tiles`] lists them, writing `out`.
#[allow(clippy::too_many_arguments)]
fn launch_tiles(
    dev: &candle_core::CudaDevice,
    ptx: &'static str,
    name: &str,
    inputs: &Inputs<'_>,
    tiles: &[u32],
    block: u32,
    shared: usize,
    out: &Output,
) -> Result<()> {
    let kv_heads = inputs.dims[3] as u32;
    let n_tiles = (tiles.len() / 2) as u32;
    let tiles = dev.clone_htod(tiles)?;
    let func = dev.get_or_load_custom_func(name, MODULE, ptx)?;
    allow_dynamic_shared(dev, &func, name, shared)?;
    let mut b = func.builder();
    inputs.push(&mut b);
    b.arg(&tiles);
    out.push(&mut b);
    let cfg = LaunchConfig {
        grid_dim: (n_tiles, kv_heads, 1),
        block_dim: (block, 1, 1),
        shared_mem_bytes: shared as u32,
    };
    // Safety: the arguments match the kernel's signature; shapes were checked by the caller, and
    // every tile lists consecutive positions of one sequence.
    unsafe { b.launch(cfg) }.w()?;
    Ok(())
}

/// The prefill kernel's tiles, as (first query token, count) pairs: runs of at most `per_tile`
/// query tokens that are consecutive positions of one sequence, the tiles ending furthest into
/// their sequences first (they walk the most splits, so they should not start last).
fn tiles(queries: &PagedQueries, per_tile: usize) -> Vec<u32> {
    let mut tiles: Vec<(u32, u32)> = Vec::new();
    for t in 0..queries.seq.len() {
        if let Some((first, count)) = tiles.last_mut() {
            let last = (*first + *count - 1) as usize;
            if (*count as usize) < per_tile
                && queries.seq[last] == queries.seq[t]
                && queries.pos[last] + 1 == queries.pos[t]
            {
                *count += 1;
                continue;
            }
        }
        tiles.push((t as u32, 1));
    }
    tiles.sort_by_key(|&(first, count)| {
        std::cmp::Reverse(queries.pos[(first + count - 1) as usize])
    });
    tiles.into_iter().flat_map(|(a, b)| [a, b]).collect()
}

/// The CUDA body of [`super::paged_attention_portable`] (`portable.cu`): one block of
/// [`KV_SPLIT`] threads per (query token, query head), in the CPU body's order step for step.
pub(super) fn portable_attention(
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    queries: &PagedQueries,
    scale: f64,
    dtype: DType,
) -> Result<Tensor> {
    const SOURCE: &str = include_str!("portable.cu");
    const MODULE: &str = "reprolm_portable_attention";
    const _: () = assert!(
        KV_SPLIT == 256,
        "portable.cu's PORTABLE_SPLIT is the CPU's KV_SPLIT"
    );
    let (tokens, heads, d) = q.dims3()?;
    // The CPU body widens q to f32 before the scores; so does this one.
    let q = q.to_dtype(DType::F32)?.contiguous()?;
    let out = with_inputs(&q, keys, values, queries, scale, |dev, inputs| {
        let name = format!("paged_portable_{}", suffix(keys.dtype())?);
        let ptx = reprolm_precision::cuda::ptx(MODULE, SOURCE)?;
        let func = dev.get_or_load_custom_func(&name, MODULE, ptx)?;
        let out = Output::alloc(dev, DType::F32, tokens * heads * d)?;
        let block_size = crate::kv::BLOCK_SIZE as i32;
        let mut b = func.builder();
        inputs.push(&mut b);
        out.push(&mut b);
        b.arg(&block_size);
        let cfg = LaunchConfig {
            grid_dim: ((tokens * heads).max(1) as u32, 1, 1),
            block_dim: (KV_SPLIT as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        if tokens * heads > 0 {
            // Safety: the arguments match the kernel's signature; shapes and block ids were
            // checked by `check_operands`.
            unsafe { b.launch(cfg) }.w()?;
        }
        Ok(output_tensor(out, dev, (tokens, heads, d)))
    })?;
    Ok(out.to_dtype(dtype)?)
}
