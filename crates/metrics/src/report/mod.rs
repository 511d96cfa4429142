//! Reports over a directory of runs: grouping, metrics, and their tables and plots.
//!
//! [`report`] reads every run directory under a root and computes; [`write_report`] writes report.md,
//! report.csv (one row per group), report_runs.csv (one row per run), report.json and SVG plots;
//! [`generate`] does both, which is what `reprolm report ROOT` calls.

mod csv_file;
mod group;
mod markdown;
mod plots;
mod reference;
mod table;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{io_err, Error, Result};
use crate::metrics::{group_metrics, run_stats, GroupMetrics, RunObs, RunStats, SampleObs};
use crate::run_dir::{FinishReason, LoadedRun, SampleKey};
use crate::stats::StdKind;

pub use group::{
    config_label, decoding_label, discover_runs, runtime_field_names, varying_fields, GroupKey,
};
pub use reference::{AgainstReference, ReferenceView, DEFAULT_REFERENCE};

/// The report.json format this build writes.
pub const REPORT_FORMAT_VERSION: u32 = 1;

/// How to build a report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportOptions {
    /// Which standard deviation the metrics use.
    pub std_kind: StdKind,
    /// Where [`generate`] writes its files; the root when `None`.
    pub out_dir: Option<PathBuf>,
    /// Runtime fields that separate groups instead of varying within them (e.g.
    /// `deterministic`, to measure each kernel mode across batch sizes on its own).
    pub split_by: Vec<String>,
    /// The y axis of the top-1 probability plot.
    pub top1_axis: Top1Axis,
    /// The policy every other policy's runs are compared with at each runtime configuration
    /// ([`Report::against_reference`]); [`DEFAULT_REFERENCE`] when `None`.
    pub reference: Option<String>,
}

/// The y axis of the top-1 probability plot: its values span from exact zeros (fp32) to 1e-2 and
/// more (fp16), so a linear axis flattens all but the largest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Top1Axis {
    /// Logarithmic when the nonzero values span two orders of magnitude or more, else linear.
    #[default]
    Auto,
    /// Linear from 0.
    Linear,
    /// Logarithmic (exact zeros are not drawn; the caption says how many positions that leaves
    /// out).
    Log,
}

/// A report over all runs under a root.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Version of report.json's format.
    pub format_version: u32,
    /// The directory that was searched.
    pub root: PathBuf,
    /// Which standard deviation was used.
    pub std_kind: StdKind,
    /// The top-1 plot's y axis as asked for.
    pub top1_axis: Top1Axis,
    /// One entry per (model, task, decoding, policy), sorted.
    pub groups: Vec<GroupReport>,
    /// Each run against the reference policy's run of the same configuration (the
    /// bf16-against-fp32 view).
    pub against_reference: ReferenceView,
    /// Directories with a manifest.json that could not be read, and why.
    pub skipped: Vec<Skipped>,
}

/// A directory left out of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The directory.
    pub path: PathBuf,
    /// The error that stopped it from loading.
    pub reason: String,
}

/// Runs of one model, task, decoding setting and policy.
#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    /// Model id.
    pub model: String,
    /// Task name.
    pub task: String,
    /// Task version(s) seen (one unless refused).
    pub task_versions: Vec<String>,
    /// Decoding setting ([`decoding_label`]).
    pub decoding: String,
    /// Whether decoding samples (pass@k applies).
    pub sampled: bool,
    /// Precision policy.
    pub policy: String,
    /// The values of the fields the report was split by ([`ReportOptions::split_by`]), which
    /// every run of the group shares, as shown (the kernels by their choice).
    pub split: Vec<(String, String)>,
    /// Why these runs were grouped and what distinguishes them.
    pub why: String,
    /// Runtime configuration fields that differ among the runs.
    pub varying: Vec<String>,
    /// Unfinished runs, samples left out, repeated configurations, torn files.
    pub notes: Vec<String>,
    /// The runs, in configuration order.
    pub runs: Vec<RunReport>,
    /// The metrics, or why the runs were not compared.
    pub outcome: GroupOutcome,
}

/// Whether a group was compared.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupOutcome {
    /// The runs were compared.
    Compared(Box<GroupMetrics>),
    /// They were not, for this reason.
    Refused(String),
}

