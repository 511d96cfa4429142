//! Importing output of the paper's reference code: the fixtures under `fixtures/reference/` were written by
//! `make_fixtures.py` there with `torch.save`, exactly as that code saves its tensors. Every token id and
//! logprob is checked against `expected.json` (the same values, from the script's Python lists), the report
//! over two imported runs against a Div_Index worked out by hand, and each damaged input against its error.

use std::path::{Path, PathBuf};

use reprolm_metrics::import_reference::{
    import_reference, read_reference, ImportOptions, NotScored, ReferenceSample, Scored,
};
use reprolm_metrics::report::{generate, ReportOptions};
use reprolm_metrics::run_dir::{FinishReason, LoadedRun, Origin, PAD_TOKEN};
use reprolm_metrics::Error;

const MODEL_DIR: &str = "org/tiny-model";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference")
}

fn run_folder(bs: u32) -> PathBuf {
    fixtures()
        .join(format!("2a100_math500_bf16_bs{bs}"))
        .join(MODEL_DIR)
}

/// Copy a fixture run under `root`, keeping the `{exp_name}/{model}` layout, so a test may damage it.
fn copy_run(bs: u32, root: &Path) -> PathBuf {
    let dst = root
        .join(format!("2a100_math500_bf16_bs{bs}"))
        .join(MODEL_DIR);
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(run_folder(bs)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
    }
    dst
}

fn tensor(dir: &Path, problem: u32, kind: &str, bs: u32) -> PathBuf {
    dir.join(format!(
        "problem_{problem}_math500_{kind}_bs_{bs}_bfloat16_max_tokens_6.pt"
    ))
}

/// A grader standing in for the task's: correct when the response boxes the answer the fixture expects.
fn grade(s: &ReferenceSample<'_>) -> Result<Scored, String> {
    let answers = ["4", "12", "7", "undefined"];
    let want = answers
        .get(s.index as usize)
        .ok_or(format!("no problem {}", s.index))?;
    let correct = s.response.contains(&format!("\\boxed{{{want}}}"));
    Ok(Scored {
        problem_id: format!("math500/{}", s.index),
        score: if correct { 1.0 } else { 0.0 },
        correct,
        extracted_answer: None,
        detail: serde_json::json!({"question": s.question[0]["content"]}),
    })
}

fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_token_id_and_logprob_is_imported() {
    let expected = expected();
    let tmp = tempfile::tempdir().unwrap();
    for bs in [8u32, 16] {
        let out = tmp.path().join(format!("bs{bs}"));
        let summary = import_reference(
            &run_folder(bs),
            &out,
            &ImportOptions::new("math500"),
            &grade,
        )
        .unwrap();
        assert_eq!(summary.n_problems, 4);
        // bs 8 boxes 4, 12 and 7; bs 16 has the same answers file content.
        assert_eq!(summary.n_correct, 3);

        let run = LoadedRun::load(&out).unwrap();
        let m = &run.manifest;
        assert_eq!(m.model.id, MODEL_DIR, "model id comes from the folder path");
        assert_eq!((m.batch_size, m.gpu_count, m.tp_size), (bs, 2, 2));
        assert_eq!(m.device.name, "A100");
        assert_eq!(m.policy.name, "bf16");
        assert_eq!((m.max_tokens, m.logprobs_k), (6, 5));
        assert_eq!(m.task.name, "math500");
        assert_eq!(
            m.task.problem_ids,
            ["math500/0", "math500/1", "math500/2", "math500/3"]
        );
        assert!(
            matches!(&m.origin, Origin::Imported { source, .. } if source.ends_with("tiny-model"))
        );
        assert!(m.finished_at.is_some());
        let unknown = &m.extra["reference"]["unknown_fields"];
        for field in [
            "model.weight_files",
            "seed",
            "task.dataset_sha256",
            "responses.prompt_tokens",
        ] {
            assert!(
                unknown.as_array().unwrap().iter().any(|f| f == field),
                "{field} not marked unknown: {unknown}"
            );
        }
        assert!(m.warnings.iter().any(|w| w.contains("seed")));

        let runs = expected[bs.to_string()].as_array().unwrap();
        let mut tokens_total = 0;
        for (problem, want) in runs.iter().enumerate() {
            let ids = want["token_ids"].as_array().unwrap();
            let lps = want["logprobs"].as_array().unwrap();
            let key = reprolm_metrics::run_dir::SampleKey::new(format!("math500/{problem}"), 0);
            let record = run.record(&key).unwrap();
            let greedy: Vec<u32> = ids.iter().map(|r| r[0].as_u64().unwrap() as u32).collect();
            assert_eq!(record.token_ids, greedy, "problem {problem} bs {bs}");
            tokens_total += greedy.len() as u64;
            let finish = if greedy.len() == 6 {
                FinishReason::Length
            } else {
                FinishReason::Stop
            };
            assert_eq!(record.finish_reason, finish, "problem {problem} bs {bs}");
            assert_eq!(record.prompt_tokens, 0);
            let lp = run.logprobs_of(&key).unwrap().unwrap();
            assert_eq!(lp.len(), ids.len());
            for (pos, (id_row, lp_row)) in ids.iter().zip(lps).enumerate() {
                let (got_ids, got_lps) = lp.position(pos);
                for rank in 0..5 {
                    let id = id_row[rank].as_u64().unwrap() as u32;
                    let want_lp = lp_row[rank].as_f64().unwrap() as f32;
                    if rank > 0 && id == 0 && want_lp == 0.0 {
                        // A rank vLLM did not return, zero-filled by the reference code.
                        assert_eq!(
                            got_ids[rank], PAD_TOKEN,
                            "problem {problem} pos {pos} rank {rank}"
                        );
                        assert_eq!(got_lps[rank], f32::NEG_INFINITY);
                    } else {
                        assert_eq!(got_ids[rank], id, "problem {problem} pos {pos} rank {rank}");
                        assert_eq!(
                            got_lps[rank], want_lp,
                            "problem {problem} pos {pos} rank {rank}"
                        );
                    }
                }
            }
        }
        assert_eq!(m.tokens_generated, tokens_total);
    }
}

