//! LiveCodeBench's compressed `private_test_cases` (base64 -> zlib -> pickle -> JSON) are decoded at
//! load and graded with the public tests. The fixture and its generator are in tests/fixtures/.

mod common;

use std::path::PathBuf;

use reprolm_tasks::{load_task, DataSource, TaskOptions};

fn fixture() -> TaskOptions {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lcb_private.jsonl");
    TaskOptions::default().with_data(DataSource::Path(p))
}

#[test]
fn private_tests_are_decoded_and_counted() {
    let (_, data) = load_task("livecodebench", &fixture()).unwrap();
    assert_eq!(data.problems.len(), 2);
    assert_eq!(data.get("fixture_add").unwrap().metadata["tests"], 3);
    assert_eq!(data.get("fixture_double").unwrap().metadata["tests"], 2);
    let decoded = data
        .get("fixture_add")
        .unwrap()
        .field_str("private_test_cases")
        .unwrap();
    let tests: serde_json::Value = serde_json::from_str(decoded).unwrap();
    assert_eq!(tests[1]["input"], "-5 5\n");
}

#[test]
fn private_tests_decide_the_grade() {
    let (task, data) = load_task("livecodebench", &fixture()).unwrap();
    let add = data.get("fixture_add").unwrap();
    // Passes the public test (1 2 -> 3) but not the private ones.
    let public_only = "```python\ninput()\nprint(3)\n```";
    let right = "```python\na, b = map(int, input().split())\nprint(a + b)\n```";
    let scores = match task.score_many(&[(add, public_only), (add, right)]) {
        Ok(s) => s,
        Err(e) if !common::sandbox_available(&e) => return,
        Err(e) => panic!("{e}"),
    };
    assert!(!scores[0].correct, "{:#}", scores[0].detail);
    assert!(scores[1].correct, "{:#}", scores[1].detail);
    let double = data.get("fixture_double").unwrap();
    let s = task
        .score(double, "```python\nclass Solution:\n    def double(self, x: int) -> int:\n        return 2 * x\n```")
        .unwrap();
    assert!(s.correct, "{:#}", s.detail);
}

#[test]
fn corrupt_private_tests_name_the_field_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let src = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lcb_private.jsonl"),
    )
    .unwrap();
    let mut lines: Vec<serde_json::Value> = src
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines[1]["private_test_cases"] = "eJzLSM3JyVcozy/KSQEAGgQEXQ==".into(); // zlib of "hello world", no pickle
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let path = dir.path().join("lcb.jsonl");
    std::fs::write(&path, text).unwrap();
    let e = load_task(
        "livecodebench",
        &TaskOptions::default().with_data(DataSource::Path(path.clone())),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("private_test_cases") && e.contains(&format!("{}:2", path.display())),
        "{e}"
    );
}
