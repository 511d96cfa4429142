//! The resolved run configuration: `RunArgs` checked and turned into engine, task and precision
//! values, with every refusal naming the flag at fault. Nothing here reads weights or data, so a bad
//! flag costs nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use reprolm_engine::kernels::gemm::InvariantGemm;
use reprolm_engine::kernels::{Fusion, Graphs, KernelChoice, Kernels, TokenPick};
use reprolm_engine::parallel::{check_parallel_device, TensorParallel, TpMode};
use reprolm_engine::{device_label, parse_device, KvCacheSize, ModelSource};
use reprolm_metrics::run_dir::BatchingMode;
use reprolm_precision::{ComputeMode, PrecisionPolicy, ReductionOrder, PRESETS};
use reprolm_tasks::{DataSource, TaskOptions};

use crate::args::{BatchingArg, RunArgs, TpModeArg};

/// The embedded default model, relative to the working directory or the source checkout.
pub const DEFAULT_MODEL: &str = "models/arith-qwen2-3m";

/// Problems `reprolm run` evaluates on `arith` when neither `--limit` nor `--problems` is given: enough
/// for an accuracy figure, few enough for a couple of minutes on a laptop CPU.
pub const ARITH_DEFAULT_LIMIT: usize = 32;

/// Which problems of the task a run evaluates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every problem.
    All,
    /// The first N, in dataset order.
    First(usize),
    /// These ids, in this order.
    Ids(Vec<String>),
}

/// A run's settings after validation.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The model as the user named it (or the default's path).
    pub model_spec: String,
    /// Where the model comes from.
    pub model: ModelSource,
    /// Task name.
    pub task: String,
    /// Options the task is built and loaded with.
    pub task_options: TaskOptions,
    /// Which problems.
    pub selection: Selection,
    /// Precision policy.
    pub policy: PrecisionPolicy,
    /// Device.
    pub device: Device,
    /// Tensor-parallel ranks (`--tp`); how they reduce is `kernels.tp` (see [`RunConfig::tp`]).
    pub tp_size: usize,
    /// The KV cache's pool size (changes no result, only what fits at once).
    pub kv_cache: KvCacheSize,
    /// Prompt tokens per prefill pass (changes no result, only the activations' peak).
    pub max_prefill_tokens: usize,
    /// Everything besides the policy that decides the numbers (`--kernels`, `--deterministic`,
    /// `--tp-mode`, `--fused-kernels`, `--pick`), resolved here once: passed at load, recorded
    /// whole in the manifest, compared whole by resume and sweeps.
    pub kernels: Kernels,
    /// Prompts per batch or concurrent sequences.
    pub batch_size: u32,
    /// Batching mode.
    pub batching: BatchingMode,
    /// Seed.
    pub seed: u64,
    /// Tokens per response at most.
    pub max_tokens: u32,
    /// Samples per problem.
    pub samples: u32,
    /// Sampling temperature (0 = greedy).
    pub temperature: f64,
    /// Nucleus threshold.
    pub top_p: f64,
    /// Top-k cut.
    pub top_k: u32,
    /// Min-p threshold.
    pub min_p: f64,
    /// Logprobs recorded per token.
    pub logprobs: u32,
    /// Run directory.
    pub out: PathBuf,
}

impl RunConfig {
    /// The tensor-parallel split: `--tp` ranks reducing as the kernels say (`--tp-mode`).
    pub fn tp(&self) -> TensorParallel {
        TensorParallel::new(self.tp_size, self.kernels.tp)
    }

