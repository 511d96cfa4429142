//! `reprolm run`: check the run directory against the model's files (read, not loaded), load the model
//! once if any sample is missing, hand the prompts to the engine's scheduler (static or continuous
//! batches), score each finished sample through its task and append it to the run directory at once.
//!
//! Resuming generates only the samples that are missing: a sequence's numbers do not depend on its
//! batch (the default kernels; `Decoder::batch_invariant`), so the resumed files are byte for byte
//! the ones an uninterrupted run writes. With the batch-dependent kernels (`--kernels heuristic`) the
//! batches of the uninterrupted run are replayed instead: a static chunk with any sample missing is
//! generated again as a whole, and a continuous run replays its schedule from the start until every
//! missing sample is done. The manifest records which of the two a run has (its `resume` key).
//! Samples already on disk are never written twice.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use reprolm_engine::parallel::TpMode;
use reprolm_engine::{
    device_label, device_name, Batching, ChatOptions, Generation, LoadOptions, Model,
    ModelIdentity, Request, ResolveOptions, Scheduler,
};
use reprolm_metrics::run_dir::{
    BatchingMode, DeviceInfo, Durability, Finish, FinishReason, LogprobsRecord, Manifest,
    ModelInfo, Origin, PolicyInfo, ResponseRecord, RunDir, SampleKey, SamplingParams, TaskInfo,
    WeightFile, MANIFEST_FILE, MANIFEST_FORMAT_VERSION,
};
use reprolm_metrics::LoadedRun;
use reprolm_tasks::{Dataset, Problem, Score, Task};
use serde_json::json;

use crate::config::{RunConfig, Selection};
use crate::interrupt;
use crate::progress::{OutputMode, Progress};

/// Manifest key (outside the shared schema) holding the task settings `reprolm score` reloads with.
pub const TASK_OPTIONS_KEY: &str = "task_options";

/// The manifest's `extra` key saying what a resumed session generates: `missing-only` (the
/// kernels are batch invariant, so the missing samples alone give the uninterrupted run's bytes)
/// or `replay` (batch-dependent kernels: the uninterrupted run's batches are generated again).
pub const RESUME_KEY: &str = "resume";

/// How a run session ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// Every sample is on disk and the manifest is marked finished.
    Finished(Summary),
    /// Stopped by Ctrl-C; re-running the same command resumes.
    Interrupted {
        /// Samples on disk.
        done: usize,
        /// Samples the run needs.
        total: usize,
    },
}

/// The result of a finished run.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Samples recorded.
    pub samples: usize,
    /// Of which correct.
    pub correct: usize,
    /// Tokens generated over all sessions.
    pub tokens: u64,
    /// Generation throughput of this session, if it generated anything.
    pub tok_s: Option<f64>,
    /// Samples whose grading failed (recorded with score 0 and the error).
    pub scoring_errors: usize,
    /// Sequences this session generated (the missing samples; with batch-dependent kernels, the
    /// replayed batches around them too).
    pub generated: usize,
    /// The run was finished before this session, which only read it: said in the result line, so
    /// that a command asked again is seen to have done nothing rather than to have run in no time.
    pub already_finished: bool,
}

/// One request of the run, in generation order.
struct Item<'a> {
    problem: &'a Problem,
    sample_index: u32,
    request: Request,
    /// The prompt as text, recorded with the response (shared by the samples of a problem).
    prompt_text: std::sync::Arc<str>,
}

/// Models and weight digests kept between the runs of one process (a sweep), so runs that share a
/// model, policy and device load it once, and weight files are hashed once however many policies
/// use them. Holds one loaded model at a time.
#[derive(Default)]
pub struct ModelCache {
    loaded: Option<(String, Model)>,
    digests: std::collections::HashMap<Vec<std::path::PathBuf>, Vec<WeightFile>>,
}

