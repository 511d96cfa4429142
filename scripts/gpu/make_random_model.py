#!/usr/bin/env python3
"""Write a random-init model with the real config of a published checkpoint, as a model directory
reprolm and transformers both load: config.json, model.safetensors (bf16, as the real checkpoints
ship), generation_config.json and a byte-level tokenizer.json with the real vocabulary size.

The weights are transformers' own initialisation from a fixed seed, so the directory is the same
on every machine with the same torch and transformers. The tokenizer maps each byte to one of the
first 256 ids; the other ids exist (the embedding table has the real size) but have no text.

    python3 scripts/gpu/make_random_model.py deepseek-r1-distill-qwen-1.5b /tmp/models/r1-1.5b
"""
import argparse
import json
import os

# config.json of the published checkpoints, the fields that shape the network.
CONFIGS = {
    "deepseek-r1-distill-qwen-1.5b": {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_act": "silu",
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "max_position_embeddings": 131072,
        "max_window_layers": 21,
        "rms_norm_eps": 1e-06,
        "rope_theta": 10000,
        "sliding_window": 4096,
        "use_sliding_window": False,
        "tie_word_embeddings": False,
        "vocab_size": 151936,
        "bos_token_id": 151646,
        "eos_token_id": 151643,
        "initializer_range": 0.02,
        "torch_dtype": "bfloat16",
    },
    "qwen3-0.6b": {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "hidden_act": "silu",
        "hidden_size": 1024,
        "intermediate_size": 3072,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "attention_bias": False,
        "max_position_embeddings": 40960,
        "max_window_layers": 28,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000,
        "sliding_window": None,
        "use_sliding_window": False,
        "tie_word_embeddings": True,
        "vocab_size": 151936,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "initializer_range": 0.02,
        "torch_dtype": "bfloat16",
    },
}


# The 7B config is kept as the published config.json file beside this script.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "deepseek-r1-distill-qwen-7b.json")) as f:
    CONFIGS["deepseek-r1-distill-qwen-7b"] = {k: v for k, v in json.load(f).items() if not k.startswith("_")}


def byte_tokenizer(vocab_size, path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    byte_chars = sorted(alphabet, key=lambda c: ord(c))
    vocab = {c: i for i, c in enumerate(byte_chars)}
    for i in range(len(vocab), vocab_size):
        vocab[f"<|id_{i}|>"] = i
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.save(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name", choices=sorted(CONFIGS))
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--num-hidden-layers", type=int, help="fewer layers, for a quick check of the scripts")
    args = ap.parse_args()

    import torch
    import transformers

    os.makedirs(args.out, exist_ok=True)
    cfg = dict(CONFIGS[args.name])
    if args.num_hidden_layers:
        cfg["num_hidden_layers"] = args.num_hidden_layers
    config = transformers.AutoConfig.for_model(**cfg)
    torch.manual_seed(args.seed)
    with torch.device(args.device):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model = model.to(torch.bfloat16)
    model.save_pretrained(args.out, safe_serialization=True, max_shard_size="20GB")
    with open(os.path.join(args.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"]}, f)
    byte_tokenizer(cfg["vocab_size"], os.path.join(args.out, "tokenizer.json"))
    n = sum(p.numel() for p in model.parameters())
    print(f"{args.name}: {n} parameters, seed {args.seed}, transformers {transformers.__version__}, torch {torch.__version__} -> {args.out}")


if __name__ == "__main__":
    main()
