//! The human-readable report: report.md and the table printed to the terminal.
//!
//! Units follow the paper: accuracies and Std@Acc in percentage points, lengths in tokens;
//! Avg_Std@top1_prob is a probability in scientific notation (the paper's tables give it in units
//! of 1e-4, where a reproducible policy's 1e-8 would read 0.00).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::metrics::{GroupMetrics, Measure};
use crate::report::table::{Align, Table};
use crate::report::{GroupOutcome, GroupReport, Report};
use crate::stats::StdKind;

pub(crate) fn fmt_pct(x: f64) -> String {
    format!("{:.2}", x * 100.0)
}

/// A small positive quantity in scientific notation with three significant digits (`8.10e-8`),
/// `0` for zero.
pub(crate) fn fmt_sci(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else {
        format!("{x:.2e}")
    }
}

fn cell<T>(m: &Measure<T>, f: impl Fn(&T) -> String) -> String {
    m.value().map_or_else(|| "n/a".to_string(), f)
}

/// The summary row cells of one group (after task and policy), shared by markdown and terminal.
fn summary_cells(g: &GroupReport, with_pass: bool) -> Vec<String> {
    let Some(m) = g.metrics() else {
        let n_runs = g.runs.len().to_string();
        let mut row = vec![n_runs, "-".into(), "refused".into()];
        row.extend(std::iter::repeat_n(
            "-".to_string(),
            if with_pass { 8 } else { 6 },
        ));
        return row;
    };
    let (share, mean_i, med_i) = match &m.divergence {
        Measure::Value(d) => (
            format!(
                "{:.1} ({}/{})",
                d.share_diverging * 100.0,
                d.n_diverging,
                d.n_samples
            ),
            cell(&d.mean_index, |x| format!("{x:.1}")),
            cell(&d.median_index, |x| format!("{x:.1}")),
        ),
        Measure::Na(_) => ("n/a".into(), "n/a".into(), "n/a".into()),
    };
    // The runs compared: one left out on other data is not counted.
    let mut row = vec![
        m.n_runs.to_string(),
        m.n_samples.to_string(),
        cell(&m.accuracy_mean, |x| fmt_pct(*x)),
        cell(&m.std_acc, |x| fmt_pct(*x)),
        cell(&m.avg_std_output_length, |x| format!("{x:.2}")),
        share,
        mean_i,
        med_i,
        cell(&m.avg_std_top1_prob, |x| fmt_sci(*x)),
    ];
    if with_pass {
        let p1 = m.pass_at_k.first();
        row.push(p1.map_or("n/a".into(), |p| fmt_pct(p.mean)));
        row.push(p1.map_or("n/a".into(), |p| cell(&p.std, |x| fmt_pct(*x))));
    }
    row
}

fn summary_table(groups: &[&GroupReport], with_pass: bool) -> Table {
    let mut headers = vec![
        ("task", Align::Left),
        ("policy", Align::Left),
        ("runs", Align::Right),
        ("samples", Align::Right),
        ("Acc %", Align::Right),
        ("Std@Acc %", Align::Right),
        ("Avg_Std@Len", Align::Right),
        ("Div %", Align::Right),
        ("Div_Index mean", Align::Right),
        ("Div_Index median", Align::Right),
        ("Avg_Std@top1", Align::Right),
    ];
    if with_pass {
        headers.push(("Pass@1 %", Align::Right));
        headers.push(("Pass@1 std %", Align::Right));
    }
    let mut t = Table::new(&headers);
    for g in groups {
        let mut row = vec![
            format!("{} v{}", g.task, g.task_versions.join("/")),
            g.policy_label(),
        ];
        row.extend(summary_cells(g, with_pass));
        t.push(row);
    }
    t
}

