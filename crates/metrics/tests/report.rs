//! The whole report over run directories with known token streams: metrics checked against numbers
//! worked out here, and every output file checked for content and form.

mod common;

use std::path::Path;

use common::{sample, stored, write_run, RunSpec, Sample};
use reprolm_metrics::report::{generate, report, GroupReport, ReportOptions};
use reprolm_metrics::run_dir::SamplingParams;

fn sstd(xs: &[f64]) -> f64 {
    let m = xs.iter().sum::<f64>() / xs.len() as f64;
    (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Top-1 probability of run `r` at position `j`: runs differ a little at every position.
fn prob(r: usize, j: usize) -> f64 {
    0.6 + 0.001 * r as f64 * (j + 1) as f64
}

fn probs(r: usize, n: usize) -> Vec<f64> {
    (0..n).map(|j| prob(r, j)).collect()
}

/// bf16 greedy: three batch sizes.
/// p1 identical in all (4 tokens, correct); p2 identical in bs1/bs4 (5 tokens, correct) but bs8 diverges
/// at 2 (4 tokens, wrong, truncated); p3 empty in all (wrong).
fn bf16_runs(root: &Path) {
    for (r, bs) in [1u32, 4, 8].into_iter().enumerate() {
        let p2 = if bs == 8 {
            Sample {
                truncated: true,
                ..sample("p2", &[5, 6, 0, 0], &probs(r, 4), false)
            }
        } else {
            sample("p2", &[5, 6, 7, 8, 9], &probs(r, 5), true)
        };
        let samples = [
            sample("p1", &[1, 2, 3, 4], &probs(r, 4), true),
            p2,
            sample("p3", &[], &[], false),
        ];
        write_run(
            &root.join(format!("bf16-bs{bs}")),
            &RunSpec::greedy("bf16", bs),
            3,
            &samples,
        );
    }
}

fn build_root(root: &Path) {
    bf16_runs(root);
    // fp32: identical outputs; bs8 unfinished (p2 missing) with a torn logprobs tail.
    let fp32 = |with_p2: bool| {
        let mut v = vec![sample("p1", &[1, 2, 3, 4], &probs(0, 4), true)];
        if with_p2 {
            v.push(sample("p2", &[5, 6, 7, 8, 9], &probs(0, 5), true));
        }
        v.push(sample("p3", &[7, 7], &probs(0, 2), false));
        v
    };
    write_run(
        &root.join("fp32-bs1"),
        &RunSpec::greedy("fp32", 1),
        3,
        &fp32(true),
    );
    let unfinished = RunSpec {
        finished: false,
        ..RunSpec::greedy("fp32", 8)
    };
    write_run(&root.join("fp32-bs8"), &unfinished, 3, &fp32(false));
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(root.join("fp32-bs8/logprobs.bin"))
            .unwrap();
        f.write_all(&[40, 0, 0, 0, 1, 2, 3]).unwrap();
    }
    // fp16: a single run.
    write_run(
        &root.join("fp16-bs1"),
        &RunSpec::greedy("fp16", 1),
        3,
        &fp32(true),
    );
    // layercast: two task versions -> refused.
    write_run(
        &root.join("lc-bs1"),
        &RunSpec::greedy("layercast", 1),
        3,
        &fp32(true),
    );
    write_run(
        &root.join("lc-bs8"),
        &RunSpec {
            task_version: "2",
            ..RunSpec::greedy("layercast", 8)
        },
        3,
        &fp32(true),
    );
    // Sampled: n = 2 samples of 2 problems, two batch sizes.
    let sampled = SamplingParams {
        temperature: 0.7,
        top_p: 0.95,
        top_k: 0,
        min_p: 0.0,
        n_samples: 2,
    };
    for (bs, correct) in [
        (1u32, [true, false, true, true]),
        (4, [false, false, true, false]),
    ] {
        let mut v = Vec::new();
        for (i, (p, idx)) in [("q1", 0), ("q1", 1), ("q2", 0), ("q2", 1)]
            .into_iter()
            .enumerate()
        {
            v.push(Sample {
                index: idx,
                ..sample(p, &[3, 1, 4], &[0.5, 0.5, 0.5], correct[i])
            });
        }
        let spec = RunSpec {
            sampling: sampled.clone(),
            ..RunSpec::greedy("bf16", bs)
        };
        write_run(&root.join("sampled").join(format!("bs{bs}")), &spec, 2, &v);
    }
    // A run directory from the future: skipped with its reason.
    let future = root.join("future");
    std::fs::create_dir_all(&future).unwrap();
    std::fs::write(future.join("manifest.json"), r#"{"format_version": 9}"#).unwrap();
}

fn find<'a>(groups: &'a [GroupReport], policy: &str, sampled: bool) -> &'a GroupReport {
    groups
        .iter()
        .find(|g| g.policy == policy && g.sampled == sampled)
        .unwrap()
}

