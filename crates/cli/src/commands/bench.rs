//! `reprolm bench`: the engine measured on a model, for speed claims and for parity checks against
//! another implementation run on the same machine and the same prompts.
//!
//! `speed` prints prefill and decode tokens/s per policy and batch size; `logits` writes the
//! logits of every position of a prompt and a greedy continuation, which a script compares with a
//! reference (e.g. transformers) in float64. Neither writes a run directory: they measure the
//! engine, not a benchmark task.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use reprolm_engine::kernels::Kernels;
use reprolm_engine::throughput::{self, Throughput, Workload};
use reprolm_engine::{
    device_label, device_name, parse_device, Batching, Generation, KvCache, KvCacheSize,
    LoadOptions, LogitsFor, Model, Request, ResolveOptions, SamplingParams, Scheduler,
};
use reprolm_precision::{ComputeMode, ReductionOrder};
use serde_json::json;

use crate::args::{
    BenchCommand, BenchGemmArgs, BenchInvarianceArgs, BenchLogitsArgs, BenchModelArgs,
    BenchSpeedArgs,
};
use crate::config::{resolve_model, resolve_policy};
use crate::progress::OutputMode;

/// Runs one `bench` subcommand.
pub fn command(cmd: &BenchCommand, mode: OutputMode) -> Result<i32> {
    match cmd {
        BenchCommand::Speed(args) => speed(args, mode),
        BenchCommand::Logits(args) => logits(args, mode),
        BenchCommand::Invariance(args) => invariance(args, mode),
        BenchCommand::Gemm(args) => gemm(args, mode),
    }
}

/// The loaded kernels with deterministic mode (`--deterministic`) on or off.
fn set_mode(model: &mut Model, deterministic: bool) -> Result<()> {
    let mode = if deterministic {
        ComputeMode::Deterministic(ReductionOrder::SEQUENTIAL)
    } else {
        ComputeMode::Fast
    };
    let kernels = Kernels {
        mode,
        ..model.decoder.kernels()
    };
    Ok(model.decoder.set_kernels(kernels)?)
}

fn load(args: &BenchModelArgs, policy: &str) -> Result<(Model, Device)> {
    let device = parse_device(&args.device).context("--device")?;
    let (_, source) = resolve_model(args.model.as_deref()).context("--model")?;
    let policy = resolve_policy(policy).context("--policy")?;
    let opts = LoadOptions {
        device: device.clone(),
        policy,
        resolve: ResolveOptions::from_env(),
        tp_size: args.tp,
        kv_cache: args.kv_cache_memory,
        kernels: args.kernel_flags.kernels(),
    };
    let model = Model::load(&source, &opts).context("--model")?;
    Ok((model, device))
}

