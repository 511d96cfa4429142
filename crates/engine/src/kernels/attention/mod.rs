//! Attention over the paged KV cache: the one attention of the decoder, for prefill, chunked
//! prefill and decode, in the fast path and in deterministic mode alike.
//!
//! Every query is reduced over its own sequence's keys only, in an order fixed by its position
//! alone, so its result does not depend on the batch size, its place in the batch, the other
//! sequences' lengths, or how its prompt was cut into chunks. For a query at position `p` (it
//! sees positions `0..=p`, causal), with scores and sums in f32 (f64 when the attention dtype is
//! f64):
//!
//! 1. The positions are cut into splits of [`KV_SPLIT`]: `[0, S)`, `[S, 2S)`, …, the last one
//!    ending at `p`. The splits depend on `p` only.
//! 2. Each split `s` gives `m_s = max_j s_j` with `s_j = (q · k_j) · scale`, `l_s = Σ_j e_j` and
//!    `acc_s = Σ_j e_j v_j` with `e_j = exp(s_j − m_s)`, the sums over `j` in increasing order.
//! 3. The splits are folded in increasing order, starting from split 0: with `M' = max(M, m_s)`,
//!    `a = exp(M − M')`, `b = exp(m_s − M')`: `L ← L·a + l_s·b`, `O ← O·a + acc_s·b`, `M ← M'`.
//! 4. The output is `O / L`, rounded once to the attention dtype.
//!
//! The dot products `q · k_j` run in a fixed lane order of the device (eight partial sums on the
//! CPU; on CUDA, lane `i` of a warp takes elements `i, i + 32, …` and the lanes are added as a
//! butterfly). Nothing is materialised per (query, key) beyond one split's scores, so a prompt of
//! any length can be prefilled.
//!
//! On CUDA the splits of a query run in parallel blocks when few queries are in the call
//! (decode), then a second kernel folds them in order; with many queries (prefill) one block
//! folds its query's splits as it goes. Both compute step 3 with the same expression, so the
//! choice, which depends on the batch, never changes a bit.
//!
//! **On tensor cores.** When q and the cache are in one 16-bit type (the `bf16` and `fp16`
//! policies) and the head width is a multiple of 32 up to 128, CUDA computes the same steps on
//! tensor cores (`mma`, 16-bit operands, f32 accumulation), which changes the order: splits of
//! 64 positions; `q · k_j` as the k16 steps of the head in order; `l_s` summed by each of four
//! lanes over its 16 keys in order, then the four as a butterfly; `e_j` rounded to the cache's
//! type before `acc_s = Σ_j e_j v_j`, itself four k16 steps of keys in order. Decode runs one
//! warp per (token, split) and folds in a second kernel; prefill gives a block 64 query rows
//! (consecutive tokens × the query heads of one kv head) that share each split's keys and values
//! and folds as it goes; the two give a query the same bits. The route depends on the dtypes and
//! the head width only, never on the batch.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use reprolm_engine::kernels::attention::{paged_attention, PagedQueries};
//! let dev = Device::Cpu;
//! // One key/value head, one block of 16 slots, head_dim 4; one sequence of 3 positions.
//! let keys = Tensor::randn(0f32, 1.0, (1, 16, 4), &dev)?;
//! let values = Tensor::randn(0f32, 1.0, (1, 16, 4), &dev)?;
//! let queries = PagedQueries::new(vec![0, 0, 0], vec![0, 1, 2], &[vec![0]], &dev)?;
//! // Three tokens, each with two query heads that share the kv head.
//! let q = Tensor::randn(0f32, 1.0, (3, 2, 4), &dev)?;
//! let out = paged_attention(&q, &keys, &values, &queries, 0.5, DType::F32)?;
//! assert_eq!(out.dims(), &[3, 2, 4]);
//! # Ok::<(), reprolm_engine::Error>(())
//! ```

mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
mod write;

pub use write::write_slots;

use crate::kv::BLOCK_SIZE;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};

/// Positions per split of a query's keys: part of the numerical contract (another value gives
/// other bits), a multiple of [`BLOCK_SIZE`].
pub const KV_SPLIT: usize = 256;

/// The most query heads that share one key/value head (GQA group), and the widest head.
pub const MAX_GROUP: usize = 16;
/// The widest head the kernels take.
pub const MAX_HEAD_DIM: usize = 256;

const _: () = assert!(KV_SPLIT % BLOCK_SIZE == 0);

/// Positions per split of the tensor-core route (see the module docs): part of its contract.
pub const TENSOR_CORE_SPLIT: usize = 64;
/// The widest head the tensor-core route takes (it also needs a multiple of 32).
pub const TENSOR_CORE_MAX_HEAD_DIM: usize = 128;

const _: () = assert!(TENSOR_CORE_SPLIT % BLOCK_SIZE == 0);

