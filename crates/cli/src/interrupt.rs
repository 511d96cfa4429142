//! Ctrl-C: the first one asks the running command to stop after the current decoding step (every
//! finished sample is already on disk, so a re-run resumes); a second one exits at once.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Exit status after an interrupt (128 + SIGINT), as shells report it.
pub const EXIT_INTERRUPTED: i32 = 130;

/// Install the handler (SIGINT, and SIGTERM so a job scheduler's stop is clean too).
pub fn install() {
    let res = ctrlc::set_handler(|| {
        if REQUESTED.swap(true, Ordering::SeqCst) {
            eprintln!("interrupted again: exiting now");
            std::process::exit(EXIT_INTERRUPTED);
        }
        eprintln!("interrupt: stopping after the current step (Ctrl-C again to exit at once)");
    });
    if let Err(e) = res {
        eprintln!("warning: could not install the Ctrl-C handler: {e}");
    }
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}
