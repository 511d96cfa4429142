//! `aime24` and `aime25`: the 30 problems of AIME I and II of 2024 and of 2025, answers 0 to 999.
//!
//! Checked against the reference implementation of arXiv 2506.09501 (SkyThought's AIME handlers):
//! - `aime24`: `AI-MO/aimo-validation-aime`, rows whose `url` contains `2024` (fields `problem`,
//!   `answer`); prompt `Return your final response within \boxed{}. {problem}`.
//! - `aime25`: `opencompass/AIME2025`, subsets `AIME2025-I` and `AIME2025-II` (fields `question`,
//!   `answer`); prompt `{problem}\nReturn your final response within \boxed{}`.
//!
//! Other copies name the problem field `problem` (the Qwen2.5-Math `aime24`/`aime25` files), so both
//! names are accepted, `question` first for aime25. Answers such as `025` are graded by value.

use crate::builtin::boxed_prefix;
use crate::builtin::math500::{load_math, Fields};
use crate::data::{DataSource, HubDataset};
use crate::error::Result;
use crate::grading;
use crate::options::{TaskOption, TaskOptions};
use crate::registry::TaskEntry;
use crate::task::{ChatMessage, Dataset, Problem, Score, Task};
use reprolm_scoring::MathOptions;

/// The `aime24` task.
#[derive(Debug, Clone)]
pub struct Aime24 {
    fields: Fields,
    grading: MathOptions,
}

impl Aime24 {
    /// Builds the task; accepts `problem_field`, `answer_field`, `id_field`, `last_number`, `decimal_comma`.
    pub fn boxed(options: &TaskOptions) -> Result<Box<dyn Task>> {
        Ok(Box::new(Aime24 {
            grading: super::math500::math_options(options, "aime24")?,
            fields: Fields::new(
                &["problem", "question"],
                &["answer"],
                &["id"],
                options,
                "aime24",
            )?,
        }))
    }
}

inventory::submit! { TaskEntry { name: "aime24", origin: module_path!(), make: Aime24::boxed } }

impl Task for Aime24 {
    fn options(&self) -> &'static [TaskOption] {
        &super::math500::MATH_OPTIONS
    }

    fn name(&self) -> &str {
        "aime24"
    }
    fn description(&self) -> &str {
        "AIME 2024 (I and II): 30 problems with integer answers 0-999"
    }
    fn version(&self) -> &str {
        "1"
    }
    fn default_source(&self) -> DataSource {
        DataSource::Hub(HubDataset::new(
            "AI-MO/aimo-validation-aime",
            &["data/train-00000-of-00001.parquet"],
        ))
    }
    fn size_hint(&self) -> Option<usize> {
        Some(30)
    }
    fn load(&self, source: &DataSource) -> Result<Dataset> {
        // The AI-MO file holds 2022-2024; like the reference, keep 2024 by URL. Records without a
        // URL (a user's own file) are kept.
        load_math(self.name(), self.version(), source, &self.fields, |r| {
            r.fields
                .get("url")
                .and_then(|u| u.as_str())
                .is_none_or(|u| u.contains("2024"))
        })
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

/// The `aime25` task.
#[derive(Debug, Clone)]
pub struct Aime25 {
    fields: Fields,
    grading: MathOptions,
}

impl Aime25 {
    /// Builds the task; accepts `problem_field`, `answer_field`, `id_field`, `last_number`, `decimal_comma`.
    pub fn boxed(options: &TaskOptions) -> Result<Box<dyn Task>> {
        Ok(Box::new(Aime25 {
            grading: super::math500::math_options(options, "aime25")?,
            fields: Fields::new(
                &["question", "problem"],
                &["answer"],
                &["id"],
                options,
                "aime25",
            )?,
        }))
    }
}

inventory::submit! { TaskEntry { name: "aime25", origin: module_path!(), make: Aime25::boxed } }

impl Task for Aime25 {
    fn options(&self) -> &'static [TaskOption] {
        &super::math500::MATH_OPTIONS
    }

    fn name(&self) -> &str {
        "aime25"
    }
    fn description(&self) -> &str {
        "AIME 2025 (I and II): 30 problems with integer answers 0-999"
    }
    fn version(&self) -> &str {
        "1"
    }
    fn default_source(&self) -> DataSource {
        DataSource::Hub(HubDataset::new(
            "opencompass/AIME2025",
            &["aime2025-I.jsonl", "aime2025-II.jsonl"],
        ))
    }
    fn size_hint(&self) -> Option<usize> {
        Some(30)
    }
    fn load(&self, source: &DataSource) -> Result<Dataset> {
        load_math(self.name(), self.version(), source, &self.fields, |_| true)
    }
    fn messages(&self, problem: &Problem) -> Vec<ChatMessage> {
        let question = problem.metadata_str("question").unwrap_or_default();
        vec![ChatMessage::user(format!(
            "{question}\nReturn your final response within \\boxed{{}}"
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
