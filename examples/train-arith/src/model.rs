//! A Qwen2 decoder written for training: every op is one candle's autograd can differentiate.
//!
//! The inference engine has its own Qwen2; this one exists because training needs plain tensor ops
//! (candle's fused rope / rms-norm / softmax kernels have no backward pass) and a `VarMap` to
//! optimise. Parameter names are Hugging Face's, so the saved file loads in `Qwen2ForCausalLM`.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};

/// The subset of Qwen2's config.json that shapes the network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub max_position_embeddings: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
}

impl Config {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Every parameter as (Hugging Face name, shape, initial value kind), embeddings tied.
    pub fn parameters(&self) -> Vec<(String, Vec<usize>, Init)> {
        let (h, kv, ff) = (
            self.hidden_size,
            self.num_key_value_heads * self.head_dim(),
            self.intermediate_size,
        );
        // GPT-2 style: residual-branch outputs start smaller so the stream's scale stays put with depth.
        let out_std = 0.02 / (2.0 * self.num_hidden_layers as f64).sqrt();
        let mut p = vec![(
            "model.embed_tokens.weight".to_string(),
            vec![self.vocab_size, h],
            Init::Normal(0.02),
        )];
        for i in 0..self.num_hidden_layers {
            let l = format!("model.layers.{i}");
            p.push((format!("{l}.input_layernorm.weight"), vec![h], Init::Ones));
            p.push((
                format!("{l}.self_attn.q_proj.weight"),
                vec![h, h],
                Init::Normal(0.02),
            ));
            p.push((format!("{l}.self_attn.q_proj.bias"), vec![h], Init::Zeros));
            p.push((
                format!("{l}.self_attn.k_proj.weight"),
                vec![kv, h],
                Init::Normal(0.02),
            ));
            p.push((format!("{l}.self_attn.k_proj.bias"), vec![kv], Init::Zeros));
            p.push((
                format!("{l}.self_attn.v_proj.weight"),
                vec![kv, h],
                Init::Normal(0.02),
            ));
            p.push((format!("{l}.self_attn.v_proj.bias"), vec![kv], Init::Zeros));
            p.push((
                format!("{l}.self_attn.o_proj.weight"),
                vec![h, h],
                Init::Normal(out_std),
            ));
            p.push((
                format!("{l}.post_attention_layernorm.weight"),
                vec![h],
                Init::Ones,
            ));
            p.push((
                format!("{l}.mlp.gate_proj.weight"),
                vec![ff, h],
                Init::Normal(0.02),
            ));
            p.push((
                format!("{l}.mlp.up_proj.weight"),
                vec![ff, h],
                Init::Normal(0.02),
            ));
            p.push((
                format!("{l}.mlp.down_proj.weight"),
                vec![h, ff],
                Init::Normal(out_std),
            ));
        }
        p.push(("model.norm.weight".to_string(), vec![h], Init::Ones));
        p
    }
}

/// How a parameter starts out.
#[derive(Debug, Clone, Copy)]
pub enum Init {
    Normal(f64),
    Zeros,
    Ones,
}

struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn new(size: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            weight: vb.get(size, "weight")?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let var = x.sqr()?.mean_keepdim(D::Minus1)?;
        x.broadcast_div(&(var + self.eps)?.sqrt()?)?
            .broadcast_mul(&self.weight)
    }
}

/// Rotary tables for every position, `(max_positions, head_dim)`, in the half-split layout that
/// Hugging Face's `rotate_half` uses.
struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    fn new(cfg: &Config, dev: &Device) -> candle_core::Result<Self> {
        let hd = cfg.head_dim();
        let inv: Vec<f32> = (0..hd / 2)
            .map(|i| 1.0 / (cfg.rope_theta as f32).powf((2 * i) as f32 / hd as f32))
            .collect();
        let inv = Tensor::from_vec(inv, (1, hd / 2), dev)?;
        let pos = Tensor::arange(0u32, cfg.max_position_embeddings as u32, dev)?
            .to_dtype(DType::F32)?
            .reshape((cfg.max_position_embeddings, 1))?;
        let ang = pos.broadcast_mul(&inv)?;
        let ang = Tensor::cat(&[&ang, &ang], 1)?;
        Ok(Self {
            cos: ang.cos()?,
            sin: ang.sin()?,
        })
    }

    /// Rotates `x` of shape `(batch, heads, seq, head_dim)` for positions `offset..offset + seq`.
    fn apply(&self, x: &Tensor, offset: usize) -> candle_core::Result<Tensor> {
        let (_, _, t, hd) = x.dims4()?;
        let cos = self.cos.narrow(0, offset, t)?;
        let sin = self.sin.narrow(0, offset, t)?;
        let x1 = x.narrow(D::Minus1, 0, hd / 2)?;
        let x2 = x.narrow(D::Minus1, hd / 2, hd / 2)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
    }
}

