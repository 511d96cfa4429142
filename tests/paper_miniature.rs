//! The paper's effect in miniature, on the near-tie model `models/arith-ties-3m`: under the
//! batch-dependent kernels (`--kernels heuristic`) bf16's greedy outputs change with the batch size
//! while fp32 and LayerCast hold still, and under the batch-invariant kernels bf16 does not move.
//! The CPU kernels give the same bits on every machine, so the shares asserted here are exact.

mod common;

use common::*;

#[test]
fn bf16_moves_with_the_batch_size_and_fp32_layercast_and_the_invariant_kernels_do_not() {
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/arith-ties-3m");
    let model = model.display().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("runs");
    let file = tmp.path().join("sweep.toml");
    // The miniature sweep's batch-dependent half (crates/cli/sweeps/paper-miniature.toml without
    // fp16); the invariant kernels' check is on bf16, the policy that moves, at the two ends.
    std::fs::write(
        &file,
        format!(
            "root = \"{}\"\n[base]\nmodel = \"{model}\"\ntask = \"arith\"\nlimit = 32\n\
             max_tokens = 600\nkernels = \"heuristic\"\n[axes]\n\
             policy = [\"bf16\", \"fp32\", \"layercast\"]\nbatch_size = [1, 4, 16]\n\
             batching = [\"static\"]\n",
            root.display()
        ),
    )
    .unwrap();
    reprolm(tmp.path(), &["sweep".into(), file.display().to_string()], 0);
    for batch in ["1", "16"] {
        let out = root
            .join(format!("invariant-bf16-bs{batch}"))
            .display()
            .to_string();
        let args = args(&[
            "run",
            "--model",
            &model,
            "--task",
            "arith",
            "--limit",
            "32",
            "--max-tokens",
            "600",
            "--policy",
            "bf16",
            "--batch-size",
            batch,
            "--batching",
            "static",
            "--out",
            &out,
        ]);
        reprolm(tmp.path(), &args, 0);
    }
    let report = [
        "report".to_string(),
        root.display().to_string(),
        "--split-by".into(),
        "kernels".into(),
        "--json-log".into(),
    ];
    let res = reprolm(tmp.path(), &report, 0);
    let stdout = String::from_utf8_lossy(&res.stdout);
    let last: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a final event")).unwrap();
    let share = |policy: &str, kernels: &str, runs: u64| -> f64 {
        let groups = last["groups"].as_array().expect("a list of groups");
        let g = groups
            .iter()
            .find(|g| g["policy"] == policy && g["kernels"] == kernels)
            .unwrap_or_else(|| panic!("no {policy} / {kernels} group in {last}"));
        assert_eq!(g["runs"].as_u64(), Some(runs), "{g}");
        g["divergence_share"].as_f64().expect("a divergence share")
    };
    let bf16 = share("bf16", "heuristic", 3);
    assert!(bf16 >= 0.2, "bf16 diverges in {bf16} of the samples");
    let fp32 = share("fp32", "heuristic", 3);
    assert!(fp32 <= bf16 / 5.0, "fp32 {fp32} against bf16 {bf16}");
    let layercast = share("layercast", "heuristic", 3);
    assert!(
        layercast <= 2.0 * fp32,
        "LayerCast {layercast} against fp32 {fp32}"
    );
    assert_eq!(
        share("bf16", "invariant", 2),
        0.0,
        "bf16 under the invariant kernels"
    );
}
