//! Batched generation: prefill, decode, per-token top-k log-probabilities, finish reasons.
//!
//! A `Batch` holds the running sequences and their paged KV cache: `admit` prefills new (or
//! preempted) requests into the cache beside the running ones (no sequence is padded or copied),
//! `step` decodes one token for every running sequence and hands back the ones that finished,
//! whose cache blocks go back to the pool. Which requests run when is the
//! [`Scheduler`](crate::Scheduler)'s decision; [`generate`](crate::generate()) is the simplest use of it.

use crate::device_top_k;
use crate::kernels::TokenPick;
use crate::kv::{KvCache, SeqId};
use crate::models::decoder::LogitsFor;
use crate::models::Decoder;
use crate::sampling::{self, NoiseKey, SamplingParams};
use crate::{Error, Result};
use candle_core::{DType, Tensor};

/// One prompt to continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The prompt's token ids (chat template already applied).
    pub prompt: Vec<u32>,
    /// The problem it belongs to; part of its noise key ([`NoiseKey`]).
    pub problem_id: String,
    /// Which sample of that problem (0 for greedy runs); part of its noise key.
    pub sample_index: u32,
}

/// Why a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// It produced a stop (eos) token.
    Stop,
    /// It reached `max_tokens` or the model's context length.
    Length,
    /// Its prompt alone is longer than the model's context: nothing was generated.
    PromptTooLong,
}

impl FinishReason {
    /// `stop`, `length` or `prompt_too_long`, as run records spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::PromptTooLong => "prompt_too_long",
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
    /// No tokens yet (or ever, for a prompt that cannot run), `k` candidates per token to come.
    pub(crate) fn empty(k: usize, prompt_tokens: usize, finish_reason: FinishReason) -> Self {
        Generation {
            token_ids: Vec::new(),
            token_logprobs: Vec::new(),
            k,
            top_ids: Vec::new(),
            top_logprobs: Vec::new(),
            finish_reason,
            prompt_tokens,
        }
    }

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
    request: Request,
    key: NoiseKey,
    out: Generation,
    /// The last chosen token, not yet in the cache.
    last: u32,
    /// The position of the next token to choose (prompt and generated tokens so far).
    position: usize,
}

/// A request waiting to run: new, or preempted with what it had generated.
pub(crate) struct Entry {
    pub(crate) id: usize,
    pub(crate) request: Request,
    /// The tokens generated before it was preempted (at least one), to be recomputed.
    pub(crate) resumed: Option<Generation>,
}

impl Entry {
    /// Tokens its admission prefills.
    pub(crate) fn prefill_tokens(&self) -> usize {
        self.request.prompt.len() + self.resumed.as_ref().map_or(0, |g| g.token_ids.len() - 1)
    }
}

/// Why [`Batch::admit`] failed, and the entries it did not admit (to wait again).
pub(crate) struct NotAdmitted {
    pub(crate) error: Error,
    pub(crate) entries: Vec<Entry>,
}

/// The sequences being generated together, and their cache.
pub(crate) struct Batch<'a> {
    decoder: &'a Decoder,
    params: SamplingParams,
    cache: KvCache,
    rows: Vec<Row>,
    finished: Vec<(usize, Generation)>,
    tokens_generated: usize,
    prefill_chunk: Option<usize>,
    prefill_tokens: usize,
}

/// Prompt positions one prefill forward call takes at most, over all the prompts it serves,
/// unless the caller sets another bound
/// ([`Scheduler::with_prefill_tokens`](crate::Scheduler::with_prefill_tokens)). A forward's
/// activations grow with its positions: sixteen 32k-token prompts in one call would need 134 GB
/// of them on the 7B config in f32, 8,192 positions 2.1 GB. Results do not depend on it
/// (attention reduces each query over fixed splits of its own keys, every GEMM row alone).
pub const DEFAULT_PREFILL_TOKENS: usize = 8192;

impl<'a> Batch<'a> {
    /// An empty batch with a KV cache of the decoder's size
    /// ([`Decoder::set_kv_cache_size`]). `params` is validated here.
    pub(crate) fn new(decoder: &'a Decoder, params: SamplingParams) -> Result<Self> {
        params.validate()?;
        Ok(Batch {
            cache: decoder.new_cache()?,
            decoder,
            params,
            rows: Vec::new(),
            finished: Vec::new(),
            tokens_generated: 0,
            prefill_chunk: None,
            prefill_tokens: DEFAULT_PREFILL_TOKENS,
        })
    }

    /// Prefills admitted prompts in forward calls of at most `tokens` positions of each prompt.
    pub(crate) fn set_prefill_chunk(&mut self, tokens: usize) -> Result<()> {
        if tokens == 0 {
            return Err(Error::InvalidRequest(
                "prefill chunk must be at least 1 token".into(),
            ));
        }
        self.prefill_chunk = Some(tokens);
        Ok(())
    }

