//! LiveCodeBench scoring: problems, code extraction, per-test verdicts, parallel grading.
//!
//! Semantics follow the reference harness (`lcb_runner/evaluation/testing_util.py` and
//! `compute_code_generation_metrics.py`): the last fenced code block of a response is the
//! program; stdin problems compare output with [`compare_output`]; call-based (LeetCode)
//! problems call `Solution().<func_name>(*args)` with one JSON value per input line and compare
//! the return value (a tuple counts as a list) with Python `==`; each test has a 6 s timeout;
//! the problem's total budget is `(timeout + 1) * tests + 5` s; grading stops at the first
//! failing test. The one deliberate difference: every test runs in a fresh sandboxed process
//! (the reference reuses one process, and one `Solution` instance, for all tests of a problem),
//! so state leaking between tests cannot change a verdict here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::compare::{compare_output, truncate};
use super::config::Limits;
use super::error::{Result, SandboxError};
use super::spawn::{Exit, RunOutcome, RunRequest, Sandbox};

const DRIVER: &str = include_str!("driver.py");
const EXIT_RUNTIME: i32 = 3;
const EXIT_TIME: i32 = 4;
const EXIT_WRONG: i32 = 6;
const EXIT_MISSING: i32 = 7;
/// Trailer the driver writes after a finished test (see driver.py).
const END: &[u8] = b"\0END-OF-TEST\0";
/// How long after the driver's own alarm a timed step is stopped from outside.
const OUTSIDE_GRACE: Duration = Duration::from_millis(500);

/// How a problem's tests feed the program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TestKind {
    /// Input on stdin, output on stdout (AtCoder, Codeforces).
    Stdin,
    /// `Solution().<func_name>(*args)` (LeetCode); `func_name` comes from the problem metadata.
    Call {
        /// Method name.
        func_name: String,
    },
}

/// One test case: input text and expected output text, as stored by LiveCodeBench.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestCase {
    /// stdin text, or one JSON value per line for call-based tests.
    pub input: String,
    /// Expected stdout, or the expected return value as JSON.
    pub output: String,
}

/// A LiveCodeBench problem reduced to what grading needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LcbProblem {
    /// `question_id`.
    pub id: String,
    /// Stdin or call-based.
    pub kind: TestKind,
    /// Tests in dataset order (public first, then private when loaded).
    pub tests: Vec<TestCase>,
}

impl LcbProblem {
    /// Builds a problem from one line of LiveCodeBench's `code_generation` jsonl.
    ///
    /// Reads `question_id`, `metadata` (a JSON string; `func_name` makes it call-based),
    /// `public_test_cases` (a JSON string) and, when it is plain JSON, `private_test_cases`.
    /// Private tests may be plain JSON or in the release's compressed form (base64 of zlib of a
    /// pickled JSON string), which is decoded.
    ///
    /// ```
    /// let line = r#"{"question_id":"x1","metadata":"{\"func_name\": \"add\"}",
    ///   "public_test_cases":"[{\"input\": \"1\\n2\", \"output\": \"3\", \"testtype\": \"functional\"}]"}"#;
    /// let p = reprolm_scoring::sandbox::LcbProblem::from_json_line(line)?;
    /// assert_eq!(p.tests.len(), 1);
    /// # Ok::<(), reprolm_scoring::sandbox::SandboxError>(())
    /// ```
    pub fn from_json_line(line: &str) -> Result<Self> {
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| SandboxError::Problem {
                problem: "?".into(),
                field: "(line)",
                reason: format!("not JSON: {e}"),
            })?;
        Self::from_record(&value)
    }

    /// Builds a problem from one parsed record (see [`from_json_line`](Self::from_json_line)).
    pub fn from_record(record: &serde_json::Value) -> Result<Self> {
        let id = record
            .get("question_id")
            .and_then(|v| v.as_str())
            .ok_or_else(|| SandboxError::Problem {
                problem: "?".into(),
                field: "question_id",
                reason: "missing or not a string".into(),
            })?
            .to_string();
        let err = |field: &'static str, reason: String| SandboxError::Problem {
            problem: id.clone(),
            field,
            reason,
        };
        let embedded = |field: &'static str| -> Result<Option<serde_json::Value>> {
            match record.get(field) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) if s.trim().is_empty() => Ok(None),
                Some(serde_json::Value::String(s)) => match serde_json::from_str(s) {
                    Ok(v) => Ok(Some(v)),
                    // The release compresses private tests; public ones are plain JSON.
                    Err(json_err) if field == "private_test_cases" => {
                        let text = super::private_tests::decode(s).map_err(|e| {
                            err(
                                field,
                                format!("neither JSON ({json_err}) nor compressed JSON ({e})"),
                            )
                        })?;
                        serde_json::from_str(&text)
                            .map(Some)
                            .map_err(|e| err(field, format!("decompressed text is not JSON: {e}")))
                    }
                    Err(e) => Err(err(field, format!("not JSON: {e}"))),
                },
                Some(v) => Ok(Some(v.clone())),
            }
        };
        let func_name = embedded("metadata")?
            .as_ref()
            .and_then(|m| m.get("func_name"))
            .and_then(|f| f.as_str())
            .map(str::to_string);
        let mut tests = Vec::new();
        for field in ["public_test_cases", "private_test_cases"] {
            let Some(list) = embedded(field)? else {
                continue;
            };
            let list = list
                .as_array()
                .ok_or_else(|| err(field, "not a list".into()))?;
            for (i, t) in list.iter().enumerate() {
                let get = |k: &str| {
                    t.get(k)
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                        .ok_or_else(|| err(field, format!("test {i}: `{k}` missing")))
                };
                tests.push(TestCase {
                    input: get("input")?,
                    output: get("output")?,
                });
            }
        }
        if tests.is_empty() {
            return Err(err("public_test_cases", "no tests".into()));
        }
        let kind = match func_name {
            Some(func_name) => TestKind::Call { func_name },
            None => TestKind::Stdin,
        };
        Ok(LcbProblem { id, kind, tests })
    }
}

