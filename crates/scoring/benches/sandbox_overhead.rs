//! Cost of sandboxing: per-test overhead for a trivial program and throughput with N workers,
//! against the same programs run as plain `python3` subprocesses in the same run.
//!
//! `cargo bench -p reprolm-scoring --bench sandbox_overhead [-- RUNS]` (default 40 runs per cell).
//! Needs root (namespaces); prints the isolation report, both absolutes and the ratios.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reprolm_scoring::sandbox::{
    grade_code, GradeOptions, Harness, LcbProblem, RunRequest, Sandbox, SandboxConfig, TestCase,
    TestKind,
};

const TRIVIAL: &str = "print(int(input()) + 1)\n";

fn stats(samples: &[Duration]) -> (f64, f64) {
    let ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    let var = ms.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (ms.len().max(2) - 1) as f64;
    (mean, var.sqrt())
}

/// The peer: the same interpreter, flags, script and stdin, as a plain subprocess. It gets its
/// own session like a sandboxed program does: with the kernel's autogroup scheduling each session
/// is a CPU-share group, so without this the sandbox would win throughput on a busy machine only
/// by getting more CPU shares.
fn plain_run(python: &std::path::Path, script: &std::path::Path) -> (Duration, Vec<u8>) {
    use std::os::unix::process::CommandExt;
    let t = Instant::now();
    let mut cmd = Command::new(python);
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd
        .args(["-s", "-B"])
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().unwrap().write_all(b"41\n").unwrap();
    let out = child.wait_with_output().expect("wait");
    (t.elapsed(), out.stdout)
}

fn sandbox_run(sandbox: &Sandbox) -> (Duration, Vec<u8>) {
    let (d, out, _) = sandbox_run_setup(sandbox);
    (d, out)
}

/// Also returns the namespace/mount setup time (clone to fork of the program).
fn sandbox_run_setup(sandbox: &Sandbox) -> (Duration, Vec<u8>, Duration) {
    let t = Instant::now();
    let out = sandbox
        .run(&RunRequest::script(TRIVIAL, "41\n"))
        .expect("sandbox run");
    if out.stdout != b"42\n" {
        eprintln!(
            "  unexpected sandbox outcome: {:?} setup {:?} wall {:?} stderr {:?}",
            out.exit,
            out.setup,
            out.wall,
            String::from_utf8_lossy(&out.stderr_tail)
        );
    }
    (t.elapsed(), out.stdout, out.setup)
}

/// Runs `total` jobs on `workers` threads; returns wall time and how many printed "42".
fn throughput(
    workers: usize,
    total: usize,
    job: Arc<dyn Fn() -> Vec<u8> + Send + Sync>,
) -> (Duration, usize) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()
        .unwrap();
    let t = Instant::now();
    let ok = pool.install(|| {
        use rayon::prelude::*;
        (0..total)
            .into_par_iter()
            .with_max_len(1)
            .filter(|_| job() == b"42\n")
            .count()
    });
    (t.elapsed(), ok)
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(40);
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()).expect("sandbox (needs root)"));
    let python = sandbox.python().to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("main.py");
    std::fs::write(&script, TRIVIAL).unwrap();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "sandbox overhead  cpu x{cpus}  {}  runs={runs}",
        python.display()
    );
    println!("isolation: {:?}", sandbox.isolation());

    // Warm both paths (page cache, interpreter files).
    for _ in 0..3 {
        plain_run(&python, &script);
        sandbox_run(&sandbox);
    }
    // Interleave so machine load drifts affect both sides alike.
    let (mut plain, mut boxed, mut setup) = (Vec::new(), Vec::new(), Vec::new());
    let (mut plain_ok, mut boxed_ok) = (0, 0);
    for _ in 0..runs {
        let (d, out) = plain_run(&python, &script);
        plain_ok += usize::from(out == b"42\n");
        plain.push(d);
        let (d, out, s) = sandbox_run_setup(&sandbox);
        setup.push(s);
        boxed_ok += usize::from(out == b"42\n");
        boxed.push(d);
    }
    let (pm, ps) = stats(&plain);
    let (bm, bs) = stats(&boxed);
    println!("\nper-test latency, trivial program (1 worker)");
    println!("  plain python3   {pm:8.1} ± {ps:6.1} ms   correct {plain_ok}/{runs}");
    println!("  sandbox         {bm:8.1} ± {bs:6.1} ms   correct {boxed_ok}/{runs}");
    let (sm, ss) = stats(&setup);
    println!("    of which namespace + mount setup {sm:6.1} ± {ss:5.1} ms");
    println!(
        "  sandbox - plain: {:+.1} ms per test (overhead); sandbox/plain: {:.2}x time (lower is better)",
        bm - pm,
        bm / pm
    );

    // The LiveCodeBench harness adds the driver (ast rewrite, mocks) on top of the sandbox.
    let problem = LcbProblem {
        id: "bench".into(),
        kind: TestKind::Stdin,
        tests: vec![TestCase {
            input: "41\n".into(),
            output: "42\n".into(),
        }],
    };
    let mut lcb = Vec::new();
    let mut lcb_ok = 0;
    for _ in 0..runs.min(20) {
        let t = Instant::now();
        let r = grade_code(
            &sandbox,
            &problem,
            TRIVIAL,
            &GradeOptions {
                harness: Harness::LiveCodeBench,
                ..GradeOptions::default()
            },
        );
        lcb.push(t.elapsed());
        lcb_ok += usize::from(r.passed);
    }
    let (lm, ls) = stats(&lcb);
    println!(
        "  sandbox + LCB driver {lm:8.1} ± {ls:6.1} ms   passed {lcb_ok}/{}  ({:.2}x plain)",
        lcb.len(),
        lm / pm
    );

    println!("\nthroughput, {runs} trivial programs");
    for workers in [1usize, 2, 4, 8] {
        let py = python.clone();
        let sc = script.clone();
        let (pt, pok) = throughput(workers, runs, Arc::new(move || plain_run(&py, &sc).1));
        let sb = sandbox.clone();
        let (bt, bok) = throughput(workers, runs, Arc::new(move || sandbox_run(&sb).1));
        let prate = runs as f64 / pt.as_secs_f64();
        let brate = runs as f64 / bt.as_secs_f64();
        println!(
            "  workers {workers}: plain {prate:6.1} prog/s ({pok}/{runs} ok)   sandbox {brate:6.1} prog/s ({bok}/{runs} ok)   sandbox/plain {:.2}x throughput (higher is better)",
            brate / prate
        );
    }
}
