//! Capturing and launching a step on the CUDA device's stream (cudarc's graph API).

use crate::{Error, Result};
use candle_core::cuda_backend::cudarc::driver::{sys, CudaGraph};
use candle_core::Device;

/// A captured step, replayed by [`launch`](Graph::launch).
pub(crate) struct Graph(CudaGraph);

// Safety: a CUDA graph may be used from any thread as long as no two threads use it at once
// (the driver's rule for graph objects); `DecodeGraphs` keeps every graph behind its mutex.
unsafe impl Send for Graph {}

impl Graph {
    /// Replays the step on the stream it was captured on.
    pub(crate) fn launch(&self) -> Result<()> {
        self.0
            .launch()
            .map_err(|e| Error::InvalidRequest(format!("launching a decode graph: {e}")))
    }
}

/// Captures what `body` enqueues on `device`'s stream into a graph, without running it. The
/// capture is ended whatever `body` returns, so a failure leaves the stream usable.
pub(crate) fn capture(device: &Device, body: impl FnOnce() -> Result<()>) -> Result<Graph> {
    let Device::Cuda(dev) = device else {
        return Err(Error::InvalidRequest(
            "CUDA graphs are captured on a CUDA device".into(),
        ));
    };
    let stream = dev.cuda_stream();
    let driver = |what: &str, e: candle_core::cuda_backend::cudarc::driver::DriverError| {
        Error::InvalidRequest(format!("{what}: {e}"))
    };
    let _cache = dev.enable_cuda_graph_htod_cache();
    // Thread-local: only this thread's calls that cannot be captured fail the capture.
    stream
        .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .map_err(|e| driver("starting a capture", e))?;
    let body = body();
    let graph = stream.end_capture(sys::CUgraphInstantiate_flags(0));
    body?;
    match graph.map_err(|e| driver("ending a capture", e))? {
        Some(g) => {
            // Its resources on the device now, not at the first launch.
            g.upload()
                .map_err(|e| driver("uploading a captured step", e))?;
            Ok(Graph(g))
        }
        None => Err(Error::InvalidRequest("the captured step is empty".into())),
    }
}

/// Runs `f` while candle serves the small parameter vectors it uploads for strided ops
/// (shapes, strides) from a cache keyed by their contents: a capture needs it (a copy from host
/// memory cannot be captured), and the eager run before it fills it.
pub(crate) fn with_param_cache<T>(device: &Device, f: impl FnOnce() -> T) -> T {
    match device {
        Device::Cuda(dev) => {
            let _cache = dev.enable_cuda_graph_htod_cache();
            f()
        }
        _ => f(),
    }
}

/// The device address of `t`'s first element (a contiguous f32, bf16 or f16 tensor, such as a KV
/// cache pool).
pub(crate) fn address(t: &candle_core::Tensor) -> Result<u64> {
    use candle_core::backend::BackendStorage;
    use candle_core::Storage;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cuda(s) = &*storage else {
        return Err(Error::InvalidRequest(
            "a device address of a tensor not on CUDA".into(),
        ));
    };
    let words = reprolm_precision::cuda::Words::of(s, layout)?;
    Ok(words.address(&s.device().cuda_stream()))
}
