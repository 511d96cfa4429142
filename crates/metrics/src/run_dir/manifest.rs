//! `manifest.json`: the provenance and configuration of one run.
//!
//! The manifest is what makes two run directories comparable (same model, task and dataset) and what a
//! report groups by; it is also what a resume checks before appending to an existing directory.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{io_err, Error, Result, VersionFound};

/// The manifest format this build writes and the only one it reads.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;

/// File name of the manifest inside a run directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Everything needed to reproduce a run and to decide which runs may be compared.
///
/// Unknown top-level keys written by a newer minor revision land in `extra` and are written back
/// unchanged, so an older build that finishes a run does not drop them.
///
/// ```
/// # use reprolm_metrics::run_dir::Manifest;
/// let m = Manifest::example();
/// let json = serde_json::to_string(&m).unwrap();
/// let back: Manifest = serde_json::from_str(&json).unwrap();
/// assert_eq!(m, back);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Version of this file's format; see [`MANIFEST_FORMAT_VERSION`].
    pub format_version: u32,
    /// Version of the reprolm build that produced the run.
    pub reprolm_version: String,
    /// Git revision of that build, when it was built from a checkout.
    pub git_revision: Option<String>,
    /// The model and the exact files it was loaded from.
    pub model: ModelInfo,
    /// The task and the exact dataset it was loaded from.
    pub task: TaskInfo,
    /// The precision policy.
    pub policy: PolicyInfo,
    /// The device that ran the model.
    pub device: DeviceInfo,
    /// Tensor-parallel size.
    pub tp_size: u32,
    /// Number of GPUs used (0 on CPU).
    pub gpu_count: u32,
    /// Prompts per batch (static) or concurrent slots (continuous).
    pub batch_size: u32,
    /// How batches are formed.
    pub batching_mode: BatchingMode,
    /// Everything besides the policy that decides the numbers, as one value by name: the
    /// settings (`kernels` for the kernel choice, `deterministic`, `tp_mode`, `fused_kernels`,
    /// `token_choice`, `cuda_graphs`) and what they give (`gemm`, `reduction`, `attention`). Compared whole on
    /// resume; [`deterministic`](Self::deterministic) and [`tp_mode`](Self::tp_mode) read it.
    /// Manifests written before it held those two kept them at the top level; [`read`](Self::read)
    /// moves them in. Empty for imported runs and the oldest manifests.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kernels: BTreeMap<String, String>,
    /// Seed from which every per-request RNG is derived.
    pub seed: u64,
    /// Decoding parameters.
    pub sampling: SamplingParams,
    /// Generation limit per response, in tokens.
    pub max_tokens: u32,
    /// Number of top logprobs stored per generated token.
    pub logprobs_k: u32,
    /// Start time, RFC 3339 UTC.
    pub started_at: String,
    /// End time, RFC 3339 UTC; `None` while the run is unfinished.
    pub finished_at: Option<String>,
    /// Tokens generated over all responses (of all sessions of a resumed run).
    pub tokens_generated: u64,
    /// Generation throughput in tokens per second; `None` until the run finishes.
    pub throughput_tok_s: Option<f64>,
    /// Whether reprolm generated the run or it was imported from another tool's output.
    pub origin: Origin,
    /// Things a reader of the results should know (fallbacks taken, problems skipped, ...).
    pub warnings: Vec<String>,
    /// Keys this build does not know, kept for forward compatibility.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The model and the files its weights came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Hub id (`deepseek-ai/DeepSeek-R1-Distill-Qwen-7B`) or local name.
    pub id: String,
    /// Where it was loaded from: a local path or `hf-hub`.
    pub source: String,
    /// Hub revision (commit), if loaded from the hub.
    pub revision: Option<String>,
    /// Every weight file with its hash, sorted by name.
    pub weight_files: Vec<WeightFile>,
    /// sha256 of tokenizer.json.
    pub tokenizer_sha256: String,
    /// Architecture as config.json names it (`Qwen2ForCausalLM`).
    pub architecture: String,
}

/// One weight file of the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightFile {
    /// File name relative to the model directory.
    pub name: String,
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
    /// File size in bytes.
    pub bytes: u64,
}

