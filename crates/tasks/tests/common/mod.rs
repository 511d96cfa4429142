//! Helpers for tests that read the real benchmark files in `../shared/datasets`.
#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared/datasets` relative to the workspace root.
pub fn datasets_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets")
}

/// The path of a real data file, or `None` after printing why the test is skipped.
pub fn dataset(rel: &str) -> Option<PathBuf> {
    let p = datasets_dir().join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "SKIP: {} is missing. Real benchmark files live in ../shared/datasets next to the workspace \
             (see its README); put them there to run this test.",
            p.display()
        );
        None
    }
}

/// The GPQA zip password: `REPROLM_GPQA_PASSWORD`, else the one the datasets README quotes from the
/// upstream README.
pub fn gpqa_password() -> Option<String> {
    if let Ok(p) = std::env::var("REPROLM_GPQA_PASSWORD") {
        return Some(p);
    }
    let readme = std::fs::read_to_string(datasets_dir().join("README.md")).ok()?;
    let line = readme.lines().find(|l| l.contains("**Password:**"))?;
    let p = line.split('`').nth(1).map(String::from);
    if p.is_none() {
        eprintln!("SKIP: no GPQA password: set REPROLM_GPQA_PASSWORD (published in github.com/idavidrein/gpqa's README)");
    }
    p
}

/// Whether the code sandbox can start here; prints a skip message when it cannot.
pub fn sandbox_available(err: &reprolm_tasks::Error) -> bool {
    if let reprolm_tasks::Error::Scoring { reason, .. } = err {
        if reason.contains("sandbox cannot start") {
            eprintln!("SKIP: {err}");
            return false;
        }
    }
    panic!("scoring failed: {err}");
}
