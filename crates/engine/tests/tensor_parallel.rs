//! Tensor parallelism on the CPU: the fixtures split over 2 and 4 rank threads give the
//! single-device logits within float32 rounding (standard mode) or bit for bit (TP-invariant
//! mode), and shapes that do not split are refused naming the config field.

mod common;

use candle_core::DType;
use common::{eos_ids, load, load_tp, max_abs_diff, question_requests, Expected, ARCHS};
use reprolm_engine::parallel::{TensorParallel, TpMode};
use reprolm_engine::{generate, Decoder, Generation, LogitsFor, SamplingParams};
use reprolm_precision::PrecisionPolicy;

fn tp(size: usize, mode: TpMode) -> TensorParallel {
    TensorParallel::new(size, mode)
}

/// Logits of every prompt position, then of 6 single-token decode steps (the cache path).
fn logits_all(dec: &Decoder, ids: &[u32]) -> Vec<Vec<f32>> {
    let mut cache = dec.new_cache().unwrap();
    let seq = cache.add_sequence();
    let prefill = dec
        .forward(&[(seq, ids)], &mut cache, LogitsFor::All)
        .unwrap();
    let mut rows: Vec<Vec<f32>> = prefill.to_dtype(DType::F32).unwrap().to_vec2().unwrap();
    for &t in &ids[..6] {
        let l = dec
            .forward(&[(seq, &[t][..])], &mut cache, LogitsFor::Last)
            .unwrap();
        rows.push(
            l.flatten_all()
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                .to_vec1()
                .unwrap(),
        );
    }
    rows
}

fn to_f64(m: &[Vec<f32>]) -> Vec<Vec<f64>> {
    m.iter()
        .map(|r| r.iter().map(|&x| x as f64).collect())
        .collect()
}

fn bits(m: &[Vec<f32>]) -> Vec<Vec<u32>> {
    m.iter()
        .map(|r| r.iter().map(|x| x.to_bits()).collect())
        .collect()
}

/// Four prompts of different lengths, generated together (padding, merge and row removal of the
/// sharded cache are all exercised) and greedily.
fn batch_greedy(dec: &Decoder, arch: &str) -> Vec<Generation> {
    let reqs = Expected::load(arch).batch_requests();
    let params = SamplingParams {
        stop_token_ids: eos_ids(arch),
        ..SamplingParams::greedy(24)
    };
    generate(dec, &reqs, &params, 4).unwrap()
}

#[test]
fn standard_mode_matches_one_rank_within_fp32_rounding() {
    let policy = PrecisionPolicy::fp32();
    for arch in ARCHS {
        let one = load(arch, &policy);
        let ids = Expected::load(arch).ids("prompt_ids");
        let want = logits_all(&one, &ids);
        let want_gen = batch_greedy(&one, arch);
        for n in [2, 4] {
            let dec = load_tp(arch, &policy, tp(n, TpMode::Standard)).unwrap();
            let got = logits_all(&dec, &ids);
            let err = max_abs_diff(&to_f64(&got), &to_f64(&want));
            println!("{arch}: tp {n} vs tp 1, fp32 logits max abs diff {err:.3e}");
            assert!(err <= 1e-5, "{arch} tp {n}: {err}");
            // The fixtures' greedy margins are far above 1e-5, so the tokens agree.
            let gen = batch_greedy(&dec, arch);
            for (g, w) in gen.iter().zip(&want_gen) {
                assert_eq!(g.token_ids, w.token_ids, "{arch} tp {n}");
            }
        }
    }
}

