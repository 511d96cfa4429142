//! `reprolm run`: a run killed with SIGKILL and resumed writes the same files as an uninterrupted
//! one, generating only the missing samples; Ctrl-C stops cleanly; a finished run is left alone;
//! a prompt over the context is recorded, not fatal; `score` re-grades.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// Enough samples that the run is still going when the test kills it.
const WORK: &[&str] = &["--task-param", "n=160", "--limit", "160"];

/// Start `args`, SIGKILL the process once `at_least` samples are on disk, and return how many were.
fn kill_mid_way(cwd: &Path, args: &[String], out: &Path, at_least: usize) -> usize {
    let mut child = cmd(cwd, args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while lines(out) < at_least {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no progress within 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL: no handler runs, nothing is flushed beyond what the run already did
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "killed by SIGKILL"
    );
    lines(out)
}

/// Runs `extra` once uninterrupted and once SIGKILLed after `kill_at` of its samples (a share of
/// the total) and resumed; the two directories must hold the same bytes, and the resumed session
/// must have generated the missing samples and nothing else.
fn kill_resume_compare(extra: &[&str], kill_at: f64) {
    let tmp = tempfile::tempdir().unwrap();
    let (full, broken) = (tmp.path().join("full"), tmp.path().join("broken"));
    let flags: Vec<&str> = WORK.iter().chain(extra).copied().collect();
    let t = Instant::now();
    reprolm(tmp.path(), &run_args(&full, &flags), 0);
    let total = lines(&full);
    eprintln!("uninterrupted run: {total} samples in {:.2?}", t.elapsed());

    let args = run_args(&broken, &flags);
    let done = kill_mid_way(
        tmp.path(),
        &args,
        &broken,
        (total as f64 * kill_at) as usize,
    );
    assert!(done < total, "killed after {done} of {total}: not mid-way");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(broken.join("manifest.json")).unwrap())
            .unwrap();
    assert!(m["finished_at"].is_null(), "a killed run is not finished");
    assert_eq!(
        m["resume"], "missing-only",
        "the manifest says what a resume generates"
    );

    let mut resume = args.clone();
    resume.push("--json-log".into());
    let out = reprolm(tmp.path(), &resume, 0);
    let last: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap();
    assert_eq!(last["event"], "finished", "{last}");
    assert_eq!(last["samples"].as_u64(), Some(total as u64), "{last}");
    assert_eq!(
        last["generated"].as_u64(),
        Some((total - done) as u64),
        "killed with {done} of {total} recorded, the resumed session generated {}",
        last["generated"]
    );
    assert_same_run(&full, &broken);
}

#[test]
fn sigkill_then_resume_equals_uninterrupted_static() {
    kill_resume_compare(&["--batch-size", "4", "--batching", "static"], 0.05);
}

/// Killed late: resuming costs what is missing, not the run again.
#[test]
fn sigkill_late_then_resume_equals_uninterrupted_continuous_sampled() {
    kill_resume_compare(
        &[
            "--batch-size",
            "3",
            "--batching",
            "continuous",
            "--samples",
            "2",
            "--temperature",
            "0.7",
            "--top-p",
            "0.95",
        ],
        0.8,
    );
}