impl ModelCache {
    /// What identifies the model of `cfg` in a manifest, and the digests of its weight files: its
    /// files read and hashed (once per set of weight files), the model not loaded.
    fn identity(&mut self, cfg: &RunConfig) -> Result<(ModelIdentity, Vec<WeightFile>)> {
        let identity = ModelIdentity::read(&cfg.model, &ResolveOptions::from_env())
            .with_context(|| format!("--model {}: reading its files", cfg.model_spec))?;
        let weights = identity.files.weights.clone();
        if let std::collections::hash_map::Entry::Vacant(slot) = self.digests.entry(weights) {
            let mut files: Vec<WeightFile> = identity
                .files
                .weight_sha256()
                .context("hashing the weight files")?
                .into_iter()
                .map(|d| WeightFile {
                    name: d.file,
                    sha256: d.sha256,
                    bytes: d.bytes,
                })
                .collect();
            files.sort_by(|a, b| a.name.cmp(&b.name));
            slot.insert(files);
        }
        let digests = self.digests[&identity.files.weights].clone();
        Ok((identity, digests))
    }

    /// The model for `cfg`, loaded (or kept from the previous run when model, policy, device and
    /// parallelism are the same).
    fn model(&mut self, cfg: &RunConfig, mode: OutputMode) -> Result<&Model> {
        let key = format!(
            "{}|{:?}|{}|{:?}",
            cfg.model_spec,
            cfg.policy.table(),
            device_label(&cfg.device),
            cfg.tp()
        );
        if self.loaded.as_ref().is_none_or(|(k, _)| *k != key) {
            self.loaded = None; // free the previous model before loading the next
            mode.note(&format!(
                "loading {} ({} policy, {}{})",
                cfg.model_spec,
                cfg.policy.name,
                device_label(&cfg.device),
                match (cfg.tp_size, cfg.kernels.tp) {
                    (1, TpMode::Standard) => String::new(),
                    (n, m) => format!(", tp {n} {}", m.as_str()),
                }
            ));
            let model = Model::load(
                &cfg.model,
                &LoadOptions {
                    device: cfg.device.clone(),
                    policy: cfg.policy.clone(),
                    resolve: ResolveOptions::from_env(),
                    tp_size: cfg.tp_size,
                    kv_cache: cfg.kv_cache,
                    kernels: cfg.kernels,
                },
            )
            .with_context(|| format!("--model {}: loading", cfg.model_spec))?;
            self.loaded = Some((key, model));
        }
        // The kernels besides the tensor-parallel reduction (part of the key) are a switch on the
        // loaded model: runs differing only in them share the load.
        let model = &mut self.loaded.as_mut().expect("loaded above").1;
        model
            .decoder
            .set_kernels(cfg.kernels)
            .context("--deterministic")?;
        Ok(&self.loaded.as_ref().expect("loaded above").1)
    }
}

/// Execute the run `cfg` describes, resuming whatever its directory already holds.
pub fn execute(cfg: &RunConfig, mode: OutputMode) -> Result<RunOutcome> {
    execute_with(cfg, mode, &mut ModelCache::default())
}

