//! What the user typed: the clap definitions, and nothing resolved yet.
//!
//! Values stay as given (strings for the model, policy and device) so that the resolving step in
//! `config.rs` can name the flag at fault, and a sweep file can produce the same `RunArgs` the
//! command line does.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use reprolm_engine::kernels::gemm::InvariantGemm;
use reprolm_engine::kernels::{Fusion, Graphs, KernelChoice, Kernels, TokenPick};
use reprolm_engine::KvCacheSize;

/// Evaluate reasoning LLMs under a chosen numerical precision and measure how far the results move
/// when only the runtime configuration changes.
#[derive(Debug, Parser)]
#[command(name = "reprolm", version, about, max_term_width = 100)]
pub struct Cli {
    /// Print nothing but errors and the final result.
    #[arg(short, long, global = true, conflicts_with = "json_log")]
    pub quiet: bool,
    /// Print progress and results as JSON lines on stdout, for scripts.
    #[arg(long, global = true)]
    pub json_log: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate, score and record one run into a run directory (resumes an unfinished one).
    Run(Box<RunArgs>),
    /// Run the product of the axes in a sweep file, one run directory each, here or as a Slurm job
    /// array (`--executor slurm`); `sweep status ROOT` follows a submitted one.
    Sweep(SweepArgs),
    /// Re-score a run's responses (e.g. after a grader fix) without generating again.
    Score(ScoreArgs),
    /// Compare two runs token by token and show where and why they diverge.
    Inspect(InspectArgs),
    /// Write a run's responses and top-k log-probabilities as JSON Lines or Parquet, for pandas and friends.
    Export(ExportArgs),
    /// Group the runs under a root and write the reproducibility report.
    Report(ReportArgs),
    /// List the registered tasks, or show one with the settings it accepts.
    Tasks(TasksArgs),
    /// List the precision policies, or show one in full.
    Policies(PoliciesArgs),
    /// Convert an output folder of the paper's reference code (vLLM based) into a run directory.
    ImportReference(ImportReferenceArgs),
    /// Memory each precision policy needs for a model's weights and KV cache (reads config.json only).
    Memory(MemoryArgs),
    /// Measure the engine: prefill/decode speed per policy and batch size, or dump logits for a
    /// parity check against another implementation.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// How prompts are put into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchingArg {
    /// Fixed chunks of `--batch-size` prompts in dataset order (the paper's setting).
    Static,
    /// A finished sequence's slot is refilled with the next prompt at once.
    Continuous,
}

/// `--tp-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TpModeArg {
    /// The fast kernels; results move with --tp at the level of float rounding.
    Standard,
    /// Tree-ordered reductions over 8 chunks of K (CPU only, slower): bitwise the same for --tp 1, 2, 4, 8.
    Invariant,
}

