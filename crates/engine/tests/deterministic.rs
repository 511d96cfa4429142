//! Batch invariance: a sequence's greedy tokens and top-5 log-probabilities are bitwise the same
//! whatever batch it runs in (size 1, 3, 8 or 32), wherever it sits in the batch, whatever other
//! prompts share it, whether it joins a running batch, and however its prompt is chunked in
//! prefill; for the fp32, bf16 and layercast policies, in deterministic mode and in the fast path
//! alike (both reduce every matmul in a fixed order and read the paged cache through the same
//! attention).

mod common;

use common::max_abs_diff_tensors;

use reprolm_engine::{
    Batching, ChatMessage, ChatOptions, Decoder, Generation, LoadOptions, Model, ModelSource,
    Request, SamplingParams, Scheduler,
};
use reprolm_precision::{ComputeMode, PrecisionPolicy, ReductionOrder};
use std::path::PathBuf;

const DET: ComputeMode = ComputeMode::Deterministic(ReductionOrder::SEQUENTIAL);

/// One way of running a set of prompts.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Static batches of this many prompts.
    batch: usize,
    /// Prefill chunk, if any.
    chunk: Option<usize>,
    /// Prompt positions of one prefill call over all prompts, if not the default.
    budget: Option<usize>,
    /// Where the prompts under test go: interleaved among the fillers with this stride offset.
    offset: usize,
}

fn load_embedded(policy: &str) -> Model {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/arith-qwen2-3m");
    Model::load(
        &ModelSource::Local(dir),
        &LoadOptions::cpu(PrecisionPolicy::preset(policy).unwrap()),
    )
    .unwrap()
}

/// Chat prompts for the embedded model: the prompts under test and fillers of other lengths.
fn arith_prompts(model: &Model, n: usize, salt: u64) -> Vec<Vec<u32>> {
    let mut s = salt;
    let mut next = |m: u64| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) % m
    };
    (0..n)
        .map(|_| {
            let terms = 2 + next(4) as usize;
            let mut q = format!("What is {}", next(100));
            for _ in 1..terms {
                let op = ["+", "-", "*"][next(3) as usize];
                q += &format!(" {op} {}", next(100));
            }
            q += "?";
            model
                .prompt(&[ChatMessage::user(q)], &ChatOptions::default())
                .unwrap()
        })
        .collect()
}

/// A request named after its prompt's content, so that its random stream (keyed by problem id)
/// is the same wherever it runs.
fn request(prompt: &[u32]) -> Request {
    let hash = prompt.iter().fold(0xcbf29ce484222325u64, |h, &t| {
        (h ^ t as u64).wrapping_mul(0x100000001b3)
    });
    Request {
        prompt: prompt.to_vec(),
        problem_id: format!("p{hash:016x}"),
        sample_index: 0,
    }
}

/// Runs `targets` among `fillers` in static batches as `layout` says; returns the targets'
/// generations in order.
fn run_static(
    dec: &Decoder,
    params: &SamplingParams,
    targets: &[Vec<u32>],
    fillers: &[Vec<u32>],
    layout: Layout,
) -> Vec<Generation> {
    // Interleave: target t goes to slot offset + t * stride of the combined list.
    let total = (targets.len() + fillers.len()).max(layout.batch);
    let stride = (total / targets.len()).max(1);
    let mut order: Vec<(Option<usize>, &Vec<u32>)> = Vec::new();
    let mut f = fillers.iter().cycle();
    let mut t = 0;
    for slot in 0..total {
        if t < targets.len() && slot >= layout.offset && (slot - layout.offset) % stride == 0 {
            order.push((Some(t), &targets[t]));
            t += 1;
        } else {
            order.push((None, f.next().unwrap()));
        }
    }
    while t < targets.len() {
        order.push((Some(t), &targets[t]));
        t += 1;
    }
    // Static groups of `layout.batch` consecutive requests: the chunks of `order`.
    let mut scheduler =
        Scheduler::new(dec, params.clone(), Batching::Static, layout.batch).unwrap();
    if let Some(n) = layout.chunk {
        scheduler = scheduler.with_prefill_chunk(n).unwrap();
    }
    if let Some(n) = layout.budget {
        scheduler = scheduler.with_prefill_tokens(n).unwrap();
    }
    for (i, (_, p)) in order.iter().enumerate() {
        scheduler.submit(i, request(p));
    }
    let mut out: Vec<Option<Generation>> = vec![None; targets.len()];
    for (id, g) in scheduler.run_to_end().unwrap() {
        if let (Some(t), _) = order[id] {
            out[t] = Some(g);
        }
    }
    out.into_iter().map(Option::unwrap).collect()
}

