//! The CUDA body of [`choose`](super::choose): one kernel (`choose.cu`) computes the choice for
//! every row of a decode step, bit for bit, and only the chosen ids come back, not the
//! vocabulary. The draws are computed on the host ([`NoiseKey::draw`](crate::NoiseKey::draw) is
//! a few integer operations) and travel as two words per row.

use crate::kernels::Fusion;
use crate::sampling::SamplingParams;
use crate::Result;
use candle_core::{DType, Tensor};

/// The sampled token of each row of `(rows, n)` f32 `logits`, the row's draw given in `draws`,
/// as a `(rows,)` u32 tensor on the logits' device; `Ok(None)` where no kernel applies (CPU
/// tensors, a build without the `cuda` feature, [`Fusion::Off`]), and the caller then chooses on
/// the host.
pub(crate) fn sample_rows(
    logits: &Tensor,
    draws: &[u64],
    params: &SamplingParams,
    fusion: Fusion,
) -> Result<Option<Tensor>> {
    let applies = crate::fused::enabled(logits.device(), fusion)
        && logits.dtype() == DType::F32
        && logits.rank() == 2
        && logits.dim(0)? == draws.len()
        && logits.dim(1)? < i32::MAX as usize
        && !params.is_greedy();
    if !applies {
        return Ok(None);
    }
    imp::sample_rows(logits, draws, params)
}

#[cfg(not(feature = "cuda"))]
mod imp {
    use crate::sampling::SamplingParams;
    use crate::Result;
    use candle_core::Tensor;

    pub fn sample_rows(_: &Tensor, _: &[u64], _: &SamplingParams) -> Result<Option<Tensor>> {
        Ok(None)
    }
}

#[cfg(feature = "cuda")]
mod imp {
    use crate::sampling::SamplingParams;
    use crate::Result;
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::WrapErr;
    use candle_core::{CudaStorage, Layout, Shape, Tensor};
    use reprolm_precision::cuda::{ptx_for_device, Words};

    const SOURCE: &str = include_str!("choose.cu");
    const MODULE: &str = "reprolm_sampling";
    /// Threads per row; the kernel's shared arrays are sized for it.
    const THREADS: u32 = 1024;

    struct SampleRows {
        temperature: f64,
        top_k: i32,
        top_p: f64,
        min_p: f64,
    }

    impl candle_core::CustomOp2 for SampleRows {
        fn name(&self) -> &'static str {
            "reprolm-sample-rows"
        }
        fn cpu_fwd(
            &self,
            _: &candle_core::CpuStorage,
            _: &Layout,
            _: &candle_core::CpuStorage,
            _: &Layout,
        ) -> candle_core::Result<(candle_core::CpuStorage, Shape)> {
            candle_core::bail!("the sampling kernel runs on CUDA only")
        }
        fn cuda_fwd(
            &self,
            lg: &CudaStorage,
            lgl: &Layout,
            dr: &CudaStorage,
            drl: &Layout,
        ) -> candle_core::Result<(CudaStorage, Shape)> {
            let dev = lg.device();
            let (rows, n) = lgl.shape().dims2()?;
            if drl.dims() != [rows, 2] {
                candle_core::bail!("sampling: draws {:?} for {rows} rows", drl.dims());
            }
            // For the device's own architecture: the kernel uses `__match_any_sync` (sm_70 and up).
            let func = dev.get_or_load_custom_func(
                "sample_rows",
                MODULE,
                ptx_for_device(dev, MODULE, SOURCE)?,
            )?;
            let lw = Words::of(lg, lgl)?;
            let Some((d0, d1)) = drl.contiguous_offsets() else {
                candle_core::bail!("sampling: draws must be contiguous")
            };
            let draws = dr.as_cuda_slice::<u32>()?.slice(d0..d1);
            // Safety: the kernel writes one id per row, every row, and each scratch weight
            // before it reads it.
            let out = unsafe { dev.alloc::<u32>(rows)? };
            let weights = unsafe { dev.alloc::<u64>(rows * n)? };
            let n_i = n as i32;
            let mut b = func.builder();
            lw.push(&mut b);
            b.arg(&draws);
            b.arg(&weights);
            b.arg(&out);
            b.arg(&n_i);
            b.arg(&self.temperature);
            b.arg(&self.top_k);
            b.arg(&self.top_p);
            b.arg(&self.min_p);
            let cfg = LaunchConfig {
                grid_dim: (rows as u32, 1, 1),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            // Safety: the arguments match the kernel's signature; shapes were checked above.
            unsafe { b.launch(cfg) }.w()?;
            Ok((
                CudaStorage::wrap_cuda_slice(out, dev.clone()),
                Shape::from(rows),
            ))
        }
    }