/// Whether CUDA computes attention with q in `q`, the cache in `cache` and heads of `head_dim`
/// on tensor cores: q and the cache in one 16-bit type and a head width the route takes. A
/// function of these alone, never of the batch, so a query always gets one route's bits.
pub fn tensor_core_route(q: DType, cache: DType, head_dim: usize) -> bool {
    q == cache
        && matches!(q, DType::BF16 | DType::F16)
        && head_dim % 32 == 0
        && head_dim <= TENSOR_CORE_MAX_HEAD_DIM
}

/// The attention route on `device` (q in `q`, the cache in `cache`, heads of `head_dim`) and its
/// split size, by name, as run manifests record it: another route reduces in another order.
///
/// ```
/// use candle_core::{DType, Device};
/// use reprolm_engine::kernels::attention::route_name;
/// assert_eq!(route_name(&Device::Cpu, DType::BF16, DType::BF16, 128), "cpu, splits of 256");
/// ```
pub fn route_name(device: &Device, q: DType, cache: DType, head_dim: usize) -> String {
    if !device.is_cuda() {
        format!("cpu, splits of {KV_SPLIT}")
    } else if tensor_core_route(q, cache, head_dim) {
        format!("tensor-core mma, splits of {TENSOR_CORE_SPLIT}")
    } else {
        format!("f32 fma, splits of {KV_SPLIT}")
    }
}

/// The queries of one forward pass: for each query token, its sequence and position, and each
/// sequence's block table; copied to the device once per pass and shared by every layer.
#[derive(Debug)]
pub struct PagedQueries {
    seq: Vec<u32>,
    pos: Vec<u32>,
    /// Block tables, `width` entries per sequence (unused entries 0).
    tables: Vec<u32>,
    width: usize,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    max_pos: usize,
    /// `(seq, pos, tables)` on the device, for CUDA pools.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    on_device: Option<[Tensor; 3]>,
}

impl PagedQueries {
    /// Query token `i` belongs to sequence `seq[i]` (an index into `tables`) and sits at position
    /// `pos[i]` of it; `tables[s]` lists sequence `s`'s blocks in position order.
    pub fn new(seq: Vec<u32>, pos: Vec<u32>, tables: &[Vec<u32>], device: &Device) -> Result<Self> {
        let width = tables.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let max_pos = pos.iter().copied().max().unwrap_or(0) as usize;
        let mut queries = Self::host(seq, pos, tables, width, max_pos)?;
        if !device.is_cpu() {
            let n = queries.seq.len();
            queries.on_device = Some([
                Tensor::from_slice(&queries.seq, n, device)?,
                Tensor::from_slice(&queries.pos, n, device)?,
                Tensor::from_slice(&queries.tables, (tables.len(), width), device)?,
            ]);
        }
        Ok(queries)
    }

    /// As [`new`](Self::new), with the device copies already in `on_device` (the persistent
    /// inputs of a captured decode step: `seq` and `pos` of every token, the block tables at a
    /// row stride of `width`), and the key splits sized for positions up to `max_pos` rather
    /// than this call's largest: a captured step is replayed for later positions, up to
    /// `max_pos`. Which splits a query has, hence its bits, depends on its own position only.
    pub(crate) fn in_buffers(
        seq: Vec<u32>,
        pos: Vec<u32>,
        tables: &[Vec<u32>],
        width: usize,
        max_pos: usize,
        on_device: [Tensor; 3],
    ) -> Result<Self> {
        if let Some(t) = tables.iter().find(|t| t.len() > width) {
            return Err(Error::InvalidRequest(format!(
                "paged attention: a block table of {} blocks in rows of {width}",
                t.len()
            )));
        }
        if let Some(p) = pos.iter().find(|&&p| p as usize > max_pos) {
            return Err(Error::InvalidRequest(format!(
                "paged attention: position {p} past the {max_pos} the splits are sized for"
            )));
        }
        let mut queries = Self::host(seq, pos, tables, width, max_pos)?;
        queries.on_device = Some(on_device);
        Ok(queries)
    }

    /// The checked host side: tables flattened at `width` entries per sequence.
    fn host(
        seq: Vec<u32>,
        pos: Vec<u32>,
        tables: &[Vec<u32>],
        width: usize,
        max_pos: usize,
    ) -> Result<Self> {
        if seq.len() != pos.len() || seq.is_empty() {
            return Err(Error::InvalidRequest(format!(
                "paged attention: {} sequence indices for {} positions",
                seq.len(),
                pos.len()
            )));
        }
        for (&s, &p) in seq.iter().zip(&pos) {
            let table = tables.get(s as usize).ok_or_else(|| {
                Error::InvalidRequest(format!("paged attention: no block table for sequence {s}"))
            })?;
            if p as usize / BLOCK_SIZE >= table.len() {
                return Err(Error::InvalidRequest(format!(
                    "paged attention: position {p} of sequence {s} is past its {} blocks",
                    table.len()
                )));
            }
        }
        let mut flat = vec![0u32; tables.len() * width];
        for (row, t) in flat.chunks_mut(width).zip(tables) {
            row[..t.len()].copy_from_slice(t);
        }
        Ok(PagedQueries {
            seq,
            pos,
            tables: flat,
            width,
            max_pos,
            on_device: None,
        })
    }

