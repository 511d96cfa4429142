//! Every refusal of the CLI names what is at fault (the flag, file or field) and, where there is a
//! choice, what is available.

mod common;

use common::*;

fn run_err(tmp: &std::path::Path, extra: &[&str]) -> String {
    let out = tmp.join("run");
    let args = run_args(&out, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    usage_error_of(tmp, &args)
}

#[test]
fn run_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let e = run_err(t, &["--task", "nosuch"]);
    assert!(
        e.contains("--task: unknown task `nosuch`") && e.contains("aime24, aime25, arith"),
        "{e}"
    );
    let e = run_err(t, &["--policy", "fp8"]);
    assert!(e.contains("--policy: unknown precision policy `fp8`; available: bf16, fp16, fp32, layercast, fp32-head"), "{e}");
    std::fs::write(
        t.join("bad.toml"),
        "version = 1\nname = \"bad\"\nlm_heads = \"f32\"\n",
    )
    .unwrap();
    let e = run_err(t, &["--policy", "bad.toml"]);
    assert!(
        e.contains(
            "--policy: bad.toml:3: `lm_heads`: unknown key; known keys: version, name, base"
        ),
        "{e}"
    );
    let e = run_err(t, &["--device", "tpu:0"]);
    assert!(
        e.contains("--device: ") && e.contains("expected cpu, cuda or cuda:N"),
        "{e}"
    );
    let e = run_err(t, &["--batch-size", "0"]);
    assert!(e.contains("--batch-size must be at least 1"), "{e}");
    let e = run_err(t, &["--limit", "0"]);
    assert!(e.contains("--limit must be at least 1"), "{e}");
    let e = run_err(t, &["--samples", "4"]);
    assert!(e.contains("--samples 4 with --temperature 0"), "{e}");
    let e = run_err(t, &["--top-p", "0"]);
    assert!(e.contains("--top-p must be in (0, 1], got 0"), "{e}");
    let e = run_err(t, &["--task-param", "n"]);
    assert!(
        e.contains("--task-param: expected KEY=VALUE, got `n`"),
        "{e}"
    );
    let e = run_err(t, &["--task-param", "size=3"]);
    assert!(e.contains("size") && e.contains("arith"), "{e}");
    let e = run_err(t, &["--data", "no/such.jsonl"]);
    assert!(
        e.contains("--data: no such file or directory no/such.jsonl"),
        "{e}"
    );
    let e = run_err(t, &["--problems", "zzz"]);
    assert!(
        e.contains("--problems: task `arith` has no problem `zzz`")
            && e.contains("the first ids are"),
        "{e}"
    );
}

#[test]
fn unknown_model_lists_what_is_available() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    std::fs::create_dir_all(t.join("models/mine")).unwrap();
    std::fs::write(t.join("models/mine/config.json"), "{}").unwrap();
    let e = usage_error_of(t, &["run", "--model", "./models/nosuch"]);
    assert!(
        e.contains("--model: model `./models/nosuch`") && e.contains("no such directory"),
        "{e}"
    );
    assert!(
        e.contains("available local models: ") && e.contains("models/mine"),
        "{e}"
    );
    let e = usage_error_of(t, &["run", "--model", t.join("models").to_str().unwrap()]);
    assert!(
        e.contains("is not a model directory (no config.json)"),
        "{e}"
    );
    // Without --model the embedded default is used; when the checkout lacks it, say so.
    let checkout = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/arith-qwen2-3m/config.json");
    if !checkout.exists() {
        let e = usage_error_of(t, &["run"]);
        assert!(
            e.contains("the embedded default model models/arith-qwen2-3m is not here"),
            "{e}"
        );
    }
}

