//! Parity with Hugging Face transformers on tiny random-init Llama, Qwen2 and Qwen3 models (the
//! fixtures and their expected outputs are made by `tests/fixtures/make_fixtures.py`).

mod common;

use candle_core::DType;
use common::{eos_ids, load, max_abs_diff, Expected, ARCHS};
use reprolm_engine::{generate, LogitsFor, Request, SamplingParams};
use reprolm_precision::PrecisionPolicy;

fn logits_all(dec: &reprolm_engine::Decoder, ids: &[u32]) -> Vec<Vec<f64>> {
    let mut cache = dec.new_cache().unwrap();
    let seq = cache.add_sequence();
    let logits = dec
        .forward(&[(seq, ids)], &mut cache, LogitsFor::All)
        .unwrap();
    logits.to_dtype(DType::F64).unwrap().to_vec2().unwrap()
}

#[test]
fn fp32_logits_match_transformers() {
    for arch in ARCHS {
        let dec = load(arch, &PrecisionPolicy::fp32());
        let exp = Expected::load(arch);
        let got = logits_all(&dec, &exp.ids("prompt_ids"));
        let err = max_abs_diff(&got, &exp.f64_2("logits_f32"));
        println!("{arch}: fp32 logits max |ours - transformers| = {err:.3e}");
        assert!(err <= 1e-4, "{arch}: max abs error {err}");
    }
}

#[test]
fn prefill_in_pieces_equals_prefill_at_once() {
    // The cache path (prefix cached, then the rest) must give the logits of a single pass.
    for arch in ARCHS {
        let dec = load(arch, &PrecisionPolicy::fp32());
        let ids = Expected::load(arch).ids("prompt_ids");
        let whole = logits_all(&dec, &ids);
        let mut cache = dec.new_cache().unwrap();
        let seq = cache.add_sequence();
        let split = ids.len() / 2;
        dec.forward(&[(seq, &ids[..split])], &mut cache, LogitsFor::All)
            .unwrap();
        let mut tail = Vec::new();
        for &t in &ids[split..] {
            let l = dec
                .forward(&[(seq, &[t][..])], &mut cache, LogitsFor::Last)
                .unwrap();
            tail.push(
                l.flatten_all()
                    .unwrap()
                    .to_dtype(DType::F64)
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap(),
            );
        }
        let err = max_abs_diff(&whole[split..], &tail);
        assert!(err <= 1e-5, "{arch}: {err}");
    }
}

#[test]
fn greedy_continuation_and_top5_logprobs_match_transformers_generate() {
    for arch in ARCHS {
        let dec = load(arch, &PrecisionPolicy::fp32());
        let exp = Expected::load(arch);
        let want = exp.ids("greedy_ids");
        let params = SamplingParams {
            stop_token_ids: eos_ids(arch),
            ..SamplingParams::greedy(32)
        };
        let req = Request {
            prompt: exp.ids("prompt_ids"),
            problem_id: "p".into(),
            sample_index: 0,
        };
        let g = generate(&dec, &[req], &params, 1).unwrap().remove(0);
        assert_eq!(g.token_ids, want, "{arch}: greedy tokens");
        let want_ids = exp.ids2("greedy_top5_ids");
        let want_lp = exp.f32_2("greedy_top5_logprobs");
        let mut worst = 0f32;
        for (i, (ids, lps)) in want_ids.iter().zip(&want_lp).enumerate() {
            let (got_ids, got_lp): (Vec<u32>, Vec<f32>) = g.top(i).unzip();
            assert_eq!(&got_ids, ids, "{arch}: top-5 ids at step {i}");
            for (a, b) in got_lp.iter().zip(lps) {
                worst = worst.max((a - b).abs());
            }
        }
        println!(
            "{arch}: top-5 logprob max error {worst:.3e} over {} steps",
            want_ids.len()
        );
        assert!(worst <= 1e-4, "{arch}: {worst}");
    }
}