    /// Check `args` and resolve every value that can be resolved without loading anything.
    pub fn resolve(args: &RunArgs) -> Result<RunConfig> {
        if args.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        if args.samples == 0 {
            bail!("--samples must be at least 1");
        }
        if args.samples > 1 && args.temperature == 0.0 {
            bail!(
                "--samples {} with --temperature 0 would repeat one greedy answer; give a temperature above 0 (e.g. 0.7)",
                args.samples
            );
        }
        if args.max_tokens == 0 {
            bail!("--max-tokens must be at least 1");
        }
        if args.logprobs == 0 {
            bail!("--logprobs must be at least 1");
        }
        if !(args.temperature >= 0.0 && args.temperature.is_finite()) {
            bail!("--temperature must be 0 or more, got {}", args.temperature);
        }
        if !(args.top_p > 0.0 && args.top_p <= 1.0) {
            bail!("--top-p must be in (0, 1], got {}", args.top_p);
        }
        if !(0.0..=1.0).contains(&args.min_p) {
            bail!("--min-p must be in [0, 1], got {}", args.min_p);
        }
        let selection = match (&args.limit, &args.problems) {
            (Some(0), _) => bail!("--limit must be at least 1"),
            (Some(n), _) => Selection::First(*n),
            (None, Some(ids)) if ids.is_empty() || ids.iter().any(|i| i.trim().is_empty()) => {
                bail!("--problems: empty problem id")
            }
            (None, Some(ids)) => Selection::Ids(ids.iter().map(|s| s.trim().to_string()).collect()),
            (None, None) if args.task == "arith" && args.data.is_none() => {
                Selection::First(ARITH_DEFAULT_LIMIT)
            }
            (None, None) => Selection::All,
        };
        reprolm_tasks::find(&args.task).context("--task")?;
        let mut task_options = TaskOptions::default().with_seed(args.seed);
        for kv in &args.task_params {
            task_options
                .set_param_str(kv)
                .map_err(|e| anyhow::anyhow!("--task-param: {e}"))?;
        }
        if let Some(d) = &args.data {
            let source = DataSource::parse(d).map_err(|e| anyhow::anyhow!("--data: {e}"))?;
            if let DataSource::Path(p) = &source {
                if !p.exists() {
                    bail!("--data: no such file or directory {}", p.display());
                }
            }
            task_options = task_options.with_data(source);
        }
        // Building the task checks its settings (a typo in a key is refused here, before any loading).
        reprolm_tasks::make_task(&args.task, &task_options).context("--task-param")?;
        let policy = resolve_policy(&args.policy).context("--policy")?;
        let device = parse_device(&args.device).context("--device")?;
        if args.tp == 0 {
            bail!("--tp must be at least 1");
        }
        let tp_mode = match args.tp_mode {
            TpModeArg::Standard => TpMode::Standard,
            TpModeArg::Invariant => TpMode::Invariant,
        };
        check_parallel_device(&TensorParallel::new(args.tp as usize, tp_mode), &device)
            .context("--tp")?;
        if std::env::var("REPROLM_GEMM").as_deref() == Ok("candle") {
            bail!("REPROLM_GEMM=candle is now `--kernels heuristic`: unset REPROLM_GEMM and pass that");
        }
        for (var, flag) in [
            ("REPROLM_GEMM", "--gemm cublaslt|mma"),
            ("REPROLM_FUSED_KERNELS", "--fused-kernels on|off"),
            ("REPROLM_HOST_PICK", "--pick device|host"),
        ] {
            if std::env::var_os(var).is_some() {
                bail!("{var} is now `{flag}`, recorded with the run: unset {var} and pass that");
            }
        }
        // Other ways of pinning cuBLASLt algorithms, and pin tables tuned by a user, are for the
        // bench commands to compare; a run's algorithms come from the shipped pin table, so its
        // numbers are those the manifest's version names.
        for var in [
            "REPROLM_GEMM_PIN",
            "REPROLM_GEMM_SPLITK",
            "REPROLM_GEMM_PINS",
        ] {
            if std::env::var_os(var).is_some() {
                bail!(
                    "{var} changes which cuBLASLt algorithms are pinned and applies to the \
                     `reprolm bench` commands only; unset it for a run"
                );
            }
        }
        let mode = if args.deterministic {
            ComputeMode::Deterministic(ReductionOrder::SEQUENTIAL)
        } else {
            ComputeMode::Fast
        };
        let flags = args.kernel_flags.kernels();
        if flags.choice == KernelChoice::Portable && flags.fusion == Fusion::Off {
            bail!(
                "--kernels portable runs its own RMSNorm, RoPE and SwiGLU kernels (the CPU's \
                 order); --fused-kernels off does not apply to it"
            );
        }
        let kernels = Kernels {
            // Deterministic mode runs the invariant kernels where --kernels asks for the
            // batch-dependent ones (the portable tier is deterministic already); the manifest
            // records what ran.
            choice: if args.deterministic && flags.choice == KernelChoice::Heuristic {
                KernelChoice::Invariant
            } else {
                flags.choice
            },
            mode,
            tp: tp_mode,
            ..flags
        };
        let (model_spec, model) = resolve_model(args.model.as_deref()).context("--model")?;
        let batching = match args.batching {
            BatchingArg::Static => BatchingMode::Static,
            BatchingArg::Continuous => BatchingMode::Continuous,
        };
        let mut cfg = RunConfig {
            model_spec,
            model,
            task: args.task.clone(),
            task_options,
            selection,
            policy,
            device,
            tp_size: args.tp as usize,
            kv_cache: args.kv_cache_memory,
            max_prefill_tokens: args.max_prefill_tokens,
            kernels,
            batch_size: args.batch_size,
            batching,
            seed: args.seed,
            max_tokens: args.max_tokens,
            samples: args.samples,
            temperature: args.temperature,
            top_p: args.top_p,
            top_k: args.top_k,
            min_p: args.min_p,
            logprobs: args.logprobs,
            out: PathBuf::new(),
        };
        cfg.out = match &args.out {
            Some(o) => o.clone(),
            None => Path::new("runs").join(cfg.run_name()),
        };
        Ok(cfg)
    }