fn json_num(v: &serde_json::Value, path: &[&str]) -> f64 {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_f64()
        .unwrap_or_else(|| panic!("{path:?} is not a number: {v}"))
}

#[test]
fn full_report_over_known_runs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("runs");
    build_root(&root);
    let out = dir.path().join("out");
    let opts = ReportOptions {
        out_dir: Some(out.clone()),
        ..Default::default()
    };
    let (report, files) = generate(&root, &opts).unwrap();

    // Grouping: bf16 greedy, bf16 sampled, fp16, fp32, layercast; the future run is skipped.
    assert_eq!(report.groups.len(), 5);
    assert_eq!(report.skipped.len(), 1);
    assert!(
        report.skipped[0]
            .reason
            .contains("format_version 9 is not supported"),
        "{:?}",
        report.skipped
    );

    // bf16 greedy, worked out by hand.
    let g = find(&report.groups, "bf16", false);
    let m = g.metrics().unwrap();
    assert_eq!((m.n_runs, m.n_samples), (3, 3));
    assert_eq!(g.varying, ["batch_size"]);
    assert!(
        g.why
            .contains("differ only in runtime configuration: batch_size"),
        "{}",
        g.why
    );
    let want_std_acc = sstd(&[2.0 / 3.0, 2.0 / 3.0, 1.0 / 3.0]);
    assert!((m.std_acc.value().unwrap() - want_std_acc).abs() < 1e-12);
    let want_len = mean(&[0.0, sstd(&[5.0, 5.0, 4.0]), 0.0]);
    assert!((m.avg_std_output_length.value().unwrap() - want_len).abs() < 1e-12);
    let d = m.divergence.value().unwrap();
    assert_eq!((d.n_diverging, d.n_samples), (1, 3));
    assert_eq!(d.mean_index.value(), Some(&2.0));
    // Which sample moved: p2 diverges at token 2 and is wrong only at batch 8.
    let moved = |list: &[reprolm_metrics::metrics::SampleOutcomes]| -> Vec<(String, Option<usize>, Vec<bool>)> {
        list.iter()
            .map(|s| (s.problem_id.clone(), s.first_divergence, s.correct.clone()))
            .collect()
    };
    let p2 = vec![("p2".to_string(), Some(2), vec![true, true, false])];
    assert_eq!(moved(&m.diverged), p2);
    assert_eq!(moved(&m.flipped), p2);
    assert_eq!(m.diverged[0].lengths, [5, 5, 4]);
    // Top-1: p1 over 4 positions, p2 over 2 (before divergence), p3 none.
    let pos_std = |j: usize| sstd(&[stored(prob(0, j)), stored(prob(1, j)), stored(prob(2, j))]);
    let p1 = mean(&(0..4).map(pos_std).collect::<Vec<_>>());
    let p2 = mean(&(0..2).map(pos_std).collect::<Vec<_>>());
    let want_top1 = (p1 + p2) / 2.0;
    assert!(
        (m.avg_std_top1_prob.value().unwrap() - want_top1).abs() < 1e-12,
        "{:?} vs {want_top1}",
        m.avg_std_top1_prob
    );
    let bs8 = g
        .runs
        .iter()
        .find(|r| r.batch_size == 8)
        .unwrap()
        .stats
        .as_ref()
        .unwrap();
    assert!((bs8.share_truncated.value().unwrap() - 1.0 / 3.0).abs() < 1e-15);
    assert_eq!(bs8.mean_length.value(), Some(&(8.0 / 3.0)));
    assert_eq!(
        g.runs.iter().map(|r| r.label.as_str()).collect::<Vec<_>>(),
        ["bs=1", "bs=4", "bs=8"]
    );

    // fp32: unfinished run -> only p1 and p3 compared, all identical.
    let g32 = find(&report.groups, "fp32", false);
    let m32 = g32.metrics().unwrap();
    assert_eq!(m32.n_samples, 2);
    assert_eq!(m32.std_acc.value(), Some(&0.0));
    assert_eq!(m32.divergence.value().unwrap().n_diverging, 0);
    assert!(m32.diverged.is_empty() && m32.flipped.is_empty());
    assert_eq!(m32.avg_std_top1_prob.value(), Some(&0.0));
    let notes = g32.notes.join("\n");
    assert!(
        notes.contains("fp32-bs8 is unfinished: 2 of 3 samples done"),
        "{notes}"
    );
    assert!(
        notes.contains("fp32-bs1: 1 sample(s) not present in every run left out"),
        "{notes}"
    );
    assert!(
        notes.contains("metrics use the 2 sample(s) present in all runs"),
        "{notes}"
    );
    assert!(
        notes.contains("logprobs.bin ends in a partial record"),
        "{notes}"
    );

    // fp16: single run -> n/a with the reason.
    let m16 = find(&report.groups, "fp16", false).metrics().unwrap();
    assert!(m16.std_acc.value().is_none());

    // layercast: refused, naming the field and the directories.
    let lc = find(&report.groups, "layercast", false);
    let reason = match &lc.outcome {
        reprolm_metrics::report::GroupOutcome::Refused(r) => r.clone(),
        other => panic!("{other:?}"),
    };
    assert!(
        reason.contains("task.version differs (1 in lc-bs1; 2 in lc-bs8)"),
        "{reason}"
    );
    // Its runs still show their own figures, over their own samples, and the report says so.
    for r in &lc.runs {
        let stats = r
            .stats
            .as_ref()
            .expect("a refused group's run keeps its figures");
        assert_eq!(stats.n_samples, r.n_completed, "{}", r.path.display());
        assert!(stats.accuracy.value().is_some());
    }
    assert!(lc
        .notes
        .iter()
        .any(|n| n.contains("each run's figures use its own samples")));

    // Sampled: bs1 q1 1/2, q2 2/2 ; bs4 q1 0/2, q2 1/2.
    // pass@1: bs1 (0.5 + 1)/2 = 0.75, bs4 (0 + 0.5)/2 = 0.25.
    // pass@2 (n=2): c=1 -> 1, c=2 -> 1, c=0 -> 0: bs1 1, bs4 (0 + 1)/2 = 0.5.
    let ms = find(&report.groups, "bf16", true).metrics().unwrap();
    assert_eq!(ms.pass_at_k.len(), 2);
    assert!((ms.pass_at_k[0].mean - 0.5).abs() < 1e-15);
    assert!((ms.pass_at_k[0].std.value().unwrap() - sstd(&[0.75, 0.25])).abs() < 1e-15);
    assert!((ms.pass_at_k[1].mean - 0.75).abs() < 1e-15);
    assert!((ms.pass_at_k[1].std.value().unwrap() - sstd(&[1.0, 0.5])).abs() < 1e-15);

    // report.json carries the same numbers.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files.json).unwrap()).unwrap();
    assert_eq!(json["format_version"], 1);
    let jg = json["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["policy"] == "bf16" && g["sampled"] == false)
        .unwrap();
    let jm = &jg["outcome"]["compared"];
    assert!((json_num(jm, &["std_acc", "value"]) - want_std_acc).abs() < 1e-12);
    assert!((json_num(jm, &["avg_std_top1_prob", "value"]) - want_top1).abs() < 1e-12);
    assert_eq!(jm["divergence"]["value"]["n_diverging"], 1);
    assert_eq!(jm["flipped"][0]["problem_id"], "p2");
    assert_eq!(jm["diverged"][0]["first_divergence"], 2);
    let j16 = json["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["policy"] == "fp16")
        .unwrap();
    assert_eq!(
        j16["outcome"]["compared"]["std_acc"]["na"],
        "needs at least 2 runs; this group has 1"
    );

    // report.csv: one row per group with plain numbers.
    let mut rdr = csv::Reader::from_path(&files.csv_groups).unwrap();
    let headers = rdr.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 5);
    let bf = rows
        .iter()
        .find(|r| &r[col("policy")] == "bf16" && r[col("decoding")].starts_with("greedy"))
        .unwrap();
    assert_eq!(&bf[col("status")], "compared");
    assert!((bf[col("std_acc")].parse::<f64>().unwrap() - want_std_acc).abs() < 1e-12);
    assert!((bf[col("avg_std_output_length")].parse::<f64>().unwrap() - want_len).abs() < 1e-12);
    assert_eq!(&bf[col("div_index_mean")], "2");
    let fp16 = rows.iter().find(|r| &r[col("policy")] == "fp16").unwrap();
    assert_eq!(&fp16[col("std_acc")], "");
    assert!(
        fp16[col("notes")].contains("Std@Acc: needs at least 2 runs"),
        "{:?}",
        fp16
    );
    let lcr = rows
        .iter()
        .find(|r| &r[col("policy")] == "layercast")
        .unwrap();
    assert_eq!(&lcr[col("status")], "refused");
    let runs_csv = std::fs::read_to_string(&files.csv_runs).unwrap();
    assert_eq!(runs_csv.lines().count(), 1 + 3 + 2 + 1 + 2 + 2);
    assert!(runs_csv.contains("1:0.75;2:1"), "{runs_csv}");

    // report.md: tables, grouping reasons, n/a reasons, refusals, plots, skipped runs.
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    // The report says what its columns mean.
    for term in [
        "**Div %**",
        "**Div_Index**",
        "**cut %**",
        "**Avg_Std@top1**",
    ] {
        assert!(md.contains(term), "no definition of {term}");
    }
    for needle in [
        "## test/model — greedy, max_tokens 16",
        "Grouped because: 3 run(s) share model `test/model`, task `arith` (version 1",
        "Std@Acc: n/a, needs at least 2 runs; this group has 1",
        "**not compared: task.version differs",
        "fp32-bs8 is unfinished",
        "pass@k (unbiased estimator, Chen et al. 2021)",
        "![accuracy_test_model_arith_greedy_max_tokens_16](plots/accuracy_test_model_arith_greedy_max_tokens_16.svg)",
        "## Skipped directories",
        "33.33 [",
        "Flipped correctness: 1 of 3 sample(s), graded correct in some runs and wrong in others (correct per run, in the order bs=1 · bs=4 · bs=8):",
        "- `p2` #0: ✓✓✗ first differs at token 2; lengths 5 / 5 / 4",
        "Diverged: 1 of 3 sample(s), tokens not the same in every run",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle:?}:\n{md}");
    }
    let row: Vec<&str> = md
        .lines()
        .find(|l| l.starts_with("| arith v1") && l.contains("| bf16 "))
        .unwrap()
        .split('|')
        .map(str::trim)
        .collect();
    let want_row = [
        "3".to_string(),
        "3".to_string(),
        "55.56".to_string(),
        format!("{:.2}", want_std_acc * 100.0),
        format!("{want_len:.2}"),
        "33.3 (1/3)".to_string(),
        "2.0".to_string(),
        "2.0".to_string(),
        format!("{want_top1:.2e}"),
    ];
    assert_eq!(row[3..12], want_row, "{md}");
    let term = report.terminal_table();
    assert!(term.contains("Avg_Std@top1"), "{term}");
    assert!(term.contains(&format!("{want_top1:.2e}")), "{term}");

    // Plots: 4 per (model, task, decoding) with a compared group, each well-formed SVG with content.
    assert_eq!(files.plots.len(), 8);
    for p in &files.plots {
        let text = std::fs::read_to_string(p).unwrap();
        let doc =
            roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(
            doc.root_element().tag_name().name(),
            "svg",
            "{}",
            p.display()
        );
        let drawn = doc
            .descendants()
            .filter(|n| matches!(n.tag_name().name(), "polyline" | "rect" | "circle" | "line"))
            .count();
        assert!(drawn > 5, "{} has {drawn} drawn elements", p.display());
        assert!(
            doc.descendants()
                .any(|n| n.text().is_some_and(|t| t.contains("test/model"))),
            "{}",
            p.display()
        );
    }
    let acc = files
        .plots
        .iter()
        .find(|p| {
            p.to_string_lossy()
                .contains("accuracy_test_model_arith_greedy")
        })
        .unwrap();
    let text = std::fs::read_to_string(acc).unwrap();
    for label in ["bs=1", "bs=4", "bs=8", "bf16", "fp32", "fp16"] {
        assert!(text.contains(label), "accuracy plot lacks {label}");
    }
}