/// Runs `targets` one at a time into a batch that keeps `fillers.len()` other sequences running
/// (continuous batching): each target joins a batch whose other rows are mid-generation.
fn run_joining(
    dec: &Decoder,
    params: &SamplingParams,
    targets: &[Vec<u32>],
    fillers: &[Vec<u32>],
) -> Vec<Generation> {
    let mut scheduler = Scheduler::new(
        dec,
        params.clone(),
        Batching::Continuous,
        fillers.len() + targets.len(),
    )
    .unwrap();
    for (i, p) in fillers.iter().enumerate() {
        scheduler.submit(1000 + i, request(p));
    }
    let mut out: Vec<Option<Generation>> = vec![None; targets.len()];
    let mut collect = |finished: Vec<(usize, Generation)>| {
        for (id, g) in finished {
            if id < 1000 {
                out[id] = Some(g);
            }
        }
    };
    for (t, p) in targets.iter().enumerate() {
        for _ in 0..2 {
            collect(scheduler.step().unwrap());
        }
        scheduler.submit(t, request(p));
    }
    while !scheduler.is_done() {
        collect(scheduler.step().unwrap());
    }
    out.into_iter().map(Option::unwrap).collect()
}

/// Whether two runs' tokens, top ids and top-k log-probabilities are all bitwise equal, and the
/// largest log-probability difference up to each row's first differing token (after a fork the
/// rows continue different texts, and their numbers are no longer comparable).
fn compare(a: &[Generation], b: &[Generation]) -> (bool, f32) {
    let mut same = true;
    let mut max = 0f32;
    for (x, y) in a.iter().zip(b) {
        same &= x.token_ids == y.token_ids && x.top_ids == y.top_ids;
        let bits = |g: &Generation| {
            g.top_logprobs
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>()
        };
        same &= bits(x) == bits(y);
        let shared = x
            .token_ids
            .iter()
            .zip(&y.token_ids)
            .position(|(p, q)| p != q)
            .map_or(x.token_ids.len().min(y.token_ids.len()), |i| i + 1);
        let k = x.k;
        for (p, q) in x.top_logprobs[..shared * k]
            .iter()
            .zip(&y.top_logprobs[..shared * k])
        {
            max = max.max((p - q).abs());
        }
    }
    (same, max)
}

/// The layouts every policy is checked under, against batch 1 without chunking.
const LAYOUTS: [(&str, Layout); 7] = [
    (
        "batch 3",
        Layout {
            batch: 3,
            chunk: None,
            budget: None,
            offset: 1,
        },
    ),
    (
        "batch 8",
        Layout {
            batch: 8,
            chunk: None,
            budget: None,
            offset: 5,
        },
    ),
    (
        "batch 32",
        Layout {
            batch: 32,
            chunk: None,
            budget: None,
            offset: 2,
        },
    ),
    (
        "batch 1, prefill chunks of 7",
        Layout {
            batch: 1,
            chunk: Some(7),
            budget: None,
            offset: 0,
        },
    ),
    (
        "batch 8, prefill chunks of 5",
        Layout {
            batch: 8,
            chunk: Some(5),
            budget: None,
            offset: 3,
        },
    ),
    (
        "batch 32, prefill chunks of 16",
        Layout {
            batch: 32,
            chunk: Some(16),
            budget: None,
            offset: 0,
        },
    ),
    (
        "batch 32, prefill calls of 40 positions",
        Layout {
            batch: 32,
            chunk: None,
            budget: Some(40),
            offset: 4,
        },
    ),
];

