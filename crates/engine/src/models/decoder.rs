//! The pre-norm decoder shared by Llama, Qwen2 and Qwen3, with every op placed in the dtype the
//! precision policy gives its component.
//!
//! A forward pass is packed: the new tokens of every sequence in the call, one after another,
//! run as the rows of one `(1, tokens, hidden)` activation, so no sequence is padded to another's
//! length. Attention reads each sequence's keys from the paged cache ([`crate::kv`]).
//!
//! The weights are held by one or more ranks (see [`crate::parallel`]): a single device is one
//! rank holding everything and running exactly the single-device ops; under tensor parallelism
//! each rank holds its slices, counts `heads` and `kv_heads` as its own, and its row-parallel
//! projections finish with an all-reduce.

use super::rope::{self, RopeSpec};
use crate::decode_graph::{DecodeGraphs, StepRows, StepSpec, StepView};
use crate::fused;
use crate::kernels::attention::{
    paged_attention, paged_attention_portable, write_slots, PagedQueries,
};
use crate::kernels::gemm::{self, GemmFamily};
use crate::kernels::{activation, norm, Fusion, Graphs, Kernels};
use crate::kv::{CacheShape, KvCache, KvCacheSize, LayerPool, SeqId};
use crate::parallel::{self, Communicator, ShardLayout, TensorParallel};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use reprolm_precision::deterministic::{partial_sums, round_output, tree_sum};
use reprolm_precision::{
    Component, ComputeMode, Linear, ModelShape, PrecisionPolicy, ReductionOrder,
};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

/// The shape and switches of a decoder, independent of the family's config.json spelling.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderSpec {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_layers: usize,
    /// Number of query heads.
    pub num_heads: usize,
    /// Number of key/value heads.
    pub num_kv_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base and scaling.
    pub rope: RopeSpec,
    /// Longest supported context.
    pub max_position_embeddings: usize,
    /// LM head shares the embedding table.
    pub tie_word_embeddings: bool,
    /// Bias on q/k/v.
    pub qkv_bias: bool,
    /// Bias on o.
    pub o_bias: bool,
    /// Bias on gate/up/down.
    pub mlp_bias: bool,
    /// RMSNorm on each query/key head (Qwen3).
    pub qk_norm: bool,
    /// Activation of the MLP gate.
    pub hidden_act: String,
}

impl DecoderSpec {
    /// Rejects configs this implementation would compute wrongly.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |field: &str, reason: String| {
            Err(Error::BadField {
                path: path.to_path_buf(),
                field: field.into(),
                reason,
            })
        };
        if self.num_heads == 0 || self.num_kv_heads == 0 || self.num_heads % self.num_kv_heads != 0
        {
            return bad(
                "num_key_value_heads",
                format!(
                    "{} query heads cannot be grouped over {} key/value heads",
                    self.num_heads, self.num_kv_heads
                ),
            );
        }
        if self.head_dim == 0 || self.head_dim % 2 != 0 {
            return bad(
                "head_dim",
                format!("{} must be even and positive for RoPE", self.head_dim),
            );
        }
        if self.hidden_act != "silu" {
            return bad(
                "hidden_act",
                format!("`{}` is not supported; only `silu`", self.hidden_act),
            );
        }
        Ok(())
    }

    /// The shape the memory calculator works on.
    ///
    /// ```
    /// # let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/qwen2");
    /// let (_, spec) = reprolm_engine::spec_from_config_file(&dir.join("config.json"))?;
    /// let shape = spec.shape();
    /// assert_eq!(shape.parameter_count() as usize, spec.parameter_count());
    /// # Ok::<(), reprolm_engine::Error>(())
    /// ```
    pub fn shape(&self) -> ModelShape {
        ModelShape {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_layers,
            num_heads: self.num_heads,
            num_kv_heads: self.num_kv_heads,
            head_dim: self.head_dim,
            tie_word_embeddings: self.tie_word_embeddings,
            qkv_bias: self.qkv_bias,
            o_bias: self.o_bias,
            mlp_bias: self.mlp_bias,
            qk_norm: self.qk_norm,
        }
    }

    /// Number of parameters, counting a tied LM head once.
    pub fn parameter_count(&self) -> usize {
        let (h, i, d) = (self.hidden_size, self.intermediate_size, self.head_dim);
        let (q, kv) = (self.num_heads * d, self.num_kv_heads * d);
        let mut attn = h * q + 2 * h * kv + q * h;
        if self.qkv_bias {
            attn += q + 2 * kv;
        }
        if self.o_bias {
            attn += h;
        }
        if self.qk_norm {
            attn += 2 * d;
        }
        let mut mlp = 3 * h * i;
        if self.mlp_bias {
            mlp += 2 * i + h;
        }
        let layer = attn + mlp + 2 * h;
        let embed = self.vocab_size * h;
        let head = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * h
        };
        self.num_layers * layer + embed + head + h
    }
}

/// Which positions the LM head is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsFor {
    /// Every new token: `(tokens, vocab)`, the sequences' tokens in the order of the call
    /// (parity tests, scoring a text).
    All,
    /// Each sequence's last new token: `(sequences, vocab)` (generation).
    Last,
}

#[derive(Debug, Clone)]
struct RmsNorm {
    weight: Tensor,
    eps: f64,
    compute: DType,
}

impl RmsNorm {
    fn load(vb: &VarBuilder, size: usize, eps: f64, policy: &PrecisionPolicy) -> Result<Self> {
        let weight = get(vb, size, "weight", policy.dtype(Component::Activations))?;
        Ok(RmsNorm {
            weight,
            eps,
            compute: policy.dtype(Component::Norm),
        })
    }

    /// The same norm with its weight on `device`.
    fn on(&self, device: &Device) -> Result<Self> {
        Ok(RmsNorm {
            weight: on_device(self.weight.clone(), device)?,
            ..self.clone()
        })
    }

    /// `weight * (x / sqrt(mean(x²) + eps))`: the statistics in the norm dtype, the result cast back
    /// to the input dtype before the weight multiplies it, as transformers' `LlamaRMSNorm` orders it.
    fn forward(&self, x: &Tensor, fusion: Fusion) -> Result<Tensor> {
        let in_dtype = x.dtype();
        if let Some(y) = norm::rms_norm(x, &self.weight, self.eps, self.compute, fusion)? {
            return Ok(y);
        }
        let xc = x.to_dtype(self.compute)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = xc.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        let normed = normed.to_dtype(in_dtype)?;
        Ok(normed.broadcast_mul(&self.weight.to_dtype(in_dtype)?)?)
    }

