//! Writes a trained model in the Hugging Face layout that `Qwen2ForCausalLM` and the engine load.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use serde_json::json;
use tokenizers::Tokenizer;

use crate::model::Config;
use crate::tokenizer::{self as tk, BOS, EOS, PAD};

/// Writes config.json, generation_config.json, tokenizer.json, tokenizer_config.json and
/// model.safetensors (weights rounded to bf16) into `dir`.
pub fn save(
    dir: &Path,
    cfg: &Config,
    tok: &Tokenizer,
    weights: &BTreeMap<String, Tensor>,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (bos, eos, pad) = (tk::id(tok, BOS)?, tk::id(tok, EOS)?, tk::id(tok, PAD)?);
    let config = json!({
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_position_embeddings,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": null,
        "rms_norm_eps": cfg.rms_norm_eps,
        "tie_word_embeddings": true,
        "use_sliding_window": false,
        "sliding_window": null,
        "max_window_layers": cfg.num_hidden_layers,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": true,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "torch_dtype": "bfloat16",
    });
    write_json(&dir.join("config.json"), &config)?;
    let generation = json!({ "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad, "do_sample": false });
    write_json(&dir.join("generation_config.json"), &generation)?;
    let tok_cfg = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "add_bos_token": false,
        "add_eos_token": false,
        "clean_up_tokenization_spaces": false,
        "model_max_length": cfg.max_position_embeddings,
        "chat_template": tk::CHAT_TEMPLATE,
    });
    write_json(&dir.join("tokenizer_config.json"), &tok_cfg)?;
    let tok_path = dir.join("tokenizer.json");
    tok.save(&tok_path, true)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", tok_path.display()))?;
    write_bf16_safetensors(&dir.join("model.safetensors"), weights)
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// candle's own writer leaves out the `format: pt` metadata that transformers checks, so the
/// (simple) file format is written here: 8-byte header length, JSON header, raw little-endian data.
fn write_bf16_safetensors(path: &Path, weights: &BTreeMap<String, Tensor>) -> Result<()> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({ "format": "pt" }));
    let mut data: Vec<u8> = Vec::new();
    for (name, t) in weights {
        let t = t.to_device(&Device::Cpu)?.to_dtype(DType::BF16)?;
        let start = data.len();
        for v in t.flatten_all()?.to_vec1::<half::bf16>()? {
            data.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        header.insert(
            name.clone(),
            json!({ "dtype": "BF16", "shape": t.dims(), "data_offsets": [start, data.len()] }),
        );
    }
    let mut head = serde_json::to_vec(&serde_json::Value::Object(header))?;
    while head.len() % 8 != 0 {
        head.push(b' ');
    }
    let mut out = (head.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&head);
    out.extend_from_slice(&data);
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}