/// `reprolm run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Model directory or Hub id `owner/name[@revision]` [default: the embedded models/arith-qwen2-3m].
    #[arg(long)]
    pub model: Option<String>,
    /// Registered task name (see `reprolm tasks`).
    #[arg(long, default_value = "arith")]
    pub task: String,
    /// Data file or directory to read instead of the task's default source.
    #[arg(long)]
    pub data: Option<String>,
    /// Task setting KEY=VALUE (repeatable), e.g. `n=20` for arith or `difficulty=hard`.
    #[arg(long = "task-param", value_name = "KEY=VALUE")]
    pub task_params: Vec<String>,
    /// Precision policy: a preset name (see `reprolm policies`; `bfloat16`, `float16` and
    /// `float32` name the uniform presets) or a policy file `*.toml`. `--dtype` is the paper's
    /// spelling.
    #[arg(long, visible_alias = "dtype", default_value = "fp32")]
    pub policy: String,
    /// Prompts per batch (static) or concurrent sequences (continuous).
    #[arg(long, alias = "batch_size", default_value_t = 8)]
    pub batch_size: u32,
    /// How prompts are put into batches.
    #[arg(long, value_enum, default_value_t = BatchingArg::Static)]
    pub batching: BatchingArg,
    /// Seed of every per-request random stream (and of the task's own randomness).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Generation limit per response, in tokens.
    #[arg(long, alias = "max_tokens", default_value_t = 1024)]
    pub max_tokens: u32,
    /// Samples per problem (pass@k; the paper's `--passk`); more than 1 needs a temperature
    /// above 0.
    #[arg(long, alias = "passk", default_value_t = 1)]
    pub samples: u32,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus sampling threshold.
    #[arg(long, alias = "top_p", default_value_t = 1.0)]
    pub top_p: f64,
    /// Keep only the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    pub top_k: u32,
    /// Min-p threshold (0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f64,
    /// Top candidates recorded per generated token.
    #[arg(long, default_value_t = 5)]
    pub logprobs: u32,
    /// `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Tensor-parallel ranks: the model's heads and MLP split over N ranks (on cpu, N threads; on
    /// CUDA, N GPUs from `--device` on, in a build with `--features nccl`).
    #[arg(long, default_value_t = 1)]
    pub tp: u32,
    /// How tensor-parallel partial sums are computed: `invariant` makes results independent of --tp.
    #[arg(long, value_enum, default_value_t = TpModeArg::Standard)]
    pub tp_mode: TpModeArg,
    /// Batch-invariant kernels: a response does not depend on its batch (size, order, other
    /// prompts) on the same binary and device type (CPU or CUDA).
    #[arg(long)]
    pub deterministic: bool,
    /// The kernel settings besides `--deterministic` and `--tp-mode`.
    #[command(flatten)]
    pub kernel_flags: KernelArgs,
    /// Memory of the KV cache's block pool: `auto` (85% of the GPU memory free after loading;
    /// on the CPU half the available memory, taken only as it is used), a number of GiB, or a
    /// size with a unit (`40GiB`, `800MB`). Does not change any result, only what fits at once.
    #[arg(long, value_name = "SIZE", default_value = "auto", value_parser = KvCacheSize::parse)]
    pub kv_cache_memory: KvCacheSize,
    /// Prompt tokens one prefill pass takes at most, over all the prompts admitted together:
    /// longer prompts are prefilled in pieces. Bounds the prefill's activation memory (`reprolm
    /// memory` counts them); does not change any result.
    #[arg(long, value_name = "TOKENS", default_value_t = reprolm_engine::generate::DEFAULT_PREFILL_TOKENS,
          value_parser = at_least_one())]
    pub max_prefill_tokens: usize,
    /// Evaluate only the first N problems [default for arith: 32, else all].
    #[arg(long, conflicts_with = "problems")]
    pub limit: Option<usize>,
    /// Evaluate only these problem ids (comma-separated), in the order given.
    #[arg(long, value_delimiter = ',')]
    pub problems: Option<Vec<String>>,
    /// Run directory [default: runs/<model>-<task>-<policy>-bs<B>]; the paper's `--exp_name`
    /// (or `--exp-name`) names it too: its scripts write under `outputs/.../{exp_name}/{model}`,
    /// one folder per experiment, which is what a run directory is here.
    #[arg(long, visible_aliases = ["exp_name", "exp-name"])]
    pub out: Option<PathBuf>,
}

/// `reprolm sweep`: run a sweep file (locally or as a Slurm job array), or `sweep status ROOT`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SweepArgs {
    /// Inspect a sweep instead of running one.
    #[command(subcommand)]
    pub action: Option<SweepAction>,
    /// The sweep file (TOML): `root`, a `[base]` table of run settings and an `[axes]` table of lists.
    #[arg(required = true)]
    pub file: Option<PathBuf>,
    /// Root directory of the run directories [default: the file's `root`, else runs/<file stem>].
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// List the runs the sweep would make, with their state, and run nothing; with `--executor
    /// slurm`, print the sbatch script instead of submitting it.
    #[arg(long)]
    pub dry_run: bool,
    /// Run only configuration number INDEX (1-based, the `[INDEX/N]` of the listing); each Slurm
    /// array task runs one this way.
    #[arg(long, value_name = "INDEX")]
    pub only: Option<usize>,
    /// Where the runs execute: one after another in this process, or as a Slurm job array.
    #[arg(long, value_enum, default_value_t = ExecutorArg::Local)]
    pub executor: ExecutorArg,
    /// Settings of the Slurm job array.
    #[command(flatten)]
    pub slurm: SlurmArgs,
}

