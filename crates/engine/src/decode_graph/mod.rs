//! Decode steps as CUDA graphs: a step's kernels captured once per (batch bucket, context bucket)
//! and replayed, so that the GPU runs them back to back while the host launches one graph
//! instead of ~300 kernels (ten a layer), each with candle's bookkeeping.
//!
//! A captured step reads everything that changes from one step to the next from persistent
//! buffers, filled by one host-to-device copy before each launch: token ids, positions, each
//! row's sequence (for the block tables), cache slots and block tables. Its kernels' launch
//! dimensions are fixed at capture, so:
//! - the batch is padded to a bucket ([`bucket`]): padding rows take token 0 at position 0, their
//!   keys and values go to no slot ([`PAD_SLOT`](crate::kv::PAD_SLOT)), and their logits are
//!   dropped. Every kernel computes a row on its own (the batch-invariant GEMMs, per-query
//!   attention), so padding changes no bit of a real row;
//! - attention's key splits are sized for a context bucket ([`context_bucket`]), and the block
//!   tables hold that many positions; a query's splits follow from its own position, so again no
//!   bit moves;
//! - RoPE's cos/sin come from a table of the context bucket's positions, built once on the
//!   device by the same function as the eager step's, and gathered by position in the graph.
//!
//! A new key is first run eagerly (which also settles everything chosen on first use, such as
//! the GEMM algorithms per row count, and fills candle's cache of small parameter uploads),
//! then captured and launched. A key whose capture fails (a kernel that cannot be captured)
//! runs eagerly from then on, and the reason is said once. Graphs hold the KV cache pools'
//! addresses, so they are kept while the cache in use has the same pools (addresses and shapes:
//! a cache made again at the same place, as a benchmark's measurements do, reuses them) and the
//! steps come from the thread that captured them, and are dropped otherwise; the tables and
//! buffers they read are kept for the next graphs.

#[cfg(feature = "cuda")]
mod cuda;
#[cfg(not(feature = "cuda"))]
mod cuda {
    //! Without the `cuda` feature there is nothing to capture.
    use crate::{Error, Result};
    use candle_core::Device;

    /// A captured step (never built without CUDA).
    pub(crate) enum Graph {}

    impl Graph {
        pub(crate) fn launch(&self) -> Result<()> {
            match *self {}
        }
    }

    pub(crate) fn capture(_: &Device, _: impl FnOnce() -> Result<()>) -> Result<Graph> {
        Err(Error::InvalidRequest(
            "CUDA graphs need a build with the `cuda` feature".into(),
        ))
    }

    pub(crate) fn with_param_cache<T>(_: &Device, f: impl FnOnce() -> T) -> T {
        f()
    }

    pub(crate) fn address(_: &candle_core::Tensor) -> Result<u64> {
        Err(Error::InvalidRequest(
            "device addresses need a build with the `cuda` feature".into(),
        ))
    }
}

use crate::{Error, Result};
use candle_core::{CpuStorage, DType, Device, InplaceOp1, Layout, Tensor};
pub(crate) use cuda::{capture, with_param_cache};
use std::collections::hash_map::Entry::Vacant;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::thread::ThreadId;

/// The batch sizes a step is captured for: every size up to 4, then steps of 8 to 64 and of 32
/// to 256 (mistral.rs and vLLM bucket alike). A batch is padded to the smallest bucket that
/// holds it; a larger batch launches eagerly.
pub const BUCKETS: &[usize] = &[
    1, 2, 3, 4, 8, 16, 24, 32, 40, 48, 56, 64, 96, 128, 160, 192, 224, 256,
];

/// The fewest positions a step's attention splits are sized for.
pub const MIN_CONTEXT: usize = 512;

/// The bucket a decode batch of `rows` sequences is padded to, if any.
///
/// ```
/// use reprolm_engine::decode_graph::bucket;
/// assert_eq!(bucket(5), Some(8));
/// assert_eq!(bucket(32), Some(32));
/// assert_eq!(bucket(257), None);
/// ```
pub fn bucket(rows: usize) -> Option<usize> {
    BUCKETS.iter().copied().find(|&b| b >= rows)
}

