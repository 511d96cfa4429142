//! Batched generation: prefill, decode, per-token top-k log-probabilities, finish reasons.
//!
//! A [`Batch`] holds the running sequences and their paged KV cache. [`Batch::admit`] prefills new
//! requests into the cache beside the running ones (no sequence is padded or copied),
//! [`Batch::step`] decodes one token for every running sequence and hands back the ones that
//! finished, whose cache blocks go back to the pool. Static batching (the reference's fixed chunks) admits a chunk and
//! steps until it is empty; continuous batching admits a new request whenever one finishes.

use crate::device_top_k;
use crate::kv::{KvCache, SeqId};
use crate::models::decoder::LogitsFor;
use crate::models::Decoder;
use crate::sampling::{self, RequestRng, SamplingParams};
use crate::{Error, Result};
use candle_core::{DType, Tensor};

/// One prompt to continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The prompt's token ids (chat template already applied).
    pub prompt: Vec<u32>,
    /// The problem it belongs to; part of the key of its random stream.
    pub problem_id: String,
    /// Which sample of that problem (0 for greedy runs); part of the key of its random stream.
    pub sample_index: u32,
}

/// Why a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// It produced a stop (eos) token.
    Stop,
    /// It reached `max_tokens` or the model's context length.
    Length,
}

impl FinishReason {
    /// `stop` or `length`, as run records spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// The continuation of one [`Request`].
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Generated token ids, a final stop token included.
    pub token_ids: Vec<u32>,
    /// Log-probability of each generated token.
    pub token_logprobs: Vec<f32>,
    /// How many candidates per token the next two fields hold.
    pub k: usize,
    /// Per generated token, the `k` most likely token ids, most likely first (`len = n * k`).
    pub top_ids: Vec<u32>,
    /// Their float32 log-probabilities, aligned with `top_ids`.
    pub top_logprobs: Vec<f32>,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Number of prompt tokens.
    pub prompt_tokens: usize,
}

impl Generation {
    /// The top candidates of generated token `i` as (id, logprob) pairs.
    pub fn top(&self, i: usize) -> impl Iterator<Item = (u32, f32)> + '_ {
        let r = i * self.k..(i + 1) * self.k;
        self.top_ids[r.clone()]
            .iter()
            .copied()
            .zip(self.top_logprobs[r].iter().copied())
    }
}

struct Row {
    id: usize,
    seq: SeqId,
    rng: RequestRng,
    out: Generation,
    last: u32,
    position: usize,
}

/// The sequences being generated together, and their cache.
pub struct Batch<'a> {
    decoder: &'a Decoder,
    params: SamplingParams,
    cache: KvCache,
    rows: Vec<Row>,
    finished: Vec<(usize, Generation)>,
    tokens_generated: usize,
    prefill_chunk: Option<usize>,
}

impl<'a> Batch<'a> {
    /// An empty batch with a KV cache of the decoder's size
    /// ([`Decoder::set_kv_cache_size`]). `params` is validated here.
    pub fn new(decoder: &'a Decoder, params: SamplingParams) -> Result<Self> {
        params.validate()?;
        Ok(Batch {
            cache: decoder.new_cache()?,
            decoder,
            params,
            rows: Vec::new(),
            finished: Vec::new(),
            tokens_generated: 0,
            prefill_chunk: None,
        })
    }

