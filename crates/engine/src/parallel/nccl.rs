//! [`NcclComm`]: the [`Communicator`] of ranks that are GPUs of one machine, one thread each,
//! talking through NCCL (built with the `nccl` feature).
//!
//! NCCL's own all-reduce adds the ranks' values in an order of its choosing (ring or tree, by
//! message size and topology), which is neither the order the trait promises nor the same on two
//! machines. So both collectives here are an NCCL all-gather followed by local arithmetic: every
//! rank receives every rank's tensor and sums them in the fixed binary tree of
//! [`super::comm`], in f32. The bits are then the same on every rank, in every run and on every
//! topology, and they equal those of [`super::LocalComm`] on the same inputs. The price is
//! traffic: a rank receives `n` tensors where a ring all-reduce moves about two, which at the
//! two to eight ranks of one machine, and at a decode step's few rows, is latency, not bandwidth.
//!
//! NVLink SHARP (multicast) reductions are switched off (`NCCL_NVLS_ENABLE=0`) before the
//! communicators are made, unless the variable is already set.

use super::comm::{accumulation_dtype, tree_sum};
use super::Communicator;
use crate::{Error, Result};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, DeviceRepr, ValidAsZeroBits};
use candle_core::cuda_backend::cudarc::nccl::safe::{Comm, NcclType};
use candle_core::cuda_backend::{CudaDType, CudaDevice, CudaStorage};
use candle_core::{DType, Device, Storage, Tensor};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One rank of a group of GPUs in this process. Hand each to the thread that drives its GPU.
#[derive(Debug)]
pub struct NcclComm {
    rank: usize,
    size: usize,
    device: CudaDevice,
    /// NCCL's handle for this rank. Only this rank's thread calls collectives on it; the lock
    /// makes the handle shareable as the trait requires.
    comm: Mutex<RankComm>,
    /// Set by any rank's [`Communicator::abort`]: later collectives fail at once.
    aborted: Arc<AtomicBool>,
}

/// cudarc's communicator, which holds a raw NCCL handle.
struct RankComm(Comm);

// Safety: an NCCL communicator may be used from any thread, one call at a time (NCCL's
// thread-safety rules); `NcclComm` only reaches it through a mutex.
unsafe impl Send for RankComm {}

impl std::fmt::Debug for RankComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Comm(rank {})", self.0.rank())
    }
}

impl NcclComm {
    /// The ranks of a new group over `devices` (rank `r` drives `devices[r]`; distinct GPUs).
    pub fn group(devices: &[Device]) -> Result<Vec<NcclComm>> {
        let cuda: Vec<CudaDevice> = devices
            .iter()
            .map(|d| match d {
                Device::Cuda(c) => Ok(c.clone()),
                other => Err(Error::InvalidRequest(format!(
                    "an NCCL group needs CUDA devices, not {}",
                    crate::device_label(other)
                ))),
            })
            .collect::<Result<_>>()?;
        if std::env::var_os("NCCL_NVLS_ENABLE").is_none() {
            // Set before NCCL reads its environment (at the first communicator), while no other
            // thread of this process is reading the environment.
            std::env::set_var("NCCL_NVLS_ENABLE", "0");
        }
        let streams = cuda.iter().map(CudaDevice::cuda_stream).collect();
        let comms = Comm::from_devices(streams).map_err(|e| Error::Collective {
            op: "init",
            rank: 0,
            reason: format!("NCCL: {e:?}"),
        })?;
        let size = comms.len();
        let aborted = Arc::new(AtomicBool::new(false));
        Ok(comms
            .into_iter()
            .zip(cuda)
            .enumerate()
            .map(|(rank, (comm, device))| NcclComm {
                rank,
                size,
                device,
                comm: Mutex::new(RankComm(comm)),
                aborted: aborted.clone(),
            })
            .collect())
    }

    fn error(&self, op: &'static str, reason: String) -> Error {
        Error::Collective {
            op,
            rank: self.rank,
            reason,
        }
    }

    /// Every rank's `x`, in rank order, on this rank's GPU.
    fn gather(&self, x: &Tensor, op: &'static str) -> Result<Vec<Tensor>> {
        if self.aborted.load(Ordering::SeqCst) {
            return Err(self.error(op, crate::error::GROUP_ABORTED.into()));
        }
        let x = x.contiguous()?;
        let all = match x.dtype() {
            DType::F32 => self.gather_as::<f32>(&x, op),
            DType::F64 => self.gather_as::<f64>(&x, op),
            DType::BF16 => self.gather_as::<half::bf16>(&x, op),
            DType::F16 => self.gather_as::<half::f16>(&x, op),
            DType::U32 => self.gather_as::<u32>(&x, op),
            other => Err(self.error(op, format!("NCCL cannot gather {other:?} tensors"))),
        }?;
        Ok((0..self.size)
            .map(|r| all.get(r))
            .collect::<candle_core::Result<_>>()?)
    }

    /// [`gather`](Self::gather) for elements of `T`: `(size, x's dims...)`.
    fn gather_as<T>(&self, x: &Tensor, op: &'static str) -> Result<Tensor>
    where
        T: CudaDType + NcclType + DeviceRepr + ValidAsZeroBits,
    {
        let n = x.elem_count();
        let (guard, layout) = x.storage_and_layout();
        let Storage::Cuda(storage) = &*guard else {
            return Err(self.error(op, "the tensor is not on a GPU".into()));
        };
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| self.error(op, "the tensor is not contiguous".into()))?;
        let src = storage.as_cuda_slice::<T>()?.slice(start..end);
        let mut dst: CudaSlice<T> = self.device.alloc_zeros::<T>(n * self.size)?;
        {
            let comm = self.comm.lock().unwrap_or_else(|p| p.into_inner());
            comm.0
                .all_gather(&src, &mut dst)
                .map_err(|e| self.error(op, format!("NCCL: {e:?}")))?;
        }
        drop(guard);
        let mut dims = vec![self.size];
        dims.extend_from_slice(x.dims());
        Ok(Tensor::from_storage(
            Storage::Cuda(CudaStorage::wrap_cuda_slice(dst, self.device.clone())),
            dims,
            candle_core::op::BackpropOp::none(),
            false,
        ))
    }
}

impl Communicator for NcclComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let parts = self.gather(&x.to_dtype(accumulation_dtype(dtype))?, "all_reduce_sum")?;
        Ok(tree_sum(&parts)?.to_dtype(dtype)?)
    }

    fn all_gather(&self, x: &Tensor, dim: usize) -> Result<Tensor> {
        Ok(Tensor::cat(&self.gather(x, "all_gather")?, dim)?)
    }

    /// Makes this rank's and every other rank's later collectives fail at once. A collective
    /// already queued on a GPU is not interrupted (NCCL's abort frees the communicator, which
    /// the other ranks' threads may be using); the decoder's ranks run the same shapes through
    /// the same collectives, so a failure before a collective is seen by every rank alike.
    fn abort(&self) {
        self.aborted.store(true, Ordering::SeqCst);
    }
}
