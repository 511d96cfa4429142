//! Which requests run when: continuous batching within the KV cache's memory, preemption by
//! recompute when it runs out, and static batching for the reference's fixed groups.
//!
//! Requests go in with [`Scheduler::submit`]; every [`Scheduler::step`] admits what fits,
//! decodes one token for every running sequence and hands back the generations that finished,
//! in completion order. A sequence's numbers do not depend on its batch (the GEMMs and attention
//! reduce in orders fixed by shapes, [`crate::kernels`]; the sampling noise belongs to the
//! request and the position, [`crate::sampling`]), so how the scheduler packs requests changes
//! when each finishes, not what it generates. That is what makes preemption free of side
//! effects: a sequence taken out of the batch to free memory is later prefilled again with its
//! prompt and generated tokens, which recomputes its cache bit for bit, and it continues as if
//! it had never left.

use std::collections::VecDeque;

use crate::generate::{Batch, Entry, NotAdmitted};
use crate::kv::KvCache;
use crate::models::Decoder;
use crate::sampling::SamplingParams;
use crate::{Error, FinishReason, Generation, Request, Result};

/// How requests are grouped into the running batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    /// Groups of `max_sequences` requests in submission order, each run until all of its
    /// sequences finish before the next group starts (the reference implementation's scheme).
    Static,
    /// A waiting request joins as soon as a sequence slot and its cache memory are free.
    Continuous,
}

/// Requests in, finished generations out: the engine's generation loop.
///
/// ```
/// # let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/qwen2");
/// use reprolm_engine::{Batching, LoadOptions, Model, ModelSource, Request, SamplingParams, Scheduler};
/// use reprolm_precision::PrecisionPolicy;
/// let model = Model::load(&ModelSource::parse(dir.to_str().unwrap())?, &LoadOptions::cpu(PrecisionPolicy::fp32()))?;
/// let mut scheduler = Scheduler::new(&model.decoder, SamplingParams::greedy(4), Batching::Continuous, 8)?;
/// for (i, prompt) in [vec![1, 2, 3], vec![4, 5]].into_iter().enumerate() {
///     scheduler.submit(i, Request { prompt, problem_id: format!("p{i}"), sample_index: 0 });
/// }
/// let mut finished = Vec::new();
/// while !scheduler.is_done() {
///     finished.extend(scheduler.step()?);
/// }
/// assert_eq!(finished.len(), 2);
/// assert!(finished.iter().all(|(_, g)| g.token_ids.len() <= 4));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Scheduler<'a> {
    batch: Batch<'a>,
    batching: Batching,
    max_sequences: usize,
    /// Waiting requests, preempted ones first.
    waiting: VecDeque<Entry>,
    /// Static batching: sequences of the current group not yet finished (running or preempted).
    group_left: usize,
    preemptions: usize,
    /// Requests that can never run, to hand back at the next step.
    rejected: Vec<(usize, Generation)>,
}

impl<'a> Scheduler<'a> {
    /// A scheduler running at most `max_sequences` sequences at once in a KV cache of the
    /// decoder's size ([`Decoder::set_kv_cache_size`]). `params` is validated here.
    pub fn new(
        decoder: &'a Decoder,
        params: SamplingParams,
        batching: Batching,
        max_sequences: usize,
    ) -> Result<Self> {
        if max_sequences == 0 {
            return Err(Error::InvalidRequest(
                "batch size must be at least 1".into(),
            ));
        }
        Ok(Scheduler {
            batch: Batch::new(decoder, params)?,
            batching,
            max_sequences,
            waiting: VecDeque::new(),
            group_left: 0,
            preemptions: 0,
            rejected: Vec::new(),
        })
    }

    /// Prefills admitted prompts in forward calls of at most `tokens` positions of each prompt
    /// (chunked prefill), instead of one call over the whole prompt. The result is bitwise the
    /// same as one call: attention reduces each query over fixed splits of its own keys.
    pub fn with_prefill_chunk(mut self, tokens: usize) -> Result<Self> {
        self.batch.set_prefill_chunk(tokens)?;
        Ok(self)
    }

    /// Bounds the prompt positions of one prefill forward call, over all the prompts it serves
    /// (default [`DEFAULT_PREFILL_TOKENS`](crate::generate::DEFAULT_PREFILL_TOKENS)): the
    /// activations of a prefill grow with it, not with the number and length of the prompts
    /// admitted together. The result is bitwise the same for any bound, as for any chunk.
    pub fn with_prefill_tokens(mut self, tokens: usize) -> Result<Self> {
        self.batch.set_prefill_tokens(tokens)?;
        Ok(self)
    }

    /// Queues a request; `id` tags its generation when it comes back from [`step`](Self::step).
    /// A prompt longer than the model's context never runs: it comes back from the next step
    /// with [`FinishReason::PromptTooLong`] and no tokens.
    pub fn submit(&mut self, id: usize, request: Request) {
        if request.prompt.len() > self.batch.decoder().spec().max_position_embeddings {
            let generation = Generation::empty(
                self.batch.params().logprobs,
                request.prompt.len(),
                FinishReason::PromptTooLong,
            );
            self.rejected.push((id, generation));
            return;
        }
        self.waiting.push_back(Entry {
            id,
            request,
            resumed: None,
        });
    }

