//! The kernels the decoder's layers call, one module per family, each with its CPU and CUDA
//! bodies side by side so that the model code never branches on the device.
//!
//! - [`gemm`]: every projection (q/k/v/o, gate/up/down, LM head) through one GEMM layer whose
//!   reduction order over K does not depend on the number of rows.

pub mod gemm;

/// What the GPU unit tests of the kernels share: the device (or a note that there is none) and
/// the bits of a result.
#[cfg(all(test, feature = "cuda"))]
pub(crate) mod gpu_test {
    use candle_core::{DType, Device, Tensor};

    /// CUDA device 0, or `None` after saying the test is skipped (CI has no GPU).
    pub fn device() -> Option<Device> {
        match Device::new_cuda(0) {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("skipped: no CUDA device ({e})");
                None
            }
        }
    }

    /// Every value's f32 bits.
    pub fn bits(t: &Tensor) -> Vec<u32> {
        t.to_dtype(DType::F32)
            .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
            .expect("readable")
            .into_iter()
            .map(f32::to_bits)
            .collect()
    }
}