/// [`execute`] with models shared across calls through `cache`.
pub fn execute_with(
    cfg: &RunConfig,
    mode: OutputMode,
    cache: &mut ModelCache,
) -> Result<RunOutcome> {
    let (task, data) = reprolm_tasks::load_task(&cfg.task, &cfg.task_options)
        .with_context(|| format!("--task {}: loading its problems", cfg.task))?;
    let problems = select(&data, &cfg.selection)?;
    // The run directory is checked against the model's files before the model is loaded: a run
    // made with other weights or settings is refused, and a finished one is answered, at once.
    let (identity, weight_files) = cache.identity(cfg)?;
    let manifest = build_manifest(
        cfg,
        &identity,
        weight_files,
        task.as_ref(),
        &data,
        &problems,
    )?;
    // With batch-invariant kernels a sample does not depend on the others, so a larger --limit
    // extends an existing run; otherwise its batches would change, and so would its numbers.
    let invariant = cfg.kernels.batch_invariant();
    if !invariant {
        if let Ok(existing) = Manifest::read(&cfg.out.join(MANIFEST_FILE)) {
            if existing.is_extended_by(&manifest) {
                return Err(crate::usage(format!(
                    "--out {}: the run has {} of the {} problems asked for; a run gets more problems \
                     only with batch-invariant kernels (with these, its batches and so its numbers \
                     would change): pass another --out",
                    cfg.out.display(),
                    existing.task.n_problems,
                    manifest.task.n_problems
                )));
            }
        }
    }
    if let Some(done) = already_finished(cfg, &manifest, &problems)? {
        return Ok(done);
    }
    let open = if invariant {
        RunDir::open_or_extend
    } else {
        RunDir::open_or_create
    };
    // A directory holding another configuration is the command line's fault (a flag changed, --out
    // not): a usage error, status 2. Anything else (a damaged file, no permission) is a failure.
    let (mut run, recovery) = open(&cfg.out, manifest, Durability::Flush).map_err(|e| {
        let what = format!(
            "--out {}: opening the run directory (pass another --out to start a new run there)",
            cfg.out.display()
        );
        match e {
            reprolm_metrics::Error::ConfigMismatch { .. } => crate::usage(format!("{what}: {e}")),
            e => anyhow::Error::new(e).context(what),
        }
    })?;
    if !recovery.is_clean() {
        mode.note(&format!(
            "{}: repaired after an interrupted session: {recovery}",
            cfg.out.display()
        ));
    }

    let completed: BTreeSet<SampleKey> = run.completed_keys().clone();
    let total = problems.len() * cfg.samples as usize;
    let missing = problems
        .iter()
        .flat_map(|p| (0..cfg.samples).map(move |s| SampleKey::new(p.id.clone(), s)))
        .filter(|k| !completed.contains(k))
        .count();
    if missing == 0 {
        return finish_run(cfg, run, missing, None, 0, 0);
    }
    let model = cache.model(cfg, mode)?;
    if !identity.same_files_as(model) {
        bail!(
            "--model {}: its files changed while it was being loaded; run again",
            cfg.model_spec
        );
    }

    let mut items = Vec::with_capacity(total);
    for p in &problems {
        let messages: Vec<reprolm_engine::ChatMessage> = task
            .messages(p)
            .into_iter()
            .map(|m| reprolm_engine::ChatMessage::new(m.role, m.content))
            .collect();
        let prompt = model
            .prompt(&messages, &ChatOptions::default())
            .with_context(|| format!("problem `{}`: building the prompt", p.id))?;
        let prompt_text: std::sync::Arc<str> = model
            .prompt_text(&messages, &ChatOptions::default())
            .with_context(|| format!("problem `{}`: building the prompt", p.id))?
            .into();
        for s in 0..cfg.samples {
            items.push(Item {
                problem: p,
                sample_index: s,
                prompt_text: prompt_text.clone(),
                request: Request {
                    prompt: prompt.clone(),
                    problem_id: p.id.clone(),
                    sample_index: s,
                },
            });
        }
    }
    if missing < total {
        mode.note(&format!(
            "{}: resuming, {} of {total} samples already recorded",
            cfg.out.display(),
            total - missing
        ));
    }

    {
        match task.prepare_scoring() {
            Ok(Some(line)) => line.lines().for_each(|l| mode.note(l)),
            Ok(None) => {}
            Err(e) => mode.note(&format!(
                "warning: {e}; responses will be recorded, graded as wrong with this error"
            )),
        }
    }
    if mode == OutputMode::Json {
        crate::progress::event(
            "start",
            json!({ "out": cfg.out, "samples": total, "recorded": total - missing, "model": cfg.model_spec,
                    "task": cfg.task, "policy": cfg.policy.name, "batch_size": cfg.batch_size,
                    "batching": cfg.batching.to_string() }),
        );
    }
    let mut generator = Generator {
        cfg,
        model,
        task: task.as_ref(),
        items: &items,
        run: &mut run,
        completed,
        progress: Progress::new(
            mode,
            &cfg.out
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            total as u64,
            (total - missing) as u64,
        ),
        session_tokens: 0,
        scoring_errors: 0,
        interrupted: false,
        generated: 0,
    };
    let started = Instant::now();
    let generated = generator.generate();
    generator.progress.finish();
    if let Err(e) = generated {
        let done = run.completed_keys().len();
        return Err(e.context(format!(
            "{}: {done} of {total} samples are recorded; run the same command again to resume",
            cfg.out.display()
        )));
    }
    let (session_tokens, scoring_errors, interrupted, generated) = (
        generator.session_tokens,
        generator.scoring_errors,
        generator.interrupted,
        generator.generated,
    );
    let done = run.completed_keys().len();
    if interrupted {
        return Ok(RunOutcome::Interrupted { done, total });
    }
    if done < total {
        bail!(
            "{}: {done} of {total} samples recorded after generation; this is a bug",
            cfg.out.display()
        );
    }
    let tok_s =
        (session_tokens > 0).then(|| session_tokens as f64 / started.elapsed().as_secs_f64());
    finish_run(cfg, run, missing, tok_s, scoring_errors, generated)
}

