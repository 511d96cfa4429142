//! Importing runs made with the paper's reference code (`nanomaoli/llm_reproducibility`, vLLM based).
//!
//! That code writes, into `outputs/vllm_main/{exp_name}/{model}`, one `qa_pairs_{dtype}_bs_{bs}.jsonl` line per
//! problem (`problem_id`, `question`, `model_answer`) and per problem two `torch.save` files of shape
//! `[generated_tokens, 5]`: the top-5 candidate ids (int64) and their logprobs (float32), sorted by rank so
//! column 0 is the greedy token. [`import_reference`] turns such a folder into a run directory, so reports and
//! inspection treat imported and native runs alike. `eval_layercast.py` writes the same files under
//! `outputs/vllm_layercast/...`; only that folder tells its runs apart (their dtype is `float32`), so a run
//! below it is imported as policy `layercast` (see [`ReferenceScript`]).
//!
//! The reference output does not record the model's files, the dataset's hash, the device, the seed or the
//! prompt lengths. The manifest marks each such field in `warnings` and lists them under
//! `extra.reference.unknown_fields`, and `origin` is `imported`. Scoring is the caller's: this crate does not
//! link the graders, so the caller passes a [`Scorer`] (the task's grader) or [`NotScored`].
//!
//! ```no_run
//! use reprolm_metrics::import_reference::{import_reference, ImportOptions, NotScored};
//!
//! let mut opts = ImportOptions::new("math500");
//! opts.model = Some("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B".into());
//! let summary = import_reference(
//!     "outputs/vllm_main/2a100_math500_bf16_bs32/deepseek-ai/DeepSeek-R1-Distill-Qwen-7B".as_ref(),
//!     "runs/reference-bs32".as_ref(),
//!     &opts,
//!     &NotScored,
//! )?;
//! println!("{} problems imported into {}", summary.n_problems, summary.run_dir.display());
//! # Ok::<(), reprolm_metrics::Error>(())
//! ```

mod names;
mod torch_file;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde_json::json;

pub use names::{parse_qa_pairs_name, short_dtype, ExperimentName, TensorFileName, TensorKind};
pub use torch_file::{read_torch_tensor, Tensor2, TorchDType};

use crate::error::{io_err, Error, Result};
use crate::run_dir::{
    BatchingMode, DeviceInfo, Durability, Finish, FinishReason, LogprobsRecord, Manifest,
    ModelInfo, Origin, PolicyInfo, ResponseRecord, RunDir, SamplingParams, TaskInfo,
    MANIFEST_FORMAT_VERSION,
};

/// The tool named in `origin` when the caller does not know the version used.
pub const REFERENCE_TOOL: &str = "nanomaoli/llm_reproducibility (vLLM)";

/// What the caller knows that the reference output does not say, and which run to pick from a folder that
/// holds several.
///
/// Every `None` falls back to what the folder name says, and failing that is marked unknown in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportOptions {
    /// reprolm's task name (`math500`); becomes `task.name`, so imported runs group with native ones.
    pub task: String,
    /// reprolm's task version; unknown when `None`.
    pub task_version: Option<String>,
    /// sha256 of the dataset the responses are scored against (the caller's copy); unknown when `None`.
    pub dataset_sha256: Option<String>,
    /// Where that dataset came from.
    pub dataset_source: Option<String>,
    /// Model id; when `None`, taken from the folder path (`.../{exp_name}/{org}/{name}`).
    pub model: Option<String>,
    /// GPU type (`A100`); when `None`, taken from the experiment name.
    pub gpu_type: Option<String>,
    /// GPU count (the reference code uses all visible GPUs for tensor parallelism); when `None`, taken from
    /// the experiment name.
    pub gpus: Option<u32>,
    /// Which run to import when the folder holds answers for several batch sizes.
    pub batch_size: Option<u32>,
    /// Which run to import when the folder holds answers for several dtypes (`bfloat16` or `bf16`).
    pub dtype: Option<String>,
    /// Producing tool and version for `origin.tool`; [`REFERENCE_TOOL`] when `None`.
    pub tool: Option<String>,
    /// The model's files as hashed from a local copy the user says the reference run loaded. Reports refuse
    /// to compare runs whose weight or tokenizer hashes differ, and the reference output records none, so
    /// without this an imported run is compared only with other imports; its `id` wins over `model`.
    pub model_info: Option<ModelInfo>,
}

