//! `reprolm policies [NAME]`: the precision presets and what each component runs in.

use anyhow::Result;
use reprolm_precision::{PrecisionPolicy, PRESETS};

use crate::config::resolve_policy;
use crate::progress::OutputMode;

/// Print every preset as one row, or one policy's full table.
pub fn command(name: Option<&str>, toml: bool, mode: OutputMode) -> Result<i32> {
    let policies: Vec<PrecisionPolicy> = match name {
        // NAME is a preset or a policy file: one it cannot be is a usage error.
        Some(n) => vec![resolve_policy(n).map_err(|e| crate::usage(crate::error_chain(&e)))?],
        None => PRESETS
            .iter()
            .map(|p| resolve_policy(p))
            .collect::<Result<_>>()?,
    };
    if mode == OutputMode::Json {
        for p in &policies {
            let table: serde_json::Map<String, serde_json::Value> = p
                .table()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.into()))
                .collect();
            crate::progress::event(
                "policy",
                serde_json::json!({ "name": p.name, "table": table }),
            );
        }
        return Ok(0);
    }
    if let [p] = policies.as_slice() {
        if name.is_some() {
            if toml {
                print!("{}", p.to_toml_string());
            } else {
                print!("{p}");
            }
            return Ok(0);
        }
    }
    let columns: Vec<&'static str> = policies[0].table().into_iter().map(|(k, _)| k).collect();
    let widths: Vec<usize> = columns.iter().map(|c| c.len().max(4)).collect();
    let mut head = format!("{:<10}", "POLICY");
    for (c, w) in columns.iter().zip(&widths) {
        head.push_str(&format!("  {c:<w$}"));
    }
    println!("{}", head.trim_end());
    for p in &policies {
        let mut line = format!("{:<10}", p.name);
        for ((_, v), w) in p.table().into_iter().zip(&widths) {
            line.push_str(&format!("  {v:<w$}"));
        }
        println!("{}", line.trim_end());
    }
    Ok(0)
}