/// Runs every layout in `mode`; returns (layout name, bitwise equal, max logprob difference).
fn measure(model: &mut Model, mode: ComputeMode, new_tokens: usize) -> Vec<(String, bool, f32)> {
    model
        .decoder
        .set_kernels(reprolm_engine::kernels::Kernels {
            mode,
            ..model.decoder.kernels()
        })
        .unwrap();
    let targets = arith_prompts(model, 4, 1);
    let fillers = arith_prompts(model, 31, 2);
    let params = SamplingParams {
        stop_token_ids: Vec::new(),
        ..model.greedy(new_tokens)
    };
    let dec = &model.decoder;
    let one = Layout {
        batch: 1,
        chunk: None,
        budget: None,
        offset: 0,
    };
    let reference = run_static(dec, &params, &targets, &[], one);
    let mut rows = Vec::new();
    for (name, layout) in LAYOUTS {
        let got = run_static(dec, &params, &targets, &fillers, layout);
        let (same, max) = compare(&reference, &got);
        rows.push((name.to_string(), same, max));
    }
    // The same prompts in reverse order must give the same per-prompt results.
    let rev: Vec<Vec<u32>> = targets.iter().rev().cloned().collect();
    let mut got = run_static(
        dec,
        &params,
        &rev,
        &fillers[..4],
        Layout {
            batch: 8,
            chunk: None,
            budget: None,
            offset: 0,
        },
    );
    got.reverse();
    let (same, max) = compare(&reference, &got);
    rows.push(("batch 8, reversed order".into(), same, max));
    let got = run_joining(dec, &params, &targets, &fillers[..5]);
    let (same, max) = compare(&reference, &got);
    rows.push(("joining a running batch of 5".into(), same, max));
    rows
}

#[test]
fn deterministic_mode_is_bitwise_batch_invariant_on_the_embedded_model() {
    for policy in ["fp32", "bf16", "layercast"] {
        let mut model = load_embedded(policy);
        for (name, same, max) in measure(&mut model, DET, 12) {
            println!("deterministic {policy:9} {name:32} bitwise {same}  max |Δ logprob| {max:e}");
            assert!(
                same,
                "{policy}, {name}: differs from batch 1 by up to {max:e}"
            );
        }
    }
}

#[test]
fn the_fast_path_is_bitwise_batch_invariant_on_the_embedded_model() {
    for policy in ["fp32", "bf16"] {
        let mut model = load_embedded(policy);
        for (name, same, max) in measure(&mut model, ComputeMode::Fast, 12) {
            println!("fast          {policy:9} {name:32} bitwise {same}  max |Δ logprob| {max:e}");
            assert!(
                same,
                "{policy}, {name}: the fast path differs from batch 1 by up to {max:e}"
            );
        }
    }
}

/// The CPU path's bits do not depend on how many threads compute them: every reduction runs in a
/// fixed order whichever thread takes it (greedy tokens and top-k log-probabilities of a batch of
/// 4, under rayon pools of 1, 2 and 3 threads).
#[test]
fn the_thread_count_does_not_change_a_bit_on_the_embedded_model() {
    for policy in ["fp32", "bf16"] {
        let model = load_embedded(policy);
        let targets = arith_prompts(&model, 4, 3);
        let params = SamplingParams {
            stop_token_ids: Vec::new(),
            ..model.greedy(12)
        };
        let four = Layout {
            batch: 4,
            chunk: None,
            budget: None,
            offset: 0,
        };
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| run_static(&model.decoder, &params, &targets, &[], four))
        };
        let one = run(1);
        for threads in [2, 3] {
            let (same, max) = compare(&one, &run(threads));
            assert!(
                same,
                "{policy}: {threads} threads differ from 1 by up to {max:e}"
            );
        }
    }
}

/// On the CPU the portable tier (`--kernels portable`) runs the invariant kernels' order through
/// its own entry points (the portable GEMM, attention and SwiGLU, tokens chosen from logits copied
/// to the host): greedy tokens and top-5 log-probabilities are the invariant kernels' bits.
#[test]
fn the_portable_tier_gives_the_invariant_kernels_bits_on_the_cpu() {
    for policy in ["bf16", "layercast"] {
        let mut model = load_embedded(policy);
        let targets = arith_prompts(&model, 3, 11);
        let params = SamplingParams {
            stop_token_ids: Vec::new(),
            ..model.greedy(10)
        };
        let three = Layout {
            batch: 3,
            chunk: None,
            budget: None,
            offset: 0,
        };
        let invariant = run_static(&model.decoder, &params, &targets, &[], three);
        model
            .decoder
            .set_kernels(reprolm_engine::kernels::Kernels {
                choice: reprolm_engine::kernels::KernelChoice::Portable,
                ..model.decoder.kernels()
            })
            .unwrap();
        assert!(model.decoder.kernels().portable());
        let portable = run_static(&model.decoder, &params, &targets, &[], three);
        let (same, max) = compare(&invariant, &portable);
        assert!(
            same,
            "{policy}: portable differs from invariant by up to {max:e}"
        );
    }
}