    /// The residual stream's next value `x + delta` (`delta` cast to `x`'s dtype) and this norm
    /// of it: `(sum, normed)`, in one launch where the fused kernels apply, with the same bits.
    fn add_forward(&self, x: &Tensor, delta: &Tensor, fusion: Fusion) -> Result<(Tensor, Tensor)> {
        let delta = delta.to_dtype(x.dtype())?;
        if self.compute == DType::F32 && self.weight.dtype() == x.dtype() {
            if let Some(pair) = fused::add_rms_norm(x, &delta, &self.weight, self.eps, fusion)? {
                return Ok(pair);
            }
        }
        let sum = (x + delta)?;
        let normed = self.forward(&sum, fusion)?;
        Ok((sum, normed))
    }
}

/// A projection (q/k/v/o, gate/up/down, LM head) of one rank, with how it is split.
#[derive(Debug)]
struct Proj {
    lin: Linear,
    split: Split,
    /// For a row-parallel projection over several ranks: the bias, added once after the
    /// all-reduce (the rank's `lin` has none, so it is not summed `n` times).
    bias_after_reduce: Option<Tensor>,
}

/// How a projection's weight is divided among ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    /// By output rows: each rank computes its own output columns (q/k/v, gate/up).
    Column,
    /// By input columns: each rank computes a partial sum of every output (o, down).
    Row,
    /// By vocabulary rows, the outputs gathered across ranks (LM head).
    Vocab,
}

/// What a rank's forward pass needs to know about its group.
#[derive(Clone, Copy)]
struct RankCtx<'a> {
    comm: Option<&'a dyn Communicator>,
    size: usize,
    /// The kernels: the decoder's compute mode, or the TP-invariant tree (see
    /// [`Kernels::forward_mode`]).
    mode: ComputeMode,
    /// The GEMM of the projections ([`Kernels::gemm_family`]).
    gemm: GemmFamily,
    /// Fused GPU kernels on or off (on in the portable tier, whose RMSNorm and RoPE are the
    /// fused kernels).
    fusion: Fusion,
    /// The portable tier's SwiGLU and attention ([`Kernels::portable`]).
    portable: bool,
}

impl Proj {
    fn forward(&self, x: &Tensor, ctx: RankCtx<'_>) -> Result<Tensor> {
        let mut y = match (ctx.mode, self.split, ctx.comm) {
            (ComputeMode::Fast, Split::Row, Some(comm)) => {
                let y = comm.all_reduce_sum(&gemm::linear(&self.lin, x, ctx.mode, ctx.gemm)?)?;
                match &self.bias_after_reduce {
                    Some(b) => y.broadcast_add(&b.to_dtype(y.dtype())?)?,
                    None => y,
                }
            }
            (ComputeMode::Deterministic(order), Split::Row, Some(comm)) => {
                // This rank's chunks of K summed in their subtree, the ranks' sums in the
                // all-reduce's tree, still in f32; the bias joins the finished sum and the result
                // is rounded once, as on one device. When the order's chunks do not divide over
                // the ranks (e.g. the sequential order), each rank reduces its slice in `order`:
                // batch invariant, but not tp invariant.
                let rank_order = if order.chunks() % ctx.size == 0 {
                    ReductionOrder::tree(order.chunks() / ctx.size)?
                } else {
                    order
                };
                let compute = self.lin.compute_dtype();
                reprolm_precision::over_rows(x, |rows| -> Result<Tensor> {
                    let partials = partial_sums(rows, self.lin.weight(), compute, rank_order)?;
                    let sum = comm.all_reduce_sum(&tree_sum(&partials)?)?;
                    Ok(round_output(
                        &sum,
                        self.bias_after_reduce.as_ref(),
                        compute,
                    )?)
                })?
            }
            _ => gemm::linear(&self.lin, x, ctx.mode, ctx.gemm)?,
        };
        if let (Split::Vocab, Some(comm)) = (self.split, ctx.comm) {
            y = comm.all_gather(&y, y.rank() - 1)?;
        }
        Ok(y)
    }
}

#[derive(Debug)]
struct Attention {
    /// q, k and v stacked into one weight (`[q; k; v]` by output rows, biases likewise): one
    /// GEMM reads the input once for all three. Each output keeps its bits where the GEMM
    /// reduces an output over K in an order its width does not change (the pinned cuBLASLt
    /// algorithms, the CPU kernels).
    qkv: Proj,
    o: Proj,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    /// Query heads on this rank.
    num_heads: usize,
    /// Key/value heads on this rank.
    num_kv_heads: usize,
    head_dim: usize,
}

#[derive(Debug)]
struct Mlp {
    /// gate and up stacked into one weight (`[gate; up]`), as q, k and v are.
    gate_up: Proj,
    down: Proj,
}

#[derive(Debug)]
struct Layer {
    input_norm: RmsNorm,
    attn: Attention,
    post_norm: RmsNorm,
    mlp: Mlp,
}

/// One rank's weights: all of them for a single device, its shard under tensor parallelism.
#[derive(Debug)]
struct Rank {
    layout: ShardLayout,
    /// Where this rank's weights and cache shard live: the decoder's device, or under tensor
    /// parallelism on CUDA the rank's own GPU.
    device: Device,
    /// `None` on a single device.
    comm: Option<Arc<dyn Communicator>>,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: Proj,
    /// The LM head's weight is (a slice of) the embedding tensor itself: counted once.
    head_shares_embedding: bool,
}

/// A Llama/Qwen2/Qwen3 decoder: embeddings, pre-norm attention + SwiGLU blocks, final norm and
/// LM head, on one device or split over the ranks of a tensor-parallel group.
#[derive(Debug)]
pub struct Decoder {
    spec: DecoderSpec,
    policy: PrecisionPolicy,
    device: Device,
    tp: TensorParallel,
    ranks: Vec<Rank>,
    inv_freq: Vec<f32>,
    kernels: Kernels,
    kv_cache_size: KvCacheSize,
    /// The captured decode steps, where [`Kernels::graphs_on`] says so on a single device.
    graphs: Option<DecodeGraphs>,
}