/// A prompt longer than the model's context is recorded with finish reason `prompt_too_long`
/// (scored as wrong, the problem and both lengths in its detail) and the run goes on to finish.
#[test]
fn a_prompt_over_the_context_is_recorded_and_the_run_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("four.jsonl");
    let long = "7 + 8 - 3 * 2 = ? ".repeat(900);
    let rows: Vec<serde_json::Value> = [
        ("a", "What is 2 + 3?".to_string(), "5"),
        ("b", long, "1"),
        ("c", "What is 4 * 4?".to_string(), "16"),
        ("d", "What is 9 - 1?".to_string(), "8"),
    ]
    .into_iter()
    .map(|(id, problem, answer)| {
        serde_json::json!({ "unique_id": id, "problem": problem, "answer": answer })
    })
    .collect();
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&data, text).unwrap();
    let out = tmp.path().join("run");
    let args = run_args(
        &out,
        &[
            "--task",
            "math500",
            "--data",
            data.to_str().unwrap(),
            "--batch-size",
            "4",
        ],
    );
    let res = reprolm(tmp.path(), &args, 0);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(stdout.contains("4 samples"), "{stdout}");
    let records: Vec<serde_json::Value> = std::fs::read_to_string(out.join("responses.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 4);
    let too_long: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["finish_reason"] == "prompt_too_long")
        .collect();
    assert_eq!(too_long.len(), 1, "{records:?}");
    let r = too_long[0];
    assert_eq!(r["problem_id"], "b");
    assert_eq!(r["correct"], false);
    assert_eq!(r["token_ids"].as_array().map(Vec::len), Some(0));
    let why = r["score_detail"]["error"].as_str().unwrap();
    let prompt_tokens = r["prompt_tokens"].as_u64().unwrap();
    assert!(prompt_tokens > 4096, "{prompt_tokens}");
    assert!(
        why.contains("b#0") && why.contains(&prompt_tokens.to_string()) && why.contains("4096"),
        "{why}"
    );
    // The other three were generated and graded.
    assert!(records
        .iter()
        .filter(|r| r["problem_id"] != "b")
        .all(|r| r["finish_reason"] != "prompt_too_long"
            && !r["token_ids"].as_array().unwrap().is_empty()));
    // `report` lists it.
    let rep = reprolm(
        tmp.path(),
        &["report".to_string(), out.display().to_string()],
        0,
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap_or_default();
    let printed = format!("{}{md}", String::from_utf8_lossy(&rep.stdout));
    assert!(
        printed.contains("prompt_too_long") && printed.contains(": b"),
        "{printed}"
    );
}

#[test]
fn ctrl_c_stops_cleanly_and_the_same_command_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let args = run_args(&out, &[WORK, &["--batch-size", "2"]].concat());
    let mut child = cmd(tmp.path(), &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while lines(&out) < 3 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let res = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert_eq!(
        res.status.code(),
        Some(130),
        "{stdout}\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(
        stdout.contains("interrupted with")
            && stdout.contains("run the same command again to resume"),
        "{stdout}"
    );
    // Stopped between steps: both files end on a complete record.
    let done = lines(&out);
    let bytes = std::fs::read(out.join("responses.jsonl")).unwrap();
    assert_eq!(bytes.last(), Some(&b'\n'));
    let (_, _) = (done, bytes);
    reprolm(tmp.path(), &args, 0);
    assert_eq!(lines(&out), 160);
}

#[test]
fn finished_run_is_left_alone_and_another_config_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let args = run_args(&out, &["--limit", "3", "--batch-size", "2"]);
    let first = reprolm(tmp.path(), &args, 0);
    assert!(String::from_utf8_lossy(&first.stderr).contains("loading "));
    let before = std::fs::read(out.join("manifest.json")).unwrap();
    let results = std::fs::metadata(out.join("results.json"))
        .unwrap()
        .modified()
        .unwrap();
    // Watch the directory: asking again must open none of its files for writing (a finished run
    // may sit in a read-only archive), which inotify reports as IN_CLOSE_WRITE even when nothing
    // was written.
    let watch = WriteWatch::new(&out);
    let again = reprolm(tmp.path(), &args, 0);
    assert_eq!(
        watch.written(),
        Vec::<String>::new(),
        "files of a finished run opened for writing"
    );
    // It says it is finished and exits 0, rather than report a run that took no time.
    let again_out = String::from_utf8_lossy(&again.stdout);
    assert!(
        again_out.contains("run: already finished, nothing to do: 3 samples"),
        "{again_out}"
    );
    assert!(!String::from_utf8_lossy(&first.stdout).contains("already finished"));
    // Answered from the directory and the model's files: the model is not loaded.
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(!said.contains("loading "), "{said}");
    assert_eq!(
        std::fs::read(out.join("manifest.json")).unwrap(),
        before,
        "a finished run is not rewritten"
    );
    assert_eq!(
        std::fs::metadata(out.join("results.json"))
            .unwrap()
            .modified()
            .unwrap(),
        results,
        "results.json is not rewritten with the same bytes"
    );

    // A record reads without the dataset or the model: the question, the reference answer and the
    // whole prompt the model was given are in it.
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(out.join("responses.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let question = first["question"].as_str().expect("question");
    assert!(question.starts_with("What is "), "{first}");
    assert!(
        first["gold_answer"].as_str().is_some_and(|g| !g.is_empty()),
        "{first}"
    );
    assert!(
        first["prompt"]
            .as_str()
            .is_some_and(|p| p.contains(question)),
        "{first}"
    );

    // The kernels that decided the numbers are recorded, and compared like any setting: a run
    // made with another GEMM family (edited in here to stand for one) is not resumed.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["kernels"]["gemm"], "cpu", "{manifest}");
    assert_eq!(manifest["kernels"]["token_choice"], "host", "{manifest}");
    assert_eq!(manifest["kernels"]["reduction"], "sequential", "{manifest}");
    assert_eq!(manifest["kernels"]["fused_kernels"], "on", "{manifest}");
    assert_eq!(manifest["kernels"]["tp_mode"], "standard", "{manifest}");
    // No CUDA graphs on the CPU, whatever --cuda-graphs says.
    assert_eq!(manifest["kernels"]["cuda_graphs"], "off", "{manifest}");
    assert_eq!(
        manifest["kernels"]["attention"], "cpu, splits of 256",
        "{manifest}"
    );
    let mut edited = manifest.clone();
    edited["kernels"]["gemm"] = "mma".into();
    std::fs::write(
        out.join("manifest.json"),
        serde_json::to_vec_pretty(&edited).unwrap(),
    )
    .unwrap();
    // Another configuration in --out is the command line's fault: a usage error, status 2.
    let err = String::from_utf8(reprolm(tmp.path(), &args, 2).stderr).unwrap();
    assert!(
        err.contains("gemm=mma kernels=invariant reduction=sequential token_choice=host tp_mode=standard (existing) vs attention=cpu, splits of 256 cuda_graphs=off deterministic=false fused_kernels=on gemm=cpu kernels=invariant"),
        "{err}"
    );
    std::fs::write(out.join("manifest.json"), &before).unwrap();

    let other = run_args(
        &out,
        &["--limit", "3", "--batch-size", "1", "--policy", "bf16"],
    );
    let err = String::from_utf8(reprolm(tmp.path(), &other, 2).stderr).unwrap();
    assert!(
        err.contains("existing run has a different configuration"),
        "{err}"
    );
    // Of the policy tables only the entries that differ (norm is f32 in both).
    assert!(
        err.contains("policy.table: activations=f32 attention=f32 ")
            && err.contains("(existing) vs activations=bf16 ")
            && !err.contains("norm="),
        "{err}"
    );
    assert!(
        !err.contains("loading "),
        "refused before loading the model: {err}"
    );
    assert!(
        err.contains("policy.name: fp32 (existing) vs bf16 (requested)"),
        "{err}"
    );
    assert!(
        err.contains("batch_size: 2 (existing) vs 1 (requested)"),
        "{err}"
    );
}

#[test]
fn json_log_and_score_regrades_without_generating() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut args = run_args(&out, &["--limit", "3"]);
    args.push("--json-log".into());
    let res = reprolm(tmp.path(), &args, 0);
    let events: Vec<serde_json::Value> = String::from_utf8(res.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every stdout line is JSON"))
        .collect();
    assert_eq!(events.iter().filter(|e| e["event"] == "sample").count(), 3);
    assert_eq!(events.last().unwrap()["event"], "finished");
    let start = events
        .iter()
        .find(|e| e["event"] == "start")
        .expect("a start event");
    assert_eq!(
        (start["samples"].as_u64(), start["recorded"].as_u64()),
        (Some(3), Some(0))
    );

    // Mark every response correct by hand; `score` must grade them again from their text.
    let path = out.join("responses.jsonl");
    let original = std::fs::read_to_string(&path).unwrap();
    let tampered: String = original
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["correct"] = true.into();
            v["score"] = 1.0.into();
            format!("{v}\n")
        })
        .collect();
    std::fs::write(&path, tampered).unwrap();
    let res = reprolm(
        tmp.path(),
        &["score".to_string(), out.display().to_string()],
        0,
    );
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(stdout.contains("re-scored 3 responses"), "{stdout}");
    let back = std::fs::read_to_string(&path).unwrap();
    let strip = |s: &str| {
        s.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&back), strip(&original));
}