/// Marks the run finished (when this session added samples, or it never was), writes its
/// results.json and reads it back for the summary.
/// A run directory that already holds this configuration, finished, clean and with every sample
/// asked for, answered from its files without opening any of them for writing: it may be an
/// archive in a read-only directory. `None` when anything is left to do (missing samples, a torn
/// tail to repair, another configuration), which the normal path then handles or refuses.
fn already_finished(
    cfg: &RunConfig,
    manifest: &Manifest,
    problems: &[&Problem],
) -> Result<Option<RunOutcome>> {
    let Ok(existing) = Manifest::read(&cfg.out.join(MANIFEST_FILE)) else {
        return Ok(None);
    };
    if existing.finished_at.is_none() || !existing.diff_config(manifest).is_empty() {
        return Ok(None);
    }
    let Ok(loaded) = LoadedRun::load(&cfg.out) else {
        return Ok(None);
    };
    if !loaded.notes.is_empty() {
        return Ok(None);
    }
    let have: BTreeSet<SampleKey> = loaded.records.iter().map(|r| r.key()).collect();
    let asked = problems.len() * cfg.samples as usize;
    let complete = have.len() == asked
        && problems
            .iter()
            .all(|p| (0..cfg.samples).all(|s| have.contains(&SampleKey::new(p.id.clone(), s))));
    if !complete {
        return Ok(None);
    }
    // results.json is written only when its bytes would change (a run finished by an older
    // version).
    let mut outcome = finished(cfg, &loaded, None, 0, 0)?;
    if let RunOutcome::Finished(s) = &mut outcome {
        s.already_finished = true;
    }
    Ok(Some(outcome))
}

fn finish_run(
    cfg: &RunConfig,
    run: RunDir,
    missing: usize,
    tok_s: Option<f64>,
    scoring_errors: usize,
    generated: usize,
) -> Result<RunOutcome> {
    let finished_before = run.manifest().finished_at.is_some();
    if !finished_before || missing > 0 {
        let throughput_tok_s = tok_s.or(run.manifest().throughput_tok_s);
        run.finish(Finish {
            finished_at: now(),
            throughput_tok_s,
        })
        .with_context(|| format!("{}: writing the manifest", cfg.out.display()))?;
    }
    let loaded =
        LoadedRun::load(&cfg.out).with_context(|| format!("reading back {}", cfg.out.display()))?;
    finished(cfg, &loaded, tok_s, scoring_errors, generated)
}

/// The outcome of the finished run `loaded` (at `cfg.out`), after writing its results.json
/// (only when the bytes change).
fn finished(
    cfg: &RunConfig,
    loaded: &LoadedRun,
    tok_s: Option<f64>,
    scoring_errors: usize,
    generated: usize,
) -> Result<RunOutcome> {
    reprolm_metrics::results::write(&cfg.out).with_context(|| {
        format!(
            "{}: writing {}",
            cfg.out.display(),
            reprolm_metrics::results::RESULTS_FILE
        )
    })?;
    Ok(RunOutcome::Finished(Summary {
        samples: loaded.records.len(),
        correct: loaded.records.iter().filter(|r| r.correct).count(),
        tokens: loaded.manifest.tokens_generated,
        tok_s,
        scoring_errors,
        generated,
        already_finished: false,
    }))
}

/// The problems `selection` picks, in run order.
fn select<'a>(data: &'a Dataset, selection: &Selection) -> Result<Vec<&'a Problem>> {
    Ok(match selection {
        Selection::All => data.problems.iter().collect(),
        Selection::First(n) => data.problems.iter().take(*n).collect(),
        Selection::Ids(ids) => {
            let mut out = Vec::new();
            for id in ids {
                let p = data.get(id).ok_or_else(|| {
                    let some: Vec<&str> = data.problems.iter().take(5).map(|p| p.id.as_str()).collect();
                    anyhow::Error::new(crate::UsageError(format!(
                        "--problems: task `{}` has no problem `{id}` ({} problems; the first ids are {})",
                        data.task,
                        data.problems.len(),
                        some.join(", ")
                    )))
                })?;
                out.push(p);
            }
            out
        }
    })
}

/// RFC 3339 UTC, as manifests record times.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The git revision this binary was built from (see build.rs).
pub fn git_revision() -> Option<String> {
    option_env!("REPROLM_GIT_REVISION").map(str::to_string)
}