    pub fn sample_rows(
        logits: &Tensor,
        draws: &[u64],
        params: &SamplingParams,
    ) -> Result<Option<Tensor>> {
        let words: Vec<u32> = draws
            .iter()
            .flat_map(|&d| [d as u32, (d >> 32) as u32])
            .collect();
        let draws = Tensor::from_vec(words, (draws.len(), 2), logits.device())?;
        let op = SampleRows {
            temperature: params.temperature,
            top_k: params.top_k.min(i32::MAX as usize) as i32,
            top_p: params.top_p,
            min_p: params.min_p,
        };
        Ok(Some(logits.contiguous()?.apply_op2_no_bwd(&draws, &op)?))
    }
}

/// The kernel against the host's [`choose`](super::choose), bit for bit, on a real GPU: run with
/// `cargo test --release --features cuda -p reprolm-engine sampling`; without a CUDA device the
/// test says so and passes vacuously (CI has none).
#[cfg(all(test, feature = "cuda"))]
mod gpu_tests {
    use super::*;
    use crate::kernels::gpu_test::device as gpu;
    use crate::kernels::sampling::choose;
    use crate::sampling::NoiseKey;
    use candle_core::Device;

    #[test]
    fn the_kernel_chooses_what_the_host_chooses() -> Result<()> {
        let Some(dev) = gpu() else { return Ok(()) };
        let base = |t: f64| SamplingParams {
            temperature: t,
            ..SamplingParams::greedy(1)
        };
        let settings = [
            SamplingParams {
                top_p: 0.95,
                ..base(0.6)
            },
            SamplingParams {
                top_k: 50,
                ..base(1.0)
            },
            SamplingParams {
                min_p: 0.1,
                ..base(0.7)
            },
            SamplingParams {
                top_k: 5,
                top_p: 0.8,
                ..base(1.3)
            },
            SamplingParams {
                top_p: 0.3,
                min_p: 0.05,
                ..base(2.0)
            },
            base(1.0),
        ];
        for (n, rows) in [(151_936usize, 16usize), (1001, 64)] {
            // Coarse values on half the rows make ties at every cut common; one row is all -inf
            // but a few tokens, one all -inf.
            let raw = Tensor::randn(0f32, 3.0, (rows, n), &dev)?.to_device(&Device::Cpu)?;
            let mut host: Vec<Vec<f32>> = raw.to_vec2()?;
            for (r, row) in host.iter_mut().enumerate() {
                if r % 2 == 1 {
                    row.iter_mut().for_each(|v| *v = (*v * 2.0).round() / 2.0);
                }
            }
            host[3]
                .iter_mut()
                .skip(7)
                .for_each(|v| *v = f32::NEG_INFINITY);
            host[5].iter_mut().for_each(|v| *v = f32::NEG_INFINITY);
            let flat: Vec<f32> = host.iter().flatten().copied().collect();
            let logits = Tensor::from_vec(flat, (rows, n), &dev)?;
            for (s, params) in settings.iter().enumerate() {
                for step in 0..4usize {
                    let keys: Vec<NoiseKey> = (0..rows)
                        .map(|r| NoiseKey::new(s as u64, &format!("row{r}"), r as u32))
                        .collect();
                    let draws: Vec<u64> = keys.iter().map(|k| k.draw(100 + step)).collect();
                    let got: Vec<u32> = sample_rows(&logits, &draws, params, Fusion::On)?
                        .expect("the kernel applies")
                        .to_vec1()?;
                    for (r, row) in host.iter().enumerate() {
                        let want = choose(row, params, keys[r], 100 + step);
                        assert_eq!(got[r], want, "n {n}, row {r}, {params:?}, step {step}");
                    }
                }
            }
        }
        Ok(())
    }
}
