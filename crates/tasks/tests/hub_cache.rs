//! Hub sources resolve through the local Hugging Face cache and honour HF_HUB_OFFLINE. This file is
//! its own test binary because it sets process environment variables.

mod common;

use std::fs;

use reprolm_tasks::{load_task, Error, TaskOptions};

#[test]
fn default_source_reads_the_cache_offline() {
    let Some(real) = common::dataset("math500/test.jsonl") else {
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("datasets--HuggingFaceH4--MATH-500");
    let commit = "ff5b20257d8185524591543f8ff5993951537bb8";
    fs::create_dir_all(repo.join("refs")).unwrap();
    fs::write(repo.join("refs/main"), commit).unwrap();
    let snap = repo.join("snapshots").join(commit);
    fs::create_dir_all(&snap).unwrap();
    std::os::unix::fs::symlink(&real, snap.join("test.jsonl")).unwrap();
    // SAFETY: this test binary has this one test, so no other thread reads the environment.
    unsafe {
        std::env::set_var("HF_HUB_CACHE", cache.path());
        std::env::set_var("HF_HUB_OFFLINE", "1");
    }
    let (_, data) = load_task("math500", &TaskOptions::default()).unwrap();
    assert_eq!(data.problems.len(), 500);
    assert_eq!(data.source, "hf:HuggingFaceH4/MATH-500@main:test.jsonl");

    // Not cached and offline: an error that says so, with no network attempt.
    let e = load_task("aime25", &TaskOptions::default()).err().unwrap();
    assert!(matches!(e, Error::Hub { .. }), "{e:?}");
    assert!(
        e.to_string().contains("HF_HUB_OFFLINE") && e.to_string().contains("opencompass/AIME2025"),
        "{e}"
    );
}
