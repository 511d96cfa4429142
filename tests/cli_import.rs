//! `reprolm import-reference` on outputs written exactly as the paper's reference code writes them
//! (crates/metrics/tests/fixtures/reference, made by its make_fixtures.py with torch.save).

mod common;

use common::{args, reprolm};
use std::path::{Path, PathBuf};

fn reference(bs: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "../metrics/tests/fixtures/reference/2a100_math500_bf16_bs{bs}/org/tiny-model"
    ))
}

#[test]
fn imported_runs_are_reported_like_native_ones() {
    let tmp = tempfile::tempdir().unwrap();
    for bs in [8, 16] {
        let out = tmp.path().join(format!("root/bs{bs}"));
        let dir = reference(bs);
        let o = reprolm(
            tmp.path(),
            &args(&[
                "import-reference",
                dir.to_str().unwrap(),
                "--task",
                "math500",
                "--no-score",
                "--out",
                out.to_str().unwrap(),
            ]),
            0,
        );
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.contains("imported 4 problems"), "{stdout}");
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap())
                .unwrap();
        assert_eq!(manifest["batch_size"], bs);
        assert_eq!(manifest["gpu_count"], 2);
        // results.json as a run of reprolm's own writes it: ungraded (--no-score), 4 samples.
        let results: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap())
                .unwrap();
        assert_eq!(results["format_version"], 1, "{results}");
        assert_eq!(
            (results["n_samples"].as_u64(), results["problems"].as_u64()),
            (Some(4), Some(4)),
            "{results}"
        );
        assert!(results["mean_length"]["value"].is_number(), "{results}");
    }
    // Importing over an existing run is refused, naming the folder.
    let again = reprolm(
        tmp.path(),
        &args(&[
            "import-reference",
            reference(8).to_str().unwrap(),
            "--task",
            "math500",
            "--no-score",
            "--out",
            "root/bs8",
        ]),
        1,
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("bs8"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    reprolm(tmp.path(), &args(&["report", "root"]), 0);
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("root/report.json")).unwrap(),
    )
    .unwrap();
    let text = report.to_string();
    assert!(
        text.contains("bs8") && text.contains("bs16"),
        "both imports grouped: {text}"
    );
}

#[test]
fn a_folder_that_is_not_reference_output_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = reprolm(
        tmp.path(),
        &args(&[
            "import-reference",
            tmp.path().to_str().unwrap(),
            "--task",
            "math500",
            "--no-score",
            "--out",
            "x",
        ]),
        1,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(tmp.path().to_str().unwrap()), "{err}");
}

/// Valid output the flags must say more about is a usage error (status 2) naming the flag: the model
/// when the path does not tell it, the run when the folder holds several; so is an unknown `--task`.
#[test]
fn what_the_folder_cannot_tell_is_asked_for_by_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let copied = tmp.path().join("copied");
    std::fs::create_dir_all(&copied).unwrap();
    for bs in [8, 16] {
        for entry in std::fs::read_dir(reference(bs)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), copied.join(entry.file_name())).unwrap();
        }
    }
    let import = |extra: &[&str]| {
        let mut v = args(&["import-reference", "copied", "--no-score", "--out", "x"]);
        v.extend(args(&["--task", "math500"]));
        v.extend(args(extra));
        let out = reprolm(tmp.path(), &v, 2);
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = import(&[]);
    assert!(
        err.contains("importing copied: ")
            && err.contains("2 runs; choose one with --batch-size and/or --dtype")
            && !err.contains("not reference-code output"),
        "{err}"
    );
    let err = import(&["--batch-size", "8"]);
    assert!(
        err.contains("the model is not in the path")
            && err.contains("name it with --model")
            && !err.contains("not reference-code output"),
        "{err}"
    );
    let out = reprolm(
        tmp.path(),
        &args(&[
            "import-reference",
            "copied",
            "--task",
            "nosuch",
            "--batch-size",
            "8",
            "--model",
            "org/tiny-model",
            "--out",
            "x",
        ]),
        2,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--task: unknown task `nosuch`"), "{err}");
    assert!(!tmp.path().join("x").exists());
}
