//! `reprolm sweep FILE.toml`: the product of the axes as run directories under one root.
//!
//! ```toml
//! root = "runs/batch-sweep"            # optional
//! [base]                               # settings shared by every run: `reprolm run` flag names
//! task = "arith"
//! max_tokens = 256
//! limit = 16
//! [axes]                               # one list per varied setting; the runs are their product
//! policy = ["fp32", "bf16"]
//! batch_size = [1, 8]
//! tp = [1, 2, 4]                       # tensor-parallel size (GPU count; on cpu, rank threads)
//! deterministic = [false, true]        # a switch: `true` passes --deterministic
//! kernels = ["invariant", "heuristic"] # batch-invariant kernels, or those other engines use
//! fused_kernels = ["on", "off"]        # fused GPU kernels, or the composed ops
//! gemm = ["cublaslt", "mma"]           # the batch-invariant GEMM of 16-bit projections on CUDA
//! cuda_graphs = ["on", "off"]          # decode steps as CUDA graphs, or kernel by kernel
//! ```
//! Each combination becomes the `reprolm run` flags it spells (`batch_size = 8` is `--batch-size 8`), so
//! a sweep accepts exactly what `run` accepts and refuses what `run` refuses. A run's directory is
//! `ROOT/<run name>`, a name made from the values only (see `RunConfig::run_name`), so adding an axis
//! value later leaves the existing names alone. Finished runs are skipped, unfinished ones resumed,
//! and a failing run is reported at the end without stopping the others. Runs sharing a model,
//! policy and device run back to back and share one loaded model.
//!
//! The configurations are numbered 1..=N in the order they run; `--only INDEX` runs one of them, which
//! is how a Slurm array task (`--executor slurm`, see `crate::slurm`) picks its run, so both executors
//! make the same run directories.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use reprolm_metrics::run_dir::{Manifest, MANIFEST_FILE};
use serde_json::json;

use crate::args::{Cli, Command, ExecutorArg, RunArgs, SweepAction, SweepArgs};
use crate::commands::run::{self, RunOutcome};
use crate::config::RunConfig;
use crate::interrupt;
use crate::progress::OutputMode;

/// The settings a run key may take; anything else is refused before any run starts.
const KEYS: &[&str] = &[
    "model",
    "task",
    "data",
    "task_param",
    "policy",
    "batch_size",
    "batching",
    "seed",
    "max_tokens",
    "samples",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "logprobs",
    "device",
    "tp",
    "tp_mode",
    "deterministic",
    "kernels",
    "fused_kernels",
    "pick",
    "gemm",
    "cuda_graphs",
    "limit",
    "problems",
];

/// One planned run.
pub(crate) struct Planned {
    /// The settings of this combination, for messages.
    pub label: String,
    /// The resolved configuration, or why it could not be resolved.
    pub config: Result<RunConfig>,
}

/// A sweep file resolved: where its runs go and each configuration, in run order (`--only INDEX`
/// names `runs[INDEX - 1]`).
pub(crate) struct SweepPlan {
    /// The sweep file as given, for messages.
    pub file: String,
    /// Root of the run directories.
    pub root: PathBuf,
    /// The configurations.
    pub runs: Vec<Planned>,
}

impl SweepPlan {
    /// The 1-based numbers to run: all, or the one `--only` names.
    pub fn selected(&self, only: Option<usize>) -> Result<Vec<usize>> {
        match only {
            None => Ok((1..=self.runs.len()).collect()),
            Some(i) if (1..=self.runs.len()).contains(&i) => Ok(vec![i]),
            Some(i) => bail!(
                "--only {i}: sweep file {} has configurations 1 to {}",
                self.file,
                self.runs.len()
            ),
        }
    }
}

/// The sweep's plan, with `--only` and the executor's flags checked against it (`None` for
/// `sweep status`, which reads what the sweep recorded instead). Every error here is one of usage.
pub fn resolve(args: &SweepArgs) -> Result<Option<SweepPlan>> {
    if let Some(SweepAction::Status(s)) = &args.action {
        if !s.root.exists() {
            bail!("sweep root {}: no such file or directory", s.root.display());
        }
        return Ok(None);
    }
    let file = args
        .file
        .as_deref()
        .context("a sweep file is required (clap enforces it)")?;
    let plan = plan(file, args.root.as_deref())?;
    plan.selected(args.only)?;
    if args.executor == ExecutorArg::Local {
        if let Some(flag) = crate::slurm::submit::slurm_only_flag(&args.slurm) {
            bail!("{flag} applies to --executor slurm only");
        }
    }
    Ok(Some(plan))
}