impl GroupReport {
    /// The policy, followed by the split values when there are any: `bf16 [deterministic=true]`.
    pub fn policy_label(&self) -> String {
        if self.split.is_empty() {
            return self.policy.clone();
        }
        let split: Vec<String> = self.split.iter().map(|(f, v)| format!("{f}={v}")).collect();
        format!("{} [{}]", self.policy, split.join(", "))
    }

    /// The metrics, if the group was compared.
    pub fn metrics(&self) -> Option<&GroupMetrics> {
        match &self.outcome {
            GroupOutcome::Compared(m) => Some(m),
            GroupOutcome::Refused(_) => None,
        }
    }
}

/// One run within a group.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The run directory.
    pub path: PathBuf,
    /// Its configuration in short (only the fields that vary across the group's model/task/decoding).
    pub label: String,
    /// Batch size.
    pub batch_size: u32,
    /// Batching mode.
    pub batching_mode: String,
    /// Device kind.
    pub device_kind: String,
    /// Device name.
    pub device_name: String,
    /// Tensor-parallel size.
    pub tp_size: u32,
    /// GPU count.
    pub gpu_count: u32,
    /// Deterministic kernels.
    pub deterministic: bool,
    /// The kernel choice (`invariant`, `heuristic`; the manifest's `kernels.kernels`), empty for
    /// manifests that predate it.
    pub kernels: String,
    /// Seed.
    pub seed: u64,
    /// Whether the manifest records an end time.
    pub finished: bool,
    /// Samples completed in this run.
    pub n_completed: usize,
    /// Samples the run was asked for (problems x samples per problem).
    pub n_expected: u64,
    /// Statistics over the group's common samples, or over the run's own samples when the group
    /// was refused or the run left out.
    pub stats: Option<RunStats>,
    /// Why the run was left out of its group's comparison (it saw other data, weights or a
    /// tokenizer than the runs compared); `None` when it is compared, or the whole group refused.
    pub left_out: Option<String>,
}