#[test]
fn invariant_mode_is_bitwise_the_same_for_1_2_and_4_ranks() {
    for policy in [
        PrecisionPolicy::fp32(),
        PrecisionPolicy::preset("bf16").unwrap(),
    ] {
        for arch in ARCHS {
            let ids = Expected::load(arch).ids("prompt_ids");
            let one = load_tp(arch, &policy, tp(1, TpMode::Invariant)).unwrap();
            let want = logits_all(&one, &ids);
            let want_gen = batch_greedy(&one, arch);
            // The invariant kernel is a different summation order, not a different model.
            let standard = logits_all(&load(arch, &policy), &ids);
            let err = max_abs_diff(&to_f64(&want), &to_f64(&standard));
            println!(
                "{arch} {}: invariant vs standard tp 1, logits max abs diff {err:.3e}",
                policy.name
            );
            let bound = if policy.name == "fp32" { 1e-4 } else { 0.1 };
            assert!(
                err <= bound,
                "{arch} {}: invariant vs standard {err}",
                policy.name
            );
            for n in [2, 4] {
                let dec = load_tp(arch, &policy, tp(n, TpMode::Invariant)).unwrap();
                let got = logits_all(&dec, &ids);
                assert!(
                    bits(&got) == bits(&want),
                    "{arch} {} tp {n}: logits differ",
                    policy.name
                );
                for (g, w) in batch_greedy(&dec, arch).iter().zip(&want_gen) {
                    assert_eq!(g.token_ids, w.token_ids, "{arch} {} tp {n}", policy.name);
                    let (gb, wb): (Vec<u32>, Vec<u32>) = (
                        g.top_logprobs.iter().map(|x| x.to_bits()).collect(),
                        w.top_logprobs.iter().map(|x| x.to_bits()).collect(),
                    );
                    assert_eq!(gb, wb, "{arch} {} tp {n}: top logprobs", policy.name);
                }
            }
        }
    }
}

#[test]
fn standard_mode_differs_from_one_rank_somewhere_so_the_invariant_test_means_something() {
    // If candle's GEMM happened to give the split products bit for bit, the bitwise test above
    // would prove nothing about the tree; record which is the case on this machine.
    let policy = PrecisionPolicy::fp32();
    let mut any_differs = false;
    for arch in ARCHS {
        let ids = Expected::load(arch).ids("prompt_ids");
        let want = logits_all(&load(arch, &policy), &ids);
        for n in [2, 4] {
            let got = logits_all(
                &load_tp(arch, &policy, tp(n, TpMode::Standard)).unwrap(),
                &ids,
            );
            any_differs |= bits(&got) != bits(&want);
        }
    }
    println!(
        "standard mode bitwise equal to tp 1 on every fixture: {}",
        !any_differs
    );
    assert!(
        any_differs,
        "standard-mode all-reduce gave tp 1's bits on every fixture"
    );
}

#[test]
fn each_rank_holds_its_share_of_the_projections_and_lm_head() {
    let policy = PrecisionPolicy::fp32();
    // llama: untied head, so the head is split too; embeddings and norms are replicated.
    let one = load("llama", &policy);
    let two = load_tp("llama", &policy, tp(2, TpMode::Standard)).unwrap();
    let s = one.spec().clone();
    let replicated = 4
        * (s.vocab_size * s.hidden_size // embedding
        + (2 * s.num_layers + 1) * s.hidden_size); // norms
    let total = one.weight_bytes()["f32"];
    let rank = two.rank_weight_bytes(1)["f32"];
    assert_eq!(rank, replicated + (total - replicated) / 2);
    assert_eq!(two.weight_bytes()["f32"], 2 * rank);
    let layouts = two.shard_layouts();
    assert_eq!(layouts[1].heads, 2..4);
    assert_eq!(layouts[1].kv_heads, 1..2);
    // Four ranks over two kv heads: each holds the kv head its queries read.
    let four = load_tp("llama", &policy, tp(4, TpMode::Standard)).unwrap();
    let kv: Vec<_> = four
        .shard_layouts()
        .iter()
        .map(|l| l.kv_heads.clone())
        .collect();
    assert_eq!(kv, vec![0..1, 0..1, 1..2, 1..2]);
}

