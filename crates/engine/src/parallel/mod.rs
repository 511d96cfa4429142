//! Tensor parallelism: one decoder's weights split over `n` ranks (Megatron-style), each rank
//! running its share of every layer and meeting the others at two all-reduces per layer.
//!
//! The ranks are `n` threads of this process, each holding only its slices of the projection
//! weights and its own key/value heads' cache. On the CPU they talk through [`LocalComm`]; that
//! makes the sharding logic testable without GPUs, not a CPU run faster than one rank using
//! every core (candle's kernels already do that). On CUDA (built with the `nccl` feature) rank `r`
//! drives GPU `cuda:K+r`, where `cuda:K` is the device asked for, and the ranks talk through
//! `NcclComm` behind the same [`Communicator`] trait; every sum is still taken in the fixed tree
//! over ranks. Without the feature, `--tp` above 1 on CUDA is an error rather than a silent
//! single-GPU run.
//!
//! Two modes ([`TpMode`]): `Standard` uses the fast kernels, so logits move with `n` at the level
//! of float rounding (as on real multi-GPU servers); `Invariant` runs every projection through
//! the fixed-order kernels of [`reprolm_precision::deterministic`] with K reduced over
//! [`TREE_CHUNKS`] chunks in a binary tree whose top levels are the all-reduce, so greedy tokens
//! and logits are bitwise the same for every `n` dividing 8 (CPU only: those kernels have no CUDA
//! body yet).

mod comm;
#[cfg(feature = "nccl")]
mod nccl;
mod shard;

pub use comm::{Communicator, LocalComm};
#[cfg(feature = "nccl")]
pub use nccl::NcclComm;
pub(crate) use shard::layout;
pub use shard::{check_split, ShardLayout};

/// The number of K chunks the TP-invariant mode's matmuls are reduced over, in a binary tree:
/// the largest tensor-parallel size it supports. Rank `r` of `n` holds chunks
/// `r·8/n .. (r+1)·8/n` of a row-parallel weight, reduces them with
/// [`ReductionOrder::tree`](reprolm_precision::ReductionOrder::tree)`(8 / n)`, and the all-reduce
/// adds the ranks' sums in the upper levels of the same tree; one device reduces all 8 chunks.
pub const TREE_CHUNKS: usize = 8;

/// How the ranks' partial sums are computed and combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TpMode {
    /// The GEMM the kernels setting chooses for every product; the all-reduce sums the ranks'
    /// rounded partials. tp = 1 is exactly the single-device decoder.
    #[default]
    Standard,
    /// Every projection through the fixed-order matmul with K in [`TREE_CHUNKS`] chunks summed
    /// in a binary tree; partials stay in f32 through the all-reduce and are rounded once:
    /// results independent of `size`. CPU only, slower (see the README for the measured cost).
    Invariant,
}

impl TpMode {
    /// `standard` or `invariant`, as manifests write it.
    pub fn as_str(self) -> &'static str {
        match self {
            TpMode::Standard => "standard",
            TpMode::Invariant => "invariant",
        }
    }
}

/// The tensor-parallel configuration of a decoder: how many ranks, and which [`TpMode`].
///
/// ```
/// use reprolm_engine::parallel::{TensorParallel, TpMode};
/// let tp = TensorParallel::new(2, TpMode::Invariant);
/// assert_eq!((tp.size, tp.mode.as_str()), (2, "invariant"));
/// assert_eq!(TensorParallel::default().size, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorParallel {
    /// Number of ranks (`--tp`); 1 is the single-device decoder.
    pub size: usize,
    /// How partial sums are computed and combined.
    pub mode: TpMode,
}

impl TensorParallel {
    /// `size` ranks in `mode`.
    pub fn new(size: usize, mode: TpMode) -> Self {
        TensorParallel { size, mode }
    }
}

impl Default for TensorParallel {
    fn default() -> Self {
        TensorParallel::new(1, TpMode::Standard)
    }
}

