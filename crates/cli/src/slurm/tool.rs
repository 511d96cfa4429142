//! Running Slurm's client commands with a time limit.
//!
//! squeue and sacct retry for a minute or more when the controller does not answer; `sweep status`
//! should say "queue not reachable" rather than hang, so every call gets a deadline.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What running a client command gave.
#[derive(Debug)]
pub enum ToolOutput {
    /// Exit status 0; its stdout.
    Ok(String),
    /// Not installed here (not on PATH).
    Missing,
    /// It ran and failed, or ran past the deadline; stderr or a description.
    Failed(String),
}

/// Run `program args`, waiting at most `limit`.
pub fn run(program: &str, args: &[String], limit: Duration) -> ToolOutput {
    let mut child = match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return ToolOutput::Missing,
        Err(e) => return ToolOutput::Failed(format!("{program}: {e}")),
    };
    // Read both pipes on threads, so a chatty command cannot block on a full pipe while we wait.
    let pipe = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = pipe(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = pipe(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    match status {
        Some(s) if s.success() => ToolOutput::Ok(stdout),
        Some(s) => ToolOutput::Failed(format!(
            "{program} exited with {s}: {}",
            stderr.trim().lines().last().unwrap_or("")
        )),
        None => ToolOutput::Failed(format!(
            "{program} did not answer within {} s",
            limit.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_told_apart() {
        let t = Duration::from_secs(5);
        match run("sh", &["-c".into(), "echo hi".into()], t) {
            ToolOutput::Ok(s) => assert_eq!(s, "hi\n"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            run("reprolm-no-such-tool", &[], t),
            ToolOutput::Missing
        ));
        match run("sh", &["-c".into(), "echo bad >&2; exit 3".into()], t) {
            ToolOutput::Failed(s) => assert!(s.contains("bad"), "{s}"),
            other => panic!("{other:?}"),
        }
        let started = Instant::now();
        match run("sleep", &["30".into()], Duration::from_millis(200)) {
            ToolOutput::Failed(s) => assert!(s.contains("did not answer"), "{s}"),
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
