//! The key/value cache: fixed-size blocks in one pool per layer, allocated once, and a block table
//! per sequence.
//!
//! A sequence's position `p` lives in slot `table[p / BLOCK_SIZE] · BLOCK_SIZE + p % BLOCK_SIZE`
//! of every layer's pool. New keys and values are written into their slots in place, so a
//! decode step copies nothing that is already cached; a sequence joins by taking free blocks and
//! leaves by giving its blocks back, without touching any other sequence's numbers; and nothing
//! is padded, so a sequence costs what its own tokens cost. Attention reads the pools through
//! the block tables ([`crate::kernels::attention`]).
//!
//! Under tensor parallelism each rank has its own pools (its key/value heads); the block tables
//! are shared, since every rank caches the same positions.

mod size;

pub use size::{KvCacheSize, CPU_DEFAULT_FRACTION, CUDA_DEFAULT_FRACTION};

use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeMap;

/// Tokens per block: the unit a sequence's cache grows by. Attention's split size
/// ([`crate::kernels::attention::KV_SPLIT`]) is a multiple of it.
pub const BLOCK_SIZE: usize = 16;

/// The slot of a row that is written nowhere: the padding rows a captured decode step carries to
/// fill its batch bucket ([`crate::decode_graph`]) write their keys and values to no slot.
pub const PAD_SLOT: u32 = u32::MAX;

/// A sequence held by a [`KvCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeqId(u32);

#[derive(Debug, Clone, Default)]
struct Sequence {
    /// Block ids, in position order.
    blocks: Vec<u32>,
    /// Positions cached.
    len: usize,
}

/// One layer's pools: keys and values, each `(kv_heads, blocks · BLOCK_SIZE, head_dim)` in the
/// cache dtype.
pub(crate) type LayerPool = (Tensor, Tensor);

/// The pools of every layer and rank, the free blocks and each sequence's block table.
#[derive(Debug)]
pub struct KvCache {
    /// Per rank, per layer.
    shards: Vec<Vec<LayerPool>>,
    /// Free block ids; taken from the end.
    free: Vec<u32>,
    seqs: BTreeMap<SeqId, Sequence>,
    next_id: u32,
    blocks: usize,
    dtype: DType,
    /// Bytes of one block over all layers, ranks, keys and values.
    block_bytes: usize,
}

/// The dimensions of a cache: how many layers, and per rank how many key/value heads.
#[derive(Debug, Clone)]
pub(crate) struct CacheShape {
    pub num_layers: usize,
    pub head_dim: usize,
    /// Key/value heads of each rank.
    pub kv_heads: Vec<usize>,
    pub dtype: DType,
}

impl CacheShape {
    /// Bytes one block takes over all layers, ranks, keys and values.
    pub fn block_bytes(&self) -> usize {
        (0..self.kv_heads.len())
            .map(|r| self.rank_block_bytes(r))
            .sum()
    }

    /// Bytes one block takes in rank `rank`'s shard (all layers, keys and values).
    pub fn rank_block_bytes(&self, rank: usize) -> usize {
        2 * self.num_layers
            * self.kv_heads[rank]
            * self.head_dim
            * BLOCK_SIZE
            * self.dtype.size_in_bytes()
    }
}