/// The inputs every rank shares for one forward pass (replicated, read-only).
struct Inputs {
    /// The new tokens of every sequence, packed: `(tokens,)`.
    ids: Tensor,
    tokens: usize,
    cos: Tensor,
    sin: Tensor,
    /// Each token's sequence and position, and the block tables attention reads.
    queries: PagedQueries,
    /// The cache slot each token's key and value go to: `(tokens,)` u32.
    slots: Tensor,
    /// For [`LogitsFor::Last`]: the index of each sequence's last token, `(sequences,)` u32.
    last: Option<Tensor>,
}

fn get(
    vb: &VarBuilder,
    shape: impl Into<candle_core::Shape>,
    name: &str,
    dtype: DType,
) -> Result<Tensor> {
    let full = if vb.prefix().is_empty() {
        name.to_string()
    } else {
        format!("{}.{name}", vb.prefix())
    };
    vb.clone()
        .set_dtype(dtype)
        .get(shape, name)
        .map_err(|e| Error::Weights {
            location: Path::new(&full).to_path_buf(),
            reason: e.to_string(),
        })
}

/// `rows` of `dim` of `t`, copied into storage of their own so that the whole tensor can be
/// freed (a narrow alone would keep it alive). The whole range is `t` itself.
fn slice(t: Tensor, dim: usize, rows: &Range<usize>) -> Result<Tensor> {
    if rows.start == 0 && rows.end == t.dim(dim)? {
        return Ok(t);
    }
    Ok(t.narrow(dim, rows.start, rows.len())?.force_contiguous()?)
}

/// `t` on `device`: itself where it is there already, else a copy (a rank's shard going to its
/// own GPU).
fn on_device(t: Tensor, device: &Device) -> Result<Tensor> {
    if t.device().same_device(device) {
        Ok(t)
    } else {
        Ok(t.to_device(device)?)
    }
}

/// Where a projection's shard lies in its `(out, in)` weight.
struct ProjShape<'a> {
    in_dim: usize,
    out_dim: usize,
    bias: bool,
    split: Split,
    /// Rows (column split) or columns (row split) of the weight this rank holds.
    part: &'a Range<usize>,
    ranks: usize,
    /// The rank's device, which the shard is copied to.
    device: &'a Device,
}

fn proj(vb: &VarBuilder, s: ProjShape<'_>, policy: &PrecisionPolicy) -> Result<Proj> {
    let storage = policy.dtype(Component::LinearStorage);
    let w = get(vb, (s.out_dim, s.in_dim), "weight", storage)?;
    let b = if s.bias {
        Some(get(vb, s.out_dim, "bias", storage)?)
    } else {
        None
    };
    let (w, b, bias_after_reduce) = match s.split {
        Split::Column | Split::Vocab => (
            slice(w, 0, s.part)?,
            b.map(|b| slice(b, 0, s.part)).transpose()?,
            None,
        ),
        Split::Row if s.ranks == 1 => (w, b, None),
        Split::Row => (slice(w, 1, s.part)?, None, b),
    };
    let on = |t: Option<Tensor>| t.map(|t| on_device(t, s.device)).transpose();
    let (w, b, bias_after_reduce) = (on_device(w, s.device)?, on(b)?, on(bias_after_reduce)?);
    Ok(Proj {
        lin: Linear::new(w, b, storage, policy.dtype(Component::MatmulCompute))?,
        split: s.split,
        bias_after_reduce,
    })
}

/// Column-split projections of one input stacked into one: their weights (and biases)
/// concatenated by output rows, in order, the parts dropped.
fn stack<const N: usize>(parts: [Proj; N], policy: &PrecisionPolicy) -> Result<Proj> {
    let weights: Vec<Tensor> = parts.iter().map(|p| p.lin.weight().clone()).collect();
    let biases: Option<Vec<Tensor>> = parts.iter().map(|p| p.lin.bias().cloned()).collect();
    let w = Tensor::cat(&weights, 0)?;
    let b = biases.map(|b| Tensor::cat(&b, 0)).transpose()?;
    let storage = policy.dtype(Component::LinearStorage);
    Ok(Proj {
        lin: Linear::new(w, b, storage, policy.dtype(Component::MatmulCompute))?,
        split: Split::Column,
        bias_after_reduce: None,
    })
}