/// The program LiveCodeBench runs for a response: the text between the last two lines that
/// contain a code fence. `None` where the reference gets `""` (fewer than two fence lines).
///
/// ```
/// let r = "think...\n```python\nprint(1)\n```\nmore\n```python\nprint(2)\n```\n";
/// assert_eq!(reprolm_scoring::sandbox::extract_code(r).as_deref(), Some("print(2)"));
/// ```
pub fn extract_code(response: &str) -> Option<String> {
    let lines: Vec<&str> = response.split('\n').collect();
    let fences: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("```"))
        .map(|(i, _)| i)
        .collect();
    if fences.len() < 2 {
        return None;
    }
    let (a, b) = (fences[fences.len() - 2], fences[fences.len() - 1]);
    Some(lines[a + 1..b].join("\n"))
}

/// The outcome of one test (or of a whole problem: its first non-passing test).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Output matched.
    Passed,
    /// Output differed.
    WrongAnswer {
        /// 0-based first differing line (stdin tests); `None` when line counts differ or for
        /// call-based tests.
        line: Option<usize>,
        /// Expected line / value (truncated like the reference's `truncatefn`).
        expected: String,
        /// Produced line / value.
        got: String,
    },
    /// Ran past the per-test timeout or the problem budget (also CPU-time limit).
    TimeLimit,
    /// The program's processes together passed the memory bound, or an allocation failed at
    /// the address-space limit.
    MemoryLimit,
    /// Raised, crashed, or exited abnormally.
    RuntimeError {
        /// The end of stderr (traceback), or why the run counts as an error.
        stderr_tail: String,
    },
    /// Printed more than the output limit.
    OutputLimit,
    /// The harness failed; not the program's fault.
    SandboxError {
        /// The harness error.
        message: String,
    },
}

impl Verdict {
    /// True only for [`Verdict::Passed`].
    pub fn is_passed(&self) -> bool {
        matches!(self, Verdict::Passed)
    }
}

/// The judge's words for the verdict (details are in the fields).
///
/// ```
/// use reprolm_scoring::sandbox::Verdict;
/// assert_eq!(Verdict::MemoryLimit.to_string(), "memory limit exceeded");
/// ```
impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Passed => "passed",
            Verdict::WrongAnswer { .. } => "wrong answer",
            Verdict::TimeLimit => "time limit exceeded",
            Verdict::MemoryLimit => "memory limit exceeded",
            Verdict::RuntimeError { .. } => "runtime error",
            Verdict::OutputLimit => "output limit exceeded",
            Verdict::SandboxError { .. } => "sandbox error",
        })
    }
}

/// One test's verdict and cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestReport {
    /// Index into [`LcbProblem::tests`].
    pub index: usize,
    /// What happened.
    pub verdict: Verdict,
    /// Wall-clock seconds of the run (sandbox setup included).
    pub wall_s: f64,
}