/// How many positions a captured step's attention is sized for when its furthest query is at
/// `max_pos`: the next power of two, at least [`MIN_CONTEXT`], so a generation of 32k tokens
/// passes through at most 7 captures per batch bucket.
///
/// ```
/// use reprolm_engine::decode_graph::context_bucket;
/// assert_eq!(context_bucket(0), 512);
/// assert_eq!(context_bucket(511), 512);
/// assert_eq!(context_bucket(512), 1024);
/// ```
pub fn context_bucket(max_pos: usize) -> usize {
    (max_pos + 1).next_power_of_two().max(MIN_CONTEXT)
}

/// One decode step's rows, unpadded: per sequence its token, position, cache slot and block
/// table.
pub(crate) struct StepRows<'a> {
    pub ids: &'a [u32],
    pub positions: &'a [usize],
    pub slots: &'a [u32],
    pub tables: &'a [Vec<u32>],
}

/// Where each input lies in a bucket's packed buffer: five runs of `rows` (token ids, positions,
/// each row's sequence, cache slots, the row index of each sequence's last token) and then the
/// block tables, `width` entries per row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Packed {
    pub rows: usize,
    pub width: usize,
}

impl Packed {
    const RUNS: usize = 5;

    fn len(&self) -> usize {
        self.rows * (Self::RUNS + self.width)
    }

    /// The host data of a step, padded to the bucket.
    fn fill(&self, step: &StepRows<'_>) -> Vec<u32> {
        let (b, w) = (self.rows, self.width);
        let mut v = vec![0u32; self.len()];
        for (i, ((&id, &p), &slot)) in step
            .ids
            .iter()
            .zip(step.positions)
            .zip(step.slots)
            .enumerate()
        {
            v[i] = id;
            v[b + i] = p as u32;
            v[3 * b + i] = slot;
            let table = &step.tables[i];
            v[Self::RUNS * b + i * w..][..table.len()].copy_from_slice(table);
        }
        for i in 0..b {
            v[2 * b + i] = i as u32;
            v[4 * b + i] = i as u32;
        }
        for slot in &mut v[3 * b + step.ids.len()..4 * b] {
            *slot = crate::kv::PAD_SLOT;
        }
        v
    }

    /// Run `run` (0 ids, 1 positions, 2 sequences, 3 slots, 4 last rows) of `packed`.
    pub fn run(&self, packed: &Tensor, run: usize) -> Result<Tensor> {
        Ok(packed.narrow(0, run * self.rows, self.rows)?)
    }

    /// The block tables of `packed`, `(rows, width)`.
    pub fn tables(&self, packed: &Tensor) -> Result<Tensor> {
        Ok(packed
            .narrow(0, Self::RUNS * self.rows, self.rows * self.width)?
            .reshape((self.rows, self.width))?)
    }
}

enum Entry {
    Ready(cuda::Graph),
    /// Capture failed; the key launches eagerly.
    Failed,
}

/// The captured steps and what they read. A graph holds the addresses of everything here, so
/// nothing is dropped or replaced while a graph that reads it lives.
#[derive(Default)]
struct State {
    /// The cache pools the graphs were captured with ([`PoolKey`]) and the thread that
    /// captured them: candle serves a capture's small parameter uploads from a cache of that
    /// thread, which the graphs read at every launch and which ends with the thread. So a step
    /// from another thread captures again rather than trust a thread that may be gone.
    owner: Option<(PoolKey, ThreadId)>,
    /// Per context bucket, RoPE's `(cos, sin)` of its positions, `(1, context, head_dim / 2)`.
    rope: HashMap<usize, (Tensor, Tensor)>,
    /// Per (batch bucket, context bucket), the persistent inputs in the order of [`Packed`].
    inputs: HashMap<(usize, usize), Tensor>,
    /// Per batch bucket, the logits a step leaves, `(rows, vocab)`.
    logits: HashMap<usize, Tensor>,
    /// Per (batch bucket, context bucket).
    graphs: HashMap<(usize, usize), Entry>,
}

/// A decoder's captured decode steps (see the module docs).
#[derive(Default)]
pub(crate) struct DecodeGraphs {
    state: Mutex<State>,
}

