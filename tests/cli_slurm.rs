//! `reprolm sweep --executor slurm` on a real one-node Slurm cluster (issue 15): a 4-run sweep on the
//! embedded model goes through sbatch as a job array, every run directory ends up complete and equal
//! to what the local executor writes, and `report` reads them; then an array task is cancelled
//! mid-run, `sweep status` shows it failed with its log, and re-submitting finishes only that one.
//!
//! The cluster is started by tests/slurm/start-cluster.sh inside a temporary directory and stopped by
//! tests/slurm/stop-cluster.sh when the test ends, also when it fails. It needs root and the Debian
//! packages slurm-wlm and munge: when they are missing the test installs them if it can (root and
//! apt-get), and otherwise skips with a message saying why. Every wait has a deadline, so a cluster
//! that misbehaves fails the test instead of hanging it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/slurm");

/// The embedded model the project trains itself.
fn embedded_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/arith-qwen2-3m")
}

/// Run `cmd` to its end, killing it after `limit`; panics on spawn failure or time-out.
fn run_limited(mut cmd: Command, limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
    let deadline = Instant::now() + limit;
    // Drain the pipes on threads so a chatty command cannot stall on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut v).ok();
        v
    });
    let e = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut v).ok();
        v
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("{what} ran past {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: o.join().unwrap(),
        stderr: e.join().unwrap(),
    }
}

fn has(program: &str) -> bool {
    [
        "/usr/bin",
        "/usr/sbin",
        "/bin",
        "/sbin",
        "/usr/local/bin",
        "/usr/local/sbin",
    ]
    .iter()
    .any(|d| Path::new(d).join(program).exists())
}

fn slurm_installed() -> bool {
    [
        "sbatch",
        "squeue",
        "scancel",
        "slurmctld",
        "slurmd",
        "munged",
    ]
    .iter()
    .all(|p| has(p))
}