#[test]
fn a_padded_batch_gives_each_prompt_its_solo_greedy_tokens() {
    for arch in ARCHS {
        let dec = load(arch, &PrecisionPolicy::fp32());
        let exp = Expected::load(arch);
        let reqs = exp.batch_requests();
        let params = SamplingParams {
            stop_token_ids: eos_ids(arch),
            ..SamplingParams::greedy(16)
        };
        let together = generate(&dec, &reqs, &params, 4).unwrap();
        for (i, g) in together.iter().enumerate() {
            assert_eq!(
                g.token_ids,
                exp.ids(&format!("batch_greedy_{i}")),
                "{arch}: prompt {i} in a batch of 4"
            );
        }
        // And in every order: a sequence's batch position must not matter.
        let mut rev = reqs.clone();
        rev.reverse();
        let reversed = generate(&dec, &rev, &params, 4).unwrap();
        for (i, g) in reversed.iter().rev().enumerate() {
            assert_eq!(
                g.token_ids, together[i].token_ids,
                "{arch}: prompt {i} reversed"
            );
        }
    }
}

#[test]
fn seeded_sampling_is_reproducible_and_independent_of_batching() {
    let arch = "qwen2";
    let dec = load(arch, &PrecisionPolicy::fp32());
    let exp = Expected::load(arch);
    let reqs: Vec<Request> = (0..4)
        .flat_map(|i| {
            let prompt = exp.ids(&format!("batch_prompt_{i}"));
            (0..2).map(move |s| Request {
                prompt: prompt.clone(),
                problem_id: format!("q{i}"),
                sample_index: s,
            })
        })
        .collect();
    let params = SamplingParams {
        temperature: 1.0,
        top_p: 0.95,
        seed: 42,
        ..SamplingParams::greedy(24)
    };
    let solo = generate(&dec, &reqs, &params, 1).unwrap();
    let again = generate(&dec, &reqs, &params, 1).unwrap();
    assert_eq!(solo, again, "same seed, same outputs");
    for bs in [3, 8] {
        let batched = generate(&dec, &reqs, &params, bs).unwrap();
        for (a, b) in solo.iter().zip(&batched) {
            assert_eq!(a.token_ids, b.token_ids, "batch size {bs}");
        }
    }
    let mut rev = reqs.clone();
    rev.reverse();
    let reversed = generate(&dec, &rev, &params, 8).unwrap();
    for (a, b) in solo.iter().zip(reversed.iter().rev()) {
        assert_eq!(a.token_ids, b.token_ids, "reversed batch order");
    }
    // Different samples of one problem differ (the stream depends on the sample index).
    assert_ne!(solo[0].token_ids, solo[1].token_ids);
    let other_seed = SamplingParams { seed: 7, ..params };
    let changed = generate(&dec, &reqs, &other_seed, 8).unwrap();
    assert_ne!(
        changed.iter().map(|g| &g.token_ids).collect::<Vec<_>>(),
        solo.iter().map(|g| &g.token_ids).collect::<Vec<_>>()
    );
}

#[test]
fn model_load_applies_the_chat_template_as_transformers_does() {
    use reprolm_engine::{ChatMessage, ChatOptions, LoadOptions, Model, ModelSource};
    for arch in ARCHS {
        let opts = LoadOptions::cpu(PrecisionPolicy::fp32());
        let model = Model::load(&ModelSource::Local(common::fixture_dir(arch)), &opts).unwrap();
        let ids = model
            .prompt(
                &[ChatMessage::user("What is 2+3?")],
                &ChatOptions::default(),
            )
            .unwrap();
        assert_eq!(ids, Expected::load(arch).ids("chat_prompt_ids"), "{arch}");
        assert_eq!(model.greedy(8).stop_token_ids, eos_ids(arch));
        let out = model
            .generate(
                &[Request {
                    prompt: ids,
                    problem_id: "chat".into(),
                    sample_index: 0,
                }],
                &model.greedy(8),
                1,
            )
            .unwrap();
        assert_eq!(out[0].token_ids.len(), 8);
        assert!(!model.decode(&out[0].token_ids).unwrap().is_empty());
    }
}
