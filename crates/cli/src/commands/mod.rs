//! One module per subcommand; each takes its resolved arguments and returns an exit status.

pub mod bench;
pub mod export;
pub mod import_reference;
pub mod inspect;
pub mod memory;
pub mod policies;
pub mod report;
pub mod run;
pub mod score;
pub mod sweep;
pub mod tasks;
