//! The `reprolm` command as a library, so that a binary which links extra task plugins (crates that
//! `inventory::submit!` a task) gets the whole command line with them: `fn main() { reprolm_cli::main() }`.
//!
//! `main` maps the arguments to a command, runs it, prints an error with its whole context chain, and
//! picks the exit status: 0 success, 1 failure (or some runs of a sweep failed), 2 usage error
//! (including a path argument that does not exist), 130 interrupted.
#![deny(missing_docs)]

mod args;
mod commands;
mod config;
mod interrupt;
mod progress;
mod slurm;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::progress::OutputMode;

/// Parses the process arguments, runs the command and exits with its status.
pub fn main() -> ! {
    exit_quietly_on_broken_pipe();
    let cli = Cli::parse();
    let mode = if cli.json_log {
        OutputMode::Json
    } else if cli.quiet {
        OutputMode::Quiet
    } else {
        OutputMode::Human
    };
    interrupt::install();
    let status = match run(cli.command, mode) {
        Ok(code) => code,
        Err(failure) => {
            let (e, code) = match failure {
                Failure::Usage(e) => (e, 2),
                Failure::Error(e) if e.chain().any(|c| c.is::<UsageError>()) => (e, 2),
                Failure::Error(e) => (e, 1),
            };
            let msg = error_chain(&e);
            if mode == OutputMode::Json {
                progress::event(
                    "error",
                    serde_json::json!({ "message": msg, "status": code }),
                );
            }
            eprintln!("error: {msg}");
            code
        }
    };
    std::process::exit(status);
}

/// A reader that stops early (`reprolm tasks | head -1`) closes stdout, and the next `println!`
/// panics with a message and a backtrace. Like ripgrep, stop quietly with status 0 instead: the
/// reader has what it wanted. SIGPIPE stays ignored (Rust's default) rather than set back to its
/// default action, which would also end reprolm on a write to any other closed pipe, such as the
/// stdin of a program the code sandbox runs that exits without reading it.
fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if is_stdout_broken_pipe(msg) {
            std::process::exit(0);
        }
        default(info)
    }));
}

/// Whether a panic message is std's for a `print!` to a stdout whose reader has gone.
fn is_stdout_broken_pipe(msg: &str) -> bool {
    msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe")
}

/// A flag's value that turned out wrong only once the command had read what it names (e.g. a
/// `--problems` id the task's data lacks): exit status 2 like any other usage error.
#[derive(Debug)]
pub(crate) struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A usage error (exit status 2) with this message.
pub(crate) fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// Why a command failed, which decides the exit status: 2 when the command line itself cannot be
/// resolved (a flag's value, or a file or name a flag points at), 1 for everything after.
enum Failure {
    Usage(anyhow::Error),
    Error(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::Error(e)
    }
}

fn run(command: Command, mode: OutputMode) -> Result<i32, Failure> {
    Ok(match command {
        Command::Run(args) => {
            let cfg = config::RunConfig::resolve(&args).map_err(Failure::Usage)?;
            commands::run::command(&cfg, mode)?
        }
        Command::Sweep(args) => {
            // The sweep file and the flags that select from it are resolved before anything runs.
            let plan = commands::sweep::resolve(&args).map_err(Failure::Usage)?;
            commands::sweep::command(&args, plan, mode)?
        }
        Command::Score(args) => {
            existing("run directory", &args.dir)?;
            commands::score::command(&args.dir, mode)?
        }
        Command::Inspect(args) => {
            existing("run directory", &args.run_a)?;
            existing("run directory", &args.run_b)?;
            commands::inspect::command(&args, mode)?
        }
        Command::Export(args) => {
            existing("run directory", &args.dir)?;
            commands::export::command(&args, mode)?
        }
        Command::Report(args) => {
            existing("report root", &args.root)?;
            commands::report::command(&args, mode)?
        }
        Command::Tasks(args) => commands::tasks::command(args.name.as_deref(), mode)?,
        Command::Policies(args) => {
            commands::policies::command(args.name.as_deref(), args.toml, mode)?
        }
        Command::Memory(args) => commands::memory::command(&args, mode)?,
        Command::ImportReference(args) => {
            existing("reference output", &args.dir)?;
            commands::import_reference::command(&args, mode)?
        }
        Command::Bench(cmd) => commands::bench::command(&cmd, mode)?,
    })
}

/// A path named on the command line that does not exist is a usage error (status 2), as a missing
/// sweep file or `--data` file is: the command line is what is wrong, not the files behind it. A
/// path that exists but holds no run stays a failure (status 1), found when it is read.
fn existing(what: &str, path: &std::path::Path) -> Result<(), Failure> {
    if path.exists() {
        return Ok(());
    }
    Err(Failure::Usage(anyhow::anyhow!(
        "{what} {}: no such file or directory",
        path.display()
    )))
}

/// The error and its causes joined by `: `, leaving out a cause whose text the message before it
/// already ends with (library errors that print their source, e.g. `path: No such file`, would
/// otherwise show it twice).
fn error_chain(e: &anyhow::Error) -> String {
    let keep_frames = std::env::var("RUST_BACKTRACE").as_deref() == Ok("full");
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let text = if keep_frames {
            text
        } else {
            without_backtrace(&text)
        };
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// `text` without the stack frames candle appends to its errors when `RUST_BACKTRACE` is set
/// (lines `  12: symbol` and `      at file:line`): a user needs the message, not 48 frames of
/// the library's internals (`RUST_BACKTRACE=full` keeps them, for a bug report).
fn without_backtrace(text: &str) -> String {
    let frame = |l: &str| {
        let t = l.trim_start();
        let indented = t.len() < l.len();
        let numbered = t
            .split_once(": ")
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        indented && (numbered || t.starts_with("at ") || t == "stack backtrace:")
    };
    text.lines()
        .filter(|l| !frame(l))
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_print_to_a_closed_stdout_ends_quietly() {
        assert!(is_stdout_broken_pipe(
            "failed printing to stdout: Broken pipe (os error 32)"
        ));
        assert!(!is_stdout_broken_pipe(
            "failed printing to stderr: Broken pipe (os error 32)"
        ));
        assert!(!is_stdout_broken_pipe("index out of bounds"));
    }

    #[test]
    fn backtrace_frames_are_left_out_of_error_messages() {
        let text = "pinned cuBLASLt GEMM: no algorithm for 1536x1536\n   0: <unknown>\n  19: __libc_start_main\n             at /rustc/x/library/std/src/rt.rs:12:5\n  20: <unknown>";
        assert_eq!(
            without_backtrace(text),
            "pinned cuBLASLt GEMM: no algorithm for 1536x1536"
        );
        // Indented lines that are part of a message stay.
        let sweep = "sweep s.toml: 2 runs\n  failed: policy=bf16: no such model";
        assert_eq!(without_backtrace(sweep), sweep);
    }
}