    /// Prefills admitted prompts in forward calls of at most `tokens` positions of each prompt
    /// (chunked prefill), instead of one call over the whole prompt. The result is bitwise the
    /// same as one call: attention reduces each query over fixed splits of its own keys.
    ///
    /// ```
    /// # let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/qwen2");
    /// use reprolm_engine::{Batch, LoadOptions, Model, ModelSource, SamplingParams};
    /// use reprolm_precision::PrecisionPolicy;
    /// let model = Model::load(&ModelSource::parse(dir.to_str().unwrap())?, &LoadOptions::cpu(PrecisionPolicy::fp32()))?;
    /// let batch = Batch::new(&model.decoder, SamplingParams::greedy(4))?.with_prefill_chunk(16)?;
    /// assert!(Batch::new(&model.decoder, SamplingParams::greedy(4))?.with_prefill_chunk(0).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_prefill_chunk(mut self, tokens: usize) -> Result<Self> {
        if tokens == 0 {
            return Err(Error::InvalidRequest(
                "prefill chunk must be at least 1 token".into(),
            ));
        }
        self.prefill_chunk = Some(tokens);
        Ok(self)
    }

    /// Number of sequences still generating.
    pub fn active(&self) -> usize {
        self.rows.len()
    }

    /// Tokens generated so far by every sequence of this batch, finished ones included.
    pub fn tokens_generated(&self) -> usize {
        self.tokens_generated
    }

    /// The KV cache the batch's sequences live in.
    pub fn cache(&self) -> &KvCache {
        &self.cache
    }

    /// Prefills `requests` (each tagged with the caller's id) into the cache, packed without
    /// padding, picks their first tokens and adds them to the running batch. On an error (a
    /// full cache, say) none of them is admitted and the running sequences are untouched.
    pub fn admit(&mut self, requests: Vec<(usize, Request)>) -> Result<()> {
        if requests.is_empty() {
            return Ok(());
        }
        if let Some((id, _)) = requests.iter().find(|(_, r)| r.prompt.is_empty()) {
            return Err(Error::InvalidRequest(format!(
                "request {id} has an empty prompt"
            )));
        }
        let seqs: Vec<SeqId> = requests.iter().map(|_| self.cache.add_sequence()).collect();
        let logits = match self.prefill(&requests, &seqs) {
            Ok(l) => l,
            Err(e) => {
                for s in seqs {
                    self.cache.release(s);
                }
                return Err(e);
            }
        };
        let mut new_rows: Vec<Row> = requests
            .into_iter()
            .zip(seqs)
            .map(|((id, r), seq)| Row {
                id,
                seq,
                rng: RequestRng::new(self.params.seed, &r.problem_id, r.sample_index),
                out: Generation {
                    token_ids: Vec::new(),
                    token_logprobs: Vec::new(),
                    k: self.params.logprobs,
                    top_ids: Vec::new(),
                    top_logprobs: Vec::new(),
                    finish_reason: FinishReason::Length,
                    prompt_tokens: r.prompt.len(),
                },
                last: 0,
                position: r.prompt.len(),
            })
            .collect();
        self.pick(&mut new_rows, &logits)?;
        self.rows.extend(new_rows);
        self.retire()?;
        Ok(())
    }

    /// Runs the prompts through the decoder (in chunks when asked) and returns the logits of
    /// each prompt's last token, `(requests, vocab)`.
    fn prefill(&mut self, requests: &[(usize, Request)], seqs: &[SeqId]) -> Result<Tensor> {
        let longest = requests
            .iter()
            .map(|(_, r)| r.prompt.len())
            .max()
            .unwrap_or(0);
        let chunk = self.prefill_chunk.unwrap_or(longest).max(1);
        let mut last: Vec<Option<Tensor>> = vec![None; requests.len()];
        for c0 in (0..longest).step_by(chunk) {
            let (mut part, mut owners) = (Vec::new(), Vec::new());
            for (i, ((_, r), &seq)) in requests.iter().zip(seqs).enumerate() {
                if r.prompt.len() > c0 {
                    part.push((seq, &r.prompt[c0..(c0 + chunk).min(r.prompt.len())]));
                    owners.push(i);
                }
            }
            let logits = self
                .decoder
                .forward(&part, &mut self.cache, LogitsFor::Last)?;
            for (row, &i) in owners.iter().enumerate() {
                if c0 + chunk >= requests[i].1.prompt.len() {
                    last[i] = Some(logits.get(row)?);
                }
            }
        }
        let last: Vec<Tensor> = last
            .into_iter()
            .map(|t| t.expect("every prompt ends in some chunk"))
            .collect();
        Ok(Tensor::stack(&last, 0)?)
    }

    /// Decodes one token for every running sequence; returns the sequences that finished in this
    /// step (or during the last `admit`), tagged with their ids.
    pub fn step(&mut self) -> Result<Vec<(usize, Generation)>> {
        if !self.rows.is_empty() {
            let tokens: Vec<[u32; 1]> = self.rows.iter().map(|r| [r.last]).collect();
            let seqs: Vec<(SeqId, &[u32])> = self
                .rows
                .iter()
                .zip(&tokens)
                .map(|(r, t)| (r.seq, &t[..]))
                .collect();
            let logits = self
                .decoder
                .forward(&seqs, &mut self.cache, LogitsFor::Last)?;
            let mut rows = std::mem::take(&mut self.rows);
            self.pick(&mut rows, &logits)?;
            self.rows = rows;
            self.retire()?;
        }
        Ok(std::mem::take(&mut self.finished))
    }

    /// Chooses the next token of each row from `(rows, vocab)` logits and records its
    /// top-k log-probabilities; marks rows that produced a stop token.
    fn pick(&mut self, rows: &mut [Row], logits: &Tensor) -> Result<()> {
        let logits = logits.to_dtype(DType::F32)?;
        // Log-softmax in float32 over the (policy-dtype) logits, as the reference records them.
        let logprobs = device_top_k::log_softmax_rows(&logits)?;
        if self.params.is_greedy() && !logits.device().is_cpu() && !host_pick() {
            // On a GPU, choose on the device and copy back k candidates, not the vocabulary.
            let picks = device_top_k::pick_rows(&logits, &logprobs, self.params.logprobs)?;
            for (row, p) in rows.iter_mut().zip(picks) {
                for (id, v) in p.top {
                    row.out.top_ids.push(id);
                    row.out.top_logprobs.push(v);
                }
                self.record(row, p.token, p.token_logprob);
            }
            return Ok(());
        }
        let logits: Vec<Vec<f32>> = logits.to_vec2()?;
        let logprobs: Vec<Vec<f32>> = logprobs.to_vec2()?;
        for (i, row) in rows.iter_mut().enumerate() {
            let token = sampling::choose(&logits[i], &self.params, &mut row.rng);
            let lp = &logprobs[i];
            for (id, v) in sampling::top_k(lp, self.params.logprobs) {
                row.out.top_ids.push(id);
                row.out.top_logprobs.push(v);
            }
            self.record(row, token, lp[token as usize]);
        }
        Ok(())
    }

    /// Appends the chosen token to its row and marks the row stopped on a stop token.
    fn record(&mut self, row: &mut Row, token: u32, logprob: f32) {
        row.out.token_ids.push(token);
        row.out.token_logprobs.push(logprob);
        row.last = token;
        row.position += 1;
        self.tokens_generated += 1;
        if self.params.stop_token_ids.contains(&token) {
            row.out.finish_reason = FinishReason::Stop;
        }
    }

    /// Moves finished rows out of the batch and returns their cache blocks to the pool.
    fn retire(&mut self) -> Result<()> {
        let is_done = |r: &Row| {
            r.out.finish_reason == FinishReason::Stop
                || r.out.token_ids.len() >= self.params.max_tokens
                || r.position >= self.decoder.spec().max_position_embeddings
        };
        if !self.rows.iter().any(is_done) {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        for r in rows {
            if is_done(&r) {
                self.cache.release(r.seq);
                self.finished.push((r.id, r.out));
            } else {
                self.rows.push(r);
            }
        }
        Ok(())
    }
}

