//! `reprolm export DIR`: the run as JSON Lines (`reprolm_metrics::export`), one line per sample.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use reprolm_metrics::LoadedRun;
use serde_json::json;

use crate::args::ExportArgs;
use crate::progress::OutputMode;

/// Export the run; the output file is written whole or not at all (a temporary file renamed).
pub fn command(args: &ExportArgs, mode: OutputMode) -> Result<i32> {
    let run = LoadedRun::load(&args.dir)
        .with_context(|| format!("reading run directory {}", args.dir.display()))?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.dir.join("export.jsonl"));
    if out == Path::new("-") {
        let stdout = std::io::stdout();
        let mut w = std::io::BufWriter::new(stdout.lock());
        let written = reprolm_metrics::export::export_jsonl(&run, &mut w)
            .map(|_| ())
            .map_err(anyhow::Error::new)
            .and_then(|()| w.flush().map_err(anyhow::Error::new));
        // A reader that stops early (`| head`) has what it wanted: not a failure.
        return match written {
            Err(e) if is_broken_pipe(&e) => Ok(0),
            Err(e) => Err(e.context("writing to stdout")),
            Ok(()) => Ok(0),
        };
    }
    let tmp = out.with_extension("jsonl.tmp");
    let n = {
        let f = std::fs::File::create(&tmp).with_context(|| format!("--out {}", tmp.display()))?;
        let mut w = std::io::BufWriter::new(f);
        let n = reprolm_metrics::export::export_jsonl(&run, &mut w)?;
        w.flush()
            .with_context(|| format!("writing {}", tmp.display()))?;
        n
    };
    std::fs::rename(&tmp, &out).with_context(|| format!("writing {}", out.display()))?;
    mode.result(
        &format!(
            "{}: {n} samples written to {}",
            args.dir.display(),
            out.display()
        ),
        "exported",
        json!({ "dir": args.dir, "out": out, "samples": n }),
    );
    Ok(0)
}

/// Whether writing failed because the reader of the pipe went away.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
