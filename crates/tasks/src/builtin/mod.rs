//! The built-in tasks, with the prompts of the reference implementation of arXiv 2506.09501 (derived
//! from SkyThought's evaluation handlers), so that numbers compare with the paper's.

pub mod aime;
pub mod arith;
pub mod gpqa;
pub mod livecodebench;
pub mod math500;

use std::collections::HashMap;

use serde_json::Value;

use crate::data::{DataSource, Location};
use crate::task::DataFile;
use crate::error::{Error, Result};
use crate::task::{Dataset, Problem};

/// Shared end of every `load`: refuses duplicate ids and empty results, and wraps the problems with
/// what the manifest records.
pub(crate) fn finish(
    task: &str,
    version: &str,
    source: &DataSource,
    files: Vec<DataFile>,
    settings: Value,
    problems: Vec<(Problem, Location)>,
) -> Result<Dataset> {
    let mut seen: HashMap<&str, &Location> = HashMap::new();
    for (p, loc) in &problems {
        if let Some(first) = seen.insert(&p.id, loc) {
            return Err(Error::DuplicateId {
                task: task.into(),
                id: p.id.clone(),
                first: first.to_string(),
                second: loc.to_string(),
            });
        }
    }
    if problems.is_empty() {
        return Err(Error::Source {
            task: task.into(),
            source_desc: source.to_string(),
            reason: "no problems (after filters)".into(),
        });
    }
    Ok(Dataset {
        task: task.into(),
        version: version.into(),
        source: source.to_string(),
        files,
        settings,
        problems: problems.into_iter().map(|(p, _)| p).collect(),
    })
}

/// `Return your final response within \boxed{}. {problem}`: the SkyThought MATH/AIME template.
pub(crate) fn boxed_prefix(problem: &str) -> String {
    format!("Return your final response within \\boxed{{}}. {problem}")
}