/// Where a sweep's runs execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExecutorArg {
    /// In this process, one run after another.
    Local,
    /// Submitted with sbatch as a job array, one array task per configuration.
    Slurm,
}

/// `reprolm sweep --executor slurm` settings; each becomes an `#SBATCH` line of the script.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Slurm executor (--executor slurm)")]
pub struct SlurmArgs {
    /// Partition the array tasks run in (`#SBATCH --partition`).
    #[arg(long)]
    pub partition: Option<String>,
    /// GPUs each run gets (`#SBATCH --gres=gpu:N`); 0 asks for none.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub gpus_per_run: u32,
    /// Time limit of each run, in Slurm's syntax, e.g. 04:00:00 (`#SBATCH --time`).
    #[arg(long)]
    pub time: Option<String>,
    /// Account the runs are charged to (`#SBATCH --account`).
    #[arg(long)]
    pub account: Option<String>,
    /// Further sbatch options, e.g. "--qos=high --mem=64G" (repeatable; split at whitespace, one
    /// `#SBATCH` line each).
    #[arg(long, value_name = "OPTIONS", allow_hyphen_values = true)]
    pub extra_sbatch: Vec<String>,
}

/// What `reprolm sweep` can do besides running a sweep file.
#[derive(Debug, Subcommand)]
pub enum SweepAction {
    /// Each configuration's state from the run directories: for a local sweep done, partial or not
    /// started; for a Slurm sweep also running, pending or failed with its log's tail (squeue, sacct).
    Status(SweepStatusArgs),
}

/// `reprolm sweep status`.
#[derive(Debug, Args)]
pub struct SweepStatusArgs {
    /// The sweep root: one `reprolm sweep` ran into locally, or submitted into with `--executor slurm`.
    pub root: PathBuf,
    /// Lines of a failed run's Slurm log shown.
    #[arg(long, default_value_t = 10)]
    pub log_lines: usize,
}

/// `reprolm score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// The run directory.
    pub dir: PathBuf,
}

/// `reprolm export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The run directory.
    pub dir: PathBuf,
    /// Output file, or `-` for stdout (jsonl only) [default: DIR/export.jsonl or DIR/export.parquet].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// File format: both hold one record per sample with the columns problem_id, sample_index,
    /// response, token_ids, finish_reason, correct, score, extracted_answer, prompt_tokens,
    /// question, gold_answer, prompt, top_ids, top_logprobs.
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    pub format: ExportFormat,
}

/// `reprolm export --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// JSON Lines, one object per sample (`pandas.read_json(path, lines=True)`).
    Jsonl,
    /// Parquet, one row per sample, Snappy-compressed; lists as list columns, top_ids and
    /// top_logprobs as lists of lists (`pandas.read_parquet(path)`).
    Parquet,
}

impl ExportFormat {
    /// The file extension, for the default output file.
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Jsonl => "jsonl",
            ExportFormat::Parquet => "parquet",
        }
    }
}

/// `reprolm inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// First run directory.
    pub run_a: PathBuf,
    /// Second run directory.
    pub run_b: PathBuf,
    /// Only this problem.
    #[arg(long)]
    pub problem: Option<String>,
    /// Tokens of shared text shown before the divergence point.
    #[arg(long, default_value_t = 24)]
    pub context: usize,
    /// Tokenizer file used to decode tokens [default: the one in run A's model directory].
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Also list samples whose streams are identical.
    #[arg(long)]
    pub all: bool,
    /// Instead: say whether the runs are bitwise identical (every generated token, every recorded
    /// top-k candidate and log-probability, every scored field), or name the first difference
    /// (file, sample, position); exit status 1 when they differ.
    #[arg(long, conflicts_with_all = ["problem", "all"])]
    pub bitwise: bool,
}

