//! `reprolm inspect` on an fp32 and a bf16 run of the fixture model: the reported divergence
//! positions are the common-prefix lengths of the two token files, computed here independently.

mod common;

use common::*;

#[test]
fn reports_where_fp32_and_bf16_part() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("fp32"), tmp.path().join("bf16"));
    reprolm(
        tmp.path(),
        &run_args(&a, &["--limit", "16", "--policy", "fp32"]),
        0,
    );
    reprolm(
        tmp.path(),
        &run_args(&b, &["--limit", "16", "--policy", "bf16"]),
        0,
    );
    let (ta, tb) = (tokens(&a), tokens(&b));
    let mut expected = Vec::new();
    for ((id, s, x), (id_b, _, y)) in ta.iter().zip(&tb) {
        assert_eq!(id, id_b);
        let common = x.iter().zip(y).take_while(|(p, q)| p == q).count();
        if common < x.len().max(y.len()) {
            expected.push((format!("{id}#{s}"), common));
        }
    }
    assert!(
        !expected.is_empty(),
        "fp32 and bf16 runs of the fixture should diverge somewhere"
    );

    let args = vec![
        "inspect".to_string(),
        a.display().to_string(),
        b.display().to_string(),
    ];
    let out = String::from_utf8(reprolm(tmp.path(), &args, 0).stdout).unwrap();
    for (key, pos) in &expected {
        assert!(
            out.contains(&format!("{key}: diverges at token {pos} ")),
            "{key} at {pos}:\n{out}"
        );
    }
    assert!(
        out.contains(&format!("{} of 16 shared samples diverge", expected.len())),
        "{out}"
    );
    assert!(
        out.contains("top candidates at token") && out.contains("answers: fp32:"),
        "{out}"
    );
    // fp32 against bf16: the log-probabilities differ even before the streams part.
    assert!(
        out.contains(
            "over their shared tokens the top-k log-probabilities are bitwise identical in 0 of 16"
        ),
        "{out}"
    );
    // A run against itself: nothing diverges, every log-probability is the same.
    let same = vec![
        "inspect".to_string(),
        a.display().to_string(),
        a.display().to_string(),
    ];
    let out = String::from_utf8(reprolm(tmp.path(), &same, 0).stdout).unwrap();
    assert!(
        out.contains(
            "0 of 16 shared samples diverge; over their shared tokens the top-k log-probabilities are \
             bitwise identical in 16 of 16, largest top-1 log-probability difference 0\n"
        ),
        "{out}"
    );
    // --bitwise: one verdict; a run against itself is identical, fp32 against bf16 is not, and
    // the first difference is the first sample's first log-probability (they differ from there).
    let bitwise = |x: &std::path::Path, y: &std::path::Path, code| {
        let argv = [
            "inspect",
            "--bitwise",
            &x.display().to_string(),
            &y.display().to_string(),
        ]
        .map(String::from)
        .to_vec();
        String::from_utf8(reprolm(tmp.path(), &argv, code).stdout).unwrap()
    };
    let out = bitwise(&a, &a, 0);
    let total: usize = ta.iter().map(|(_, _, t)| t.len()).sum();
    assert!(
        out.contains(&format!("bitwise identical: 16 samples, {total} tokens"))
            && out.contains("the runs' recorded configurations are the same"),
        "{out}"
    );
    let out = bitwise(&a, &b, 1);
    let (first, _, _) = ta.iter().min_by_key(|(id, s, _)| (id.clone(), *s)).unwrap();
    assert!(
        out.contains(
            "not identical: 16 of 16 samples differ; first difference: logprobs.bin, sample "
        ) && out.contains(&format!(
            "sample {first}#0, position 0, candidate 0: A token "
        )) && out.contains("the runs' recorded configurations differ in policy.name (A fp32, B bf16); policy.table (A activations=f32"),
        "{out}"
    );
    // --all lists the identical samples with what their numbers did.
    let mut all = same.clone();
    all.push("--all".into());
    let out = String::from_utf8(reprolm(tmp.path(), &all, 0).stdout).unwrap();
    let (id, _, toks) = &ta[0];
    assert!(
        out.contains(&format!(
            "{id}#0: identical ({} tokens, log-probabilities bitwise identical)",
            toks.len()
        )),
        "{out}"
    );
    // The JSON summary carries the same: identical streams, and how far the numbers moved.
    let json_of = |mut argv: Vec<String>| -> serde_json::Value {
        argv.push("--json-log".into());
        let out = String::from_utf8(reprolm(tmp.path(), &argv, 0).stdout).unwrap();
        serde_json::from_str(out.lines().last().unwrap()).unwrap()
    };
    let ev = json_of(same.clone());
    assert_eq!(
        (
            &ev["event"],
            &ev["diverging"],
            &ev["logprobs_identical"],
            &ev["max_top1_logprob_delta"]
        ),
        (
            &serde_json::json!("inspected"),
            &serde_json::json!(0),
            &serde_json::json!(16),
            &serde_json::json!(0.0)
        ),
        "{ev}"
    );
    let ev = json_of(args.clone());
    assert_eq!(ev["logprobs_identical"], 0, "{ev}");
    assert!(ev["max_top1_logprob_delta"].as_f64().unwrap() > 0.0, "{ev}");

    // One problem, as JSON: the same position, and five candidates with probabilities on each side.
    let (key, pos) = &expected[0];
    let id = key.split('#').next().unwrap();
    let mut one = args.clone();
    one.extend([
        "--problem".to_string(),
        id.to_string(),
        "--json-log".to_string(),
    ]);
    let out = String::from_utf8(reprolm(tmp.path(), &one, 0).stdout).unwrap();
    let ev: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(ev["diverges_at"], *pos as u64);
    for side in ["a", "b"] {
        if ev[side]["token"].is_null() {
            continue; // that response ended at the divergence point
        }
        let cands = ev[side]["candidates"].as_array().unwrap();
        assert_eq!(cands.len(), 5, "{ev}");
        let p: f64 = cands.iter().map(|c| c["prob"].as_f64().unwrap()).sum();
        assert!(p > 0.0 && p <= 1.0 + 1e-6, "{ev}");
    }
}

