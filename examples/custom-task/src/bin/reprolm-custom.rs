//! `reprolm` with the example plugin linked in: every command of the standard binary, plus the task
//! `unit_conversion` in `tasks`, `run`, `sweep` and `score`. This is how a benchmark kept outside this
//! repository reaches the command line: a three-line binary in its own crate.

fn main() {
    // Naming something from the plugin crate keeps the linker from dropping it, and with it the
    // `inventory::submit!` registration.
    std::hint::black_box(reprolm_example_custom_task::NAME);
    reprolm_cli::main()
}
