//! report.csv (one row per group, the paper's table in long form) and report_runs.csv (one row per run).
//!
//! Cells hold plain numbers in the metric's own unit (accuracy as a fraction, Avg_Std@top1_prob as a
//! probability) so that spreadsheets compute with them; an empty cell is n/a, with the reason in `notes`.

use std::path::Path;

use crate::error::{Error, Result};
use crate::metrics::Measure;
use crate::report::{GroupOutcome, Report};

fn num(m: &Measure<f64>) -> String {
    m.value().map_or_else(String::new, |v| v.to_string())
}

fn csv_err(path: &Path) -> impl Fn(csv::Error) -> Error + '_ {
    move |source| Error::Csv {
        path: path.into(),
        source,
    }
}

pub(crate) fn write_groups_csv(report: &Report, path: &Path) -> Result<()> {
    let err = csv_err(path);
    let mut w = csv::Writer::from_path(path).map_err(&err)?;
    w.write_record([
        "model",
        "task",
        "task_version",
        "decoding",
        "policy",
        "status",
        "runs",
        "samples",
        "problems",
        "accuracy_mean",
        "std_acc",
        "avg_std_output_length",
        "div_share",
        "div_count",
        "div_index_mean",
        "div_index_median",
        "avg_std_top1_prob",
        "pass1_mean",
        "pass1_std",
        "notes",
    ])
    .map_err(&err)?;
    for g in &report.groups {
        let mut row = vec![
            g.model.clone(),
            g.task.clone(),
            g.task_versions.join("/"),
            g.decoding.clone(),
            g.policy_label(),
        ];
        match &g.outcome {
            GroupOutcome::Refused(reason) => {
                row.push("refused".into());
                row.push(g.runs.len().to_string());
                row.extend(std::iter::repeat_n(String::new(), 12));
                row.push(reason.clone());
            }
            GroupOutcome::Compared(m) => {
                row.push("compared".into());
                row.push(m.n_runs.to_string());
                row.push(m.n_samples.to_string());
                row.push(m.n_problems.to_string());
                row.push(num(&m.accuracy_mean));
                row.push(num(&m.std_acc));
                row.push(num(&m.avg_std_output_length));
                let mut notes = g.notes.clone();
                match &m.divergence {
                    Measure::Value(d) => {
                        row.push(d.share_diverging.to_string());
                        row.push(d.n_diverging.to_string());
                        row.push(num(&d.mean_index));
                        row.push(num(&d.median_index));
                    }
                    Measure::Na(r) => {
                        row.extend(std::iter::repeat_n(String::new(), 4));
                        notes.push(format!("Div_Index: {r}"));
                    }
                }
                row.push(num(&m.avg_std_top1_prob));
                let p1 = m.pass_at_k.first();
                row.push(p1.map_or_else(String::new, |p| p.mean.to_string()));
                row.push(p1.map_or_else(String::new, |p| num(&p.std)));
                for (name, v) in [
                    ("Std@Acc", &m.std_acc),
                    ("Avg_Std@Output_Length", &m.avg_std_output_length),
                    ("Avg_Std@top1_prob", &m.avg_std_top1_prob),
                ] {
                    if let Measure::Na(r) = v {
                        notes.push(format!("{name}: {r}"));
                    }
                }
                row.push(notes.join("; "));
            }
        }
        w.write_record(&row).map_err(&err)?;
    }
    w.flush().map_err(|e| Error::Io {
        path: path.into(),
        source: e,
    })
}

pub(crate) fn write_runs_csv(report: &Report, path: &Path) -> Result<()> {
    let err = csv_err(path);
    let mut w = csv::Writer::from_path(path).map_err(&err)?;
    w.write_record([
        "model",
        "task",
        "decoding",
        "policy",
        "path",
        "label",
        "device_kind",
        "device_name",
        "gpu_count",
        "tp_size",
        "batch_size",
        "batching_mode",
        "deterministic",
        "seed",
        "finished",
        "completed",
        "expected",
        "samples",
        "accuracy",
        "ci95_lo",
        "ci95_hi",
        "mean_length",
        "median_length",
        "share_truncated",
        "pass_at_k",
        "left_out",
    ])
    .map_err(&err)?;
    for g in &report.groups {
        for r in &g.runs {
            let mut row = vec![
                g.model.clone(),
                g.task.clone(),
                g.decoding.clone(),
                g.policy_label(),
                r.path.display().to_string(),
                r.label.clone(),
                r.device_kind.clone(),
                r.device_name.clone(),
                r.gpu_count.to_string(),
                r.tp_size.to_string(),
                r.batch_size.to_string(),
                r.batching_mode.clone(),
                r.deterministic.to_string(),
                r.seed.to_string(),
                r.finished.to_string(),
                r.n_completed.to_string(),
                r.n_expected.to_string(),
            ];
            match &r.stats {
                Some(s) => {
                    row.push(s.n_samples.to_string());
                    row.push(num(&s.accuracy));
                    let ci = s.accuracy_ci95.value();
                    row.push(ci.map_or_else(String::new, |c| c.lo.to_string()));
                    row.push(ci.map_or_else(String::new, |c| c.hi.to_string()));
                    row.push(num(&s.mean_length));
                    row.push(num(&s.median_length));
                    row.push(num(&s.share_truncated));
                    row.push(
                        s.pass_at_k
                            .iter()
                            .map(|p| format!("{}:{}", p.k, p.value))
                            .collect::<Vec<_>>()
                            .join(";"),
                    );
                }
                None => row.extend(std::iter::repeat_n(String::new(), 8)),
            }
            row.push(r.left_out.clone().unwrap_or_default());
            w.write_record(&row).map_err(&err)?;
        }
    }
    w.flush().map_err(|e| Error::Io {
        path: path.into(),
        source: e,
    })
}