impl std::fmt::Debug for DecodeGraphs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("DecodeGraphs")
            .field("owner", &st.owner)
            .field("graphs", &st.graphs.len())
            .finish()
    }
}

/// What a captured step knows of the KV cache: each pool's device address and shape, in layer
/// order. Two caches with the same key are interchangeable for a graph.
pub(crate) type PoolKey = Vec<(u64, Vec<usize>)>;

/// The [`PoolKey`] of `pools` (each layer's keys and values).
pub(crate) fn pool_key(pools: &[(Tensor, Tensor)]) -> Result<PoolKey> {
    let mut key = Vec::with_capacity(2 * pools.len());
    for (k, v) in pools {
        for t in [k, v] {
            key.push((cuda::address(t)?, t.dims().to_vec()));
        }
    }
    Ok(key)
}

/// What [`DecodeGraphs::step`] needs from the decoder for one step.
pub(crate) struct StepSpec<'a> {
    pub device: &'a Device,
    /// The pools of the cache the step reads and writes.
    pub pools: &'a [(Tensor, Tensor)],
    /// The most positions a sequence of the cache can reach.
    pub capacity: usize,
    pub vocab: usize,
    pub logits_dtype: DType,
    /// Builds RoPE's table for positions `0..n` (the decoder's own cos/sin function).
    pub rope_table: &'a dyn Fn(usize) -> Result<(Tensor, Tensor)>,
}

/// One captured step's view of its inputs, handed to the decoder's forward body.
pub(crate) struct StepView<'a> {
    pub layout: Packed,
    pub packed: &'a Tensor,
    pub rope: &'a (Tensor, Tensor),
    /// The positions the attention splits are sized for.
    pub context: usize,
}

impl DecodeGraphs {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many steps are captured (for tests and diagnostics).
    pub fn captured(&self) -> usize {
        self.lock()
            .graphs
            .values()
            .filter(|e| matches!(e, Entry::Ready(_)))
            .count()
    }

