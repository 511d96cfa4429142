//! What the engine's benchmarks share: a random-init model big enough that GEMM work, not
//! per-op overhead, sets the pace, loading a decoder without a tokenizer, and one timed
//! generation (the engine's own [`throughput::measure_generations`]).
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use reprolm_engine::parallel::TensorParallel;
use reprolm_engine::throughput::{self, Workload};
use reprolm_engine::{spec_from_config_file, Decoder};
use reprolm_precision::PrecisionPolicy;
use std::collections::HashMap;
use std::path::Path;

/// The decoder of a directory holding config.json and model.safetensors (no tokenizer needed),
/// on the CPU, split over `tp.size` ranks.
pub fn load_decoder(dir: &Path, policy: &PrecisionPolicy, tp: TensorParallel) -> Decoder {
    let (_, spec) = spec_from_config_file(&dir.join("config.json")).unwrap();
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            DType::F32,
            &Device::Cpu,
        )
    }
    .unwrap();
    Decoder::load_parallel(&spec, policy, vb, tp).unwrap()
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// (prefill seconds, decode seconds, generated ids per row) of one prefill of `batch` random
/// prompts of `prompt_len` ids (the same in every call) and `steps` greedy decode steps, stop
/// tokens ignored.
pub fn run(
    dec: &Decoder,
    batch: usize,
    prompt_len: usize,
    steps: usize,
) -> (f64, f64, Vec<Vec<u32>>) {
    let w = Workload {
        batch,
        prompt_tokens: prompt_len,
        new_tokens: steps + 1,
    };
    let prompts = throughput::random_prompts(&w, dec.spec().vocab_size, 12345);
    let (t, tokens) = throughput::measure_generations(dec, &prompts, w.new_tokens).unwrap();
    assert!(
        tokens.iter().all(|t| t.len() == w.new_tokens),
        "a row stopped early"
    );
    (t.prefill_seconds, t.decode_seconds, tokens)
}

/// A random-init Qwen2 with the tensor names transformers expects.
pub fn write_random_qwen2(dir: &Path) -> candle_core::Result<()> {
    let (vocab, h, inter, layers, heads, kv) =
        (8192usize, 512usize, 1536usize, 8usize, 8usize, 2usize);
    let d = h / heads;
    let config = serde_json::json!({
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": vocab,
        "hidden_size": h, "intermediate_size": inter, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv, "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "max_position_embeddings": 4096, "tie_word_embeddings": true,
        "hidden_act": "silu", "torch_dtype": "float32", "use_sliding_window": false,
        "bos_token_id": 0, "eos_token_id": 1
    });
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config).unwrap(),
    )?;
    let dev = Device::Cpu;
    let mut t: HashMap<String, Tensor> = HashMap::new();
    let w = |r: usize, c: usize| Tensor::randn(0f32, 0.02, (r, c), &dev);
    t.insert("model.embed_tokens.weight".into(), w(vocab, h)?);
    t.insert(
        "model.norm.weight".into(),
        Tensor::ones(h, DType::F32, &dev)?,
    );
    for i in 0..layers {
        let p = format!("model.layers.{i}");
        for (name, rows, cols) in [
            ("q_proj", h, h),
            ("k_proj", kv * d, h),
            ("v_proj", kv * d, h),
            ("o_proj", h, h),
        ] {
            t.insert(format!("{p}.self_attn.{name}.weight"), w(rows, cols)?);
            if name != "o_proj" {
                t.insert(
                    format!("{p}.self_attn.{name}.bias"),
                    Tensor::zeros(rows, DType::F32, &dev)?,
                );
            }
        }
        t.insert(format!("{p}.mlp.gate_proj.weight"), w(inter, h)?);
        t.insert(format!("{p}.mlp.up_proj.weight"), w(inter, h)?);
        t.insert(format!("{p}.mlp.down_proj.weight"), w(h, inter)?);
        t.insert(
            format!("{p}.input_layernorm.weight"),
            Tensor::ones(h, DType::F32, &dev)?,
        );
        t.insert(
            format!("{p}.post_attention_layernorm.weight"),
            Tensor::ones(h, DType::F32, &dev)?,
        );
    }
    candle_core::safetensors::save(&t, dir.join("model.safetensors"))
}
