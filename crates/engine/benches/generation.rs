//! CPU prefill and decode throughput of the engine, against Hugging Face transformers on the same
//! weights in the same run when python3 with torch and transformers is present.
//!
//!     cargo bench -p reprolm-engine --bench generation [-- --quick]
//!
//! Models: the tiny Qwen2 parity fixture, and a ~30M-parameter random Qwen2 written to a temporary
//! directory (so the numbers reflect GEMM work, not per-op overhead). The peer is
//! `benches/transformers_peer.py`, given the same directory, batch, prompt length, new tokens and
//! thread count.
//!
//! `REPROLM_ENGINE_DIR` overrides where the fixture and the peer script are found (for a bench binary
//! copied to another machine), `REPROLM_PYTHON` the interpreter that runs the peer.

use reprolm_precision::PrecisionPolicy;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{load_decoder, median, write_random_qwen2};

struct Case {
    batch: usize,
    prompt_len: usize,
    new_tokens: usize,
}

fn engine_dir() -> PathBuf {
    std::env::var_os("REPROLM_ENGINE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn peer(dir: &Path, case: &Case, threads: usize) -> Option<serde_json::Value> {
    let script = engine_dir().join("benches/transformers_peer.py");
    let python = std::env::var("REPROLM_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .arg(script)
        .arg("--model")
        .arg(dir)
        .args([
            "--batch",
            &case.batch.to_string(),
            "--prompt-len",
            &case.prompt_len.to_string(),
        ])
        .args([
            "--new-tokens",
            &case.new_tokens.to_string(),
            "--threads",
            &threads.to_string(),
        ])
        .args(["--repeats", "3"])
        .output()
        .ok()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        println!(
            "  transformers: not measured ({})",
            err.lines().last().unwrap_or("python3 failed")
        );
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last()?).ok()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let tmp = tempfile::tempdir().unwrap();
    let random_dir = tmp.path().join("random-qwen2");
    std::fs::create_dir_all(&random_dir).unwrap();
    write_random_qwen2(&random_dir).unwrap();
    let fixture: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/qwen2");
    let models = [("fixture-qwen2", fixture), ("random-qwen2", random_dir)];
    let cases: Vec<Case> = if quick {
        vec![Case {
            batch: 1,
            prompt_len: 64,
            new_tokens: 16,
        }]
    } else {
        vec![
            Case {
                batch: 1,
                prompt_len: 128,
                new_tokens: 32,
            },
            Case {
                batch: 8,
                prompt_len: 128,
                new_tokens: 32,
            },
        ]
    };
    println!(
        "engine generation benchmark: cpu, f32, {threads} threads, median of 3 after one warm-up"
    );
    for (name, dir) in &models {
        let dec = load_decoder(dir, &PrecisionPolicy::fp32(), Default::default());
        let params = dec.spec().parameter_count();
        for case in &cases {
            let run_ours = || common::run(&dec, case.batch, case.prompt_len, case.new_tokens);
            run_ours(); // warm-up
            let runs: Vec<_> = (0..3).map(|_| run_ours()).collect();
            let prefill_s = median(runs.iter().map(|r| r.0).collect());
            let decode_s = median(runs.iter().map(|r| r.1).collect());
            let prefill_tokens = case.batch * case.prompt_len;
            let decode_tokens = case.batch * case.new_tokens;
            let ours = (
                prefill_tokens as f64 / prefill_s,
                decode_tokens as f64 / decode_s,
            );
            println!(
                "\n{name} ({:.1}M params)  batch {}  prompt {}  new {}",
                params as f64 / 1e6,
                case.batch,
                case.prompt_len,
                case.new_tokens
            );
            println!(
                "  reprolm       prefill {:>10.0} tok/s  decode {:>8.1} tok/s",
                ours.0, ours.1
            );
            println!("                ({prefill_tokens} prompt tokens; {decode_tokens} decode steps x rows, after the first token)");
            if let Some(p) = peer(dir, case, threads) {
                let pf = p["prefill_tok_s"].as_f64().unwrap_or(f64::NAN);
                let dc = p["decode_tok_s"].as_f64().unwrap_or(f64::NAN);
                println!(
                    "  transformers  prefill {pf:>10.0} tok/s  decode {dc:>8.1} tok/s  (torch {}, same tokens counts)",
                    p["torch"].as_str().unwrap_or("?")
                );
                println!(
                    "  reprolm/transformers: prefill {:.2}x, decode {:.2}x tok/s (higher is better)",
                    ours.0 / pf,
                    ours.1 / dc
                );
            }
        }
    }
}
