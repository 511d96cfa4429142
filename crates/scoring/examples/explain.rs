//! Prints the verdict of `math_equal` for one pair, with the deciding rule and its reason.
//!
//! ```text
//! cargo run -p reprolm-scoring --example explain -- '\frac{1}{2}' '0.5'
//! ```

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [gold, pred] = args.as_slice() else {
        eprintln!("usage: explain GOLD PREDICTION");
        std::process::exit(2);
    };
    let v = reprolm_scoring::math_equal(gold, pred);
    println!(
        "{}",
        serde_json::to_string_pretty(&v).unwrap_or_else(|e| e.to_string())
    );
}