#[test]
fn the_fixtures_hold_short_rows() {
    // The padding branch above must be exercised: bs 8 problem 1 position 3 has 2 ranks only (rank j of
    // problem p at position i is token 1000 + 10p + 4i + j in make_fixtures.py).
    let run = read_reference(&run_folder(8), &ImportOptions::new("math500")).unwrap();
    let (ids, _) = run.problems[1].candidates.position(3);
    assert_eq!(
        ids[1..],
        [1000 + 10 + 3 * 4 + 1, PAD_TOKEN, PAD_TOKEN, PAD_TOKEN][..]
    );
    assert_eq!(run.problems[1].tokens, [20, 21, 22, 23]);
}

#[test]
fn report_over_two_imports_gives_the_hand_computed_div_index() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("runs");
    for bs in [8, 16] {
        import_reference(
            &run_folder(bs),
            &root.join(format!("bs{bs}")),
            &ImportOptions::new("math500"),
            &NotScored,
        )
        .unwrap();
    }
    // Greedy streams (make_fixtures.py):
    //   p0 bs8 [10 11 12 13 14 2]  bs16 [10 11 12 13 14 2]     identical
    //   p1 bs8 [20 21 22 23]       bs16 [20 21 99 23 24]       first difference at token 2
    //   p2 bs8 [30 31 32]          bs16 [35 31]                first difference at token 0
    //   p3 bs8 [40 41 42 43 44 45] bs16 [40 41 42 43 44]       bs16 stops after 5 tokens: token 5
    // Div_Index over the diverging samples: mean (2 + 0 + 5) / 3 = 7/3, median 2; 3 of 4 diverge.
    let (report, _) = generate(&root, &ReportOptions::default()).unwrap();
    assert_eq!(report.groups.len(), 1);
    let metrics = report.groups[0]
        .metrics()
        .expect("the two imports are compared");
    let div = metrics.divergence.value().unwrap();
    assert_eq!((div.n_samples, div.n_diverging), (4, 3));
    assert!((div.mean_index.value().unwrap() - 7.0 / 3.0).abs() < 1e-12);
    assert_eq!(div.median_index.value(), Some(&2.0));
}

#[test]
fn several_runs_in_one_folder_need_a_choice() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_run(8, tmp.path());
    for entry in std::fs::read_dir(run_folder(16)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let err = read_reference(&dir, &ImportOptions::new("math500")).unwrap_err();
    // Valid output with a choice to make: not called invalid, and the flags that choose are named.
    assert!(matches!(err, Error::ReferenceRunNotChosen { .. }), "{err}");
    assert!(
        err.to_string().ends_with(
            ": 2 runs; choose one with --batch-size and/or --dtype (the folder holds \
             qa_pairs_bfloat16_bs_8.jsonl, qa_pairs_bfloat16_bs_16.jsonl)"
        ),
        "{err}"
    );
    let mut opts = ImportOptions::new("math500");
    opts.batch_size = Some(32);
    let err = read_reference(&dir, &opts).unwrap_err();
    assert!(
        err.to_string()
            .contains(": no run matches batch size 32; choose one with --batch-size"),
        "{err}"
    );
    opts.batch_size = Some(16);
    let run = read_reference(&dir, &opts).unwrap();
    assert_eq!(run.batch_size, 16);
    assert_eq!(run.problems[1].tokens, [20, 21, 99, 23, 24]);
}

