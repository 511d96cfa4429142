//! Collectives between the ranks of a tensor-parallel group: the [`Communicator`] trait the
//! decoder calls, and [`LocalComm`], its in-process implementation for ranks that are threads.
//!
//! Every sum is taken in one fixed binary tree over the ranks (`[0, n/2)` and `[n/2, n)` summed
//! separately, then added), accumulated in f32 (f64 for f64 tensors) and rounded once to the
//! input dtype. The order is a property of the group size alone, never of which rank arrives
//! first, so a sum is reproducible run to run; and because the tree over ranks is the top of the
//! tree a single device computes over the same chunks of K, the TP-invariant mode can make the
//! result independent of the group size too (see [`super::TREE_CHUNKS`]).

use crate::{Error, Result};
use candle_core::{DType, Tensor};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// The collectives a rank of a tensor-parallel group needs.
///
/// Every rank of a group must call the same collectives in the same order with tensors of the
/// same shape (for [`all_gather`](Communicator::all_gather), the same shape except along `dim`);
/// a call blocks until all ranks have made it. A GPU implementation (NCCL) sits behind this same
/// trait.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use reprolm_engine::parallel::{Communicator, LocalComm};
///
/// let group = LocalComm::group(2);
/// let sums: Vec<Vec<f32>> = std::thread::scope(|s| {
///     let handles: Vec<_> = group
///         .iter()
///         .map(|comm| s.spawn(move || {
///             let x = Tensor::new(&[comm.rank() as f32 + 1.0], &Device::Cpu)?;
///             Ok::<_, reprolm_engine::Error>(comm.all_reduce_sum(&x)?.to_vec1::<f32>()?)
///         }))
///         .collect();
///     handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
/// });
/// assert_eq!(sums, vec![vec![3.0], vec![3.0]]);
/// ```
pub trait Communicator: Send + Sync + std::fmt::Debug {
    /// This rank's index, `0..size()`.
    fn rank(&self) -> usize;
    /// Number of ranks in the group.
    fn size(&self) -> usize;
    /// The element-wise sum of every rank's `x`, the same bits on every rank: summed in the
    /// fixed tree order over ranks, accumulated in f32 (f64 for f64), returned in `x`'s dtype.
    fn all_reduce_sum(&self, x: &Tensor) -> Result<Tensor>;
    /// Every rank's `x` concatenated along `dim` in rank order, on every rank.
    fn all_gather(&self, x: &Tensor, dim: usize) -> Result<Tensor>;
    /// Wakes every rank blocked in a collective with an error; later calls fail at once. A rank
    /// whose body fails calls it so that the others do not wait forever for it.
    fn abort(&self);
}

