//! The pre-norm decoder shared by Llama, Qwen2 and Qwen3, with every op placed in the dtype the
//! precision policy gives its component.
//!
//! Shapes follow candle's convention: activations are `(batch, seq, hidden)`, attention tensors
//! `(batch, heads, seq, head_dim)`, the cache `(batch, kv_heads, len, head_dim)`.

use super::rope::{self, RopeSpec};
use crate::fused;
use crate::kv_cache::KvCache;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use reprolm_precision::deterministic::{self, AttentionRows};
use reprolm_precision::{matmul, Component, ComputeMode, Linear, ModelShape, PrecisionPolicy};
use std::path::Path;

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
    /// Every position: `(batch, seq, vocab)` (parity tests, scoring a text).
    All,
    /// The last position only: `(batch, 1, vocab)` (generation).
    Last,
}

#[derive(Debug)]
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

    /// `weight * (x / sqrt(mean(x²) + eps))`: the statistics in the norm dtype, the result cast back
    /// to the input dtype before the weight multiplies it, as transformers' `LlamaRMSNorm` orders it.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let in_dtype = x.dtype();
        if self.compute == DType::F32 && self.weight.dtype() == in_dtype {
            if let Some(y) = fused::rms_norm(x, &self.weight, self.eps)? {
                return Ok(y);
            }
        }
        let xc = x.to_dtype(self.compute)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = xc.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        let normed = normed.to_dtype(in_dtype)?;
        Ok(normed.broadcast_mul(&self.weight.to_dtype(in_dtype)?)?)
    }
}

#[derive(Debug)]
struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

#[derive(Debug)]
struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
}

#[derive(Debug)]
struct Layer {
    input_norm: RmsNorm,
    attn: Attention,
    post_norm: RmsNorm,
    mlp: Mlp,
}

