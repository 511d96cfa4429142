//! `reprolm bench`: speed rows for every policy and batch size, a logits dump another implementation
//! can read, and the invariance check, whose rows must all be identical on the CPU.

mod common;

use common::*;

fn json_file(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn speed_writes_one_row_per_policy_and_batch_size() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("speed.json");
    let model = fixture_model().display().to_string();
    let out_arg = out.display().to_string();
    let args = args(&[
        "bench",
        "speed",
        "--model",
        &model,
        "--policy",
        "fp32",
        "--policy",
        "bf16",
        "--batch-sizes",
        "1,3",
        "--prompt-tokens",
        "6",
        "--new-tokens",
        "3",
        "--json",
        &out_arg,
    ]);
    reprolm(tmp.path(), &args, 0);
    let rows = json_file(&out);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for (row, (policy, batch)) in
        rows.iter()
            .zip([("fp32", 1), ("fp32", 3), ("bf16", 1), ("bf16", 3)])
    {
        assert_eq!(row["policy"], policy);
        assert_eq!(row["batch"], batch);
        assert_eq!(row["new_tokens"], 3);
        assert!(
            row["decode_tokens_per_second"].as_f64().unwrap() > 0.0,
            "{row}"
        );
        // What ran is recorded with the times: no CUDA graphs on the CPU.
        assert_eq!(row["kernels"]["cuda_graphs"], "off", "{row}");
        assert_eq!(row["kernels"]["kernels"], "invariant", "{row}");
        assert!(row["graphs_captured"].is_null(), "{row}");
    }
}

/// `reprolm bench logits` on the fixture model (9 prompt tokens, 4 greedy ones, `extra` flags) into
/// `out`: its greedy.json, the logits' shape and their values.
fn bench_logits(
    cwd: &std::path::Path,
    out: &std::path::Path,
    extra: &[&str],
) -> (serde_json::Value, Vec<usize>, Vec<f32>) {
    let model = fixture_model().display().to_string();
    let mut argv = args(&[
        "bench",
        "logits",
        "--model",
        &model,
        "--prompt-tokens",
        "9",
        "--greedy-tokens",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    argv.extend(args(extra));
    reprolm(cwd, &argv, 0);
    let bytes = std::fs::read(out.join("logits.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let shape: Vec<usize> = header["logits"]["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let values = bytes[8 + header_len..]
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (json_file(&out.join("greedy.json")), shape, values)
}

#[test]
fn logits_dump_matches_the_greedy_continuation() {
    let tmp = tempfile::tempdir().unwrap();
    let (greedy, shape, values) = bench_logits(tmp.path(), &tmp.path().join("logits"), &[]);
    assert_eq!(greedy["prompt"].as_array().unwrap().len(), 9);
    assert_eq!(greedy["greedy_tokens"].as_array().unwrap().len(), 4);
    // The last prompt position's argmax is the first greedy token.
    assert_eq!(shape[0], 9);
    let last = &values[8 * shape[1]..9 * shape[1]];
    let argmax = (0..last.len()).fold(0, |b, i| if last[i] > last[b] { i } else { b });
    assert_eq!(greedy["greedy_tokens"][0], argmax);
}

/// `--tp 2` loads the model over two ranks (threads on the CPU) and gives tp 1's greedy tokens
/// and, in fp32, its logits to within float rounding (the standard mode's sums round per rank).
#[test]
fn logits_under_two_ranks_match_one_rank() {
    let tmp = tempfile::tempdir().unwrap();
    let dump = |tp: &str| {
        bench_logits(
            tmp.path(),
            &tmp.path().join(format!("tp{tp}")),
            &["--tp", tp],
        )
    };
    let (one, one_shape, one_logits) = dump("1");
    let (two, two_shape, two_logits) = dump("2");
    assert_eq!(one["greedy_tokens"], two["greedy_tokens"]);
    assert_eq!(one_shape, two_shape);
    let worst = one_logits
        .iter()
        .zip(&two_logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "tp 2 moves an fp32 logit by {worst}");
    // Two ranks really ran: their partial sums, rounded per rank, move some logit (4.2e-6 here;
    // the CPU kernels' order is fixed, so this is the same on every machine).
    assert!(worst > 0.0, "tp 2 gave tp 1's logits bit for bit");
}

/// Every layout, including a continuous batch whose KV cache is too small for it (so sequences
/// are preempted and recomputed), gives batch 1's sampled tokens and log-probability bits on the
/// CPU, in the fast and the deterministic kernels.
#[test]
fn invariance_rows_are_identical_on_the_cpu_even_when_sampling_and_preempting() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("inv.json");
    let model = fixture_model().display().to_string();
    let out_arg = out.display().to_string();
    let args = args(&[
        "bench",
        "invariance",
        "--model",
        &model,
        "--policy",
        "bf16",
        "--count",
        "5",
        "--prompt-tokens",
        "14",
        "--new-tokens",
        "6",
        "--batch-sizes",
        "2,5",
        "--temperature",
        "1.0",
        "--samples",
        "2",
        "--json",
        &out_arg,
    ]);
    reprolm(tmp.path(), &args, 0);
    let rows = json_file(&out);
    let rows = rows.as_array().unwrap();
    // Two kernels x (2 batch sizes x 2 orders + 2 chunked layouts + 2 continuous ones).
    assert_eq!(rows.len(), 16);
    for row in rows {
        assert_eq!(row["sequences"], 10, "{row}");
        assert_eq!(row["identical"], 10, "{row}");
        assert_eq!(row["max_top_logprob_difference"], 0.0, "{row}");
    }
    let tight: Vec<_> = rows
        .iter()
        .filter(|r| r["layout"].as_str().unwrap().contains("KV cache too small"))
        .collect();
    assert_eq!(tight.len(), 2);
    assert!(
        tight.iter().all(|r| r["preemptions"].as_u64().unwrap() > 0),
        "{tight:?}"
    );
}

/// `bench gemm` on the CPU: one row per policy and projection shape, every row count timed, the
/// layer's row 0 bitwise the same at every row count, and for f32 compute an error against float64
/// no larger than candle's own GEMM's by more than rounding would explain.
#[test]
fn gemm_reports_the_layer_invariant_on_every_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("gemm.json");
    let config = fixture_model().join("config.json").display().to_string();
    let out_arg = out.display().to_string();
    let args = args(&[
        "bench",
        "gemm",
        "--config",
        &config,
        "--policy",
        "bf16",
        "--policy",
        "layercast",
        "--rows",
        "1,5,8",
        "--min-ms",
        "1",
        "--json",
        &out_arg,
    ]);
    reprolm(tmp.path(), &args, 0);
    let rows = json_file(&out);
    let rows = rows.as_array().unwrap();
    // qkv, o, gate_up, down, lm_head for each policy.
    assert_eq!(rows.len(), 10, "{rows:?}");
    for row in rows {
        assert_eq!(row["rows"], serde_json::json!([1, 5, 8]), "{row}");
        assert_eq!(row["layer_invariant"], true, "{row}");
        assert!(row["layer_seconds"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s.as_f64().unwrap() > 0.0));
        if row["compute"] == "F32" {
            let (l, d) = (
                row["layer_error"].as_f64().unwrap(),
                row["default_error"].as_f64().unwrap(),
            );
            assert!(l <= 4.0 * d.max(1e-7), "{row}");
        } else {
            assert!(row["layer_error"].is_null(), "{row}");
        }
    }
}