/// The task and its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// Registered task name (`math500`).
    pub name: String,
    /// Task version: bumped whenever prompts or scoring change, so results of two versions never mix.
    pub version: String,
    /// sha256 of the dataset file(s) as loaded.
    pub dataset_sha256: String,
    /// Where the dataset came from (path or hub id).
    pub dataset_source: String,
    /// Number of problems selected for this run.
    pub n_problems: u32,
    /// Ids of the selected problems in generation order; with `batch_size` and `batching_mode` this
    /// fixes which prompts shared a batch. Empty when a writer did not record them.
    #[serde(default)]
    pub problem_ids: Vec<String>,
}

/// The precision policy as resolved for this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyInfo {
    /// Preset or custom policy name (`bf16`, `layercast`, ...).
    pub name: String,
    /// Component -> dtype, so a custom policy is recorded in full.
    pub table: BTreeMap<String, String>,
}

/// The device that ran the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// `cpu` or `cuda:N`.
    pub kind: String,
    /// GPU name (`NVIDIA H100 80GB HBM3`) or CPU model.
    pub name: String,
}

/// How prompts are put into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchingMode {
    /// Fixed chunks of `batch_size` prompts in dataset order (the paper's setting).
    Static,
    /// A finished sequence's slot is refilled at once.
    Continuous,
}

impl fmt::Display for BatchingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BatchingMode::Static => "static",
            BatchingMode::Continuous => "continuous",
        })
    }
}

/// Decoding parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f64,
    /// Nucleus threshold (1.0 = off).
    pub top_p: f64,
    /// Top-k cut (0 = off).
    pub top_k: u32,
    /// Min-p threshold (0.0 = off).
    pub min_p: f64,
    /// Samples per problem (1 for greedy).
    pub n_samples: u32,
}

impl SamplingParams {
    /// Greedy decoding, one sample per problem: the paper's main setting.
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            n_samples: 1,
        }
    }

    /// Whether decoding is greedy; greedy runs get accuracy metrics, sampled runs pass@k.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

/// Where the run's results came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// Generated by reprolm.
    Reprolm,
    /// Converted from another tool's output (e.g. the paper's vLLM reference code).
    Imported {
        /// The producing tool and its version (`vllm 0.8.2`).
        tool: String,
        /// The files it was imported from.
        source: String,
    },
}

/// One configuration field that differs between two manifests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldDiff {
    /// Dotted field path as it appears in manifest.json (`sampling.temperature`).
    pub field: &'static str,
    /// Value in the manifest `diff_config` was called on (the existing run).
    pub existing: String,
    /// Value in the other manifest (the requested run).
    pub requested: String,
}

impl fmt::Display for FieldDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (existing) vs {} (requested)",
            self.field, self.existing, self.requested
        )
    }
}