fn build_manifest(
    cfg: &RunConfig,
    model: &ModelIdentity,
    weight_files: Vec<WeightFile>,
    task: &dyn Task,
    data: &Dataset,
    problems: &[&Problem],
) -> Result<Manifest> {
    let (id, source) = match &cfg.model {
        reprolm_engine::ModelSource::Local(p) => {
            let abs = p.canonicalize().unwrap_or_else(|_| p.clone());
            (
                crate::config::model_name(&cfg.model),
                abs.display().to_string(),
            )
        }
        reprolm_engine::ModelSource::Hub { repo, .. } => (repo.clone(), "hf-hub".to_string()),
    };
    let mut extra = std::collections::BTreeMap::new();
    extra.insert(TASK_OPTIONS_KEY.to_string(), cfg.task_record());
    if let Some(p) = crate::slurm::placement::SlurmPlacement::from_env() {
        extra.insert(
            crate::slurm::placement::MANIFEST_KEY.to_string(),
            p.to_json(),
        );
    }
    let resume = if cfg.kernels.batch_invariant() {
        "missing-only"
    } else {
        "replay"
    };
    extra.insert(RESUME_KEY.to_string(), json!(resume));
    Ok(Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        reprolm_version: env!("CARGO_PKG_VERSION").to_string(),
        git_revision: git_revision(),
        model: ModelInfo {
            id,
            source,
            revision: model.files.commit.clone(),
            weight_files,
            tokenizer_sha256: model.tokenizer_sha256.clone(),
            architecture: model.architecture.class_name().to_string(),
        },
        task: TaskInfo {
            name: task.name().to_string(),
            version: task.version().to_string(),
            dataset_sha256: data.sha256(),
            dataset_source: data.source.clone(),
            n_problems: problems.len() as u32,
            problem_ids: problems.iter().map(|p| p.id.clone()).collect(),
        },
        policy: PolicyInfo {
            name: cfg.policy.name.clone(),
            table: cfg
                .policy
                .table()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        },
        device: DeviceInfo {
            kind: device_label(&cfg.device),
            name: device_name(&cfg.device),
        },
        tp_size: cfg.tp_size as u32,
        gpu_count: if cfg.device.is_cuda() {
            cfg.tp_size as u32
        } else {
            0
        },
        batch_size: cfg.batch_size,
        batching_mode: cfg.batching,
        kernels: cfg
            .kernels
            .recorded(&cfg.device, &cfg.policy, model.head_dim),
        seed: cfg.seed,
        sampling: SamplingParams {
            temperature: cfg.temperature,
            top_p: cfg.top_p,
            top_k: cfg.top_k,
            min_p: cfg.min_p,
            n_samples: cfg.samples,
        },
        max_tokens: cfg.max_tokens,
        logprobs_k: cfg.logprobs,
        started_at: now(),
        finished_at: None,
        tokens_generated: 0,
        throughput_tok_s: None,
        origin: Origin::Reprolm,
        warnings: Vec::new(),
        extra,
    })
}

struct Generator<'a, 'r> {
    cfg: &'a RunConfig,
    model: &'a Model,
    task: &'a dyn Task,
    items: &'a [Item<'a>],
    run: &'r mut RunDir,
    completed: BTreeSet<SampleKey>,
    progress: Progress,
    session_tokens: u64,
    scoring_errors: usize,
    interrupted: bool,
    generated: usize,
}

impl Generator<'_, '_> {
    fn params(&self) -> reprolm_engine::SamplingParams {
        reprolm_engine::SamplingParams {
            temperature: self.cfg.temperature,
            top_p: self.cfg.top_p,
            top_k: self.cfg.top_k as usize,
            min_p: self.cfg.min_p,
            max_tokens: self.cfg.max_tokens as usize,
            seed: self.cfg.seed,
            logprobs: self.cfg.logprobs as usize,
            stop_token_ids: self.model.generation_config.eos_token_ids.clone(),
        }
    }

    fn key(&self, i: usize) -> SampleKey {
        SampleKey::new(self.items[i].problem.id.clone(), self.items[i].sample_index)
    }

