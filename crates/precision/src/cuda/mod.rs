//! Our own CUDA kernels, compiled at run time with NVRTC, and what launching them on candle
//! tensors takes. Only in builds with the `cuda` feature.
//!
//! Kernels are CUDA C sources embedded in the binary and compiled once per process on first use,
//! so a build needs no CUDA compiler for them and the PTX always matches the driver that runs it.
//! The sources include no CUDA headers (NVRTC then needs no include path on the machine that runs
//! them): bf16 and f16 are read and written as raw 16-bit words.

/// Implements candle's `CustomOp2` (`x · wᵀ`) and `CustomOp3` (`x · wᵀ + bias`) for a CUDA-only
/// matmul-shaped op whose inherent `launch(&self, x, w, bias)` does the work, so each op writes
/// its kernel launch once. The CPU entry points refuse: these ops are only built for CUDA tensors.
#[macro_export]
macro_rules! cuda_linear_op {
    ($op:ty, $name:literal) => {
        impl candle_core::CustomOp2 for $op {
            fn name(&self) -> &'static str {
                $name
            }
            fn cpu_fwd(
                &self,
                _: &candle_core::CpuStorage,
                _: &candle_core::Layout,
                _: &candle_core::CpuStorage,
                _: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                candle_core::bail!(concat!($name, " runs on CUDA only"))
            }
            fn cuda_fwd(
                &self,
                x: &candle_core::CudaStorage,
                xl: &candle_core::Layout,
                w: &candle_core::CudaStorage,
                wl: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
                self.launch((x, xl), (w, wl), None)
            }
        }

        impl candle_core::CustomOp3 for $op {
            fn name(&self) -> &'static str {
                concat!($name, "-bias")
            }
            fn cpu_fwd(
                &self,
                _: &candle_core::CpuStorage,
                _: &candle_core::Layout,
                _: &candle_core::CpuStorage,
                _: &candle_core::Layout,
                _: &candle_core::CpuStorage,
                _: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                candle_core::bail!(concat!($name, " runs on CUDA only"))
            }
            fn cuda_fwd(
                &self,
                x: &candle_core::CudaStorage,
                xl: &candle_core::Layout,
                w: &candle_core::CudaStorage,
                wl: &candle_core::Layout,
                b: &candle_core::CudaStorage,
                bl: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
                self.launch((x, xl), (w, wl), Some((b, bl)))
            }
        }
    };
}
pub use crate::cuda_linear_op;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaStream, CudaView, DevicePtr, LaunchArgs, PushKernelArg,
};
use candle_core::{CudaDevice, CudaStorage, DType, Layout};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Mutex, OnceLock};

/// Conversions between f32 and the 16-bit formats, shared by every kernel source.
pub const PRELUDE: &str = include_str!("prelude.cu");

/// The PTX of `source` (compiled with [`PRELUDE`] in front) for NVRTC's default target, compiled
/// once per process and cached under `module`.
pub fn ptx(module: &'static str, source: &'static str) -> candle_core::Result<&'static str> {
    compile_cached(module, source, None)
}