impl Rank {
    /// Reads rank `layout.rank`'s weights. Replicated tensors (embeddings, norms) are read once
    /// and shared between the ranks of this process (`shared`); each rank still counts them.
    fn load(
        spec: &DecoderSpec,
        policy: &PrecisionPolicy,
        vb: &VarBuilder,
        (layout, device): (ShardLayout, Device),
        comm: Option<Arc<dyn Communicator>>,
        shared: &mut Option<(Tensor, Vec<Vec<RmsNorm>>, RmsNorm)>,
    ) -> Result<Self> {
        let (h, d, n) = (spec.hidden_size, spec.head_dim, layout.size);
        let m = vb.pp("model");
        if shared.is_none() {
            let embed = get(
                &m.pp("embed_tokens"),
                (spec.vocab_size, h),
                "weight",
                policy.dtype(Component::Embedding),
            )?;
            let mut norms = Vec::with_capacity(spec.num_layers);
            for i in 0..spec.num_layers {
                let l = m.pp("layers").pp(i);
                let a = l.pp("self_attn");
                let eps = spec.rms_norm_eps;
                let mut ln = vec![
                    RmsNorm::load(&l.pp("input_layernorm"), h, eps, policy)?,
                    RmsNorm::load(&l.pp("post_attention_layernorm"), h, eps, policy)?,
                ];
                if spec.qk_norm {
                    ln.push(RmsNorm::load(&a.pp("q_norm"), d, eps, policy)?);
                    ln.push(RmsNorm::load(&a.pp("k_norm"), d, eps, policy)?);
                }
                norms.push(ln);
            }
            let norm = RmsNorm::load(&m.pp("norm"), h, spec.rms_norm_eps, policy)?;
            *shared = Some((embed, norms, norm));
        }
        let (embed, norms, norm) = shared.as_ref().expect("loaded above");
        // Replicated tensors: shared on the device they were read to, copied to another.
        let embed = &on_device(embed.clone(), &device)?;
        let norm = &norm.on(&device)?;
        let norms = &norms
            .iter()
            .map(|ln| ln.iter().map(|n| n.on(&device)).collect::<Result<Vec<_>>>())
            .collect::<Result<Vec<_>>>()?;
        let heads = layout.heads.start * d..layout.heads.end * d;
        let kv = layout.kv_heads.start * d..layout.kv_heads.end * d;
        let (q_out, kv_out) = (spec.num_heads * d, spec.num_kv_heads * d);
        let mut layers = Vec::with_capacity(spec.num_layers);
        for (i, ln) in norms.iter().enumerate() {
            let l = m.pp("layers").pp(i);
            let a = l.pp("self_attn");
            let column = |out_dim, bias, part| ProjShape {
                in_dim: h,
                out_dim,
                bias,
                split: Split::Column,
                part,
                ranks: n,
                device: &device,
            };
            let row = |in_dim, bias, part| ProjShape {
                in_dim,
                out_dim: h,
                bias,
                split: Split::Row,
                part,
                ranks: n,
                device: &device,
            };
            let attn = Attention {
                qkv: stack(
                    [
                        proj(
                            &a.pp("q_proj"),
                            column(q_out, spec.qkv_bias, &heads),
                            policy,
                        )?,
                        proj(&a.pp("k_proj"), column(kv_out, spec.qkv_bias, &kv), policy)?,
                        proj(&a.pp("v_proj"), column(kv_out, spec.qkv_bias, &kv), policy)?,
                    ],
                    policy,
                )?,
                o: proj(&a.pp("o_proj"), row(q_out, spec.o_bias, &heads), policy)?,
                q_norm: ln.get(2).cloned(),
                k_norm: ln.get(3).cloned(),
                num_heads: layout.heads.len(),
                num_kv_heads: layout.kv_heads.len(),
                head_dim: d,
            };
            let p = l.pp("mlp");
            let inter = spec.intermediate_size;
            let units = &layout.intermediate;
            let mlp = Mlp {
                gate_up: stack(
                    [
                        proj(
                            &p.pp("gate_proj"),
                            column(inter, spec.mlp_bias, units),
                            policy,
                        )?,
                        proj(
                            &p.pp("up_proj"),
                            column(inter, spec.mlp_bias, units),
                            policy,
                        )?,
                    ],
                    policy,
                )?,
                down: proj(&p.pp("down_proj"), row(inter, spec.mlp_bias, units), policy)?,
            };
            layers.push(Layer {
                input_norm: ln[0].clone(),
                attn,
                post_norm: ln[1].clone(),
                mlp,
            });
        }
        let head_dtype = policy.dtype(Component::LmHead);
        // A tied head in the embedding's dtype shares its storage; in another dtype it is a copy.
        let head_shares_embedding =
            spec.tie_word_embeddings && head_dtype == policy.dtype(Component::Embedding);
        let head_w = if head_shares_embedding {
            // A view: a row slice of a contiguous tensor needs no copy.
            let v = &layout.vocab;
            if v.len() == spec.vocab_size {
                embed.clone()
            } else {
                embed.narrow(0, v.start, v.len())?
            }
        } else {
            let (vb_head, name) = if spec.tie_word_embeddings {
                (m.pp("embed_tokens"), "weight")
            } else {
                (vb.pp("lm_head"), "weight")
            };
            let w = get(&vb_head, (spec.vocab_size, h), name, head_dtype)?;
            on_device(slice(w, 0, &layout.vocab)?, &device)?
        };
        let lm_head = Proj {
            lin: Linear::new(head_w, None, head_dtype, head_dtype)?,
            split: Split::Vocab,
            bias_after_reduce: None,
        };
        Ok(Rank {
            layout,
            device,
            comm,
            embed: embed.clone(),
            layers,
            norm: norm.clone(),
            lm_head,
            head_shares_embedding,
        })
    }

    fn ctx(&self, kernels: &Kernels) -> RankCtx<'_> {
        RankCtx {
            comm: self.comm.as_deref(),
            size: self.layout.size,
            mode: kernels.forward_mode(),
            gemm: kernels.gemm_family(),
            fusion: if kernels.portable() {
                Fusion::On
            } else {
                kernels.fusion
            },
            portable: kernels.portable(),
        }
    }

    fn weight_bytes(&self, out: &mut std::collections::BTreeMap<&'static str, usize>) {
        let mut add = |t: &Tensor| {
            *out.entry(reprolm_precision::dtype_name(t.dtype()))
                .or_insert(0) += t.elem_count() * t.dtype().size_in_bytes();
        };
        add(&self.embed);
        for l in &self.layers {
            for p in [&l.attn.qkv, &l.attn.o, &l.mlp.gate_up, &l.mlp.down] {
                add(p.lin.weight());
                for b in p.lin.bias().into_iter().chain(&p.bias_after_reduce) {
                    add(b);
                }
            }
            add(&l.input_norm.weight);
            add(&l.post_norm.weight);
            for n in [&l.attn.q_norm, &l.attn.k_norm].into_iter().flatten() {
                add(&n.weight);
            }
        }
        add(&self.norm.weight);
        if !self.head_shares_embedding {
            add(self.lm_head.lin.weight());
        }
    }

    /// This rank's share of a forward pass; returns the full logits (every rank gets them).
    fn forward(&self, dec: &Decoder, inp: &Inputs, pools: &[LayerPool]) -> Result<Tensor> {
        let ctx = self.ctx(&dec.kernels);
        let policy = &dec.policy;
        let act = policy.dtype(Component::Activations);
        let mut x = self
            .embed
            .index_select(&inp.ids, 0)?
            .reshape((1, inp.tokens, dec.spec.hidden_size))?
            .to_dtype(act)?;
        // Each residual add goes with the norm that reads its sum (one launch where fused kernels
        // apply): the attention's with the post-attention norm, the MLP's with the next layer's
        // input norm. The last layer's MLP sum is normed after the rows are selected.
        let mut h = match self.layers.first() {
            Some(first) => first.input_norm.forward(&x, ctx.fusion)?,
            None => x.clone(),
        };
        for (i, (layer, pool)) in self.layers.iter().zip(pools).enumerate() {
            let a = layer.attn.forward(&h, inp, pool, policy, ctx)?;
            let (after_attn, normed) = layer.post_norm.add_forward(&x, &a, ctx.fusion)?;
            let m = layer.mlp.forward(&normed, ctx)?;
            match self.layers.get(i + 1) {
                Some(next) => (x, h) = next.input_norm.add_forward(&after_attn, &m, ctx.fusion)?,
                None => x = (after_attn + m.to_dtype(act)?)?,
            }
        }
        let x = match &inp.last {
            // One row per token already (each sequence brought one): the selection is the identity.
            Some(last) if last.dim(0)? != inp.tokens => x.index_select(last, 1)?,
            _ => x,
        };
        let x = self.norm.forward(&x, ctx.fusion)?;
        let logits = self
            .lm_head
            .forward(&x.to_dtype(policy.dtype(Component::LmHead))?, ctx)?;
        Ok(logits
            .squeeze(0)?
            .to_dtype(policy.dtype(Component::Logits))?)
    }
}