#[test]
fn a_root_without_runs_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = generate(dir.path(), &ReportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no run directories found"), "{err}");
}

#[test]
fn a_single_run_root_reports_na() {
    let dir = tempfile::tempdir().unwrap();
    bf16_runs(dir.path());
    let run = dir.path().join("bf16-bs1");
    let (report, files) = generate(&run, &ReportOptions::default()).unwrap();
    assert_eq!(report.groups.len(), 1);
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    assert!(
        md.contains("Div_Index: n/a, needs at least 2 runs; this group has 1"),
        "{md}"
    );
    // Plots exist and say why they are empty.
    let div = files
        .plots
        .iter()
        .find(|p| p.to_string_lossy().contains("divergence_"))
        .unwrap();
    let text = std::fs::read_to_string(div).unwrap();
    roxmltree::Document::parse(&text).unwrap();
    assert!(text.contains("no sample diverges"), "{text}");
}

/// A sweep over batch sizes with the fast and the deterministic kernels: the fast runs disagree at
/// batch 8, the deterministic ones never. Grouped together the modes blur into one divergence
/// figure; split by `deterministic`, each mode is measured across batch sizes on its own.
#[test]
fn split_by_deterministic_measures_each_kernel_mode_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("runs");
    for deterministic in [false, true] {
        for (r, bs) in [1u32, 8].into_iter().enumerate() {
            let diverges = !deterministic && bs == 8;
            // Deterministic runs carry identical probabilities; fast ones differ a little.
            let run = if deterministic { 0 } else { r };
            let p2: &[u32] = if diverges { &[5, 6, 0] } else { &[5, 6, 7] };
            let samples = [
                sample("p1", &[1, 2, 3, 4], &probs(run, 4), true),
                sample("p2", p2, &probs(run, 3), !diverges),
            ];
            let spec = RunSpec {
                deterministic,
                ..RunSpec::greedy("bf16", bs)
            };
            write_run(
                &root.join(format!("bf16-bs{bs}-det{deterministic}")),
                &spec,
                2,
                &samples,
            );
        }
    }

    let together = report(&root, &ReportOptions::default()).unwrap();
    assert_eq!(together.groups.len(), 1);
    let g = &together.groups[0];
    assert_eq!(g.varying, ["batch_size", "deterministic"]);
    assert_eq!(g.policy_label(), "bf16");
    let d = g.metrics().unwrap().divergence.value().unwrap();
    assert_eq!((d.n_diverging, d.n_samples), (1, 2));

    let opts = ReportOptions {
        split_by: vec!["deterministic".into()],
        ..Default::default()
    };
    let split = report(&root, &opts).unwrap();
    assert_eq!(split.groups.len(), 2);
    for g in &split.groups {
        let det = g.split == [("deterministic".to_string(), "true".to_string())];
        assert!(
            det || g.split == [("deterministic".to_string(), "false".to_string())],
            "{:?}",
            g.split
        );
        assert_eq!(g.varying, ["batch_size"]);
        assert!(g.policy_label().starts_with("bf16 [deterministic="));
        assert!(g.why.contains("deterministic = "), "{}", g.why);
        let m = g.metrics().unwrap();
        let d = m.divergence.value().unwrap();
        let acc = *m.std_acc.value().unwrap();
        if det {
            assert_eq!((d.n_diverging, d.n_samples), (0, 2));
            assert_eq!(acc, 0.0);
            assert_eq!(*m.avg_std_top1_prob.value().unwrap(), 0.0);
        } else {
            assert_eq!((d.n_diverging, d.n_samples), (1, 2));
            assert!(acc > 0.0);
        }
    }
    // The split shows in the markdown tables.
    assert!(split.to_markdown(&[]).contains("bf16 [deterministic=true]"));

    let bad = ReportOptions {
        split_by: vec!["batch".into()],
        ..Default::default()
    };
    let err = report(&root, &bad).unwrap_err().to_string();
    assert!(
        err.contains("`batch`") && err.contains("batch_size") && err.contains("deterministic"),
        "{err}"
    );
}

