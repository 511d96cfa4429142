//! Hostile programs (tests/hostile/*.py): each must get its expected verdict, and the machine
//! must be left as it was. The harmless cases run first and prove the isolation; fork bombs and
//! kill-alls (phase `dangerous`) run only when every harmless case behaved.
//!
//! Each fixture starts with `# expect: VERDICT`, `# phase: safe|dangerous`, `# harness:
//! plain|lcb`; `@MARKER@` and `@PORT@` are replaced before the run. A fixture prints `ok` when
//! its attack was blocked and `ESCAPED: ...` when it was not.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reprolm_scoring::sandbox::{
    grade_many, GradeJob, GradeOptions, Harness, LcbProblem, TestCase, TestKind, Verdict,
};

struct Fixture {
    name: String,
    expect: String,
    dangerous: bool,
    harness: Harness,
    source: String,
}

fn fixtures(marker: &str, port: u16) -> Vec<Fixture> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile");
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/hostile")
        .flatten()
        .map(|e| e.path())
        .collect();
    paths.sort();
    for path in paths
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "py"))
    {
        let text = std::fs::read_to_string(&path).expect("fixture");
        let header = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
                .unwrap_or_else(|| panic!("{}: missing `# {key}:` header", path.display()))
                .trim()
                .to_string()
        };
        let harness = match header("harness").as_str() {
            "plain" => Harness::Plain,
            "lcb" => Harness::LiveCodeBench,
            h => panic!("{}: unknown harness {h}", path.display()),
        };
        out.push(Fixture {
            name: path.file_stem().unwrap().to_string_lossy().into_owned(),
            expect: header("expect"),
            dangerous: header("phase") == "dangerous",
            harness,
            source: text
                .replace("@MARKER@", marker)
                .replace("@PORT@", &port.to_string()),
        });
    }
    out
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

/// Runs fixtures (each as a one-test stdin problem expecting `ok`) and returns failures.
fn run_phase(fixtures: &[&Fixture], harness: Harness) -> Vec<String> {
    let sandbox = common::sandbox();
    let chosen: Vec<&&Fixture> = fixtures.iter().filter(|f| f.harness == harness).collect();
    let jobs: Vec<GradeJob> = chosen
        .iter()
        .map(|f| GradeJob {
            problem: Arc::new(LcbProblem {
                id: f.name.clone(),
                kind: TestKind::Stdin,
                tests: vec![TestCase {
                    input: String::new(),
                    output: "ok\n".into(),
                }],
            }),
            response: format!("```python\n{}```", f.source),
        })
        .collect();
    let opts = GradeOptions {
        timeout: Duration::from_secs(3),
        harness,
        ..GradeOptions::default()
    };
    let reports = grade_many(&sandbox, &jobs, 4, &opts).expect("grading");
    let mut failures = Vec::new();
    for (f, r) in chosen.iter().zip(&reports) {
        assert_eq!(r.problem_id, f.name);
        let got = kind(&r.verdict);
        println!(
            "{:<28} expect {:<14} got {:<14} {:.2}s",
            f.name, f.expect, got, r.wall_s
        );
        if got != f.expect {
            failures.push(format!(
                "{}: expected {}, got {:?}",
                f.name, f.expect, r.verdict
            ));
        }
    }
    failures
}

/// Removes what the test put on the host, also when an assertion fails half-way.
struct Cleanup {
    canary: std::process::Child,
    files: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.canary.kill();
        let _ = self.canary.wait();
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

struct HostState {
    sentinel: PathBuf,
    sentinel_text: String,
    secret_file: PathBuf,
    must_not_exist: Vec<PathBuf>,
}

#[test]
fn hostile_programs_get_their_verdicts_and_leave_the_machine_as_it_was() {
    let marker = format!("reprolm-hostile-{}", std::process::id());
    // A secret the programs must not see, set before the sandbox exists.
    std::env::set_var("REPROLM_TEST_SECRET", "hunter2");
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let home = PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()));
    let host = HostState {
        sentinel: PathBuf::from(format!("/tmp/{marker}-sentinel")),
        sentinel_text: format!("sentinel {marker}"),
        secret_file: PathBuf::from(format!("/tmp/{marker}-secret")),
        must_not_exist: vec![
            format!("/tmp/{marker}-escape"),
            format!("/tmp/{marker}-lcb"),
            format!("/dev/shm/{marker}-escape"),
            format!("/root/{marker}-escape"),
            format!("/root/{marker}-escape2"),
            format!("/usr/{marker}-x"),
            format!("/usr/{marker}-userns"),
            format!("/usr/{marker}-dir"),
            format!("/etc/{marker}-x"),
            format!("/{marker}-x"),
        ]
        .into_iter()
        .map(PathBuf::from)
        .chain([home.join(format!("{marker}-escape"))])
        .collect(),
    };
    std::fs::write(&host.sentinel, &host.sentinel_text).unwrap();
    std::fs::write(&host.secret_file, "secret").unwrap();
    // A root process outside the sandbox: a kill(-1) that escaped would take it down.
    let canary = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("canary");
    let mut cleanup = Cleanup {
        canary,
        files: vec![host.sentinel.clone(), host.secret_file.clone()],
    };
    let etc_hostname = std::fs::read("/etc/hostname").ok();

    let sandbox = common::sandbox();
    let report = sandbox.isolation();
    println!("isolation: {report:?}");
    assert!(
        report.is_complete(),
        "isolation incomplete on this machine, refusing hostile tests: {report:?}"
    );

    let all = fixtures(&marker, port);
    assert!(
        all.len() >= 30,
        "need at least 30 hostile programs, have {}",
        all.len()
    );
    let safe: Vec<&Fixture> = all.iter().filter(|f| !f.dangerous).collect();
    let dangerous: Vec<&Fixture> = all.iter().filter(|f| f.dangerous).collect();

    let mut failures = run_phase(&safe, Harness::Plain);
    failures.extend(run_phase(&safe, Harness::LiveCodeBench));
    let left = common::survivors(&sandbox, &marker);
    assert!(
        failures.is_empty() && left.is_empty(),
        "harmless phase failed; dangerous phase NOT run.\n{}\nsurvivors: {left:?}",
        failures.join("\n")
    );

    failures.extend(run_phase(&dangerous, Harness::Plain));

    // The machine as it was: no process left, files outside scratch untouched, no connection.
    let left = common::survivors(&sandbox, &marker);
    let canary_alive = cleanup.canary.try_wait().expect("canary status").is_none();
    let sentinel_now = std::fs::read_to_string(&host.sentinel).ok();
    drop(cleanup);
    assert!(
        canary_alive,
        "the canary process outside the sandbox was killed"
    );
    let created: Vec<&PathBuf> = host.must_not_exist.iter().filter(|p| p.exists()).collect();
    let accepted = listener.accept().is_ok();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(left.is_empty(), "processes survived: {left:?}");
    assert_eq!(
        sentinel_now.as_deref(),
        Some(host.sentinel_text.as_str()),
        "sentinel outside scratch changed"
    );
    assert!(
        created.is_empty(),
        "files appeared outside scratch: {created:?}"
    );
    assert!(
        !accepted,
        "a program connected to the host's 127.0.0.1:{port}"
    );
    assert_eq!(
        std::fs::read("/etc/hostname").ok(),
        etc_hostname,
        "/etc/hostname changed"
    );
}