/// `reprolm report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Directory holding run directories (searched recursively).
    pub root: PathBuf,
    /// Where report.md/.csv/.json and the plots go [default: ROOT].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Standard deviation over runs: `sample` (n - 1, the paper's) or `population` (n).
    #[arg(long, value_enum, default_value_t = StdArg::Sample)]
    pub std: StdArg,
    /// Runtime fields that separate groups instead of varying inside them, comma-separated (e.g.
    /// `deterministic`: each kernel mode compared across batch sizes on its own).
    #[arg(long, value_delimiter = ',')]
    pub split_by: Vec<String>,
    /// The y axis of the top-1 probability plot: `auto` (logarithmic when the values span two orders
    /// of magnitude), `linear` or `log`.
    #[arg(long, value_enum, default_value_t = Top1AxisArg::Auto)]
    pub top1_axis: Top1AxisArg,
    /// The policy every other policy's runs are set beside at each runtime configuration (share
    /// of samples whose tokens differ, first difference, answers flipped).
    #[arg(long, default_value = reprolm_metrics::report::DEFAULT_REFERENCE)]
    pub reference: String,
}

/// The y axis of the report's top-1 probability plot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Top1AxisArg {
    /// Logarithmic when the nonzero values span two orders of magnitude or more.
    Auto,
    /// Linear from 0.
    Linear,
    /// Logarithmic.
    Log,
}

/// Which standard deviation a report uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StdArg {
    /// Divide by n - 1.
    Sample,
    /// Divide by n.
    Population,
}

/// `reprolm policies`.
#[derive(Debug, Args)]
pub struct PoliciesArgs {
    /// Show this policy (a preset or a `.toml` file) in full.
    pub name: Option<String>,
    /// Print it as a complete policy file, a starting point for a custom one.
    #[arg(long, requires = "name")]
    pub toml: bool,
}

/// `reprolm memory`.
#[derive(Debug, Args)]
pub struct MemoryArgs {
    /// Model directory, config.json, or Hub id found in the local Hub cache [default: the embedded model].
    #[arg(long)]
    pub model: Option<String>,
    /// Policies to compare (repeatable) [default: every preset].
    #[arg(long = "policy")]
    pub policies: Vec<String>,
    /// Sequences held in the KV cache at once.
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    /// Tokens per sequence (prompt plus response) [default: the model's max_position_embeddings].
    #[arg(long)]
    pub context: Option<usize>,
    /// A GPU's memory (`80GiB`, `141GB`, or a number of GiB): also print how many sequences of
    /// this context the default KV cache (85% of what the weights leave free) holds on it.
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    pub gpu_memory: Option<u64>,
    /// Prompt tokens per prefill pass, as `run --max-prefill-tokens` takes them: the
    /// activations counted are those of one such pass.
    #[arg(long, value_name = "TOKENS", default_value_t = reprolm_engine::generate::DEFAULT_PREFILL_TOKENS,
          value_parser = at_least_one())]
    pub max_prefill_tokens: usize,
}

/// A count that must be 1 or more (`--tp`, `--max-prefill-tokens`).
fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

/// A memory size in bytes (`40GiB`, `800MB`, or a number of GiB).
fn parse_bytes(text: &str) -> Result<u64, String> {
    match KvCacheSize::parse(text)? {
        KvCacheSize::Bytes(b) => Ok(b),
        KvCacheSize::Auto => Err("`auto` is not a size here".into()),
    }
}