/// Read every run under `root`, group and compute. Unreadable run directories are listed in
/// [`Report::skipped`] rather than failing the report.
///
/// ```no_run
/// use reprolm_metrics::report::{report, ReportOptions};
/// let r = report("runs".as_ref(), &ReportOptions::default())?;
/// print!("{}", r.terminal_table());
/// # Ok::<(), reprolm_metrics::Error>(())
/// ```
pub fn report(root: &Path, opts: &ReportOptions) -> Result<Report> {
    if !root.is_dir() {
        return Err(Error::Io {
            path: root.into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let known = runtime_field_names();
    if let Some(bad) = opts.split_by.iter().find(|f| !known.contains(&f.as_str())) {
        return Err(Error::UnknownField {
            field: bad.clone(),
            known: known.join(", "),
        });
    }
    let dirs = discover_runs(root)?;
    if dirs.is_empty() {
        return Err(Error::NoRuns { path: root.into() });
    }
    let mut skipped = Vec::new();
    let mut loaded = Vec::new();
    for d in dirs {
        match LoadedRun::load(&d) {
            Ok(run) => loaded.push(run),
            Err(e) => skipped.push(Skipped {
                path: d,
                reason: e.to_string(),
            }),
        }
    }
    let mut by_key: BTreeMap<GroupKey, Vec<LoadedRun>> = BTreeMap::new();
    for run in loaded {
        by_key
            .entry(GroupKey::of(&run.manifest, &opts.split_by))
            .or_default()
            .push(run);
    }
    // Labels are computed per (model, task, decoding) so one configuration gets one label under every
    // policy, which lines the policies up in the accuracy plot.
    let mut varying_by_set: BTreeMap<(String, String, String), Vec<&'static str>> = BTreeMap::new();
    // The same without the split fields, to name a configuration across groups.
    let mut varying_unsplit = BTreeMap::new();
    {
        let mut sets: BTreeMap<(String, String, String), Vec<&crate::run_dir::Manifest>> =
            BTreeMap::new();
        for (k, runs) in &by_key {
            let set = sets
                .entry((k.model.clone(), k.task.clone(), k.decoding.clone()))
                .or_default();
            set.extend(runs.iter().map(|r| &r.manifest));
        }
        for (k, ms) in sets {
            varying_by_set.insert(k.clone(), varying_fields(&ms, &opts.split_by));
            varying_unsplit.insert(k, varying_fields(&ms, &[]));
        }
    }
    let mut groups = Vec::new();
    let mut entries = Vec::new();
    for (key, mut runs) in by_key {
        runs.sort_by(|a, b| {
            group::config_sort_key(&a.manifest)
                .cmp(&group::config_sort_key(&b.manifest))
                .then(a.path.cmp(&b.path))
        });
        let label_fields =
            &varying_by_set[&(key.model.clone(), key.task.clone(), key.decoding.clone())];
        let paths: Vec<(PathBuf, crate::run_dir::Manifest)> = runs
            .iter()
            .map(|r| (r.path.clone(), r.manifest.clone()))
            .collect();
        let (group, obs) = build_group(key, runs, label_fields, opts)?;
        groups.push(group);
        entries.extend(paths.into_iter().zip(obs).map(|((path, manifest), obs)| {
            reference::RunEntry {
                path,
                manifest,
                obs,
            }
        }));
    }
    let reference_policy = opts.reference.as_deref().unwrap_or(DEFAULT_REFERENCE);
    Ok(Report {
        format_version: REPORT_FORMAT_VERSION,
        root: root.into(),
        std_kind: opts.std_kind,
        top1_axis: opts.top1_axis,
        groups,
        against_reference: reference::compare(&entries, reference_policy, &varying_unsplit),
        skipped,
    })
}

fn build_group(
    key: GroupKey,
    runs: Vec<LoadedRun>,
    label_fields: &[&str],
    opts: &ReportOptions,
) -> Result<(GroupReport, Vec<RunObs>)> {
    let kind = opts.std_kind;
    let refs: Vec<&LoadedRun> = runs.iter().collect();
    let comparison = group::comparison(&refs);
    // Which runs the metrics cover: a run on other data is left out rather than costing the
    // others their comparison.
    let (refused, left_out): (Option<String>, BTreeMap<usize, String>) = match comparison {
        group::Comparison::All => (None, BTreeMap::new()),
        group::Comparison::Subset { left_out } => (None, left_out.into_iter().collect()),
        group::Comparison::Refused(why) => (Some(why), BTreeMap::new()),
    };
    let compared = |i: usize| !left_out.contains_key(&i);
    let manifests: Vec<&crate::run_dir::Manifest> = runs
        .iter()
        .enumerate()
        .filter(|(i, _)| compared(*i))
        .map(|(_, r)| &r.manifest)
        .collect();
    let varying: Vec<String> = varying_fields(&manifests, &opts.split_by)
        .into_iter()
        .map(String::from)
        .collect();
    let task_versions: BTreeSet<String> =
        manifests.iter().map(|m| m.task.version.clone()).collect();
    let first = manifests[0];
    let mut why = format!(
        "{} run(s) share model `{}`, task `{}` (version {}, dataset sha256 {}), policy `{}` and decoding ({})",
        manifests.len(),
        key.model,
        key.task,
        task_versions.iter().cloned().collect::<Vec<_>>().join("/"),
        &first.task.dataset_sha256.get(..12).unwrap_or(&first.task.dataset_sha256),
        key.policy,
        key.decoding,
    );
    for (field, value) in &key.split {
        why.push_str(&format!(", {field} = {value} (the report is split by it)"));
    }
    if manifests.len() > 1 {
        if varying.is_empty() {
            why.push_str(
                "; they do not differ in any runtime field (repeat runs of one configuration)",
            );
        } else {
            why.push_str(&format!(
                "; they differ only in runtime configuration: {}",
                varying.join(", ")
            ));
        }
    }
    let mut notes = Vec::new();
    if !first.sampling.is_greedy() && varying.iter().any(|f| f == "seed") {
        notes.push(
            "runs use different seeds: sampled tokens differ by design, so Div_Index and the top-1 spread \
             measure sampling, not only numerics"
                .to_string(),
        );
    }
    let mut labels: Vec<String> = runs
        .iter()
        .map(|r| {
            let l = config_label(&r.manifest, label_fields);
            if l.is_empty() {
                group::dir_name(&r.path)
            } else {
                l
            }
        })
        .collect();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for l in &labels {
        *seen.entry(l.clone()).or_default() += 1;
    }
    for (l, r) in labels.iter_mut().zip(&runs) {
        if seen[l.as_str()] > 1 {
            let msg = format!(
                "configuration `{l}` appears more than once; runs are told apart by directory"
            );
            if !notes.contains(&msg) {
                notes.push(msg);
            }
            *l = format!("{l} [{}]", group::dir_name(&r.path));
        }
    }
    for r in &runs {
        for n in &r.notes {
            notes.push(format!("{}: {n}", group::dir_name(&r.path)));
        }
    }

    for (i, why) in &left_out {
        notes.push(format!(
            "{} left out of the comparison: {why}; its figures use its own samples",
            group::dir_name(&runs[*i].path)
        ));
    }
    // Every run's own figures are shown even when the group cannot be compared (over its own
    // samples then); the comparison uses the samples present in all compared runs.
    let mut obs: Vec<RunObs> = Vec::new();
    for r in &runs {
        obs.push(load_obs(r)?);
    }
    let compared_obs: Vec<&RunObs> = obs
        .iter()
        .enumerate()
        .filter(|(i, _)| compared(*i))
        .map(|(_, o)| o)
        .collect();
    let common: Vec<SampleKey> = match (&refused, compared_obs.split_first()) {
        (Some(_), _) | (None, None) => Vec::new(),
        (None, Some((first, rest))) => first
            .keys()
            .filter(|k| rest.iter().all(|o| o.contains_key(*k)))
            .cloned()
            .collect(),
    };
    let mut run_reports = Vec::new();
    for (i, (r, label)) in runs.iter().zip(labels).enumerate() {
        let m = &r.manifest;
        let n_expected = u64::from(m.task.n_problems) * u64::from(m.sampling.n_samples.max(1));
        let finished = r.is_finished();
        if !finished {
            notes.push(format!(
                "{} is unfinished: {} of {} samples done",
                group::dir_name(&r.path),
                r.records.len(),
                n_expected
            ));
        }
        let too_long: Vec<&str> = r
            .records
            .iter()
            .filter(|x| x.finish_reason == FinishReason::PromptTooLong)
            .map(|x| x.problem_id.as_str())
            .collect();
        if !too_long.is_empty() {
            let n = too_long.len();
            let too_long: BTreeSet<&str> = too_long.into_iter().collect();
            notes.push(format!(
                "{}: {n} sample(s) not generated because the prompt is longer than the model's \
                 context (prompt_too_long, scored as wrong): {}",
                group::dir_name(&r.path),
                too_long.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        let stats = obs.get(i).map(|o| {
            if refused.is_some() || !compared(i) {
                let own: Vec<SampleKey> = o.keys().cloned().collect();
                return run_stats(o, &own);
            }
            let left_out = o.len() - common.len();
            if left_out > 0 {
                notes.push(format!(
                    "{}: {left_out} sample(s) not present in every run left out",
                    group::dir_name(&r.path)
                ));
            }
            run_stats(o, &common)
        });
        run_reports.push(RunReport {
            path: r.path.clone(),
            label,
            batch_size: m.batch_size,
            batching_mode: m.batching_mode.to_string(),
            device_kind: m.device.kind.clone(),
            device_name: m.device.name.clone(),
            tp_size: m.tp_size,
            gpu_count: m.gpu_count,
            kernels: m.kernels.get("kernels").cloned().unwrap_or_default(),
            deterministic: m.deterministic(),
            seed: m.seed,
            finished,
            n_completed: r.records.len(),
            n_expected,
            stats,
            left_out: left_out.get(&i).cloned(),
        });
    }
    if refused.is_none()
        && compared_obs.len() > 1
        && common.len() < compared_obs.iter().map(|o| o.len()).max().unwrap_or(0)
    {
        notes.push(format!(
            "metrics use the {} sample(s) present in all runs",
            common.len()
        ));
    }
    if refused.is_some() {
        notes.push(
            "each run's figures use its own samples; the runs are not compared with each other"
                .into(),
        );
    }
    let outcome = match refused {
        Some(reason) => GroupOutcome::Refused(reason),
        None => GroupOutcome::Compared(Box::new(group_metrics(&compared_obs, &common, kind))),
    };
    let group = GroupReport {
        sampled: !first.sampling.is_greedy(),
        model: key.model,
        task: key.task,
        task_versions: task_versions.into_iter().collect(),
        decoding: key.decoding,
        policy: key.policy,
        split: key.split_shown,
        why,
        varying,
        notes,
        runs: run_reports,
        outcome,
    };
    Ok((group, obs))
}

/// What the metrics need from one run: tokens, top-1 logprobs, correctness, truncation.
fn load_obs(run: &LoadedRun) -> Result<RunObs> {
    let mut out = RunObs::new();
    for pair in run.samples()? {
        let (r, lp) = pair?;
        let top1 = (0..lp.len()).map(|i| lp.position(i).1[0]).collect();
        out.insert(
            r.key(),
            SampleObs {
                token_ids: r.token_ids.clone(),
                top1_logprobs: top1,
                correct: r.correct,
                truncated: r.finish_reason == FinishReason::Length,
            },
        );
    }
    Ok(out)
}

/// Files written by [`write_report`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WrittenFiles {
    /// report.md
    pub markdown: PathBuf,
    /// report.csv (one row per group)
    pub csv_groups: PathBuf,
    /// report_runs.csv (one row per run)
    pub csv_runs: PathBuf,
    /// report.json
    pub json: PathBuf,
    /// The SVG plots, under `plots/`.
    pub plots: Vec<PathBuf>,
}

impl WrittenFiles {
    /// Every file, for listing to the user.
    pub fn all(&self) -> Vec<&Path> {
        let mut v: Vec<&Path> = vec![&self.markdown, &self.csv_groups, &self.csv_runs, &self.json];
        v.extend(self.plots.iter().map(PathBuf::as_path));
        v
    }
}

/// Write report.md, report.csv, report_runs.csv, report.json and `plots/*.svg` into `out_dir`.
pub fn write_report(report: &Report, out_dir: &Path) -> Result<WrittenFiles> {
    std::fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;
    let plot_dir = out_dir.join("plots");
    let plots = plots::write_plots(report, &plot_dir)?;
    let rel: Vec<PathBuf> = plots
        .iter()
        .map(|p| {
            p.strip_prefix(out_dir)
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| p.clone())
        })
        .collect();
    let files = WrittenFiles {
        markdown: out_dir.join("report.md"),
        csv_groups: out_dir.join("report.csv"),
        csv_runs: out_dir.join("report_runs.csv"),
        json: out_dir.join("report.json"),
        plots,
    };
    std::fs::write(&files.markdown, report.to_markdown(&rel)).map_err(io_err(&files.markdown))?;
    csv_file::write_groups_csv(report, &files.csv_groups)?;
    csv_file::write_runs_csv(report, &files.csv_runs)?;
    let json = serde_json::to_string_pretty(report).map_err(|source| Error::Json {
        path: files.json.clone(),
        line: None,
        source,
    })?;
    std::fs::write(&files.json, json + "\n").map_err(io_err(&files.json))?;
    Ok(files)
}

/// Everything `reprolm report ROOT` does: compute, write the files (into `opts.out_dir`, else `root`), and
/// return the report with the paths written. The caller prints [`Report::terminal_table`].
///
/// ```no_run
/// use reprolm_metrics::report::{generate, ReportOptions};
/// let (report, files) = generate("runs".as_ref(), &ReportOptions::default())?;
/// print!("{}", report.terminal_table());
/// for f in files.all() {
///     println!("wrote {}", f.display());
/// }
/// # Ok::<(), reprolm_metrics::Error>(())
/// ```
pub fn generate(root: &Path, opts: &ReportOptions) -> Result<(Report, WrittenFiles)> {
    let r = report(root, opts)?;
    let out = opts.out_dir.clone().unwrap_or_else(|| root.to_path_buf());
    let files = write_report(&r, &out)?;
    Ok((r, files))
}