/// The entries of two policy tables that differ, as `key=value` (`key unset` where one lacks it),
/// one string per side; two empty strings when the tables are equal. A whole table is ten entries
/// of which a refusal usually concerns one or two (`kv_cache=bf16` against `kv_cache=f32`).
fn table_difference(
    a: &BTreeMap<String, String>,
    b: &BTreeMap<String, String>,
) -> (String, String) {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let side = |t: &BTreeMap<String, String>| {
        keys.iter()
            .filter(|k| a.get(**k) != b.get(**k))
            .map(|k| match t.get(*k) {
                Some(v) => format!("{k}={v}"),
                None => format!("{k} unset"),
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    (side(a), side(b))
}

impl Manifest {
    /// The configuration fields that differ between `self` (an existing run) and `other` (a requested
    /// one), in manifest order.
    ///
    /// Covered: everything that can change a generated token or a score: tool version and revision,
    /// model id/revision/weights/tokenizer/architecture, task name/version/dataset/problem count, policy,
    /// device, tp size, GPU count, batch size and mode, the kernels value (deterministic mode
    /// included), seed, sampling parameters, max_tokens and logprobs_k. Not covered: timestamps, counters, warnings, origin, `model.source` and
    /// `task.dataset_source` (the same files may sit at another path; their hashes are compared instead).
    ///
    /// ```
    /// # use reprolm_metrics::run_dir::Manifest;
    /// let a = Manifest::example();
    /// let mut b = a.clone();
    /// b.batch_size = 16;
    /// b.sampling.temperature = 0.7;
    /// let fields: Vec<_> = a.diff_config(&b).into_iter().map(|d| d.field).collect();
    /// assert_eq!(fields, ["batch_size", "sampling.temperature"]);
    /// ```
    pub fn diff_config(&self, other: &Manifest) -> Vec<FieldDiff> {
        let mut diffs = Vec::new();
        let mut cmp = |field: &'static str, a: String, b: String| {
            if a != b {
                diffs.push(FieldDiff {
                    field,
                    existing: a,
                    requested: b,
                });
            }
        };
        let dbg = |v: &dyn fmt::Debug| format!("{v:?}");
        cmp(
            "reprolm_version",
            self.reprolm_version.clone(),
            other.reprolm_version.clone(),
        );
        cmp(
            "git_revision",
            dbg(&self.git_revision),
            dbg(&other.git_revision),
        );
        cmp("model.id", self.model.id.clone(), other.model.id.clone());
        cmp(
            "model.revision",
            dbg(&self.model.revision),
            dbg(&other.model.revision),
        );
        cmp(
            "model.weight_files",
            weight_summary(&self.model.weight_files),
            weight_summary(&other.model.weight_files),
        );
        cmp(
            "model.tokenizer_sha256",
            self.model.tokenizer_sha256.clone(),
            other.model.tokenizer_sha256.clone(),
        );
        cmp(
            "model.architecture",
            self.model.architecture.clone(),
            other.model.architecture.clone(),
        );
        cmp("task.name", self.task.name.clone(), other.task.name.clone());
        cmp(
            "task.version",
            self.task.version.clone(),
            other.task.version.clone(),
        );
        cmp(
            "task.dataset_sha256",
            self.task.dataset_sha256.clone(),
            other.task.dataset_sha256.clone(),
        );
        cmp(
            "task.n_problems",
            self.task.n_problems.to_string(),
            other.task.n_problems.to_string(),
        );
        cmp(
            "task.problem_ids",
            ids_summary(&self.task.problem_ids),
            ids_summary(&other.task.problem_ids),
        );
        cmp(
            "policy.name",
            self.policy.name.clone(),
            other.policy.name.clone(),
        );
        let (table_a, table_b) = table_difference(&self.policy.table, &other.policy.table);
        cmp("policy.table", table_a, table_b);
        cmp(
            "device.kind",
            self.device.kind.clone(),
            other.device.kind.clone(),
        );
        cmp(
            "device.name",
            self.device.name.clone(),
            other.device.name.clone(),
        );
        cmp(
            "tp_size",
            self.tp_size.to_string(),
            other.tp_size.to_string(),
        );
        cmp(
            "gpu_count",
            self.gpu_count.to_string(),
            other.gpu_count.to_string(),
        );
        cmp(
            "batch_size",
            self.batch_size.to_string(),
            other.batch_size.to_string(),
        );
        cmp(
            "batching_mode",
            self.batching_mode.to_string(),
            other.batching_mode.to_string(),
        );
        let switches = |k: &BTreeMap<String, String>| {
            k.iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        cmp("kernels", switches(&self.kernels), switches(&other.kernels));
        cmp("seed", self.seed.to_string(), other.seed.to_string());
        let (s, o) = (&self.sampling, &other.sampling);
        cmp(
            "sampling.temperature",
            s.temperature.to_string(),
            o.temperature.to_string(),
        );
        cmp("sampling.top_p", s.top_p.to_string(), o.top_p.to_string());
        cmp("sampling.top_k", s.top_k.to_string(), o.top_k.to_string());
        cmp("sampling.min_p", s.min_p.to_string(), o.min_p.to_string());
        cmp(
            "sampling.n_samples",
            s.n_samples.to_string(),
            o.n_samples.to_string(),
        );
        cmp(
            "max_tokens",
            self.max_tokens.to_string(),
            other.max_tokens.to_string(),
        );
        cmp(
            "logprobs_k",
            self.logprobs_k.to_string(),
            other.logprobs_k.to_string(),
        );
        diffs
    }

    /// Whether `other` asks for this run with more problems (a larger `--limit`): every
    /// configuration field of [`diff_config`](Self::diff_config) is the same except the problem
    /// list, and this run's problems are the first of `other`'s, in the same order.
    ///
    /// ```
    /// # use reprolm_metrics::run_dir::Manifest;
    /// let a = Manifest::example();
    /// let mut b = a.clone();
    /// b.task.problem_ids.push("one-more".into());
    /// b.task.n_problems += 1;
    /// assert!(a.is_extended_by(&b));
    /// assert!(!b.is_extended_by(&a));
    /// b.batch_size += 1;
    /// assert!(!a.is_extended_by(&b));
    /// ```
    pub fn is_extended_by(&self, other: &Manifest) -> bool {
        let diffs = self.diff_config(other);
        !diffs.is_empty()
            && diffs
                .iter()
                .all(|d| matches!(d.field, "task.n_problems" | "task.problem_ids"))
            && other.task.problem_ids.len() > self.task.problem_ids.len()
            && other.task.problem_ids.starts_with(&self.task.problem_ids)
            && other.task.n_problems as usize == other.task.problem_ids.len()
    }

    /// Read and validate `manifest.json` at `path`, rejecting unknown format versions before looking at
    /// any other field (a newer format may have renamed them).
    pub fn read(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| Error::Json {
                path: path.into(),
                line: None,
                source,
            })?;
        check_version(path, &value, MANIFEST_FORMAT_VERSION)?;
        let mut m: Manifest = serde_json::from_value(value).map_err(|source| Error::Json {
            path: path.into(),
            line: None,
            source,
        })?;
        m.move_settings_into_kernels(path)?;
        Ok(m)
    }

    /// Whether the fixed-order, batch-invariant kernels ran (`--deterministic`, or the
    /// TP-invariant reduction, which runs them in a tree order): a view of the kernels value,
    /// false where it is not recorded (imported runs).
    ///
    /// ```
    /// # use reprolm_metrics::run_dir::Manifest;
    /// let mut m = Manifest::example();
    /// assert!(!m.deterministic());
    /// m.kernels.insert("deterministic".into(), "true".into());
    /// assert!(m.deterministic());
    /// ```
    pub fn deterministic(&self) -> bool {
        self.kernels
            .get("deterministic")
            .is_some_and(|v| v == "true")
    }

    /// How tensor-parallel partial sums were combined (`standard` or `invariant`): a view of the
    /// kernels value, `standard` where it is not recorded.
    pub fn tp_mode(&self) -> &str {
        self.kernels
            .get("tp_mode")
            .map_or("standard", String::as_str)
    }

    /// Manifests written before the kernels value held `deterministic` (a top-level bool) and
    /// `tp_mode` (a top-level string) land them in `extra`; they are moved into `kernels`, so
    /// that an old run reads (and reports) as it was made, and resumes. Those builds wrote
    /// `tp_mode` only for tensor-parallel runs and `fused_kernels` only on CUDA (on the CPU there
    /// are no fused kernels to turn off), so a missing one is what they ran: `standard` and `on`.
    fn move_settings_into_kernels(&mut self, path: &Path) -> Result<()> {
        let bad = |field: &'static str, v: &serde_json::Value, want: &str| Error::BadRecord {
            path: path.into(),
            record: "manifest".into(),
            field,
            reason: format!("expected {want}, got {v}"),
        };
        let old_shape = self.extra.contains_key("deterministic");
        if let Some(v) = self.extra.remove("deterministic") {
            let on = v
                .as_bool()
                .ok_or_else(|| bad("deterministic", &v, "true or false"))?;
            self.kernels
                .entry("deterministic".into())
                .or_insert_with(|| on.to_string());
        }
        if let Some(v) = self.extra.remove("tp_mode") {
            let mode = v
                .as_str()
                .ok_or_else(|| bad("tp_mode", &v, "`standard` or `invariant`"))?;
            self.kernels
                .entry("tp_mode".into())
                .or_insert_with(|| mode.to_string());
        }
        if old_shape {
            for (key, then) in [("tp_mode", "standard"), ("fused_kernels", "on")] {
                self.kernels
                    .entry(key.into())
                    .or_insert_with(|| then.into());
            }
        }
        // Builds before decode steps ran as CUDA graphs did not record `cuda_graphs`: they
        // launched every kernel one by one.
        if !self.kernels.is_empty() {
            self.kernels
                .entry("cuda_graphs".into())
                .or_insert_with(|| "off".into());
        }
        Ok(())
    }

    /// Write the manifest to `path` atomically (temporary file + rename), so a kill never leaves a
    /// half-written manifest behind.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self).map_err(|source| Error::Json {
            path: path.into(),
            line: None,
            source,
        })?;
        text.push('\n');
        let tmp = path.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
            f.write_all(text.as_bytes()).map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
        }
        std::fs::rename(&tmp, path).map_err(io_err(path))
    }

    /// A filled-in manifest for documentation examples and tests of code that consumes manifests.
    pub fn example() -> Manifest {
        Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            reprolm_version: "0.1.0".into(),
            git_revision: Some("0123456789abcdef".into()),
            model: ModelInfo {
                id: "example/model".into(),
                source: "models/example".into(),
                revision: None,
                weight_files: vec![WeightFile {
                    name: "model.safetensors".into(),
                    sha256: "00".repeat(32),
                    bytes: 1024,
                }],
                tokenizer_sha256: "11".repeat(32),
                architecture: "Qwen2ForCausalLM".into(),
            },
            task: TaskInfo {
                name: "arith".into(),
                version: "1".into(),
                dataset_sha256: "22".repeat(32),
                dataset_source: "builtin".into(),
                n_problems: 4,
                problem_ids: vec!["p1".into(), "p2".into(), "p3".into(), "p4".into()],
            },
            policy: PolicyInfo {
                name: "bf16".into(),
                table: BTreeMap::from([("linear_storage".to_string(), "bf16".to_string())]),
            },
            device: DeviceInfo {
                kind: "cpu".into(),
                name: "x86_64".into(),
            },
            tp_size: 1,
            gpu_count: 0,
            batch_size: 8,
            batching_mode: BatchingMode::Static,
            kernels: Default::default(),
            seed: 42,
            sampling: SamplingParams::greedy(),
            max_tokens: 256,
            logprobs_k: 5,
            started_at: "2025-01-01T00:00:00Z".into(),
            finished_at: None,
            tokens_generated: 0,
            throughput_tok_s: None,
            origin: Origin::Reprolm,
            warnings: Vec::new(),
            extra: BTreeMap::new(),
        }
    }
}