impl ImportOptions {
    /// Options with only the task set.
    pub fn new(task: impl Into<String>) -> Self {
        ImportOptions {
            task: task.into(),
            ..Default::default()
        }
    }
}

/// One problem of a reference run, as read from its files.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceProblem {
    /// Index of the problem in the task's dataset order (the reference code's `problem_id`).
    pub index: u64,
    /// The chat messages sent to the model, as the reference code recorded them.
    pub question: serde_json::Value,
    /// The decoded response.
    pub response: String,
    /// The greedy (column 0) token of every generated position.
    pub tokens: Vec<u32>,
    /// Candidates per position, rank order, `k` per position; ranks vLLM did not fill are left out.
    pub candidates: LogprobsRecord,
    /// The token-id tensor file.
    pub token_ids_file: PathBuf,
    /// The logprobs tensor file.
    pub logprobs_file: PathBuf,
}

/// A reference run read from its folder, before it is written as a run directory.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceRun {
    /// The folder.
    pub source: PathBuf,
    /// The answers file.
    pub qa_pairs: PathBuf,
    /// The task name in the tensor file names (the reference code's name, e.g. `math500`).
    pub task: String,
    /// The vLLM dtype (`bfloat16`).
    pub dtype: String,
    /// Batch size.
    pub batch_size: u32,
    /// Generation limit.
    pub max_tokens: u32,
    /// Candidates per position (5 in the reference code).
    pub k: u32,
    /// The experiment name found on the folder's path, if any.
    pub experiment: Option<ExperimentName>,
    /// The model id the folder path implies, if an experiment name was found above it.
    pub model_from_path: Option<String>,
    /// The script that wrote the folder, when the path holds the folder it writes under.
    pub script: Option<ReferenceScript>,
    /// The problems in `problem_id` order.
    pub problems: Vec<ReferenceProblem>,
}

/// Which of the reference code's scripts wrote an output folder, told by the folder each writes under:
/// the answers and tensor files are named alike (`--dtype` only), so the path is all that tells LayerCast
/// output from a plain float32 run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceScript {
    /// `eval_main.py`, writing under `outputs/vllm_main`: the whole model in `--dtype`.
    Main,
    /// `eval_layercast.py`, writing under `outputs/vllm_layercast`: LayerCast (projection weights stored
    /// in bf16, everything computed in fp32) whatever `--dtype` names; its README passes `float32`.
    LayerCast,
}

impl ReferenceScript {
    /// The folder under `outputs/` the script writes its experiments into.
    ///
    /// ```
    /// # use reprolm_metrics::import_reference::ReferenceScript;
    /// assert_eq!(ReferenceScript::LayerCast.folder(), "vllm_layercast");
    /// ```
    pub fn folder(self) -> &'static str {
        match self {
            ReferenceScript::Main => "vllm_main",
            ReferenceScript::LayerCast => "vllm_layercast",
        }
    }

    /// The script's file name.
    ///
    /// ```
    /// # use reprolm_metrics::import_reference::ReferenceScript;
    /// assert_eq!(ReferenceScript::Main.file(), "eval_main.py");
    /// ```
    pub fn file(self) -> &'static str {
        match self {
            ReferenceScript::Main => "eval_main.py",
            ReferenceScript::LayerCast => "eval_layercast.py",
        }
    }
}

/// A response handed to the grader.
#[derive(Debug, Clone, Copy)]
pub struct ReferenceSample<'a> {
    /// Index of the problem in the task's dataset order.
    pub index: u64,
    /// The chat messages the reference code sent; lets a grader check it holds the same problem.
    pub question: &'a serde_json::Value,
    /// The response text.
    pub response: &'a str,
}

