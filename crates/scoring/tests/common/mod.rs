//! Helpers shared by the sandbox integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reprolm_scoring::sandbox::{Limits, Sandbox, SandboxConfig};

/// Small limits so hostile programs are stopped quickly on a 2-core CI machine.
pub fn test_limits() -> Limits {
    Limits {
        wall_time: Duration::from_secs(2),
        cpu_time: Duration::from_secs(3),
        memory: 512 << 20,
        address_space: 256 << 20,
        processes: 32,
        open_files: 64,
        file_size: 4 << 20,
        stack: 8 << 20,
        output: 1 << 20,
        scratch: 16 << 20,
    }
}

/// One sandbox per test binary (building one probes the machine, which costs a run).
pub fn sandbox() -> Arc<Sandbox> {
    static SANDBOX: OnceLock<Arc<Sandbox>> = OnceLock::new();
    SANDBOX
        .get_or_init(|| {
            let config = SandboxConfig {
                limits: test_limits(),
                ..SandboxConfig::default()
            };
            Arc::new(
                Sandbox::new(config).expect("sandbox isolation must be available for these tests"),
            )
        })
        .clone()
}

/// `../shared/datasets/<rel>` from the workspace root, or `None` (with a message) when absent.
pub fn dataset(rel: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/datasets")
        .join(rel);
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "SKIP: {} not found (put the benchmark files in ../shared/datasets next to the workspace)",
            path.display()
        );
        None
    }
}

/// Host processes whose uid lies in the sandbox's uid range, or whose command line contains
/// `marker`: after a run none may remain.
pub fn survivors(sandbox: &Sandbox, marker: &str) -> Vec<String> {
    let lo = sandbox.config().uid_base;
    let hi = lo + sandbox.config().uid_slots;
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|u| u.parse::<u32>().ok());
        if uid.is_some_and(|u| (lo..hi).contains(&u))
            || (!marker.is_empty() && cmdline.contains(marker))
        {
            found.push(format!("pid {pid} uid {uid:?}: {cmdline}"));
        }
    }
    found
}

/// Serialises tests of one binary that check for surviving processes (a concurrent test's
/// running programs would look like survivors).
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