fn runs_table(g: &GroupReport) -> Table {
    let max_k = g
        .runs
        .iter()
        .filter_map(|r| r.stats.as_ref())
        .map(|s| s.pass_at_k.len())
        .max()
        .unwrap_or(0);
    let mut headers = vec![
        ("run", Align::Left),
        ("configuration", Align::Left),
        ("finished", Align::Left),
        ("done/expected", Align::Right),
        ("Acc % [95% CI]", Align::Right),
        ("mean len", Align::Right),
        ("median len", Align::Right),
        ("cut %", Align::Right),
    ];
    let ks: Vec<String> = (1..=max_k).map(|k| format!("pass@{k} %")).collect();
    for k in &ks {
        headers.push((k.as_str(), Align::Right));
    }
    let mut t = Table::new(&headers);
    for r in &g.runs {
        let mut row = vec![
            super::group::dir_name(&r.path),
            match &r.left_out {
                Some(_) => format!("{} (left out)", r.label),
                None => r.label.clone(),
            },
            if r.finished {
                "yes".into()
            } else {
                "no".into()
            },
            format!("{}/{}", r.n_completed, r.n_expected),
        ];
        match &r.stats {
            Some(s) => {
                let acc = match (s.accuracy.value(), s.accuracy_ci95.value()) {
                    (Some(a), Some(ci)) => {
                        format!("{} [{}, {}]", fmt_pct(*a), fmt_pct(ci.lo), fmt_pct(ci.hi))
                    }
                    _ => "n/a".into(),
                };
                row.push(acc);
                row.push(cell(&s.mean_length, |x| format!("{x:.1}")));
                row.push(cell(&s.median_length, |x| format!("{x:.1}")));
                row.push(cell(&s.share_truncated, |x| fmt_pct(*x)));
                for i in 0..max_k {
                    row.push(
                        s.pass_at_k
                            .get(i)
                            .map_or("n/a".into(), |p| fmt_pct(p.value)),
                    );
                }
            }
            None => row.extend(std::iter::repeat_n("-".to_string(), 4 + max_k)),
        }
        t.push(row);
    }
    t
}

/// Each run against the reference policy's run of its configuration, or `None` when no run has one.
fn reference_table(v: &super::ReferenceView) -> Option<Table> {
    if v.comparisons.is_empty() {
        return None;
    }
    let differ = format!("differ from {} %", v.reference);
    let ref_acc = format!("{} Acc %", v.reference);
    let mut t = Table::new(&[
        ("model · task", Align::Left),
        ("policy", Align::Left),
        ("configuration", Align::Left),
        ("samples", Align::Right),
        (differ.as_str(), Align::Right),
        ("first diff (mean)", Align::Right),
        ("✓→✗", Align::Right),
        ("✗→✓", Align::Right),
        ("Acc %", Align::Right),
        (ref_acc.as_str(), Align::Right),
    ]);
    let pct = |x: Option<f64>| x.map_or("n/a".into(), fmt_pct);
    for c in &v.comparisons {
        t.push(vec![
            format!("{} · {}", c.model, c.task),
            c.policy.clone(),
            if c.configuration.is_empty() {
                "-".into()
            } else {
                c.configuration.clone()
            },
            c.samples.to_string(),
            pct((c.samples > 0).then(|| c.differing as f64 / c.samples as f64)),
            c.mean_first_difference
                .map_or("-".into(), |x| format!("{x:.1}")),
            c.correct_to_wrong.to_string(),
            c.wrong_to_correct.to_string(),
            pct(c.accuracy),
            pct(c.reference_accuracy),
        ]);
    }
    Some(t)
}

/// Samples listed in a group's section, at most (report.json holds them all).
const LISTED_SAMPLES: usize = 20;

/// Which samples diverged and which flipped correctness, with where and in which runs.
fn moved_samples(g: &GroupReport, m: &GroupMetrics) -> String {
    let mut out = String::new();
    let runs: Vec<&str> = g
        .runs
        .iter()
        .filter(|r| r.left_out.is_none())
        .map(|r| r.label.as_str())
        .collect();
    let marks =
        |c: &[bool]| -> String { c.iter().map(|&ok| if ok { '✓' } else { '✗' }).collect() };
    for (title, list, what) in [
        (
            "Flipped correctness",
            &m.flipped,
            "graded correct in some runs and wrong in others",
        ),
        ("Diverged", &m.diverged, "tokens not the same in every run"),
    ] {
        if list.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "\n{title}: {} of {} sample(s), {what} (correct per run, in the order {}):\n\n",
            list.len(),
            m.n_samples,
            runs.join(" · ")
        ));
        for s in list.iter().take(LISTED_SAMPLES) {
            let at = s.first_divergence.map_or("same tokens".to_string(), |i| {
                format!("first differs at token {i}")
            });
            let lengths: Vec<String> = s.lengths.iter().map(|l| l.to_string()).collect();
            out.push_str(&format!(
                "- `{}` #{}: {} {at}; lengths {}\n",
                s.problem_id,
                s.sample_index,
                marks(&s.correct),
                lengths.join(" / ")
            ));
        }
        if list.len() > LISTED_SAMPLES {
            out.push_str(&format!(
                "- ... and {} more (all in report.json)\n",
                list.len() - LISTED_SAMPLES
            ));
        }
    }
    out
}