/// `count` prompts: the first `count` of the `--prompts` file (cycled if it has fewer), or random ids.
fn prompts(args: &BenchModelArgs, count: usize, vocab_size: usize) -> Result<Vec<Vec<u32>>> {
    let Some(path) = &args.prompts else {
        let w = Workload {
            batch: count,
            prompt_tokens: args.prompt_tokens,
            new_tokens: 2,
        };
        return Ok(throughput::random_prompts(&w, vocab_size, args.seed));
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--prompts {}", path.display()))?;
    let all: Vec<Vec<u32>> = serde_json::from_str(&text).with_context(|| {
        format!(
            "--prompts {}: expected a JSON list of lists of token ids",
            path.display()
        )
    })?;
    if all.is_empty() || all.iter().any(Vec::is_empty) {
        bail!(
            "--prompts {}: needs at least one non-empty prompt",
            path.display()
        );
    }
    if let Some((i, t)) = all.iter().enumerate().find_map(|(i, p)| {
        p.iter()
            .find(|&&t| t as usize >= vocab_size)
            .map(|t| (i, t))
    }) {
        bail!(
            "--prompts {}: prompt {i} has token id {t} >= vocab size {vocab_size}",
            path.display()
        );
    }
    Ok(all.iter().cycle().take(count).cloned().collect())
}

fn speed(args: &BenchSpeedArgs, mode: OutputMode) -> Result<i32> {
    if args.batch_sizes.is_empty() || args.batch_sizes.contains(&0) {
        bail!("--batch-sizes: every batch size must be at least 1");
    }
    if args.new_tokens < 2 {
        bail!("--new-tokens must be at least 2 (one from the prefill, one decoded)");
    }
    let mut results = Vec::new();
    for policy in &args.policies {
        let (mut model, device) = load(&args.model, policy)?;
        set_mode(&mut model, args.deterministic)?;
        let decoder = &model.decoder;
        let weight_bytes: usize = decoder.weight_bytes().values().sum();
        if mode == OutputMode::Human {
            println!(
                "{policy} on {} ({}): weights {:.2} GB",
                device_label(&device),
                device_name(&device),
                weight_bytes as f64 / 1e9
            );
        }
        for &batch in &args.batch_sizes {
            let p = prompts(&args.model, batch, decoder.spec().vocab_size)?;
            let (temperature, top_p) = (args.temperature, args.top_p);
            for _ in 0..args.warmup {
                throughput::measure_sampled(
                    decoder,
                    &p,
                    args.new_tokens.min(8),
                    temperature,
                    top_p,
                )?;
            }
            let (t, _) =
                throughput::measure_sampled(decoder, &p, args.new_tokens, temperature, top_p)?;
            let mut row = speed_row(policy, &device, weight_bytes, &t);
            row["deterministic"] = args.deterministic.into();
            row["temperature"] = temperature.into();
            row["top_p"] = top_p.into();
            // The kernels that ran (CUDA graphs among them) and how many decode steps are
            // captured so far, so that two result files say what they compare.
            row["kernels"] = json!(decoder.kernels().settings(&device));
            row["graphs_captured"] = json!(decoder.graphs_captured());
            match mode {
                OutputMode::Json => crate::progress::event("bench_speed", row.clone()),
                OutputMode::Human => println!(
                    "  batch {batch:>3}: prefill {:>10.1} tok/s ({:.3} s), decode {:>9.1} tok/s ({:.2} ms/step)",
                    t.prefill_tokens_per_second(),
                    t.prefill_seconds,
                    t.decode_tokens_per_second(),
                    t.decode_step_ms()
                ),
                OutputMode::Quiet => {}
            }
            results.push(row);
        }
    }
    write_results(args.json.as_deref(), &results)?;
    Ok(0)
}

/// `bench gemm`: per config, policy and projection shape, the GEMM layer's time per call against
/// candle's default matmul at each row count, row-0 invariance of both, and f32 accuracy.
fn gemm(args: &BenchGemmArgs, mode: OutputMode) -> Result<i32> {
    use reprolm_engine::kernels::gemm::bench;
    use reprolm_engine::models::spec_from_config_file;
    if args.rows.is_empty() || args.rows.contains(&0) {
        bail!("--rows: every row count must be at least 1");
    }
    let device = parse_device(&args.device).context("--device")?;
    let configs: Vec<std::path::PathBuf> = if args.configs.is_empty() {
        let (_, source) = resolve_model(None)?;
        match source {
            reprolm_engine::ModelSource::Local(dir) => vec![dir.join("config.json")],
            other => bail!("--config: no default config for {other:?}; name a config.json"),
        }
    } else {
        args.configs.clone()
    };
    let mut rows = args.rows.clone();
    rows.sort_unstable();
    rows.dedup();
    if let Some(out) = &args.tune {
        return tune_gemm(args, &configs, &rows, &device, out, mode);
    }
    let mut results = Vec::new();
    for config in &configs {
        let (_, spec) = spec_from_config_file(config)
            .with_context(|| format!("--config {}", config.display()))?;
        for policy_name in &args.policies {
            let policy = resolve_policy(policy_name).context("--policy")?;
            if mode == OutputMode::Human {
                println!(
                    "{} · {policy_name} on {} ({}); GEMM family {}{}",
                    config.display(),
                    device_label(&device),
                    device_name(&device),
                    args.gemm.family().name(),
                    pin_strategy(),
                );
                println!(
                    "  {:<8} {:>6} {:>6} {:>5} {:>11} {:>11} {:>6} {:>11} {:>11}",
                    "shape",
                    "N",
                    "K",
                    "rows",
                    "layer µs",
                    "default µs",
                    "ratio",
                    "other µs",
                    "in graph µs"
                );
            }
            for shape in bench::shapes(&spec) {
                let (storage, compute) = bench::dtypes(&policy, &shape);
                let r = bench::measure(
                    &shape,
                    storage,
                    compute,
                    &rows,
                    &device,
                    args.min_ms / 1e3,
                    args.gemm.family(),
                )?;
                if mode == OutputMode::Human {
                    for t in &r.timings {
                        println!(
                            "  {:<8} {:>6} {:>6} {:>5} {:>11.1} {:>11.1} {:>5.2}x {:>11} {:>11}",
                            shape.name,
                            shape.n,
                            shape.k,
                            t.rows,
                            t.layer_seconds * 1e6,
                            t.default_seconds * 1e6,
                            t.default_seconds / t.layer_seconds,
                            t.other_seconds
                                .map_or("-".into(), |s| format!("{:.1}", s * 1e6)),
                            t.graph_seconds
                                .map_or("-".into(), |s| format!("{:.1}", s * 1e6)),
                        );
                    }
                    println!(
                        "  {:<8} max |layer - default| / max |default| {:.2e}; row 0 bitwise equal across rows {:?}: layer {}, default {}{}{}",
                        shape.name,
                        r.relative_difference,
                        rows,
                        yes(r.layer_invariant),
                        yes(r.default_invariant),
                        r.other_invariant.map_or(String::new(), |o| format!(", other {}", yes(o))),
                        match (r.layer_error, r.default_error, r.layer_rms_error, r.default_rms_error) {
                            (Some(l), Some(d), Some(lr), Some(dr)) => format!(
                                "; error vs float64, max: layer {l:.3e}, default {d:.3e} ({:.2}x); rms: {lr:.3e}, {dr:.3e} ({:.2}x)",
                                l / d,
                                lr / dr
                            ),
                            _ => String::new(),
                        }
                    );
                    if let Some(p) = &r.pinned {
                        println!("  {:<8} cuBLASLt pinned: {p}", shape.name);
                    }
                }
                let row = json!({
                    "config": config.display().to_string(),
                    "policy": policy_name,
                    "device": device_label(&device),
                    "device_name": device_name(&device),
                    "gemm_family": args.gemm.family().name(),
                    "shape": shape.name, "n": shape.n, "k": shape.k, "bias": shape.bias,
                    "storage": format!("{storage:?}"), "compute": format!("{compute:?}"),
                    "rows": r.timings.iter().map(|t| t.rows).collect::<Vec<_>>(),
                    "layer_seconds": r.timings.iter().map(|t| t.layer_seconds).collect::<Vec<_>>(),
                    "default_seconds": r.timings.iter().map(|t| t.default_seconds).collect::<Vec<_>>(),
                    "other_seconds": r.timings.iter().map(|t| t.other_seconds).collect::<Vec<_>>(),
                    "graph_seconds": r.timings.iter().map(|t| t.graph_seconds).collect::<Vec<_>>(),
                    "layer_invariant": r.layer_invariant,
                    "default_invariant": r.default_invariant,
                    "other_invariant": r.other_invariant,
                    "layer_error": r.layer_error,
                    "default_error": r.default_error,
                    "layer_rms_error": r.layer_rms_error,
                    "default_rms_error": r.default_rms_error,
                    "relative_difference": r.relative_difference,
                    "pinned": r.pinned,
                });
                if mode == OutputMode::Json {
                    crate::progress::event("bench_gemm", row.clone());
                }
                results.push(row);
            }
        }
    }
    write_results(args.json.as_deref(), &results)?;
    Ok(0)
}

/// `bench gemm --tune FILE`: the pin table of the best cuBLASLt candidate per shape and dtype.
#[cfg(feature = "cuda")]
fn tune_gemm(
    args: &BenchGemmArgs,
    configs: &[std::path::PathBuf],
    rows: &[usize],
    device: &Device,
    out: &Path,
    mode: OutputMode,
) -> Result<i32> {
    use reprolm_engine::kernels::gemm::{bench, pins};
    use reprolm_engine::models::spec_from_config_file;
    let mut table: Vec<pins::Pin> = Vec::new();
    for config in configs {
        let (_, spec) = spec_from_config_file(config)
            .with_context(|| format!("--config {}", config.display()))?;
        for policy_name in &args.policies {
            let policy = resolve_policy(policy_name).context("--policy")?;
            for shape in bench::shapes(&spec) {
                let (storage, dtype) = bench::dtypes(&policy, &shape);
                // Only the projections cuBLASLt serves: same storage and compute, 16-bit or f32
                // (LayerCast's bf16 weights run the tensor-core kernel instead).
                if storage != dtype || !matches!(dtype, DType::BF16 | DType::F16 | DType::F32) {
                    continue;
                }
                let done = table.iter().any(|p| {
                    p.n == shape.n
                        && p.k == shape.k
                        && p.bias == shape.bias
                        && p.dtype == reprolm_precision::dtype_name(dtype)
                });
                if done {
                    continue;
                }
                // The LM head runs a few rows at a time (prefill asks for the last position's logits).
                let shape_rows: Vec<usize> = if shape.name == "lm_head" {
                    rows.iter().copied().filter(|&r| r <= 256).collect()
                } else {
                    rows.to_vec()
                };
                let (pin, candidates) =
                    bench::tune(&shape, dtype, &shape_rows, device, args.min_ms / 1e3)?;
                if mode == OutputMode::Human {
                    println!(
                        "{} {} {}x{}{}: {} candidates; rows {:?}",
                        config.display(),
                        pin.dtype,
                        shape.n,
                        shape.k,
                        if shape.bias { " +bias" } else { "" },
                        candidates.len(),
                        shape_rows
                    );
                    for f in bench::families(&candidates) {
                        let times: Vec<String> = f
                            .seconds
                            .iter()
                            .map(|s| format!("{:8.1}", s * 1e6))
                            .collect();
                        println!(
                            "  family split-K {} reduction {} bits {:016x}: {} members, score {:.2}, µs {}",
                            f.splitk,
                            f.reduction,
                            f.digest,
                            f.members.len(),
                            f.score,
                            times.join(" ")
                        );
                    }
                    for c in &candidates {
                        let mark = if c.algo == pin.algo { "*" } else { " " };
                        let times: Vec<String> = c
                            .seconds
                            .iter()
                            .map(|s| format!("{:8.1}", s * 1e6))
                            .collect();
                        println!(
                            "  {mark} {:?} bits {:016x} µs {}",
                            c.algo,
                            c.digest,
                            times.join(" ")
                        );
                    }
                }
                table.push(pin);
            }
        }
    }
    // Keep the file's entries for other GPUs, versions and shapes.
    if let Ok(text) = std::fs::read_to_string(out) {
        let old = pins::parse(&text)
            .with_context(|| format!("--tune {}: not a pin table", out.display()))?;
        for p in old {
            if !table.iter().any(|q| q.key() == p.key()) {
                table.push(p);
            }
        }
    }
    let header = "# The cuBLASLt algorithm pinned per weight shape, GPU type and cuBLASLt version. Candidates\n\
# (from the heuristic at 1 to 4096 rows, every one checked to run 1 to 65536 rows) that cut K\n\
# alike and give the same bits form a family, timed as its fastest member at each row count; the\n\
# family with the smallest sum of time ratios to the fastest candidate wins, and its member\n\
# fastest at decode row counts is pinned (kernels::gemm::bench::best_family_member). Written by\n\
# `reprolm bench gemm --tune FILE` on the GPU it names; a shape, GPU or version missing here gets\n\
# the heuristic's choice at 512 rows (kernels::gemm::cublaslt::Plan::choose).";
    std::fs::write(out, pins::to_toml(header, &table))
        .with_context(|| format!("--tune {}", out.display()))?;
    if mode == OutputMode::Human {
        println!("wrote {} pins to {}", table.len(), out.display());
    }
    Ok(0)
}

#[cfg(not(feature = "cuda"))]
fn tune_gemm(
    _: &BenchGemmArgs,
    _: &[std::path::PathBuf],
    _: &[usize],
    _: &Device,
    _: &Path,
    _: OutputMode,
) -> Result<i32> {
    bail!("--tune times cuBLASLt algorithms: it needs a CUDA build (--features cuda) and --device cuda")
}

/// How cuBLASLt algorithms are pinned, for the header of `bench gemm` (CUDA builds).
fn pin_strategy() -> String {
    #[cfg(feature = "cuda")]
    return format!(
        "; cuBLASLt {}",
        reprolm_engine::kernels::gemm::cublaslt::PinStrategy::from_env()
    );
    #[cfg(not(feature = "cuda"))]
    String::new()
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "NO"
    }
}