/// A whole problem's result for one program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProblemReport {
    /// The problem's id.
    pub problem_id: String,
    /// All tests passed.
    pub passed: bool,
    /// [`Verdict::Passed`] or the first failing test's verdict.
    pub verdict: Verdict,
    /// Tests that ran, in order (fewer than the problem has when grading stopped early).
    pub tests: Vec<TestReport>,
    /// Number of tests the problem has.
    pub total_tests: usize,
    /// Wall-clock seconds for the problem.
    pub wall_s: f64,
}

/// Whether to go on after a failing test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum StopAt {
    /// Stop at the first failure (LiveCodeBench).
    #[default]
    FirstFailure,
    /// Run every test (for per-test statistics), until the problem budget is spent.
    Never,
}

/// How the program is run inside the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Harness {
    /// The reference's in-process harness, reproduced: `if __name__` inlining, wrapping in a
    /// function, the import header, mocked stdin/`open`, captured `sys.stdout`, disabled
    /// destructive `os` functions. Scores match LiveCodeBench.
    #[default]
    LiveCodeBench,
    /// The program runs as a plain script with real stdin/stdout (call-based tests still go
    /// through the call driver, without the disabled functions). Useful to test the sandbox
    /// itself, and for benchmarks that grade scripts.
    Plain,
}

/// Grading parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct GradeOptions {
    /// Per-test timeout (LiveCodeBench: 6 s).
    pub timeout: Duration,
    /// Budget for the whole problem; `None` uses the reference's `(timeout + 1) * tests + 5 s`.
    pub problem_budget: Option<Duration>,
    /// When to stop.
    pub stop: StopAt,
    /// Harness.
    pub harness: Harness,
    /// Limits besides time (time limits are derived from `timeout`); `None` takes the sandbox's.
    pub limits: Option<Limits>,
}

impl Default for GradeOptions {
    fn default() -> Self {
        GradeOptions {
            timeout: Duration::from_secs(6),
            problem_budget: None,
            stop: StopAt::FirstFailure,
            harness: Harness::LiveCodeBench,
            limits: None,
        }
    }
}

impl GradeOptions {
    fn budget(&self, tests: usize) -> Duration {
        self.problem_budget.unwrap_or(
            (self.timeout + Duration::from_secs(1)) * tests as u32 + Duration::from_secs(5),
        )
    }
}

/// Grades the program in `response` (its last fenced block) against a problem.
///
/// ```no_run
/// use reprolm_scoring::sandbox::{grade_response, GradeOptions, LcbProblem, Sandbox, SandboxConfig};
/// # fn load() -> LcbProblem { unimplemented!() }
/// let sandbox = Sandbox::new(SandboxConfig::default())?;
/// let report = grade_response(&sandbox, &load(), "```python\nprint(input())\n```", &GradeOptions::default());
/// println!("{}", serde_json::to_string(&report).unwrap());
/// # Ok::<(), reprolm_scoring::sandbox::SandboxError>(())
/// ```
pub fn grade_response(
    sandbox: &Sandbox,
    problem: &LcbProblem,
    response: &str,
    opts: &GradeOptions,
) -> ProblemReport {
    match extract_code(response) {
        Some(code) => grade_code(sandbox, problem, &code, opts),
        None => {
            let verdict = Verdict::RuntimeError {
                stderr_tail: "no fenced code block in the response".into(),
            };
            ProblemReport {
                problem_id: problem.id.clone(),
                passed: false,
                verdict,
                tests: Vec::new(),
                total_tests: problem.tests.len(),
                wall_s: 0.0,
            }
        }
    }
}

/// Grades a program (already extracted) against every test of a problem.
pub fn grade_code(
    sandbox: &Sandbox,
    problem: &LcbProblem,
    code: &str,
    opts: &GradeOptions,
) -> ProblemReport {
    let start = Instant::now();
    let budget = opts.budget(problem.tests.len());
    let mut tests = Vec::new();
    let mut first_failure = None;
    for (index, test) in problem.tests.iter().enumerate() {
        let left = budget.saturating_sub(start.elapsed());
        let t0 = Instant::now();
        let verdict = if left.is_zero() {
            Verdict::TimeLimit
        } else {
            match run_test(sandbox, problem, code, test, opts, left) {
                Ok(v) => v,
                Err(e) => Verdict::SandboxError {
                    message: e.to_string(),
                },
            }
        };
        let failed = !verdict.is_passed();
        if failed && first_failure.is_none() {
            first_failure = Some(verdict.clone());
        }
        tests.push(TestReport {
            index,
            verdict,
            wall_s: t0.elapsed().as_secs_f64(),
        });
        if failed && (opts.stop == StopAt::FirstFailure || start.elapsed() >= budget) {
            break;
        }
    }
    ProblemReport {
        problem_id: problem.id.clone(),
        passed: first_failure.is_none(),
        verdict: first_failure.unwrap_or(Verdict::Passed),
        tests,
        total_tests: problem.tests.len(),
        wall_s: start.elapsed().as_secs_f64(),
    }
}