/// The paper's own flags (`eval_main.py --dtype bfloat16 --batch_size ... --max_tokens ...
/// --exp_name ...`) run as they are, and the run records the preset's own name.
#[test]
fn the_papers_flags_and_dtype_names_are_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture_model().display().to_string();
    let args = args(&[
        "run",
        "--model",
        &model,
        "--task",
        "arith",
        "--dtype",
        "bfloat16",
        "--seed",
        "42",
        "--batch_size",
        "2",
        "--max_tokens",
        "6",
        "--exp_name",
        "2cpu_arith_bf16_bs2",
        "--limit",
        "2",
    ]);
    let out = reprolm(tmp.path(), &args, 0);
    // Redirected, the run prints plain progress lines (the bar is for terminals).
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("2cpu_arith_bf16_bs2: 2/2 samples (100%)")
            && stderr.contains("ETA 0:00:00"),
        "{stderr}"
    );
    let m = manifest_sans_times(&tmp.path().join("2cpu_arith_bf16_bs2"));
    assert_eq!(m["policy"]["name"], "bf16", "{m}");
    assert_eq!(m["batch_size"], 2, "{m}");
    assert_eq!(m["max_tokens"], 6, "{m}");
    // results.json: the run's own numbers, from its responses.
    let run = tmp.path().join("2cpu_arith_bf16_bs2");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("responses.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let correct = lines.iter().filter(|r| r["correct"] == true).count();
    assert_eq!(results["format_version"], 1, "{results}");
    assert_eq!(results["policy"], "bf16", "{results}");
    assert_eq!(
        (results["problems"].as_u64(), results["finished"].as_bool()),
        (Some(2), Some(true))
    );
    assert_eq!(results["n_samples"], 2, "{results}");
    assert_eq!(results["n_correct"], correct, "{results}");
    assert_eq!(
        results["accuracy"]["value"],
        correct as f64 / 2.0,
        "{results}"
    );
    let ci = &results["accuracy_ci95"]["value"];
    assert!(
        ci["lo"].as_f64().unwrap() <= correct as f64 / 2.0,
        "{results}"
    );
    // An unknown name lists the aliases beside the presets, and is a usage error (status 2).
    let err = reprolm(
        tmp.path(),
        &run_args(&tmp.path().join("x"), &["--dtype", "bfloat17"]),
        2,
    );
    let err = String::from_utf8_lossy(&err.stderr);
    assert!(err.contains("bfloat16 = bf16"), "{err}");
}