/// The dtype a sum of `dtype` values accumulates in.
pub(crate) fn accumulation_dtype(dtype: DType) -> DType {
    if dtype == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

/// `parts[0] + ... + parts[n-1]` in the fixed binary tree: the two halves `[0, n/2)` and
/// `[n/2, n)` are summed recursively, then added. For `n` a power of two this is the balanced
/// tree whose leaves are the parts in order, the same as the adjacent-pair tree of
/// [`reprolm_precision::deterministic::tree_sum`] (tested below).
pub(crate) fn tree_sum(parts: &[Tensor]) -> candle_core::Result<Tensor> {
    match parts {
        [] => candle_core::bail!("tree_sum of no tensors"),
        [one] => Ok(one.clone()),
        _ => {
            let (a, b) = parts.split_at(parts.len() / 2);
            tree_sum(a)? + tree_sum(b)?
        }
    }
}

#[derive(Debug)]
struct State {
    slots: Vec<Option<Tensor>>,
    arrived: usize,
    generation: u64,
    aborted: bool,
}

#[derive(Debug)]
struct Shared {
    size: usize,
    state: Mutex<State>,
    turn: Condvar,
}

/// A rank of an in-process group: ranks are threads that exchange tensors through shared slots
/// and meet at a barrier. The barrier is our own (not `std::sync::Barrier`) so that a rank that
/// fails can release the others with [`Communicator::abort`] instead of leaving them blocked.
#[derive(Debug, Clone)]
pub struct LocalComm {
    rank: usize,
    shared: Arc<Shared>,
}

impl LocalComm {
    /// The `size` ranks of a new group, rank `r` at index `r`. Hand each to its own thread.
    pub fn group(size: usize) -> Vec<LocalComm> {
        let shared = Arc::new(Shared {
            size,
            state: Mutex::new(State {
                slots: vec![None; size],
                arrived: 0,
                generation: 0,
                aborted: false,
            }),
            turn: Condvar::new(),
        });
        (0..size)
            .map(|rank| LocalComm {
                rank,
                shared: shared.clone(),
            })
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a rank panicked inside a collective; the state is still
        // consistent (we never panic while holding it half-updated), and `aborted` tells the rest.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn aborted(&self, op: &'static str) -> Error {
        Error::Collective {
            op,
            rank: self.rank,
            reason: crate::error::GROUP_ABORTED.into(),
        }
    }

    /// Blocks until every rank has reached this barrier. Called with the lock held; returns it.
    fn barrier<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        op: &'static str,
    ) -> Result<MutexGuard<'a, State>> {
        if state.aborted {
            return Err(self.aborted(op));
        }
        state.arrived += 1;
        if state.arrived == self.shared.size {
            state.arrived = 0;
            state.generation += 1;
            self.shared.turn.notify_all();
            return Ok(state);
        }
        let generation = state.generation;
        while state.generation == generation && !state.aborted {
            state = self
                .shared
                .turn
                .wait(state)
                .unwrap_or_else(|poison| poison.into_inner());
        }
        if state.aborted {
            return Err(self.aborted(op));
        }
        Ok(state)
    }

    /// Deposits `x`, waits for every rank's, hands all of them (in rank order) to `combine`, and
    /// waits again so that no rank overwrites its slot before the others have read it.
    fn exchange(
        &self,
        x: &Tensor,
        op: &'static str,
        combine: impl FnOnce(&[Tensor]) -> candle_core::Result<Tensor>,
    ) -> Result<Tensor> {
        if self.shared.size == 1 {
            return Ok(combine(std::slice::from_ref(x))?);
        }
        let mut state = self.lock();
        if state.aborted {
            return Err(self.aborted(op));
        }
        state.slots[self.rank] = Some(x.clone());
        let state = self.barrier(state, op)?;
        let parts: Vec<Tensor> = state.slots.iter().flatten().cloned().collect();
        drop(state);
        // Combine outside the lock: every rank does the same work on the same inputs.
        let out = if parts.len() == self.shared.size {
            combine(&parts).map_err(Error::from)
        } else {
            Err(Error::Collective {
                op,
                rank: self.rank,
                reason: format!("{} of {} ranks deposited", parts.len(), self.shared.size),
            })
        };
        let state = self.lock();
        let mut state = self.barrier(state, op)?;
        state.slots[self.rank] = None;
        out
    }
}