/// Issue #26: one run of a group on another dataset used to refuse the whole group; the others are
/// compared and the report names the run it left out and why.
#[test]
fn a_run_on_other_data_is_left_out_and_the_rest_compared() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("runs");
    for bs in [1u32, 4, 8] {
        let p2 = if bs == 4 {
            sample("p2", &[5, 9], &[0.9, 0.5], false)
        } else {
            sample("p2", &[5, 6, 7], &[0.9, 0.8, 0.7], true)
        };
        let path = root.join(format!("fp32-bs{bs}"));
        write_run(
            &path,
            &RunSpec::greedy("fp32", bs),
            2,
            &[sample("p1", &[1, 2], &[0.9, 0.8], true), p2],
        );
        if bs == 8 {
            let file = path.join("manifest.json");
            let mut m: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            m["task"]["dataset_sha256"] = "f".repeat(64).into();
            std::fs::write(&file, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
        }
    }
    let (r, files) = generate(&root, &ReportOptions::default()).unwrap();
    let g = &r.groups[0];
    let m = g.metrics().expect("bs1 and bs4 share their data: compared");
    assert_eq!((m.n_runs, m.n_samples), (2, 2));
    assert_eq!(m.flipped.len(), 1);
    let left: Vec<_> = g
        .runs
        .iter()
        .filter_map(|x| x.left_out.as_deref())
        .collect();
    assert_eq!(left.len(), 1);
    assert!(
        left[0].starts_with("task.dataset_sha256 differs (")
            && left[0].contains(" in fp32-bs1, fp32-bs4; ffffffffffffffff… in fp32-bs8)"),
        "{}",
        left[0]
    );
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    for needle in [
        "Grouped because: 2 run(s) share model `test/model`",
        "| fp32-bs8 | bs=8 (left out) |",
        "- fp32-bs8 left out of the comparison: task.dataset_sha256 differs (",
        "(correct per run, in the order bs=1 · bs=4):",
        "- `p2` #0: ✓✗ first differs at token 1",
    ] {
        assert!(md.contains(needle), "no {needle:?} in\n{md}");
    }
    let term = r.terminal_table();
    assert!(
        term.contains("  arith v1  fp32       2        2")
            && term.contains("note: fp32-bs8 left out of the comparison"),
        "{term}"
    );
}