/// An engine failure (here a KV cache too small for one sequence) ends the run with an error that
/// says how many samples are on disk and how to resume, not a bare engine message.
#[test]
fn an_engine_failure_says_what_is_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let args = run_args(&out, &["--limit", "3", "--kv-cache-memory", "16KiB"]);
    let res = reprolm(tmp.path(), &args, 1);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        stderr.contains("0 of 3 samples are recorded")
            && stderr.contains("run the same command again to resume")
            && stderr.contains("KV cache is full"),
        "{stderr}"
    );
}

/// A larger `--limit` on a finished run extends it (the kernels are batch invariant): only the
/// new problems are generated, and the directory ends as a run made with that limit from the
/// start would.
#[test]
fn a_larger_limit_extends_a_run_to_what_a_run_with_it_would_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let (grown, whole) = (tmp.path().join("grown"), tmp.path().join("whole"));
    let with_limit = |out: &Path, limit: &str| {
        run_args(
            out,
            &[
                "--task",
                "arith",
                "--task-param",
                "n=8",
                "--batch-size",
                "3",
                "--limit",
                limit,
            ],
        )
    };
    reprolm(tmp.path(), &with_limit(&grown, "3"), 0);
    assert_eq!(lines(&grown), 3);
    let mut again = with_limit(&grown, "5");
    again.push("--json-log".into());
    let res = reprolm(tmp.path(), &again, 0);
    let stdout = String::from_utf8_lossy(&res.stdout);
    let last: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a final event")).unwrap();
    assert_eq!(last["generated"], 2, "{stdout}");
    reprolm(tmp.path(), &with_limit(&whole, "5"), 0);
    assert_same_run(&grown, &whole);
}

/// `--kernels heuristic` (the batch-dependent matmuls other engines use) is recorded whole in the
/// manifest, makes resume replay the schedule, and continuing the run under the default kernels
/// is refused with the field named.
#[test]
fn heuristic_kernels_are_recorded_and_a_change_on_resume_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let base = ["--task", "arith", "--task-param", "n=4", "--limit", "2"];
    let mut heuristic = run_args(&out, &base);
    heuristic.extend(["--kernels".to_string(), "heuristic".to_string()]);
    reprolm(tmp.path(), &heuristic, 0);
    let m = manifest_sans_times(&out);
    assert_eq!(m["kernels"]["kernels"], "heuristic", "{m}");
    assert_eq!(
        m["kernels"]["gemm"], "split-K by row count, rounded partials (batch dependent)",
        "{m}"
    );
    assert_eq!(m["resume"], "replay", "{m}");
    let res = reprolm(tmp.path(), &run_args(&out, &base), 2);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        stderr.contains("kernels: ") && stderr.contains("kernels=invariant"),
        "{stderr}"
    );
}

