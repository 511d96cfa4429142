//! The switch between the fast kernels and the batch-invariant ones, and the split of a matmul's
//! reduction that makes a single device compute what a tensor-parallel group computes.

use crate::{Error, Result};

/// How a `K`-long matmul reduction is ordered: `K` is split into `chunks` (a power of two)
/// equal, contiguous chunks; chunk `c` covers `[c·K/chunks, (c+1)·K/chunks)` and is reduced in
/// the lane order of the [module docs](super); the chunk partials are then summed in a fixed
/// binary tree of adjacent pairs: `p[i] = p[2i] + p[2i+1]`, level by level, until one is left.
///
/// `chunks = 1` is a plain fixed-order dot product. The tree is what a tensor-parallel group
/// reproduces: with `T` ranks (`T` a power of two dividing `chunks`), rank `r` holding the K-slice
/// `[r·K/T, (r+1)·K/T)` of `x` and `w` computes [`partial_sums`](super::partial_sums) with
/// `chunks / T` chunks; its chunks are global chunks `r·chunks/T …`, so summing its own partials
/// with [`tree_sum`](super::tree_sum) gives one node of the global tree, and a tree all-reduce of
/// the `T` rank sums in rank order (adjacent pairs) gives bitwise the single-device result.
/// Concatenating all ranks' partials in rank order and calling `tree_sum` once is the same.
///
/// ```
/// use reprolm_precision::deterministic::ReductionOrder;
/// assert_eq!(ReductionOrder::tree(4)?.chunks(), 4);
/// assert!(ReductionOrder::tree(3).is_err());
/// assert_eq!(ReductionOrder::SEQUENTIAL.chunks(), 1);
/// # Ok::<(), reprolm_precision::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReductionOrder {
    chunks: usize,
}

impl ReductionOrder {
    /// One chunk: the whole of `K` in lane order.
    pub const SEQUENTIAL: ReductionOrder = ReductionOrder { chunks: 1 };

    /// `chunks` equal chunks summed in a binary tree; `chunks` must be a power of two.
    pub fn tree(chunks: usize) -> Result<Self> {
        if !chunks.is_power_of_two() {
            return Err(Error::ReductionChunks { chunks });
        }
        Ok(ReductionOrder { chunks })
    }

    /// Number of chunks `K` is split into.
    pub fn chunks(self) -> usize {
        self.chunks
    }
}

impl Default for ReductionOrder {
    fn default() -> Self {
        ReductionOrder::SEQUENTIAL
    }
}

/// Which kernels the decoder runs.
///
/// ```
/// use reprolm_precision::deterministic::{ComputeMode, ReductionOrder};
/// let mode = ComputeMode::Deterministic(ReductionOrder::SEQUENTIAL);
/// assert!(mode.is_deterministic());
/// assert_eq!(mode.to_string(), "deterministic");
/// assert_eq!(ComputeMode::Deterministic(ReductionOrder::tree(4)?).to_string(), "deterministic(tree 4)");
/// # Ok::<(), reprolm_precision::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ComputeMode {
    /// candle's kernels: fastest, but a row's numbers may depend on the batch it is in.
    #[default]
    Fast,
    /// The batch-invariant kernels, with matmuls reduced in the given order: this module's on
    /// the CPU; on CUDA the engine's GEMM layer (`reprolm_engine::kernels::gemm`) provides them,
    /// for the sequential order (the tree order, for tensor-parallel invariance, is the CPU's).
    Deterministic(ReductionOrder),
}

impl ComputeMode {
    /// Whether the batch-invariant kernels run.
    pub fn is_deterministic(self) -> bool {
        matches!(self, ComputeMode::Deterministic(_))
    }
}

impl std::fmt::Display for ComputeMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ComputeMode::Fast => f.write_str("fast"),
            ComputeMode::Deterministic(o) if o.chunks == 1 => f.write_str("deterministic"),
            ComputeMode::Deterministic(o) => write!(f, "deterministic(tree {})", o.chunks),
        }
    }
}
