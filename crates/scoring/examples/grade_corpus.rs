//! Grades a labelled-pairs file with `math_equal` and times it on one thread.
//!
//! ```text
//! cargo run --release -p reprolm-scoring --example grade_corpus -- [PAIRS.tsv] [--json] [--seconds S]
//! ```
//! Prints agreement with the labels and single-threaded checks per second; with `--json`, one JSON object
//! with every verdict instead (read by scripts/math_verify_compare.py, which times Math-Verify on the same
//! pairs in the same run).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use reprolm_scoring::{math_equal, read_labelled_pairs};

fn main() -> ExitCode {
    let mut path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/math_equivalence.tsv"
    )
    .to_owned();
    let mut json = false;
    let mut seconds = 2.0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json = true,
            "--seconds" => match args.next().and_then(|s| s.parse().ok()) {
                Some(s) => seconds = s,
                None => {
                    eprintln!("--seconds needs a number");
                    return ExitCode::from(2);
                }
            },
            other => path = other.to_owned(),
        }
    }
    let pairs = match read_labelled_pairs(&path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let verdicts: Vec<_> = pairs.iter().map(|p| math_equal(&p.gold, &p.pred)).collect();
    let agree = pairs
        .iter()
        .zip(&verdicts)
        .filter(|(p, v)| p.equal == v.equal)
        .count();

    // Whole passes over the corpus on this thread until the time is up; every pass does the same work.
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut checks = 0usize;
    let mut equal_count = 0usize;
    while start.elapsed() < budget || checks == 0 {
        for p in &pairs {
            equal_count += usize::from(std::hint::black_box(math_equal(&p.gold, &p.pred)).equal);
        }
        checks += pairs.len();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let rate = checks as f64 / elapsed;

    if json {
        let out = serde_json::json!({
            "pairs": pairs.len(),
            "agree_with_labels": agree,
            "checks": checks,
            "equal_verdicts": equal_count,
            "seconds": elapsed,
            "checks_per_second": rate,
            "verdicts": pairs.iter().zip(&verdicts).map(|(p, v)| serde_json::json!({
                "line": p.line, "equal": v.equal, "rule": v.rule, "detail": v.detail,
            })).collect::<Vec<_>>(),
        });
        println!("{out}");
    } else {
        println!("{} pairs from {path}", pairs.len());
        println!(
            "agreement with labels: {agree}/{} = {:.2}%",
            pairs.len(),
            100.0 * agree as f64 / pairs.len() as f64
        );
        println!("math_equal, 1 thread: {rate:.0} checks/s ({checks} checks in {elapsed:.2} s)");
        for (p, v) in pairs
            .iter()
            .zip(&verdicts)
            .filter(|(p, v)| p.equal != v.equal)
        {
            println!(
                "  line {}: label {} ours {} by {:?}: `{}` vs `{}`",
                p.line, p.equal, v.equal, v.rule, p.gold, p.pred
            );
        }
    }
    ExitCode::SUCCESS
}