    /// The requests this session generates, in submission order: the missing samples alone
    /// when the kernels are batch invariant; otherwise the batches of an uninterrupted run that
    /// hold a missing sample (every static chunk with one; the whole schedule of a continuous
    /// run), so that each missing sample sees the batches it would have seen.
    fn to_generate(&self) -> Vec<usize> {
        let missing = |i: &usize| !self.completed.contains(&self.key(*i));
        let all = 0..self.items.len();
        if self.model.decoder.batch_invariant() {
            return all.filter(missing).collect();
        }
        match self.cfg.batching {
            BatchingMode::Static => {
                let b = self.cfg.batch_size as usize;
                let chunks: Vec<usize> = all.collect();
                chunks
                    .chunks(b)
                    .filter(|c| c.iter().any(missing))
                    .flatten()
                    .copied()
                    .collect()
            }
            BatchingMode::Continuous if all.clone().any(|i| missing(&i)) => all.collect(),
            BatchingMode::Continuous => Vec::new(),
        }
    }

    /// Runs the requests of [`to_generate`](Self::to_generate) through the engine's scheduler,
    /// recording each sample as it finishes, until every missing sample is recorded (or Ctrl-C).
    fn generate(&mut self) -> Result<()> {
        let batching = match self.cfg.batching {
            BatchingMode::Static => Batching::Static,
            BatchingMode::Continuous => Batching::Continuous,
        };
        let mut scheduler = Scheduler::new(
            &self.model.decoder,
            self.params(),
            batching,
            self.cfg.batch_size as usize,
        )?
        .with_prefill_tokens(self.cfg.max_prefill_tokens)?;
        let mut missing = 0;
        for i in self.to_generate() {
            missing += usize::from(!self.completed.contains(&self.key(i)));
            scheduler.submit(i, self.items[i].request.clone());
        }
        let mut preemptions = 0;
        while missing > 0 && !scheduler.is_done() {
            let finished = scheduler.step().context("generating")?;
            self.generated += finished.len();
            self.session_tokens = scheduler.tokens_generated() as u64;
            self.progress.tokens(self.session_tokens);
            if scheduler.preemptions() > preemptions {
                if preemptions == 0 {
                    let cache = scheduler.cache();
                    self.progress.note(&format!(
                        "note: the KV cache is full ({} tokens, {}); sequences are preempted and \
                         recomputed later, which costs time but not a bit of their results \
                         (--kv-cache-memory gives it more room)",
                        cache.capacity_tokens(),
                        reprolm_precision::format_bytes(cache.bytes() as u64)
                    ));
                }
                preemptions = scheduler.preemptions();
            }
            missing -= self.record(finished)?;
            if interrupt::requested() {
                self.interrupted = true;
                break;
            }
        }
        Ok(())
    }