    /// Prefills admitted prompts in forward calls of at most `tokens` positions in all.
    pub(crate) fn set_prefill_tokens(&mut self, tokens: usize) -> Result<()> {
        if tokens == 0 {
            return Err(Error::InvalidRequest(
                "prefill token budget must be at least 1 token".into(),
            ));
        }
        self.prefill_tokens = tokens;
        Ok(())
    }

    pub(crate) fn decoder(&self) -> &Decoder {
        self.decoder
    }

    pub(crate) fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Number of sequences still generating.
    pub(crate) fn active(&self) -> usize {
        self.rows.len()
    }

    /// Tokens chosen so far by every sequence of this batch (recomputed ones are not counted
    /// again).
    pub(crate) fn tokens_generated(&self) -> usize {
        self.tokens_generated
    }

    /// The KV cache the batch's sequences live in.
    pub(crate) fn cache(&self) -> &KvCache {
        &self.cache
    }

    /// Blocks the next [`step`](Self::step) takes from the pool: one for each sequence whose
    /// cached length fills its last block.
    pub(crate) fn blocks_for_step(&self) -> usize {
        self.rows
            .iter()
            .map(|r| KvCache::blocks_for(r.position) - KvCache::blocks_for(r.position - 1))
            .sum()
    }

    /// Takes the most recently admitted sequence out of the batch, its blocks back to the pool,
    /// to be admitted again later with what it generated (recomputed then).
    pub(crate) fn preempt_newest(&mut self) -> Option<Entry> {
        let row = self.rows.pop()?;
        self.cache.release(row.seq);
        Some(Entry {
            id: row.id,
            request: row.request,
            resumed: Some(row.out),
        })
    }

    /// Prefills `entries` into the cache, packed without padding, and adds them to the running
    /// batch: a new request gets its first token from the prefill's logits; a preempted one has
    /// its prompt and generated tokens but the last recomputed, and continues from the last. On
    /// an error (a full cache, say) the entries not admitted come back with it, to wait again,
    /// and the running sequences are untouched.
    pub(crate) fn admit(
        &mut self,
        entries: Vec<Entry>,
    ) -> std::result::Result<(), Box<NotAdmitted>> {
        if entries.is_empty() {
            return Ok(());
        }
        if let Some(e) = entries.iter().find(|e| e.request.prompt.is_empty()) {
            let err = Error::InvalidRequest(format!("request {} has an empty prompt", e.id));
            return Err(Box::new(NotAdmitted {
                error: err,
                entries,
            }));
        }
        let tokens: Vec<Vec<u32>> = entries
            .iter()
            .map(|e| match &e.resumed {
                None => e.request.prompt.clone(),
                Some(g) => {
                    let n = g.token_ids.len();
                    let mut t = e.request.prompt.clone();
                    t.extend_from_slice(&g.token_ids[..n - 1]);
                    t
                }
            })
            .collect();
        let seqs: Vec<SeqId> = entries.iter().map(|_| self.cache.add_sequence()).collect();
        let logits = match self.prefill(&tokens, &seqs) {
            Ok(l) => l,
            Err(e) => {
                for s in seqs {
                    self.cache.release(s);
                }
                return Err(Box::new(NotAdmitted { error: e, entries }));
            }
        };
        let (mut fresh, mut fresh_rows) = (Vec::new(), Vec::new());
        for (i, ((e, seq), t)) in entries.into_iter().zip(seqs).zip(&tokens).enumerate() {
            let key = NoiseKey::new(
                self.params.seed,
                &e.request.problem_id,
                e.request.sample_index,
            );
            let row = match e.resumed {
                Some(out) => Row {
                    id: e.id,
                    seq,
                    key,
                    last: *out.token_ids.last().expect("a preempted row has a token"),
                    position: t.len() + 1,
                    out,
                    request: e.request,
                },
                None => {
                    fresh.push(i as u32);
                    Row {
                        id: e.id,
                        seq,
                        key,
                        out: Generation::empty(
                            self.params.logprobs,
                            e.request.prompt.len(),
                            FinishReason::Length,
                        ),
                        last: 0,
                        position: t.len(),
                        request: e.request,
                    }
                }
            };
            if row.out.token_ids.is_empty() {
                fresh_rows.push(row);
            } else {
                self.rows.push(row);
            }
        }
        if !fresh_rows.is_empty() {
            let picked = Tensor::new(fresh.as_slice(), logits.device())
                .and_then(|index| logits.index_select(&index, 0))
                .map_err(Error::from)
                .and_then(|first| self.pick(&mut fresh_rows, &first));
            if let Err(err) = picked {
                // The new requests start again later, from their prompts.
                let back = fresh_rows
                    .into_iter()
                    .map(|r| {
                        self.cache.release(r.seq);
                        Entry {
                            id: r.id,
                            request: r.request,
                            resumed: None,
                        }
                    })
                    .collect();
                return Err(Box::new(NotAdmitted {
                    error: err,
                    entries: back,
                }));
            }
            self.rows.extend(fresh_rows);
        }
        self.retire().map_err(|error| {
            Box::new(NotAdmitted {
                error,
                entries: Vec::new(),
            })
        })
    }

