//! Grading rules on small handwritten problems: budget, stop policy, comparison details that
//! follow the reference harness.

mod common;

use std::time::{Duration, Instant};

use reprolm_scoring::sandbox::{
    grade_code, grade_response, GradeOptions, LcbProblem, StopAt, TestCase, TestKind, Verdict,
};

fn stdin_problem(tests: &[(&str, &str)]) -> LcbProblem {
    LcbProblem {
        id: "handwritten".into(),
        kind: TestKind::Stdin,
        tests: tests
            .iter()
            .map(|(i, o)| TestCase {
                input: i.to_string(),
                output: o.to_string(),
            })
            .collect(),
    }
}

fn call_problem(func: &str, tests: &[(&str, &str)]) -> LcbProblem {
    LcbProblem {
        kind: TestKind::Call {
            func_name: func.into(),
        },
        ..stdin_problem(tests)
    }
}

#[test]
fn problem_budget_cuts_the_slow_test_short_and_ends_grading() {
    let _serial = common::exclusive();
    let sandbox = common::sandbox();
    let p = stdin_problem(&[("0\n", "0\n"), ("30\n", "30\n"), ("0\n", "0\n")]);
    let code = "import time\nn = int(input())\ntime.sleep(n)\nprint(n)\n";
    let opts = GradeOptions {
        timeout: Duration::from_secs(20),
        problem_budget: Some(Duration::from_secs(3)),
        stop: StopAt::Never,
        ..GradeOptions::default()
    };
    let t = Instant::now();
    let r = grade_code(&sandbox, &p, code, &opts);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "budget not enforced: {:?}",
        t.elapsed()
    );
    let verdicts: Vec<&Verdict> = r.tests.iter().map(|t| &t.verdict).collect();
    // Even with StopAt::Never, a spent budget ends grading (the reference fails the problem).
    assert_eq!(verdicts, [&Verdict::Passed, &Verdict::TimeLimit]);
    assert_eq!(r.total_tests, 3);
    assert_eq!(r.verdict, Verdict::TimeLimit);
}

#[test]
fn responses_without_a_code_block_fail_without_running() {
    let sandbox = common::sandbox();
    let p = stdin_problem(&[("", "1\n")]);
    let r = grade_response(&sandbox, &p, "print(1)", &GradeOptions::default());
    assert!(!r.passed && r.tests.is_empty());
    assert!(
        matches!(r.verdict, Verdict::RuntimeError { ref stderr_tail } if stderr_tail.contains("no fenced code block"))
    );
}

#[test]
fn comparison_details_follow_the_reference() {
    let _serial = common::exclusive();
    let sandbox = common::sandbox();
    let opts = GradeOptions {
        timeout: Duration::from_secs(3),
        ..GradeOptions::default()
    };
    // Numeric lines compare as decimals.
    let p = stdin_problem(&[("", "1\n2.50\n")]);
    assert!(grade_code(&sandbox, &p, "print('1.0')\nprint(2.5)\n", &opts).passed);
    // Bytes written straight to fd 1 are not captured by the reference's harness.
    let r = grade_code(
        &sandbox,
        &p,
        "import os\nos.write(1, b'1\\n2.5\\n')\n",
        &opts,
    );
    assert!(
        matches!(r.verdict, Verdict::WrongAnswer { line: None, .. }),
        "{r:?}"
    );
    // Large stdin reaches the program.
    let big = "7\n".repeat(200_000);
    let p = stdin_problem(&[(&big, "1400000\n")]);
    let r = grade_code(
        &sandbox,
        &p,
        "import sys\nprint(sum(map(int, sys.stdin.read().split())))\n",
        &opts,
    );
    assert!(r.passed, "{r:?}");
    // Call-based: several JSON arguments, Python equality (1 == 1.0, no float tolerance).
    let p = call_problem(
        "f",
        &[
            ("[1, 2]\n\"x\"", "{\"n\": 3, \"s\": \"x\"}"),
            ("[0.1]\n\"y\"", "{\"n\": 0.3, \"s\": \"y\"}"),
        ],
    );
    let code = "class Solution:\n    def f(self, a, s):\n        return {'n': sum(a) + (0.2 if a == [0.1] else 0.0), 's': s}\n";
    let r = grade_code(&sandbox, &p, code, &opts);
    assert!(r.tests[0].verdict.is_passed(), "{r:?}");
    match &r.verdict {
        Verdict::WrongAnswer { got, .. } => assert!(got.contains("0.30000000000000004"), "{got}"),
        v => panic!("expected a wrong answer, got {v:?}"),
    }
    // Ending the interpreter early is a failure (the reference gets no result), not a pass.
    let p = call_problem("f", &[("1", "1")]);
    let quit = "import os\nclass Solution:\n    def f(self, x):\n        os._exit(0)\n";
    let r = grade_code(&sandbox, &p, quit, &opts);
    assert!(matches!(r.verdict, Verdict::RuntimeError { .. }), "{r:?}");
    let p = stdin_problem(&[("", "")]);
    let r = grade_code(&sandbox, &p, "import os\nos._exit(0)\n", &opts);
    assert!(matches!(r.verdict, Verdict::RuntimeError { .. }), "{r:?}");
    assert!(common::survivors(&sandbox, "").is_empty());
}

#[test]
fn many_programs_in_parallel_keep_their_own_output_and_order() {
    use reprolm_scoring::sandbox::{grade_many, GradeJob, Harness};
    use std::sync::Arc;
    let _serial = common::exclusive();
    let sandbox = common::sandbox();
    let jobs: Vec<GradeJob> = (0..24)
        .map(|i| GradeJob {
            problem: Arc::new(LcbProblem {
                id: format!("p{i}"),
                ..stdin_problem(&[(&format!("{i}\n"), &format!("{}\n", i * i))])
            }),
            // Half print their answer in pieces with stderr noise in between.
            response: if i % 2 == 0 {
                "```python\nn = int(input())\nprint(n * n)\n```".into()
            } else {
                "```python\nimport sys\nn = int(input())\nfor c in str(n * n):\n    sys.stdout.write(c)\n    sys.stdout.flush()\n    sys.stderr.write('noise')\nprint()\n```".into()
            },
        })
        .collect();
    let opts = GradeOptions {
        timeout: Duration::from_secs(5),
        harness: Harness::Plain,
        ..GradeOptions::default()
    };
    let reports = grade_many(&sandbox, &jobs, 8, &opts).unwrap();
    let ids: Vec<&str> = reports.iter().map(|r| r.problem_id.as_str()).collect();
    let want: Vec<String> = (0..24).map(|i| format!("p{i}")).collect();
    assert_eq!(ids, want);
    assert!(
        reports.iter().all(|r| r.passed),
        "{:?}",
        reports.iter().filter(|r| !r.passed).collect::<Vec<_>>()
    );
    assert!(common::survivors(&sandbox, "").is_empty());
}