#[test]
fn splits_that_do_not_divide_are_refused_naming_the_field() {
    let policy = PrecisionPolicy::fp32();
    let err = load_tp("qwen2", &policy, tp(3, TpMode::Standard))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`num_attention_heads` = 4"), "{err}");
    let err = load_tp("qwen2", &policy, tp(8, TpMode::Standard))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`num_attention_heads` = 4"), "{err}");
    let err = load_tp("qwen2", &policy, tp(0, TpMode::Standard))
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least one rank"), "{err}");
}

#[test]
fn a_cache_from_another_split_is_refused() {
    let policy = PrecisionPolicy::fp32();
    let one = load("qwen3", &policy);
    let two = load_tp("qwen3", &policy, tp(2, TpMode::Standard)).unwrap();
    let mut cache = one.new_cache().unwrap();
    let seq = cache.add_sequence();
    let err = two
        .forward(&[(seq, &[1, 2][..])], &mut cache, LogitsFor::Last)
        .unwrap_err();
    assert!(err.to_string().contains("shards"), "{err}");
}

#[test]
fn the_embedded_model_loads_split_and_its_invariant_greedy_answers_do_not_depend_on_tp() {
    // 8 query heads over 2 kv heads (replicated at tp 4) and a 327-token vocabulary (an uneven
    // vocab-parallel split), through Model::load as the CLI uses it.
    use reprolm_engine::{LoadOptions, Model, ModelSource};
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/arith-qwen2-3m");
    let load_in = |size, mode| {
        let cpu = LoadOptions::cpu(PrecisionPolicy::fp32());
        let opts = LoadOptions {
            tp_size: size,
            kernels: reprolm_engine::kernels::Kernels {
                tp: mode,
                ..cpu.kernels
            },
            ..cpu
        };
        Model::load(&ModelSource::Local(dir.clone()), &opts)
    };
    let load = |size| load_in(size, TpMode::Invariant);
    let err = load_in(3, TpMode::Standard)
        .err()
        .expect("8 heads do not split over 3");
    let err = err.to_string();
    assert!(
        err.contains("config.json: field `num_attention_heads`: tensor parallelism over 3 ranks"),
        "{err}"
    );
    let err = load(3)
        .err()
        .expect("the invariant mode needs tp | 8")
        .to_string();
    assert!(
        err.contains("`tp` = 3") && err.contains("8 chunks"),
        "{err}"
    );
    let mut want: Option<Vec<Generation>> = None;
    for size in [1, 2, 4] {
        let model = load(size).unwrap();
        let reqs = question_requests(&model, &["What is 12 + 7 * 3?", "What is 90 - 45 + 8?"]);
        let got = model.generate(&reqs, &model.greedy(80), 2).unwrap();
        match &want {
            None => want = Some(got),
            Some(w) => {
                for (g, w) in got.iter().zip(w) {
                    assert_eq!(g.token_ids, w.token_ids, "tp {size}");
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&g.top_logprobs), bits(&w.top_logprobs), "tp {size}");
                }
            }
        }
    }
}

#[test]
fn deterministic_mode_with_the_sequential_order_splits_too() {
    // The sequential order cannot be cut into rank subtrees, so each rank reduces its own slice in
    // it: the result is close to one rank's, and the run must not fail.
    use reprolm_precision::{ComputeMode, ReductionOrder};
    let policy = PrecisionPolicy::fp32();
    let ids = Expected::load("qwen3").ids("prompt_ids");
    let mut one = load("qwen3", &policy);
    let mut two = load_tp("qwen3", &policy, tp(2, TpMode::Standard)).unwrap();
    let det = ComputeMode::Deterministic(ReductionOrder::SEQUENTIAL);
    for dec in [&mut one, &mut two] {
        let kernels = reprolm_engine::kernels::Kernels {
            mode: det,
            ..dec.kernels()
        };
        dec.set_kernels(kernels).unwrap();
    }
    let err = max_abs_diff(
        &to_f64(&logits_all(&two, &ids)),
        &to_f64(&logits_all(&one, &ids)),
    );
    assert!(err <= 1e-5, "{err}");
}
