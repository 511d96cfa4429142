//! `reprolm`: a thin composition of the engine, tasks, scoring and metrics crates (see the library
//! half of this package for the commands).

fn main() {
    reprolm_cli::main()
}
