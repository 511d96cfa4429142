//! `reprolm sweep`: the product of the axes under one root with stable names; finished runs skipped,
//! broken ones resumed, a failing run reported without stopping the others; `report` over the root.

mod common;

use common::*;

fn sweep_file(dir: &std::path::Path, axes: &str) -> std::path::PathBuf {
    let path = dir.join("sweep.toml");
    let text = format!(
        "root = \"{root}\"\n[base]\nmodel = \"{model}\"\ntask = \"arith\"\nlimit = 3\nmax_tokens = 16\n[axes]\n{axes}\n",
        root = dir.join("runs").display(),
        model = fixture_model().display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn two_policies_by_two_batch_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_file(
        tmp.path(),
        "policy = [\"fp32\", \"bf16\"]\nbatch_size = [1, 2]",
    );
    let args = vec!["sweep".to_string(), file.display().to_string()];
    let res = reprolm(tmp.path(), &args, 0);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        stdout.contains("4 runs: 4 finished now, 0 already finished, 0 failed"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(
        stderr.matches("loading ").count(),
        2,
        "one load per policy:\n{stderr}"
    );
    // The sweep's own progress: how many of the runs to do are done, and the time left after one.
    assert!(
        stderr.contains("sweep: 0 of 4 runs to do done, elapsed 0:00:00\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("sweep: 3 of 4 runs to do done, elapsed ") && stderr.contains(", ETA "),
        "{stderr}"
    );
    let root = tmp.path().join("runs");
    // Run directories, and the local sweep's record for `sweep status`.
    assert!(root.join("sweep-local.json").is_file());
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "qwen2-arith-bf16-bs1",
            "qwen2-arith-bf16-bs2",
            "qwen2-arith-fp32-bs1",
            "qwen2-arith-fp32-bs2"
        ]
    );
    for n in &names {
        assert_eq!(lines(&root.join(n)), 3, "{n}");
        let m = manifest_sans_times(&root.join(n));
        assert_eq!(m["batching_mode"], "static");
        assert_eq!(m["max_tokens"], 16);
    }

    // Break one run: drop its last response and its end time. The next sweep resumes it only.
    let victim = root.join("qwen2-arith-bf16-bs2");
    let keep = tempfile::tempdir().unwrap();
    for f in [
        "responses.jsonl",
        "logprobs.bin",
        "manifest.json",
        "results.json",
    ] {
        std::fs::copy(victim.join(f), keep.path().join(f)).unwrap();
    }
    let text = std::fs::read_to_string(victim.join("responses.jsonl")).unwrap();
    let cut: Vec<&str> = text.lines().collect();
    std::fs::write(
        victim.join("responses.jsonl"),
        format!("{}\n{}\n", cut[0], cut[1]),
    )
    .unwrap();
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(victim.join("manifest.json")).unwrap())
            .unwrap();
    m["finished_at"] = serde_json::Value::Null;
    std::fs::write(victim.join("manifest.json"), m.to_string()).unwrap();

    // A dry run says which run would resume and what it holds.
    let mut dry = args.clone();
    dry.push("--dry-run".into());
    let res = reprolm(tmp.path(), &dry, 0);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        stderr.contains("would resume (2 samples recorded) in")
            && stderr.matches("is finished, skipped").count() == 3,
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        stdout.contains("(dry run): 4 runs: 3 finished, 1 would resume, 0 would start, 0 invalid"),
        "{stdout}"
    );
    // `sweep status` on the local root: the same, per configuration; not all done, status 1.
    let res = reprolm(
        tmp.path(),
        &["sweep".into(), "status".into(), "runs".into()],
        1,
    );
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        stdout.contains("4 configurations: 3 done, 1 partial")
            && stdout.contains("partial      qwen2-arith-bf16-bs2")
            && stdout.contains("2 samples recorded"),
        "{stdout}"
    );
    let res = reprolm(tmp.path(), &args, 0);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        stdout.contains("4 runs: 1 finished now, 3 already finished, 0 failed"),
        "{stdout}"
    );
    let res = reprolm(
        tmp.path(),
        &["sweep".into(), "status".into(), "runs".into()],
        0,
    );
    assert!(
        String::from_utf8_lossy(&res.stdout).contains("4 configurations: 4 done"),
        "{}",
        String::from_utf8_lossy(&res.stdout)
    );
    assert_same_run(&victim, keep.path());

    // The report groups the four runs by policy.
    let res = reprolm(
        tmp.path(),
        &["report".to_string(), root.display().to_string()],
        0,
    );
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        stdout.contains("bf16") && stdout.contains("fp32"),
        "{stdout}"
    );
    assert!(root.join("report.md").exists() && root.join("report.json").exists());
    // For scripts, one JSON line listing each group with its headline metrics.
    let res = reprolm(
        tmp.path(),
        &[
            "report".to_string(),
            root.display().to_string(),
            "--json-log".to_string(),
        ],
        0,
    );
    let stdout = String::from_utf8_lossy(&res.stdout);
    let last: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a final event")).unwrap();
    let groups = last["groups"].as_array().expect("a list of groups");
    let policies: Vec<&str> = groups
        .iter()
        .map(|g| g["policy"].as_str().unwrap())
        .collect();
    assert_eq!(policies, ["bf16", "fp32"], "{last}");
    for g in groups {
        assert_eq!(
            (g["runs"].as_u64(), g["kernels"].as_str()),
            (Some(2), Some("invariant")),
            "{g}"
        );
        // Batch 1 and 2 give the same tokens under the invariant kernels.
        assert_eq!(
            (g["divergence_share"].as_f64(), g["std_acc"].as_f64()),
            (Some(0.0), Some(0.0)),
            "{g}"
        );
        assert!(
            g["div_index_mean"].is_null() && g["avg_std_top1_prob"] == 0.0,
            "{g}"
        );
    }
}