#[test]
fn runs_of_one_policy_name_with_different_tables_are_not_compared() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("runs");
    for (name, bs) in [("a", 1), ("b", 4)] {
        let path = root.join(name);
        write_run(
            &path,
            &RunSpec::greedy("mine", bs),
            1,
            &[sample("p1", &[1, 2], &[0.9, 0.8], true)],
        );
        if name == "b" {
            // The same name over another table (a run made before names were tied to tables).
            let file = path.join("manifest.json");
            let mut m: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            m["policy"]["table"]["kv_cache"] = "bf16".into();
            std::fs::write(&file, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
        }
    }
    let r = reprolm_metrics::report::report(&root, &ReportOptions::default()).unwrap();
    assert_eq!(r.groups.len(), 1);
    let g = &r.groups[0];
    assert!(g.metrics().is_none(), "different numerics pooled");
    let notes = match &g.outcome {
        reprolm_metrics::report::GroupOutcome::Refused(why) => why.clone(),
        _ => unreachable!(),
    };
    assert!(
        notes.contains("policy.table differs") && notes.contains("kv_cache=bf16"),
        "{notes}"
    );
    // Each run still shows its own figures.
    assert!(g.runs.iter().all(|run| run.stats.is_some()));
}

#[test]
fn the_top1_plot_has_a_log_axis_on_request_and_when_values_span_decades() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("runs");
    build_root(&root);
    let svg = |axis: reprolm_metrics::report::Top1Axis| {
        let out = dir.path().join(format!("out-{axis:?}"));
        let opts = ReportOptions {
            out_dir: Some(out.clone()),
            top1_axis: axis,
            ..Default::default()
        };
        generate(&root, &opts).unwrap();
        std::fs::read_to_string(
            out.join("plots/top1_std_test_model_arith_greedy_max_tokens_16.svg"),
        )
        .unwrap()
    };
    use reprolm_metrics::report::Top1Axis;
    let log = svg(Top1Axis::Log);
    assert!(log.contains("log scale") && log.contains("1e"), "log axis");
    // fp32's positions are exact zeros: left out of a log axis, and the caption says so.
    assert!(log.contains("exact zeros not drawn"));
    let linear = svg(Top1Axis::Linear);
    assert!(!linear.contains("log scale"));
}