/// Releases the other ranks of a group if this rank's body returns an error or panics before
/// its collectives are done.
struct AbortOnDrop<'a>(Option<&'a dyn Communicator>);

impl Drop for AbortOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.0 {
            c.abort();
        }
    }
}

impl Decoder {
    /// Builds the decoder from weights under transformers' names (`model.layers.N...`,
    /// `lm_head.weight`), each converted to its component's dtype as it is read.
    pub fn load(spec: &DecoderSpec, policy: &PrecisionPolicy, vb: VarBuilder) -> Result<Self> {
        Self::load_parallel(spec, policy, vb, TensorParallel::default())
    }

    /// As [`Decoder::load`], split over `tp.size` ranks (see [`crate::parallel`]). Each rank
    /// keeps only its slices of the projection weights: a weight is read whole, sliced and
    /// copied (to the rank's GPU on CUDA), and the whole dropped, so the transient peak is one
    /// weight tensor. The ranks are threads: on the CPU all on the CPU, on CUDA rank `r` on the
    /// `r`-th GPU from the one `vb` reads to, talking through NCCL (the `nccl` feature; without
    /// it `tp.size > 1` on CUDA is an error rather than a single-device run).
    ///
    /// ```
    /// # use candle_core::{DType, Device};
    /// # use candle_nn::VarBuilder;
    /// use reprolm_engine::parallel::{TensorParallel, TpMode};
    /// use reprolm_engine::{Decoder, LogitsFor};
    /// use reprolm_precision::PrecisionPolicy;
    /// # let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/qwen2");
    /// let (_, spec) = reprolm_engine::spec_from_config_file(&dir.join("config.json"))?;
    /// let vb = unsafe {
    ///     VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, &Device::Cpu)?
    /// };
    /// let tp = TensorParallel::new(2, TpMode::Standard);
    /// let dec = Decoder::load_parallel(&spec, &PrecisionPolicy::fp32(), vb, tp)?;
    /// let mut cache = dec.new_cache()?;
    /// let seq = cache.add_sequence();
    /// let logits = dec.forward(&[(seq, &[1, 2, 3][..])], &mut cache, LogitsFor::Last)?;
    /// assert_eq!(logits.dims(), &[1, spec.vocab_size]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load_parallel(
        spec: &DecoderSpec,
        policy: &PrecisionPolicy,
        vb: VarBuilder,
        tp: TensorParallel,
    ) -> Result<Self> {
        let device = vb.device().clone();
        parallel::check_parallel_device(&tp, &device)?;
        parallel::check_split(spec, &tp)?;
        let layouts = (0..tp.size)
            .map(|r| parallel::layout(spec, &tp, r))
            .collect::<Result<Vec<_>>>()?;
        let devices = parallel::rank_devices(&device, tp.size)?;
        let comms = parallel::communicators(&devices)?;
        let mut shared = None;
        let ranks = layouts
            .into_iter()
            .zip(devices)
            .zip(comms)
            .map(|(placed, comm)| Rank::load(spec, policy, &vb, placed, comm, &mut shared))
            .collect::<Result<Vec<_>>>()?;
        let kernels = Kernels {
            tp: tp.mode,
            ..Kernels::default()
        };
        let mut decoder = Decoder {
            inv_freq: spec.rope.inv_freq(spec.head_dim),
            spec: spec.clone(),
            policy: policy.clone(),
            device,
            tp,
            ranks,
            kernels,
            kv_cache_size: KvCacheSize::Auto,
            graphs: None,
        };
        decoder.graphs = decoder.new_graphs();
        Ok(decoder)
    }

    /// Fresh (empty) captured steps if this decoder's kernels run decode as graphs: on CUDA,
    /// with batch-invariant kernels, on one device.
    fn new_graphs(&self) -> Option<DecodeGraphs> {
        (self.kernels.graphs_on(&self.device) == Graphs::On && self.ranks.len() == 1)
            .then(DecodeGraphs::default)
    }

    /// Chooses the kernels every later [`forward`](Decoder::forward) runs. With
    /// [`ComputeMode::Deterministic`] a sequence's logits do not depend on the other rows of its
    /// batch, on the batch size, on its row's padding or position, or on how its prompt was
    /// split into forward calls; those kernels exist for the CPU and CUDA, so asking for them on
    /// another device is an error rather than a silently non-deterministic run. The
    /// tensor-parallel reduction ([`Kernels::tp`]) was fixed at load (it decides how the weights
    /// may be split), so a value naming another one is refused.
    ///
    /// ```
    /// # let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/qwen2");
    /// use reprolm_engine::kernels::Kernels;
    /// use reprolm_engine::{LoadOptions, Model, ModelSource};
    /// use reprolm_precision::{ComputeMode, PrecisionPolicy, ReductionOrder};
    /// let opts = LoadOptions::cpu(PrecisionPolicy::preset("bf16")?);
    /// let mut model = Model::load(&ModelSource::parse(dir.to_str().unwrap())?, &opts)?;
    /// let mode = ComputeMode::Deterministic(ReductionOrder::SEQUENTIAL);
    /// model.decoder.set_kernels(Kernels { mode, ..model.decoder.kernels() })?;
    /// assert!(model.decoder.kernels().deterministic());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_kernels(&mut self, kernels: Kernels) -> Result<()> {
        if kernels.mode.is_deterministic() && !crate::kernels::batch_invariant_on(&self.device) {
            return Err(Error::InvalidRequest(format!(
                "deterministic mode has batch-invariant kernels for the CPU and CUDA only, not {}",
                crate::device::device_label(&self.device)
            )));
        }
        if kernels.tp != self.tp.mode {
            return Err(Error::InvalidRequest(format!(
                "the tensor-parallel reduction is chosen at load: this decoder was loaded with \
                 tp_mode {}, not {}",
                self.tp.mode.as_str(),
                kernels.tp.as_str()
            )));
        }
        self.kernels = kernels;
        // Graphs captured with the previous kernels would replay them.
        self.graphs = self.new_graphs();
        Ok(())
    }

    /// The kernels [`forward`](Decoder::forward) runs, as [`set_kernels`](Decoder::set_kernels)
    /// chose them.
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// Whether a sequence's logits are independent of the batch it runs in (and of how its
    /// prompt is chunked): true unless the fast path was given the heuristic kernels. When true,
    /// a scheduler may pack, preempt and resume sequences in any way without changing a bit of
    /// what they generate.
    pub fn batch_invariant(&self) -> bool {
        self.kernels.batch_invariant()
    }

    /// The decoder's shape.
    pub fn spec(&self) -> &DecoderSpec {
        &self.spec
    }

    /// The policy the weights were placed with.
    pub fn policy(&self) -> &PrecisionPolicy {
        &self.policy
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// How the decoder is split over ranks (size 1 on a single device).
    pub fn tensor_parallel(&self) -> TensorParallel {
        self.tp
    }

    /// What each rank holds, in rank order.
    pub fn shard_layouts(&self) -> Vec<&ShardLayout> {
        self.ranks.iter().map(|r| &r.layout).collect()
    }

    /// An empty KV cache for this decoder (one pool per layer and rank, in the policy's KV-cache
    /// dtype), of the size [`Decoder::set_kv_cache_size`] chose.
    pub fn new_cache(&self) -> Result<KvCache> {
        self.new_cache_of(self.kv_cache_size)
    }

    /// An empty KV cache of `size`.
    pub fn new_cache_of(&self, size: KvCacheSize) -> Result<KvCache> {
        let shape = self.cache_shape();
        let devices: Vec<Device> = self.ranks.iter().map(|r| r.device.clone()).collect();
        let blocks = size.blocks_over(&shape, &devices)?;
        KvCache::new(&shape, blocks, &devices)
    }

    /// Bytes one block of this decoder's KV cache takes (all layers, keys and values, in the
    /// policy's KV dtype): the unit a cache budget is counted in.
    pub fn kv_block_bytes(&self) -> usize {
        self.cache_shape().block_bytes()
    }

    /// The size of the caches [`Decoder::new_cache`] makes (`--kv-cache-memory`).
    pub fn set_kv_cache_size(&mut self, size: KvCacheSize) {
        self.kv_cache_size = size;
    }

    /// The size of the caches [`Decoder::new_cache`] makes.
    pub fn kv_cache_size(&self) -> KvCacheSize {
        self.kv_cache_size
    }

    fn cache_shape(&self) -> CacheShape {
        CacheShape {
            num_layers: self.spec.num_layers,
            head_dim: self.spec.head_dim,
            kv_heads: self.ranks.iter().map(|r| r.layout.kv_heads.len()).collect(),
            dtype: self.policy.dtype(Component::KvCache),
        }
    }

    /// Bytes held by the weights, by dtype name, summed over ranks. A tied LM head counts once
    /// when it shares the embedding tensor, and again when the policy gives it another dtype (a
    /// second copy). On a single device this equals
    /// [`ModelShape::weight_memory`](reprolm_precision::ModelShape::weight_memory)'s
    /// `by_dtype()` for `spec().shape()`; under tensor parallelism the replicated embeddings and
    /// norms count once per rank, as each GPU of a group would hold them.
    pub fn weight_bytes(&self) -> std::collections::BTreeMap<&'static str, usize> {
        let mut out = std::collections::BTreeMap::new();
        for r in &self.ranks {
            r.weight_bytes(&mut out);
        }
        out
    }

    /// As [`Decoder::weight_bytes`], for one rank.
    pub fn rank_weight_bytes(
        &self,
        rank: usize,
    ) -> std::collections::BTreeMap<&'static str, usize> {
        let mut out = std::collections::BTreeMap::new();
        if let Some(r) = self.ranks.get(rank) {
            r.weight_bytes(&mut out);
        }
        out
    }

    /// Runs the new tokens of each sequence of `seqs` (those that follow what `cache` holds
    /// for it) through the decoder as one packed pass, writes their keys and values into their
    /// cache slots, and returns logits in the policy's logits dtype: `(sequences, vocab)` for
    /// [`LogitsFor::Last`], `(tokens, vocab)` for [`LogitsFor::All`], in the order of `seqs`.
    /// A sequence's results do not depend on the other sequences of the call.
    pub fn forward(
        &self,
        seqs: &[(SeqId, &[u32])],
        cache: &mut KvCache,
        logits_for: LogitsFor,
    ) -> Result<Tensor> {
        if seqs.is_empty() || seqs.iter().any(|(_, t)| t.is_empty()) {
            return Err(Error::InvalidRequest(
                "forward needs at least one sequence, each with at least one new token".into(),
            ));
        }
        if cache.shards() != self.ranks.len() {
            return Err(Error::InvalidRequest(format!(
                "cache has {} shards, the decoder {} tensor-parallel ranks",
                cache.shards(),
                self.ranks.len()
            )));
        }
        let mut plan = Vec::with_capacity(seqs.len());
        for (i, &(seq, toks)) in seqs.iter().enumerate() {
            if seqs[..i].iter().any(|(s, _)| *s == seq) {
                return Err(Error::InvalidRequest(format!(
                    "sequence {seq:?} appears twice in one forward pass"
                )));
            }
            let past = cache.seq_len(seq)?;
            if past + toks.len() > self.spec.max_position_embeddings {
                return Err(Error::InvalidRequest(format!(
                    "sequence would exceed max_position_embeddings = {}",
                    self.spec.max_position_embeddings
                )));
            }
            if let Some(bad) = toks.iter().find(|&&t| t as usize >= self.spec.vocab_size) {
                return Err(Error::InvalidRequest(format!(
                    "token id {bad} >= vocab_size {}",
                    self.spec.vocab_size
                )));
            }
            plan.push((seq, toks.len()));
        }
        cache.reserve(&plan)?;
        let total: usize = plan.iter().map(|p| p.1).sum();
        let (mut ids, mut positions) = (Vec::with_capacity(total), Vec::with_capacity(total));
        let (mut seq_index, mut slots) = (Vec::with_capacity(total), Vec::with_capacity(total));
        let mut tables = Vec::with_capacity(seqs.len());
        let mut last = Vec::with_capacity(seqs.len());
        for (i, &(seq, toks)) in seqs.iter().enumerate() {
            let past = cache.seq_len(seq)?;
            for (j, &t) in toks.iter().enumerate() {
                ids.push(t);
                positions.push(past + j);
                seq_index.push(i as u32);
                slots.push(cache.slot(seq, past + j)?);
            }
            tables.push(cache.table(seq)?.to_vec());
            last.push((ids.len() - 1) as u32);
        }
        // A decode step (one new token per sequence, last logits) through its CUDA graph where
        // graphs are on.
        let step = StepRows {
            ids: &ids,
            positions: &positions,
            slots: &slots,
            tables: &tables,
        };
        let graphed = match (&self.graphs, logits_for) {
            (Some(graphs), LogitsFor::Last) if total == seqs.len() => {
                self.graph_step(graphs, &step, cache)?
            }
            _ => None,
        };
        let logits = match graphed {
            Some(logits) => logits,
            None => {
                // The packed inputs on one device; a rank on another GPU makes its own copy.
                let inputs_on = |device: &Device| -> Result<Inputs> {
                    let (cos, sin) = rope::cos_sin(
                        &self.inv_freq,
                        std::slice::from_ref(&positions),
                        self.policy.dtype(Component::Rope),
                        device,
                    )?;
                    let pos32: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
                    Ok(Inputs {
                        ids: Tensor::new(ids.as_slice(), device)?,
                        tokens: total,
                        cos,
                        sin,
                        queries: PagedQueries::new(seq_index.clone(), pos32, &tables, device)?,
                        slots: Tensor::new(slots.as_slice(), device)?,
                        last: match logits_for {
                            LogitsFor::All => None,
                            LogitsFor::Last => Some(Tensor::new(last.as_slice(), device)?),
                        },
                    })
                };
                let inputs = inputs_on(&self.device)?;
                if self.ranks.len() == 1 {
                    self.ranks[0].forward(self, &inputs, cache.shard(0))?
                } else {
                    self.forward_ranks(&inputs, &inputs_on, cache)?
                }
            }
        };
        for (seq, n) in plan {
            cache.advance(seq, n)?;
        }
        Ok(logits)
    }

    /// One decode step through `graphs` (see [`crate::decode_graph`]): the single rank's forward
    /// pass over the bucket's persistent inputs, with RoPE's cos/sin gathered from a table of
    /// every position the cache can hold. `None` where the step has no graph; it then runs
    /// eagerly, with the same bits.
    fn graph_step(
        &self,
        graphs: &DecodeGraphs,
        rows: &StepRows<'_>,
        cache: &KvCache,
    ) -> Result<Option<Tensor>> {
        let capacity = self
            .spec
            .max_position_embeddings
            .min(cache.capacity_tokens());
        let rope_dtype = self.policy.dtype(Component::Rope);
        let rope_table = |positions: usize| -> Result<(Tensor, Tensor)> {
            let all: Vec<usize> = (0..positions).collect();
            rope::cos_sin(&self.inv_freq, &[all], rope_dtype, &self.device)
        };
        let spec = StepSpec {
            device: &self.device,
            pools: cache.shard(0),
            capacity,
            vocab: self.spec.vocab_size,
            logits_dtype: self.policy.dtype(Component::Logits),
            rope_table: &rope_table,
        };
        let forward = |view: &StepView<'_>| -> Result<Tensor> {
            let (layout, packed) = (view.layout, view.packed);
            let b = layout.rows;
            let pos = layout.run(packed, 1)?;
            // The host side of the queries (what the launch is checked and sized by): this
            // step's rows, then the padding rows, each its own sequence at position 0.
            let seq_h: Vec<u32> = (0..b as u32).collect();
            let pos_h: Vec<u32> = (0..b)
                .map(|i| rows.positions.get(i).map_or(0, |&p| p as u32))
                .collect();
            let tables_h: Vec<Vec<u32>> = (0..b)
                .map(|i| rows.tables.get(i).cloned().unwrap_or_else(|| vec![0]))
                .collect();
            let queries = PagedQueries::in_buffers(
                seq_h,
                pos_h,
                &tables_h,
                layout.width,
                view.context - 1,
                [layout.run(packed, 2)?, pos.clone(), layout.tables(packed)?],
            )?;
            let inputs = Inputs {
                ids: layout.run(packed, 0)?,
                tokens: b,
                cos: view.rope.0.index_select(&pos, 1)?,
                sin: view.rope.1.index_select(&pos, 1)?,
                queries,
                slots: layout.run(packed, 3)?,
                last: Some(layout.run(packed, 4)?),
            };
            self.ranks[0].forward(self, &inputs, cache.shard(0))
        };
        graphs.step(&spec, rows, &forward)
    }

    /// How many decode steps are captured as CUDA graphs; `None` where graphs are off (see
    /// [`Kernels::graphs_on`]).
    pub fn graphs_captured(&self) -> Option<usize> {
        self.graphs.as_ref().map(DecodeGraphs::captured)
    }

    /// Runs every rank's share on its own thread (plain threads, never rayon workers: a rank
    /// blocks at the group's barrier, and candle's kernels inside it use rayon's pool) and
    /// returns rank 0's logits. A rank's own error is preferred over the "another rank failed"
    /// errors it causes in the others.
    fn forward_ranks(
        &self,
        inputs: &Inputs,
        inputs_on: &(dyn Fn(&Device) -> Result<Inputs> + Sync),
        cache: &KvCache,
    ) -> Result<Tensor> {
        let results: Vec<Result<Tensor>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .ranks
                .iter()
                .enumerate()
                .map(|(r, rank)| {
                    let shard = cache.shard(r);
                    s.spawn(move || {
                        let guard = AbortOnDrop(rank.comm.as_deref());
                        let out = if rank.device.same_device(&self.device) {
                            rank.forward(self, inputs, shard)
                        } else {
                            inputs_on(&rank.device).and_then(|own| rank.forward(self, &own, shard))
                        };
                        if out.is_ok() {
                            std::mem::forget(guard);
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .enumerate()
                .map(|(r, h)| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Collective {
                            op: "forward",
                            rank: r,
                            reason: "the rank's thread panicked".into(),
                        })
                    })
                })
                .collect()
        });
        let (oks, errs): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
        let mut errs: Vec<Error> = errs.into_iter().filter_map(Result::err).collect();
        if !errs.is_empty() {
            let own = errs.iter().position(|e| !e.is_group_abort()).unwrap_or(0);
            return Err(errs.swap_remove(own));
        }
        // No rank failed, so rank 0's logits come first.
        oks.into_iter()
            .next()
            .expect("a group has at least one rank")
    }
}

