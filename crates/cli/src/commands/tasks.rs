//! `reprolm tasks`: every registered task, built-in or linked in as a plugin.

use anyhow::{Context, Result};

use crate::progress::OutputMode;

/// Print the task list, or the one task `name` names with its settings.
pub fn command(name: Option<&str>, mode: OutputMode) -> Result<i32> {
    let list = reprolm_tasks::summaries().context("listing tasks")?;
    if let Some(name) = name {
        let Some(t) = list.iter().find(|t| t.name == name) else {
            return Err(crate::usage(format!(
                "no task `{name}`; registered: {}",
                list.iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        if mode == OutputMode::Json {
            crate::progress::event("task", serde_json::to_value(t)?);
            return Ok(0);
        }
        println!("{}: {}", t.name, t.description);
        println!(
            "  version {}, data {}, {} problems",
            t.version,
            t.source,
            t.size.map(|s| s.to_string()).unwrap_or_else(|| "?".into())
        );
        if t.options.is_empty() {
            println!("  settings: none");
        } else {
            println!("  settings (--task-param KEY=VALUE; in a sweep file `task_param = [\"KEY=VALUE\"]`):");
            let width = t.options.iter().map(|o| o.key.len()).max().unwrap_or(0);
            for o in &t.options {
                println!("    {:width$}  {}", o.key, o.help);
            }
        }
        return Ok(0);
    }
    if mode == OutputMode::Json {
        for t in &list {
            crate::progress::event("task", serde_json::to_value(t)?);
        }
        return Ok(0);
    }
    let width = list.iter().map(|t| t.name.len()).max().unwrap_or(4).max(4);
    println!(
        "{:width$}  {:>7}  {:>6}  {:<28}  DESCRIPTION (`reprolm tasks NAME` shows its settings)",
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
