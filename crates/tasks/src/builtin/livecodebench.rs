//! `livecodebench` and its `livecodebench_easy` / `_medium` / `_hard` variants: code generation
//! problems from LeetCode, AtCoder and Codeforces (Jain et al., 2024, arXiv 2403.07974), graded by
//! running the program against the problem's tests in the sandbox.
//!
//! Checked against the reference implementation of arXiv 2506.09501 (SkyThought's LiveCodeBench
//! handler), whose main variant is `release_v2` of `livecodebench/code_generation_lite`:
//! - a problem whose first public test is of type `stdin` gets `Generate an executable Python
//!   function generated from the given prompt. The function should take stdin as input and print the
//!   output. Simply call the function after the definition. {prompt}`;
//! - any other gets `Generate an executable Python function generated from the given prompt. Return
//!   the function body without invoking it at the final solution. {prompt}`;
//! - `{prompt}` is `question_content` alone. With the `starter_code=true` option, a non-empty
//!   `starter_code` is appended as LiveCodeBench's own prompt does (`You will use the following
//!   starter code ...` and the code in a python fence); the default is off, as in the reference.
//! - The last fenced code block of the response is run; 6 s per test; stop at the first failure.
//!
//! Releases are files of the Hub dataset: `release_v1` is `test.jsonl`, and `release_vN` adds
//! `test2.jsonl` to `testN.jsonl`. A local file is taken as it is; narrow it with the date and
//! difficulty options. `private_test_cases` are stored as base64 of zlib of a pickled JSON string;
//! they are decoded here, in Rust, at load time.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use base64::Engine;
use reprolm_scoring::sandbox::{GradeJob, LcbProblem};
use serde_json::{json, Map, Value};

use crate::data::{read_source, DataSource, HubDataset, Record};
use crate::error::{Error, Result};
use crate::grading::{self, CodeGrader};
use crate::options::{TaskOption, TaskOptions};
use crate::registry::TaskEntry;
use crate::task::{ChatMessage, Dataset, Problem, Score, Task};

const STDIN_PREFIX: &str = "Generate an executable Python function generated from the given prompt. The function should take stdin as input and print the output. Simply call the function after the definition.";
const CALL_PREFIX: &str = "Generate an executable Python function generated from the given prompt. Return the function body without invoking it at the final solution.";
const OPTIONS: [TaskOption; 7] = [
    TaskOption {
        key: "memory_limit",
        help: "memory of one graded program, all its processes together, e.g. 1GiB (default 2GiB; past it the verdict is memory limit exceeded)",
    },
    TaskOption {
        key: "workers",
        help: "programs graded at once (default: one per core, as many as the available memory holds at memory_limit each)",
    },
    TaskOption {
        key: "release",
        help: "release_v1 .. release_v6 or release_latest: which files of the Hub dataset (default release_v2)",
    },
    TaskOption {
        key: "start_date",
        help: "keep problems from this contest date on (YYYY-MM-DD)",
    },
    TaskOption {
        key: "end_date",
        help: "keep problems up to this contest date (YYYY-MM-DD)",
    },
    TaskOption {
        key: "difficulty",
        help: "easy, medium or hard (the _easy/_medium/_hard variants fix it)",
    },
    TaskOption {
        key: "starter_code",
        help: "true: append the problem's starter code to the prompt, as LiveCodeBench does (default false, as the paper's reference)",
    },
];
const DEFAULT_RELEASE: &str = "release_v2";
/// (release, number of files, problems) per LiveCodeBench's dataset card.
const RELEASES: [(&str, usize, usize); 6] = [
    ("release_v1", 1, 400),
    ("release_v2", 2, 511),
    ("release_v3", 3, 612),
    ("release_v4", 4, 713),
    ("release_v5", 5, 880),
    ("release_v6", 6, 1055),
];

/// A problem's difficulty label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Difficulty {
    /// `easy`.
    Easy,
    /// `medium`.
    Medium,
    /// `hard`.
    Hard,
}