/// `reprolm export`: one JSON line per sample, its tokens and, per token, the top-5 ids and
/// log-probabilities in descending order; greedy decoding chose the first of them every time.
#[test]
fn export_writes_each_sample_with_its_top_candidates() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("fp32");
    reprolm(
        tmp.path(),
        &run_args(&run, &["--limit", "3", "--policy", "fp32"]),
        0,
    );
    let args = vec!["export".to_string(), run.display().to_string()];
    reprolm(tmp.path(), &args, 0);
    let text = std::fs::read_to_string(run.join("export.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want = tokens(&run);
    assert_eq!(lines.len(), want.len());
    for (line, (id, s, ids)) in lines.iter().zip(&want) {
        assert_eq!(
            (&line["problem_id"], &line["sample_index"]),
            (&serde_json::json!(id), &serde_json::json!(s))
        );
        assert_eq!(line["token_ids"], serde_json::json!(ids));
        assert!(line["question"]
            .as_str()
            .is_some_and(|q| q.starts_with("What is ")));
        assert!(line["gold_answer"].is_string() && line["prompt"].is_string());
        let (top_ids, top_lps) = (
            line["top_ids"].as_array().unwrap(),
            line["top_logprobs"].as_array().unwrap(),
        );
        assert_eq!((top_ids.len(), top_lps.len()), (ids.len(), ids.len()));
        for (i, (ti, tl)) in top_ids.iter().zip(top_lps).enumerate() {
            assert_eq!(ti.as_array().unwrap().len(), 5);
            assert_eq!(ti[0], serde_json::json!(ids[i]), "greedy picks rank 0");
            let lp: Vec<f64> = tl
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert!(lp.windows(2).all(|w| w[0] >= w[1]), "{lp:?}");
        }
    }
    // `--format parquet` writes DIR/export.parquet whole (its rows are checked against these
    // lines in crates/metrics/tests/export.rs).
    let args = [&args[..], &["--format".to_string(), "parquet".to_string()]].concat();
    reprolm(tmp.path(), &args, 0);
    let bytes = std::fs::read(run.join("export.parquet")).unwrap();
    assert!(bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"));
    assert!(!run.join("export.parquet.tmp").exists());
}