    /// Score and append finished sequences not yet on disk, in the order they finished; returns how
    /// many were appended. The sequences that finished in one step are graded together
    /// (`Task::score_many`, in parallel), which matters for code tasks whose tests take seconds.
    fn record(&mut self, finished: Vec<(usize, Generation)>) -> Result<usize> {
        let mut pending = Vec::new();
        for (i, g) in finished {
            let key = self.key(i);
            if self.completed.contains(&key) {
                continue;
            }
            let item = &self.items[i];
            let text = self
                .model
                .decode(&g.token_ids)
                .with_context(|| format!("{key}: decoding the response"))?;
            let finish = match g.finish_reason {
                reprolm_engine::FinishReason::Stop => FinishReason::Stop,
                reprolm_engine::FinishReason::Length => FinishReason::Length,
                reprolm_engine::FinishReason::PromptTooLong => FinishReason::PromptTooLong,
            };
            let mut rec = ResponseRecord::new(
                item.problem.id.clone(),
                item.sample_index,
                g.prompt_tokens as u32,
                text,
                g.token_ids.clone(),
                finish,
            );
            rec.question = item.problem.metadata_str("question").map(str::to_string);
            rec.gold_answer = self.task.reference_answer(item.problem);
            rec.prompt = Some(item.prompt_text.to_string());
            pending.push((i, key, rec, g));
        }
        let task = self.task;
        let context = self.model.decoder.spec().max_position_embeddings;
        // A prompt over the context has nothing to grade: its record says why, scored as wrong.
        let too_long =
            |g: &Generation| g.finish_reason == reprolm_engine::FinishReason::PromptTooLong;
        let inputs: Vec<(&Problem, &str)> = pending
            .iter()
            .filter(|(_, _, _, g)| !too_long(g))
            .map(|(i, _, rec, _)| (self.items[*i].problem, rec.response.as_str()))
            .collect();
        let graded: Vec<std::result::Result<Score, String>> = match task.score_many(&inputs) {
            Ok(all) => all.into_iter().map(Ok).collect(),
            // One failure fails the batch call; grade one by one to find which.
            Err(_) => inputs
                .iter()
                .map(|(p, r)| task.score(p, r).map_err(|e| e.to_string()))
                .collect(),
        };
        let mut graded = graded.into_iter();
        let scores: Vec<std::result::Result<Score, String>> = pending
            .iter()
            .map(|(_, key, _, g)| {
                if too_long(g) {
                    Err(format!(
                        "{key}: the prompt has {} tokens, more than the model's context of \
                         {context}; nothing was generated (finish reason prompt_too_long)",
                        g.prompt_tokens
                    ))
                } else {
                    graded.next().expect("one grade per graded response")
                }
            })
            .collect();
        let mut appended = 0;
        for ((i, key, mut rec, g), score) in pending.into_iter().zip(scores) {
            let item = &self.items[i];
            match score {
                Ok(s) => {
                    rec.score = s.score.clamp(0.0, 1.0);
                    rec.correct = s.correct;
                    rec.extracted_answer = s.extracted;
                    rec.score_detail = s.detail;
                }
                Err(e) if rec.finish_reason == FinishReason::PromptTooLong => {
                    self.progress
                        .note(&format!("warning: {e}; recorded as wrong"));
                    rec.score_detail = json!({ "error": e });
                }
                Err(e) => {
                    self.scoring_errors += 1;
                    self.progress.note(&format!(
                        "warning: {key}: grading failed, recorded as wrong: {e}"
                    ));
                    rec.score_detail = json!({ "error": e });
                }
            }
            let lp = LogprobsRecord::from_flat(
                item.problem.id.clone(),
                item.sample_index,
                g.k as u32,
                g.top_ids,
                g.top_logprobs,
            );
            self.run
                .append(&rec, &lp)
                .with_context(|| format!("{}: recording {key}", self.cfg.out.display()))?;
            self.progress.sample_done(
                &item.problem.id,
                item.sample_index,
                rec.token_ids.len(),
                rec.correct,
            );
            self.completed.insert(key);
            appended += 1;
        }
        Ok(appended)
    }
}

/// `reprolm run` as a command: run, then print the outcome. Returns the exit status.
pub fn command(cfg: &RunConfig, mode: OutputMode) -> Result<i32> {
    let outcome = execute(cfg, mode)?;
    Ok(report_outcome(&cfg.out, &outcome, mode))
}

/// Print a run's outcome; the exit status it implies.
pub fn report_outcome(out: &Path, outcome: &RunOutcome, mode: OutputMode) -> i32 {
    match outcome {
        RunOutcome::Finished(s) => {
            let acc = s.correct as f64 / s.samples.max(1) as f64;
            let speed = s
                .tok_s
                .map(|t| format!(", {t:.0} tok/s"))
                .unwrap_or_default();
            let errors = if s.scoring_errors > 0 {
                format!("; {} samples could not be graded", s.scoring_errors)
            } else {
                String::new()
            };
            let state = if s.already_finished {
                "already finished, nothing to do: "
            } else {
                ""
            };
            mode.result(
                &format!(
                    "{}: {state}{} samples, accuracy {acc:.3} ({}/{}), {} tokens{speed}{errors}",
                    out.display(),
                    s.samples,
                    s.correct,
                    s.samples,
                    s.tokens
                ),
                "finished",
                json!({
                    "out": out, "samples": s.samples, "correct": s.correct, "accuracy": acc,
                    "tokens": s.tokens, "tok_s": s.tok_s, "scoring_errors": s.scoring_errors,
                    "generated": s.generated, "already_finished": s.already_finished,
                }),
            );
            i32::from(s.scoring_errors > 0)
        }
        RunOutcome::Interrupted { done, total } => {
            mode.result(
                &format!(
                    "{}: interrupted with {done} of {total} samples recorded; run the same command again to resume",
                    out.display()
                ),
                "interrupted",
                json!({ "out": out, "done": done, "total": total }),
            );
            interrupt::EXIT_INTERRUPTED
        }
    }
}
