//! The kernels the decoder's layers call, one module per family, each with its CPU and CUDA
//! bodies side by side so that the model code never branches on the device.
//!
//! - [`gemm`]: every projection (q/k/v/o, gate/up/down, LM head) through one GEMM layer whose
//!   reduction order over K does not depend on the number of rows.

pub mod gemm;