/// A loaded decoder: weights placed per the policy, ready to run batches against a [`KvCache`].
#[derive(Debug)]
pub struct Decoder {
    spec: DecoderSpec,
    policy: PrecisionPolicy,
    device: Device,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: Linear,
    /// The LM head's weight is the embedding tensor itself (tied, same dtype): counted once.
    head_shares_embedding: bool,
    inv_freq: Vec<f32>,
    mode: ComputeMode,
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

fn linear(
    vb: &VarBuilder,
    in_dim: usize,
    out_dim: usize,
    bias: bool,
    policy: &PrecisionPolicy,
) -> Result<Linear> {
    let storage = policy.dtype(Component::LinearStorage);
    let w = get(vb, (out_dim, in_dim), "weight", storage)?;
    let b = if bias {
        Some(get(vb, out_dim, "bias", storage)?)
    } else {
        None
    };
    Ok(Linear::new(
        w,
        b,
        storage,
        policy.dtype(Component::MatmulCompute),
    )?)
}

impl Decoder {
    /// Builds the decoder from weights under transformers' names (`model.layers.N...`,
    /// `lm_head.weight`), each converted to its component's dtype as it is read.
    pub fn load(spec: &DecoderSpec, policy: &PrecisionPolicy, vb: VarBuilder) -> Result<Self> {
        let device = vb.device().clone();
        let (h, d) = (spec.hidden_size, spec.head_dim);
        let m = vb.pp("model");
        let embed = get(
            &m.pp("embed_tokens"),
            (spec.vocab_size, h),
            "weight",
            policy.dtype(Component::Embedding),
        )?;
        let mut layers = Vec::with_capacity(spec.num_layers);
        for i in 0..spec.num_layers {
            let l = m.pp("layers").pp(i);
            let a = l.pp("self_attn");
            let (q_out, kv_out) = (spec.num_heads * d, spec.num_kv_heads * d);
            let attn = Attention {
                q: linear(&a.pp("q_proj"), h, q_out, spec.qkv_bias, policy)?,
                k: linear(&a.pp("k_proj"), h, kv_out, spec.qkv_bias, policy)?,
                v: linear(&a.pp("v_proj"), h, kv_out, spec.qkv_bias, policy)?,
                o: linear(&a.pp("o_proj"), q_out, h, spec.o_bias, policy)?,
                q_norm: spec
                    .qk_norm
                    .then(|| RmsNorm::load(&a.pp("q_norm"), d, spec.rms_norm_eps, policy))
                    .transpose()?,
                k_norm: spec
                    .qk_norm
                    .then(|| RmsNorm::load(&a.pp("k_norm"), d, spec.rms_norm_eps, policy))
                    .transpose()?,
                num_heads: spec.num_heads,
                num_kv_heads: spec.num_kv_heads,
                head_dim: d,
            };
            let p = l.pp("mlp");
            let mlp = Mlp {
                gate: linear(
                    &p.pp("gate_proj"),
                    h,
                    spec.intermediate_size,
                    spec.mlp_bias,
                    policy,
                )?,
                up: linear(
                    &p.pp("up_proj"),
                    h,
                    spec.intermediate_size,
                    spec.mlp_bias,
                    policy,
                )?,
                down: linear(
                    &p.pp("down_proj"),
                    spec.intermediate_size,
                    h,
                    spec.mlp_bias,
                    policy,
                )?,
            };
            layers.push(Layer {
                input_norm: RmsNorm::load(&l.pp("input_layernorm"), h, spec.rms_norm_eps, policy)?,
                attn,
                post_norm: RmsNorm::load(
                    &l.pp("post_attention_layernorm"),
                    h,
                    spec.rms_norm_eps,
                    policy,
                )?,
                mlp,
            });
        }
        let norm = RmsNorm::load(&m.pp("norm"), h, spec.rms_norm_eps, policy)?;
        let head_dtype = policy.dtype(Component::LmHead);
        // A tied head in the embedding's dtype shares its storage; in another dtype it is a copy.
        let head_shares_embedding =
            spec.tie_word_embeddings && head_dtype == policy.dtype(Component::Embedding);
        let head_w = if head_shares_embedding {
            embed.clone()
        } else if spec.tie_word_embeddings {
            get(
                &m.pp("embed_tokens"),
                (spec.vocab_size, h),
                "weight",
                head_dtype,
            )?
        } else {
            get(
                &vb.pp("lm_head"),
                (spec.vocab_size, h),
                "weight",
                head_dtype,
            )?
        };
        let lm_head = Linear::new(head_w, None, head_dtype, head_dtype)?;
        Ok(Decoder {
            inv_freq: spec.rope.inv_freq(d),
            spec: spec.clone(),
            policy: policy.clone(),
            device,
            embed,
            layers,
            norm,
            lm_head,
            head_shares_embedding,
            mode: ComputeMode::Fast,
        })
    }

    /// Chooses the kernels every later [`forward`](Decoder::forward) runs. In
    /// [`ComputeMode::Deterministic`] a sequence's logits do not depend on the other rows of its
    /// batch, on the batch size, on its row's padding or position, or on how its prompt was
    /// split into forward calls; those kernels exist for the CPU and CUDA, so asking for them on
    /// another device is an error rather than a silently non-deterministic run.
    ///
    /// ```
    /// # let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/qwen2");
    /// use reprolm_engine::{LoadOptions, Model, ModelSource};
    /// use reprolm_precision::{ComputeMode, PrecisionPolicy, ReductionOrder};
    /// let opts = LoadOptions::cpu(PrecisionPolicy::preset("bf16")?);
    /// let mut model = Model::load(&ModelSource::parse(dir.to_str().unwrap())?, &opts)?;
    /// model.decoder.set_compute_mode(ComputeMode::Deterministic(ReductionOrder::SEQUENTIAL))?;
    /// assert!(model.decoder.compute_mode().is_deterministic());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_compute_mode(&mut self, mode: ComputeMode) -> Result<()> {
        if mode.is_deterministic() && !(self.device.is_cpu() || self.device.is_cuda()) {
            return Err(Error::InvalidRequest(format!(
                "deterministic mode has batch-invariant kernels for the CPU and CUDA only, not {}",
                crate::device::device_label(&self.device)
            )));
        }
        self.mode = mode;
        Ok(())
    }

