//! CPU prefill and decode throughput per tensor-parallel size, in the standard and the
//! TP-invariant mode, on the embedded model (models/arith-qwen2-3m, fp32 policy).
//!
//!     cargo bench -p reprolm-engine --bench tensor_parallel [-- --quick]
//!
//! On the CPU the ranks are threads sharing the machine's cores with candle's own threads, so a
//! larger `tp` does not add compute; what the numbers show is the cost of the split (one thread per
//! rank, two all-reduces per layer, smaller GEMMs) and of the invariant mode's fixed-order kernels.
//! Every configuration generates the same number of tokens from the same prompts; the table says
//! how many sequences came out token-for-token equal to tp 1 in the same mode.
//!
//! `REPROLM_MODEL_DIR` overrides the model directory.

use reprolm_engine::parallel::{TensorParallel, TpMode};
use reprolm_precision::PrecisionPolicy;
use std::path::PathBuf;

mod common;
use common::{load_decoder, median};

struct Case {
    batch: usize,
    prompt_len: usize,
    new_tokens: usize,
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let dir = std::env::var_os("REPROLM_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/arith-qwen2-3m")
        });
    let policy = PrecisionPolicy::fp32();
    let case = Case {
        batch: 4,
        prompt_len: 64,
        new_tokens: if quick { 16 } else { 48 },
    };
    let reps = if quick { 2 } else { 5 };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "tensor parallel  {}  cpu ({threads} threads)  fp32  batch {}, prompt {}, {} new tokens, median of {reps}",
        dir.file_name().unwrap().to_string_lossy(),
        case.batch,
        case.prompt_len,
        case.new_tokens + 1
    );
    println!("  tp  mode        prefill tok/s   decode tok/s   same tokens as tp 1");
    let mut rows = Vec::new();
    for mode in [TpMode::Standard, TpMode::Invariant] {
        let mut reference: Option<Vec<Vec<u32>>> = None;
        for size in [1usize, 2, 4] {
            let dec = load_decoder(&dir, &policy, TensorParallel::new(size, mode));
            let run = || common::run(&dec, case.batch, case.prompt_len, case.new_tokens);
            run(); // warm-up
            let (mut p, mut d) = (Vec::new(), Vec::new());
            let mut tokens = Vec::new();
            for _ in 0..reps {
                let (pt, dt, t) = run();
                p.push(pt);
                d.push(dt);
                tokens = t;
            }
            let prefill = (case.batch * case.prompt_len) as f64 / median(p);
            let decode = (case.batch * case.new_tokens) as f64 / median(d);
            let reference = reference.get_or_insert_with(|| tokens.clone());
            let same = tokens
                .iter()
                .zip(reference.iter())
                .filter(|(a, b)| a == b)
                .count();
            println!(
                "  {size}   {:<10}  {prefill:>13.0}   {decode:>12.0}   {same}/{}",
                mode.as_str(),
                case.batch
            );
            rows.push((size, mode, prefill, decode));
        }
    }
    let get = |s: usize, m: TpMode| rows.iter().find(|r| r.0 == s && r.1 == m).unwrap();
    for size in [1, 2, 4] {
        let (st, inv) = (get(size, TpMode::Standard), get(size, TpMode::Invariant));
        println!(
            "  tp {size} invariant/standard: {:.2}x prefill tok/s, {:.2}x decode tok/s (higher is better)",
            inv.2 / st.2,
            inv.3 / st.3
        );
    }
    for size in [2, 4] {
        let (one, n) = (get(1, TpMode::Standard), get(size, TpMode::Standard));
        println!(
            "  standard tp {size}/tp 1: {:.2}x prefill tok/s, {:.2}x decode tok/s (higher is better)",
            n.2 / one.2,
            n.3 / one.3
        );
    }
}
