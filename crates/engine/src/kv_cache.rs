//! The key/value cache of a batch of sequences that may have started at different offsets.
//!
//! Rows are left-aligned by padding: row `b` holds valid entries from `starts[b]` to `len - 1`.
//! Left padding lets one dense `(batch, kv_heads, len, head_dim)` tensor per layer serve prompts of
//! different lengths, and lets a finished row leave (or a new one join) without touching the
//! others' numbers: padded slots are masked out of attention, never summed.
//!
//! Under tensor parallelism the cache holds one shard per rank (that rank's key/value heads);
//! every row operation applies to all shards alike.

use crate::Result;
use candle_core::{DType, Tensor};

/// One shard's per-layer keys and values.
type Layers = Vec<Option<(Tensor, Tensor)>>;

/// Per-layer keys and values for a batch, plus where each row's valid entries start.
#[derive(Debug, Clone)]
pub struct KvCache {
    shards: Vec<Layers>,
    starts: Vec<usize>,
    len: usize,
    dtype: DType,
}

impl KvCache {
    /// An empty cache for `num_layers` layers and rows whose first valid position will be
    /// `starts[b]` (the number of left-padding slots of row `b`'s prompt).
    pub fn new(num_layers: usize, starts: Vec<usize>, dtype: DType) -> Self {
        Self::sharded(1, num_layers, starts, dtype)
    }

    /// As [`KvCache::new`], with one shard per tensor-parallel rank.
    pub(crate) fn sharded(
        shards: usize,
        num_layers: usize,
        starts: Vec<usize>,
        dtype: DType,
    ) -> Self {
        KvCache {
            shards: vec![vec![None; num_layers]; shards],
            starts,
            len: 0,
            dtype,
        }
    }

    /// Number of shards: the tensor-parallel size of the decoder that made it.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Each shard's layers, to hand one to each rank for a forward pass. The ranks append the
    /// same number of slots; [`KvCache::set_len`] records it afterwards.
    pub(crate) fn shard_views(&mut self) -> Vec<CacheShard<'_>> {
        let dtype = self.dtype;
        self.shards
            .iter_mut()
            .map(|layers| CacheShard { layers, dtype })
            .collect()
    }

    /// Records the number of slots per row after a forward pass appended to every layer.
    pub(crate) fn set_len(&mut self, len: usize) {
        self.len = len;
    }

    /// Number of rows (sequences).
    pub fn rows(&self) -> usize {
        self.starts.len()
    }

    /// Number of slots per row, padding included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// First valid slot of each row.
    pub fn starts(&self) -> &[usize] {
        &self.starts
    }

    /// The dtype keys and values are stored in (the policy's KV-cache dtype).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Bytes held by the cached keys and values.
    pub fn bytes(&self) -> usize {
        self.shards
            .iter()
            .flatten()
            .flatten()
            .map(|(k, v)| (k.elem_count() + v.elem_count()) * self.dtype.size_in_bytes())
            .sum()
    }

    /// Keeps only the rows `keep` (in that order), then drops padding columns that no remaining
    /// row needs.
    pub fn select_rows(&mut self, keep: &[usize]) -> Result<()> {
        if keep.len() == self.rows() && keep.iter().enumerate().all(|(i, &k)| i == k) {
            return Ok(());
        }
        if keep.is_empty() {
            // Nothing left: drop the tensors rather than select zero rows (a zero-sized launch
            // is an error on CUDA).
            self.shards
                .iter_mut()
                .flatten()
                .for_each(|slot| *slot = None);
            self.starts.clear();
            self.len = 0;
            return Ok(());
        }
        let starts: Vec<usize> = keep.iter().map(|&i| self.starts[i]).collect();
        let trim = starts.iter().copied().min().unwrap_or(0).min(self.len);
        if !self.is_empty() {
            let dev = self
                .shards
                .iter()
                .flatten()
                .flatten()
                .next()
                .map(|(k, _)| k.device().clone());
            if let Some(dev) = dev {
                let idx = Tensor::from_vec(
                    keep.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                    keep.len(),
                    &dev,
                )?;
                for slot in self.shards.iter_mut().flatten() {
                    if let Some((k, v)) = slot.take() {
                        let k = k
                            .index_select(&idx, 0)?
                            .narrow(2, trim, self.len - trim)?
                            .contiguous()?;
                        let v = v
                            .index_select(&idx, 0)?
                            .narrow(2, trim, self.len - trim)?
                            .contiguous()?;
                        *slot = Some((k, v));
                    }
                }
            }
            self.len -= trim;
            self.starts = starts.into_iter().map(|s| s - trim).collect();
        } else {
            self.starts = starts;
        }
        Ok(())
    }

    /// Stacks two caches of the same model into one batch, left-padding the shorter one so the
    /// rows line up at their ends. Used to admit newly prefilled sequences into a running batch.
    pub fn merge(mut self, mut other: KvCache) -> Result<KvCache> {
        if self.rows() == 0 {
            return Ok(other);
        }
        if other.rows() == 0 {
            return Ok(self);
        }
        if self.shards() != other.shards() {
            return Err(crate::Error::InvalidRequest(format!(
                "cannot merge caches of {} and {} tensor-parallel shards",
                self.shards(),
                other.shards()
            )));
        }
        let len = self.len.max(other.len);
        self.left_pad(len - self.len)?;
        other.left_pad(len - other.len)?;
        let shards = self
            .shards
            .into_iter()
            .zip(other.shards)
            .map(|(a, b)| {
                a.into_iter()
                    .zip(b)
                    .map(|(a, b)| match (a, b) {
                        (Some((ka, va)), Some((kb, vb))) => Ok(Some((
                            Tensor::cat(&[ka, kb], 0)?,
                            Tensor::cat(&[va, vb], 0)?,
                        ))),
                        _ => Ok(None),
                    })
                    .collect::<Result<Layers>>()
            })
            .collect::<Result<Vec<_>>>()?;
        self.starts.extend(other.starts);
        Ok(KvCache {
            shards,
            starts: self.starts,
            len,
            dtype: self.dtype,
        })
    }

    fn left_pad(&mut self, pad: usize) -> Result<()> {
        if pad == 0 {
            return Ok(());
        }
        for slot in self.shards.iter_mut().flatten() {
            if let Some((k, v)) = slot.take() {
                *slot = Some((k.pad_with_zeros(2, pad, 0)?, v.pad_with_zeros(2, pad, 0)?));
            }
        }
        self.len += pad;
        for s in self.starts.iter_mut() {
            *s += pad;
        }
        Ok(())
    }
}

/// One rank's layers of a [`KvCache`], lent to that rank for one forward pass.
pub(crate) struct CacheShard<'a> {
    layers: &'a mut Layers,
    dtype: DType,
}

impl CacheShard<'_> {
    /// Appends `(batch, kv_heads, new, head_dim)` keys and values to `layer` and returns the
    /// whole cached `(batch, kv_heads, len, head_dim)` pair. The values are stored in the cache
    /// dtype before attention reads them back, so attention always sees what the cache holds.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let k = k.to_dtype(self.dtype)?.contiguous()?;
        let v = v.to_dtype(self.dtype)?.contiguous()?;
        let (k, v) = match self.layers[layer].take() {
            None => (k, v),
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
        };
        self.layers[layer] = Some((k.clone(), v.clone()));
        Ok((k, v))
    }
}
