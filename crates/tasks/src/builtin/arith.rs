//! `arith`: synthetic multi-step integer arithmetic with exact answers, made offline from a seed.
//!
//! It exists so that `reprolm run` works on any machine with no download: the embedded default
//! model is trained on the train split of [`crate::arith::generate`], and this task evaluates on
//! the disjoint test split. There is no paper or reference implementation. The prompt is the
//! question alone (`What is 48 + 27 - 19 + 6 * 3?`), exactly what the embedded model saw in
//! training; it answers with `\boxed{}`, so the math grader scores it. The main variant is 100 test
//! problems from the run seed.
//!
//! A jsonl/json/csv/parquet file with `question` and `answer` fields (and optionally `id`) can be
//! given instead, e.g. to evaluate a fixed, saved problem list.

use serde_json::{json, Map};

use crate::arith::{generate, Split};
use crate::builtin::math500::{load_math, Fields};
use crate::data::{DataSource, Location};
use crate::error::Result;
use crate::grading;
use crate::options::{TaskOption, TaskOptions};
use crate::registry::TaskEntry;
use crate::task::{ChatMessage, Dataset, Problem, Score, Task};

const NAME: &str = "arith";
/// Problems generated when the `n` option is not given.
pub const DEFAULT_COUNT: usize = 100;

/// The `arith` task.
#[derive(Debug, Clone)]
pub struct Arith {
    seed: u64,
    count: usize,
}

impl Arith {
    /// Builds the task; accepts `n` (number of problems). The generator seed is [`TaskOptions::seed`].
    pub fn boxed(options: &TaskOptions) -> Result<Box<dyn Task>> {
        let params = options.params_for(NAME, &TaskOption::keys(&OPTIONS))?;
        let count = params.parse::<usize>("n")?.unwrap_or(DEFAULT_COUNT);
        if count == 0 {
            return Err(params.bad("n", "0", "at least one problem".into()));
        }
        Ok(Box::new(Arith {
            seed: options.seed,
            count,
        }))
    }
}

inventory::submit! { TaskEntry { name: NAME, origin: module_path!(), make: Arith::boxed } }

/// What `arith` accepts.
const OPTIONS: [TaskOption; 1] = [TaskOption {
    key: "n",
    help: "number of problems generated from the seed",
}];

impl Task for Arith {
    fn options(&self) -> &'static [TaskOption] {
        &OPTIONS
    }

    fn name(&self) -> &str {
        NAME
    }
    fn description(&self) -> &str {
        "Synthetic multi-step integer arithmetic, generated offline from the seed (test split)"
    }
    fn version(&self) -> &str {
        "1"
    }
    fn default_source(&self) -> DataSource {
        DataSource::Generated
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.count)
    }
    fn load(&self, source: &DataSource) -> Result<Dataset> {
        if *source != DataSource::Generated {
            let fields = Fields {
                problem: vec!["question".into()],
                answer: vec!["answer".into()],
                id: vec!["id".into()],
            };
            return load_math(NAME, self.version(), source, &fields, |_| true);
        }
        let problems = generate(Split::Test, self.seed, self.count)
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let mut fields = Map::new();
                fields.insert("question".into(), p.question.clone().into());
                fields.insert("answer".into(), p.answer.into());
                fields.insert("solution".into(), p.solution.into());
                let mut metadata = Map::new();
                metadata.insert("question".into(), p.question.into());
                let location = Location {
                    path: "generated".into(),
                    line: i + 1,
                };
                (
                    Problem {
                        id: p.id,
                        answer: Some(p.answer.to_string()),
                        fields,
                        metadata,
                    },
                    location,
                )
            })
            .collect();
        let settings = json!({ "split": "test", "seed": self.seed, "n": self.count });
        Dataset::new(NAME, self.version(), source, Vec::new(), settings, problems)
    }
    fn messages(&self, problem: &Problem) -> Vec<ChatMessage> {
        vec![ChatMessage::user(
            problem.metadata_str("question").unwrap_or_default(),
        )]
    }
    fn score(&self, problem: &Problem, response: &str) -> Result<Score> {
        Ok(grading::math(
            problem.answer.as_deref().unwrap_or_default(),
            response,
            &reprolm_scoring::MathOptions::default(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_problems_load_and_score() {
        let task = Arith::boxed(&TaskOptions::default().with_param("n", "5")).unwrap();
        let data = task.load_default().unwrap();
        assert_eq!(data.problems.len(), 5);
        assert!(data.files.is_empty());
        assert_eq!(data.sha256().len(), 64);
        let p = &data.problems[0];
        let q = p.field_str("question").unwrap();
        assert_eq!(task.messages(p)[0].content, q);
        assert!(q.starts_with("What is ") && q.ends_with('?'), "{q}");
        let solution = p.field_str("solution").unwrap();
        assert!(
            task.score(p, solution).unwrap().correct,
            "its own worked solution must score"
        );
        let wrong = format!(
            "\\boxed{{{}}}",
            p.answer.as_deref().unwrap().parse::<i64>().unwrap() + 1
        );
        assert!(!task.score(p, &wrong).unwrap().correct);
        // Same seed, same problems; another seed, others.
        assert_eq!(task.load_default().unwrap(), data);
        let other =
            Arith::boxed(&TaskOptions::default().with_seed(7).with_param("n", "5")).unwrap();
        assert_ne!(other.load_default().unwrap().problems, data.problems);
    }
}
