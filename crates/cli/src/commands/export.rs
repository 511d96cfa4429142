//! `reprolm export DIR`: the run as JSON Lines or Parquet (`reprolm_metrics::export`), one record
//! per sample.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use reprolm_metrics::LoadedRun;
use serde_json::json;

use crate::args::{ExportArgs, ExportFormat};
use crate::progress::OutputMode;

/// Export the run; the output file is written whole or not at all (a temporary file renamed).
pub fn command(args: &ExportArgs, mode: OutputMode) -> Result<i32> {
    let ext = args.format.extension();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.dir.join(format!("export.{ext}")));
    let to_stdout = out == Path::new("-");
    // Parquet's footer comes last and readers seek to it: a pipe's reader can do nothing with it.
    if to_stdout && args.format == ExportFormat::Parquet {
        return Err(crate::usage(
            "--out - (stdout) works with --format jsonl only; give --format parquet a file",
        ));
    }
    let run = LoadedRun::load(&args.dir)
        .with_context(|| format!("reading run directory {}", args.dir.display()))?;
    if to_stdout {
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
    let tmp = out.with_extension(format!("{ext}.tmp"));
    let n = {
        let f = std::fs::File::create(&tmp).with_context(|| format!("--out {}", tmp.display()))?;
        match args.format {
            ExportFormat::Jsonl => {
                let mut w = std::io::BufWriter::new(f);
                let n = reprolm_metrics::export::export_jsonl(&run, &mut w)?;
                w.flush()
                    .with_context(|| format!("writing {}", tmp.display()))?;
                n
            }
            ExportFormat::Parquet => reprolm_metrics::export::export_parquet(&run, f)
                .with_context(|| format!("writing {}", tmp.display()))?,
        }
    };
    std::fs::rename(&tmp, &out).with_context(|| format!("writing {}", out.display()))?;
    mode.result(
        &format!(
            "{}: {n} samples written to {}",
            args.dir.display(),
            out.display()
        ),
        "exported",
        json!({ "dir": args.dir, "out": out, "samples": n, "format": ext }),
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