/// One program to grade in [`grade_many`].
#[derive(Debug, Clone)]
pub struct GradeJob {
    /// The problem (shared: many samples of one problem point at the same value).
    pub problem: Arc<LcbProblem>,
    /// The model's full response; the last fenced block is graded.
    pub response: String,
}

/// Grades many responses on `workers` threads; reports come back in input order.
///
/// Each worker runs one sandboxed process at a time, so `workers` bounds the programs in flight.
pub fn grade_many(
    sandbox: &Sandbox,
    jobs: &[GradeJob],
    workers: usize,
    opts: &GradeOptions,
) -> Result<Vec<ProblemReport>> {
    use rayon::prelude::*;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers.max(1))
        .thread_name(|i| format!("sandbox-worker-{i}"))
        .build()
        .map_err(|e| SandboxError::Config {
            field: "workers",
            reason: e.to_string(),
        })?;
    Ok(pool.install(|| {
        jobs.par_iter()
            .with_max_len(1)
            .map(|j| grade_response(sandbox, &j.problem, &j.response, opts))
            .collect()
    }))
}

fn run_test(
    sandbox: &Sandbox,
    problem: &LcbProblem,
    code: &str,
    test: &TestCase,
    opts: &GradeOptions,
    left: Duration,
) -> Result<Verdict> {
    let mut limits = opts
        .limits
        .clone()
        .unwrap_or_else(|| sandbox.config().limits.clone());
    let secs = opts.timeout.as_secs_f64();
    let plain_stdin = opts.harness == Harness::Plain && problem.kind == TestKind::Stdin;
    // The driver times loading the solution and running the test separately, as the reference
    // does, with an alarm the program can catch and ignore. So the same limit is also enforced
    // from outside on each of those steps (the driver marks their start, see `clock_restarts`),
    // a little later than the alarm so that an honest timeout is reported by the driver.
    let (wall, restarts) = if plain_stdin {
        (opts.timeout, 0)
    } else {
        (opts.timeout + OUTSIDE_GRACE, 2)
    };
    limits.wall_time = wall.min(left);
    limits.cpu_time = limits.wall_time * (restarts + 1) + Duration::from_secs(1);
    let guard = if opts.harness == Harness::LiveCodeBench {
        "guard"
    } else {
        "noguard"
    };
    let req = if plain_stdin {
        RunRequest {
            limits: Some(limits),
            ..RunRequest::script(code, test.input.as_bytes())
        }
    } else {
        let mut files = vec![
            ("driver.py".to_string(), DRIVER.as_bytes().to_vec()),
            ("solution.py".to_string(), code.as_bytes().to_vec()),
        ];
        let mut args = vec![
            String::new(),
            guard.to_string(),
            "solution.py".to_string(),
            format!("{secs}"),
        ];
        match &problem.kind {
            TestKind::Stdin => args[0] = "stdin".into(),
            TestKind::Call { func_name } => {
                args[0] = "call".into();
                args.push(func_name.clone());
                args.push("expected.json".into());
                files.push(("expected.json".to_string(), test.output.as_bytes().to_vec()));
            }
        }
        RunRequest {
            files,
            script: "driver.py".into(),
            args,
            stdin: test.input.as_bytes().to_vec(),
            limits: Some(limits),
            clock_restarts: restarts,
        }
    };
    let out = sandbox.run(&req)?;
    Ok(verdict(&out, problem, test, plain_stdin))
}

fn looks_like_memory(stderr: &str) -> bool {
    stderr.contains("MemoryError")
        || stderr.contains("Cannot allocate memory")
        || stderr.contains("out of memory")
}

