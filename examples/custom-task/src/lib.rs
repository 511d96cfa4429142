//! An example benchmark defined outside `reprolm-tasks`: unit conversions with integer answers.
//!
//! Linking this crate into a binary is all it takes for the task to appear in the registry (and so
//! in `reprolm tasks` and `reprolm run --task unit_conversion`): the `inventory::submit!` below runs
//! before `main`. See README.md, "Adding a benchmark".
#![deny(missing_docs)]

use reprolm_tasks::data::{content_id, read_source};
use reprolm_tasks::{
    ChatMessage, DataSource, Dataset, Problem, Result, Score, Task, TaskEntry, TaskOptions,
};

/// The registry name.
pub const NAME: &str = "unit_conversion";

/// The task. It holds nothing but its settings; data is read in `load`.
#[derive(Debug, Clone, Default)]
pub struct UnitConversion;

impl UnitConversion {
    /// The constructor the registry calls. It takes the task options so it can refuse settings it
    /// does not know; this task has none.
    pub fn boxed(options: &TaskOptions) -> Result<Box<dyn Task>> {
        options.params_for(NAME, &[])?;
        Ok(Box::new(UnitConversion))
    }
}

// Registration: a constant entry, at item level (never inside a function).
reprolm_tasks::inventory::submit! { TaskEntry { name: NAME, origin: module_path!(), make: UnitConversion::boxed } }

impl Task for UnitConversion {
    fn name(&self) -> &str {
        NAME
    }

    fn description(&self) -> &str {
        "Example plugin: five unit conversions with integer answers"
    }

    fn version(&self) -> &str {
        "1"
    }

    fn default_source(&self) -> DataSource {
        DataSource::Path(concat!(env!("CARGO_MANIFEST_DIR"), "/data/problems.jsonl").into())
    }

    fn size_hint(&self) -> Option<usize> {
        Some(5)
    }

    fn load(&self, source: &DataSource) -> Result<Dataset> {
        // `read_source` handles jsonl/json/csv/parquet files, directories and Hub datasets, hashes
        // every file, and gives each record its file:line for error messages.
        let raw = read_source(source, NAME)?;
        let mut problems = Vec::new();
        for rec in raw.records {
            let question = rec.text(NAME, &["question"])?;
            let answer = rec.text(NAME, &["answer"])?;
            let id = rec
                .text(NAME, &["id"])
                .unwrap_or_else(|_| content_id(&rec.fields));
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
        // Refuses duplicate ids and empty data, and records the file digests for the run manifest.
        Dataset::new(
            NAME,
            self.version(),
            source,
            raw.files,
            serde_json::Value::Null,
            problems,
        )
    }

    fn messages(&self, problem: &Problem) -> Vec<ChatMessage> {
        let question = problem.metadata_str("question").unwrap_or_default();
        vec![ChatMessage::user(format!(
            "{question}\nPut the final number within \\boxed{{}}."
        ))]
    }

    fn score(&self, problem: &Problem, response: &str) -> Result<Score> {
        // Reuse the math grader: it finds the last \boxed{} after </think> and compares by value.
        let grade =
            reprolm_scoring::grade_math(problem.answer.as_deref().unwrap_or_default(), response);
        Ok(Score::binary(
            grade.correct,
            grade.extracted.as_ref().map(|e| e.text.clone()),
            serde_json::to_value(&grade).unwrap_or_default(),
        ))
    }
}
