//! The portable tier on the GPU against the CPU, bit for bit: the CUDA bodies of
//! `reprolm_precision::portable`'s f32 `exp` and `ln` (the precision crate's `prelude.cu`, shared
//! by every kernel source), and a whole decoder's logits.

use crate::kernels::gpu_test::{bits, device};
use crate::Result;
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaStorage, DType, Device, Layout, Shape, Tensor};
use reprolm_precision::cuda::{ptx, Output, Words};
use reprolm_precision::portable;

const SOURCE: &str = r#"
extern "C" __global__ void portable_exp_ln(const float* x, float* out, long n) {
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
    out[i] = portable_exp(x[i]);
    out[n + i] = portable_ln(x[i]);
  }
}
"#;
const MODULE: &str = "reprolm_portable_check";

/// `(2, n)`: `exp` of each value, then `ln` of each, computed by the CUDA bodies.
struct ExpLn;

impl candle_core::CustomOp1 for ExpLn {
    fn name(&self) -> &'static str {
        "reprolm-portable-exp-ln"
    }
    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, Shape)> {
        candle_core::bail!("the check runs the CUDA bodies")
    }
    fn cuda_fwd(&self, x: &CudaStorage, l: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let dev = x.device();
        let n = l.shape().elem_count();
        let func = dev.get_or_load_custom_func("portable_exp_ln", MODULE, ptx(MODULE, SOURCE)?)?;
        let input = Words::of(x, l)?;
        let out = Output::alloc(dev, DType::F32, 2 * n)?;
        let n_i = n as i64;
        let mut b = func.builder();
        input.push(&mut b);
        out.push(&mut b);
        b.arg(&n_i);
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(256).clamp(1, 65_535) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        // Safety: the arguments match the kernel's signature; `out` holds 2n floats.
        unsafe { b.launch(cfg) }.w()?;
        Ok((out.into_storage(dev), Shape::from((2, n))))
    }
}

/// Inputs across both functions' ranges: every 4096th f32 bit pattern (both signs, subnormals,
/// the infinities and NaNs among them), a dense sweep of exp's working range, and the edges.
fn inputs() -> Vec<f32> {
    let mut x: Vec<f32> = (0..=u32::MAX).step_by(4096).map(f32::from_bits).collect();
    x.extend((0..200_000).map(|i| -104.0 + 193.0 * i as f32 / 200_000.0));
    x.extend([
        0.0,
        -0.0,
        1.0,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::MAX,
        88.722_84,
        88.722_85,
        -103.972_08,
        -103.972_09,
        -87.5,
        -100.0,
        std::f32::consts::SQRT_2,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ]);
    x
}

#[test]
fn the_cuda_exp_and_ln_give_the_cpus_bits() -> Result<()> {
    let Some(dev) = device() else {
        return Ok(());
    };
    let x = inputs();
    let n = x.len();
    let got = Tensor::from_slice(&x, n, &dev)?.apply_op1_no_bwd(&ExpLn)?;
    let want_exp: Vec<f32> = x.iter().map(|&v| portable::exp(v)).collect();
    let want_ln: Vec<f32> = x.iter().map(|&v| portable::ln(v)).collect();
    let want = Tensor::new(vec![want_exp, want_ln], &Device::Cpu)?;
    let (got, want) = (bits(&got), bits(&want));
    if let Some(i) = (0..2 * n).find(|&i| got[i] != want[i]) {
        let (f, v) = (if i < n { "exp" } else { "ln" }, x[i % n]);
        panic!(
            "{f}({v:e} = {:#010x}): GPU {:#x}, CPU {:#x}",
            v.to_bits(),
            got[i],
            want[i]
        );
    }
    Ok(())
}

/// A two-layer Qwen2-shaped decoder under the portable tier on the CPU and on CUDA: the logits of
/// five prompts' prefills and of eight decode steps of the five together, bit for bit, in bf16,
/// fp32 and LayerCast.
#[test]
fn a_decoder_gives_the_cpus_logits_on_the_gpu() -> Result<()> {
    use crate::decode_graph::gpu_tests::{decoder, weights};
    use crate::kernels::{KernelChoice, Kernels};
    use crate::{KvCacheSize, LogitsFor, SeqId};
    let Some(dev) = device() else {
        return Ok(());
    };
    let weights = weights()?;
    for policy in ["bf16", "fp32", "layercast"] {
        let portable = |d: &Device| -> Result<crate::Decoder> {
            let mut m = decoder(d, policy, &weights)?;
            m.set_kernels(Kernels {
                choice: KernelChoice::Portable,
                ..m.kernels()
            })?;
            Ok(m)
        };
        let (cpu, gpu) = (portable(&Device::Cpu)?, portable(&dev)?);
        let size = KvCacheSize::Bytes(64 << 20);
        let (mut c_cpu, mut c_gpu) = (cpu.new_cache_of(size)?, gpu.new_cache_of(size)?);
        let mut seqs: Vec<(SeqId, SeqId)> = Vec::new();
        let mut last = Vec::new();
        for (n, len) in [3usize, 40, 300, 100, 17].into_iter().enumerate() {
            let prompt: Vec<u32> = (0..len)
                .map(|j| ((n * 131 + j * 17) % 1000) as u32)
                .collect();
            let (a, b) = (c_cpu.add_sequence(), c_gpu.add_sequence());
            let la = cpu.forward(&[(a, &prompt)], &mut c_cpu, LogitsFor::Last)?;
            let lb = gpu.forward(&[(b, &prompt)], &mut c_gpu, LogitsFor::Last)?;
            assert_eq!(bits(&la), bits(&lb), "{policy}: prefill of prompt {n}");
            last.push(la.to_dtype(DType::F32)?.argmax(1)?.to_vec1::<u32>()?[0]);
            seqs.push((a, b));
        }
        for step in 0..8 {
            let toks: Vec<[u32; 1]> = last.iter().map(|&t| [t]).collect();
            let a: Vec<(SeqId, &[u32])> =
                seqs.iter().zip(&toks).map(|(s, t)| (s.0, &t[..])).collect();
            let b: Vec<(SeqId, &[u32])> =
                seqs.iter().zip(&toks).map(|(s, t)| (s.1, &t[..])).collect();
            let la = cpu.forward(&a, &mut c_cpu, LogitsFor::Last)?;
            let lb = gpu.forward(&b, &mut c_gpu, LogitsFor::Last)?;
            assert_eq!(bits(&la), bits(&lb), "{policy}: decode step {step}");
            last = la.to_dtype(DType::F32)?.argmax(1)?.to_vec1::<u32>()?;
        }
    }
    Ok(())
}