#[test]
fn a_failing_run_is_reported_and_the_others_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_file(tmp.path(), "policy = [\"fp32\", \"fp64x\"]");
    let res = reprolm(
        tmp.path(),
        &["sweep".to_string(), file.display().to_string()],
        1,
    );
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        stdout.contains("2 runs: 1 finished now, 0 already finished, 1 failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("failed: policy=fp64x: --policy: unknown precision policy `fp64x`"),
        "{stdout}"
    );
    assert_eq!(lines(&tmp.path().join("runs/qwen2-arith-fp32-bs8")), 3);
}

#[test]
fn only_runs_one_configuration_and_slurm_flags_need_the_slurm_executor() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_file(tmp.path(), "policy = [\"fp32\", \"bf16\"]");
    let f = file.display().to_string();
    let args = |extra: &[&str]| [args(&["sweep", &f]), args(extra)].concat();
    // Configurations run in policy-table order; number 2 is fp32.
    let res = reprolm(tmp.path(), &args(&["--only", "2"]), 0);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(stderr.contains("[2/2] policy=fp32 -> "), "{stderr}");
    let names: Vec<String> = std::fs::read_dir(tmp.path().join("runs"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["qwen2-arith-fp32-bs8"]);

    let err = String::from_utf8(reprolm(tmp.path(), &args(&["--only", "3"]), 2).stderr).unwrap();
    assert!(
        err.contains("--only 3: sweep file") && err.contains("has configurations 1 to 2"),
        "{err}"
    );
    let err =
        String::from_utf8(reprolm(tmp.path(), &args(&["--partition", "gpu"]), 2).stderr).unwrap();
    assert!(
        err.contains("--partition applies to --executor slurm only"),
        "{err}"
    );

    // The script is shown without Slurm installed; the finished configuration is left out of it.
    let res = reprolm(
        tmp.path(),
        &args(&[
            "--executor",
            "slurm",
            "--dry-run",
            "--partition",
            "gpu",
            "--gpus-per-run",
            "1",
            "--time",
            "04:00:00",
        ]),
        0,
    );
    let script = String::from_utf8_lossy(&res.stdout);
    for line in [
        "#SBATCH --array=1",
        "#SBATCH --partition=gpu",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --time=04:00:00",
    ] {
        assert!(
            script.lines().any(|l| l == line),
            "no `{line}` in\n{script}"
        );
    }
    assert!(
        script.contains(" --only \"$SLURM_ARRAY_TASK_ID\""),
        "{script}"
    );
    assert!(
        !tmp.path().join("runs/slurm").exists(),
        "--dry-run wrote files"
    );
}

