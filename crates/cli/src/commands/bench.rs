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
use reprolm_engine::throughput::{self, Throughput, Workload};
use reprolm_engine::{
    device_label, device_name, parse_device, LoadOptions, LogitsFor, Model, Request,
    ResolveOptions, SamplingParams,
};
use serde_json::json;

use crate::args::{BenchCommand, BenchLogitsArgs, BenchModelArgs, BenchSpeedArgs};
use crate::config::{resolve_model, resolve_policy};
use crate::progress::OutputMode;

/// Runs one `bench` subcommand.
pub fn command(cmd: &BenchCommand, mode: OutputMode) -> Result<i32> {
    match cmd {
        BenchCommand::Speed(args) => speed(args, mode),
        BenchCommand::Logits(args) => logits(args, mode),
    }
}

fn load(args: &BenchModelArgs, policy: &str) -> Result<(Model, Device)> {
    let device = parse_device(&args.device).context("--device")?;
    let (_, source) = resolve_model(args.model.as_deref()).context("--model")?;
    let policy = resolve_policy(policy).context("--policy")?;
    let opts = LoadOptions {
        device: device.clone(),
        policy,
        resolve: ResolveOptions::from_env(),
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
    if let Some((i, t)) = all
        .iter()
        .enumerate()
        .find_map(|(i, p)| p.iter().find(|&&t| t as usize >= vocab_size).map(|t| (i, t)))
    {
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
        let (model, device) = load(&args.model, policy)?;
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
            for _ in 0..args.warmup {
                throughput::measure(decoder, &p, args.new_tokens.min(8))?;
            }
            let t = throughput::measure(decoder, &p, args.new_tokens)?;
            let row = speed_row(policy, &device, weight_bytes, &t);
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
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)? + "\n")
            .with_context(|| format!("--json {}", path.display()))?;
    }
    Ok(0)
}

fn speed_row(policy: &str, device: &Device, weight_bytes: usize, t: &Throughput) -> serde_json::Value {
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
    let (model, device) = load(&args.model, &args.policy)?;
    let decoder = &model.decoder;
    let prompt = prompts(&args.model, 1, decoder.spec().vocab_size)?.remove(0);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("--out {}", args.out.display()))?;

    let mut cache = decoder.new_cache(vec![0]);
    let logits = decoder
        .forward(std::slice::from_ref(&prompt), &mut cache, LogitsFor::All)?
        .squeeze(0)?
        .to_dtype(DType::F32)?
        .to_device(&Device::Cpu)?;
    let logits_path = args.out.join("logits.safetensors");
    candle_core::safetensors::save(&HashMap::from([("logits".to_string(), logits)]), &logits_path)
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

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    std::fs::write(path, serde_json::to_string(value)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}
