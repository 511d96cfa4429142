//! `reprolm memory`: bytes of weights and KV cache under each precision policy, from config.json
//! alone, so the question "does LayerCast fit on this GPU?" costs no download of the weights.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use reprolm_engine::kv::{BLOCK_SIZE, CUDA_DEFAULT_FRACTION};
use reprolm_engine::{spec_from_config_file, ModelSource, ResolveOptions};
use reprolm_precision::{format_bytes, PrecisionPolicy, PRESETS};
use serde_json::json;

use crate::args::MemoryArgs;
use crate::config::{resolve_model, resolve_policy};
use crate::progress::OutputMode;

/// Print one estimate per policy, then the totals side by side. A flag naming no model or policy,
/// or out of range, is a usage error (status 2), as the same flags of `run` are.
pub fn command(args: &MemoryArgs, mode: OutputMode) -> Result<i32> {
    // The chain without a cause its message already ends with (`{:#}` would repeat it).
    let as_usage = |e: anyhow::Error| crate::usage(crate::error_chain(&e));
    let config = config_path(args.model.as_deref()).map_err(as_usage)?;
    let (_, spec) = spec_from_config_file(&config)
        .with_context(|| format!("--model: reading {}", config.display()))?;
    let shape = spec.shape();
    if args.batch_size == 0 {
        return Err(crate::usage("--batch-size must be at least 1"));
    }
    let context = args.context.unwrap_or(spec.max_position_embeddings);
    // The cache holds whole blocks: a sequence of `context` tokens takes this many slots.
    let slots = context.next_multiple_of(BLOCK_SIZE);
    let names: Vec<String> = if args.policies.is_empty() {
        PRESETS.iter().map(|s| s.to_string()).collect()
    } else {
        args.policies.clone()
    };
    let policies: Vec<PrecisionPolicy> = names
        .iter()
        .map(|n| resolve_policy(n).context("--policy"))
        .collect::<Result<_>>()
        .map_err(as_usage)?;
    let estimates: Vec<_> = policies
        .iter()
        .map(|p| shape.memory(p, args.batch_size, slots, args.max_prefill_tokens))
        .collect();
    // Sequences of this context the default pool holds on a GPU of `args.gpu_memory` bytes (85%
    // of what the weights leave; the rest holds the prefill activations and the CUDA context).
    let fit = |e: &reprolm_precision::MemoryEstimate| -> Option<u64> {
        let gpu = args.gpu_memory?;
        let free = gpu.saturating_sub(e.weights.total_bytes()) as f64;
        let per_seq = e.kv_cache.bytes_per_token * slots as u64;
        Some((free * CUDA_DEFAULT_FRACTION) as u64 / per_seq.max(1))
    };
    if mode == OutputMode::Json {
        for e in &estimates {
            crate::progress::event(
                "memory",
                json!({
                    "policy": e.policy, "weights_bytes": e.weights.total_bytes(),
                    "kv_cache_bytes": e.kv_cache.bytes, "activation_bytes": e.activations.bytes,
                    "max_prefill_tokens": args.max_prefill_tokens, "total_bytes": e.total_bytes(),
                    "batch_size": args.batch_size, "context": context,
                    "kv_cache_slots_per_sequence": slots,
                    "gpu_memory_bytes": args.gpu_memory, "sequences_that_fit": fit(e),
                }),
            );
        }
        return Ok(0);
    }
    println!(
        "{}: {} parameters; KV cache for {} x {context} tokens (whole blocks of {BLOCK_SIZE}: {slots} \
         slots each; run with --kv-cache-memory of at least the kv_cache column); activations of \
         prefill passes of {} tokens\n",
        config.display(),
        shape.parameter_count(),
        args.batch_size,
        args.max_prefill_tokens
    );
    if mode == OutputMode::Human {
        for e in &estimates {
            println!("{e}");
        }
    }
    let base = estimates
        .iter()
        .find(|e| e.policy == "fp32")
        .map(|e| e.weights.total_bytes());
    let fit_title = args
        .gpu_memory
        .map(|g| format!("  sequences on {}", format_bytes(g)))
        .unwrap_or_default();
    println!(
        "{:<12} {:>28} {:>28} {:>28} {:>28}  weights vs fp32{fit_title}",
        "policy", "weights", "kv_cache", "activations", "total"
    );
    for e in &estimates {
        let ratio = base
            .map(|b| format!("{:.0}%", 100.0 * e.weights.total_bytes() as f64 / b as f64))
            .unwrap_or_default();
        let fits = fit(e).map(|n| format!("  {n:>15}")).unwrap_or_default();
        println!(
            "{:<12} {:>28} {:>28} {:>28} {:>28}  {ratio:>15}{fits}",
            e.policy,
            format_bytes(e.weights.total_bytes()),
            format_bytes(e.kv_cache.bytes),
            format_bytes(e.activations.bytes),
            format_bytes(e.total_bytes())
        );
    }
    Ok(0)
}

/// config.json of the model: a directory's, a file given directly, or a Hub snapshot's in the local
/// cache (never downloaded here).
fn config_path(spec: Option<&str>) -> Result<PathBuf> {
    if let Some(s) = spec {
        let p = Path::new(s);
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
    }
    let (spec, source) = resolve_model(spec).context("--model")?;
    match source {
        ModelSource::Local(dir) => Ok(dir.join("config.json")),
        ModelSource::Hub { repo, revision } => {
            let cache = ResolveOptions::from_env()
                .hub_cache
                .join(format!("models--{}", repo.replace('/', "--")));
            let commit = std::fs::read_to_string(cache.join("refs").join(&revision))
                .map(|c| c.trim().to_string())
                .unwrap_or(revision);
            let path = cache.join("snapshots").join(commit).join("config.json");
            if !path.exists() {
                bail!(
                    "--model {spec}: not in the local Hub cache ({} is missing); download it first or pass its config.json",
                    path.display()
                );
            }
            Ok(path)
        }
    }
}