    /// The kernels [`forward`](Decoder::forward) runs.
    pub fn compute_mode(&self) -> ComputeMode {
        self.mode
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

    /// An empty cache for rows whose prompts are left-padded by `starts[b]` slots.
    pub fn new_cache(&self, starts: Vec<usize>) -> KvCache {
        KvCache::new(
            self.spec.num_layers,
            starts,
            self.policy.dtype(Component::KvCache),
        )
    }

    /// Bytes held by the weights, by dtype name. A tied LM head counts once when it shares the
    /// embedding tensor, and again when the policy gives it another dtype (a second copy). Equals
    /// [`ModelShape::weight_memory`](reprolm_precision::ModelShape::weight_memory)'s `by_dtype()`
    /// for `spec().shape()`.
    pub fn weight_bytes(&self) -> std::collections::BTreeMap<&'static str, usize> {
        let mut out = std::collections::BTreeMap::new();
        let mut add = |t: &Tensor| {
            *out.entry(reprolm_precision::dtype_name(t.dtype()))
                .or_insert(0) += t.elem_count() * t.dtype().size_in_bytes();
        };
        add(&self.embed);
        for l in &self.layers {
            for lin in [
                &l.attn.q,
                &l.attn.k,
                &l.attn.v,
                &l.attn.o,
                &l.mlp.gate,
                &l.mlp.up,
                &l.mlp.down,
            ] {
                add(lin.weight());
                if let Some(b) = lin.bias() {
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
            add(self.lm_head.weight());
        }
        out
    }

    /// Runs `tokens` (`batch` rows of equal length `seq`, left-padded as `cache.starts()` says)
    /// through the decoder, appends their keys/values to `cache`, and returns logits in the
    /// policy's logits dtype: `(batch, seq, vocab)` or `(batch, 1, vocab)`.
    pub fn forward(
        &self,
        tokens: &[Vec<u32>],
        cache: &mut KvCache,
        logits_for: LogitsFor,
    ) -> Result<Tensor> {
        let b = tokens.len();
        let l = tokens.first().map_or(0, Vec::len);
        if b == 0 || l == 0 || tokens.iter().any(|r| r.len() != l) {
            return Err(Error::InvalidRequest(format!(
                "forward needs {b} non-empty rows of equal length"
            )));
        }
        if cache.rows() != b {
            return Err(Error::InvalidRequest(format!(
                "cache has {} rows, batch has {b}",
                cache.rows()
            )));
        }
        let past = cache.len();
        let starts = cache.starts().to_vec();
        if past + l - starts.iter().copied().min().unwrap_or(0) > self.spec.max_position_embeddings
        {
            return Err(Error::InvalidRequest(format!(
                "sequence would exceed max_position_embeddings = {}",
                self.spec.max_position_embeddings
            )));
        }
        let act = self.policy.dtype(Component::Activations);
        let flat: Vec<u32> = tokens.iter().flatten().copied().collect();
        if let Some(bad) = flat.iter().find(|&&t| t as usize >= self.spec.vocab_size) {
            return Err(Error::InvalidRequest(format!(
                "token id {bad} >= vocab_size {}",
                self.spec.vocab_size
            )));
        }
        let ids = Tensor::from_vec(flat, b * l, &self.device)?;
        let mut x = self
            .embed
            .index_select(&ids, 0)?
            .reshape((b, l, self.spec.hidden_size))?
            .to_dtype(act)?;

        // Per-row positions: a padded row counts from its first real token.
        let positions: Vec<Vec<usize>> = starts
            .iter()
            .map(|&s| (0..l).map(|i| (past + i).saturating_sub(s)).collect())
            .collect();
        let (cos, sin) = rope::cos_sin(
            &self.inv_freq,
            &positions,
            self.policy.dtype(Component::Rope),
            &self.device,
        )?;
        // The deterministic attention kernel reads the row starts itself; it needs no mask.
        let mask = match self.mode {
            ComputeMode::Fast => self.attention_mask(&starts, past, l)?,
            ComputeMode::Deterministic(_) => None,
        };
        let ctx = AttentionContext {
            cos: &cos,
            sin: &sin,
            mask: mask.as_ref(),
            rows: AttentionRows {
                starts: &starts,
                past,
            },
            policy: &self.policy,
            mode: self.mode,
        };

        for (i, layer) in self.layers.iter().enumerate() {
            let h = layer.input_norm.forward(&x)?;
            let a = layer.attn.forward(&h, &ctx, cache, i)?;
            x = (x + a.to_dtype(act)?)?;
            let h = layer.post_norm.forward(&x)?;
            let m = layer.mlp.forward(&h, self.mode)?;
            x = (x + m.to_dtype(act)?)?;
        }
        let x = match logits_for {
            LogitsFor::All => x,
            LogitsFor::Last => x.narrow(1, l - 1, 1)?,
        };
        let x = self.norm.forward(&x)?;
        let logits = self.lm_head.forward_with(
            &x.to_dtype(self.policy.dtype(Component::LmHead))?,
            self.mode,
        )?;
        Ok(logits.to_dtype(self.policy.dtype(Component::Logits))?)
    }

    /// Additive mask `(batch, 1, seq, past + seq)`: query `i` of row `b` sees slots
    /// `starts[b] ..= past + i`. A padding query sees only itself, so no softmax row is empty.
    /// `None` when nothing needs masking (one new token per row, no padding).
    fn attention_mask(&self, starts: &[usize], past: usize, l: usize) -> Result<Option<Tensor>> {
        if l == 1 && starts.iter().all(|&s| s == 0) {
            return Ok(None);
        }
        let t = past + l;
        let mut m = vec![0f32; starts.len() * l * t];
        for (b, &s) in starts.iter().enumerate() {
            for i in 0..l {
                let q = past + i;
                let row = &mut m[(b * l + i) * t..(b * l + i + 1) * t];
                for (j, v) in row.iter_mut().enumerate() {
                    let visible = (j >= s && j <= q) || j == q;
                    if !visible {
                        *v = f32::NEG_INFINITY;
                    }
                }
            }
        }
        let mask = Tensor::from_vec(m, (starts.len(), 1, l, t), &self.device)?;
        Ok(Some(mask.to_dtype(softmax_dtype(
            self.policy.dtype(Component::Attention),
        ))?))
    }
}

/// What every layer's attention needs to know about one forward call.
struct AttentionContext<'a> {
    cos: &'a Tensor,
    sin: &'a Tensor,
    /// The additive mask of the fast path (`None` in deterministic mode, or when nothing is masked).
    mask: Option<&'a Tensor>,
    rows: AttentionRows<'a>,
    policy: &'a PrecisionPolicy,
    mode: ComputeMode,
}

impl Attention {
    fn forward(
        &self,
        x: &Tensor,
        ctx: &AttentionContext<'_>,
        cache: &mut KvCache,
        layer: usize,
    ) -> Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let (h, kvh, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let (cos, sin, mode) = (ctx.cos, ctx.sin, ctx.mode);
        let act = ctx.policy.dtype(Component::Activations);
        let attn_dtype = ctx.policy.dtype(Component::Attention);
        let mut q = self
            .q
            .forward_with(x, mode)?
            .to_dtype(act)?
            .reshape((b, l, h, d))?;
        let mut k = self
            .k
            .forward_with(x, mode)?
            .to_dtype(act)?
            .reshape((b, l, kvh, d))?;
        let v = self
            .v
            .forward_with(x, mode)?
            .to_dtype(act)?
            .reshape((b, l, kvh, d))?;
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            q = qn.forward(&q)?;
            k = kn.forward(&k)?;
        }
        let rotate = |x: &Tensor| -> Result<Tensor> {
            match fused::rope(x, cos, sin)? {
                Some(y) => Ok(y),
                None => rope::apply(&x.transpose(1, 2)?.contiguous()?, cos, sin),
            }
        };
        let q = rotate(&q)?;
        let k = rotate(&k)?.to_dtype(act)?;
        let v = v.transpose(1, 2)?;
        let (k_all, v_all) = cache.append(layer, &k, &v)?;
        let scale = 1.0 / (d as f64).sqrt();