#[test]
fn sweep_files() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // The sweep file is what the command line points at: its faults are usage errors (status 2).
    let e = usage_error_of(t, &["sweep", "missing.toml"]);
    assert!(e.contains("reading sweep file missing.toml"), "{e}");
    let write = |text: &str| {
        std::fs::write(t.join("s.toml"), text).unwrap();
        usage_error_of(t, &["sweep", "s.toml"])
    };
    let e = write("[axes\n");
    assert!(e.contains("sweep file s.toml: not valid TOML"), "{e}");
    let e = write("[axes]\npolicies = [\"fp32\"]\n");
    assert!(
        e.contains("sweep file s.toml: [axes] unknown setting `policies`"),
        "{e}"
    );
    let e = write("[axes]\npolicy = \"fp32\"\n");
    assert!(
        e.contains("[axes] `policy` must be a non-empty list"),
        "{e}"
    );
    let e = write("[base]\npolicy = \"fp32\"\n[axes]\npolicy = [\"bf16\"]\n");
    assert!(
        e.contains("`policy` is both in [base] and in [axes]"),
        "{e}"
    );
    // The paper's spellings get the name they have here.
    let e = write("[axes]\ndtype = [\"bfloat16\", \"float32\"]\n");
    assert!(
        e.contains(
            "[axes] unknown setting `dtype`: the precision is `policy` here (it takes bfloat16"
        ),
        "{e}"
    );
    let e = write("[base]\nexp_name = \"x\"\n");
    assert!(e.contains("run directories are named under `root`"), "{e}");
    let e = write("[base]\nout = \"x\"\n");
    assert!(e.contains("[base] `out` cannot be set"), "{e}");
    let e = write("runs = 1\n");
    assert!(e.contains("unknown top-level key `runs`"), "{e}");
    // A value clap refuses fails that run only and is reported at the end with the flag named.
    std::fs::write(t.join("s.toml"), "[base]\nbatching = \"dynamic\"\n").unwrap();
    let out = reprolm(t, &["sweep".into(), "s.toml".into()], 1);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("invalid value 'dynamic' for '--batching") && stdout.contains("1 failed"),
        "{stdout}"
    );
}

#[test]
fn score_inspect_report_policies() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // A path argument that does not exist is a usage error (status 2), as a missing sweep file is.
    for (args, want) in [
        (
            &["score", "nodir"][..],
            "run directory nodir: no such file or directory",
        ),
        (
            &["inspect", "a", "b"],
            "run directory a: no such file or directory",
        ),
        (
            &["export", "nodir"],
            "run directory nodir: no such file or directory",
        ),
        (
            &["report", "nodir"],
            "report root nodir: no such file or directory",
        ),
        (
            &["sweep", "status", "nodir"],
            "sweep root nodir: no such file or directory",
        ),
        (
            &["import-reference", "nodir", "--task", "arith", "--out", "x"],
            "reference output nodir: no such file or directory",
        ),
        (
            &["sweep", "missing.toml"],
            "reading sweep file missing.toml",
        ),
        // Parquet's footer comes last: nothing a pipe's reader can use.
        (
            &["export", ".", "--format", "parquet", "--out", "-"],
            "--out - (stdout) works with --format jsonl only",
        ),
    ] {
        let e = usage_error_of(t, args);
        assert!(e.starts_with(&format!("error: {want}")), "{args:?}: {e}");
    }
    // A missing policy file's cause is named once, though the message already ends with it.
    let model = fixture_model().display().to_string();
    for args in [
        &["policies", "nofile.toml"][..],
        &["memory", "--model", &model, "--policy", "nofile.toml"],
    ] {
        let e = usage_error_of(t, args);
        assert!(e.contains("reading policy file nofile.toml: "), "{e}");
        assert_eq!(e.matches("os error 2").count(), 1, "{e}");
    }
    // One that exists but holds no run fails reading it (status 1), naming the file it lacks.
    std::fs::create_dir_all(t.join("empty")).unwrap();
    let e = error_of(t, &["score", "empty"]);
    assert!(
        e.contains("reading run directory empty") && e.contains("manifest.json"),
        "{e}"
    );
    let e = error_of(t, &["report", "empty"]);
    assert!(e.contains("no run directories found"), "{e}");
    let e = usage_error_of(t, &["policies", "fp8"]);
    assert!(
        e.contains("unknown precision policy `fp8`; available: bf16"),
        "{e}"
    );

    let run = t.join("run");
    reprolm(t, &run_args(&run, &["--limit", "2"]), 0);
    let r = run.display().to_string();
    let e = usage_error_of(t, &["inspect", &r, &r, "--problem", "zzz"]);
    assert!(
        e.contains("--problem zzz: neither run has this problem"),
        "{e}"
    );
}

