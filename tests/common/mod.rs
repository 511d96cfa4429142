//! Helpers for the cross-crate tests: run the `reprolm` binary on the tiny fixture model.
#![allow(dead_code)] // each test file uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_reprolm")
}

/// The engine's tiny random-init Qwen2 fixture (vocab 384, 2 layers): fast, and its bf16 and fp32
/// outputs part ways within a few tokens.
pub fn fixture_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/fixtures/models/qwen2")
}

/// Owned command-line arguments from string slices.
pub fn args(argv: &[&str]) -> Vec<String> {
    argv.iter().map(|s| s.to_string()).collect()
}

/// `reprolm run` flags for a small run on the fixture model.
pub fn run_args(out: &Path, extra: &[&str]) -> Vec<String> {
    let model = fixture_model().display().to_string();
    let out = out.display().to_string();
    let mut v = args(&[
        "run",
        "--model",
        &model,
        "--max-tokens",
        "24",
        "--out",
        &out,
    ]);
    v.extend(args(extra));
    v
}

/// A command for the binary, run in `cwd`.
pub fn cmd(cwd: &Path, args: &[String]) -> Command {
    let mut c = Command::new(bin());
    c.args(args).current_dir(cwd).env("HF_HUB_OFFLINE", "1");
    c
}

/// Run to completion; panics with both streams when the exit status is not `expect`.
pub fn reprolm(cwd: &Path, args: &[String], expect: i32) -> Output {
    let out = cmd(cwd, args).output().expect("spawn reprolm");
    assert_eq!(
        out.status.code(),
        Some(expect),
        "reprolm {}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// stderr of a command whose command line cannot be resolved (a flag's value, or what it names):
/// status 2, the usage error of crates/cli/README.md.
pub fn usage_error_of(cwd: &Path, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = reprolm(cwd, &args, 2);
    String::from_utf8(out.stderr).unwrap()
}

/// stderr of a run expected to fail with status 1.
pub fn error_of(cwd: &Path, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = reprolm(cwd, &args, 1);
    String::from_utf8(out.stderr).unwrap()
}

/// The generated token ids per (problem id, sample index), in file order.
pub fn tokens(run: &Path) -> Vec<(String, u64, Vec<u32>)> {
    std::fs::read_to_string(run.join("responses.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let ids = v["token_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_u64().unwrap() as u32)
                .collect();
            (
                v["problem_id"].as_str().unwrap().to_string(),
                v["sample_index"].as_u64().unwrap(),
                ids,
            )
        })
        .collect()
}

/// The manifest without the fields that legitimately differ between sessions (times, speed).
pub fn manifest_sans_times(run: &Path) -> serde_json::Value {
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    for k in ["started_at", "finished_at", "throughput_tok_s"] {
        m.as_object_mut().unwrap().remove(k);
    }
    m
}

/// Assert two run directories hold the same results, byte for byte, timestamps aside.
pub fn assert_same_run(a: &Path, b: &Path) {
    for f in ["responses.jsonl", "logprobs.bin", "results.json"] {
        let (x, y) = (
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
        );
        assert!(
            x == y,
            "{f} differs between {} and {} ({} vs {} bytes)",
            a.display(),
            b.display(),
            x.len(),
            y.len()
        );
    }
    assert_eq!(manifest_sans_times(a), manifest_sans_times(b));
}

/// Lines in a run's responses.jsonl (0 when absent).
pub fn lines(run: &Path) -> usize {
    std::fs::read(run.join("responses.jsonl"))
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}
