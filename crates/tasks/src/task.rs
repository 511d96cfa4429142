//! The `Task` trait and the values that pass through it: problems, chat messages, scores, datasets.
//!
//! A task is the unit a run is about: it knows where its data lives, how to turn a record into a
//! [`Problem`] with a stable id, the exact prompt the reference implementation sends, and how a
//! response is graded. Everything a run records about the task (name, version, data hash, settings)
//! comes from here, so two runs that agree on these agree on the inputs.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use std::collections::HashMap;

use crate::data::{hex, DataFile, DataSource, Location};
use crate::error::{Error, Result};

/// One benchmark item.
///
/// `id` is stable across runs and machines: the dataset's own id where it has one, else a hash of
/// the record's content. Runs key responses by it, and the per-request sampling RNG is derived from
/// it, so it must not depend on the file's order or on the batch a problem lands in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// Stable id (dataset id, else a content hash).
    pub id: String,
    /// The reference answer as text (`None` where the task has none, e.g. code generation graded by
    /// tests).
    pub answer: Option<String>,
    /// The record's fields as read from the data file.
    pub fields: Map<String, Value>,
    /// Values the task derived at load time, e.g. GPQA's shuffled choices and correct letter, or a
    /// LiveCodeBench problem's test kind. Recorded so a run can be checked without re-deriving them.
    pub metadata: Map<String, Value>,
}

impl Problem {
    /// A string field of the record, if present.
    ///
    /// ```
    /// # use reprolm_tasks::Problem;
    /// let mut p = Problem { id: "1".into(), answer: None, fields: Default::default(), metadata: Default::default() };
    /// p.fields.insert("problem".into(), "What is 1 + 1?".into());
    /// assert_eq!(p.field_str("problem"), Some("What is 1 + 1?"));
    /// ```
    pub fn field_str(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str)
    }

    /// A string value the task derived at load time, if present.
    pub fn metadata_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(Value::as_str)
    }
}

/// One chat message. Role and content are plain strings so the engine's chat template can take them
/// as they are (`user`, `system`, `assistant`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The message text.
    pub content: String,
}

impl ChatMessage {
    /// A user message; the reference implementation sends every prompt as a single one.
    ///
    /// ```
    /// let m = reprolm_tasks::ChatMessage::user("hi");
    /// assert_eq!((m.role.as_str(), m.content.as_str()), ("user", "hi"));
    /// ```
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage {
            role: "user".into(),
            content: content.into(),
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        ChatMessage {
            role: "system".into(),
            content: content.into(),
        }
    }
}

/// The grade of one response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Whether the response counts as solving the problem.
    pub correct: bool,
    /// 1.0 or 0.0 for the built-ins; a plugin may give partial credit.
    pub score: f64,
    /// What the grader read as the answer (a boxed expression, a letter, the program that ran).
    pub extracted: Option<String>,
    /// The grader's full report, stored with the response so a grade can be audited later.
    pub detail: Value,
}

impl Score {
    /// A pass/fail score: `score` is 1.0 when correct.
    ///
    /// ```
    /// let s = reprolm_tasks::Score::binary(true, Some("42".into()), serde_json::Value::Null);
    /// assert_eq!(s.score, 1.0);
    /// ```
    pub fn binary(correct: bool, extracted: Option<String>, detail: Value) -> Self {
        Score {
            correct,
            score: if correct { 1.0 } else { 0.0 },
            extracted,
            detail,
        }
    }
}

/// The problems of a task as loaded from one source, with what a manifest records about them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// The task's name.
    pub task: String,
    /// The task's version (prompt and scoring revision).
    pub version: String,
    /// Where the data came from, as shown to users.
    pub source: String,
    /// Every file read, in reading order.
    pub files: Vec<DataFile>,
    /// Settings that changed what was loaded or how it is shown (filters, GPQA shuffle seed).
    pub settings: Value,
    /// The problems, in dataset order.
    pub problems: Vec<Problem>,
}