    /// Runs the token lists through the decoder and returns the logits of each list's last token,
    /// `(lists, vocab)`. Each forward call takes at most `prefill_tokens` positions in all and at
    /// most `prefill_chunk` of one list: the lists in order, each the next piece of itself that
    /// fits, so a long prompt is cut into pieces and short ones share a call.
    fn prefill(&mut self, tokens: &[Vec<u32>], seqs: &[SeqId]) -> Result<Tensor> {
        // Both bounds are at least 1 (their setters refuse 0), so every call makes progress.
        let piece = self.prefill_chunk.unwrap_or(usize::MAX);
        let mut done = vec![0usize; tokens.len()];
        let mut last: Vec<Option<Tensor>> = vec![None; tokens.len()];
        while done.iter().zip(tokens).any(|(&d, t)| d < t.len()) {
            let mut room = self.prefill_tokens;
            let (mut part, mut owners) = (Vec::new(), Vec::new());
            for (i, (t, &seq)) in tokens.iter().zip(seqs).enumerate() {
                if room == 0 {
                    break;
                }
                let take = (t.len() - done[i]).min(piece).min(room);
                if take == 0 {
                    continue;
                }
                part.push((seq, &t[done[i]..done[i] + take]));
                owners.push(i);
                done[i] += take;
                room -= take;
            }
            let logits = self
                .decoder
                .forward(&part, &mut self.cache, LogitsFor::Last)?;
            for (row, &i) in owners.iter().enumerate() {
                if done[i] == tokens[i].len() {
                    last[i] = Some(logits.get(row)?);
                }
            }
        }
        let last: Vec<Tensor> = last
            .into_iter()
            .map(|t| t.expect("every list ends in some call"))
            .collect();
        Ok(Tensor::stack(&last, 0)?)
    }

    /// Decodes one token for every running sequence; returns the sequences that finished in this
    /// step (or during the last `admit`), tagged with their ids.
    pub(crate) fn step(&mut self) -> Result<Vec<(usize, Generation)>> {
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
        let kernels = self.decoder.kernels();
        let mut logits = logits.to_dtype(DType::F32)?;
        if kernels.portable() {
            // The portable tier chooses as the CPU does, from the logits copied to the host.
            logits = logits.to_device(&candle_core::Device::Cpu)?;
        }
        // Log-softmax in float32 over the (policy-dtype) logits, as the reference records them.
        let logprobs = device_top_k::log_softmax_rows(&logits, kernels.fusion)?;
        if kernels.pick_on(logits.device()) == TokenPick::Device {
            // On a GPU, choose on the device and copy back k candidates, not the vocabulary.
            let draws: Vec<u64> = rows.iter().map(|r| r.key.draw(r.position)).collect();
            let fusion = kernels.fusion;
            let sampled =
                crate::kernels::sampling::sample_rows(&logits, &draws, &self.params, fusion)?;
            if self.params.is_greedy() || sampled.is_some() {
                let picks =
                    device_top_k::pick_rows(&logits, &logprobs, self.params.logprobs, fusion)?;
                let chosen: Option<(Vec<u32>, Vec<f32>)> = match sampled {
                    Some(tokens) => {
                        let lp = logprobs
                            .gather(&tokens.unsqueeze(1)?, 1)?
                            .squeeze(1)?
                            .to_vec1()?;
                        let tokens: Vec<u32> = tokens.to_vec1()?;
                        Some((tokens, lp))
                    }
                    None => None,
                };
                for (i, (row, p)) in rows.iter_mut().zip(picks).enumerate() {
                    for (id, v) in p.top {
                        row.out.top_ids.push(id);
                        row.out.top_logprobs.push(v);
                    }
                    let (token, lp) = match &chosen {
                        Some((t, lp)) => (t[i], lp[i]),
                        None => (p.token, p.token_logprob),
                    };
                    self.record(row, token, lp);
                }
                return Ok(());
            }
        }
        let chosen = choose_rows(&logits.to_vec2()?, &self.params, rows);
        let logprobs: Vec<Vec<f32>> = logprobs.to_vec2()?;
        for (i, row) in rows.iter_mut().enumerate() {
            let token = chosen[i];
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

/// The host's choice for every row, rows in parallel (a row of a 151,936-token vocabulary takes
/// milliseconds; each row's choice is its own, so the threads change nothing in the result).
fn choose_rows(logits: &[Vec<f32>], params: &SamplingParams, rows: &[Row]) -> Vec<u32> {
    use rayon::prelude::*;
    logits
        .par_iter()
        .zip(rows.par_iter())
        .map(|(l, row)| sampling::choose(l, params, row.key, row.position))
        .collect()
}