/// Keys and values seen so far for one layer, `(batch, kv_heads, seq, head_dim)`.
pub type LayerCache = Option<(Tensor, Tensor)>;

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let (h, hd) = (cfg.hidden_size, cfg.head_dim());
        let kv = cfg.num_key_value_heads * hd;
        let lin = |o: usize, i: usize, name: &str, bias: bool| -> candle_core::Result<Linear> {
            let vb = vb.pp(name);
            let b = if bias { Some(vb.get(o, "bias")?) } else { None };
            Ok(Linear::new(vb.get((o, i), "weight")?, b))
        };
        Ok(Self {
            q: lin(h, h, "q_proj", true)?,
            k: lin(kv, h, "k_proj", true)?,
            v: lin(kv, h, "v_proj", true)?,
            o: lin(h, h, "o_proj", false)?,
            heads: cfg.num_attention_heads,
            kv_heads: cfg.num_key_value_heads,
            head_dim: hd,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        rope: &Rope,
        offset: usize,
        mask: Option<&Tensor>,
        cache: &mut LayerCache,
    ) -> candle_core::Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let split = |y: Tensor, n: usize| {
            y.reshape((b, t, n, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = rope.apply(&split(self.q.forward(x)?, self.heads)?, offset)?;
        let mut k = rope.apply(&split(self.k.forward(x)?, self.kv_heads)?, offset)?;
        let mut v = split(self.v.forward(x)?, self.kv_heads)?;
        if let Some((pk, pv)) = cache.as_ref() {
            k = Tensor::cat(&[pk, &k], 2)?;
            v = Tensor::cat(&[pv, &v], 2)?;
        }
        *cache = Some((k.clone(), v.clone()));
        let rep = self.heads / self.kv_heads;
        let total = k.dim(2)?;
        let repeat = |y: &Tensor| {
            Tensor::cat(&vec![y; rep], 2)?.reshape((b, self.heads, total, self.head_dim))
        };
        let (k, v) = (repeat(&k)?, repeat(&v)?);
        let scores = (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?;
        let scores = match mask {
            Some(m) => scores.broadcast_add(m)?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let y = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h))?;
        self.o.forward(&y)
    }
}

struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl Mlp {
    fn new(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let (h, ff) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            gate: Linear::new(vb.pp("gate_proj").get((ff, h), "weight")?, None),
            up: Linear::new(vb.pp("up_proj").get((ff, h), "weight")?, None),
            down: Linear::new(vb.pp("down_proj").get((h, ff), "weight")?, None),
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let g = candle_nn::ops::silu(&self.gate.forward(x)?)?;
        self.down.forward(&(g * self.up.forward(x)?)?)
    }
}

struct Layer {
    norm1: RmsNorm,
    attn: Attention,
    norm2: RmsNorm,
    mlp: Mlp,
}

/// Qwen2ForCausalLM with tied embeddings.
pub struct Model {
    embed: Tensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    rope: Rope,
    device: Device,
}

impl Model {
    pub fn new(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let vb = vb.pp("model");
        let embed = vb
            .pp("embed_tokens")
            .get((cfg.vocab_size, cfg.hidden_size), "weight")?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let vb = vb.pp("layers").pp(i);
            layers.push(Layer {
                norm1: RmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("input_layernorm"))?,
                attn: Attention::new(cfg, vb.pp("self_attn"))?,
                norm2: RmsNorm::new(
                    cfg.hidden_size,
                    cfg.rms_norm_eps,
                    vb.pp("post_attention_layernorm"),
                )?,
                mlp: Mlp::new(cfg, vb.pp("mlp"))?,
            });
        }
        let norm = RmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("norm"))?;
        let device = embed.device().clone();
        Ok(Self {
            embed,
            layers,
            norm,
            rope: Rope::new(cfg, &device)?,
            device,
        })
    }

    pub fn new_cache(&self) -> Vec<LayerCache> {
        vec![None; self.layers.len()]
    }

    /// Logits `(batch, seq, vocab)` for `ids` `(batch, seq)` placed at positions `offset..`, after
    /// the keys/values already in `cache` (empty for training).
    pub fn forward(
        &self,
        ids: &Tensor,
        offset: usize,
        cache: &mut [LayerCache],
    ) -> candle_core::Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let mut x = self
            .embed
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, ()))?;
        let mask = if t > 1 {
            Some(causal_mask(t, offset, &self.device)?)
        } else {
            None
        };
        for (layer, c) in self.layers.iter().zip(cache.iter_mut()) {
            let a = layer.attn.forward(
                &layer.norm1.forward(&x)?,
                &self.rope,
                offset,
                mask.as_ref(),
                c,
            )?;
            x = (x + a)?;
            let m = layer.mlp.forward(&layer.norm2.forward(&x)?)?;
            x = (x + m)?;
        }
        let x = self.norm.forward(&x)?;
        let h = x.dim(2)?;
        x.reshape((b * t, h))?
            .matmul(&self.embed.t()?)?
            .reshape((b, t, ()))
    }
}

/// `(seq, offset + seq)`: 0 where a query may attend, -inf on the future.
fn causal_mask(t: usize, offset: usize, dev: &Device) -> candle_core::Result<Tensor> {
    let total = offset + t;
    let m: Vec<f32> = (0..t)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j > i + offset {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Tensor::from_vec(m, (t, total), dev)
}