impl Communicator for LocalComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.size
    }

    fn all_reduce_sum(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let wide = accumulation_dtype(dtype);
        self.exchange(&x.to_dtype(wide)?, "all_reduce_sum", |parts| {
            tree_sum(parts)?.to_dtype(dtype)
        })
    }

    fn all_gather(&self, x: &Tensor, dim: usize) -> Result<Tensor> {
        self.exchange(x, "all_gather", |parts| Tensor::cat(parts, dim))
    }

    fn abort(&self) {
        let mut state = self.lock();
        state.aborted = true;
        self.shared.turn.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Runs `body` on every rank of a new group of `n`, each on its own thread.
    fn on_ranks<T: Send>(n: usize, body: impl Fn(&LocalComm) -> Result<T> + Sync) -> Vec<T> {
        let group = LocalComm::group(n);
        std::thread::scope(|s| {
            let handles: Vec<_> = group.iter().map(|c| s.spawn(|| body(c))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().unwrap())
                .collect()
        })
    }

    #[test]
    fn the_sum_is_taken_in_the_fixed_tree_whoever_arrives_first() {
        // Values chosen so every association rounds differently in f32: only the tree
        // ((x0 + x1) + (x2 + x3)) gives `want`, and left-to-right gives something else.
        let xs = [1.0f32, 1e8, -1e8, 1.0];
        let want = (xs[0] + xs[1]) + (xs[2] + xs[3]);
        let sequential = ((xs[0] + xs[1]) + xs[2]) + xs[3];
        assert_ne!(want.to_bits(), sequential.to_bits());
        for delay_rank in 0..4 {
            let got = on_ranks(4, |c| {
                // Make a different rank arrive last each time.
                if c.rank() == delay_rank {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                let x = Tensor::new(&[xs[c.rank()]], &Device::Cpu)?;
                Ok(c.all_reduce_sum(&x)?.to_vec1::<f32>()?[0])
            });
            for g in got {
                assert_eq!(g.to_bits(), want.to_bits(), "late rank {delay_rank}");
            }
        }
    }

    #[test]
    fn the_rank_tree_is_the_top_of_the_kernels_chunk_tree() -> Result<()> {
        for n in [2usize, 4, 8] {
            let parts: Vec<Tensor> = (0..n)
                .map(|r| {
                    Tensor::randn(0f32, 1.0, 64, &Device::Cpu)
                        .map(|t| (t * 10f64.powi(r as i32 - 3)).unwrap())
                })
                .collect::<candle_core::Result<_>>()?;
            let ours = tree_sum(&parts)?.to_vec1::<f32>()?;
            let kernel = reprolm_precision::deterministic::tree_sum(&Tensor::stack(&parts, 0)?)?;
            let kernel = kernel.to_vec1::<f32>()?;
            let same = ours
                .iter()
                .zip(&kernel)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{n} ranks");
        }
        Ok(())
    }

    #[test]
    fn sixteen_bit_inputs_accumulate_in_f32_and_round_once() {
        // bf16 has 8 significant bits: 256 + 1 + 1 summed in bf16 step by step stays 256, while
        // the f32 sum 258 is representable in bf16.
        let got = on_ranks(4, |c| {
            let v = if c.rank() == 0 {
                256.0f32
            } else if c.rank() < 3 {
                1.0
            } else {
                0.0
            };
            let x = Tensor::new(&[v], &Device::Cpu)?.to_dtype(DType::BF16)?;
            let y = c.all_reduce_sum(&x)?;
            assert_eq!(y.dtype(), DType::BF16);
            Ok(y.to_dtype(DType::F32)?.to_vec1::<f32>()?[0])
        });
        assert_eq!(got, vec![258.0; 4]);
    }

    #[test]
    fn repeated_collectives_do_not_mix_rounds() {
        let got = on_ranks(3, |c| {
            let mut out = Vec::new();
            for step in 0..50 {
                let x = Tensor::new(&[(c.rank() * 100 + step) as f32], &Device::Cpu)?;
                out.push(c.all_reduce_sum(&x)?.to_vec1::<f32>()?[0]);
            }
            Ok(out)
        });
        let want: Vec<f32> = (0..50).map(|s| (300 + 3 * s) as f32).collect();
        for g in got {
            assert_eq!(g, want);
        }
    }

    #[test]
    fn all_gather_concatenates_in_rank_order_with_uneven_parts() {
        let got = on_ranks(3, |c| {
            let x = Tensor::new(vec![c.rank() as f32; c.rank() + 1], &Device::Cpu)?;
            Ok(c.all_gather(&x, 0)?.to_vec1::<f32>()?)
        });
        for g in got {
            assert_eq!(g, vec![0.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
        }
    }

    #[test]
    fn a_failed_rank_releases_the_others() {
        let group = LocalComm::group(3);
        let results: Vec<Result<Tensor>> = std::thread::scope(|s| {
            let handles: Vec<_> = group
                .iter()
                .map(|c| {
                    s.spawn(move || {
                        if c.rank() == 1 {
                            c.abort();
                            return Err(Error::InvalidRequest("rank 1 failed".into()));
                        }
                        c.all_reduce_sum(&Tensor::new(&[1f32], &Device::Cpu)?)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (r, res) in results.iter().enumerate() {
            let err = res.as_ref().unwrap_err().to_string();
            if r != 1 {
                assert!(err.contains("another rank"), "rank {r}: {err}");
            }
        }
    }
}
