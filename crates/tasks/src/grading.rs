//! The one place this crate calls `reprolm-scoring`: math equivalence, multiple choice, and code run
//! in the sandbox. Tasks turn the grader's report into a [`Score`] here, so a change in the scoring
//! crate's API touches this file only.

use std::num::NonZeroUsize;
use std::sync::OnceLock;

use reprolm_scoring::sandbox::{
    self, GradeJob, GradeOptions, LcbProblem, Limits, Sandbox, SandboxConfig, Workers,
};
use reprolm_scoring::{grade_choice, grade_math_with, MathOptions};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::task::Score;

/// Grades a math response against a gold answer (last `\boxed{}` after `</think>`, equivalence).
pub(crate) fn math(gold: &str, response: &str, opts: &MathOptions) -> Score {
    let g = grade_math_with(gold, response, opts);
    let extracted = g.extracted.as_ref().map(|e| e.text.clone());
    Score::binary(
        g.correct,
        extracted,
        serde_json::to_value(&g).unwrap_or(Value::Null),
    )
}

/// Grades a multiple-choice response against the gold letter.
pub(crate) fn choice(gold: char, response: &str) -> Score {
    let g = grade_choice(gold, response);
    let extracted = g.extracted.map(|e| e.letter.to_string());
    Score::binary(
        g.correct,
        extracted,
        serde_json::to_value(g).unwrap_or(Value::Null),
    )
}

/// Runs generated programs against a problem's tests; the sandbox starts on first use, so listing or
/// loading a code task works on machines that cannot run code.
pub(crate) struct CodeGrader {
    sandbox: OnceLock<std::result::Result<Sandbox, String>>,
    options: GradeOptions,
    memory: u64,
    workers: Option<NonZeroUsize>,
}

impl CodeGrader {
    /// A grader with LiveCodeBench's settings (6 s per test, stop at the first failure), each
    /// program bounded to `memory` bytes (default [`Limits::default`]'s) and `workers` programs
    /// at once (default [`Workers::for_machine`]).
    pub(crate) fn new(memory: Option<u64>, workers: Option<NonZeroUsize>) -> Self {
        CodeGrader {
            sandbox: OnceLock::new(),
            options: GradeOptions::default(),
            memory: memory.unwrap_or(Limits::default().memory),
            workers,
        }
    }

    fn sandbox(&self, task: &str, problem: &str) -> Result<&Sandbox> {
        self.sandbox
            .get_or_init(|| {
                let config = SandboxConfig {
                    limits: Limits {
                        memory: self.memory,
                        ..Limits::default()
                    },
                    ..SandboxConfig::default()
                };
                Sandbox::new(config).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|reason| Error::Scoring {
                task: task.into(),
                problem: problem.into(),
                reason: format!("the code sandbox cannot start: {reason}"),
            })
    }

    /// How many programs run at once: as configured, or as many as the cores and the memory
    /// allow at the memory bound each.
    fn workers(&self) -> Workers {
        let plan = Workers::for_machine(self.memory);
        match self.workers {
            Some(n) => Workers {
                count: n.get(),
                ..plan
            },
            None => plan,
        }
    }

    /// Starts the sandbox and describes how programs will run (workers, memory bound, which
    /// isolation is missing).
    pub(crate) fn prepare(&self, task: &str) -> Result<String> {
        let sb = self.sandbox(task, "(none yet)")?;
        let isolation = sb.isolation();
        let mut line = format!(
            "{task}: grading with {}; memory bounded by {}",
            self.workers(),
            isolation.memory_bound
        );
        for w in &isolation.warnings {
            line.push_str(&format!("\nwarning: {task}: sandbox: {w}"));
        }
        Ok(line)
    }

    /// Grades one response (its last fenced code block).
    pub(crate) fn grade(&self, task: &str, problem: &LcbProblem, response: &str) -> Result<Score> {
        let sb = self.sandbox(task, &problem.id)?;
        let report = sandbox::grade_response(sb, problem, response, &self.options);
        Ok(code_score(report, response))
    }

    /// Grades many responses on [`workers`](Self::workers) workers, in input order.
    pub(crate) fn grade_many(&self, task: &str, jobs: Vec<GradeJob>) -> Result<Vec<Score>> {
        let Some(first) = jobs.first() else {
            return Ok(Vec::new());
        };
        let sb = self.sandbox(task, &first.problem.id)?;
        let workers = self.workers().count;
        let reports =
            sandbox::grade_many(sb, &jobs, workers, &self.options).map_err(|e| Error::Scoring {
                task: task.into(),
                problem: first.problem.id.clone(),
                reason: e.to_string(),
            })?;
        Ok(reports
            .into_iter()
            .zip(&jobs)
            .map(|(r, j)| code_score(r, &j.response))
            .collect())
    }
}

fn code_score(report: sandbox::ProblemReport, response: &str) -> Score {
    Score::binary(
        report.passed,
        sandbox::extract_code(response),
        serde_json::to_value(&report).unwrap_or(Value::Null),
    )
}

/// Builds the scoring crate's problem from a LiveCodeBench record whose private tests are plain JSON
/// (or absent).
pub(crate) fn lcb_problem(
    record: &serde_json::Map<String, Value>,
) -> std::result::Result<LcbProblem, String> {
    LcbProblem::from_record(&Value::Object(record.clone())).map_err(|e| e.to_string())
}