/// The id list in short: count plus the first and last ids (full lists can hold thousands).
fn ids_summary(ids: &[String]) -> String {
    match ids {
        [first, .., last] if ids.len() > 4 => format!("[{first}, …, {last}] ({} ids)", ids.len()),
        _ => format!("[{}]", ids.join(", ")),
    }
}

fn weight_summary(files: &[WeightFile]) -> String {
    files
        .iter()
        .map(|w| format!("{}={}", w.name, w.sha256))
        .collect::<Vec<_>>()
        .join(",")
}

/// Reject a JSON document whose `format_version` is not `supported`.
pub(crate) fn check_version(path: &Path, value: &serde_json::Value, supported: u32) -> Result<()> {
    let found = value.get("format_version").and_then(|v| v.as_u64());
    if found == Some(u64::from(supported)) {
        return Ok(());
    }
    Err(Error::UnsupportedVersion {
        path: path.into(),
        found: found.map_or(VersionFound::Missing, VersionFound::Version),
        supported,
        hint: if found.is_some_and(|v| v > u64::from(supported)) {
            "it was written by a newer reprolm; upgrade to read it"
        } else {
            "it was not written by a reprolm this build can read"
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #23: `deterministic` and `tp_mode` are views of the kernels value; a manifest written
    /// when they were fields of their own still reads, with both moved into `kernels`.
    #[test]
    fn deterministic_and_tp_mode_of_old_manifests_move_into_the_kernels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MANIFEST_FILE);
        let mut old = serde_json::to_value(Manifest::example()).unwrap();
        old["deterministic"] = true.into();
        old["tp_mode"] = "invariant".into();
        std::fs::write(&path, old.to_string()).unwrap();
        let m = Manifest::read(&path).unwrap();
        assert!(m.deterministic());
        assert_eq!(m.tp_mode(), "invariant");
        assert!(m.extra.is_empty(), "{:?}", m.extra);
        let written = serde_json::to_value(&m).unwrap();
        assert!(written.get("deterministic").is_none(), "{written}");
        assert_eq!(written["kernels"]["deterministic"], "true");
        // A single-device run of those builds wrote no tp_mode, and on the CPU no fused_kernels:
        // it ran the standard reduction with fused kernels on.
        old.as_object_mut().unwrap().remove("tp_mode");
        if let Some(k) = old.get_mut("kernels").and_then(|k| k.as_object_mut()) {
            k.remove("fused_kernels");
            k.remove("tp_mode");
        }
        std::fs::write(&path, old.to_string()).unwrap();
        let m = Manifest::read(&path).unwrap();
        assert_eq!(m.tp_mode(), "standard");
        assert_eq!(m.kernels["fused_kernels"], "on");
        // Nor did any build before decode graphs record `cuda_graphs`: they ran without.
        assert_eq!(m.kernels["cuda_graphs"], "off");
        old["deterministic"] = "yes".into();
        std::fs::write(&path, old.to_string()).unwrap();
        let e = Manifest::read(&path).unwrap_err().to_string();
        assert!(
            e.contains("field `deterministic`: expected true or false"),
            "{e}"
        );
    }

    #[test]
    fn round_trip_keeps_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MANIFEST_FILE);
        let mut m = Manifest::example();
        m.extra
            .insert("future_field".into(), serde_json::json!({"a": 1}));
        m.origin = Origin::Imported {
            tool: "vllm 0.8.2".into(),
            source: "/x/out.pt".into(),
        };
        m.write(&path).unwrap();
        let back = Manifest::read(&path).unwrap();
        assert_eq!(back, m);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"future_field\""), "{text}");
        assert!(text.contains("\"kind\": \"imported\""), "{text}");
    }

    #[test]
    fn unknown_version_is_rejected_with_the_file_and_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MANIFEST_FILE);
        let mut v = serde_json::to_value(Manifest::example()).unwrap();
        v["format_version"] = 7.into();
        // A newer format may rename fields; the version must be checked before anything else fails.
        v.as_object_mut().unwrap().remove("model");
        std::fs::write(&path, v.to_string()).unwrap();
        let msg = Manifest::read(&path).unwrap_err().to_string();
        assert!(msg.contains("format_version 7 is not supported"), "{msg}");
        assert!(msg.contains("version 1"), "{msg}");
        assert!(msg.contains("manifest.json"), "{msg}");
        assert!(msg.contains("newer reprolm"), "{msg}");

        v.as_object_mut().unwrap().remove("format_version");
        std::fs::write(&path, v.to_string()).unwrap();
        let msg = Manifest::read(&path).unwrap_err().to_string();
        assert!(msg.contains("format_version missing"), "{msg}");
    }

    #[test]
    fn diff_names_every_changed_config_field_and_ignores_bookkeeping() {
        let a = Manifest::example();
        let mut b = a.clone();
        assert!(a.diff_config(&b).is_empty());
        b.started_at = "later".into();
        b.finished_at = Some("much later".into());
        b.tokens_generated = 99;
        b.warnings.push("w".into());
        b.model.source = "/elsewhere".into();
        assert!(
            a.diff_config(&b).is_empty(),
            "bookkeeping fields must not block a resume"
        );
        b.device.name = "NVIDIA A100".into();
        b.policy.table.insert("lm_head".into(), "fp32".into());
        b.model.weight_files[0].sha256 = "ff".repeat(32);
        b.batching_mode = BatchingMode::Continuous;
        b.seed = 7;
        b.task.problem_ids.swap(0, 1);
        let diffs = a.diff_config(&b);
        let fields: Vec<_> = diffs.iter().map(|d| d.field).collect();
        assert_eq!(
            fields,
            [
                "model.weight_files",
                "task.problem_ids",
                "policy.table",
                "device.name",
                "batching_mode",
                "seed"
            ]
        );
        assert_eq!(diffs[1].requested, "[p2, p1, p3, p4]");
        // Only the policy entries that differ, not both whole tables.
        assert_eq!(
            diffs[2].to_string(),
            "policy.table: lm_head unset (existing) vs lm_head=fp32 (requested)"
        );
        let seed = &diffs[5];
        assert_eq!(
            (seed.existing.as_str(), seed.requested.as_str()),
            ("42", "7")
        );
        assert_eq!(seed.to_string(), "seed: 42 (existing) vs 7 (requested)");
    }
}