/// Run the sweep `plan` (from [`resolve`]), or show its status; the exit status is 0 when every
/// run finished.
pub fn command(args: &SweepArgs, plan: Option<SweepPlan>, mode: OutputMode) -> Result<i32> {
    if let Some(SweepAction::Status(s)) = &args.action {
        let root = std::path::absolute(&s.root)
            .with_context(|| format!("resolving {}", s.root.display()))?;
        if crate::slurm::jobs::read(&root)?.is_empty() {
            if let Some(local) = read_local_record(&root)? {
                return local_status(&root, &local, mode);
            }
        }
        return crate::slurm::status::command(s, mode);
    }
    let plan = plan.context("a sweep plan is required to run a sweep")?;
    match args.executor {
        ExecutorArg::Slurm => crate::slurm::submit::command(&plan, args, mode),
        ExecutorArg::Local => run_local(&plan, args, mode),
    }
}

/// Read and resolve a sweep file; `root` overrides the file's own.
pub(crate) fn plan(path: &Path, root: Option<&Path>) -> Result<SweepPlan> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading sweep file {}", path.display()))?;
    let doc: toml::Table = toml::from_str(&text)
        .with_context(|| format!("sweep file {}: not valid TOML", path.display()))?;
    let file = path.display().to_string();
    for key in doc.keys() {
        if !["root", "base", "axes"].contains(&key.as_str()) {
            bail!("sweep file {file}: unknown top-level key `{key}`; expected root, [base] and [axes]");
        }
    }
    let root = match (root, doc.get("root")) {
        (Some(r), _) => r.to_path_buf(),
        (None, Some(toml::Value::String(r))) => PathBuf::from(r),
        (None, Some(other)) => bail!(
            "sweep file {file}: `root` must be a string, got {}",
            other.type_str()
        ),
        (None, None) => Path::new("runs").join(
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or("sweep".into()),
        ),
    };
    let table = |name: &str| -> Result<toml::Table> {
        match doc.get(name) {
            None => Ok(toml::Table::new()),
            Some(toml::Value::Table(t)) => Ok(t.clone()),
            Some(v) => bail!(
                "sweep file {file}: `{name}` must be a table, got {}",
                v.type_str()
            ),
        }
    };
    let base = table("base")?;
    let axes = table("axes")?;
    for (section, t) in [("base", &base), ("axes", &axes)] {
        for key in t.keys() {
            if key == "out" {
                bail!("sweep file {file}: [{section}] `out` cannot be set; run directories are named under the root");
            }
            if let Some(hint) = paper_spelling(key) {
                bail!("sweep file {file}: [{section}] unknown setting `{key}`: {hint}");
            }
            if !KEYS.contains(&key.as_str()) {
                bail!(
                    "sweep file {file}: [{section}] unknown setting `{key}`; known: {}",
                    KEYS.join(", ")
                );
            }
        }
    }
    let mut axis_values: Vec<(String, Vec<toml::Value>)> = Vec::new();
    for (key, v) in &axes {
        if base.contains_key(key) {
            bail!("sweep file {file}: `{key}` is both in [base] and in [axes]");
        }
        match v {
            toml::Value::Array(a) if !a.is_empty() => axis_values.push((key.clone(), a.clone())),
            _ => bail!("sweep file {file}: [axes] `{key}` must be a non-empty list"),
        }
    }

    // The product, axes in name order (a TOML table keeps no order), the first one slowest.
    let mut combos: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
    for (key, values) in &axis_values {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push((key.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    let mut planned = Vec::new();
    for combo in combos {
        let label = combo
            .iter()
            .map(|(k, v)| format!("{k}={}", show(v)))
            .collect::<Vec<_>>()
            .join(" ");
        let config = run_args(&base, &combo)
            .with_context(|| format!("sweep file {file}"))
            .and_then(|a| RunConfig::resolve(&a))
            .map(|mut c| {
                c.out = root.join(c.run_name());
                c
            });
        planned.push(Planned {
            label: if label.is_empty() {
                "base".into()
            } else {
                label
            },
            config,
        });
    }
    // Runs that share a model, policy and device run back to back, so the model is loaded once for
    // them (the order does not change any result).
    planned.sort_by_key(|p| {
        p.config.as_ref().ok().map(|c| {
            (
                c.model_spec.clone(),
                format!("{:?}", c.policy.table()),
                reprolm_engine::device_label(&c.device),
                format!("{:?}", c.tp()),
            )
        })
    });
    let mut names = std::collections::BTreeMap::new();
    for p in &planned {
        if let Ok(c) = &p.config {
            if let Some(other) = names.insert(c.out.clone(), p.label.clone()) {
                bail!(
                    "sweep file {file}: `{other}` and `{}` resolve to the same run {}",
                    p.label,
                    c.out.display()
                );
            }
        }
    }

    Ok(SweepPlan {
        file,
        root,
        runs: planned,
    })
}

/// Run the selected configurations one after another in this process.
fn run_local(plan: &SweepPlan, args: &SweepArgs, mode: OutputMode) -> Result<i32> {
    let (file, root, planned) = (&plan.file, &plan.root, &plan.runs);
    let selected = plan.selected(args.only)?;
    mode.note(&format!(
        "sweep {}: {} runs under {}",
        file,
        planned.len(),
        root.display()
    ));
    if !args.dry_run {
        write_local_record(root, Path::new(file))?;
    }
    let mut failed: Vec<(String, String)> = Vec::new();
    let (mut finished, mut skipped) = (0, 0);
    // What a dry run found: runs that would resume (with samples recorded) and that would start.
    let (mut would_resume, mut would_start) = (0, 0);
    let mut models = run::ModelCache::default();
    // Each selected configuration's directory state, read once: it decides what runs, and the runs
    // to do (unfinished) are what the sweep's own progress and ETA count.
    let mut states: Vec<Option<Result<bool>>> = planned
        .iter()
        .enumerate()
        .map(|(i, p)| match &p.config {
            Ok(c) if selected.contains(&(i + 1)) => Some(finished_state(c)),
            _ => None,
        })
        .collect();
    let to_run = states
        .iter()
        .filter(|s| matches!(s, Some(Ok(false))))
        .count();
    // Runs of this session started and ended (finished or failed while running).
    let mut executed = 0usize;
    let started = std::time::Instant::now();
    for (i, p) in planned.iter().enumerate() {
        if !selected.contains(&(i + 1)) {
            continue;
        }
        let head = format!("[{}/{}] {}", i + 1, planned.len(), p.label);
        let cfg = match &p.config {
            Ok(c) => c,
            Err(e) => {
                mode.note(&format!("{head}: failed: {e:#}"));
                failed.push((p.label.clone(), format!("{e:#}")));
                continue;
            }
        };
        match states[i]
            .take()
            .expect("read for every selected configuration")
        {
            Ok(true) => {
                skipped += 1;
                mode.note(&format!(
                    "{head}: {} is finished, skipped",
                    cfg.out.display()
                ));
                continue;
            }
            Ok(false) => {}
            Err(e) => {
                mode.note(&format!("{head}: failed: {e:#}"));
                failed.push((p.label.clone(), format!("{e:#}")));
                continue;
            }
        }
        if args.dry_run {
            let recorded = recorded_samples(&cfg.out);
            if recorded > 0 {
                would_resume += 1;
            } else {
                would_start += 1;
            }
            mode.note(&format!(
                "{head}: would {} {}",
                if recorded > 0 {
                    format!("resume ({recorded} samples recorded) in")
                } else {
                    "run into".to_string()
                },
                cfg.out.display()
            ));
            continue;
        }
        // The sweep's own progress on a line of its own: the `-> DIR` line ends with the directory.
        mode.note(&format!(
            "sweep: {executed} of {to_run} runs to do done, elapsed {}{}",
            crate::progress::clock(started.elapsed().as_secs_f64()),
            match executed {
                0 => String::new(),
                n => format!(
                    ", ETA {}",
                    crate::progress::clock(
                        started.elapsed().as_secs_f64() / n as f64
                            * to_run.saturating_sub(n) as f64
                    )
                ),
            }
        ));
        mode.note(&format!("{head} -> {}", cfg.out.display()));
        executed += 1;
        match run::execute_with(cfg, mode, &mut models) {
            Ok(outcome @ RunOutcome::Finished(_)) => {
                finished += 1;
                run::report_outcome(&cfg.out, &outcome, mode);
            }
            Ok(outcome @ RunOutcome::Interrupted { .. }) => {
                run::report_outcome(&cfg.out, &outcome, mode);
                mode.result(
                    "sweep interrupted; run the same command again to continue",
                    "sweep_interrupted",
                    json!({}),
                );
                return Ok(interrupt::EXIT_INTERRUPTED);
            }
            Err(e) => {
                mode.note(&format!("{head}: failed: {e:#}"));
                failed.push((p.label.clone(), format!("{e:#}")));
            }
        }
    }
    // A dry run's summary says where the sweep stands (after a killed sweep: what is done), not
    // "0 finished now".
    let mut text = if args.dry_run {
        format!(
            "sweep {} (dry run): {} runs: {skipped} finished, {would_resume} would resume, \
             {would_start} would start, {} invalid",
            file,
            selected.len(),
            failed.len()
        )
    } else {
        format!(
            "sweep {}: {} runs: {finished} finished now, {skipped} already finished, {} failed",
            file,
            selected.len(),
            failed.len()
        )
    };
    for (label, err) in &failed {
        text.push_str(&format!("\n  failed: {label}: {err}"));
    }
    let failed_json: Vec<_> = failed
        .iter()
        .map(|(l, e)| json!({"run": l, "error": e}))
        .collect();
    if args.dry_run {
        mode.result(
            &text,
            "sweep_dry_run",
            json!({
                "root": root, "runs": selected.len(), "finished": skipped,
                "would_resume": would_resume, "would_start": would_start, "invalid": failed_json,
            }),
        );
    } else {
        mode.result(
            &text,
            "sweep_finished",
            json!({
                "root": root, "runs": selected.len(), "finished": finished, "skipped": skipped,
                "failed": failed_json,
            }),
        );
    }
    Ok(i32::from(!failed.is_empty()))
}

/// File name, under a local sweep's root, of the record `sweep status` reads.
pub const LOCAL_RECORD: &str = "sweep-local.json";

/// What a local sweep leaves in its root so that `sweep status ROOT` can list its runs: the sweep
/// file and the directory its relative paths are relative to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct LocalRecord {
    /// The sweep file, absolute.
    pub sweep_file: PathBuf,
    /// The working directory of the sweep.
    pub workdir: PathBuf,
}

fn write_local_record(root: &Path, file: &Path) -> Result<()> {
    let record = LocalRecord {
        sweep_file: std::path::absolute(file)
            .with_context(|| format!("resolving {}", file.display()))?,
        workdir: std::env::current_dir().context("the working directory")?,
    };
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let path = root.join(LOCAL_RECORD);
    std::fs::write(&path, serde_json::to_string_pretty(&record)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

fn read_local_record(root: &Path) -> Result<Option<LocalRecord>> {
    let path = root.join(LOCAL_RECORD);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| {
            format!("{}: not a local sweep record", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// `sweep status ROOT` for a sweep run locally: each configuration done, partly recorded (resumes
/// where it stopped), not started, or invalid, from the run directories.
fn local_status(root: &Path, record: &LocalRecord, mode: OutputMode) -> Result<i32> {
    if record.workdir.is_dir() {
        std::env::set_current_dir(&record.workdir)
            .with_context(|| format!("entering {}", record.workdir.display()))?;
    }
    let plan = plan(&record.sweep_file, Some(root))?;
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    let mut lines = Vec::new();
    let mut rows = Vec::new();
    for (i, p) in plan.runs.iter().enumerate() {
        let (state, detail, dir) = match &p.config {
            Err(e) => ("invalid", format!("{e:#}"), None),
            Ok(cfg) => match finished_state(cfg) {
                Ok(true) => ("done", String::new(), Some(cfg.out.clone())),
                Ok(false) => match recorded_samples(&cfg.out) {
                    0 => ("not-started", String::new(), Some(cfg.out.clone())),
                    n => (
                        "partial",
                        format!("{n} samples recorded; `reprolm sweep` resumes it"),
                        Some(cfg.out.clone()),
                    ),
                },
                Err(e) => ("invalid", format!("{e:#}"), Some(cfg.out.clone())),
            },
        };
        *counts.entry(state).or_default() += 1;
        let name = dir
            .as_ref()
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "-".into());
        lines.push(format!("{:>4}  {state:<12} {name}  [{}]", i + 1, p.label));
        if !detail.is_empty() {
            lines.push(format!("        {detail}"));
        }
        rows.push(json!({"index": i + 1, "label": p.label, "run_dir": dir, "state": state, "detail": detail}));
    }
    let summary = counts
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "sweep {} (local, {}): {} configurations: {summary}\n{}",
        root.display(),
        record.sweep_file.display(),
        plan.runs.len(),
        lines.join("\n")
    );
    mode.result(&text, "sweep_status", json!({ "root": root, "runs": rows }));
    Ok(i32::from(counts.get("done") != Some(&plan.runs.len())))
}

/// Samples already in `dir`'s responses file (0 if there is none).
fn recorded_samples(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join(reprolm_metrics::run_dir::RESPONSES_FILE))
        .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count())
        .unwrap_or(0)
}

/// Whether `cfg.out` holds a finished run of this configuration. A finished run with other settings
/// is an error naming them; checked from the manifest alone, without loading the model.
pub(crate) fn finished_state(cfg: &RunConfig) -> Result<bool> {
    let path = cfg.out.join(MANIFEST_FILE);
    if !path.exists() {
        return Ok(false);
    }
    let m = Manifest::read(&path)?;
    if m.finished_at.is_none() {
        return Ok(false);
    }
    let mut diffs = Vec::new();
    let mut cmp = |field: &str, a: String, b: String| {
        if a != b {
            diffs.push(format!("{field}: {a} (existing) vs {b} (requested)"));
        }
    };
    cmp("task.name", m.task.name.clone(), cfg.task.clone());
    cmp(
        "policy.name",
        m.policy.name.clone(),
        cfg.policy.name.clone(),
    );
    cmp(
        "batch_size",
        m.batch_size.to_string(),
        cfg.batch_size.to_string(),
    );
    cmp("tp_size", m.tp_size.to_string(), cfg.tp_size.to_string());
    cmp(
        "batching_mode",
        m.batching_mode.to_string(),
        cfg.batching.to_string(),
    );
    // The kernels value is compared whole: each setting the command line chose (the rest of
    // the recorded map follows from them, the policy and the model).
    for (key, requested) in cfg.kernels.settings(&cfg.device) {
        let existing = m.kernels.get(&key).map_or("unset", String::as_str);
        cmp(&format!("kernels.{key}"), existing.to_string(), requested);
    }
    cmp("seed", m.seed.to_string(), cfg.seed.to_string());
    cmp(
        "max_tokens",
        m.max_tokens.to_string(),
        cfg.max_tokens.to_string(),
    );
    cmp(
        "sampling.n_samples",
        m.sampling.n_samples.to_string(),
        cfg.samples.to_string(),
    );
    cmp(
        "sampling.temperature",
        m.sampling.temperature.to_string(),
        cfg.temperature.to_string(),
    );
    cmp(
        "logprobs_k",
        m.logprobs_k.to_string(),
        cfg.logprobs.to_string(),
    );
    if !diffs.is_empty() {
        bail!(
            "{}: existing run has a different configuration: {}",
            cfg.out.display(),
            diffs.join("; ")
        );
    }
    Ok(true)
}

fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What a setting spelled as the paper's scripts spell their flags is called here. The command line
/// takes these spellings as aliases; a sweep file names each setting once, so that an axis and a
/// base value cannot set one setting under two names.
fn paper_spelling(key: &str) -> Option<&'static str> {
    Some(match key {
        "dtype" => "the precision is `policy` here (it takes bfloat16, float16 and float32 too)",
        "passk" => "samples per problem are `samples` here",
        "exp_name" => "run directories are named under `root`, one per configuration",
        _ => return None,
    })
}

/// The `reprolm run` arguments `base` plus `combo` spell, parsed by the same clap definition.
fn run_args(base: &toml::Table, combo: &[(String, toml::Value)]) -> Result<RunArgs> {
    let mut argv: Vec<String> = vec!["reprolm".into(), "run".into()];
    let pairs = base
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain(combo.iter().cloned());
    for (key, value) in pairs {
        let flag = format!("--{}", key.replace('_', "-"));
        let scalar = |v: &toml::Value| -> Result<String> {
            match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(i) => Ok(i.to_string()),
                toml::Value::Float(f) => Ok(f.to_string()),
                other => Err(anyhow!(
                    "`{key}`: expected a string or number, got {}",
                    other.type_str()
                )),
            }
        };
        match &value {
            toml::Value::Array(items) if key == "problems" => {
                let ids: Result<Vec<String>> = items.iter().map(scalar).collect();
                argv.push(flag);
                argv.push(ids?.join(","));
            }
            toml::Value::Array(items) if key == "task_param" => {
                for it in items {
                    argv.push(flag.clone());
                    argv.push(scalar(it)?);
                }
            }
            toml::Value::Table(t) if key == "task_param" => {
                for (k, v) in t {
                    argv.push(flag.clone());
                    argv.push(format!("{k}={}", scalar(v)?));
                }
            }
            // A switch: `true` passes the flag, `false` leaves it out.
            toml::Value::Boolean(on) => {
                if *on {
                    argv.push(flag);
                }
            }
            v => {
                argv.push(flag);
                argv.push(scalar(v)?);
            }
        }
    }
    let cli = Cli::try_parse_from(&argv).map_err(|e| {
        let msg = e.render().to_string();
        let first = msg
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("error: ")
            .to_string();
        anyhow!("{first} (from the settings {})", argv[2..].join(" "))
    })?;
    match cli.command {
        Command::Run(a) => Ok(*a),
        _ => unreachable!("argv starts with `run`"),
    }
}