/// The PTX of `source` (with [`PRELUDE`] in front) for `dev`'s own architecture
/// (`compute_XY` from its compute capability), compiled once per process and cached under `module`:
/// for kernels that use instructions the default NVRTC target lacks (tensor-core `mma`).
pub fn ptx_for_device(
    dev: &CudaDevice,
    module: &'static str,
    source: &'static str,
) -> candle_core::Result<&'static str> {
    use candle_core::cuda_backend::cudarc::driver::sys::CUdevice_attribute as A;
    let ctx = dev.cuda_stream().context().clone();
    let cc = |a| {
        ctx.attribute(a)
            .map_err(|e| candle_core::Error::Msg(format!("{e:?}")))
    };
    let arch = format!(
        "compute_{}{}",
        cc(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
        cc(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?
    );
    compile_cached(module, source, Some(arch))
}

/// The number of SMs of `dev`, asked of the driver once per device: launches that size their grid
/// to the GPU (a few blocks per SM, each taking work in turn) read it on every call.
pub fn multiprocessors(dev: &CudaDevice) -> candle_core::Result<usize> {
    use candle_core::cuda_backend::cudarc::driver::sys::CUdevice_attribute as A;
    use candle_core::cuda_backend::DeviceId;
    static COUNTS: OnceLock<Mutex<HashMap<DeviceId, usize>>> = OnceLock::new();
    let mut counts = COUNTS
        .get_or_init(Default::default)
        .lock()
        .expect("SM counts");
    if let Some(&c) = counts.get(&dev.id()) {
        return Ok(c);
    }
    let c = dev
        .cuda_stream()
        .context()
        .attribute(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
        .map_err(|e| candle_core::Error::Msg(format!("asking the SM count: {e:?}")))?;
    counts.insert(dev.id(), c as usize);
    Ok(c as usize)
}

/// Lets kernel `name` of `func` launch with `bytes` of dynamic shared memory (above the default
/// 48 KB a kernel must opt in). The driver call is made once per (device, kernel) and again only
/// for a larger size: launches on the hot path (hundreds per decode step) skip it.
pub fn allow_dynamic_shared(
    dev: &CudaDevice,
    func: &candle_core::cuda_backend::cudarc::driver::CudaFunction,
    name: &str,
    bytes: usize,
) -> candle_core::Result<()> {
    use candle_core::cuda_backend::cudarc::driver::sys::CUfunction_attribute as F;
    use candle_core::cuda_backend::DeviceId;
    // Per device, per kernel name: looked up by `&str`, so a launch that finds its size allowed
    // allocates nothing.
    type Allowed = HashMap<DeviceId, HashMap<String, usize>>;
    static ALLOWED: OnceLock<Mutex<Allowed>> = OnceLock::new();
    let mut allowed = ALLOWED
        .get_or_init(Default::default)
        .lock()
        .expect("shared sizes");
    let sizes = allowed.entry(dev.id()).or_default();
    if sizes.get(name).is_some_and(|&b| b >= bytes) {
        return Ok(());
    }
    func.set_attribute(
        F::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
        bytes as i32,
    )
    .map_err(|e| {
        candle_core::Error::Msg(format!("{name}: {bytes} bytes of shared memory: {e:?}"))
    })?;
    sizes.insert(name.to_string(), bytes);
    Ok(())
}

/// The one NVRTC compile of every kernel module: `PRELUDE + source` for `arch` (NVRTC's default
/// when `None`), done once per process; the PTX is kept under `module` for later calls. candle
/// also loads a module once per name, so one module has one target: asking for another target
/// than the cached one is an error (it would otherwise get the first PTX, which may lack the
/// instructions the second caller needs).
fn compile_cached(
    module: &'static str,
    source: &'static str,
    arch: Option<String>,
) -> candle_core::Result<&'static str> {
    use candle_core::cuda_backend::cudarc::nvrtc;
    type Cache = HashMap<&'static str, (Option<String>, &'static str)>;
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .expect("ptx cache");
    let target_name = |a: &Option<String>| a.clone().unwrap_or_else(|| "the default target".into());
    if let Some((cached_arch, p)) = cache.get(module) {
        if *cached_arch != arch {
            candle_core::bail!(
                "the {module} kernels were compiled for {} and are now asked for {}: every user of \
                 one module must compile it for one target",
                target_name(cached_arch),
                target_name(&arch)
            );
        }
        return Ok(p);
    }
    let target = target_name(&arch);
    let opts_arch = arch.clone();
    let opts = nvrtc::CompileOptions {
        arch: arch.map(|a| &*Box::leak(a.into_boxed_str())),
        ..Default::default()
    };
    let compiled =
        nvrtc::compile_ptx_with_opts(format!("{PRELUDE}\n{source}"), opts).map_err(|e| {
            candle_core::Error::Msg(format!(
                "compiling the {module} kernels with NVRTC for {target}: {e:?}"
            ))
        })?;
    let text: &'static str = Box::leak(compiled.to_src().into_boxed_str());
    cache.insert(module, (opts_arch, text));
    Ok(text)
}

/// The kernel-name suffix of a dtype: `f32`, `bf16` or `f16`.
pub fn suffix(dtype: DType) -> candle_core::Result<&'static str> {
    Ok(match dtype {
        DType::F32 => "f32",
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        other => candle_core::bail!("no CUDA kernel of ours handles {other:?}"),
    })
}

