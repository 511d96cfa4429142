//! What a sweep run locally leaves in its root, so that `sweep status ROOT` can list its runs
//! without the command line that started it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

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

pub(crate) fn write_local_record(root: &Path, file: &Path) -> Result<()> {
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

pub(crate) fn read_local_record(root: &Path) -> Result<Option<LocalRecord>> {
    let path = root.join(LOCAL_RECORD);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| {
            format!("{}: not a local sweep record", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