/// Every other policy's run is set beside the fp32 run of its configuration, over the samples both
/// hold; a pair whose data differ is left out with the reason, and a configuration fp32 did not run
/// has no entry.
#[test]
fn each_run_is_set_beside_the_fp32_run_of_its_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("runs");
    build_root(&root);
    let r = report(&root, &ReportOptions::default()).unwrap();
    let v = &r.against_reference;
    assert_eq!(v.reference, "fp32");
    let rows: Vec<(String, String, usize, usize, Option<f64>)> = v
        .comparisons
        .iter()
        .map(|c| {
            (
                c.policy.clone(),
                c.configuration.clone(),
                c.samples,
                c.differing,
                c.mean_first_difference,
            )
        })
        .collect();
    // bf16 at batch 1: p3 is empty where fp32 wrote two tokens (differs at 0); at batch 8 the
    // unfinished fp32 run lacks p2, so two samples are shared. bf16 at batch 4 has no fp32 run.
    assert_eq!(
        rows,
        [
            ("bf16".into(), "bs=1".into(), 3, 1, Some(0.0)),
            ("bf16".into(), "bs=8".into(), 2, 1, Some(0.0)),
            ("fp16".into(), "bs=1".into(), 3, 0, None),
            ("layercast".into(), "bs=1".into(), 3, 0, None),
        ]
    );
    let bs8 = &v.comparisons[1];
    assert_eq!(
        (bs8.accuracy, bs8.reference_accuracy),
        (Some(0.5), Some(0.5))
    );
    assert_eq!((bs8.correct_to_wrong, bs8.wrong_to_correct), (0, 0));
    assert!(
        bs8.reference_run.ends_with("fp32-bs8"),
        "{:?}",
        bs8.reference_run
    );
    // The layercast run of another task version is not set beside fp32's.
    assert_eq!(v.notes.len(), 1, "{:?}", v.notes);
    assert!(
        v.notes[0].starts_with("lc-bs8 against fp32-bs8: not compared, task.version differs"),
        "{}",
        v.notes[0]
    );
    let md = r.to_markdown(&[]);
    assert!(md.contains("## Against fp32"), "{md}");
    assert!(md.contains("| differ from fp32 % |"), "{md}");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["against_reference"]["comparisons"][1]["samples"], 2);

    // Another reference: bf16. fp32's batch-8 run is set beside bf16's, and a flip is counted
    // when the reference got an answer right that the run got wrong.
    let r = report(
        &root,
        &ReportOptions {
            reference: Some("bf16".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let fp32_bs8 = r
        .against_reference
        .comparisons
        .iter()
        .find(|c| c.policy == "fp32" && c.configuration == "bs=8")
        .unwrap();
    assert_eq!((fp32_bs8.samples, fp32_bs8.differing), (2, 1));
    let fp16 = r
        .against_reference
        .comparisons
        .iter()
        .find(|c| c.policy == "fp16")
        .unwrap();
    // fp16 wrote p3 as [7, 7] (wrong) where bf16 wrote nothing (wrong): no flip, one difference.
    assert_eq!((fp16.differing, fp16.correct_to_wrong), (1, 0));
}

/// A reproducible policy's top-1 std is ~1e-8: on a linear axis the plot spans its values (not a
/// fixed 0..1e-4, where they lie flat on zero) and labels them in scientific notation.
#[test]
fn tiny_top1_stds_fill_a_linear_axis() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("runs");
    for (name, bs, shift) in [("a", 1, 0.0), ("b", 4, 1e-7)] {
        write_run(
            &root.join(name),
            &RunSpec::greedy("fp32", bs),
            1,
            &[sample(
                "p1",
                &[1, 2, 3],
                &[0.9 + shift, 0.8 + shift, 0.7],
                true,
            )],
        );
    }
    let out = dir.path().join("out");
    let opts = ReportOptions {
        out_dir: Some(out.clone()),
        top1_axis: reprolm_metrics::report::Top1Axis::Linear,
        ..Default::default()
    };
    generate(&root, &opts).unwrap();
    let svg = std::fs::read_to_string(
        out.join("plots/top1_std_test_model_arith_greedy_max_tokens_16.svg"),
    )
    .unwrap();
    let labels: Vec<&str> = svg
        .split("</text>")
        .filter_map(|t| t.rsplit_once('>').map(|(_, l)| l.trim()))
        .collect();
    // The std is about 7e-8 (7e-4 in the plot's unit of 1e-4): the ticks reach it, in scientific
    // notation, where they used to run 0.0 to 1.0.
    let ticks: Vec<f64> = labels
        .iter()
        .filter(|l| l.contains("e-"))
        .filter_map(|l| l.parse().ok())
        .collect();
    assert!(ticks.len() >= 3, "{labels:?}");
    let top = ticks.iter().copied().fold(0.0, f64::max);
    assert!((1e-4..1e-3).contains(&top), "{labels:?}");
    assert!(!labels.contains(&"0.5"), "{labels:?}");
}