/// Refuses tensor parallelism where this build cannot run it, before any weight is read.
///
/// ```
/// use candle_core::Device;
/// use reprolm_engine::parallel::{check_parallel_device, TensorParallel, TpMode};
/// assert!(check_parallel_device(&TensorParallel::new(4, TpMode::Invariant), &Device::Cpu).is_ok());
/// ```
pub fn check_parallel_device(
    tp: &TensorParallel,
    device: &candle_core::Device,
) -> crate::Result<()> {
    let refuse = |reason: &str| {
        Err(crate::Error::TensorParallelDevice {
            device: crate::device_label(device),
            reason: reason.into(),
        })
    };
    if device.is_cpu() {
        return Ok(());
    }
    if tp.mode == TpMode::Invariant {
        return refuse("the TP-invariant mode's fixed-order kernels run on the CPU only");
    }
    if tp.size > 1 && !cfg!(feature = "nccl") {
        return refuse(
            "tensor parallelism on CUDA needs NCCL: rebuild with `--features nccl`, or use --tp 1 or the cpu device",
        );
    }
    Ok(())
}

/// The communicators of ranks on `devices`: none for one rank; ranks that share one device (the
/// CPU's threads) exchange tensors through this process's memory ([`LocalComm`]); ranks on GPUs
/// of their own through NCCL (`NcclComm`, the `nccl` feature).
pub(crate) fn communicators(
    devices: &[candle_core::Device],
) -> crate::Result<Vec<Option<std::sync::Arc<dyn Communicator>>>> {
    if devices.len() == 1 {
        return Ok(vec![None]);
    }
    let group = if crate::device::all_on_one(devices) {
        LocalComm::group(devices.len())
            .into_iter()
            .map(|c| std::sync::Arc::new(c) as std::sync::Arc<dyn Communicator>)
            .collect()
    } else {
        gpu_group(devices)?
    };
    Ok(group.into_iter().map(Some).collect())
}

#[cfg(feature = "nccl")]
fn gpu_group(
    devices: &[candle_core::Device],
) -> crate::Result<Vec<std::sync::Arc<dyn Communicator>>> {
    Ok(NcclComm::group(devices)?
        .into_iter()
        .map(|c| std::sync::Arc::new(c) as std::sync::Arc<dyn Communicator>)
        .collect())
}

#[cfg(not(feature = "nccl"))]
fn gpu_group(
    devices: &[candle_core::Device],
) -> crate::Result<Vec<std::sync::Arc<dyn Communicator>>> {
    Err(crate::Error::TensorParallelDevice {
        device: crate::device_label(&devices[0]),
        reason: "tensor parallelism on CUDA needs NCCL: rebuild with `--features nccl`".into(),
    })
}

/// The device of each rank: all `device` on the CPU; on CUDA, rank `r` on `cuda:K+r` for
/// `device` = `cuda:K`, rank 0 on `device` itself. Fewer GPUs than ranks is an error naming
/// both counts.
pub(crate) fn rank_devices(
    device: &candle_core::Device,
    size: usize,
) -> crate::Result<Vec<candle_core::Device>> {
    match device {
        #[cfg(feature = "cuda")]
        candle_core::Device::Cuda(cuda) if size > 1 => {
            use candle_core::cuda_backend::cudarc::driver::CudaContext;
            let first = cuda.cuda_stream().context().ordinal();
            let count = CudaContext::device_count()
                .map_err(|e| crate::Error::InvalidRequest(format!("counting GPUs: {e}")))?
                as usize;
            if first + size > count {
                return Err(crate::Error::TensorParallelDevice {
                    device: crate::device_label(device),
                    reason: format!(
                        "--tp {size} from cuda:{first} needs cuda:{first}..cuda:{}; this machine has {count} GPU(s)",
                        first + size - 1
                    ),
                });
            }
            let mut devices = vec![device.clone()];
            for r in 1..size {
                devices.push(crate::parse_device(&format!("cuda:{}", first + r))?);
            }
            Ok(devices)
        }
        _ => Ok(vec![device.clone(); size]),
    }
}
