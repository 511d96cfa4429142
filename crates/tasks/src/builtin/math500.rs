//! `math500`: the 500-problem MATH test subset of "Let's Verify Step by Step" (Lightman et al., 2023,
//! arXiv 2305.20050), as used by arXiv 2506.09501.
//!
//! Data: `HuggingFaceH4/MATH-500` `test.jsonl`, the same bytes as prm800k's `math_splits/test.jsonl`
//! (fields `problem`, `answer`, `unique_id`). Prompt, from the reference implementation's SkyThought
//! MATH handler: `Return your final response within \boxed{}. {problem}` as one user message.
//! Grading: the last `\boxed{}` after `</think>` compared with `answer` by math equivalence. The main
//! (and only) variant is the full 500-problem set.

use serde_json::json;

use crate::builtin::boxed_prefix;
use crate::data::{content_id, read_source, DataSource, HubDataset};
use crate::error::Result;
use crate::grading;
use crate::options::{TaskOption, TaskOptions};
use crate::registry::TaskEntry;
use crate::task::{ChatMessage, Dataset, Problem, Score, Task};
use reprolm_scoring::{DecimalComma, MathOptions};

/// Settings every math task accepts: field names, for datasets that name things differently, and
/// the grading choices where graders differ.
pub(crate) const MATH_OPTIONS: [TaskOption; 5] = [
    TaskOption {
        key: "problem_field",
        help: "the record field holding the problem text (default: the task's usual names)",
    },
    TaskOption {
        key: "answer_field",
        help: "the record field holding the gold answer",
    },
    TaskOption {
        key: "id_field",
        help: "the record field holding the problem id",
    },
    TaskOption {
        key: "last_number",
        help: "true: a response with no \\boxed{} or answer phrase is graded by its last number when nothing follows it, as Math-Verify does (default false: such a response states no answer)",
    },
    TaskOption {
        key: "decimal_comma",
        help: "true (default): two digit groups joined by one comma (1000,99) are a decimal when compared with a single number; false: a comma always separates list items, as hendrycks is_equiv in effect does",
    },
];

/// The grading choices of `options` (`last_number`, `decimal_comma`).
pub(crate) fn math_options(options: &TaskOptions, task: &str) -> Result<MathOptions> {
    let params = options.params_for(task, &TaskOption::keys(&MATH_OPTIONS))?;
    Ok(MathOptions {
        last_number_fallback: params.flag("last_number")?.unwrap_or(false),
        decimal_comma: match params.flag("decimal_comma")? {
            Some(false) => DecimalComma::Never,
            _ => DecimalComma::AgainstNumber,
        },
    })
}

/// Which record fields hold the problem, answer and id (first present wins).
#[derive(Debug, Clone)]
pub(crate) struct Fields {
    pub problem: Vec<String>,
    pub answer: Vec<String>,
    pub id: Vec<String>,
}

impl Fields {
    pub(crate) fn new(
        problem: &[&str],
        answer: &[&str],
        id: &[&str],
        options: &TaskOptions,
        task: &str,
    ) -> Result<Self> {
        let params = options.params_for(task, &TaskOption::keys(&MATH_OPTIONS))?;
        let pick = |key: &str, defaults: &[&str]| match params.get(key) {
            Some(v) => vec![v.to_string()],
            None => defaults.iter().map(|s| s.to_string()).collect(),
        };
        Ok(Fields {
            problem: pick("problem_field", problem),
            answer: pick("answer_field", answer),
            id: pick("id_field", id),
        })
    }
}

fn names(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Reads math records: the problem text into `metadata.question`, the answer, the id (content hash
/// when the dataset has none). `keep` filters records (AIME 2024 by URL).
pub(crate) fn load_math(
    task: &str,
    version: &str,
    source: &DataSource,
    fields: &Fields,
    keep: impl Fn(&crate::data::Record) -> bool,
) -> Result<Dataset> {
    let raw = read_source(source, task)?;
    let mut problems = Vec::new();
    for rec in raw.records {
        if !keep(&rec) {
            continue;
        }
        let question = rec.text(task, &names(&fields.problem))?;
        let answer = rec.text(task, &names(&fields.answer))?;
        let id = match rec.text(task, &names(&fields.id)) {
            Ok(id) => id,
            Err(crate::Error::MissingField { .. }) => content_id(&rec.fields),
            Err(e) => return Err(e),
        };
        let mut metadata = serde_json::Map::new();
        metadata.insert("question".into(), question.into());
        problems.push((
            Problem {
                id,
                answer: Some(answer),
                fields: rec.fields,
                metadata,
            },
            rec.location,
        ));
    }
    let settings = json!({ "problem_field": fields.problem, "answer_field": fields.answer, "id_field": fields.id });
    Dataset::new(task, version, source, raw.files, settings, problems)
}

/// The `math500` task.
#[derive(Debug, Clone)]
pub struct Math500 {
    fields: Fields,
    grading: MathOptions,
}

impl Math500 {
    /// Builds the task; accepts `problem_field`, `answer_field`, `id_field`, `last_number`, `decimal_comma`.
    pub fn boxed(options: &TaskOptions) -> Result<Box<dyn Task>> {
        Ok(Box::new(Math500 {
            grading: math_options(options, "math500")?,
            fields: Fields::new(
                &["problem"],
                &["answer"],
                &["unique_id"],
                options,
                "math500",
            )?,
        }))
    }
}

inventory::submit! { TaskEntry { name: "math500", origin: module_path!(), make: Math500::boxed } }

impl Task for Math500 {
    fn options(&self) -> &'static [TaskOption] {
        &MATH_OPTIONS
    }

    fn name(&self) -> &str {
        "math500"
    }
    fn description(&self) -> &str {
        "MATH-500: 500 competition math problems (Lightman et al. 2023), boxed answers graded by equivalence"
    }
    fn version(&self) -> &str {
        "1"
    }
    fn default_source(&self) -> DataSource {
        DataSource::Hub(HubDataset::new("HuggingFaceH4/MATH-500", &["test.jsonl"]))
    }
    fn size_hint(&self) -> Option<usize> {
        Some(500)
    }
    fn load(&self, source: &DataSource) -> Result<Dataset> {
        load_math(self.name(), self.version(), source, &self.fields, |_| true)
    }
    fn messages(&self, problem: &Problem) -> Vec<ChatMessage> {
        vec![ChatMessage::user(boxed_prefix(
            problem.metadata_str("question").unwrap_or_default(),
        ))]
    }
    fn score(&self, problem: &Problem, response: &str) -> Result<Score> {
        Ok(grading::math(
            problem.answer.as_deref().unwrap_or_default(),
            response,
            &self.grading,
        ))
    }
}