impl Attention {
    fn forward(
        &self,
        x: &Tensor,
        inp: &Inputs,
        (keys, values): &LayerPool,
        policy: &PrecisionPolicy,
        ctx: RankCtx<'_>,
    ) -> Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let (h, kvh, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let (cos, sin) = (&inp.cos, &inp.sin);
        let act = policy.dtype(Component::Activations);
        let attn_dtype = policy.dtype(Component::Attention);
        // Each token's row holds its q heads, then its k heads, then its v heads.
        let qkv = self
            .qkv
            .forward(x, ctx)?
            .to_dtype(act)?
            .reshape((b, l, h + 2 * kvh, d))?;
        let mut q = qkv.narrow(2, 0, h)?;
        let mut k = qkv.narrow(2, h, kvh)?;
        let v = qkv.narrow(2, h + kvh, kvh)?;
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            q = qn.forward(&q, ctx.fusion)?;
            k = kn.forward(&k, ctx.fusion)?;
        }
        // Token-major `(tokens, heads, head_dim)` from here on, as the projections lay it out, so
        // nothing is transposed. Keys and values go to their slots in the cache dtype first;
        // attention reads them back from there, so it always sees what the cache holds.
        let q = match fused::rope_and_cache_write(
            [&q, &k, &v],
            (cos, sin),
            (keys, values),
            &inp.slots,
            ctx.fusion,
        )? {
            Some(q) => q,
            None => {
                let rotate = |x: &Tensor| -> Result<Tensor> {
                    match fused::rope(x, cos, sin, ctx.fusion)? {
                        Some(y) => Ok(y),
                        None => rope::apply(x, cos, sin),
                    }
                };
                let kv_dtype = keys.dtype();
                let k = rotate(&k)?.to_dtype(act)?;
                write_slots(keys, &k.squeeze(0)?.to_dtype(kv_dtype)?, &inp.slots)?;
                write_slots(values, &v.squeeze(0)?.to_dtype(kv_dtype)?, &inp.slots)?;
                rotate(&q)?
            }
        };
        let scale = 1.0 / (d as f64).sqrt();
        let attend = if ctx.portable {
            paged_attention_portable
        } else {
            paged_attention
        };
        let out = attend(
            &q.squeeze(0)?,
            keys,
            values,
            &inp.queries,
            scale,
            attn_dtype,
        )?;
        let out = out.reshape((b, l, h * d))?.to_dtype(act)?;
        self.o.forward(&out, ctx)
    }
}