impl Difficulty {
    fn as_str(self) -> &'static str {
        match self {
            Difficulty::Easy => "easy",
            Difficulty::Medium => "medium",
            Difficulty::Hard => "hard",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "easy" => Some(Difficulty::Easy),
            "medium" => Some(Difficulty::Medium),
            "hard" => Some(Difficulty::Hard),
            _ => None,
        }
    }
}

/// Whether the problem statement is followed by its starter code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StarterCode {
    /// `question_content` only (the reference's prompt).
    Omit,
    /// `question_content`, then the starter code in a python fence.
    Include,
}

/// A LiveCodeBench task (one per difficulty variant).
pub struct LiveCodeBench {
    name: &'static str,
    difficulty: Option<Difficulty>,
    release: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
    starter_code: StarterCode,
    grader: CodeGrader,
}

impl std::fmt::Debug for LiveCodeBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCodeBench")
            .field("name", &self.name)
            .field("difficulty", &self.difficulty)
            .finish()
    }
}

fn date_option(params: &crate::options::Params<'_>, key: &str) -> Result<Option<String>> {
    let Some(v) = params.get(key) else {
        return Ok(None);
    };
    let b = v.as_bytes();
    let ok = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    if !ok {
        return Err(params.bad(key, v, "expected a date YYYY-MM-DD".into()));
    }
    Ok(Some(v.to_string()))
}

impl LiveCodeBench {
    fn build(
        name: &'static str,
        fixed: Option<Difficulty>,
        options: &TaskOptions,
    ) -> Result<Box<dyn Task>> {
        let params = options.params_for(name, &TaskOption::keys(&OPTIONS))?;
        let mut difficulty = fixed;
        if let Some(v) = params.get("difficulty") {
            let d = Difficulty::parse(v).ok_or_else(|| {
                params.bad("difficulty", v, "expected easy, medium or hard".into())
            })?;
            if fixed.is_some_and(|f| f != d) {
                return Err(params.bad(
                    "difficulty",
                    v,
                    format!("this variant is fixed to {}", fixed.unwrap().as_str()),
                ));
            }
            difficulty = Some(d);
        }
        let release = match params.get("release") {
            None => None,
            Some(r) if r == "release_latest" || RELEASES.iter().any(|(n, _, _)| *n == r) => {
                Some(r.to_string())
            }
            Some(r) => {
                let known: Vec<&str> = RELEASES.iter().map(|(n, _, _)| *n).collect();
                return Err(params.bad(
                    "release",
                    r,
                    format!("known releases: {}, release_latest", known.join(", ")),
                ));
            }
        };
        if options.data.is_some() && release.is_some() {
            return Err(params.bad(
                "release",
                release.as_deref().unwrap_or_default(),
                "a release picks files of the Hub dataset; with a local file use start_date/end_date".into(),
            ));
        }
        let starter_code = match params.flag("starter_code")? {
            Some(true) => StarterCode::Include,
            _ => StarterCode::Omit,
        };
        Ok(Box::new(LiveCodeBench {
            name,
            difficulty,
            release,
            start_date: date_option(&params, "start_date")?,
            end_date: date_option(&params, "end_date")?,
            starter_code,
            grader: CodeGrader::new(
                params.bytes("memory_limit")?,
                params.parse::<std::num::NonZeroUsize>("workers")?,
            ),
        }))
    }

    fn release(&self) -> &str {
        self.release.as_deref().unwrap_or(DEFAULT_RELEASE)
    }