/// `REPROLM_HOST_PICK=1` makes a GPU run choose tokens on the host, as the CPU does (a check of
/// the device-side choice). Read once per process: this is asked at every decode step.
pub(crate) fn host_pick() -> bool {
    static HOST_PICK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HOST_PICK.get_or_init(|| std::env::var("REPROLM_HOST_PICK").is_ok_and(|v| v == "1"))
}

/// Generates continuations of `requests` in static batches of `batch_size` prompts, in order,
/// each batch run to completion before the next starts (the reference implementation's scheme).
/// Results come back in request order.
pub fn generate(
    decoder: &Decoder,
    requests: &[Request],
    params: &SamplingParams,
    batch_size: usize,
) -> Result<Vec<Generation>> {
    generate_chunked(decoder, requests, params, batch_size, None)
}

/// [`generate`], with each batch's prompts prefilled in chunks of `prefill_chunk` tokens when
/// given (see [`Batch::with_prefill_chunk`]).
pub fn generate_chunked(
    decoder: &Decoder,
    requests: &[Request],
    params: &SamplingParams,
    batch_size: usize,
    prefill_chunk: Option<usize>,
) -> Result<Vec<Generation>> {
    if batch_size == 0 {
        return Err(Error::InvalidRequest(
            "batch size must be at least 1".into(),
        ));
    }
    let mut out: Vec<Option<Generation>> = vec![None; requests.len()];
    for (c, chunk) in requests.chunks(batch_size).enumerate() {
        let mut batch = Batch::new(decoder, params.clone())?;
        if let Some(tokens) = prefill_chunk {
            batch = batch.with_prefill_chunk(tokens)?;
        }
        batch.admit(
            chunk
                .iter()
                .cloned()
                .enumerate()
                .map(|(i, r)| (c * batch_size + i, r))
                .collect(),
        )?;
        loop {
            for (id, g) in batch.step()? {
                out[id] = Some(g);
            }
            if batch.active() == 0 {
                break;
            }
        }
    }
    Ok(out
        .into_iter()
        .map(|g| g.expect("every request finishes"))
        .collect())
}