    /// The stable directory name of this configuration: `<model>-<task>-<policy>-bs<B>`, then
    /// `-continuous`, `-det`, `-heuristic`, `-nofuse`, `-hostpick`, `-mma`, `-nographs`, `-<device>`,
    /// `-tp<N>`, `-tpinv`, `-seed<S>`, `-n<K>`, `-t<T>` where those differ from the defaults (and
    /// change what runs: `-nographs` only on CUDA with the batch-invariant kernels). It
    /// depends only on the values, so a sweep names a run the same however its axes are listed.
    pub fn run_name(&self) -> String {
        let mut name = format!(
            "{}-{}-{}-bs{}",
            model_name(&self.model),
            self.task,
            self.policy.name,
            self.batch_size
        );
        if self.batching == BatchingMode::Continuous {
            name.push_str("-continuous");
        }
        if self.kernels.mode.is_deterministic() {
            name.push_str("-det");
        }
        match self.kernels.choice {
            KernelChoice::Heuristic => name.push_str("-heuristic"),
            KernelChoice::Portable => name.push_str("-portable"),
            KernelChoice::Invariant => {}
        }
        if self.kernels.fusion == Fusion::Off {
            name.push_str("-nofuse");
        }
        if self.kernels.pick == TokenPick::Host {
            name.push_str("-hostpick");
        }
        if self.kernels.gemm == InvariantGemm::Mma {
            name.push_str("-mma");
        }
        // Only where graphs would run: elsewhere `off` is what runs anyway, and one configuration
        // keeps one name.
        let graphs_would_run = Kernels {
            graphs: Graphs::On,
            ..self.kernels
        }
        .graphs_on(&self.device)
            == Graphs::On;
        if self.kernels.graphs == Graphs::Off && graphs_would_run {
            name.push_str("-nographs");
        }
        if !self.device.is_cpu() {
            name.push('-');
            name.push_str(&device_label(&self.device).replace(':', ""));
        }
        if self.tp_size > 1 {
            name.push_str(&format!("-tp{}", self.tp_size));
        }
        if self.kernels.tp == TpMode::Invariant {
            name.push_str("-tpinv");
        }
        if self.seed != 42 {
            name.push_str(&format!("-seed{}", self.seed));
        }
        if self.samples > 1 {
            name.push_str(&format!("-n{}", self.samples));
        }
        if self.temperature != 0.0 {
            name.push_str(&format!("-t{}", self.temperature));
        }
        sanitize(&name)
    }