fn speed_row(
    policy: &str,
    device: &Device,
    weight_bytes: usize,
    t: &Throughput,
) -> serde_json::Value {
    json!({
        "policy": policy,
        "device": device_label(device),
        "device_name": device_name(device),
        "weight_bytes": weight_bytes,
        "batch": t.workload.batch,
        "prompt_tokens": t.workload.prompt_tokens,
        "new_tokens": t.workload.new_tokens,
        "prefill_seconds": t.prefill_seconds,
        "decode_seconds": t.decode_seconds,
        "prefill_tokens_per_second": t.prefill_tokens_per_second(),
        "decode_tokens_per_second": t.decode_tokens_per_second(),
        "decode_step_ms": t.decode_step_ms(),
    })
}

fn logits(args: &BenchLogitsArgs, mode: OutputMode) -> Result<i32> {
    let (mut model, device) = load(&args.model, &args.policy)?;
    set_mode(&mut model, args.deterministic)?;
    let decoder = &model.decoder;
    let prompt = prompts(&args.model, 1, decoder.spec().vocab_size)?.remove(0);
    std::fs::create_dir_all(&args.out).with_context(|| format!("--out {}", args.out.display()))?;

    let mut cache = decoder.new_cache()?;
    let seq = cache.add_sequence();
    let logits = decoder
        .forward(&[(seq, &prompt[..])], &mut cache, LogitsFor::All)?
        .to_dtype(DType::F32)?
        .to_device(&Device::Cpu)?;
    let logits_path = args.out.join("logits.safetensors");
    candle_core::safetensors::save(
        &HashMap::from([("logits".to_string(), logits)]),
        &logits_path,
    )
    .with_context(|| format!("writing {}", logits_path.display()))?;

    let params = SamplingParams {
        stop_token_ids: Vec::new(),
        ..SamplingParams::greedy(args.greedy_tokens)
    };
    let request = Request {
        prompt: prompt.clone(),
        problem_id: "bench-logits".into(),
        sample_index: 0,
    };
    let g = model.generate(&[request], &params, 1)?.remove(0);
    let top: Vec<Vec<(u32, f32)>> = (0..g.token_ids.len()).map(|i| g.top(i).collect()).collect();
    let summary = json!({
        "policy": args.policy,
        "device": device_label(&device),
        "device_name": device_name(&device),
        "prompt": prompt,
        "greedy_tokens": g.token_ids,
        "greedy_logprobs": g.token_logprobs,
        "greedy_top": top,
    });
    write_json(&args.out.join("greedy.json"), &summary)?;
    if mode != OutputMode::Quiet {
        println!(
            "wrote {} and greedy.json ({} prompt tokens, {} greedy tokens, {})",
            logits_path.display(),
            prompt.len(),
            g.token_ids.len(),
            args.policy
        );
    }
    Ok(0)
}