/// Issue #23: the fused-kernels setting (`--fused-kernels`, once an environment switch) is part
/// of the kernels value, recorded in the manifest and compared on resume, so continuing a run
/// with the other setting is refused with the field named.
#[test]
fn fused_kernels_setting_is_recorded_and_a_change_on_resume_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let base = ["--task", "arith", "--task-param", "n=4", "--limit", "1"];
    let mut off = run_args(&out, &base);
    off.extend(["--fused-kernels".to_string(), "off".to_string()]);
    reprolm(tmp.path(), &off, 0);
    let m = manifest_sans_times(&out);
    assert_eq!(m["kernels"]["fused_kernels"], "off", "{m}");
    let res = reprolm(tmp.path(), &run_args(&out, &base), 2);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        stderr.contains("kernels: ")
            && stderr.contains("fused_kernels=off")
            && stderr.contains("fused_kernels=on"),
        "{stderr}"
    );
}

/// The GEMM switches that were process-wide environment variables are refused by `run` with what
/// to do instead: `REPROLM_GEMM` is the recorded `--gemm` flag, and the cuBLASLt pinning knobs are
/// and user pin tables for the bench commands only, so a run's numbers are those its manifest names.
#[test]
fn gemm_environment_switches_are_refused_by_run() {
    let tmp = tempfile::tempdir().unwrap();
    let args = run_args(
        &tmp.path().join("run"),
        &["--task", "arith", "--limit", "1"],
    );
    for (var, value, says) in [
        ("REPROLM_GEMM", "mma", "--gemm cublaslt|mma"),
        ("REPROLM_GEMM_PIN", "64", "`reprolm bench` commands only"),
        ("REPROLM_GEMM_SPLITK", "0", "`reprolm bench` commands only"),
        (
            "REPROLM_GEMM_PINS",
            "pins.toml",
            "`reprolm bench` commands only",
        ),
    ] {
        let out = cmd(tmp.path(), &args).env(var, value).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}: {stderr}");
        assert!(
            stderr.contains(var) && stderr.contains(says),
            "{var}: {stderr}"
        );
    }
    assert!(!tmp.path().join("run").exists(), "nothing is written");
}

/// The files under a directory that were opened for writing (or created, moved in, modified)
/// since the watch began, from inotify.
struct WriteWatch {
    fd: i32,
}

impl WriteWatch {
    fn new(dir: &Path) -> Self {
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: plain system calls on a path that is NUL-terminated below; the descriptor is
        // owned by the returned value and closed in Drop.
        unsafe {
            let fd = libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC);
            assert!(fd >= 0, "inotify_init1 failed");
            let mut path = dir.as_os_str().as_bytes().to_vec();
            path.push(0);
            let mask = libc::IN_CLOSE_WRITE | libc::IN_MODIFY | libc::IN_CREATE | libc::IN_MOVED_TO;
            let wd = libc::inotify_add_watch(fd, path.as_ptr().cast(), mask);
            assert!(wd >= 0, "inotify_add_watch failed on {}", dir.display());
            WriteWatch { fd }
        }
    }

    /// The names of the files written since [`WriteWatch::new`], in event order.
    fn written(&self) -> Vec<String> {
        let mut names = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            // SAFETY: reads into a buffer of the length given; the descriptor is open.
            let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return names;
            }
            let mut at = 0usize;
            while at < n as usize {
                // SAFETY: the kernel wrote whole events; each starts with an inotify_event header
                // followed by `len` bytes of NUL-padded name.
                let ev: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(buf[at..].as_ptr().cast()) };
                let start = at + std::mem::size_of::<libc::inotify_event>();
                let name = &buf[start..start + ev.len as usize];
                let name = String::from_utf8_lossy(name)
                    .trim_end_matches('\0')
                    .to_string();
                names.push(name);
                at = start + ev.len as usize;
            }
        }
    }
}

impl Drop for WriteWatch {
    fn drop(&mut self) {
        // SAFETY: the descriptor was opened by `new` and is closed once.
        unsafe { libc::close(self.fd) };
    }
}

/// With batch-dependent kernels a run cannot grow (its batches, and so its numbers, would change):
/// asking it for more problems is refused before the model loads, as a usage error (status 2).
#[test]
fn a_heuristic_run_is_not_extended() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let base = ["--kernels", "heuristic"];
    reprolm(
        tmp.path(),
        &run_args(&out, &[&base[..], &["--limit", "2"]].concat()),
        0,
    );
    let more = run_args(&out, &[&base[..], &["--limit", "3"]].concat());
    let err = String::from_utf8(reprolm(tmp.path(), &more, 2).stderr).unwrap();
    assert!(
        err.contains("the run has 2 of the 3 problems asked for")
            && err.contains("pass another --out")
            && !err.contains("loading "),
        "{err}"
    );
}