/// The grader's verdict on one imported response.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// reprolm's id of the problem at this dataset index.
    pub problem_id: String,
    /// Score in 0..=1.
    pub score: f64,
    /// Whether it counts as solved.
    pub correct: bool,
    /// The extracted answer, if any.
    pub extracted_answer: Option<String>,
    /// Grader-specific detail.
    pub detail: serde_json::Value,
}

/// Scores imported responses with reprolm's grader for the task.
///
/// A trait, not a function pointer, because code graders score many responses in parallel and in one call;
/// any `Fn(&ReferenceSample) -> Result<Scored, String>` is a `Scorer` too.
pub trait Scorer {
    /// One verdict per sample, in order. An `Err` stops the import with the message.
    fn score(&self, samples: &[ReferenceSample<'_>]) -> std::result::Result<Vec<Scored>, String>;

    /// Whether verdicts come from a real grader; `false` marks the run as unscored in its manifest.
    fn grades(&self) -> bool {
        true
    }
}

impl<F> Scorer for F
where
    F: Fn(&ReferenceSample<'_>) -> std::result::Result<Scored, String>,
{
    fn score(&self, samples: &[ReferenceSample<'_>]) -> std::result::Result<Vec<Scored>, String> {
        samples.iter().map(self).collect()
    }
}

/// Leaves responses unscored (score 0, not correct, `score_detail.scored = false`) and uses the dataset
/// index as problem id; for importing when the task's data is not at hand. Accuracy of such a run means
/// nothing, which its manifest warns about; token-level metrics are unaffected.
#[derive(Debug, Clone, Copy, Default)]
pub struct NotScored;

impl Scorer for NotScored {
    fn score(&self, samples: &[ReferenceSample<'_>]) -> std::result::Result<Vec<Scored>, String> {
        Ok(samples
            .iter()
            .map(|s| Scored {
                problem_id: s.index.to_string(),
                score: 0.0,
                correct: false,
                extracted_answer: None,
                detail: json!({"scored": false, "reason": "imported without a grader"}),
            })
            .collect())
    }

    fn grades(&self) -> bool {
        false
    }
}

/// What an import wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportSummary {
    /// The run directory created.
    pub run_dir: PathBuf,
    /// Its manifest, finished.
    pub manifest: Manifest,
    /// Problems imported.
    pub n_problems: usize,
    /// Of those, how many the grader counted as solved.
    pub n_correct: usize,
}

/// Read a reference run from `dir` without writing anything; `opts.batch_size` and `opts.dtype` pick the run
/// when the folder holds several.
///
/// Fails, naming the file, when the folder holds no such output, a tensor file is missing, truncated or not
/// `[n, k]` int64/float32, the two tensors of a problem differ in shape, or the answers file and the tensor
/// files list different problems.
pub fn read_reference(dir: &Path, opts: &ImportOptions) -> Result<ReferenceRun> {
    let not_ref = |reason: String| Error::NotReferenceOutput {
        path: dir.to_path_buf(),
        reason,
    };
    if !dir.is_dir() {
        return Err(not_ref("not a directory".into()));
    }
    let mut qa_files = Vec::new();
    let mut tensors: Vec<(TensorFileName, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((dtype, bs)) = parse_qa_pairs_name(&name) {
            qa_files.push((dtype, bs, entry.path()));
        } else if let Some(t) = TensorFileName::parse(&name) {
            tensors.push((t, entry.path()));
        }
    }
    qa_files.sort();
    if qa_files.is_empty() {
        return Err(not_ref(format!(
            "no qa_pairs_{{dtype}}_bs_{{batch_size}}.jsonl file{}",
            if tensors.is_empty() {
                " and no problem_{id}_{task}_token_ids_bs_{bs}_{dtype}_max_tokens_{n}.pt files"
            } else {
                " (the .pt files are there; was the run stopped before its first batch finished?)"
            }
        )));
    }
    let want_dtype = opts
        .dtype
        .as_deref()
        .map(|d| short_dtype(d).unwrap_or(d).to_string());
    let chosen: Vec<_> = qa_files
        .iter()
        .filter(|(d, bs, _)| {
            opts.batch_size.is_none_or(|b| b == *bs)
                && want_dtype
                    .as_deref()
                    .is_none_or(|w| short_dtype(d).unwrap_or(d) == w)
        })
        .collect();
    let list = || {
        qa_files
            .iter()
            .map(|(_, _, p)| file_name(p))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let asked = [
        opts.batch_size.map(|b| format!("batch size {b}")),
        opts.dtype.as_ref().map(|d| format!("dtype {d}")),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" and ");
    let (dtype, batch_size, qa_path) = match chosen.as_slice() {
        [one] => (one.0.clone(), one.1, one.2.clone()),
        [] => {
            return Err(Error::ReferenceRunNotChosen {
                path: dir.to_path_buf(),
                found: format!("no run matches {asked}"),
                runs: list(),
            })
        }
        _ => {
            return Err(Error::ReferenceRunNotChosen {
                path: dir.to_path_buf(),
                found: if asked.is_empty() {
                    format!("{} runs", chosen.len())
                } else {
                    format!("{} runs match {asked}", chosen.len())
                },
                runs: list(),
            })
        }
    };

    let answers = read_qa_pairs(&qa_path)?;
    let mine: Vec<_> = tensors
        .into_iter()
        .filter(|(t, _)| t.batch_size == batch_size && t.dtype == dtype)
        .collect();
    if mine.is_empty() {
        return Err(not_ref(format!(
            "{} has no problem_*_bs_{batch_size}_{dtype}_max_tokens_*.pt files beside it",
            file_name(&qa_path)
        )));
    }
    let configs: BTreeSet<(String, u32)> = mine
        .iter()
        .map(|(t, _)| (t.task.clone(), t.max_tokens))
        .collect();
    if configs.len() > 1 {
        let found: Vec<String> = configs
            .iter()
            .map(|(t, m)| format!("task {t} max_tokens {m}"))
            .collect();
        return Err(not_ref(format!(
            "tensor files for batch size {batch_size} and {dtype} belong to several runs ({}); move them apart",
            found.join(", ")
        )));
    }
    let (task, max_tokens) = configs.into_iter().next().expect("one config");
    let mut by_problem: BTreeMap<u64, BTreeMap<TensorKind, PathBuf>> = BTreeMap::new();
    for (t, path) in mine {
        by_problem
            .entry(t.problem)
            .or_default()
            .insert(t.kind, path);
    }
    for (index, files) in &by_problem {
        if !answers.contains_key(index) {
            let path = files.values().next().expect("at least one file").clone();
            return Err(Error::ImportMismatch {
                path,
                reason: format!(
                    "problem {index} has tensors but no line in {} (the run may have been stopped between \
                     saving a batch's tensors and its answers)",
                    file_name(&qa_path)
                ),
            });
        }
    }

    let mut problems = Vec::with_capacity(answers.len());
    let mut k_seen: Option<(usize, PathBuf)> = None;
    for (index, answer) in answers {
        let expected = |kind| {
            dir.join(
                TensorFileName {
                    problem: index,
                    task: task.clone(),
                    kind,
                    batch_size,
                    dtype: dtype.clone(),
                    max_tokens,
                }
                .render(),
            )
        };
        let files = by_problem.remove(&index).unwrap_or_default();
        let ids_path = files
            .get(&TensorKind::TokenIds)
            .cloned()
            .unwrap_or_else(|| expected(TensorKind::TokenIds));
        let lp_path = files
            .get(&TensorKind::Logprobs)
            .cloned()
            .unwrap_or_else(|| expected(TensorKind::Logprobs));
        for p in [&ids_path, &lp_path] {
            if !p.exists() {
                return Err(Error::ImportMismatch {
                    path: p.clone(),
                    reason: format!(
                        "missing: {} line {} has problem {index}, but this tensor file is not there",
                        file_name(&qa_path),
                        answer.line
                    ),
                });
            }
        }
        let (ids_shape, ids) = match read_torch_tensor(&ids_path)? {
            Tensor2::I64 { shape, data } => (shape, data),
            Tensor2::F32 { .. } => {
                return Err(Error::TorchFile {
                    path: ids_path,
                    reason: "holds float32 values; token ids are int64".into(),
                })
            }
        };
        let (lp_shape, lps) = match read_torch_tensor(&lp_path)? {
            Tensor2::F32 { shape, data } => (shape, data),
            Tensor2::I64 { .. } => {
                return Err(Error::TorchFile {
                    path: lp_path,
                    reason: "holds int64 values; logprobs are float32".into(),
                })
            }
        };
        if ids_shape != lp_shape {
            return Err(Error::ImportMismatch {
                path: lp_path,
                reason: format!(
                    "shape {:?} but the token ids in {} have shape {:?}",
                    lp_shape,
                    file_name(&ids_path),
                    ids_shape
                ),
            });
        }
        let [n, k] = ids_shape;
        if k == 0 {
            return Err(Error::TorchFile {
                path: ids_path,
                reason: format!("shape [{n}, 0]: no candidates per position"),
            });
        }
        match &k_seen {
            Some((k0, first)) if *k0 != k => {
                return Err(Error::ImportMismatch {
                    path: ids_path,
                    reason: format!(
                        "{k} candidates per position, but {} has {k0}",
                        file_name(first)
                    ),
                })
            }
            None => k_seen = Some((k, ids_path.clone())),
            _ => {}
        }
        let mut candidates = LogprobsRecord::new(index.to_string(), 0, k as u32);
        let mut tokens = Vec::with_capacity(n);
        for row in 0..n {
            let ids_row = &ids[row * k..(row + 1) * k];
            let lp_row = &lps[row * k..(row + 1) * k];
            // The reference code fills a zero tensor; ranks vLLM did not return stay (id 0, logprob 0.0).
            // Only rank 1 can truly have logprob 0 (probability 1), so such a pair after rank 1 is filler.
            let filled = 1 + ids_row[1..]
                .iter()
                .zip(&lp_row[1..])
                .take_while(|&(&id, &lp)| !(id == 0 && lp == 0.0))
                .count();
            let mut row_ids = Vec::with_capacity(filled);
            for (col, &id) in ids_row[..filled].iter().enumerate() {
                let id = u32::try_from(id).map_err(|_| Error::TorchFile {
                    path: ids_path.clone(),
                    reason: format!(
                        "position {row}, rank {}: token id {id} is not a vocabulary index",
                        col + 1
                    ),
                })?;
                row_ids.push(id);
            }
            tokens.push(row_ids[0]);
            candidates.push_position(&row_ids, &lp_row[..filled]);
        }
        problems.push(ReferenceProblem {
            index,
            question: answer.question,
            response: answer.response,
            tokens,
            candidates,
            token_ids_file: ids_path,
            logprobs_file: lp_path,
        });
    }
    let (experiment, model_from_path, script) = experiment_of(dir);
    Ok(ReferenceRun {
        source: dir.to_path_buf(),
        qa_pairs: qa_path,
        task,
        dtype,
        batch_size,
        max_tokens,
        k: k_seen.map_or(5, |(k, _)| k as u32),
        experiment,
        model_from_path,
        script,
        problems,
    })
}

/// Convert the reference run in `source` into a new run directory at `out`, scoring every response with
/// `scorer`. Refuses an `out` that already holds a run.
pub fn import_reference(
    source: &Path,
    out: &Path,
    opts: &ImportOptions,
    scorer: &dyn Scorer,
) -> Result<ImportSummary> {
    let run = read_reference(source, opts)?;
    let samples: Vec<ReferenceSample<'_>> = run
        .problems
        .iter()
        .map(|p| ReferenceSample {
            index: p.index,
            question: &p.question,
            response: &p.response,
        })
        .collect();
    let scored = scorer.score(&samples).map_err(|reason| Error::Scoring {
        path: run.qa_pairs.clone(),
        reason,
    })?;
    if scored.len() != samples.len() {
        return Err(Error::Scoring {
            path: run.qa_pairs.clone(),
            reason: format!(
                "{} responses given, {} verdicts returned",
                samples.len(),
                scored.len()
            ),
        });
    }
    let manifest = build_manifest(&run, opts, &scored, scorer.grades())?;
    let mut dir = RunDir::create(out, manifest, Durability::Flush)?;
    let mut n_correct = 0;
    for (p, s) in run.problems.iter().zip(scored) {
        let finish = if p.tokens.len() >= run.max_tokens as usize {
            FinishReason::Length
        } else {
            FinishReason::Stop
        };
        let mut record = ResponseRecord::new(
            s.problem_id.clone(),
            0,
            0,
            p.response.clone(),
            p.tokens.clone(),
            finish,
        );
        record.score = s.score;
        record.correct = s.correct;
        record.extracted_answer = s.extracted_answer;
        record.score_detail = s.detail;
        n_correct += usize::from(s.correct);
        let lp = LogprobsRecord::from_flat(
            s.problem_id,
            0,
            p.candidates.k(),
            p.candidates.flat_token_ids().to_vec(),
            p.candidates.flat_logprobs().to_vec(),
        );
        dir.append(&record, &lp)?;
    }
    let (_, finished) = file_times(&run);
    let manifest = dir.finish(Finish {
        finished_at: finished,
        throughput_tok_s: None,
    })?;
    Ok(ImportSummary {
        run_dir: out.to_path_buf(),
        manifest,
        n_problems: run.problems.len(),
        n_correct,
    })
}

fn build_manifest(
    run: &ReferenceRun,
    opts: &ImportOptions,
    scored: &[Scored],
    graded: bool,
) -> Result<Manifest> {
    let exp = run.experiment.clone().unwrap_or_default();
    let mut unknown: Vec<&str> = Vec::new();
    if opts.model_info.is_none() {
        unknown.extend([
            "model.revision",
            "model.weight_files",
            "model.tokenizer_sha256",
            "model.architecture",
        ]);
    }
    unknown.extend([
        "policy.table",
        "seed",
        "started_at",
        "responses.prompt_tokens",
    ]);
    let mut warnings = vec![
        "imported from the reference code's output: model files, tokenizer, architecture, seed and prompt \
         lengths are not recorded there (prompt_tokens is 0)"
            .to_string(),
        match &opts.model_info {
            Some(_) => "model files are those of a local copy named at import, not recorded by the run",
            None => "model files unknown: reports compare this run only with runs of unknown model files",
        }
        .to_string(),
        match run.script {
            Some(ReferenceScript::LayerCast) => format!(
                "policy layercast from the output folder ({}, written by {}); vLLM's per-layer \
                 precision is not recorded",
                ReferenceScript::LayerCast.folder(),
                ReferenceScript::LayerCast.file()
            ),
            _ => "vLLM's per-layer precision is not recorded; policy is the model dtype only".to_string(),
        },
        "started_at/finished_at are file modification times".to_string(),
    ];
    let model = match opts
        .model_info
        .as_ref()
        .map(|m| m.id.clone())
        .or_else(|| opts.model.clone())
        .or_else(|| run.model_from_path.clone())
    {
        Some(m) => m,
        None => {
            return Err(Error::ReferenceModelUnknown {
                path: run.source.clone(),
            })
        }
    };
    let gpu_type = opts.gpu_type.clone().or(exp.gpu_type.clone());
    let gpus = opts.gpus.or(exp.gpus);
    if gpu_type.is_none() {
        unknown.push("device.name");
        warnings.push("GPU type unknown (not in the experiment name and not given)".into());
    }
    if gpus.is_none() {
        unknown.push("gpu_count");
        unknown.push("tp_size");
        warnings.push(
            "GPU count unknown (not in the experiment name and not given); recorded as 0".into(),
        );
    }
    let mut task = TaskInfo {
        name: opts.task.clone(),
        version: opts.task_version.clone().unwrap_or_default(),
        dataset_sha256: opts.dataset_sha256.clone().unwrap_or_default(),
        dataset_source: opts.dataset_source.clone().unwrap_or_default(),
        n_problems: run.problems.len() as u32,
        problem_ids: scored.iter().map(|s| s.problem_id.clone()).collect(),
    };
    if opts.task_version.is_none() {
        unknown.push("task.version");
    }
    if opts.dataset_sha256.is_none() {
        unknown.push("task.dataset_sha256");
    }
    if task.dataset_source.is_empty() {
        task.dataset_source = format!("reference task {}", run.task);
    }
    if opts.task != run.task {
        warnings.push(format!(
            "the reference code named the task `{}`; imported as reprolm task `{}`",
            run.task, opts.task
        ));
    }
    if let (Some(bs), true) = (exp.batch_size, run.experiment.is_some()) {
        if bs != run.batch_size {
            warnings.push(format!(
                "experiment name `{}` says batch size {bs}, the files say {}; the files are used",
                exp.name, run.batch_size
            ));
        }
    }
    if !graded {
        warnings.push(
            "responses are not scored (no grader given): accuracy metrics mean nothing".into(),
        );
    }
    let short = short_dtype(&run.dtype).unwrap_or(&run.dtype).to_string();
    let mut policy_table = BTreeMap::from([("vllm_dtype".to_string(), run.dtype.clone())]);
    let policy_name = match run.script {
        Some(script @ ReferenceScript::LayerCast) => {
            policy_table.insert("script".to_string(), script.file().to_string());
            "layercast".to_string()
        }
        _ => short,
    };
    let (started, _) = file_times(run);
    let extra = BTreeMap::from([(
        "reference".to_string(),
        json!({
            "experiment": run.experiment.as_ref().map(|e| e.name.clone()),
            "task": run.task,
            "dtype": run.dtype,
            "answers_file": file_name(&run.qa_pairs),
            "problem_indices": run.problems.iter().map(|p| p.index).collect::<Vec<_>>(),
                        "unknown_fields": unknown,
        }),
    )]);
    Ok(Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        reprolm_version: env!("CARGO_PKG_VERSION").to_string(),
        git_revision: None,
        model: opts.model_info.clone().unwrap_or(ModelInfo {
            id: model,
            source: "unknown (imported)".into(),
            revision: None,
            weight_files: Vec::new(),
            tokenizer_sha256: String::new(),
            architecture: String::new(),
        }),
        task,
        policy: PolicyInfo {
            name: policy_name,
            table: policy_table,
        },
        device: DeviceInfo {
            kind: "cuda".into(),
            name: gpu_type.unwrap_or_else(|| "unknown".into()),
        },
        tp_size: gpus.unwrap_or(0),
        gpu_count: gpus.unwrap_or(0),
        batch_size: run.batch_size,
        // The reference code submits fixed chunks of batch_size prompts in dataset order.
        batching_mode: BatchingMode::Static,
        kernels: Default::default(),
        // The reference code's default; its output does not record the seed actually passed.
        seed: 42,
        sampling: SamplingParams::greedy(),
        max_tokens: run.max_tokens,
        logprobs_k: run.k,
        started_at: started,
        finished_at: None,
        tokens_generated: 0,
        throughput_tok_s: None,
        origin: Origin::Imported {
            tool: opts
                .tool
                .clone()
                .unwrap_or_else(|| REFERENCE_TOOL.to_string()),
            source: run.source.display().to_string(),
        },
        warnings,
        extra,
    })
}

/// Earliest and latest modification time of the run's files, RFC 3339 UTC; the only times the output keeps.
fn file_times(run: &ReferenceRun) -> (String, String) {
    let files = run
        .problems
        .iter()
        .flat_map(|p| [&p.token_ids_file, &p.logprobs_file])
        .chain([&run.qa_pairs]);
    let times: Vec<chrono::DateTime<chrono::Utc>> = files
        .filter_map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .map(chrono::DateTime::<chrono::Utc>::from)
        .collect();
    let fmt = |t: Option<&chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    };
    (fmt(times.iter().min()), fmt(times.iter().max()))
}

/// One line of the answers file.
struct Answer {
    line: usize,
    question: serde_json::Value,
    response: String,
}

fn read_qa_pairs(path: &Path) -> Result<BTreeMap<u64, Answer>> {
    #[derive(serde::Deserialize)]
    struct Line {
        problem_id: u64,
        question: serde_json::Value,
        model_answer: String,
    }
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut out: BTreeMap<u64, Answer> = BTreeMap::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_err(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(&line).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            line: Some(i + 1),
            source,
        })?;
        if let Some(prev) = out.get(&parsed.problem_id) {
            return Err(Error::BadRecord {
                path: path.to_path_buf(),
                record: format!("line {}", i + 1),
                field: "problem_id",
                reason: format!(
                    "problem {} already appears on line {}",
                    parsed.problem_id, prev.line
                ),
            });
        }
        out.insert(
            parsed.problem_id,
            Answer {
                line: i + 1,
                question: parsed.question,
                response: parsed.model_answer,
            },
        );
    }
    if out.is_empty() {
        return Err(Error::NotReferenceOutput {
            path: path.to_path_buf(),
            reason: "the answers file is empty".into(),
        });
    }
    Ok(out)
}

/// The experiment name on the path, the model id the part below it spells, and the script that wrote it.
/// The reference code writes to `outputs/vllm_main/{exp_name}/{model}` (`vllm_layercast` for LayerCast), so
/// below such a folder the layout decides even for a name like `baseline`; elsewhere `dir`, its parent or
/// grandparent (model ids hold one `/`) must look like an experiment name.
fn experiment_of(
    dir: &Path,
) -> (
    Option<ExperimentName>,
    Option<String>,
    Option<ReferenceScript>,
) {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let parts: Vec<String> = dir
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    let script_at = parts.iter().enumerate().rev().find_map(|(at, p)| {
        [ReferenceScript::Main, ReferenceScript::LayerCast]
            .into_iter()
            .find(|s| s.folder() == p)
            .map(|s| (at, s))
    });
    if let Some((at, script)) = script_at {
        if at + 2 < parts.len() {
            let name = &parts[at + 1];
            let exp = ExperimentName::parse(name).unwrap_or_else(|| ExperimentName {
                name: name.clone(),
                rest: vec![name.clone()],
                ..Default::default()
            });
            return (Some(exp), Some(parts[at + 2..].join("/")), Some(script));
        }
    }
    for up in 0..3.min(parts.len()) {
        let at = parts.len() - 1 - up;
        if let Some(e) = ExperimentName::parse(&parts[at]) {
            let model = (up > 0).then(|| parts[at + 1..].join("/"));
            return (Some(e), model, None);
        }
    }
    (None, None, None)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_and_experiment_from_the_reference_layout() {
        let (e, m, script) = experiment_of(Path::new(
            "/x/outputs/vllm_main/baseline/deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
        ));
        let e = e.unwrap();
        assert_eq!((e.name.as_str(), e.gpus), ("baseline", None));
        assert_eq!(
            m.as_deref(),
            Some("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B")
        );
        assert_eq!(script, Some(ReferenceScript::Main));
        let (e, m, script) = experiment_of(Path::new(
            "/x/outputs/vllm_layercast/2a100_math500_fp32_bs8/Qwen/Qwen3-8B",
        ));
        assert_eq!(
            (e.unwrap().gpus, m.as_deref(), script),
            (
                Some(2),
                Some("Qwen/Qwen3-8B"),
                Some(ReferenceScript::LayerCast)
            )
        );

        let (e, m, _) = experiment_of(Path::new("/data/4h100_aime24_fp16_bs64/Qwen/Qwen3-8B"));
        let e = e.unwrap();
        assert_eq!(
            (e.gpus, e.gpu_type.as_deref(), e.batch_size),
            (Some(4), Some("H100"), Some(64))
        );
        assert_eq!(m.as_deref(), Some("Qwen/Qwen3-8B"));

        let (e, m, _) = experiment_of(Path::new("/data/2a100_math500_bf16_bs8"));
        assert_eq!((e.unwrap().batch_size, m), (Some(8), None));

        assert_eq!(
            experiment_of(Path::new("/data/some/where")),
            (None, None, None)
        );
    }
}