/// `reprolm import-reference`.
#[derive(Debug, Clone, Args)]
pub struct ImportReferenceArgs {
    /// The reference code's output folder (qa_pairs_*.jsonl and problem_*_token_ids/logprobs *.pt files).
    pub dir: PathBuf,
    /// The reprolm task the problems come from (its graders re-score the responses).
    #[arg(long)]
    pub task: String,
    /// Data file or directory of the task, in the order the reference code used.
    #[arg(long)]
    pub data: Option<String>,
    /// Task setting KEY=VALUE (repeatable), as for `run`.
    #[arg(long = "task-param", value_name = "KEY=VALUE")]
    pub task_params: Vec<String>,
    /// Model id to record (otherwise taken from the folder layout, if it names one).
    #[arg(long)]
    pub model: Option<String>,
    /// GPU type to record, e.g. A100 (otherwise parsed from the experiment name).
    #[arg(long)]
    pub gpu_type: Option<String>,
    /// GPU count to record (otherwise parsed from the experiment name).
    #[arg(long)]
    pub gpus: Option<u32>,
    /// Pick the run with this batch size when the folder holds several.
    #[arg(long)]
    pub batch_size: Option<u32>,
    /// Pick the run with this dtype when the folder holds several.
    #[arg(long)]
    pub dtype: Option<String>,
    /// The run directory to create (must not exist yet).
    #[arg(long)]
    pub out: PathBuf,
    /// Keep the reference's responses unscored instead of grading them with the task.
    #[arg(long)]
    pub no_score: bool,
}

/// `reprolm bench ...`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Prefill and decode tokens/s of random prompts, for each policy and batch size.
    Speed(BenchSpeedArgs),
    /// Logits of every position of one prompt, and a greedy continuation, written to files.
    Logits(BenchLogitsArgs),
    /// Whether each prompt's greedy tokens and top-k log-probabilities stay bitwise the same across
    /// batch sizes, orders and prefill chunking, in the fast and the deterministic kernels.
    Invariance(BenchInvarianceArgs),
    /// The GEMM layer against candle's default matmul on a model's projection shapes: time per
    /// call at several row counts, whether row 0 keeps its bits across them, and (f32 compute)
    /// the error against a float64 product.
    Gemm(BenchGemmArgs),
}

/// `reprolm tasks`.
#[derive(Debug, Clone, Args)]
pub struct TasksArgs {
    /// A task to show in full: description, version, data source and its `--task-param` settings.
    pub name: Option<String>,
}