#[test]
fn a_folder_without_reference_output_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("notes.txt"), "hello").unwrap();
    let err = read_reference(tmp.path(), &ImportOptions::new("math500")).unwrap_err();
    assert!(matches!(err, Error::NotReferenceOutput { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&tmp.path().display().to_string()) && msg.contains("qa_pairs_"),
        "{msg}"
    );

    // Tensors without their answers file.
    let dir = copy_run(8, tmp.path());
    std::fs::remove_file(dir.join("qa_pairs_bfloat16_bs_8.jsonl")).unwrap();
    let err = read_reference(&dir, &ImportOptions::new("math500")).unwrap_err();
    assert!(err.to_string().contains(".pt files are there"), "{err}");
}

#[test]
fn a_missing_tensor_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_run(8, tmp.path());
    let gone = tensor(&dir, 2, "token_ids", 8);
    std::fs::remove_file(&gone).unwrap();
    let err = read_reference(&dir, &ImportOptions::new("math500")).unwrap_err();
    assert!(
        matches!(&err, Error::ImportMismatch { path, .. } if *path == gone),
        "{err}"
    );
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn a_truncated_tensor_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_run(8, tmp.path());
    let file = tensor(&dir, 1, "logprobs", 8);
    let bytes = std::fs::read(&file).unwrap();
    for keep in [bytes.len() / 2, 10, 0] {
        std::fs::write(&file, &bytes[..keep]).unwrap();
        let err = read_reference(&dir, &ImportOptions::new("math500")).unwrap_err();
        assert!(
            matches!(&err, Error::TorchFile { path, .. } if *path == file),
            "{keep} bytes: {err}"
        );
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}

#[test]
fn token_ids_and_logprobs_of_different_lengths_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_run(16, tmp.path());
    let file = tensor(&dir, 1, "logprobs", 16);
    std::fs::copy(fixtures().join("logprobs_2x5.pt"), &file).unwrap();
    let err = read_reference(&dir, &ImportOptions::new("math500")).unwrap_err();
    assert!(
        matches!(&err, Error::ImportMismatch { path, .. } if *path == file),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("[2, 5]") && msg.contains("[5, 5]"), "{msg}");
    assert!(msg.contains("problem_1_math500_token_ids_bs_16"), "{msg}");
}

#[test]
fn logprobs_where_token_ids_belong_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_run(8, tmp.path());
    let ids = tensor(&dir, 0, "token_ids", 8);
    std::fs::copy(tensor(&dir, 0, "logprobs", 8), &ids).unwrap();
    let err = read_reference(&dir, &ImportOptions::new("math500")).unwrap_err();
    assert!(
        matches!(&err, Error::TorchFile { path, .. } if *path == ids),
        "{err}"
    );
    assert!(err.to_string().contains("float32"), "{err}");
}

