//! Records the git revision the binary is built from, for run manifests. Outside a git checkout (a
//! crates.io build) nothing is recorded and manifests say `null`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    if let Some(rev) = git(&["rev-parse", "HEAD"]) {
        println!("cargo:rustc-env=REPROLM_GIT_REVISION={rev}");
    }
    // Rebuild when HEAD moves: HEAD itself (branch switch) and the branch's ref (commit).
    for name in ["HEAD", "refs/heads"] {
        if let Some(p) = git(&["rev-parse", "--git-path", name]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    if let Some(p) = git(&["rev-parse", "--git-common-dir"]) {
        println!("cargo:rerun-if-changed={p}/packed-refs");
    }
}