/// Ok when Slurm and munge are here (installing them if this process may); else why the test skips.
fn ensure_slurm() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(
            "not root: the test cluster's slurmd and munged run as root (and installing \
                    slurm-wlm and munge needs root too)"
                .into(),
        );
    }
    if slurm_installed() {
        return Ok(());
    }
    if !has("apt-get") {
        return Err("slurm-wlm and munge are not installed and there is no apt-get".into());
    }
    let apt = |args: &[&str]| {
        let mut c = Command::new("timeout");
        c.arg("180")
            .arg("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive");
        run_limited(c, Duration::from_secs(200))
    };
    let install = ["install", "-y", "slurm-wlm", "munge"];
    if !apt(&install).status.success() {
        apt(&["update"]);
        let out = apt(&install);
        if !out.status.success() {
            return Err(format!(
                "slurm-wlm and munge are not installed and `apt-get install -y slurm-wlm munge` failed \
                 (no network to the package mirror?): {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ));
        }
    }
    if slurm_installed() {
        Ok(())
    } else {
        Err(
            "apt-get installed slurm-wlm and munge but their programs are not on the usual paths"
                .into(),
        )
    }
}

/// A running one-node cluster; stopped on drop, also when the test panics.
struct Cluster {
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("reprolm-slurm-")
            .tempdir()
            .unwrap();
        let ports: Vec<String> = (0..2)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect::<Vec<_>>()
            .iter()
            .map(|l| l.local_addr().unwrap().port().to_string())
            .collect();
        let mut c = Command::new(format!("{SCRIPTS}/start-cluster.sh"));
        c.arg(dir.path()).args(&ports);
        let cluster = Cluster { dir };
        let out = run_limited(c, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "start-cluster.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("slurm.conf")
    }

    /// A command talking to this cluster.
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", self.conf());
        c
    }

    /// `reprolm ARGS` in `cwd` against this cluster, expecting exit status 0.
    fn reprolm(&self, cwd: &Path, args: &[&str]) -> String {
        let mut c = cmd(cwd, &common::args(args));
        c.env("SLURM_CONF", self.conf());
        let out = run_limited(c, Duration::from_secs(120));
        assert!(
            out.status.success(),
            "reprolm {}\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `sweep status ROOT` as JSON: (index, state) per configuration, and the human text.
    fn status(&self, cwd: &Path, root: &Path) -> (Vec<(u64, String)>, serde_json::Value) {
        let text = self.reprolm(
            cwd,
            &["--json-log", "sweep", "status", root.to_str().unwrap()],
        );
        let event: serde_json::Value = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["event"] == "sweep_status")
            .unwrap_or_else(|| panic!("no sweep_status event in\n{text}"));
        let states = event["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["index"].as_u64().unwrap(),
                    r["state"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        (states, event)
    }

    /// Poll `sweep status` until `done` holds, at most `limit`.
    fn wait_for(
        &self,
        cwd: &Path,
        root: &Path,
        limit: Duration,
        what: &str,
        done: impl Fn(&[(u64, String)]) -> bool,
    ) -> Vec<(u64, String)> {
        let deadline = Instant::now() + limit;
        loop {
            let (states, event) = self.status(cwd, root);
            if done(&states) {
                return states;
            }
            if Instant::now() > deadline {
                panic!(
                    "waited {} s for {what}; status: {states:?}\n{event:#}\n{}",
                    limit.as_secs(),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The daemons' logs, for failure messages.
    fn logs(&self) -> String {
        let mut s = String::new();
        for f in ["slurmctld.log", "slurmd.log"] {
            let p = self.dir.path().join("log").join(f);
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            s.push_str(&format!("--- {}\n", p.display()));
            for l in tail.into_iter().rev() {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut c = Command::new("timeout");
        c.arg("60")
            .arg(format!("{SCRIPTS}/stop-cluster.sh"))
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = c.status();
        // Whatever the script could not stop, by the pids it recorded.
        if let Ok(pids) = std::fs::read_to_string(self.dir.path().join("pids")) {
            for pid in pids.split_whitespace() {
                let _ = Command::new("kill")
                    .args(["-KILL", pid])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

fn sweep_file(dir: &Path, name: &str, root: &Path, base: &str, axes: &str) -> PathBuf {
    let path = dir.join(name);
    let text = format!(
        "root = \"{}\"\n[base]\nmodel = \"{}\"\ntask = \"arith\"\n{base}\n[axes]\n{axes}\n",
        root.display(),
        embedded_model().display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn manifest(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap()
}

/// The same results as a run made elsewhere: files byte for byte, manifests apart from times and
/// the Slurm placement.
fn assert_same_results(a: &Path, b: &Path) {
    for f in ["responses.jsonl", "logprobs.bin"] {
        assert!(
            std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(),
            "{f} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
    let strip = |p: &Path| {
        let mut m = manifest_sans_times(p);
        m.as_object_mut().unwrap().remove("slurm");
        m
    };
    assert_eq!(strip(a), strip(b));
}

fn all_done(states: &[(u64, String)]) -> bool {
    states.iter().all(|(_, s)| s == "done")
}

#[test]
fn a_sweep_runs_as_a_job_array_and_a_killed_task_is_finished_by_resubmitting() {
    let started = Instant::now();
    if let Err(why) = ensure_slurm() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let cluster = Cluster::start();
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();

    // Four quick runs.
    let root = cwd.join("runs");
    let file = sweep_file(
        cwd,
        "four.toml",
        &root,
        "limit = 2\nmax_tokens = 24",
        "policy = [\"fp32\", \"bf16\"]\nbatch_size = [1, 2]",
    );
    let f = file.to_str().unwrap();
    let script = cluster.reprolm(cwd, &["sweep", f, "--executor", "slurm", "--dry-run"]);
    assert!(script.contains("#SBATCH --array=1-4\n"), "{script}");
    assert!(!root.join("slurm").exists(), "--dry-run wrote files");
    let out = cluster.reprolm(
        cwd,
        &["sweep", f, "--executor", "slurm", "--time", "00:10:00"],
    );
    assert!(
        out.contains("submitted job ") && out.contains("array 1-4"),
        "{out}"
    );
    cluster.wait_for(cwd, &root, Duration::from_secs(150), "4 runs", all_done);

    let subs = std::fs::read_to_string(root.join("slurm/jobs.jsonl")).unwrap();
    let job: serde_json::Value = serde_json::from_str(subs.lines().next().unwrap()).unwrap();
    let mut names = Vec::new();
    for index in 1..=4u64 {
        let log = root.join(format!(
            "slurm/logs/{}_{index}.log",
            job["job_id"].as_str().unwrap()
        ));
        let text = std::fs::read_to_string(&log).unwrap();
        let run = text
            .lines()
            .find_map(|l| l.split_once(" -> ").map(|(_, d)| PathBuf::from(d)))
            .unwrap_or_else(|| panic!("{} names no run directory:\n{text}", log.display()));
        let m = manifest(&run);
        assert!(m["finished_at"].is_string(), "{}", run.display());
        assert_eq!(lines(&run), 2, "{}", run.display());
        assert_eq!(m["slurm"]["array_task_id"], index.to_string());
        assert_eq!(m["slurm"]["array_job_id"], job["job_id"]);
        assert_eq!(m["slurm"]["node"], "localhost");
        names.push(run);
    }
    // The local executor makes the same run directory for configuration 3.
    let local = cwd.join("local");
    cluster.reprolm(
        cwd,
        &["sweep", f, "--root", local.to_str().unwrap(), "--only", "3"],
    );
    let name = names[2].file_name().unwrap();
    assert_same_results(&local.join(name), &names[2]);
    assert!(manifest(&local.join(name)).get("slurm").is_none());
    // Nothing left to submit.
    let out = cluster.reprolm(cwd, &["sweep", f, "--executor", "slurm"]);
    assert!(
        out.contains("nothing to submit: 4 of 4 configurations already finished"),
        "{out}"
    );
    let report = cluster.reprolm(cwd, &["report", root.to_str().unwrap()]);
    assert!(
        report.contains("fp32") && report.contains("bf16"),
        "{report}"
    );
    assert!(root.join("report.md").exists() && root.join("report.json").exists());

    // Two longer runs (long enough that the cancel lands before one finishes); cancel one in
    // the middle.
    let root = cwd.join("runs-kill");
    let file = sweep_file(
        cwd,
        "kill.toml",
        &root,
        "limit = 24\nmax_tokens = 128\nbatch_size = 1",
        "policy = [\"fp32\", \"bf16\"]",
    );
    let f = file.to_str().unwrap();
    let out = cluster.reprolm(cwd, &["sweep", f, "--executor", "slurm"]);
    let job_id = out
        .split("submitted job ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(90);
    let (victim, index) = loop {
        let mut found = None;
        for index in [1u64, 2] {
            let log = root.join(format!("slurm/logs/{job_id}_{index}.log"));
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(run) = text
                .lines()
                .find_map(|l| l.split_once(" -> ").map(|(_, d)| PathBuf::from(d)))
            {
                if lines(&run) >= 1 && !manifest(&run)["finished_at"].is_string() {
                    found = Some((run, index));
                    break;
                }
            }
        }
        if let Some(f) = found {
            break f;
        }
        assert!(
            Instant::now() < deadline,
            "no run got under way:\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let task = format!("{job_id}_{index}");
    let st = run_limited(
        {
            let mut c = cluster.cmd("scancel");
            c.arg(&task);
            c
        },
        Duration::from_secs(30),
    );
    assert!(st.status.success(), "scancel {task}: {st:?}");
    let states = cluster.wait_for(
        cwd,
        &root,
        Duration::from_secs(150),
        "the other run to finish and the cancelled one to leave the queue",
        |s| s.iter().all(|(_, st)| st == "done" || st == "failed"),
    );
    let (_, event) = cluster.status(cwd, &root);
    assert!(
        states.contains(&(index, "failed".to_string())),
        "cancelling {task} in the middle of {} did not leave it failed: {states:?}\n{event:#}",
        victim.display()
    );
    let failed = &event["runs"][index as usize - 1];
    assert!(
        failed["detail"].as_str().unwrap().contains("CANCELLED"),
        "{failed:#}"
    );
    assert!(
        failed["log_tail"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("->")),
        "{failed:#}"
    );
    assert!(lines(&victim) < 24, "{} finished anyway", victim.display());

    let out = cluster.reprolm(cwd, &["sweep", f, "--executor", "slurm"]);
    assert!(
        out.contains(&format!(
            "array {index}: 1 configurations (1 of 2 configurations already finished"
        )),
        "{out}"
    );
    cluster.wait_for(
        cwd,
        &root,
        Duration::from_secs(150),
        "the resubmitted run",
        all_done,
    );
    assert_eq!(lines(&victim), 24);
    // Resumed after a kill, it holds what an uninterrupted run holds.
    let local = cwd.join("local-kill");
    cluster.reprolm(
        cwd,
        &[
            "sweep",
            f,
            "--root",
            local.to_str().unwrap(),
            "--only",
            &index.to_string(),
        ],
    );
    assert_same_results(&local.join(victim.file_name().unwrap()), &victim);
    eprintln!(
        "slurm sweep test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