#[test]
fn answers_and_tensor_files_must_list_the_same_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_run(8, tmp.path());
    let qa = dir.join("qa_pairs_bfloat16_bs_8.jsonl");
    let text = std::fs::read_to_string(&qa).unwrap();
    let lines: Vec<&str> = text.lines().collect();

    // Tensors of problem 3 but no answer line for it.
    std::fs::write(&qa, lines[..3].join("\n") + "\n").unwrap();
    let err = read_reference(&dir, &ImportOptions::new("math500")).unwrap_err();
    assert!(
        matches!(&err, Error::ImportMismatch { path, .. } if path.file_name().unwrap().to_string_lossy().starts_with("problem_3_")),
        "{err}"
    );
    assert!(
        err.to_string().contains("qa_pairs_bfloat16_bs_8.jsonl"),
        "{err}"
    );

    // An answer line for a problem without tensors.
    let extra = lines[0].replacen("\"problem_id\": 0", "\"problem_id\": 9", 1);
    std::fs::write(&qa, format!("{text}{extra}\n")).unwrap();
    let err = read_reference(&dir, &ImportOptions::new("math500")).unwrap_err();
    assert!(
        matches!(&err, Error::ImportMismatch { path, .. } if *path == tensor(&dir, 9, "token_ids", 8)),
        "{err}"
    );
    assert!(err.to_string().contains("line 5"), "{err}");

    // The same problem twice.
    std::fs::write(&qa, format!("{text}{}\n", lines[1])).unwrap();
    let err = read_reference(&dir, &ImportOptions::new("math500")).unwrap_err();
    assert!(
        matches!(
            err,
            Error::BadRecord {
                field: "problem_id",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_grader_error_stops_the_import_and_options_override_the_folder_name() {
    let tmp = tempfile::tempdir().unwrap();
    let fail = |s: &ReferenceSample<'_>| -> Result<Scored, String> {
        Err(format!("no grader for problem {}", s.index))
    };
    let err = import_reference(
        &run_folder(8),
        &tmp.path().join("x"),
        &ImportOptions::new("math500"),
        &fail,
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::Scoring { .. }) && err.to_string().contains("problem 0"),
        "{err}"
    );
    assert!(!tmp.path().join("x").join("manifest.json").exists());

    let mut opts = ImportOptions::new("math500");
    opts.gpu_type = Some("H100".into());
    opts.gpus = Some(1);
    opts.model = Some("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B".into());
    let s = import_reference(&run_folder(8), &tmp.path().join("y"), &opts, &NotScored).unwrap();
    assert_eq!(
        (s.manifest.device.name.as_str(), s.manifest.gpu_count),
        ("H100", 1)
    );
    assert_eq!(
        s.manifest.model.id,
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    );
    assert_eq!(s.manifest.task.problem_ids, ["0", "1", "2", "3"]);
    assert!(s.manifest.warnings.iter().any(|w| w.contains("not scored")));
    // An existing run is not overwritten.
    let err =
        import_reference(&run_folder(8), &tmp.path().join("y"), &opts, &NotScored).unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
}

#[test]
fn inspect_shows_the_candidates_where_imported_runs_part() {
    let tmp = tempfile::tempdir().unwrap();
    for bs in [8, 16] {
        import_reference(
            &run_folder(bs),
            &tmp.path().join(format!("bs{bs}")),
            &ImportOptions::new("math500"),
            &grade,
        )
        .unwrap();
    }
    let a = LoadedRun::load(&tmp.path().join("bs8")).unwrap();
    let b = LoadedRun::load(&tmp.path().join("bs16")).unwrap();
    let cmp = reprolm_metrics::inspect::compare_runs(&a, &b, Some("math500/1")).unwrap();
    let s = &cmp.samples[0];
    assert_eq!(s.diverges_at, Some(2));
    assert_eq!((s.a.token, s.b.token), (Some(22), Some(99)));
    // Rank 1 at position 2: logprob -0.03125 * 3 - 0.002 (bs 8), and 0.015625 lower for bs 16 problem 1.
    let want_a = f64::from(-0.03125f32 * 3.0 - 0.002);
    assert!(
        (s.a.candidates[0].prob - want_a.exp()).abs() < 1e-6,
        "{:?}",
        s.a.candidates
    );
    assert!(s.b.candidates[0].prob < s.a.candidates[0].prob);
    assert_eq!(s.a.candidates.len(), 5);
    assert!(s.a.correct && s.b.correct);
}

#[test]
fn imports_compare_with_native_runs_only_when_the_model_files_are_named() {
    use reprolm_metrics::run_dir::{Durability, LogprobsRecord, Manifest, ResponseRecord, RunDir};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // A native run of the same model, task and policy, greedy with the same max_tokens.
    let mut native = Manifest::example();
    native.task.name = "math500".into();
    native.task.version = "1".into();
    native.task.problem_ids = (0..4).map(|i| format!("math500/{i}")).collect();
    native.policy.name = "bf16".into();
    native.max_tokens = 6;
    native.batch_size = 1;
    let mut run = RunDir::create(&root.join("native"), native.clone(), Durability::Flush).unwrap();
    for (i, stream) in [
        vec![10u32, 11, 12, 13, 14, 2],
        vec![20, 21, 22],
        vec![30],
        vec![40, 41],
    ]
    .into_iter()
    .enumerate()
    {
        let mut lp = LogprobsRecord::new(format!("math500/{i}"), 0, 5);
        for &t in &stream {
            lp.push_position(&[t], &[-0.1]);
        }
        let rec = ResponseRecord::new(
            format!("math500/{i}"),
            0,
            9,
            "x",
            stream,
            FinishReason::Stop,
        );
        run.append(&rec, &lp).unwrap();
    }
    let mut opts = ImportOptions::new("math500");
    opts.model = Some(native.model.id.clone());
    opts.task_version = Some("1".into());
    opts.dataset_sha256 = Some(native.task.dataset_sha256.clone());
    import_reference(&run_folder(8), &root.join("imported"), &opts, &grade).unwrap();
    let (report, _) = generate(root, &ReportOptions::default()).unwrap();
    let group = report
        .groups
        .iter()
        .find(|g| g.runs.len() == 2)
        .expect("one group of two");
    assert!(
        group.metrics().is_none(),
        "unknown model files must not be compared with known ones"
    );

    std::fs::remove_dir_all(root.join("imported")).unwrap();
    let mut named = native.model.clone();
    named.source = "models/example".into();
    opts.model_info = Some(named);
    import_reference(&run_folder(8), &root.join("imported"), &opts, &grade).unwrap();
    let (report, _) = generate(root, &ReportOptions::default()).unwrap();
    let group = report
        .groups
        .iter()
        .find(|g| g.runs.len() == 2)
        .expect("one group of two");
    let div = group
        .metrics()
        .expect("compared")
        .divergence
        .value()
        .unwrap();
    // bs 8 streams against the native ones: p0 identical, p1 [20 21 22 23] vs [20 21 22] at 3,
    // p2 [30 31 32] vs [30] at 1, p3 [40 .. 45] vs [40 41] at 2: mean 2.
    assert_eq!(div.n_diverging, 3);
    assert_eq!(div.mean_index.value(), Some(&2.0));
}

#[test]
fn a_folder_outside_an_experiment_name_needs_the_model_and_leaves_the_gpus_unknown() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("copied");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(run_folder(8)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let err = import_reference(
        &dir,
        &tmp.path().join("out"),
        &ImportOptions::new("math500"),
        &NotScored,
    )
    .unwrap_err();
    // Valid output whose model is not in the path: the error says so and names the flag.
    assert!(
        matches!(err, Error::ReferenceModelUnknown { .. }) && err.to_string().contains("--model"),
        "{err}"
    );
    assert!(
        !err.to_string().contains("not reference-code output"),
        "{err}"
    );

    let mut opts = ImportOptions::new("math500");
    opts.model = Some("org/tiny-model".into());
    opts.dtype = Some("bf16".into());
    let s = import_reference(&dir, &tmp.path().join("out"), &opts, &NotScored).unwrap();
    let m = &s.manifest;
    assert_eq!((m.gpu_count, m.device.name.as_str()), (0, "unknown"));
    let unknown = m.extra["reference"]["unknown_fields"].as_array().unwrap();
    for field in ["gpu_count", "device.name"] {
        assert!(unknown.iter().any(|f| f == field), "{field}: {unknown:?}");
    }
    assert!(m.warnings.iter().any(|w| w.contains("GPU count unknown")));
    assert_eq!(m.extra["reference"]["experiment"], serde_json::Value::Null);
}

/// `eval_layercast.py` writes the files `eval_main.py` does, under `outputs/vllm_layercast`: the folder is
/// what makes the run LayerCast (its `--dtype` is float32, which alone would read as full fp32).
#[test]
fn output_of_eval_layercast_is_imported_as_layercast() {
    let tmp = tempfile::tempdir().unwrap();
    for (script, policy) in [("vllm_layercast", "layercast"), ("vllm_main", "bf16")] {
        let dir = tmp
            .path()
            .join("outputs")
            .join(script)
            .join("baseline")
            .join(MODEL_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(run_folder(8)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        let out = tmp.path().join(format!("imported-{script}"));
        let s = import_reference(&dir, &out, &ImportOptions::new("math500"), &NotScored).unwrap();
        let m = &s.manifest;
        assert_eq!(m.policy.name, policy, "{script}");
        assert_eq!(m.model.id, MODEL_DIR, "{script}");
        assert_eq!(m.policy.table["vllm_dtype"], "bfloat16", "{script}");
        if policy == "layercast" {
            assert_eq!(m.policy.table["script"], "eval_layercast.py");
            assert!(
                m.warnings
                    .iter()
                    .any(|w| w.contains("policy layercast from the output folder (vllm_layercast")),
                "{:?}",
                m.warnings
            );
        } else {
            assert!(
                !m.policy.table.contains_key("script"),
                "{:?}",
                m.policy.table
            );
        }
    }
}