/// The tiny fixtures cover Llama and Qwen3 (q/k norms) and f16 and f64 policies cheaply.
#[test]
fn every_family_and_policy_is_batch_invariant() {
    let policies = [
        PrecisionPolicy::preset("bf16").unwrap(),
        PrecisionPolicy::preset("fp16").unwrap(),
        PrecisionPolicy::preset("fp32-head").unwrap(),
        PrecisionPolicy::fp64_reference(),
    ];
    for (arch, mode) in common::ARCHS
        .iter()
        .flat_map(|a| [(a, DET), (a, ComputeMode::Fast)])
    {
        for policy in &policies {
            let mut dec = common::load(arch, policy);
            dec.set_kernels(reprolm_engine::kernels::Kernels {
                mode,
                ..dec.kernels()
            })
            .unwrap();
            let vocab = dec.spec().vocab_size as u64;
            let mut s = 7u64;
            let mut prompt = |len: usize| -> Vec<u32> {
                (0..len)
                    .map(|_| {
                        s = s
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((s >> 33) % vocab) as u32
                    })
                    .collect()
            };
            let targets: Vec<Vec<u32>> = [9, 17, 4].iter().map(|&n| prompt(n)).collect();
            let fillers: Vec<Vec<u32>> = [3, 21, 12, 6, 15].iter().map(|&n| prompt(n)).collect();
            let params = SamplingParams::greedy(6);
            let one = Layout {
                batch: 1,
                chunk: None,
                budget: None,
                offset: 0,
            };
            let reference = run_static(&dec, &params, &targets, &[], one);
            for layout in [
                Layout {
                    batch: 4,
                    chunk: None,
                    budget: None,
                    offset: 1,
                },
                Layout {
                    batch: 8,
                    chunk: Some(5),
                    budget: None,
                    offset: 2,
                },
                Layout {
                    batch: 8,
                    chunk: None,
                    budget: Some(11),
                    offset: 0,
                },
            ] {
                let got = run_static(&dec, &params, &targets, &fillers, layout);
                let (same, max) = compare(&reference, &got);
                assert!(
                    same,
                    "{arch} {} {mode:?} {layout:?}: differs by {max:e}",
                    policy.name
                );
            }
            let got = run_joining(&dec, &params, &targets, &fillers[..3]);
            assert!(
                compare(&reference, &got).0,
                "{arch} {} {mode:?}: joining",
                policy.name
            );
        }
    }
}

/// Deterministic mode computes the same function as the fast mode, up to rounding.
#[test]
fn deterministic_logits_stay_close_to_the_fast_ones() {
    use reprolm_engine::LogitsFor;
    for policy in ["fp32", "bf16"] {
        let mut model = load_embedded(policy);
        let prompts = arith_prompts(&model, 1, 3);
        let logits = |model: &Model| {
            let mut cache = model.decoder.new_cache().unwrap();
            let seq = cache.add_sequence();
            model
                .decoder
                .forward(&[(seq, &prompts[0][..])], &mut cache, LogitsFor::All)
                .unwrap()
                .to_dtype(candle_core::DType::F32)
                .unwrap()
        };
        let fast = logits(&model);
        model
            .decoder
            .set_kernels(reprolm_engine::kernels::Kernels {
                mode: DET,
                ..model.decoder.kernels()
            })
            .unwrap();
        let det = logits(&model);
        let diff = max_abs_diff_tensors(&fast, &det);
        println!("{policy}: max |fast − deterministic| logit {diff:e}");
        let tol = if policy == "fp32" { 1e-3 } else { 0.25 };
        assert!(diff < tol, "{policy}: {diff}");
    }
}

/// Sampled runs too, in deterministic mode: each draw is keyed by (seed, problem id, sample
/// index) and the token's position, so with batch-invariant logits the samples are the same at
/// any batch size.
#[test]
fn sampled_tokens_do_not_depend_on_the_batch() {
    let mut dec = common::load("qwen2", &PrecisionPolicy::preset("bf16").unwrap());
    dec.set_kernels(reprolm_engine::kernels::Kernels {
        mode: DET,
        ..dec.kernels()
    })
    .unwrap();
    let prompts: Vec<Vec<u32>> = (0..6u32)
        .map(|i| (0..5 + 3 * i).map(|j| (j * 31 + i * 7) % 384).collect())
        .collect();
    let params = SamplingParams {
        temperature: 0.9,
        top_p: 0.95,
        seed: 3,
        ..SamplingParams::greedy(10)
    };
    let (targets, fillers) = prompts.split_at(2);
    let one = run_static(
        &dec,
        &params,
        targets,
        &[],
        Layout {
            batch: 1,
            chunk: None,
            budget: None,
            offset: 0,
        },
    );
    let four = run_static(
        &dec,
        &params,
        targets,
        fillers,
        Layout {
            batch: 4,
            chunk: Some(3),
            budget: None,
            offset: 1,
        },
    );
    assert!(compare(&one, &four).0);
}

