//! `reprolm report ROOT`: the reproducibility tables and plots over every run under a root.

use anyhow::{Context, Result};
use reprolm_metrics::{generate, ReportOptions, StdKind};
use serde_json::json;

use crate::args::{ReportArgs, StdArg};
use crate::progress::OutputMode;

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
            json!({ "root": args.root, "groups": report.groups.len(), "files": written }),
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