fn pass_table(m: &GroupMetrics) -> Table {
    let mut t = Table::new(&[
        ("k", Align::Right),
        ("pass@k mean %", Align::Right),
        ("std across runs %", Align::Right),
    ]);
    for p in &m.pass_at_k {
        t.push(vec![
            p.k.to_string(),
            fmt_pct(p.mean),
            cell(&p.std, |x| fmt_pct(*x)),
        ]);
    }
    t
}

/// The reasons behind every n/a of a group, deduplicated.
fn na_reasons(m: &GroupMetrics) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |name: &str, reason: Option<&String>| {
        if let Some(r) = reason {
            out.push(format!("{name}: n/a, {r}"));
        }
    };
    let na = |m: &Measure<f64>| match m {
        Measure::Na(r) => Some(r.clone()),
        Measure::Value(_) => None,
    };
    add("Std@Acc", na(&m.std_acc).as_ref());
    add(
        "Avg_Std@Output_Length",
        na(&m.avg_std_output_length).as_ref(),
    );
    match &m.divergence {
        Measure::Na(r) => add("Div_Index", Some(r)),
        Measure::Value(d) => add("Div_Index mean/median", na(&d.mean_index).as_ref()),
    }
    add("Avg_Std@top1_prob", na(&m.avg_std_top1_prob).as_ref());
    out
}

/// Sections of the summary: one per (model, decoding).
fn sections(report: &Report) -> BTreeMap<(String, String), Vec<&GroupReport>> {
    let mut s: BTreeMap<(String, String), Vec<&GroupReport>> = BTreeMap::new();
    for g in &report.groups {
        s.entry((g.model.clone(), g.decoding.clone()))
            .or_default()
            .push(g);
    }
    s
}

fn std_note(kind: StdKind) -> &'static str {
    match kind {
        StdKind::Sample => "sample standard deviations (divide by n - 1)",
        StdKind::Population => "population standard deviations (divide by n)",
    }
}

/// What each column of report.md means (the paper's metrics, arXiv 2506.09501, and ours).
const DEFINITIONS: &str = "
### What the columns mean

Over the samples (problem, sample index) present in every run of a group:
- **Acc %**: share of samples scored correct, averaged over the runs; **Std@Acc %**: the standard deviation of the
  runs' accuracies.
- **Avg_Std@Len**: for each sample the standard deviation of its response length (tokens) across the runs, averaged
  over samples.
- **Div %**: share of samples whose token streams are not identical in every run. **Div_Index**: for a diverging
  sample, the position of the first token at which the runs differ (the length of their common prefix); its mean
  and median over the diverging samples.
- **Avg_Std@top1**: at each position before a sample's first divergence, the standard deviation across runs of the
  probability of the most likely token; averaged over positions, then over samples. It moves with rounding even
  when no token flips.
- **cut %** (per run): share of responses that hit max_tokens. **Pass@k**: the unbiased estimator over each
  problem's samples (Chen et al. 2021).
";

