//! Cost of deterministic mode on the CPU: the batch-invariant kernels against candle's, on the
//! same inputs in the same run.
//!
//!     cargo bench -p reprolm-engine --bench deterministic [-- --quick]
//!
//! Part 1 times `x · wᵀ` alone (candle's GEMM, as the fast mode runs it, against
//! `deterministic::linear`) at a 0.5B model's widths. Part 2 times prefill and decode of the
//! embedded model (3M parameters) and a random-init 28M Qwen2 at batch 1, 8 and 32, in both
//! modes, and prints deterministic/fast time ratios (lower is better; 1.00x = free) and how many
//! rows generated the same tokens in both modes.

use candle_core::{DType, Device, Tensor};
use reprolm_precision::{deterministic, ComputeMode, PrecisionPolicy, ReductionOrder};
use std::path::{Path, PathBuf};
use std::time::Instant;

mod common;
use common::{load_decoder, median};

const DET: ComputeMode = ComputeMode::Deterministic(ReductionOrder::SEQUENTIAL);

/// Median seconds of `f` over `reps` runs after one warm-up.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn matmuls(quick: bool) {
    println!("\nmatmul x[M,K] · w[N,K]ᵀ  cpu  (median of 5; GFLOP/s = 2·M·N·K / time)");
    let dev = Device::Cpu;
    let shapes: &[(usize, usize)] = if quick {
        &[(896, 896)]
    } else {
        &[(896, 896), (896, 4864), (4864, 896)]
    };
    let ms: &[usize] = if quick { &[1, 32] } else { &[1, 8, 32, 256] };
    for &(k, n) in shapes {
        for dtype in [DType::F32, DType::BF16] {
            let w = Tensor::randn(0f32, 1.0, (n, k), &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            for &m in ms {
                let x = Tensor::randn(0f32, 1.0, (m, k), &dev)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let fast = time(5, || {
                    reprolm_precision::matmul(&x, &w.t().unwrap(), dtype).unwrap();
                });
                let det = time(5, || {
                    deterministic::linear(&x, &w, None, dtype, ReductionOrder::SEQUENTIAL).unwrap();
                });
                let flop = 2.0 * (m * n * k) as f64;
                println!(
                    "  {dtype:?} K {k:4} N {n:4} M {m:3}: candle {:7.2} GFLOP/s  deterministic {:7.2} GFLOP/s  deterministic/candle {:5.2}x time (lower is better)",
                    flop / fast / 1e9,
                    flop / det / 1e9,
                    det / fast
                );
            }
        }
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("deterministic-mode benchmark: cpu, {threads} threads");
    matmuls(quick);

    let tmp = tempfile::tempdir().unwrap();
    let random_dir = tmp.path().join("random-qwen2");
    std::fs::create_dir_all(&random_dir).unwrap();
    common::write_random_qwen2(&random_dir).unwrap();
    let embedded: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/arith-qwen2-3m");
    let models = [("arith-qwen2-3m", embedded), ("random-qwen2", random_dir)];
    let (prompt_len, new_tokens, reps) = if quick { (32, 8, 1) } else { (64, 32, 3) };
    let batches: &[usize] = if quick { &[1, 8] } else { &[1, 8, 32] };
    let policies = if quick {
        vec!["fp32"]
    } else {
        vec!["fp32", "bf16"]
    };
    println!("\ngeneration: prompt {prompt_len} tokens, {new_tokens} decode steps, median of {reps} after one warm-up");
    for (name, dir) in &models {
        for policy in &policies {
            let policy_ = PrecisionPolicy::preset(policy).unwrap();
            let mut dec = load_decoder(dir, &policy_, Default::default());
            let params = dec.spec().parameter_count();
            for &batch in batches {
                let mut run = |mode: ComputeMode| {
                    dec.set_kernels(reprolm_engine::kernels::Kernels {
                        mode,
                        ..dec.kernels()
                    })
                    .unwrap();
                    common::run(&dec, batch, prompt_len, new_tokens);
                    let runs: Vec<_> = (0..reps)
                        .map(|_| common::run(&dec, batch, prompt_len, new_tokens))
                        .collect();
                    let tokens = runs[0].2.clone();
                    (
                        median(runs.iter().map(|r| r.0).collect()),
                        median(runs.iter().map(|r| r.1).collect()),
                        tokens,
                    )
                };
                let fast = run(ComputeMode::Fast);
                let det = run(DET);
                let same = fast.2.iter().zip(&det.2).filter(|(a, b)| a == b).count();
                let (pt, dt) = ((batch * prompt_len) as f64, (batch * new_tokens) as f64);
                println!(
                    "{name} ({:.1}M params)  {policy}  cpu  batch {batch}",
                    params as f64 / 1e6
                );
                println!(
                    "  fast           prefill {:9.0} tok/s  decode {:8.1} tok/s",
                    pt / fast.0,
                    dt / fast.1
                );
                println!(
                    "  deterministic  prefill {:9.0} tok/s  decode {:8.1} tok/s",
                    pt / det.0,
                    dt / det.1
                );
                println!(
                    "  deterministic/fast: prefill {:.2}x time, decode {:.2}x time (lower is better); same tokens {same}/{batch}",
                    det.0 / fast.0,
                    det.1 / fast.1
                );
            }
        }
    }
}