/// The device words of a contiguous storage of a 2- or 4-byte float dtype.
pub enum Words<'a> {
    /// f32 values.
    W32(CudaView<'a, f32>),
    /// bf16 or f16 bits.
    W16(CudaView<'a, u16>),
}

impl<'a> Words<'a> {
    /// The words of `s` under layout `l` (which must be contiguous).
    pub fn of(s: &'a CudaStorage, l: &Layout) -> candle_core::Result<Words<'a>> {
        match l.contiguous_offsets() {
            Some((a, b)) => Self::elements(s, a..b),
            None => candle_core::bail!("kernel input must be contiguous"),
        }
    }

    /// Elements `range` of `s`, whatever layout views them: for a kernel that walks a strided
    /// view (rows of a wider tensor) itself.
    pub fn elements(s: &'a CudaStorage, range: Range<usize>) -> candle_core::Result<Words<'a>> {
        let part = |n: usize| -> candle_core::Result<Range<usize>> {
            if range.start > range.end || range.end > n {
                candle_core::bail!("elements {range:?} of a storage of {n}");
            }
            Ok(range.clone())
        };
        Ok(match s.dtype() {
            DType::F32 => {
                let all = s.as_cuda_slice::<f32>()?;
                Words::W32(all.slice(part(all.len())?))
            }
            DType::BF16 => {
                let all = s.as_cuda_slice::<half::bf16>()?;
                let v = all.slice(part(all.len())?);
                // Safety: bf16 and u16 have the same size and alignment; kernels reinterpret bits.
                Words::W16(unsafe { v.transmute::<u16>(v.len()) }.expect("same size"))
            }
            DType::F16 => {
                let all = s.as_cuda_slice::<half::f16>()?;
                let v = all.slice(part(all.len())?);
                // Safety: as above.
                Words::W16(unsafe { v.transmute::<u16>(v.len()) }.expect("same size"))
            }
            other => candle_core::bail!("no CUDA kernel of ours handles {other:?}"),
        })
    }

    /// Pushes the pointer as the next kernel argument.
    pub fn push<'b>(&'b self, args: &mut LaunchArgs<'b>) {
        match self {
            Words::W32(v) => args.arg(v),
            Words::W16(v) => args.arg(v),
        };
    }

    /// The device address of the first word (what a captured CUDA graph holds on to).
    pub fn address(&self, stream: &CudaStream) -> u64 {
        match self {
            Words::W32(v) => v.device_ptr(stream).0,
            Words::W16(v) => v.device_ptr(stream).0,
        }
    }
}

/// A null device pointer, for an absent optional kernel argument.
static NULL: u64 = 0;

/// The operands of a matmul-shaped kernel `k(x, w, bias, ...)` as device words; a missing bias
/// goes in as a null pointer, which the kernels test for.
pub struct LinearOperands<'a> {
    x: Words<'a>,
    w: Words<'a>,
    bias: Option<Words<'a>>,
}

impl<'a> LinearOperands<'a> {
    /// The words of `x`, `w` and the optional bias (each contiguous under its layout).
    pub fn of(
        x: (&'a CudaStorage, &Layout),
        w: (&'a CudaStorage, &Layout),
        bias: Option<(&'a CudaStorage, &Layout)>,
    ) -> candle_core::Result<Self> {
        Ok(LinearOperands {
            x: Words::of(x.0, x.1)?,
            w: Words::of(w.0, w.1)?,
            bias: bias.map(|(s, l)| Words::of(s, l)).transpose()?,
        })
    }

    /// Pushes `x`, `w` and the bias (or null) as the next three kernel arguments.
    pub fn push<'b>(&'b self, args: &mut LaunchArgs<'b>) {
        self.x.push(args);
        self.w.push(args);
        self.push_bias(args);
    }

    /// Pushes the bias (or null) alone, for a second launch that adds it.
    pub fn push_bias<'b>(&'b self, args: &mut LaunchArgs<'b>) {
        match &self.bias {
            Some(b) => b.push(args),
            None => {
                args.arg(&NULL);
            }
        }
    }
}

/// A kernel's output buffer of `n` elements of a dtype, every element written by the kernel.
pub enum Output {
    /// f32.
    F32(CudaSlice<f32>),
    /// bf16.
    BF16(CudaSlice<half::bf16>),
    /// f16.
    F16(CudaSlice<half::f16>),
}

impl Output {
    /// Allocates, uninitialised: the kernel must write every element.
    pub fn alloc(dev: &CudaDevice, dtype: DType, n: usize) -> candle_core::Result<Output> {
        // Safety: callers launch a kernel that writes all `n` elements before anything reads them.
        Ok(unsafe {
            match dtype {
                DType::F32 => Output::F32(dev.alloc::<f32>(n)?),
                DType::BF16 => Output::BF16(dev.alloc::<half::bf16>(n)?),
                DType::F16 => Output::F16(dev.alloc::<half::f16>(n)?),
                other => candle_core::bail!("no CUDA kernel of ours handles {other:?}"),
            }
        })
    }

    /// Pushes the pointer as the next kernel argument.
    pub fn push<'b>(&'b self, args: &mut LaunchArgs<'b>) {
        match self {
            Output::F32(s) => args.arg(s),
            Output::BF16(s) => args.arg(s),
            Output::F16(s) => args.arg(s),
        };
    }

    /// The buffer as candle storage.
    pub fn into_storage(self, dev: &CudaDevice) -> CudaStorage {
        match self {
            Output::F32(s) => CudaStorage::wrap_cuda_slice(s, dev.clone()),
            Output::BF16(s) => CudaStorage::wrap_cuda_slice(s, dev.clone()),
            Output::F16(s) => CudaStorage::wrap_cuda_slice(s, dev.clone()),
        }
    }
}