#[test]
fn tensor_parallel_size_is_an_axis_and_the_invariant_mode_does_not_move_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_file(tmp.path(), "tp = [1, 2, 4]\ntp_mode = [\"invariant\"]");
    let args = vec!["sweep".to_string(), file.display().to_string()];
    let res = reprolm(tmp.path(), &args, 0);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(stdout.contains("3 runs: 3 finished now"), "{stdout}");
    let root = tmp.path().join("runs");
    let runs = [
        ("qwen2-arith-fp32-bs8-tpinv", 1),
        ("qwen2-arith-fp32-bs8-tp2-tpinv", 2),
        ("qwen2-arith-fp32-bs8-tp4-tpinv", 4),
    ];
    for (name, tp) in runs {
        let m = manifest_sans_times(&root.join(name));
        assert_eq!(m["tp_size"], tp, "{name}");
        assert_eq!(m["kernels"]["tp_mode"], "invariant", "{name}");
        assert_eq!(m["kernels"]["deterministic"], "true", "{name}");
        assert_eq!(m["gpu_count"], 0, "{name}");
    }
    let want = tokens(&root.join(runs[0].0));
    assert_eq!(want.len(), 3);
    for (name, _) in &runs[1..] {
        assert_eq!(tokens(&root.join(name)), want, "{name}");
    }
    // The same sweep again finds every run finished (the sweep's check compares the kernels
    // value the run recorded, `deterministic` a view of the TP-invariant reduction).
    let again = reprolm(tmp.path(), &args, 0);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(stdout.contains("3 already finished"), "{stdout}");
}

#[test]
fn deterministic_axis_names_records_and_keeps_responses_across_batch_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_file(
        tmp.path(),
        "policy = [\"bf16\"]\nbatch_size = [1, 3]\ndeterministic = [false, true]",
    );
    let args = vec!["sweep".to_string(), file.display().to_string()];
    let res = reprolm(tmp.path(), &args, 0);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(stdout.contains("4 runs: 4 finished now"), "{stdout}");
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(stderr.matches("loading ").count(), 1, "one load:\n{stderr}");
    let root = tmp.path().join("runs");
    for (name, det) in [
        ("qwen2-arith-bf16-bs1", false),
        ("qwen2-arith-bf16-bs3", false),
        ("qwen2-arith-bf16-bs1-det", true),
        ("qwen2-arith-bf16-bs3-det", true),
    ] {
        let m = manifest_sans_times(&root.join(name));
        assert_eq!(m["kernels"]["deterministic"], det.to_string(), "{name}");
    }
    let sorted = |n: &str| {
        let mut t = tokens(&root.join(n));
        t.sort();
        t
    };
    assert_eq!(
        sorted("qwen2-arith-bf16-bs1-det"),
        sorted("qwen2-arith-bf16-bs3-det")
    );
}

/// `kernels` is a sweep axis: the heuristic run gets its own directory and records its kernels,
/// and the same sweep again finds both runs finished.
#[test]
fn kernels_is_an_axis_and_its_runs_are_found_finished() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_file(tmp.path(), "kernels = [\"invariant\", \"heuristic\"]");
    let args = vec!["sweep".to_string(), file.display().to_string()];
    let res = reprolm(tmp.path(), &args, 0);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(stdout.contains("2 runs: 2 finished now"), "{stdout}");
    let root = tmp.path().join("runs");
    for (name, kernels) in [
        ("qwen2-arith-fp32-bs8", "invariant"),
        ("qwen2-arith-fp32-bs8-heuristic", "heuristic"),
    ] {
        let m = manifest_sans_times(&root.join(name));
        assert_eq!(m["kernels"]["kernels"], kernels, "{name}");
    }
    let again = reprolm(tmp.path(), &args, 0);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(stdout.contains("2 already finished"), "{stdout}");
}