impl Dataset {
    /// Wraps loaded problems with what a manifest records, refusing what would break a run: two
    /// problems with one id (responses are keyed by id) or no problems at all. Each problem comes
    /// with the [`Location`] it was read from, so a duplicate is reported at both places.
    ///
    /// ```
    /// use reprolm_tasks::{data::Location, DataSource, Dataset, Problem};
    /// let p = |id: &str| Problem { id: id.into(), answer: None, fields: Default::default(), metadata: Default::default() };
    /// let at = |line| Location { path: "d.jsonl".into(), line };
    /// let src = DataSource::Path("d.jsonl".into());
    /// let ok = Dataset::new("t", "1", &src, vec![], serde_json::Value::Null, vec![(p("a"), at(1)), (p("b"), at(2))]);
    /// assert_eq!(ok.unwrap().problems.len(), 2);
    /// let dup = Dataset::new("t", "1", &src, vec![], serde_json::Value::Null, vec![(p("a"), at(1)), (p("a"), at(2))]);
    /// assert_eq!(dup.unwrap_err().to_string(), "task `t`: problem id `a` appears twice (d.jsonl:1 and d.jsonl:2)");
    /// ```
    pub fn new(
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

    /// One digest for the whole dataset: the file's sha256 when there is one file, else the sha256
    /// of the lines `<sha256>  <file name>` in reading order. Generated data has no files and gets
    /// the sha256 of its problems' ids and answers.
    ///
    /// ```
    /// # use reprolm_tasks::{Dataset, DataFile};
    /// let d = Dataset { task: "t".into(), version: "1".into(), source: "x".into(), settings: Default::default(),
    ///     files: vec![DataFile { path: "a.jsonl".into(), sha256: "ab".repeat(32), bytes: 3 }], problems: vec![] };
    /// assert_eq!(d.sha256(), "ab".repeat(32));
    /// ```
    pub fn sha256(&self) -> String {
        match self.files.as_slice() {
            [one] => one.sha256.clone(),
            [] => {
                let mut h = Sha256::new();
                for p in &self.problems {
                    h.update(p.id.as_bytes());
                    h.update([0]);
                    h.update(p.answer.as_deref().unwrap_or("").as_bytes());
                    h.update([b'\n']);
                }
                hex(&h.finalize())
            }
            many => {
                let mut h = Sha256::new();
                for f in many {
                    let name = f
                        .path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    h.update(format!("{}  {}\n", f.sha256, name).as_bytes());
                }
                hex(&h.finalize())
            }
        }
    }

    /// Looks a problem up by id.
    pub fn get(&self, id: &str) -> Option<&Problem> {
        self.problems.iter().find(|p| p.id == id)
    }
}

/// A benchmark: its data, its prompt, its grader.
///
/// Implementations are registered with [`inventory::submit!`] as a [`TaskEntry`](crate::TaskEntry);
/// see the crate docs. Methods take `&self` and tasks are `Send + Sync` so one instance can score
/// responses on many threads.
pub trait Task: Send + Sync {
    /// The registry name, e.g. `math500`. Also what `--task` takes.
    fn name(&self) -> &str;

    /// One line for `reprolm tasks`.
    fn description(&self) -> &str;

    /// Revision of prompt and grading; recorded in manifests so a changed prompt is never compared
    /// silently with an old run. Bump it whenever `messages` or `score` changes behaviour.
    fn version(&self) -> &str;

    /// Where the data comes from when the user names none.
    fn default_source(&self) -> DataSource;

    /// The settings the task accepts (`--task-param KEY=VALUE`), for `reprolm tasks NAME`.
    fn options(&self) -> &'static [crate::TaskOption] {
        &[]
    }

    /// Number of problems the default source holds, when known without loading it (shown by
    /// `reprolm tasks`; loading may need the network or a password).
    fn size_hint(&self) -> Option<usize> {
        None
    }

    /// Reads the problems from `source`.
    fn load(&self, source: &DataSource) -> Result<Dataset>;

    /// Reads the problems from the default source.
    fn load_default(&self) -> Result<Dataset> {
        self.load(&self.default_source())
    }

    /// The chat messages sent to the model for `problem`.
    fn messages(&self, problem: &Problem) -> Vec<ChatMessage>;

    /// Gets grading ready before any response exists (the code sandbox starts here) and says
    /// how it will run, so that a run learns at its start, not hours later, that its responses
    /// cannot be graded. `Ok(None)` when there is nothing to prepare or say.
    fn prepare_scoring(&self) -> Result<Option<String>> {
        Ok(None)
    }

    /// Grades one response. A wrong, empty or unparsable response is a `Score` with
    /// `correct: false`; an `Err` means grading itself could not run (e.g. no code sandbox).
    fn score(&self, problem: &Problem, response: &str) -> Result<Score>;

    /// Grades many responses on all cores, in input order. Tasks whose grader has its own
    /// parallelism (code execution) override this.
    fn score_many(&self, items: &[(&Problem, &str)]) -> Result<Vec<Score>> {
        use rayon::prelude::*;
        items.par_iter().map(|(p, r)| self.score(p, r)).collect()
    }

    /// The reference answer as shown in reports, if the task has one.
    fn reference_answer(&self, problem: &Problem) -> Option<String> {
        problem.answer.clone()
    }
}
