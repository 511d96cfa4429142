//! The memory bound of a whole program: eight programs that flood their output or allocate
//! without end, run at once, each end with their verdict while the evaluator stays small and the
//! machine keeps its memory. Also the per-test time limit, enforced from outside the harness.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reprolm_scoring::sandbox::{
    available_memory, grade_many, GradeJob, GradeOptions, Harness, LcbProblem, Limits,
    MemoryControl, Sandbox, SandboxConfig, TestCase, TestKind, Verdict,
};

const GIB: u64 = 1 << 30;
/// The tests of this file measure the machine's free memory: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
const MIB: u64 = 1 << 20;

/// (name, harness, program, expected verdict)
fn bombs() -> Vec<(&'static str, Harness, &'static str, &'static str)> {
    vec![
        (
            "chunks",
            Harness::Plain,
            "x = []\nwhile True:\n    x.append(b'x' * (64 << 20))\n",
            "memory_limit",
        ),
        (
            "forked",
            Harness::Plain,
            // Each child stays far below the per-process address space; together they do not.
            "import os, time\nfor _ in range(8):\n    if os.fork() == 0:\n        d = b'x' * (400 << 20)\n        time.sleep(60)\n        os._exit(0)\ntime.sleep(60)\n",
            "memory_limit",
        ),
        (
            "threads",
            Harness::Plain,
            "import threading, time\nkeep = []\ndef grab():\n    while True:\n        keep.append(b'y' * (32 << 20))\nfor _ in range(6):\n    threading.Thread(target=grab, daemon=True).start()\ntime.sleep(60)\n",
            "memory_limit",
        ),
        (
            "lcb_string",
            Harness::LiveCodeBench,
            // Built in the program's memory before anything is printed.
            "s = 'z' * (3 << 30)\nprint(len(s))\n",
            "memory_limit",
        ),
        (
            "lcb_list",
            Harness::LiveCodeBench,
            "a = []\nwhile True:\n    a.append([0] * 1000000)\n",
            "memory_limit",
        ),
        (
            "tmpfs_and_heap",
            Harness::Plain,
            // Files in its tmpfs count against the program where a cgroup does the counting.
            "data = []\nfor i in range(4):\n    with open('/dev/shm/fill%d' % i, 'wb') as f:\n        f.write(b'q' * (12 << 20))\nwhile True:\n    data.append(bytearray(128 << 20))\n",
            "memory_limit",
        ),
        (
            "lcb_flood",
            Harness::LiveCodeBench,
            "import sys\nwhile True:\n    sys.stdout.write('f' * 65536)\n",
            "output_limit",
        ),
        (
            "lcb_thread_flood",
            Harness::LiveCodeBench,
            "import threading\ndef spam():\n    while True:\n        print('t' * 1000, end='')\nfor _ in range(4):\n    threading.Thread(target=spam, daemon=True).start()\nspam()\n",
            "output_limit",
        ),
    ]
}

fn kind(v: &Verdict) -> &'static str {
    match v {
        Verdict::Passed => "passed",
        Verdict::WrongAnswer { .. } => "wrong_answer",
        Verdict::TimeLimit => "time_limit",
        Verdict::MemoryLimit => "memory_limit",
        Verdict::RuntimeError { .. } => "runtime_error",
        Verdict::OutputLimit => "output_limit",
        Verdict::SandboxError { .. } => "sandbox_error",
    }
}

fn job(name: &str, program: &str) -> GradeJob {
    GradeJob {
        problem: Arc::new(LcbProblem {
            id: name.into(),
            kind: TestKind::Stdin,
            tests: vec![TestCase {
                input: String::new(),
                output: "ok\n".into(),
            }],
        }),
        response: format!("```python\n{program}```"),
    }
}

fn own_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Runs every bomb on `workers` workers at once (both harnesses' programs in one batch each),
/// sampling this process's resident memory and the machine's available memory every 5 ms.
/// Returns (failures, largest own RSS, smallest MemAvailable).
fn run_bombs(sandbox: &Sandbox, workers: usize) -> (Vec<String>, u64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut rss, mut avail) = (0u64, u64::MAX);
            while !stop.load(Ordering::Relaxed) {
                rss = rss.max(own_rss());
                avail = avail.min(available_memory().unwrap_or(u64::MAX));
                std::thread::sleep(Duration::from_millis(5));
            }
            (rss, avail)
        })
    };
    let mut failures = Vec::new();
    for harness in [Harness::Plain, Harness::LiveCodeBench] {
        let chosen: Vec<_> = bombs().into_iter().filter(|b| b.1 == harness).collect();
        // Twice each, so that all workers are busy at once.
        let jobs: Vec<GradeJob> = chosen
            .iter()
            .chain(chosen.iter())
            .map(|(name, _, program, _)| job(name, program))
            .collect();
        // The per-test limit is longer than the harness's 6 s: these programs must end by their
        // memory bound, and a freshly booted virtual machine (CI's) gets every page of its guest
        // memory from the host on first touch, which made the 4 GiB below take over 6 s there.
        // A program the bound does not stop still sleeps or allocates past this limit.
        let opts = GradeOptions {
            timeout: Duration::from_secs(30),
            harness,
            ..GradeOptions::default()
        };
        let reports = grade_many(sandbox, &jobs, workers, &opts).expect("grading");
        for ((name, _, _, expect), r) in chosen.iter().chain(chosen.iter()).zip(&reports) {
            let got = kind(&r.verdict);
            println!(
                "{name:<18} expect {expect:<13} got {got:<13} {:.2}s",
                r.wall_s
            );
            if got != *expect {
                failures.push(format!("{name}: expected {expect}, got {:?}", r.verdict));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (rss, avail) = sampler.join().expect("sampler");
    (failures, rss, avail)
}

fn sandbox(control: MemoryControl, bound: u64) -> Option<Sandbox> {
    let config = SandboxConfig {
        limits: Limits {
            memory: bound,
            ..Limits::default()
        },
        memory_control: control,
        ..SandboxConfig::default()
    };
    match Sandbox::new(config) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("SKIP: the sandbox cannot start here: {e}");
            None
        }
    }
}