    /// Whether the record passes the difficulty and date filters.
    fn keep(&self, rec: &Record) -> Result<bool> {
        if let Some(d) = self.difficulty {
            if rec.text(self.name, &["difficulty"])? != d.as_str() {
                return Ok(false);
            }
        }
        if self.start_date.is_some() || self.end_date.is_some() {
            let date = rec.text(self.name, &["contest_date"])?;
            let day = date.get(..10).unwrap_or(&date);
            if self.start_date.as_deref().is_some_and(|s| day < s)
                || self.end_date.as_deref().is_some_and(|e| day > e)
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn problem(&self, mut rec: Record) -> Result<(Problem, crate::data::Location)> {
        let id = rec.text(self.name, &["question_id"])?;
        let content = rec.text(self.name, &["question_content"])?;
        let public = rec.text(self.name, &["public_test_cases"])?;
        let public: Value = serde_json::from_str(&public)
            .map_err(|e| rec.bad(self.name, "public_test_cases", format!("not JSON: {e}")))?;
        let testtype = public
            .get(0)
            .and_then(|t| t.get("testtype"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let stdin = testtype == "stdin";
        if let Some(Value::String(private)) = rec.fields.get("private_test_cases") {
            let decoded = decode_private_tests(private)
                .map_err(|e| rec.bad(self.name, "private_test_cases", e))?;
            rec.fields
                .insert("private_test_cases".into(), Value::String(decoded));
        }
        // Build the grading problem once now, so a bad test list fails at load, not mid-run.
        let lcb = grading::lcb_problem(&rec.fields)
            .map_err(|e| rec.bad(self.name, "public_test_cases", e))?;
        let mut question = content;
        if self.starter_code == StarterCode::Include {
            let starter = rec.text(self.name, &["starter_code"]).unwrap_or_default();
            if !starter.trim().is_empty() {
                question.push_str(&format!(
                    "\n\nYou will use the following starter code to write the solution to the problem and enclose your code within delimiters.\n```python\n{starter}\n```"
                ));
            }
        }
        let mut metadata = Map::new();
        metadata.insert("question".into(), question.into());
        metadata.insert(
            "test_style".into(),
            (if stdin { "stdin" } else { "functional" }).into(),
        );
        metadata.insert("tests".into(), lcb.tests.len().into());
        for key in ["platform", "difficulty", "contest_date"] {
            if let Some(v) = rec.fields.get(key) {
                metadata.insert(key.into(), v.clone());
            }
        }
        Ok((
            Problem {
                id,
                answer: None,
                fields: rec.fields,
                metadata,
            },
            rec.location,
        ))
    }

    fn lcb_problem(&self, problem: &Problem) -> Result<LcbProblem> {
        grading::lcb_problem(&problem.fields).map_err(|reason| Error::Scoring {
            task: self.name.into(),
            problem: problem.id.clone(),
            reason,
        })
    }
}

/// Decodes LiveCodeBench's `private_test_cases`: base64 of zlib of a pickled Python `str` that holds
/// the JSON list of tests. Text that already is a JSON list is returned as it is.
///
/// ```
/// // A JSON list passes through untouched.
/// let plain = r#"[{"input": "1\n", "output": "1\n", "testtype": "stdin"}]"#;
/// assert_eq!(reprolm_tasks::builtin::livecodebench::decode_private_tests(plain).unwrap(), plain);
/// ```
pub fn decode_private_tests(encoded: &str) -> Result<String, String> {
    let trimmed = encoded.trim();
    if trimmed.starts_with('[') {
        return Ok(encoded.to_string());
    }
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(trimmed)
        .map_err(|e| format!("neither a JSON list nor base64: {e}"))?;
    let mut pickled = Vec::new();
    flate2::read::ZlibDecoder::new(compressed.as_slice())
        .read_to_end(&mut pickled)
        .map_err(|e| format!("base64 decoded, but not zlib data: {e}"))?;
    let value = serde_pickle::value_from_slice(&pickled, serde_pickle::DeOptions::new())
        .map_err(|e| format!("zlib decoded, but not a pickle: {e}"))?;
    let text = match value {
        serde_pickle::Value::String(s) => s,
        serde_pickle::Value::Bytes(b) => {
            String::from_utf8(b).map_err(|e| format!("pickled bytes are not UTF-8: {e}"))?
        }
        other => return Err(format!("pickle holds {other:?}, expected a JSON string")),
    };
    let json: Value =
        serde_json::from_str(&text).map_err(|e| format!("unpickled text is not JSON: {e}"))?;
    if !json.is_array() {
        return Err("unpickled JSON is not a list of tests".into());
    }
    Ok(text)
}

macro_rules! variant {
    ($fn_name:ident, $name:literal, $difficulty:expr) => {
        fn $fn_name(options: &TaskOptions) -> Result<Box<dyn Task>> {
            LiveCodeBench::build($name, $difficulty, options)
        }
        inventory::submit! { TaskEntry { name: $name, origin: module_path!(), make: $fn_name } }
    };
}

variant!(make_all, "livecodebench", None);
variant!(make_easy, "livecodebench_easy", Some(Difficulty::Easy));
variant!(
    make_medium,
    "livecodebench_medium",
    Some(Difficulty::Medium)
);
variant!(make_hard, "livecodebench_hard", Some(Difficulty::Hard));

impl Task for LiveCodeBench {
    fn options(&self) -> &'static [TaskOption] {
        &OPTIONS
    }

    fn name(&self) -> &str {
        self.name
    }
    fn description(&self) -> &str {
        match self.difficulty {
            None => "LiveCodeBench code generation (release_v2 by default): programs run against tests in a sandbox",
            Some(Difficulty::Easy) => "LiveCodeBench code generation, easy problems only",
            Some(Difficulty::Medium) => "LiveCodeBench code generation, medium problems only",
            Some(Difficulty::Hard) => "LiveCodeBench code generation, hard problems only",
        }
    }
    fn version(&self) -> &str {
        "1"
    }
    fn default_source(&self) -> DataSource {
        let files = match RELEASES.iter().find(|(n, _, _)| *n == self.release()) {
            Some((_, n, _)) => *n,
            None => RELEASES.len(),
        };
        let names: Vec<String> = (1..=files)
            .map(|i| {
                if i == 1 {
                    "test.jsonl".to_string()
                } else {
                    format!("test{i}.jsonl")
                }
            })
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        DataSource::Hub(HubDataset::new("livecodebench/code_generation_lite", &refs))
    }
    fn size_hint(&self) -> Option<usize> {
        if self.difficulty.is_some() || self.start_date.is_some() || self.end_date.is_some() {
            return None;
        }
        RELEASES
            .iter()
            .find(|(n, _, _)| *n == self.release())
            .map(|(_, _, size)| *size)
    }
    fn load(&self, source: &DataSource) -> Result<Dataset> {
        let raw = read_source(source, self.name)?;
        let mut problems = Vec::new();
        for rec in raw.records {
            if self.keep(&rec)? {
                problems.push(self.problem(rec)?);
            }
        }
        let release = matches!(source, DataSource::Hub(_)).then(|| self.release().to_string());
        let settings = json!({
            "release": release,
            "difficulty": self.difficulty.map(Difficulty::as_str),
            "start_date": self.start_date,
            "end_date": self.end_date,
            "starter_code": self.starter_code == StarterCode::Include,
        });
        Dataset::new(
            self.name,
            self.version(),
            source,
            raw.files,
            settings,
            problems,
        )
    }
    fn messages(&self, problem: &Problem) -> Vec<ChatMessage> {
        let prefix = if problem.metadata_str("test_style") == Some("stdin") {
            STDIN_PREFIX
        } else {
            CALL_PREFIX
        };
        vec![ChatMessage::user(format!(
            "{prefix} {}",
            problem.metadata_str("question").unwrap_or_default()
        ))]
    }
    fn prepare_scoring(&self) -> Result<Option<String>> {
        self.grader.prepare(self.name).map(Some)
    }
    fn score(&self, problem: &Problem, response: &str) -> Result<Score> {
        self.grader
            .grade(self.name, &self.lcb_problem(problem)?, response)
    }
    fn score_many(&self, items: &[(&Problem, &str)]) -> Result<Vec<Score>> {
        let mut built: HashMap<&str, Arc<LcbProblem>> = HashMap::new();
        let mut jobs = Vec::with_capacity(items.len());
        for (p, r) in items {
            let lcb = match built.get(p.id.as_str()) {
                Some(l) => l.clone(),
                None => {
                    let l = Arc::new(self.lcb_problem(p)?);
                    built.insert(&p.id, l.clone());
                    l
                }
            };
            jobs.push(GradeJob {
                problem: lcb,
                response: r.to_string(),
            });
        }
        self.grader.grade_many(self.name, jobs)
    }
}
