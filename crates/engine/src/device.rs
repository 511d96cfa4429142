//! Devices by name (`cpu`, `cuda:N`), and what to call them in a manifest.

use crate::{Error, Result};
use candle_core::Device;

/// Parses `cpu`, `cuda` (= `cuda:0`) or `cuda:N`.
///
/// A CUDA device in a build without the `cuda` feature is an error that says so, rather than a
/// quiet fall back to the CPU: the device is part of what a run measures.
///
/// ```
/// let cpu = reprolm_engine::parse_device("cpu").unwrap();
/// assert!(cpu.is_cpu());
/// assert!(reprolm_engine::parse_device("tpu:0").is_err());
/// ```
pub fn parse_device(name: &str) -> Result<Device> {
    let name = name.trim();
    if name == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match name.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                Error::InvalidRequest(format!("device `{name}`: expected cpu, cuda or cuda:N"))
            })?,
        None => {
            return Err(Error::InvalidRequest(format!(
                "device `{name}`: expected cpu, cuda or cuda:N"
            )))
        }
    };
    if !candle_core::utils::cuda_is_available() {
        return Err(Error::InvalidRequest(format!(
            "device `{name}`: this reprolm was built without CUDA support (rebuild with `--features cuda`)"
        )));
    }
    let device = Device::new_cuda(ordinal)?;
    #[cfg(feature = "cuda")]
    if let (Device::Cuda(cuda), false) = (
        &device,
        std::env::var("REPROLM_CUDA_EVENT_TRACKING").is_ok_and(|v| v == "1"),
    ) {
        // The engine runs every kernel on the device's one stream, so cudarc's cross-stream event
        // tracking (an event recorded per buffer per launch) only costs time.
        // Safety: no tensor of this device is used from another stream.
        unsafe { cuda.disable_event_tracking() };
    }
    #[cfg(feature = "cuda")]
    if let Device::Cuda(cuda) = &device {
        keep_freed_memory(cuda)?;
    }
    Ok(device)
}

/// Whether every one of `devices` is the same device (a single device, or the CPU's tensor-parallel
/// threads), as against ranks with a GPU each.
pub(crate) fn all_on_one(devices: &[Device]) -> bool {
    devices.iter().all(|d| d.same_device(&devices[0]))
}

/// The device's memory pool, from which candle allocates every tensor (stream-ordered).
#[cfg(feature = "cuda")]
fn memory_pool(
    dev: &candle_core::CudaDevice,
) -> Result<Option<candle_core::cuda_backend::cudarc::driver::sys::CUmemoryPool>> {
    use candle_core::cuda_backend::cudarc::driver::result;
    let ctx = dev.cuda_stream().context().clone();
    if !ctx.has_async_alloc() {
        return Ok(None);
    }
    // Safety: the device ordinal comes from a live context.
    let pool = unsafe { result::device::get_mem_pool(ctx.cu_device()) }
        .map_err(|e| Error::InvalidRequest(format!("asking the GPU for its memory pool: {e}")))?;
    Ok(Some(pool))
}

/// Makes the device's memory pool keep what is freed rather than hand it back to the driver at
/// every synchronisation (its release threshold is 0 by default). A decode step frees and
/// allocates the same sizes step after step, and with the default each step would map and unmap
/// that memory again around its one synchronisation (reading the chosen tokens). The automatic KV
/// cache size counts the pool's idle memory as free ([`pool_idle_bytes`]).
#[cfg(feature = "cuda")]
fn keep_freed_memory(dev: &candle_core::CudaDevice) -> Result<()> {
    use candle_core::cuda_backend::cudarc::driver::{result, sys};
    let Some(pool) = memory_pool(dev)? else {
        return Ok(());
    };
    let mut threshold = u64::MAX;
    // Safety: a live pool; the attribute takes a u64.
    unsafe {
        result::mem_pool::set_attribute(
            pool,
            sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
            (&mut threshold as *mut u64).cast(),
        )
    }
    .map_err(|e| Error::InvalidRequest(format!("setting the GPU memory pool's threshold: {e}")))
}

/// Memory the device's pool holds that no tensor uses: freed, and kept for the next allocations.
#[cfg(feature = "cuda")]
pub(crate) fn pool_idle_bytes(dev: &candle_core::CudaDevice) -> Result<u64> {
    use candle_core::cuda_backend::cudarc::driver::{result, sys};
    let Some(pool) = memory_pool(dev)? else {
        return Ok(0);
    };
    let read = |attr: sys::CUmemPool_attribute| -> Result<u64> {
        let mut v = 0u64;
        // Safety: a live pool; these attributes are u64.
        unsafe { result::mem_pool::get_attribute(pool, attr, (&mut v as *mut u64).cast()) }
            .map_err(|e| Error::InvalidRequest(format!("reading the GPU memory pool: {e}")))?;
        Ok(v)
    };
    let reserved = read(sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT)?;
    let used = read(sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_CURRENT)?;
    Ok(reserved.saturating_sub(used))
}

/// A human-readable name of the hardware behind `device`, for manifests: the CPU model from
/// /proc/cpuinfo, or the GPU's name.
pub fn device_name(device: &Device) -> String {
    match device {
        Device::Cpu => cpu_model().unwrap_or_else(|| std::env::consts::ARCH.to_string()),
        Device::Cuda(_) => gpu_name().unwrap_or_else(|| "CUDA device".to_string()),
        Device::Metal(_) => "Metal device".to_string(),
    }
}

/// `cpu` or `cuda:N`, the spelling `parse_device` reads back.
pub fn device_label(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let model = info
        .lines()
        .find(|l| l.starts_with("model name"))?
        .split(':')
        .nth(1)?
        .trim()
        .to_string();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    Some(format!("{model} ({threads} threads)"))
}

/// The GPU name as nvidia-smi reports it; candle does not expose the device properties.
fn gpu_name() -> Option<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    text.lines()
        .next()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_errors() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert_eq!(device_label(&Device::Cpu), "cpu");
        let err = parse_device("cuda:x").unwrap_err().to_string();
        assert!(err.contains("cuda:x"), "{err}");
        if !candle_core::utils::cuda_is_available() {
            let err = parse_device("cuda:0").unwrap_err().to_string();
            assert!(err.contains("without CUDA"), "{err}");
        }
        assert!(!device_name(&Device::Cpu).is_empty());
    }
}
