//! The `reprolm` command as a library, so that a binary which links extra task plugins (crates that
//! `inventory::submit!` a task) gets the whole command line with them: `fn main() { reprolm_cli::main() }`.
//!
//! `main` maps the arguments to a command, runs it, prints an error with its whole context chain, and
//! picks the exit status: 0 success, 1 failure (or some runs of a sweep failed), 2 usage error,
//! 130 interrupted.
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
        Err(e) => {
            let msg = error_chain(&e);
            if mode == OutputMode::Json {
                progress::event("error", serde_json::json!({ "message": msg }));
            }
            eprintln!("error: {msg}");
            1
        }
    };
    std::process::exit(status);
}

fn run(command: Command, mode: OutputMode) -> anyhow::Result<i32> {
    match command {
        Command::Run(args) => {
            let cfg = config::RunConfig::resolve(&args)?;
            commands::run::command(&cfg, mode)
        }
        Command::Sweep(args) => commands::sweep::command(&args, mode),
        Command::Score(args) => commands::score::command(&args.dir, mode),
        Command::Inspect(args) => commands::inspect::command(&args, mode),
        Command::Report(args) => commands::report::command(&args, mode),
        Command::Tasks => commands::tasks::command(mode),
        Command::Policies(args) => {
            commands::policies::command(args.name.as_deref(), args.toml, mode)
        }
        Command::Memory(args) => commands::memory::command(&args, mode),
        Command::ImportReference(args) => commands::import_reference::command(&args, mode),
        Command::Bench(cmd) => commands::bench::command(&cmd, mode),
    }
}

/// The error and its causes joined by `: `, leaving out a cause whose text the message before it
/// already ends with (library errors that print their source, e.g. `path: No such file`, would
/// otherwise show it twice).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
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
