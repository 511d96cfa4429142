//! The plugin goes through the same command-line path as the built-in tasks: listed by `tasks`,
//! generated, scored and recorded by `run`, on the engine's tiny fixture model.

use std::path::Path;
use std::process::Command;

fn reprolm(cwd: &Path, args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_reprolm-custom"))
        .args(args)
        .current_dir(cwd)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(out.status.success(), "reprolm {args:?}\n{o}\n{e}");
    (o, e)
}

#[test]
fn plugin_is_listed_and_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let (tasks, _) = reprolm(tmp.path(), &["tasks"]);
    assert!(
        tasks.contains("unit_conversion") && tasks.contains("math500"),
        "{tasks}"
    );
    let model = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/engine/tests/fixtures/models/qwen2");
    let out = tmp.path().join("run");
    let (stdout, _) = reprolm(
        tmp.path(),
        &[
            "run",
            "--task",
            "unit_conversion",
            "--model",
            model.to_str().unwrap(),
            "--max-tokens",
            "8",
            "--out",
            out.to_str().unwrap(),
            "-q",
        ],
    );
    assert!(stdout.contains("5 samples"), "{stdout}");
    let responses = std::fs::read_to_string(out.join("responses.jsonl")).unwrap();
    assert_eq!(responses.lines().count(), 5);
    let manifest = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    assert!(manifest.contains("unit_conversion"));
}