/// `reprolm bench gemm`.
#[derive(Debug, Clone, Args)]
pub struct BenchGemmArgs {
    /// A model's config.json (repeatable) whose projection shapes are measured [default: the
    /// embedded model's].
    #[arg(long = "config")]
    pub configs: Vec<PathBuf>,
    /// Policies to measure (repeatable): the projections' storage and compute dtypes, and the LM
    /// head's.
    #[arg(long = "policy", default_value = "bf16")]
    pub policies: Vec<String>,
    /// Row counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,512,4096")]
    pub rows: Vec<usize>,
    /// `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Shortest timed batch of calls, in milliseconds (each figure is the median of 5 batches).
    #[arg(long, default_value_t = 20.0)]
    pub min_ms: f64,
    /// The batch-invariant GEMM measured as the layer for 16-bit projections on CUDA (the other
    /// is timed beside it): `cublaslt` or `mma` (see `reprolm run --help`).
    #[arg(long, value_name = "cublaslt|mma", default_value = "cublaslt", value_parser = InvariantGemm::parse)]
    pub gemm: InvariantGemm,
    /// Instead of measuring the layer: time every cuBLASLt candidate of each shape (16-bit and
    /// f32 operands of the policies) and write the pin table of the best to this file (CUDA builds).
    #[arg(long)]
    pub tune: Option<PathBuf>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// What `reprolm bench` subcommands share: which model, where, and its prompts.
#[derive(Debug, Clone, Args)]
pub struct BenchModelArgs {
    /// Model directory or Hub id [default: the embedded model].
    #[arg(long)]
    pub model: Option<String>,
    /// `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Tokens per prompt (random ids from `--seed`, unless `--prompts` is given).
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: usize,
    /// Seed of the random prompt ids.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A JSON file holding a list of prompts, each a list of token ids, used instead of random ones
    /// (so that a peer implementation can be fed the very same prompts).
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Memory of the KV cache's block pool (see `reprolm run --help`).
    #[arg(long, value_name = "SIZE", default_value = "auto", value_parser = KvCacheSize::parse)]
    pub kv_cache_memory: KvCacheSize,
    /// Tensor-parallel ranks, as `run --tp` takes them (on CUDA, GPUs from `--device` on).
    #[arg(long, default_value_t = 1, value_parser = at_least_one())]
    pub tp: usize,
    /// The kernel settings, as `run` takes them.
    #[command(flatten)]
    pub kernel_flags: KernelArgs,
}

/// The kernel settings `run` and the commands that load a model for `bench` share: with
/// `--deterministic` and `--tp-mode`, everything [`Kernels`] holds.
#[derive(Debug, Clone, Args)]
pub struct KernelArgs {
    /// `invariant`: kernels whose results do not depend on the batch (the default); `heuristic`:
    /// batch-dependent matmuls as other engines run them (cuBLAS choosing per call; on the CPU,
    /// K split into more slices the fewer rows a call has, as GPU split-K heuristics do), to
    /// reproduce the variability the paper measures (`--deterministic` overrides it); `portable`:
    /// every reduction in the CPU's order on every device, so that a GPU run's tokens and
    /// log-probabilities can be recomputed bit for bit on a CPU (slow on a GPU by design; tokens
    /// are chosen on the host, without CUDA graphs; on the CPU the same as `invariant`).
    #[arg(long, value_name = "KERNELS", default_value = "invariant", value_parser = KernelChoice::parse)]
    pub kernels: KernelChoice,
    /// `on`: our fused GPU kernels (RMSNorm, SwiGLU, RoPE, the token choice) replace composed
    /// ops (the default); `off`: the composed ops only, to measure what fusion buys or to rule it
    /// out (RMSNorm sums its squares in another order). The CPU has none; the setting is
    /// recorded all the same, and a resume must repeat it.
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = Fusion::parse)]
    pub fused_kernels: Fusion,
    /// Where a GPU run chooses each token: `device` (the default; a few candidates per row come
    /// back, not the vocabulary) or `host`, as the CPU does (a check of the device's choice).
    #[arg(long, value_name = "device|host", default_value = "device", value_parser = TokenPick::parse)]
    pub pick: TokenPick,
    /// The batch-invariant GEMM of 16-bit projections on CUDA: `cublaslt` (one cuBLASLt algorithm
    /// pinned per weight shape, the default) or `mma` (our tensor-core kernel). Both are batch
    /// invariant but reduce in different orders, so the choice is recorded and a resume must
    /// repeat it. LayerCast and the CPU run one GEMM whatever this says.
    #[arg(long, value_name = "cublaslt|mma", default_value = "cublaslt", value_parser = InvariantGemm::parse)]
    pub gemm: InvariantGemm,
    /// `on`: each CUDA decode step runs as a captured CUDA graph, one launch instead of hundreds
    /// (the default; the same bits as `off`, which the batch-invariant kernels make possible);
    /// `off`: every kernel launched one by one. Graphs need the invariant kernels: with
    /// `--kernels heuristic`, and on the CPU, they are off whatever this says. Recorded, and a
    /// resume must repeat it.
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = Graphs::parse)]
    pub cuda_graphs: Graphs,
}

impl KernelArgs {
    /// The kernels these flags name, in the fast path on one device (`run` then applies
    /// `--deterministic` and `--tp-mode`).
    pub fn kernels(&self) -> Kernels {
        Kernels {
            choice: self.kernels,
            fusion: self.fused_kernels,
            pick: self.pick,
            gemm: self.gemm,
            graphs: self.cuda_graphs,
            ..Kernels::default()
        }
    }
}

