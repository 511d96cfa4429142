//! How much memory the KV cache's pool takes, decided once when the cache is made.

use super::CacheShape;
use crate::{Error, Result};
use candle_core::Device;

/// Part of the GPU memory free when the cache is made that [`KvCacheSize::Auto`] takes; the rest
/// is left for activations, logits and the workspace of the kernels.
pub const CUDA_DEFAULT_FRACTION: f64 = 0.85;
/// Part of the machine's available memory that [`KvCacheSize::Auto`] reserves on the CPU. The
/// pool's pages are only taken from the machine as blocks are written, so a large reservation
/// costs nothing until it is used.
pub const CPU_DEFAULT_FRACTION: f64 = 0.5;

/// The size of a KV cache's pool (`--kv-cache-memory`).
///
/// ```
/// use reprolm_engine::kv::KvCacheSize;
/// assert_eq!(KvCacheSize::parse("auto")?, KvCacheSize::Auto);
/// assert_eq!(KvCacheSize::parse("40")?, KvCacheSize::Bytes(40 << 30));
/// assert_eq!(KvCacheSize::parse("512MiB")?, KvCacheSize::Bytes(512 << 20));
/// assert_eq!(KvCacheSize::parse("1.5GB")?, KvCacheSize::Bytes(1_500_000_000));
/// assert!(KvCacheSize::parse("lots").is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvCacheSize {
    /// On a GPU, [`CUDA_DEFAULT_FRACTION`] of the memory free when the cache is made; on the CPU,
    /// [`CPU_DEFAULT_FRACTION`] of the memory available.
    #[default]
    Auto,
    /// This many bytes, over all layers and tensor-parallel ranks.
    Bytes(u64),
}

impl KvCacheSize {
    /// `auto`, a size with a unit (`40GiB`, `512MiB`, `12GB`, `800MB`, `64KiB`, `4096B`), or a
    /// plain number of GiB (`40`).
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("auto") {
            return Ok(KvCacheSize::Auto);
        }
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "gib" | "g" => (1u64 << 30) as f64,
            "b" => 1.0,
            "kib" | "k" => 1024.0,
            "mib" | "m" => (1u64 << 20) as f64,
            "tib" | "t" => (1u64 << 40) as f64,
            "kb" => 1e3,
            "mb" => 1e6,
            "gb" => 1e9,
            "tb" => 1e12,
            _ => {
                return Err(format!(
                    "`{text}` is not a memory size: write `auto`, a number of GiB, or a number \
                     with a unit (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
                ))
            }
        };
        let value: f64 = num
            .parse()
            .map_err(|_| format!("`{text}` is not a memory size: `{num}` is not a number"))?;
        let bytes = (value * scale).round();
        if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
            return Err(format!("`{text}` is not a usable memory size"));
        }
        Ok(KvCacheSize::Bytes(bytes as u64))
    }

    /// The number of blocks of `block_bytes` this size gives on `device` (at least one).
    pub(crate) fn blocks(self, block_bytes: usize, device: &Device) -> Result<usize> {
        let bytes = match self {
            KvCacheSize::Bytes(b) => b,
            KvCacheSize::Auto => (free_memory(device)? as f64 * default_fraction(device)) as u64,
        };
        let blocks = bytes / block_bytes.max(1) as u64;
        if blocks == 0 {
            return Err(Error::InvalidRequest(format!(
                "a KV cache of {} cannot hold one block of {} (--kv-cache-memory)",
                reprolm_precision::format_bytes(bytes),
                reprolm_precision::format_bytes(block_bytes as u64)
            )));
        }
        Ok(blocks as usize)
    }

    /// The number of blocks of a cache of `shape` whose rank `r` lives on `devices[r]`. A size in
    /// bytes is the whole cache's. `auto` on ranks that share one device is that device's free
    /// memory; on ranks with a device each (GPUs under tensor parallelism), each holds its own
    /// shard, and the one with the least room for it decides.
    pub(crate) fn blocks_over(self, shape: &CacheShape, devices: &[Device]) -> Result<usize> {
        if crate::device::all_on_one(devices) || matches!(self, KvCacheSize::Bytes(_)) {
            return self.blocks(shape.block_bytes(), &devices[0]);
        }
        let mut fewest = usize::MAX;
        for (rank, device) in devices.iter().enumerate() {
            fewest = fewest.min(self.blocks(shape.rank_block_bytes(rank), device)?);
        }
        Ok(fewest)
    }

    /// How a report spells it.
    pub fn describe(self) -> String {
        match self {
            KvCacheSize::Auto => "auto".into(),
            KvCacheSize::Bytes(b) => reprolm_precision::format_bytes(b),
        }
    }
}

fn default_fraction(device: &Device) -> f64 {
    if device.is_cpu() {
        CPU_DEFAULT_FRACTION
    } else {
        CUDA_DEFAULT_FRACTION
    }
}

/// Memory that can still be given out on `device`: free GPU memory (with what the memory pool
/// holds unused), or the machine's `MemAvailable`.
pub(crate) fn free_memory(device: &Device) -> Result<u64> {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => {
            let (free, _total) = d.cuda_stream().context().mem_get_info().map_err(|e| {
                Error::InvalidRequest(format!("asking the GPU for free memory: {e}"))
            })?;
            // What the memory pool keeps after tensors are freed is free for the cache too.
            Ok(free as u64 + crate::device::pool_idle_bytes(d)?)
        }
        Device::Cpu => {
            let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
            let kib = info
                .lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            // Where the kernel does not say (not Linux), a modest 4 GiB.
            Ok(kib.map_or(4 << 30, |k| k * 1024))
        }
        #[allow(unreachable_patterns)]
        other => Err(Error::InvalidRequest(format!(
            "no KV cache size for {other:?}: give --kv-cache-memory"
        ))),
    }
}