    /// The task settings as recorded in the manifest, so `reprolm score` can load the same problems.
    pub fn task_record(&self) -> serde_json::Value {
        serde_json::json!({
            "params": self.task_options.params,
            "data": self.task_options.data.as_ref().map(|d| d.to_string()),
            "seed": self.task_options.seed,
        })
    }
}

/// Short name of a model for directory names: the directory's or repository's last component.
pub fn model_name(source: &ModelSource) -> String {
    match source {
        ModelSource::Local(p) => p
            .canonicalize()
            .unwrap_or_else(|_| p.clone())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into()),
        ModelSource::Hub { repo, .. } => repo.rsplit('/').next().unwrap_or(repo).to_string(),
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A preset name or a policy file (`*.toml`).
pub fn resolve_policy(name: &str) -> Result<PrecisionPolicy> {
    PrecisionPolicy::resolve(name).map_err(|e| match e {
        reprolm_precision::Error::NotAPolicy { .. } => anyhow::anyhow!(
            "unknown precision policy `{name}`; available: {} (also {}), or a policy file ending in .toml",
            PRESETS.join(", "),
            reprolm_precision::PRESET_ALIASES
                .iter()
                .map(|(a, p)| format!("{a} = {p}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => anyhow::Error::new(other),
    })
}

/// The model the user named, or the embedded default.
pub fn resolve_model(spec: Option<&str>) -> Result<(String, ModelSource)> {
    let spec = match spec {
        Some(s) => s.to_string(),
        None => match default_model_dir() {
            Some(p) => p.display().to_string(),
            None => bail!(
                "the embedded default model {DEFAULT_MODEL} is not here (looked in the working directory and in {}); \
                 pass --model DIR or a Hub id such as deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B{}",
                checkout_root().display(),
                available_models_hint()
            ),
        },
    };
    let source = match ModelSource::parse(&spec) {
        Ok(s) => s,
        Err(e) => bail!("{e}{}", available_models_hint()),
    };
    if let ModelSource::Local(dir) = &source {
        if !dir.join("config.json").exists() {
            bail!(
                "{} is not a model directory (no config.json){}",
                dir.display(),
                available_models_hint()
            );
        }
    }
    Ok((spec, source))
}

/// The workspace this binary was built from; the default model lives under it.
fn checkout_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn default_model_dir() -> Option<PathBuf> {
    [
        PathBuf::from(DEFAULT_MODEL),
        checkout_root().join(DEFAULT_MODEL),
    ]
    .into_iter()
    .find(|p| p.join("config.json").exists())
}

/// Model directories found under ./models and the checkout's models/.
pub fn local_models() -> Vec<String> {
    let mut found = BTreeMap::new();
    for root in [PathBuf::from("models"), checkout_root().join("models")] {
        let Ok(entries) = std::fs::read_dir(&root) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.join("config.json").exists() {
                let shown = if root.is_relative() && root == Path::new("models") {
                    p.display().to_string()
                } else {
                    p.canonicalize().unwrap_or(p.clone()).display().to_string()
                };
                found.entry(e.file_name()).or_insert(shown);
            }
        }
    }
    found.into_values().collect()
}

fn available_models_hint() -> String {
    let local = local_models();
    if local.is_empty() {
        "; no local model directories found under models/; a Hub id has the form owner/name[@revision]".into()
    } else {
        format!(
            "; available local models: {}; or a Hub id owner/name[@revision]",
            local.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> RunArgs {
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../engine/tests/fixtures/models/qwen2"
        );
        let mut argv = vec!["reprolm", "run", "--model", fixture];
        argv.extend_from_slice(extra);
        match crate::args::Cli::parse_from(argv).command {
            crate::args::Command::Run(a) => *a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn default_out_dir_names_the_configuration() {
        let c = RunConfig::resolve(&args(&["--policy", "bf16", "--batch-size", "4"])).unwrap();
        assert_eq!(c.out, Path::new("runs/qwen2-arith-bf16-bs4"));
        let c = RunConfig::resolve(&args(&["--batching", "continuous", "--seed", "7"])).unwrap();
        assert_eq!(c.run_name(), "qwen2-arith-fp32-bs8-continuous-seed7");
        let c = RunConfig::resolve(&args(&["--deterministic"])).unwrap();
        assert_eq!(c.run_name(), "qwen2-arith-fp32-bs8-det");
        assert!(c.kernels.deterministic());
        let c = RunConfig::resolve(&args(&["--deterministic", "--kernels", "heuristic"])).unwrap();
        assert_eq!(
            c.kernels.choice,
            KernelChoice::Invariant,
            "deterministic mode overrides --kernels"
        );
        assert_eq!(c.run_name(), "qwen2-arith-fp32-bs8-det");
        assert_eq!(c.selection, Selection::First(ARITH_DEFAULT_LIMIT));
        let c = RunConfig::resolve(&args(&["--tp", "2", "--tp-mode", "invariant"])).unwrap();
        assert_eq!(c.tp(), TensorParallel::new(2, TpMode::Invariant));
        assert!(
            c.kernels.deterministic(),
            "the TP-invariant reduction is deterministic"
        );
        assert_eq!(c.run_name(), "qwen2-arith-fp32-bs8-tp2-tpinv");
        let c = RunConfig::resolve(&args(&["--fused-kernels", "off", "--pick", "host"])).unwrap();
        assert_eq!(
            (c.kernels.fusion, c.kernels.pick),
            (Fusion::Off, TokenPick::Host)
        );
        assert_eq!(c.run_name(), "qwen2-arith-fp32-bs8-nofuse-hostpick");
        let c = RunConfig::resolve(&args(&["--deterministic", "--kernels", "portable"])).unwrap();
        assert_eq!(
            (c.kernels.choice, c.run_name().as_str()),
            (KernelChoice::Portable, "qwen2-arith-fp32-bs8-det-portable"),
            "deterministic mode keeps the portable tier"
        );
        let err = RunConfig::resolve(&args(&["--kernels", "portable", "--fused-kernels", "off"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--fused-kernels off does not apply"), "{err}");
        let c = RunConfig::resolve(&args(&["--gemm", "mma"])).unwrap();
        assert_eq!(c.kernels.gemm, InvariantGemm::Mma);
        assert_eq!(c.run_name(), "qwen2-arith-fp32-bs8-mma");
        // No CUDA graphs run on the CPU, so turning them off names no other run.
        let c = RunConfig::resolve(&args(&["--cuda-graphs", "off"])).unwrap();
        assert_eq!(c.kernels.graphs, Graphs::Off);
        assert_eq!(c.run_name(), "qwen2-arith-fp32-bs8");
    }

    #[test]
    fn without_model_the_embedded_one_is_used() {
        let a = match crate::args::Cli::parse_from(["reprolm", "run"]).command {
            crate::args::Command::Run(a) => *a,
            _ => unreachable!(),
        };
        match RunConfig::resolve(&a) {
            Ok(c) => {
                assert!(c.model_spec.ends_with(DEFAULT_MODEL), "{}", c.model_spec);
                assert_eq!(c.out, Path::new("runs/arith-qwen2-3m-arith-fp32-bs8"));
            }
            // A checkout without the model directory (e.g. a crates.io build).
            Err(e) => assert!(
                format!("{e:#}").contains("the embedded default model"),
                "{e:#}"
            ),
        }
    }

    #[test]
    fn refusals_name_the_flag() {
        let err = |a: &[&str]| format!("{:#}", RunConfig::resolve(&args(a)).unwrap_err());
        assert!(err(&["--policy", "fp8"])
            .starts_with("--policy: unknown precision policy `fp8`; available: bf16"));
        assert!(err(&["--batch-size", "0"]).contains("--batch-size must be at least 1"));
        assert!(err(&["--samples", "4"]).contains("--temperature 0"));
        assert!(err(&["--device", "tpu"]).starts_with("--device: "));
        assert!(err(&["--tp", "0"]).contains("--tp must be at least 1"));
        assert!(err(&["--task-param", "n"]).contains("--task-param: expected KEY=VALUE"));
    }
}