#[test]
fn eight_bombs_at_once_end_at_their_bound_and_the_machine_keeps_its_memory() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const WORKERS: usize = 8;
    // Eight programs filling 512 MiB each is 4 GiB of pages to fault in and write: two to three
    // seconds on a warm two-core machine.
    const BOUND: u64 = 512 * MIB;
    const KEEP_FREE: u64 = 4 * GIB;
    let Some(before) = available_memory() else {
        eprintln!("SKIP: /proc/meminfo unreadable");
        return;
    };
    if before < WORKERS as u64 * BOUND + KEEP_FREE + GIB {
        eprintln!(
            "SKIP: {:.1} GiB available; this test needs {WORKERS} x {} MiB + {} GiB free + 1 GiB",
            before as f64 / GIB as f64,
            BOUND / MIB,
            KEEP_FREE / GIB
        );
        return;
    }
    let Some(sandbox) = sandbox(MemoryControl::Auto, BOUND) else {
        return;
    };
    println!("memory bound: {}", sandbox.isolation().memory_bound);
    let (failures, rss, avail) = run_bombs(&sandbox, WORKERS);
    println!(
        "evaluator at most {:.1} MiB resident; machine at least {:.2} GiB available (started with {:.2})",
        rss as f64 / MIB as f64,
        avail as f64 / GIB as f64,
        before as f64 / GIB as f64
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(rss < 100 * MIB, "the evaluator reached {rss} bytes");
    assert!(avail >= KEEP_FREE, "available memory fell to {avail} bytes");
}

#[test]
fn without_a_cgroup_resident_accounting_bounds_the_program() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Four at once under the fallback a machine without a usable memory cgroup gets.
    const BOUND: u64 = 512 * MIB;
    let Some(before) = available_memory() else {
        eprintln!("SKIP: /proc/meminfo unreadable");
        return;
    };
    if before < 4 * BOUND + 6 * GIB {
        eprintln!("SKIP: {before} bytes available");
        return;
    }
    let Some(sandbox) = sandbox(MemoryControl::Accounting, BOUND) else {
        return;
    };
    assert_eq!(sandbox.isolation().memory_bound, "accounting");
    assert!(sandbox
        .isolation()
        .warnings
        .iter()
        .any(|w| w.contains("resident memory")));
    let (failures, _, avail) = run_bombs(&sandbox, 4);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(avail >= 4 * GIB, "available memory fell to {avail} bytes");
}

#[test]
fn a_recursion_that_swallows_the_alarm_gets_its_verdict_within_the_test_limit() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(sandbox) = sandbox(MemoryControl::Auto, 2 * GIB) else {
        return;
    };
    // Every level catches the harness's timeout and goes on: only the limit enforced from
    // outside the program ends it, 6 s (LiveCodeBench's per-test limit) after the test began.
    let program = "import sys\nsys.setrecursionlimit(100000)\ndef descend(depth):\n    while True:\n        try:\n            if depth < 5000:\n                descend(depth + 1)\n        except BaseException:\n            pass\ndescend(0)\n";
    let opts = GradeOptions::default();
    assert_eq!(opts.timeout, Duration::from_secs(6));
    let t = Instant::now();
    let reports = grade_many(&sandbox, &[job("recursion", program)], 1, &opts).expect("grading");
    let took = t.elapsed();
    assert_eq!(reports[0].verdict, Verdict::TimeLimit);
    assert!(
        took < Duration::from_secs(7),
        "the verdict took {took:?} against a 6 s limit"
    );
}

#[test]
fn an_output_larger_than_the_supervisor_holds_in_memory_comes_back_whole() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(sandbox) = sandbox(MemoryControl::Auto, 2 * GIB) else {
        return;
    };
    // 3 MiB of numbered lines: past STDOUT_IN_MEMORY, so most of it is kept in the spill file.
    let lines = 300_000;
    let expected: String = (0..lines).map(|i| format!("{i:09}\n")).collect();
    assert!(expected.len() > 2 * reprolm_scoring::sandbox::STDOUT_IN_MEMORY);
    let program = format!("for i in range({lines}):\n    print('%09d' % i)\n");
    for harness in [Harness::Plain, Harness::LiveCodeBench] {
        let job = GradeJob {
            problem: Arc::new(LcbProblem {
                id: "big".into(),
                kind: TestKind::Stdin,
                tests: vec![TestCase {
                    input: String::new(),
                    output: expected.clone(),
                }],
            }),
            response: format!("```python\n{program}```"),
        };
        let opts = GradeOptions {
            harness,
            ..GradeOptions::default()
        };
        let reports = grade_many(&sandbox, &[job], 1, &opts).expect("grading");
        assert_eq!(reports[0].verdict, Verdict::Passed, "{harness:?}");
    }
    // The same bytes, as the sandbox returns them.
    let out = sandbox
        .run(&reprolm_scoring::sandbox::RunRequest::script(program, ""))
        .expect("run");
    assert!(!out.output_limited && out.exit == reprolm_scoring::sandbox::Exit::Code(0));
    assert!(
        out.stdout == expected.as_bytes(),
        "{} bytes",
        out.stdout.len()
    );
    assert!(out.memory_peak.is_some_and(|p| p > 0));
}
