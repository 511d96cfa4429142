//! Prefill and decode speed of a loaded decoder, measured the way a run uses it.
//!
//! The timed work is [`Scheduler::admit_waiting`] (prefill of the whole batch and the choice of the first
//! tokens) and then [`Scheduler::step`] until every row has its tokens, top-k log-probabilities
//! included, because that is what an evaluation pays for. Stop tokens are ignored so that every
//! row decodes exactly `new_tokens`. On a GPU the device is synchronised before each clock read, so
//! queued kernels are not mistaken for finished ones.

use crate::generate::Request;
use crate::models::Decoder;
use crate::sampling::SamplingParams;
use crate::scheduler::{Batching, Scheduler};
use crate::{Error, Result};
use rand::{Rng, SeedableRng};
use std::time::Instant;

/// One measured configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    /// Sequences decoded together.
    pub batch: usize,
    /// Tokens of every prompt (random ids, all the same length, so no padding).
    pub prompt_tokens: usize,
    /// Tokens generated per sequence, the first one (chosen by the prefill) included.
    pub new_tokens: usize,
}

/// Measured speed of one [`Workload`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    /// What was run.
    pub workload: Workload,
    /// Seconds of the prefill (all prompts, first token chosen).
    pub prefill_seconds: f64,
    /// Seconds of the remaining `new_tokens - 1` decode steps.
    pub decode_seconds: f64,
}

impl Throughput {
    /// Prompt tokens processed per second by the prefill.
    pub fn prefill_tokens_per_second(&self) -> f64 {
        (self.workload.batch * self.workload.prompt_tokens) as f64 / self.prefill_seconds
    }

    /// Tokens generated per second by the decode steps, over all rows.
    pub fn decode_tokens_per_second(&self) -> f64 {
        (self.workload.batch * (self.workload.new_tokens - 1)) as f64 / self.decode_seconds
    }

    /// Milliseconds per decode step (one token for every row).
    pub fn decode_step_ms(&self) -> f64 {
        1e3 * self.decode_seconds / (self.workload.new_tokens - 1) as f64
    }
}

/// Random prompt ids for `workload`, the same for the same `seed` and vocabulary size, so that
/// another implementation can be fed the very same prompts.
pub fn random_prompts(workload: &Workload, vocab_size: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..workload.batch)
        .map(|_| {
            (0..workload.prompt_tokens)
                .map(|_| rng.random_range(0..vocab_size as u32))
                .collect()
        })
        .collect()
}

/// Runs `prompts` (one per row, equal lengths) for `new_tokens` greedy tokens and times prefill
/// and decode.
pub fn measure(decoder: &Decoder, prompts: &[Vec<u32>], new_tokens: usize) -> Result<Throughput> {
    Ok(measure_generations(decoder, prompts, new_tokens)?.0)
}

/// [`measure`], also returning each row's generated token ids (in prompt order), for comparing
/// what two configurations computed as well as how fast.
pub fn measure_generations(
    decoder: &Decoder,
    prompts: &[Vec<u32>],
    new_tokens: usize,
) -> Result<(Throughput, Vec<Vec<u32>>)> {
    measure_sampled(decoder, prompts, new_tokens, 0.0, 1.0)
}

/// [`measure_generations`] with tokens sampled at `temperature` and `top_p` (0 and 1: greedy),
/// for the cost of sampling against greedy decoding.
pub fn measure_sampled(
    decoder: &Decoder,
    prompts: &[Vec<u32>],
    new_tokens: usize,
    temperature: f64,
    top_p: f64,
) -> Result<(Throughput, Vec<Vec<u32>>)> {
    let prompt_tokens = prompts.first().map_or(0, Vec::len);
    if prompts.is_empty() || prompt_tokens == 0 || new_tokens < 2 {
        return Err(Error::InvalidRequest(
            "a throughput measurement needs at least one non-empty prompt and 2 new tokens".into(),
        ));
    }
    if prompts.iter().any(|p| p.len() != prompt_tokens) {
        return Err(Error::InvalidRequest(
            "throughput prompts must all have the same length".into(),
        ));
    }
    let params = SamplingParams {
        stop_token_ids: Vec::new(),
        temperature,
        top_p,
        ..SamplingParams::greedy(new_tokens)
    };
    let device = decoder.device();
    let mut scheduler =
        Scheduler::new(decoder, params, Batching::Continuous, prompts.len().max(1))?;
    for (i, p) in prompts.iter().enumerate() {
        let request = Request {
            prompt: p.clone(),
            problem_id: format!("throughput-{i}"),
            sample_index: 0,
        };
        scheduler.submit(i, request);
    }
    device.synchronize()?;
    let start = Instant::now();
    scheduler.admit_waiting()?;
    device.synchronize()?;
    let prefill_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut tokens = vec![Vec::new(); prompts.len()];
    for (id, g) in scheduler.run_to_end()? {
        tokens[id] = g.token_ids;
    }
    device.synchronize()?;
    let decode_seconds = start.elapsed().as_secs_f64();
    debug_assert!(tokens.iter().all(|t| t.len() == new_tokens));
    let t = Throughput {
        workload: Workload {
            batch: prompts.len(),
            prompt_tokens,
            new_tokens,
        },
        prefill_seconds,
        decode_seconds,
    };
    Ok((t, tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_reproducible_and_in_range() {
        let w = Workload {
            batch: 3,
            prompt_tokens: 7,
            new_tokens: 4,
        };
        let a = random_prompts(&w, 50, 1);
        assert_eq!(a, random_prompts(&w, 50, 1));
        assert_ne!(a, random_prompts(&w, 50, 2));
        assert_eq!(a.len(), 3);
        assert!(a.iter().all(|p| p.len() == 7 && p.iter().all(|&t| t < 50)));
    }

    #[test]
    fn measures_every_row_for_exactly_the_new_tokens() -> Result<()> {
        use crate::{LoadOptions, Model, ModelSource};
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/qwen2");
        let policy = reprolm_precision::PrecisionPolicy::fp32();
        let model = Model::load(&ModelSource::Local(dir), &LoadOptions::cpu(policy))?;
        let w = Workload {
            batch: 3,
            prompt_tokens: 5,
            new_tokens: 4,
        };
        let prompts = random_prompts(&w, model.decoder.spec().vocab_size, 0);
        let t = measure(&model.decoder, &prompts, w.new_tokens)?;
        assert_eq!(t.workload, w);
        assert!(t.prefill_seconds > 0.0 && t.decode_seconds > 0.0);
        assert!((t.decode_tokens_per_second() * t.decode_seconds - 9.0).abs() < 1e-9);
        // The tokens are those of an ordinary greedy batch over the same prompts.
        let (_, tokens) = measure_generations(&model.decoder, &prompts, w.new_tokens)?;
        let requests: Vec<Request> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| Request {
                prompt: p.clone(),
                problem_id: format!("p{i}"),
                sample_index: 0,
            })
            .collect();
        let greedy = crate::generate(
            &model.decoder,
            &requests,
            &SamplingParams::greedy(w.new_tokens),
            w.batch,
        )?;
        assert_eq!(
            tokens,
            greedy.into_iter().map(|g| g.token_ids).collect::<Vec<_>>()
        );
        assert!(measure(&model.decoder, &prompts, 1).is_err());
        assert!(measure(&model.decoder, &[vec![1, 2], vec![3]], 3).is_err());
        Ok(())
    }
}
