//! Memory accounting against a real model: DeepSeek-R1-Distill-Qwen-7B, the model of the LayerCast
//! paper (arXiv 2506.09501), from its public config.json (no weights needed).

use reprolm_precision::{format_bytes, ModelShape, PrecisionPolicy, WeightGroup, PRESETS};

/// deepseek-ai/DeepSeek-R1-Distill-Qwen-7B config.json: hidden_size 3584, intermediate_size 18944,
/// num_hidden_layers 28, num_attention_heads 28, num_key_value_heads 4, vocab_size 152064,
/// tie_word_embeddings false; Qwen2 puts biases on q/k/v only.
fn r1_distill_qwen_7b() -> ModelShape {
    ModelShape {
        vocab_size: 152064,
        hidden_size: 3584,
        intermediate_size: 18944,
        num_layers: 28,
        num_heads: 28,
        num_kv_heads: 4,
        head_dim: 3584 / 28,
        tie_word_embeddings: false,
        qkv_bias: true,
        o_bias: false,
        mlp_bias: false,
        qk_norm: false,
    }
}

/// Parameters counted tensor by tensor, the way the checkpoint's safetensors index lists them.
fn parameters_by_tensor() -> (u64, u64) {
    let (h, i, v, layers) = (3584u64, 18944u64, 152064u64, 28u64);
    let kv = 4 * 128;
    let tensors_per_layer = [
        h * h,  // q_proj.weight
        h,      // q_proj.bias
        kv * h, // k_proj.weight
        kv,     // k_proj.bias
        kv * h, // v_proj.weight
        kv,     // v_proj.bias
        h * h,  // o_proj.weight
        i * h,  // gate_proj.weight
        i * h,  // up_proj.weight
        h * i,  // down_proj.weight
    ];
    let projections = layers * tensors_per_layer.iter().sum::<u64>();
    let norms = layers * 2 * h + h; // input/post-attention layernorms + final norm
    let total = projections + v * h /* embed_tokens */ + v * h /* lm_head */ + norms;
    (projections, total)
}

const GB: f64 = 1e9;

#[test]
fn layercast_halves_the_projections_of_r1_distill_qwen_7b() {
    let shape = r1_distill_qwen_7b();
    let (projection_params, all_params) = parameters_by_tensor();
    assert_eq!(shape.parameter_count(), all_params);
    assert_eq!(all_params, 7_615_616_512, "the published 7.62 B");

    let fp32 = shape.weight_memory(&PrecisionPolicy::preset("fp32").unwrap());
    let lc = shape.weight_memory(&PrecisionPolicy::preset("layercast").unwrap());
    assert_eq!(fp32.projections().params, projection_params);
    assert_eq!(fp32.projections().bytes, 4 * projection_params);
    assert_eq!(fp32.total_bytes(), 4 * all_params);
    assert_eq!(lc.projections().bytes * 2, fp32.projections().bytes);
    // Everything except the projections stays f32 under LayerCast.
    assert_eq!(
        lc.total_bytes(),
        2 * projection_params + 4 * (all_params - projection_params)
    );

    // DESIGN.md's figures, in decimal GB rounded to 2 places.
    let round2 = |b: u64| (b as f64 / GB * 100.0).round() / 100.0;
    assert_eq!(round2(fp32.projections().bytes), 26.10);
    assert_eq!(round2(lc.projections().bytes), 13.05);
    assert_eq!(round2(fp32.total_bytes()), 30.46);
    assert_eq!(round2(lc.total_bytes()), 17.41);
    let head_and_embedding =
        fp32.group(WeightGroup::Embedding).params + fp32.group(WeightGroup::LmHead).params;
    assert_eq!(head_and_embedding, 1_089_994_752, "1.09 B kept in f32");
}

#[test]
fn saving_with_an_fp32_kv_cache_for_32_sequences_of_32k_tokens() {
    let shape = r1_distill_qwen_7b();
    let (batch, context) = (32, 32 * 1024);
    let fp32 = shape.memory(
        &PrecisionPolicy::preset("fp32").unwrap(),
        batch,
        context,
        8192,
    );
    let lc = shape.memory(
        &PrecisionPolicy::preset("layercast").unwrap(),
        batch,
        context,
        8192,
    );
    // 2 (k, v) x 28 layers x 4 kv heads x 128 dims x 4 bytes per token.
    assert_eq!(fp32.kv_cache.bytes_per_token, 2 * 28 * 4 * 128 * 4);
    assert_eq!(lc.kv_cache, fp32.kv_cache, "LayerCast keeps the f32 cache");
    let saved = fp32.total_bytes() - lc.total_bytes();
    assert_eq!(saved, fp32.weights.total_bytes() - lc.weights.total_bytes());
    assert_eq!(saved, fp32.weights.projections().bytes / 2);
    let ratio = lc.total_bytes() as f64 / fp32.total_bytes() as f64;
    println!("{fp32}\n{lc}");
    println!(
        "layercast vs fp32, weights + f32 KV cache for {batch} x {context} tokens: {} vs {}, \
         saves {} ({:.1}% of fp32; weights alone save {:.1}%)",
        format_bytes(lc.total_bytes()),
        format_bytes(fp32.total_bytes()),
        format_bytes(saved),
        100.0 * (1.0 - ratio),
        100.0 * saved as f64 / fp32.weights.total_bytes() as f64,
    );
    // The cache (120.26 GB) dwarfs the weights at this size, so the saving is a small share.
    assert_eq!(fp32.kv_cache.bytes, 120_259_084_288);
    assert!((0.08..0.09).contains(&(1.0 - ratio)), "{ratio}");
}

#[test]
fn every_preset_prints_a_full_estimate() {
    let shape = r1_distill_qwen_7b();
    for name in PRESETS {
        let m = shape.memory(&PrecisionPolicy::preset(name).unwrap(), 1, 1024, 1024);
        let text = m.to_string();
        for row in [
            "projections",
            "embedding",
            "lm_head",
            "norms",
            "kv_cache",
            "activations",
            "total",
        ] {
            assert!(text.contains(row), "{name}: no `{row}` in\n{text}");
        }
    }
}