    /// Runs one decode step of `rows` through the graph of its buckets, capturing it first if
    /// new. `forward` is the step's body over the persistent inputs ([`StepView`]): it must
    /// return the logits of the bucket's rows. Returns the real rows' logits, or `None` where
    /// the step has no graph (too many rows, or a key whose capture failed): the caller then
    /// runs it eagerly.
    pub fn step(
        &self,
        spec: &StepSpec<'_>,
        rows: &StepRows<'_>,
        forward: &dyn Fn(&StepView<'_>) -> Result<Tensor>,
    ) -> Result<Option<Tensor>> {
        let n = rows.ids.len();
        let Some(b) = bucket(n) else {
            return Ok(None);
        };
        let max_pos = rows.positions.iter().copied().max().unwrap_or(0);
        let context = context_bucket(max_pos).min(spec.capacity);
        if max_pos >= context {
            return Ok(None);
        }
        let pools = pool_key(spec.pools)?;
        let mut st = self.lock();
        let owner = (pools, std::thread::current().id());
        if st.owner.as_ref() != Some(&owner) {
            st.graphs.clear();
            st.owner = Some(owner);
        }
        let key = (b, context);
        if matches!(st.graphs.get(&key), Some(Entry::Failed)) {
            return Ok(None);
        }
        let layout = Packed {
            rows: b,
            width: context.div_ceil(crate::kv::BLOCK_SIZE),
        };
        let st = &mut *st;
        if let Vacant(e) = st.rope.entry(context) {
            e.insert((spec.rope_table)(context)?);
        }
        if let Vacant(e) = st.inputs.entry(key) {
            e.insert(Tensor::zeros(layout.len(), DType::U32, spec.device)?);
        }
        if let Vacant(e) = st.logits.entry(b) {
            e.insert(Tensor::zeros(
                (b, spec.vocab),
                spec.logits_dtype,
                spec.device,
            )?);
        }
        let (packed, logits_out) = (&st.inputs[&key], &st.logits[&b]);
        upload(packed, layout.fill(rows))?;
        let view = StepView {
            layout,
            packed,
            rope: &st.rope[&context],
            context,
        };
        let body = || -> Result<()> {
            let logits = forward(&view)?;
            logits_out.slice_set(&logits, 0, 0)?;
            Ok(())
        };
        match st.graphs.get(&key) {
            Some(Entry::Ready(graph)) => graph.launch()?,
            Some(Entry::Failed) => unreachable!("returned above"),
            None => {
                // First eagerly, which gives this step's logits and settles what is chosen on
                // first use; then the capture, which runs nothing.
                cuda::with_param_cache(spec.device, body)?;
                match cuda::capture(spec.device, body) {
                    Ok(graph) => {
                        graph.launch()?;
                        st.graphs.insert(key, Entry::Ready(graph));
                    }
                    Err(e) => {
                        eprintln!(
                            "reprolm: decode steps of {b} rows at contexts up to {context} \
                             launch their kernels one by one: capturing them as a CUDA graph \
                             failed ({e})"
                        );
                        st.graphs.insert(key, Entry::Failed);
                    }
                }
            }
        }
        Ok(Some(logits_out.narrow(0, 0, n)?.force_contiguous()?))
    }
}

/// Copies `data` into `dst` (contiguous u32 of the same length) in place: the persistent inputs
/// keep their addresses, which a captured step holds.
fn upload(dst: &Tensor, data: Vec<u32>) -> Result<()> {
    if dst.dtype() != DType::U32 || dst.elem_count() != data.len() || !dst.is_contiguous() {
        return Err(Error::InvalidRequest(format!(
            "graph inputs: {} values for a {:?} {:?} buffer",
            data.len(),
            dst.dims(),
            dst.dtype()
        )));
    }
    Ok(dst.inplace_op1(&Upload(data))?)
}

struct Upload(Vec<u32>);

impl InplaceOp1 for Upload {
    fn name(&self) -> &'static str {
        "reprolm-graph-upload"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let (a, b) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("graph inputs: not contiguous".into()))?;
        match storage {
            CpuStorage::U32(v) => v[a..b].copy_from_slice(&self.0),
            _ => candle_core::bail!("graph inputs must be u32"),
        }
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &mut candle_core::CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<()> {
        use candle_core::backend::BackendStorage;
        let (a, b) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("graph inputs: not contiguous".into()))?;
        let dev = storage.device().clone();
        let mut dst = storage.as_cuda_slice_mut::<u32>()?.slice_mut(a..b);
        dev.memcpy_htod(self.0.as_slice(), &mut dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_padded_to_its_bucket_and_padding_rows_write_nowhere() -> Result<()> {
        let layout = Packed { rows: 4, width: 3 };
        let tables = [vec![7, 8], vec![2]];
        let rows = StepRows {
            ids: &[11, 12],
            positions: &[20, 5],
            slots: &[8 * 16 + 4, 2 * 16 + 5],
            tables: &tables,
        };
        let v = layout.fill(&rows);
        let p = crate::kv::PAD_SLOT;
        assert_eq!(
            &v[..20],
            &[11, 12, 0, 0, 20, 5, 0, 0, 0, 1, 2, 3, 132, 37, p, p, 0, 1, 2, 3]
        );
        assert_eq!(&v[20..], &[7, 8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
        let dev = Device::Cpu;
        let packed = Tensor::zeros(layout.len(), DType::U32, &dev)?;
        upload(&packed, v.clone())?;
        assert_eq!(packed.to_vec1::<u32>()?, v);
        assert_eq!(layout.tables(&packed)?.to_vec2::<u32>()?[0], [7, 8, 0]);
        assert_eq!(layout.run(&packed, 1)?.to_vec1::<u32>()?, [20, 5, 0, 0]);
        assert!(upload(&packed, vec![0; 3]).is_err());
        Ok(())
    }

    /// The bookkeeping around captures, on the CPU, where every capture fails: a new key runs
    /// once and is marked as failed (later steps are left to the caller), and a step from another
    /// thread starts again, because graphs are tied to the thread that captured them.
    #[test]
    fn a_failed_key_runs_eagerly_and_another_thread_starts_again() -> Result<()> {
        let graphs = DecodeGraphs::default();
        let one_step = || -> Result<Option<Tensor>> {
            let table = |n: usize| -> Result<(Tensor, Tensor)> {
                let t = Tensor::zeros((1, n, 2), DType::F32, &Device::Cpu)?;
                Ok((t.clone(), t))
            };
            let spec = StepSpec {
                device: &Device::Cpu,
                pools: &[],
                capacity: 4096,
                vocab: 3,
                logits_dtype: DType::F32,
                rope_table: &table,
            };
            let tables = [vec![5]];
            let rows = StepRows {
                ids: &[7],
                positions: &[9],
                slots: &[5 * 16 + 9],
                tables: &tables,
            };
            let forward = |view: &StepView<'_>| -> Result<Tensor> {
                assert_eq!((view.layout.rows, view.context), (1, 512));
                let ids = view.layout.run(view.packed, 0)?.to_dtype(DType::F32)?;
                Ok(ids.reshape((1, 1))?.repeat((1, 3))?)
            };
            graphs.step(&spec, &rows, &forward)
        };
        let first = one_step()?.expect("a new key runs once");
        assert_eq!(first.to_vec2::<f32>()?, [[7.0, 7.0, 7.0]]);
        assert!(one_step()?.is_none(), "a failed key is left to the caller");
        assert_eq!(graphs.captured(), 0);
        let other = std::thread::scope(|s| s.spawn(|| one_step().map(|t| t.is_some())).join());
        assert!(other.expect("no panic")?, "another thread starts again");
        Ok(())
    }
}

/// Graphs on against graphs off on a GPU: the same logits, bit for bit, step by step.
#[cfg(all(test, feature = "cuda"))]
pub(crate) mod gpu_tests {
    use super::*;
    use crate::kernels::gpu_test::{bits, device as gpu};
    use crate::kernels::Graphs;
    use crate::{Decoder, KvCache, KvCacheSize, LogitsFor, SeqId};
    use candle_nn::VarBuilder;
    use reprolm_precision::PrecisionPolicy;

    const CONFIG: &str = r#"{"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
            "hidden_size": 512, "intermediate_size": 1024, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000,
            "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "tie_word_embeddings": false, "hidden_act": "silu", "torch_dtype": "bfloat16"}"#;

    /// Random weights of a Qwen2-shaped decoder with 128-wide heads (the tensor-core attention
    /// route for 16-bit policies), two layers.
    pub(crate) fn weights() -> Result<HashMap<String, Tensor>> {
        let mut weights = HashMap::new();
        let mut add = |name: String, shape: &[usize], bias: bool| -> Result<()> {
            let w = Tensor::randn(0f32, 0.05, shape, &Device::Cpu)?;
            weights.insert(format!("{name}.weight"), w);
            if bias {
                let b = Tensor::randn(0f32, 0.05, shape[0], &Device::Cpu)?;
                weights.insert(format!("{name}.bias"), b);
            }
            Ok(())
        };
        let (h, i, v, kv) = (512, 1024, 1000, 256);
        add("model.embed_tokens".into(), &[v, h], false)?;
        add("lm_head".into(), &[v, h], false)?;
        for l in 0..2 {
            let p = format!("model.layers.{l}");
            add(format!("{p}.self_attn.q_proj"), &[h, h], true)?;
            add(format!("{p}.self_attn.k_proj"), &[kv, h], true)?;
            add(format!("{p}.self_attn.v_proj"), &[kv, h], true)?;
            add(format!("{p}.self_attn.o_proj"), &[h, h], false)?;
            add(format!("{p}.mlp.gate_proj"), &[i, h], false)?;
            add(format!("{p}.mlp.up_proj"), &[i, h], false)?;
            add(format!("{p}.mlp.down_proj"), &[h, i], false)?;
        }
        let mut norms = vec!["model.norm.weight".to_string()];
        for l in 0..2 {
            norms.push(format!("model.layers.{l}.input_layernorm.weight"));
            norms.push(format!("model.layers.{l}.post_attention_layernorm.weight"));
        }
        for name in norms {
            weights.insert(name, Tensor::ones(h, DType::F32, &Device::Cpu)?);
        }
        Ok(weights)
    }

    pub(crate) fn decoder(
        dev: &Device,
        policy: &str,
        weights: &HashMap<String, Tensor>,
    ) -> Result<Decoder> {
        let (_, spec) =
            crate::models::spec_from_config_str(CONFIG, std::path::Path::new("config.json"))?;
        let vb = VarBuilder::from_tensors(weights.clone(), DType::F32, dev);
        Decoder::load(&spec, &PrecisionPolicy::preset(policy)?, vb)
    }

    fn greedy(logits: &Tensor) -> Result<Vec<u32>> {
        Ok(logits.to_dtype(DType::F32)?.argmax(1)?.to_vec1::<u32>()?)
    }

    /// Five prompts of 3 to 508 tokens, prefilled one by one, then decoded together (a batch of
    /// 5 padded to 8) until the longest passes position 512 (a new context bucket), then three
    /// of them (a bucket of 3): every step's logits equal with graphs on and off, and graphs
    /// were captured (the test cannot pass by falling back).
    #[test]
    fn graphs_on_and_off_give_the_same_bits() -> Result<()> {
        let Some(dev) = gpu() else { return Ok(()) };
        let weights = weights()?;
        for policy in ["bf16", "fp32", "layercast"] {
            let on = decoder(&dev, policy, &weights)?;
            let mut off = decoder(&dev, policy, &weights)?;
            off.set_kernels(crate::kernels::Kernels {
                graphs: Graphs::Off,
                ..off.kernels()
            })?;
            assert_eq!(
                (on.graphs_captured(), off.graphs_captured()),
                (Some(0), None),
                "{policy}"
            );
            let size = KvCacheSize::Bytes(64 << 20);
            let (mut c_on, mut c_off) = (on.new_cache_of(size)?, off.new_cache_of(size)?);
            let lens = [3usize, 40, 508, 100, 17];
            let mut last = Vec::new();
            let mut seqs: Vec<(SeqId, SeqId)> = Vec::new();
            for (n, &len) in lens.iter().enumerate() {
                let prompt: Vec<u32> = (0..len)
                    .map(|j| ((n * 131 + j * 17) % 1000) as u32)
                    .collect();
                let (a, b) = (c_on.add_sequence(), c_off.add_sequence());
                let la = on.forward(&[(a, &prompt)], &mut c_on, LogitsFor::Last)?;
                let lb = off.forward(&[(b, &prompt)], &mut c_off, LogitsFor::Last)?;
                assert_eq!(bits(&la), bits(&lb), "{policy}: prefill of prompt {n}");
                last.push(greedy(&la)?[0]);
                seqs.push((a, b));
            }
            let step = |on_c: &mut KvCache,
                        off_c: &mut KvCache,
                        seqs: &[(SeqId, SeqId)],
                        last: &mut Vec<u32>,
                        what: &str|
             -> Result<()> {
                let toks: Vec<[u32; 1]> = last.iter().map(|&t| [t]).collect();
                let a: Vec<(SeqId, &[u32])> =
                    seqs.iter().zip(&toks).map(|(s, t)| (s.0, &t[..])).collect();
                let b: Vec<(SeqId, &[u32])> =
                    seqs.iter().zip(&toks).map(|(s, t)| (s.1, &t[..])).collect();
                let la = on.forward(&a, on_c, LogitsFor::Last)?;
                let lb = off.forward(&b, off_c, LogitsFor::Last)?;
                assert_eq!(la.dims(), lb.dims());
                assert_eq!(bits(&la), bits(&lb), "{policy}: {what}");
                *last = greedy(&la)?;
                Ok(())
            };
            // Positions 508 to 513 of the longest: contexts of 512, then 1024; a bucket of 8.
            for s in 0..6 {
                step(
                    &mut c_on,
                    &mut c_off,
                    &seqs,
                    &mut last,
                    &format!("5 rows, step {s}"),
                )?;
            }
            // Drop the longest and the shortest: three rows at contexts under 512.
            for drop in [2, 0] {
                c_on.release(seqs[drop].0);
                c_off.release(seqs[drop].1);
                seqs.remove(drop);
                last.remove(drop);
            }
            for s in 0..8 {
                step(
                    &mut c_on,
                    &mut c_off,
                    &seqs,
                    &mut last,
                    &format!("3 rows, step {s}"),
                )?;
            }
            assert_eq!(on.graphs_captured(), Some(3), "{policy}: graphs captured");
        }
        Ok(())
    }
}