    /// Whether every submitted request has come back.
    pub fn is_done(&self) -> bool {
        self.waiting.is_empty() && self.batch.active() == 0 && self.rejected.is_empty()
    }

    /// Sequences running now.
    pub fn active(&self) -> usize {
        self.batch.active()
    }

    /// Requests waiting to run (preempted ones included).
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// How many times a running sequence was taken out to free cache memory.
    pub fn preemptions(&self) -> usize {
        self.preemptions
    }

    /// Tokens chosen so far (tokens recomputed after a preemption are not counted again).
    pub fn tokens_generated(&self) -> usize {
        self.batch.tokens_generated()
    }

    /// The KV cache the sequences live in.
    pub fn cache(&self) -> &KvCache {
        self.batch.cache()
    }

    /// Admits what fits, decodes one token for every running sequence, and returns the
    /// generations that finished, in the order they finished.
    ///
    /// When the next token of every running sequence does not fit the cache, the most recently
    /// admitted sequences are preempted (to be recomputed later) until it does; a single
    /// sequence that outgrows the whole cache is an [`Error::KvCacheFull`].
    pub fn step(&mut self) -> Result<Vec<(usize, Generation)>> {
        // On an error the rejected requests stay queued: nothing finished is lost.
        self.admit()?;
        self.make_room()?;
        let decoded = self.batch.step()?;
        let mut finished = std::mem::take(&mut self.rejected);
        if self.batching == Batching::Static {
            self.group_left -= decoded.len();
        }
        finished.extend(decoded);
        Ok(finished)
    }

    /// [`step`](Self::step) until every submitted request has finished: their generations, each
    /// once, in the order they finished.
    pub fn run_to_end(&mut self) -> Result<Vec<(usize, Generation)>> {
        let mut finished = Vec::new();
        while !self.is_done() {
            finished.extend(self.step()?);
        }
        Ok(finished)
    }

    /// Admits the waiting requests that fit (prefilling them and choosing their first tokens)
    /// without decoding: what [`step`](Self::step) does first. For timing prefill on its own.
    pub fn admit_waiting(&mut self) -> Result<()> {
        self.admit()
    }

    /// Blocks kept free beyond what admitted sequences need now, so that a newly admitted
    /// sequence does not preempt another at its first tokens.
    fn watermark(&self) -> usize {
        (self.batch.cache().blocks() / 100).max(1)
    }

    fn admit(&mut self) -> Result<()> {
        if self.batching == Batching::Static && self.group_left == 0 {
            // The next group is the front of `waiting`; its members that are preempted later go
            // back to the front, ahead of the requests of later groups.
            self.group_left = self.waiting.len().min(self.max_sequences);
        }
        let cache = self.batch.cache();
        let mut free = cache.free_blocks() as isize
            - self.batch.blocks_for_step() as isize
            - self.watermark() as isize;
        let mut take = 0;
        let limit = match self.batching {
            Batching::Continuous => self.waiting.len(),
            Batching::Static => self.group_left - self.batch.active(),
        };
        while take < limit.min(self.waiting.len())
            && self.batch.active() + take < self.max_sequences
        {
            let e = &self.waiting[take];
            // Its prefill, and the block its next token may need.
            let need = KvCache::blocks_for(e.prefill_tokens() + 1) as isize;
            if need > free {
                if self.batch.active() == 0 && take == 0 {
                    if need as usize > cache.blocks() {
                        return Err(cache.full(need as usize));
                    }
                    // Alone in the cache it fits, without the watermark.
                    take = 1;
                }
                break;
            }
            free -= need;
            take += 1;
        }
        let entries: Vec<Entry> = self.waiting.drain(..take).collect();
        self.batch.admit(entries).map_err(|not| {
            // Nothing is lost: the requests wait again, in their order, for the caller to decide.
            let NotAdmitted { error, entries } = *not;
            for e in entries.into_iter().rev() {
                self.waiting.push_front(e);
            }
            error
        })
    }

    /// Preempts the newest sequences until the next step's tokens fit the cache.
    fn make_room(&mut self) -> Result<()> {
        while self.batch.blocks_for_step() > self.batch.cache().free_blocks() {
            if self.batch.active() == 1 {
                return Err(self.batch.cache().full(self.batch.blocks_for_step()));
            }
            let entry = self
                .batch
                .preempt_newest()
                .expect("more than one is running");
            self.waiting.push_front(entry);
            self.preemptions += 1;
        }
        Ok(())
    }
}

/// Generates continuations of `requests` in static batches of `batch_size` prompts, in order,
/// each batch run to completion before the next starts (the reference implementation's scheme),
/// through a [`Scheduler`]. Results come back in request order.
pub fn generate(
    decoder: &Decoder,
    requests: &[Request],
    params: &SamplingParams,
    batch_size: usize,
) -> Result<Vec<Generation>> {
    let mut scheduler = Scheduler::new(decoder, params.clone(), Batching::Static, batch_size)?;
    for (i, r) in requests.iter().enumerate() {
        scheduler.submit(i, r.clone());
    }
    let mut finished = scheduler.run_to_end()?;
    assert_eq!(finished.len(), requests.len(), "every request finishes");
    finished.sort_by_key(|(id, _)| *id);
    Ok(finished.into_iter().map(|(_, g)| g).collect())
}