#[test]
fn listings() {
    let tmp = tempfile::tempdir().unwrap();
    let out = String::from_utf8(reprolm(tmp.path(), &["tasks".into()], 0).stdout).unwrap();
    assert!(out.lines().any(|l| l.starts_with("arith ")), "{out}");
    assert!(out.contains("math500"), "{out}");
    let out = String::from_utf8(reprolm(tmp.path(), &["policies".into()], 0).stdout).unwrap();
    assert!(out.lines().any(|l| l.starts_with("layercast ")), "{out}");
    let out =
        String::from_utf8(reprolm(tmp.path(), &["policies".into(), "layercast".into()], 0).stdout)
            .unwrap();
    assert!(out.starts_with("policy layercast\n"), "{out}");
}

#[test]
fn policy_files_and_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    std::fs::write(
        t.join("mine.toml"),
        "version = 1\nname = \"mine\"\nbase = \"bf16\"\nlm_head = \"f32\"\n",
    )
    .unwrap();
    let out = String::from_utf8(
        reprolm(
            t,
            &["policies".into(), "mine.toml".into(), "--toml".into()],
            0,
        )
        .stdout,
    )
    .unwrap();
    assert!(
        out.contains("name = \"mine\"")
            && out.contains("lm_head = \"f32\"")
            && out.contains("kv_cache = \"bf16\""),
        "{out}"
    );
    // The full file reads back to the same policy, and a run records its name and table.
    std::fs::write(t.join("full.toml"), &out).unwrap();
    let run = t.join("run");
    reprolm(
        t,
        &run_args(&run, &["--limit", "1", "--policy", "full.toml"]),
        0,
    );
    let m = manifest_sans_times(&run);
    assert_eq!(m["policy"]["name"], "mine");
    assert_eq!(m["policy"]["table"]["lm_head"], "f32");
    assert_eq!(m["policy"]["table"]["linear_storage"], "bf16");

    let model = fixture_model().display().to_string();
    let args = args(&[
        "memory",
        "--model",
        &model,
        "--policy",
        "fp32",
        "--policy",
        "layercast",
        "--context",
        "64",
    ]);
    let out = String::from_utf8(reprolm(t, &args, 0).stdout).unwrap();
    assert!(
        out.lines()
            .any(|l| l.starts_with("layercast ") && l.ends_with('%')),
        "{out}"
    );
    // memory's --model and --policy are resolved as run's are: naming nothing is a usage error.
    let e = usage_error_of(t, &["memory", "--model", "nosuch/model"]);
    assert!(
        e.contains("--model nosuch/model: not in the local Hub cache"),
        "{e}"
    );
    let e = usage_error_of(t, &["memory", "--model", &model, "--policy", "fp8"]);
    assert!(
        e.contains("--policy: unknown precision policy `fp8`"),
        "{e}"
    );
}

/// `reprolm tasks NAME` shows the task's settings; an unknown name lists the registered ones.
#[test]
fn tasks_name_lists_the_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let out = reprolm(tmp.path(), &["tasks".into(), "livecodebench".into()], 0);
    let text = String::from_utf8_lossy(&out.stdout);
    for key in [
        "release",
        "start_date",
        "end_date",
        "difficulty",
        "starter_code",
    ] {
        assert!(text.contains(&format!("\n    {key} ")), "{key}:\n{text}");
    }
    let out = reprolm(tmp.path(), &["tasks".into(), "arith".into()], 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("    n  number of problems"));
    let out = reprolm(tmp.path(), &["tasks".into(), "nope".into()], 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no task `nope`; registered: aime24"), "{err}");
}

/// A reader that stops early (`reprolm tasks | head -1`) has what it wanted: the command ends
/// quietly with status 0, not with a panic and a backtrace. Here stdout is a pipe whose read end is
/// closed before the command starts, so every write to it fails.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    reprolm(tmp.path(), &run_args(&run, &["--limit", "2"]), 0);
    let r = run.display().to_string();
    for argv in [
        vec!["tasks"],
        vec!["policies", "layercast"],
        vec!["export", &r, "--out", "-"],
    ] {
        let mut fds = [0; 2];
        // SAFETY: pipe writes two fresh descriptors into fds; each is owned exactly once below.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        drop(read);
        let args = args(&argv);
        let out = cmd(tmp.path(), &args)
            .stdout(std::process::Stdio::from(write))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{argv:?}: {stderr}");
        assert!(stderr.is_empty(), "{argv:?}: {stderr}");
    }
}