    /// Number of query tokens.
    pub fn len(&self) -> usize {
        self.seq.len()
    }

    /// Whether there are none (never: [`PagedQueries::new`] refuses).
    pub fn is_empty(&self) -> bool {
        self.seq.is_empty()
    }

    /// The slot of position `p` of the sequence with block-table row `s`.
    fn slot(&self, s: usize, p: usize) -> usize {
        self.tables[s * self.width + p / BLOCK_SIZE] as usize * BLOCK_SIZE + p % BLOCK_SIZE
    }
}

/// `softmax(q·kᵀ·scale, causal)·v` for `q: (tokens, heads, head_dim)` against the pools `keys`,
/// `values: (kv_heads, slots, head_dim)`, in the order of the module docs; the result is
/// `(tokens, heads, head_dim)` in `dtype` (the attention dtype). Query heads are grouped over the
/// key/value heads (GQA) and read the pools in place. Token-major on both sides, the layout the
/// projections produce and consume, so neither side needs a transposing copy.
pub fn paged_attention(
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    queries: &PagedQueries,
    scale: f64,
    dtype: DType,
) -> Result<Tensor> {
    attend(q, keys, values, queries, scale, dtype, false)
}

/// The operands checked, then the body for q's device: the CPU's, or on CUDA the fast routes or
/// (`portable`) the CPU's order.
fn attend(
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    queries: &PagedQueries,
    scale: f64,
    dtype: DType,
    portable: bool,
) -> Result<Tensor> {
    check_operands(q, keys, values, queries)?;
    let q = q.to_dtype(dtype)?.contiguous()?;
    match q.device() {
        Device::Cpu => cpu::attention(&q, keys, values, queries, scale, dtype),
        #[cfg(feature = "cuda")]
        Device::Cuda(_) if dtype == DType::F64 || keys.dtype() == DType::F64 => Err(
            Error::InvalidRequest("attention in f64 runs on the CPU only".into()),
        ),
        #[cfg(feature = "cuda")]
        Device::Cuda(_) if portable => {
            cuda::portable_attention(&q, keys, values, queries, scale, dtype)
        }
        #[cfg(feature = "cuda")]
        Device::Cuda(_) => cuda::attention(&q, keys, values, queries, scale, dtype),
        #[allow(unreachable_patterns)]
        other => Err(Error::InvalidRequest(format!(
            "paged attention has no kernel for {other:?}{}",
            if portable { " (portable)" } else { "" }
        ))),
    }
}

/// What [`paged_attention`] and [`paged_attention_portable`] require of their operands.
fn check_operands(
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    queries: &PagedQueries,
) -> Result<()> {
    let shape_err = |reason: String| Error::InvalidRequest(format!("paged attention: {reason}"));
    let (t, h, d) = q.dims3().map_err(|_| {
        shape_err(format!(
            "q must be (tokens, heads, head_dim), got {:?}",
            q.dims()
        ))
    })?;
    let (kvh, slots, kd) = keys.dims3().map_err(|_| {
        shape_err(format!(
            "the key pool must be (kv_heads, slots, head_dim), got {:?}",
            keys.dims()
        ))
    })?;
    if values.dims() != keys.dims() || kd != d || values.dtype() != keys.dtype() {
        return Err(shape_err(format!(
            "q {:?}, keys {:?} {:?} and values {:?} {:?} do not fit together",
            q.dims(),
            keys.dims(),
            keys.dtype(),
            values.dims(),
            values.dtype()
        )));
    }
    if kvh == 0 || h % kvh != 0 || h / kvh > MAX_GROUP || d > MAX_HEAD_DIM {
        return Err(shape_err(format!(
            "{h} query heads over {kvh} key/value heads of width {d}: the kernels take groups of \
             at most {MAX_GROUP} heads of width at most {MAX_HEAD_DIM}"
        )));
    }
    if t != queries.len() {
        return Err(shape_err(format!(
            "q has {t} tokens, the batch describes {}",
            queries.len()
        )));
    }
    if let Some(bad) = queries
        .tables
        .iter()
        .find(|&&b| (b as usize + 1) * BLOCK_SIZE > slots)
    {
        return Err(shape_err(format!(
            "block {bad} is outside the pool of {slots} slots"
        )));
    }
    Ok(())
}

/// [`paged_attention`] in the portable tier's order: the CPU body's (splits of [`KV_SPLIT`],
/// scores in the lane order, the max, the sum of exponentials and each column's weighted values
/// in position order, the splits folded in order, the portable `exp`), on the CPU and, step for
/// step, on CUDA (`portable.cu`), so that both compute the same bits. Slow on a GPU by design.
/// f64 attention has no CUDA body. The decoder calls it under `--kernels portable`.
pub fn paged_attention_portable(
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    queries: &PagedQueries,
    scale: f64,
    dtype: DType,
) -> Result<Tensor> {
    attend(q, keys, values, queries, scale, dtype, true)
}

#[cfg(test)]
mod tests;
