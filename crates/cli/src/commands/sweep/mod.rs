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

pub(crate) mod plan;
pub(crate) mod record;

use plan::{finished_state, plan, SweepPlan};
use record::{read_local_record, write_local_record, LocalRecord};

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::args::{ExecutorArg, SweepAction, SweepArgs};
use crate::commands::run::{self, RunOutcome};
use crate::interrupt;
use crate::progress::OutputMode;

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