/// The rows of `bench speed` or `bench invariance` as a JSON list, when `--json` asked for them.
fn write_results(json: Option<&Path>, results: &[serde_json::Value]) -> Result<()> {
    if let Some(path) = json {
        std::fs::write(path, serde_json::to_string_pretty(results)? + "\n")
            .with_context(|| format!("--json {}", path.display()))?;
    }
    Ok(())
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    std::fs::write(path, serde_json::to_string(value)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

/// How one prompt set is put through the engine.
#[derive(Debug, Clone, Copy)]
struct Layout {
    batch: usize,
    batching: Batching,
    reversed: bool,
    prefill_chunk: Option<usize>,
    /// A KV cache too small for the batch's sequences to finish together, so that some are
    /// preempted and recomputed.
    tight_cache: bool,
}

impl Layout {
    fn alone() -> Self {
        Layout {
            batch: 1,
            batching: Batching::Static,
            reversed: false,
            prefill_chunk: None,
            tight_cache: false,
        }
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "batch {}", self.batch)?;
        if self.batching == Batching::Continuous {
            f.write_str(", continuous")?;
        }
        if self.reversed {
            f.write_str(", reversed")?;
        }
        if let Some(c) = self.prefill_chunk {
            write!(f, ", prefill in chunks of {c}")?;
        }
        if self.tight_cache {
            f.write_str(", KV cache too small (preempting)")?;
        }
        Ok(())
    }
}

/// Generations of `requests` laid out as `layout` says, in request order, and how many
/// preemptions the scheduler made.
fn generate_laid_out(
    decoder: &mut reprolm_engine::Decoder,
    requests: &[Request],
    params: &SamplingParams,
    layout: Layout,
) -> Result<(Vec<Generation>, usize)> {
    let roomy = decoder.kv_cache_size();
    if layout.tight_cache {
        // Halfway between what the first batch's prompts and its finished sequences take: the
        // prompts are admitted, and the pool runs out while they grow.
        let first = &requests[..layout.batch.min(requests.len())];
        let prompts: usize = first
            .iter()
            .map(|r| KvCache::blocks_for(r.prompt.len()))
            .sum();
        let finished: Vec<usize> = requests
            .iter()
            .map(|r| KvCache::blocks_for(r.prompt.len() + params.max_tokens))
            .collect();
        let longest = finished.iter().copied().max().unwrap_or(1);
        let at_end: usize = finished.iter().take(layout.batch).sum();
        let blocks = prompts.midpoint(at_end).max(longest + 1);
        decoder.set_kv_cache_size(KvCacheSize::Bytes(
            (blocks * decoder.kv_block_bytes()) as u64,
        ));
    }
    let result = (|| {
        let mut scheduler = Scheduler::new(decoder, params.clone(), layout.batching, layout.batch)?;
        if let Some(tokens) = layout.prefill_chunk {
            scheduler = scheduler.with_prefill_chunk(tokens)?;
        }
        let order: Vec<usize> = if layout.reversed {
            (0..requests.len()).rev().collect()
        } else {
            (0..requests.len()).collect()
        };
        for i in order {
            scheduler.submit(i, requests[i].clone());
        }
        let mut finished = scheduler.run_to_end()?;
        assert_eq!(
            finished.len(),
            requests.len(),
            "the scheduler returns every request"
        );
        finished.sort_by_key(|(id, _)| *id);
        let out = finished.into_iter().map(|(_, g)| g).collect();
        Ok::<_, reprolm_engine::Error>((out, scheduler.preemptions()))
    })();
    decoder.set_kv_cache_size(roomy);
    Ok(result?)
}

/// How far `got` is from `want`: whether tokens and top-k are bitwise equal, and the largest
/// log-probability difference where the candidates agree.
fn difference(want: &Generation, got: &Generation) -> (bool, f32) {
    let same_ids = want.token_ids == got.token_ids && want.top_ids == got.top_ids;
    let bits_equal = same_ids
        && want
            .top_logprobs
            .iter()
            .zip(&got.top_logprobs)
            .all(|(a, b)| a.to_bits() == b.to_bits());
    let max = want
        .top_logprobs
        .iter()
        .zip(&got.top_logprobs)
        .zip(want.top_ids.iter().zip(&got.top_ids))
        .take_while(|(_, (a, b))| a == b)
        .map(|((a, b), _)| (a - b).abs())
        .fold(0f32, f32::max);
    (bits_equal, max)
}

fn invariance(args: &BenchInvarianceArgs, mode: OutputMode) -> Result<i32> {
    if args.count == 0 || args.new_tokens == 0 || args.model.prompt_tokens < 2 {
        bail!("--count, --new-tokens and --prompt-tokens (at least 2) must be positive");
    }
    if args.batch_sizes.is_empty() || args.batch_sizes.contains(&0) {
        bail!("--batch-sizes: every batch size must be at least 1");
    }
    if args.samples == 0 || (args.samples > 1 && args.temperature <= 0.0) {
        bail!("--samples: at least 1, and more than 1 only with a positive --temperature");
    }
    let params = SamplingParams {
        temperature: args.temperature,
        top_p: args.top_p,
        stop_token_ids: Vec::new(),
        ..SamplingParams::greedy(args.new_tokens)
    };
    params.validate().context("--temperature / --top-p")?;
    let mut results = Vec::new();
    for policy in &args.policies {
        let (mut model, device) = load(&args.model, policy)?;
        // Prompts of different lengths, so a batch holds sequences of different lengths.
        let full = prompts(&args.model, args.count, model.decoder.spec().vocab_size)?;
        let requests: Vec<Request> = full
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                let len = if args.equal_lengths {
                    p.len()
                } else {
                    let min = (p.len() / 2).max(1);
                    min + (i * 7919) % (p.len() - min + 1)
                };
                (0..args.samples as u32).map(move |s| Request {
                    prompt: p[..len].to_vec(),
                    problem_id: format!("invariance-{i}"),
                    sample_index: s,
                })
            })
            .collect();
        let largest = *args.batch_sizes.iter().max().expect("checked non-empty");
        let mut layouts: Vec<Layout> = Vec::new();
        for &batch in &args.batch_sizes {
            for reversed in [false, true] {
                layouts.push(Layout {
                    batch,
                    reversed,
                    ..Layout::alone()
                });
            }
        }
        layouts.push(Layout {
            prefill_chunk: Some(args.prefill_chunk),
            ..Layout::alone()
        });
        layouts.push(Layout {
            batch: largest,
            reversed: true,
            prefill_chunk: Some(args.prefill_chunk),
            ..Layout::alone()
        });
        for tight_cache in [false, true] {
            layouts.push(Layout {
                batch: largest,
                batching: Batching::Continuous,
                tight_cache,
                ..Layout::alone()
            });
        }
        for deterministic in [false, true] {
            set_mode(&mut model, deterministic)?;
            let (reference, _) =
                generate_laid_out(&mut model.decoder, &requests, &params, Layout::alone())?;
            let kernels = if deterministic {
                "deterministic"
            } else {
                "fast"
            };
            for &layout in &layouts {
                let (got, preemptions) =
                    generate_laid_out(&mut model.decoder, &requests, &params, layout)?;
                let diffs: Vec<(bool, f32)> = reference
                    .iter()
                    .zip(&got)
                    .map(|(w, g)| difference(w, g))
                    .collect();
                let identical = diffs.iter().filter(|d| d.0).count();
                let max = diffs.iter().map(|d| d.1).fold(0f32, f32::max);
                let row = json!({
                    "policy": policy, "kernels": kernels, "device": device_label(&device),
                    "device_name": device_name(&device), "layout": layout.to_string(),
                    "sequences": requests.len(), "identical": identical,
                    "max_top_logprob_difference": max, "preemptions": preemptions,
                    "temperature": args.temperature, "top_p": args.top_p,
                });
                match mode {
                    OutputMode::Json => crate::progress::event("bench_invariance", row.clone()),
                    OutputMode::Human => {
                        let preempted = if preemptions > 0 {
                            format!(" ({preemptions} preemptions)")
                        } else {
                            String::new()
                        };
                        println!(
                            "{policy:>9} {kernels:>13} {:<52} {identical:>3}/{} identical to batch 1, max |dlogprob| {max:.3e}{preempted}",
                            layout.to_string(),
                            requests.len()
                        )
                    }
                    OutputMode::Quiet => {}
                }
                results.push(row);
            }
        }
    }
    write_results(args.json.as_deref(), &results)?;
    Ok(0)
}