fn verdict(out: &RunOutcome, problem: &LcbProblem, test: &TestCase, plain_stdin: bool) -> Verdict {
    let stderr = String::from_utf8_lossy(&out.stderr_tail);
    // Through the driver, a test that finished says so; without the trailer the interpreter was
    // ended early by the program (the reference then has no result and fails the problem).
    let report = if plain_stdin {
        Some(&out.stdout[..])
    } else {
        out.stdout.strip_suffix(END)
    };
    let tail = || {
        let s = stderr.trim_end();
        let start = s
            .char_indices()
            .rev()
            .nth(2000)
            .map(|(i, _)| i)
            .unwrap_or(0);
        s[start..].to_string()
    };
    if out.output_limited {
        return Verdict::OutputLimit;
    }
    if out.memory_limited {
        return Verdict::MemoryLimit;
    }
    if out.timed_out {
        return Verdict::TimeLimit;
    }
    match out.exit {
        Exit::Killed => Verdict::SandboxError {
            message: "program status not reported".into(),
        },
        Exit::Signal(libc::SIGXCPU) => Verdict::TimeLimit,
        Exit::Signal(_) if looks_like_memory(&stderr) => Verdict::MemoryLimit,
        Exit::Signal(sig) => Verdict::RuntimeError {
            stderr_tail: format!("killed by signal {sig}\n{}", tail()),
        },
        Exit::Code(EXIT_TIME) if !plain_stdin => Verdict::TimeLimit,
        Exit::Code(EXIT_WRONG) if report.is_some() && !plain_stdin => Verdict::WrongAnswer {
            line: None,
            expected: truncate(test.output.trim()),
            got: String::from_utf8_lossy(report.unwrap_or_default()).into_owned(),
        },
        Exit::Code(EXIT_MISSING) if !plain_stdin => Verdict::RuntimeError {
            stderr_tail: tail(),
        },
        Exit::Code(0) if report.is_none() => Verdict::RuntimeError {
            stderr_tail: format!(
                "the program ended the interpreter before the test finished\n{}",
                tail()
            ),
        },
        Exit::Code(0) => match problem.kind {
            TestKind::Call { .. } => Verdict::Passed,
            TestKind::Stdin => {
                let got = String::from_utf8_lossy(report.unwrap_or_default());
                match compare_output(&got, &test.output) {
                    Ok(()) => Verdict::Passed,
                    Err(m) => Verdict::WrongAnswer {
                        line: m.line,
                        expected: m.expected,
                        got: m.got,
                    },
                }
            }
        },
        Exit::Code(_) if looks_like_memory(&stderr) => Verdict::MemoryLimit,
        Exit::Code(code) if code == EXIT_RUNTIME || code == 1 => Verdict::RuntimeError {
            stderr_tail: tail(),
        },
        Exit::Code(code) => Verdict::RuntimeError {
            stderr_tail: format!("exit status {code}\n{}", tail()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extraction_takes_the_last_fenced_block() {
        assert_eq!(extract_code("no code"), None);
        assert_eq!(extract_code("```python\nx=1"), None);
        assert_eq!(extract_code("```\na\n```").as_deref(), Some("a"));
        // Any line containing a fence counts, as in the reference.
        assert_eq!(
            extract_code("```python\na\n```\ntext ``` inline\nb\n```").as_deref(),
            Some("b")
        );
        assert_eq!(extract_code("```py\n```").as_deref(), Some(""));
    }

    #[test]
    fn problem_records_parse() {
        let line = r#"{"question_id":"abc1","metadata":"{}","public_test_cases":"[{\"input\": \"1\\n\", \"output\": \"2\\n\", \"testtype\": \"stdin\"}]","private_test_cases":""}"#;
        let p = LcbProblem::from_json_line(line).unwrap();
        assert_eq!(p.kind, TestKind::Stdin);
        assert_eq!(
            p.tests,
            vec![TestCase {
                input: "1\n".into(),
                output: "2\n".into()
            }]
        );
        // Compressed private tests (see private_tests.rs for how the sample was made) follow
        // the public ones.
        let zipped = r#"{"question_id":"abc3","metadata":"{}","public_test_cases":"[{\"input\": \"0\", \"output\": \"1\"}]","private_test_cases":"eJxrYJlqwwABPRbR1UqZeQWlJUpWCkqGMXlKOgpK+aUlUAEjiEBJanFJSWVBKkiouCQlM0+pNnaKHgCVCRRG"}"#;
        let p = LcbProblem::from_json_line(zipped).unwrap();
        let inputs: Vec<&str> = p.tests.iter().map(|t| t.input.as_str()).collect();
        assert_eq!(inputs, ["0", "1\n"]);
        let bad = r#"{"question_id":"abc2","metadata":"{}","public_test_cases":"[]","private_test_cases":"eJzLSM3JyQcABiwCFQ=="}"#;
        let e = LcbProblem::from_json_line(bad).unwrap_err().to_string();
        assert!(
            e.contains("abc2") && e.contains("private_test_cases"),
            "{e}"
        );
    }

    #[test]
    fn default_budget_is_the_references() {
        let o = GradeOptions::default();
        assert_eq!(o.budget(3), Duration::from_secs(26));
    }
}
