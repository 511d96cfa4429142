//! `reprolm tasks`: every registered task, built-in or linked in as a plugin.

use anyhow::{Context, Result};

use crate::progress::OutputMode;

/// Print the task list.
pub fn command(mode: OutputMode) -> Result<i32> {
    let list = reprolm_tasks::summaries().context("listing tasks")?;
    if mode == OutputMode::Json {
        for t in &list {
            crate::progress::event("task", serde_json::to_value(t)?);
        }
        return Ok(0);
    }
    let width = list.iter().map(|t| t.name.len()).max().unwrap_or(4).max(4);
    println!(
        "{:width$}  {:>7}  {:>6}  {:<28}  DESCRIPTION",
        "TASK", "VERSION", "SIZE", "SOURCE"
    );
    for t in &list {
        let size = t.size.map(|s| s.to_string()).unwrap_or_else(|| "?".into());
        println!(
            "{:width$}  {:>7}  {:>6}  {:<28}  {}",
            t.name, t.version, size, t.source, t.description
        );
    }
    Ok(0)
}