/// `reprolm bench speed`.
#[derive(Debug, Clone, Args)]
pub struct BenchSpeedArgs {
    #[command(flatten)]
    pub model: BenchModelArgs,
    /// Policies to measure (repeatable).
    #[arg(long = "policy", default_value = "bf16")]
    pub policies: Vec<String>,
    /// Batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    pub batch_sizes: Vec<usize>,
    /// Tokens generated per sequence (stop tokens ignored).
    #[arg(long, default_value_t = 256)]
    pub new_tokens: usize,
    /// Untimed repetitions before each measurement (kernel compilation, allocator warm-up).
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Use the batch-invariant kernels (see `run --deterministic`).
    #[arg(long)]
    pub deterministic: bool,
    /// Sample at this temperature instead of decoding greedily (the cost of sampling).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus threshold when sampling.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// `reprolm bench logits`.
#[derive(Debug, Clone, Args)]
pub struct BenchLogitsArgs {
    #[command(flatten)]
    pub model: BenchModelArgs,
    /// Precision policy.
    #[arg(long, default_value = "fp32")]
    pub policy: String,
    /// Greedy tokens to generate after the prompt (stop tokens ignored).
    #[arg(long, default_value_t = 64)]
    pub greedy_tokens: usize,
    /// Use the batch-invariant kernels (see `run --deterministic`).
    #[arg(long)]
    pub deterministic: bool,
    /// Output directory: `logits.safetensors` (`(positions, vocab)` f32 of the first prompt) and
    /// `greedy.json` (prompt, generated ids, top-5 candidates).
    #[arg(long)]
    pub out: PathBuf,
}

/// `reprolm bench invariance`.
#[derive(Debug, Clone, Args)]
pub struct BenchInvarianceArgs {
    #[command(flatten)]
    pub model: BenchModelArgs,
    /// Policies to check (repeatable).
    #[arg(long = "policy", default_value = "fp32")]
    pub policies: Vec<String>,
    /// Number of prompts (random ids, lengths spread between half of `--prompt-tokens` and all of it).
    #[arg(long, default_value_t = 32)]
    pub count: usize,
    /// Batch sizes to compare with batch size 1, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "3,8,32")]
    pub batch_sizes: Vec<usize>,
    /// Tokens generated per sequence (stop tokens ignored).
    #[arg(long, default_value_t = 32)]
    pub new_tokens: usize,
    /// Sample at this temperature instead of decoding greedily: each sample's draws are keyed by
    /// (seed, prompt, sample index, position), so they must not move with the layout either.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus threshold when sampling.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Sequences per prompt (distinct sample indices; more than 1 needs `--temperature`).
    #[arg(long, default_value_t = 1)]
    pub samples: usize,
    /// Prompt chunk of the chunked-prefill case.
    #[arg(long, default_value_t = 7)]
    pub prefill_chunk: usize,
    /// Give every prompt the full `--prompt-tokens` length, so no batch has padding.
    #[arg(long)]
    pub equal_lengths: bool,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(argv: &[&str]) -> RunArgs {
        let cli = Cli::try_parse_from(["reprolm", "run"].iter().chain(argv)).unwrap();
        match cli.command {
            Command::Run(a) => *a,
            other => panic!("parsed as {other:?}"),
        }
    }

    /// The paper's scripts name an experiment with `--exp_name`; both spellings name the run
    /// directory, as `--out` does.
    #[test]
    fn exp_name_in_either_spelling_is_the_run_directory() {
        for flag in ["--exp_name", "--exp-name", "--out"] {
            let a = run_args(&[flag, "2a100_math500_bf16_bs32"]);
            assert_eq!(
                a.out,
                Some(PathBuf::from("2a100_math500_bf16_bs32")),
                "{flag}"
            );
        }
        assert_eq!(run_args(&["--dtype", "bfloat16"]).policy, "bfloat16");
    }
}
