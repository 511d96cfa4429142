//! `reprolm report ROOT`: the reproducibility tables and plots over every run under a root.

use anyhow::{Context, Result};
use reprolm_metrics::report::{GroupOutcome, GroupReport};
use reprolm_metrics::{generate, ReportOptions, StdKind};
use serde_json::json;

use crate::args::{ReportArgs, StdArg};
use crate::progress::OutputMode;

/// A group as `--json-log` lists it: what it is (model, task, policy, the kernels its runs used,
/// what it was split by) and its headline metrics (null where not measured, with `refused`
/// saying why a group was not compared). report.json holds everything.
fn group_summary(g: &GroupReport) -> serde_json::Value {
    let mut kernels: Vec<&str> = g.runs.iter().map(|r| r.kernels.as_str()).collect();
    kernels.sort_unstable();
    kernels.dedup();
    let split: serde_json::Map<String, serde_json::Value> =
        g.split.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let mut out = json!({
        "model": g.model, "task": g.task, "decoding": g.decoding, "policy": g.policy,
        "kernels": kernels.join(", "), "split": split, "runs": g.runs.len(),
    });
    match &g.outcome {
        GroupOutcome::Compared(m) => {
            let div = m.divergence.value();
            out["accuracy_mean"] = json!(m.accuracy_mean.value());
            out["std_acc"] = json!(m.std_acc.value());
            out["divergence_share"] = json!(div.map(|d| d.share_diverging));
            out["div_index_mean"] = json!(div.and_then(|d| d.mean_index.value()));
            out["avg_std_output_length"] = json!(m.avg_std_output_length.value());
            out["avg_std_top1_prob"] = json!(m.avg_std_top1_prob.value());
        }
        GroupOutcome::Refused(why) => out["refused"] = json!(why),
    }
    out
}

/// Build and write the report, print its table.
pub fn command(args: &ReportArgs, mode: OutputMode) -> Result<i32> {
    let std_kind = match args.std {
        StdArg::Sample => StdKind::Sample,
        StdArg::Population => StdKind::Population,
    };
    let opts = ReportOptions {
        out_dir: args.out.clone(),
        std_kind,
        split_by: args.split_by.clone(),
        top1_axis: match args.top1_axis {
            crate::args::Top1AxisArg::Auto => reprolm_metrics::report::Top1Axis::Auto,
            crate::args::Top1AxisArg::Linear => reprolm_metrics::report::Top1Axis::Linear,
            crate::args::Top1AxisArg::Log => reprolm_metrics::report::Top1Axis::Log,
        },
        reference: Some(args.reference.clone()),
    };
    let (report, files) = generate(&args.root, &opts)
        .with_context(|| format!("building the report over {}", args.root.display()))?;
    let written: Vec<String> = files
        .all()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    match mode {
        OutputMode::Json => crate::progress::event(
            "report",
            json!({ "root": args.root, "groups": report.groups.iter().map(group_summary).collect::<Vec<_>>(), "files": written }),
        ),
        _ => {
            print!("{}", report.terminal_table());
            if mode == OutputMode::Human {
                for f in &written {
                    println!("wrote {f}");
                }
            }
        }
    }
    Ok(0)
}