/// The dtype softmax, the attention mask and SiLU use for a computation in `attn`: f32, or f64
/// for f64.
fn softmax_dtype(attn: DType) -> DType {
    if attn == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

impl Mlp {
    fn forward(&self, x: &Tensor, ctx: RankCtx<'_>) -> Result<Tensor> {
        // SiLU in f32 (or f64) and rounded once, as torch's kernel does; candle's 16-bit SiLU
        // would round after each of its divide, add and exp.
        let gate_up = self.gate_up.forward(x, ctx)?;
        let (last, inter) = (gate_up.rank() - 1, gate_up.dim(D::Minus1)? / 2);
        let (gate, up) = (
            gate_up.narrow(last, 0, inter)?,
            gate_up.narrow(last, inter, inter)?,
        );
        let fused = if ctx.portable {
            fused::silu_mul_portable(&gate, &up)?
        } else {
            fused::silu_mul(&gate, &up, ctx.fusion)?
        };
        if let Some(product) = fused {
            return self.down.forward(&product, ctx);
        }
        let gate = activation::silu(&gate.to_dtype(softmax_dtype(gate.dtype()))?)?
            .to_dtype(gate.dtype())?;
        self.down.forward(&(gate * up)?, ctx)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    /// RMSNorm (`kernels::norm`'s body for f32 statistics, candle's ops for f64) and candle's
    /// log-softmax reduce each row on its own, so a row's result must not depend on how many
    /// rows there are or where it sits. This checks it for the widths and dtypes the models use.
    #[test]
    fn rmsnorm_and_log_softmax_rows_do_not_depend_on_the_batch() -> Result<()> {
        let dev = Device::Cpu;
        for (dtype, norm) in [
            (DType::F32, DType::F32),
            (DType::BF16, DType::F32),
            (DType::F16, DType::F32),
            (DType::F64, DType::F64),
        ] {
            let width = 896;
            let x = Tensor::randn(0f32, 2.0, (40, width), &dev)?.to_dtype(dtype)?;
            let n = RmsNorm {
                weight: Tensor::randn(1f32, 0.1, width, &dev)?.to_dtype(dtype)?,
                eps: 1e-6,
                compute: norm,
            };
            let bits = reprolm_precision::deterministic::value_bits;
            let all_norm = n.forward(&x, Fusion::On)?;
            let all_lsm = candle_nn::ops::log_softmax(&x.to_dtype(DType::F32)?, D::Minus1)?;
            for (row, m) in [(0, 1), (1, 2), (2, 3), (7, 8), (32, 33), (39, 5)] {
                let start = row + 1 - m;
                let part = x.narrow(0, start, m)?;
                let one = n.forward(&part, Fusion::On)?.narrow(0, row - start, 1)?;
                assert_eq!(
                    bits(&one)?,
                    bits(&all_norm.narrow(0, row, 1)?)?,
                    "{dtype:?} norm row {row} of {m}"
                );
                let lsm = candle_nn::ops::log_softmax(&part.to_dtype(DType::F32)?, D::Minus1)?;
                assert_eq!(
                    bits(&lsm.narrow(0, row - start, 1)?)?,
                    bits(&all_lsm.narrow(0, row, 1)?)?,
                    "{dtype:?} log-softmax row {row} of {m}"
                );
            }
        }
        Ok(())
    }
}