/// Sampled generation (temperature 1, top-p 0.95, eight samples per prompt) draws the same
/// tokens with the same log-probability bits one sequence at a time and in a continuous batch of
/// 16; and a KV cache too small for that batch preempts sequences and recomputes them later,
/// with the same results again.
#[test]
fn sampled_tokens_do_not_depend_on_the_batch_or_on_preemption() {
    use reprolm_engine::KvCacheSize;
    let mut model = load_embedded("bf16");
    let prompts = arith_prompts(&model, 4, 11);
    let params = SamplingParams {
        temperature: 1.0,
        top_p: 0.95,
        stop_token_ids: model.generation_config.eos_token_ids.clone(),
        ..SamplingParams::greedy(40)
    };
    let requests: Vec<Request> = prompts
        .iter()
        .enumerate()
        .flat_map(|(p, prompt)| {
            (0..8).map(move |s| Request {
                prompt: prompt.clone(),
                problem_id: format!("problem-{p}"),
                sample_index: s,
            })
        })
        .collect();
    let run = |dec: &Decoder, batching: Batching, seqs: usize| {
        let mut scheduler = Scheduler::new(dec, params.clone(), batching, seqs).unwrap();
        for (i, r) in requests.iter().enumerate() {
            scheduler.submit(i, r.clone());
        }
        let mut finished = scheduler.run_to_end().unwrap();
        assert_eq!(finished.len(), requests.len());
        finished.sort_by_key(|(id, _)| *id);
        let out: Vec<Generation> = finished.into_iter().map(|(_, g)| g).collect();
        (out, scheduler.preemptions())
    };
    let (one, _) = run(&model.decoder, Batching::Static, 1);
    let (sixteen, _) = run(&model.decoder, Batching::Continuous, 16);
    let (same, max) = compare(&one, &sixteen);
    assert!(same, "batch 16 differs from batch 1 by up to {max:e}");
    // The samples of a prompt differ from each other: the noise is per sample.
    let distinct: Vec<usize> = (0..4)
        .map(|p| {
            let texts: std::collections::BTreeSet<&Vec<u32>> = one[p * 8..(p + 1) * 8]
                .iter()
                .map(|g| &g.token_ids)
                .collect();
            texts.len()
        })
        .collect();
    println!("distinct samples per prompt: {distinct:?}");
    assert!(
        distinct.iter().any(|&d| d > 1),
        "every prompt's eight samples are the same"
    );
    // A cache of a few blocks more than the longest sequence needs: 16 sequences cannot all fit.
    let probe = model
        .decoder
        .new_cache_of(KvCacheSize::Bytes(1 << 20))
        .unwrap();
    let block_bytes = (probe.bytes() / probe.blocks()) as u64;
    let longest = prompts.iter().map(Vec::len).max().unwrap() + params.max_tokens;
    let blocks = reprolm_engine::KvCache::blocks_for(longest) as u64 + 6;
    model
        .decoder
        .set_kv_cache_size(KvCacheSize::Bytes(blocks * block_bytes));
    let (tight, preemptions) = run(&model.decoder, Batching::Continuous, 16);
    assert!(
        preemptions > 0,
        "a cache of {blocks} blocks never preempted"
    );
    let (same, max) = compare(&one, &tight);
    assert!(
        same,
        "with {preemptions} preemptions the results differ by up to {max:e}"
    );
}

/// A request the batch cannot take (here an empty prompt) fails the step that admits it, and
/// neither it nor the requests admitted with it are lost: they wait again, in order, for the
/// caller to decide.
#[test]
fn a_failed_admission_keeps_its_requests_waiting() {
    let dec = common::load("qwen2", &PrecisionPolicy::fp32());
    let mut scheduler =
        Scheduler::new(&dec, SamplingParams::greedy(2), Batching::Continuous, 4).unwrap();
    for (i, prompt) in [vec![5, 6, 7], vec![], vec![8, 9]].into_iter().enumerate() {
        scheduler.submit(
            i,
            Request {
                prompt,
                problem_id: format!("p{i}"),
                sample_index: 0,
            },
        );
    }
    let err = scheduler.step().unwrap_err();
    assert!(err.to_string().contains("empty prompt"), "{err}");
    assert_eq!((scheduler.waiting(), scheduler.active()), (3, 0));
    assert_eq!(scheduler.cache().free_blocks(), scheduler.cache().blocks());
}