impl Report {
    /// report.md; `plots` are the SVG paths relative to the report's directory.
    pub fn to_markdown(&self, plots: &[PathBuf]) -> String {
        let n_runs: usize = self.groups.iter().map(|g| g.runs.len()).sum();
        let mut out = format!(
            "# reprolm report\n\nRoot: `{}`. {} run(s) in {} group(s). A group holds the runs of one model, task, \
             decoding setting and precision policy; its runs differ only in runtime configuration. Metrics use {}; \
             accuracies in %, lengths in tokens, Avg_Std@top1_prob as a probability (the paper's tables \
             give it in units of 1e-4).\n",
            self.root.display(),
            n_runs,
            self.groups.len(),
            std_note(self.std_kind)
        );
        for ((model, decoding), groups) in sections(self) {
            let sampled = groups.iter().any(|g| g.sampled);
            out.push_str(&format!("\n## {model} — {decoding}\n\n"));
            out.push_str(&summary_table(&groups, sampled).to_markdown());
        }
        let v = &self.against_reference;
        if let Some(t) = reference_table(v) {
            out.push_str(&format!(
                "\n## Against {r}\n\nEach run beside the {r} run of the same model, task, decoding and runtime \
                 configuration, over the samples both hold: the share whose tokens differ from {r}'s, the mean \
                 position of the first differing token, the answers {r} got right and the run got wrong (✓→✗) \
                 and the reverse.\n\n",
                r = v.reference
            ));
            out.push_str(&t.to_markdown());
        }
        if !v.notes.is_empty() {
            if v.comparisons.is_empty() {
                out.push_str(&format!("\n## Against {}\n\n", v.reference));
            } else {
                out.push('\n');
            }
            for n in &v.notes {
                out.push_str(&format!("- {n}\n"));
            }
        }
        out.push_str(DEFINITIONS);
        out.push_str("\n## Groups\n");
        for g in &self.groups {
            out.push_str(&format!(
                "\n### {} · {} v{} · {} · {}\n\n",
                g.model,
                g.task,
                g.task_versions.join("/"),
                g.policy_label(),
                g.decoding
            ));
            out.push_str(&format!("Grouped because: {}.\n\n", g.why));
            out.push_str(&runs_table(g).to_markdown());
            let mut notes = g.notes.clone();
            match &g.outcome {
                GroupOutcome::Refused(r) => notes.insert(0, format!("**{r}**")),
                GroupOutcome::Compared(m) => {
                    notes.extend(na_reasons(m));
                    if m.top1_samples < m.n_samples && m.avg_std_top1_prob.value().is_some() {
                        notes.push(format!(
                            "Avg_Std@top1_prob averages {} of {} samples (the others diverge at token 0 or are empty)",
                            m.top1_samples, m.n_samples
                        ));
                    }
                    if !m.pass_at_k.is_empty() {
                        out.push_str("\npass@k (unbiased estimator, Chen et al. 2021):\n\n");
                        out.push_str(&pass_table(m).to_markdown());
                    }
                    out.push_str(&moved_samples(g, m));
                }
            }
            if !notes.is_empty() {
                out.push('\n');
                for n in notes {
                    out.push_str(&format!("- {n}\n"));
                }
            }
        }
        if !plots.is_empty() {
            out.push_str("\n## Plots\n\n");
            for p in plots {
                let name = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                out.push_str(&format!("![{name}]({})\n\n", p.display()));
            }
        }
        if !self.skipped.is_empty() {
            out.push_str("\n## Skipped directories\n\n");
            for s in &self.skipped {
                out.push_str(&format!("- `{}`: {}\n", s.path.display(), s.reason));
            }
        }
        out
    }

    /// The paper-style tables for a terminal: one summary per (model, decoding), then each group's runs.
    pub fn terminal_table(&self) -> String {
        let mut out = String::new();
        for ((model, decoding), groups) in sections(self) {
            let sampled = groups.iter().any(|g| g.sampled);
            out.push_str(&format!("{model} — {decoding}\n"));
            out.push_str(&summary_table(&groups, sampled).to_text());
            out.push('\n');
        }
        if let Some(t) = reference_table(&self.against_reference) {
            out.push_str(&format!("against {}\n", self.against_reference.reference));
            out.push_str(&t.to_text());
            out.push('\n');
        }
        for n in &self.against_reference.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        for g in &self.groups {
            out.push_str(&format!(
                "{} · {} · {} · {}\n",
                g.model,
                g.task,
                g.policy_label(),
                g.decoding
            ));
            out.push_str(&runs_table(g).to_text());
            if let GroupOutcome::Refused(r) = &g.outcome {
                out.push_str(&format!("  {r}\n"));
            }
            for n in &g.notes {
                out.push_str(&format!("  note: {n}\n"));
            }
            out.push('\n');
        }
        for s in &self.skipped {
            out.push_str(&format!("skipped {}: {}\n", s.path.display(), s.reason));
        }
        out.push_str(&format!("({})\n", std_note(self.std_kind)));
        out
    }
}