        if mode.is_deterministic() {
            // Keys and values are read back from the cache (already rounded to its dtype), GQA
            // groups are read in place, and each query sums over its row's own slots only.
            let out = deterministic::attention(&q, &k_all, &v_all, ctx.rows, scale, attn_dtype)?;
            let out = out.transpose(1, 2)?.reshape((b, l, h * d))?.to_dtype(act)?;
            return Ok(self.o.forward_with(&out, mode)?);
        }
        // Grouped-query attention without copying keys and values per query head: the `n_rep`
        // query heads that share a key/value head are stacked as extra query rows of one matmul,
        // `(b, kvh, n_rep * l, d) · (b, kvh, d, t)`, then viewed back as `(b, h, l, t)`.
        let n_rep = h / kvh;
        let t = k_all.dim(2)?;
        let q = q
            .to_dtype(attn_dtype)?
            .contiguous()?
            .reshape((b, kvh, n_rep * l, d))?;
        let k_all = k_all.to_dtype(attn_dtype)?;
        let v_all = v_all.to_dtype(attn_dtype)?.contiguous()?;
        // cuBLAS reads a transposed operand in place; candle's CPU GEMM is given the layout it
        // was measured with.
        let k_t = if k_all.device().is_cpu() {
            k_all.t()?.contiguous()?
        } else {
            k_all.t()?
        };
        let wide = softmax_dtype(attn_dtype);
        let scores = matmul(&q, &k_t, attn_dtype)?.reshape((b, h, l, t))?;
        // Scale in f32 and round once, as torch's `bf16_tensor * python_float` does; candle's
        // affine would first round 1/√d itself to bf16 (inexact for head_dim 32 or 128).
        let mut scores = (scores.to_dtype(wide)? * scale)?
            .to_dtype(attn_dtype)?
            .to_dtype(wide)?;
        if let Some(m) = ctx.mask {
            scores = scores.broadcast_add(m)?;
        }
        // Softmax in f32 (or wider), as every attention kernel accumulates it.
        let probs = candle_nn::ops::softmax_last_dim(&scores)?
            .to_dtype(attn_dtype)?
            .reshape((b, kvh, n_rep * l, t))?;
        let out = matmul(&probs, &v_all, attn_dtype)?.reshape((b, h, l, d))?;
        let out = out.transpose(1, 2)?.reshape((b, l, h * d))?.to_dtype(act)?;
        Ok(self.o.forward_with(&out, mode)?)
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
    fn forward(&self, x: &Tensor, mode: ComputeMode) -> Result<Tensor> {
        // SiLU in f32 (or f64) and rounded once, as torch's kernel does; candle's 16-bit SiLU
        // would round after each of its divide, add and exp.
        let gate = self.gate.forward_with(x, mode)?;
        let up = self.up.forward_with(x, mode)?;
        if let Some(product) = fused::silu_mul(&gate, &up)? {
            return Ok(self.down.forward_with(&product, mode)?);
        }
        let gate = candle_nn::ops::silu(&gate.to_dtype(softmax_dtype(gate.dtype()))?)?
            .to_dtype(gate.dtype())?;
        Ok(self.down.forward_with(&(gate * up)?, mode)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic mode leaves RMSNorm and log-softmax to candle: both reduce each contiguous
    /// row on its own, sequentially, so a row's result must not depend on how many rows there are
    /// or where it sits. This checks it for the widths and dtypes the models use.
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
            let bits = |t: &Tensor| -> Result<Vec<u64>> {
                Ok(t.to_dtype(DType::F64)?
                    .flatten_all()?
                    .to_vec1::<f64>()?
                    .into_iter()
                    .map(f64::to_bits)
                    .collect())
            };
            let all_norm = n.forward(&x)?;
            let all_lsm = candle_nn::ops::log_softmax(&x.to_dtype(DType::F32)?, D::Minus1)?;
            for (row, m) in [(0, 1), (1, 2), (2, 3), (7, 8), (32, 33), (39, 5)] {
                let start = row + 1 - m;
                let part = x.narrow(0, start, m)?;
                let one = n.forward(&part)?.narrow(0, row - start, 1)?;
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