impl KvCache {
    /// A cache of `blocks` blocks, rank `r`'s shard on `devices[r]`.
    pub(crate) fn new(shape: &CacheShape, blocks: usize, devices: &[Device]) -> Result<Self> {
        let slots = blocks * BLOCK_SIZE;
        let shards = shape
            .kv_heads
            .iter()
            .zip(devices)
            .map(|(&heads, device)| {
                (0..shape.num_layers)
                    .map(|_| {
                        let dims = (heads, slots, shape.head_dim);
                        Ok((
                            zeroed(dims, shape.dtype, device)?,
                            zeroed(dims, shape.dtype, device)?,
                        ))
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(KvCache {
            shards,
            // Reversed, so that blocks are handed out from 0 upwards.
            free: (0..blocks as u32).rev().collect(),
            seqs: BTreeMap::new(),
            next_id: 0,
            blocks,
            dtype: shape.dtype,
            block_bytes: shape.block_bytes(),
        })
    }

    /// Starts an empty sequence.
    pub fn add_sequence(&mut self) -> SeqId {
        let id = SeqId(self.next_id);
        self.next_id += 1;
        self.seqs.insert(id, Sequence::default());
        id
    }

    /// Ends a sequence and returns its blocks to the pool. Unknown ids are ignored.
    pub fn release(&mut self, seq: SeqId) {
        if let Some(s) = self.seqs.remove(&seq) {
            self.free.extend(s.blocks.into_iter().rev());
        }
    }

    /// Positions cached for `seq`.
    pub fn seq_len(&self, seq: SeqId) -> Result<usize> {
        Ok(self.sequence(seq)?.len)
    }

    /// Number of sequences held.
    pub fn sequences(&self) -> usize {
        self.seqs.len()
    }

    /// Blocks in the pool.
    pub fn blocks(&self) -> usize {
        self.blocks
    }

    /// Blocks no sequence holds.
    pub fn free_blocks(&self) -> usize {
        self.free.len()
    }

    /// Tokens the pool can hold in all.
    pub fn capacity_tokens(&self) -> usize {
        self.blocks * BLOCK_SIZE
    }

    /// Blocks a sequence of `tokens` positions holds.
    pub fn blocks_for(tokens: usize) -> usize {
        tokens.div_ceil(BLOCK_SIZE)
    }

    /// The dtype keys and values are stored in (the policy's KV-cache dtype).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Bytes of the pools, allocated when the cache was made.
    pub fn bytes(&self) -> usize {
        self.blocks * self.block_bytes
    }

    /// Bytes of the blocks the sequences hold now.
    pub fn bytes_in_use(&self) -> usize {
        (self.blocks - self.free.len()) * self.block_bytes
    }

    /// Number of ranks whose pools this cache holds.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// The error of asking this pool for `needed` more blocks than it has free.
    pub(crate) fn full(&self, needed: usize) -> Error {
        Error::KvCacheFull {
            needed,
            free: self.free.len(),
            blocks: self.blocks,
            block_size: BLOCK_SIZE,
            bytes: reprolm_precision::format_bytes(self.bytes() as u64),
        }
    }

    fn sequence(&self, seq: SeqId) -> Result<&Sequence> {
        self.seqs.get(&seq).ok_or_else(|| {
            Error::InvalidRequest(format!("sequence {seq:?} is not in this KV cache"))
        })
    }

    /// Gives each `(sequence, new tokens)` the blocks its next tokens need, all or none: on an
    /// error no sequence has taken a block.
    pub(crate) fn reserve(&mut self, plan: &[(SeqId, usize)]) -> Result<()> {
        let mut needed = 0;
        for &(seq, n) in plan {
            let s = self.sequence(seq)?;
            needed += Self::blocks_for(s.len + n).saturating_sub(s.blocks.len());
        }
        if needed > self.free.len() {
            return Err(self.full(needed));
        }
        for &(seq, n) in plan {
            let s = self.seqs.get_mut(&seq).expect("checked above");
            while s.blocks.len() < Self::blocks_for(s.len + n) {
                s.blocks.push(self.free.pop().expect("counted above"));
            }
        }
        Ok(())
    }

    /// Records that `n` positions of `seq` were written (after a forward pass).
    pub(crate) fn advance(&mut self, seq: SeqId, n: usize) -> Result<()> {
        let s = self.seqs.get_mut(&seq).ok_or_else(|| {
            Error::InvalidRequest(format!("sequence {seq:?} is not in this KV cache"))
        })?;
        debug_assert!(Self::blocks_for(s.len + n) <= s.blocks.len());
        s.len += n;
        Ok(())
    }

    /// The slot position `pos` of `seq` lives in (its blocks must be reserved).
    pub(crate) fn slot(&self, seq: SeqId, pos: usize) -> Result<u32> {
        let s = self.sequence(seq)?;
        let block = s.blocks.get(pos / BLOCK_SIZE).ok_or_else(|| {
            Error::InvalidRequest(format!(
                "position {pos} of sequence {seq:?} has no block reserved"
            ))
        })?;
        Ok(block * BLOCK_SIZE as u32 + (pos % BLOCK_SIZE) as u32)
    }

    /// The block table of `seq`.
    pub(crate) fn table(&self, seq: SeqId) -> Result<&[u32]> {
        Ok(&self.sequence(seq)?.blocks)
    }

    /// Rank `rank`'s pools, one per layer.
    pub(crate) fn shard(&self, rank: usize) -> &[LayerPool] {
        &self.shards[rank]
    }
}

/// A zero-filled tensor. On the CPU the memory comes from the allocator's zeroed pages and is
/// only touched (and so only taken from the machine) as blocks are written.
fn zeroed(dims: (usize, usize, usize), dtype: DType, device: &Device) -> Result<Tensor> {
    if !device.is_cpu() {
        return Ok(Tensor::zeros(dims, dtype, device)?);
    }
    let n = dims.0 * dims.1 * dims.2;
    // `vec![0; n]` of a primitive asks the allocator for zeroed memory (no writes); the 16-bit
    // floats are plain `u16` bit patterns (`#[repr(transparent)]`), so their zero vector is
    // the `u16` one, reinterpreted.
    fn reinterpret<T>(v: Vec<u16>) -> Vec<T> {
        assert_eq!(std::mem::size_of::<T>(), 2);
        assert_eq!(std::mem::align_of::<T>(), std::mem::align_of::<u16>());
        let mut v = std::mem::ManuallyDrop::new(v);
        // SAFETY: T is a 2-byte, 2-aligned plain-bits type (bf16/f16), for which every bit
        // pattern is a value; length and capacity carry over unchanged.
        unsafe { Vec::from_raw_parts(v.as_mut_ptr() as *mut T, v.len(), v.capacity()) }
    }
    Ok(match dtype {
        DType::F32 => Tensor::from_vec(vec![0f32; n], dims, device)?,
        DType::F64 => Tensor::from_vec(vec![0f64; n], dims, device)?,
        DType::BF16 => Tensor::from_vec(reinterpret::<half::bf16>(vec![0u16; n]), dims, device)?,
        DType::F16 => Tensor::from_vec(reinterpret::<half::f16>(vec![0u16; n]), dims, device)?,
        other => Tensor::zeros(dims, other, device)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(blocks: usize) -> KvCache {
        let shape = CacheShape {
            num_layers: 2,
            head_dim: 4,
            kv_heads: vec![1],
            dtype: DType::BF16,
        };
        KvCache::new(&shape, blocks, &[Device::Cpu]).unwrap()
    }

    #[test]
    fn sequences_take_whole_blocks_and_give_them_back() -> Result<()> {
        let mut c = cache(4);
        let a = c.add_sequence();
        let b = c.add_sequence();
        c.reserve(&[(a, 17), (b, 3)])?;
        assert_eq!((c.table(a)?.len(), c.table(b)?.len()), (2, 1));
        assert_eq!(c.free_blocks(), 1);
        c.advance(a, 17)?;
        assert_eq!(c.slot(a, 16)?, c.table(a)?[1] * BLOCK_SIZE as u32);
        // All or nothing: 17 more tokens for b (3 reserved, none written) need one more block,
        // 32 more for a two; only one is free.
        let err = c.reserve(&[(b, 17), (a, 32)]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::KvCacheFull {
                    needed: 3,
                    free: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(c.table(b)?.len(), 1);
        c.release(a);
        assert_eq!(c.free_blocks(), 3);
        assert!(c.seq_len(a).is_err());
        c.reserve(&[(b, 40)])?;
        assert_eq!(c.table(b)?.len(), 3);
        assert_eq!(c.bytes(), 4 * 2 * 2 * 4 * BLOCK_SIZE * 2);
        Ok(())
    }
}
