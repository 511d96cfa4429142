#!/usr/bin/env python3
"""Measure HF transformers on CPU as the peer of the engine's CPU benchmark.

    python3 transformers_peer.py --model DIR --batch B --prompt-len P --new-tokens N --threads T [--dtype float32]
                                 [--repeats R]

Loads the model directory with transformers (eager attention), builds a B x P batch of prompt token ids from a
fixed seed (no padding, every row the same length), and times, after one untimed warm-up of the same work:

- prefill: one forward pass over all B x P tokens that fills the KV cache; prefill_tok_s = B * P / seconds.
- decode: N greedy steps, each one forward pass over one new token per row against the KV cache followed by an
  argmax; the first of them consumes the token picked from the prefill logits. No eos stops it, so exactly N
  tokens per row are produced; decode_tok_s = B * N / seconds.

With --repeats R (default 3) the timed run is repeated and the median seconds are reported; the raw seconds of
every run are kept in the output too.

Prints one JSON line, so the Rust benchmark can parse it and print the ratio:
{"prefill_tok_s": .., "decode_tok_s": .., "batch": .., "prompt_len": .., "new_tokens": .., "torch": ..,
 "transformers": .., "threads": .., "dtype": .., "model": .., "prefill_s": [..], "decode_s": [..]}
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import transformers
from transformers import AutoModelForCausalLM, DynamicCache

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
PROMPT_SEED = 0


@torch.inference_mode()
def run_once(model, prompt: torch.Tensor, new_tokens: int) -> tuple[float, float, torch.Tensor]:
    """One prefill and `new_tokens` decode steps; returns (prefill seconds, decode seconds, generated ids)."""
    batch, prompt_len = prompt.shape
    cache = DynamicCache(config=model.config)
    t0 = time.perf_counter()
    out = model(input_ids=prompt, past_key_values=cache, use_cache=True, logits_to_keep=1)
    next_ids = out.logits[:, -1, :].argmax(-1, keepdim=True)
    t1 = time.perf_counter()
    cache = out.past_key_values
    generated = []
    for step in range(new_tokens):
        pos = torch.full((batch, 1), prompt_len + step, dtype=torch.long)
        out = model(input_ids=next_ids, past_key_values=cache, position_ids=pos, use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        next_ids = out.logits[:, -1, :].argmax(-1, keepdim=True)
        generated.append(next_ids)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, torch.cat(generated, dim=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="HF model directory (config.json, model.safetensors, ...)")
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--prompt-len", type=int, required=True)
    ap.add_argument("--new-tokens", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up; the median is reported")
    args = ap.parse_args()
    if min(args.batch, args.prompt_len, args.new_tokens, args.threads, args.repeats) < 1:
        ap.error("--batch, --prompt-len, --new-tokens, --threads and --repeats must be >= 1")

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(
        args.model, dtype=DTYPES[args.dtype], attn_implementation="eager"
    ).eval()
    g = torch.Generator().manual_seed(PROMPT_SEED)
    prompt = torch.randint(0, model.config.vocab_size, (args.batch, args.prompt_len), generator=g)

    run_once(model, prompt, args.new_tokens)  # warm-up: allocator, kernel selection
    prefill_s, decode_s = [], []
    for _ in range(args.repeats):
        p, d, generated = run_once(model, prompt, args.new_tokens)
        assert generated.shape == (args.batch, args.new_tokens)
        prefill_s.append(p)
        decode_s.append(d)

    print(json.dumps({
        "prefill_tok_s": args.batch * args.prompt_len / statistics.median(prefill_s),
        "decode_tok_s": args.batch * args.new_tokens / statistics.median(decode_s),
        "batch": args.batch,
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": args.threads,
        "dtype": args.dtype,
        "model": args.model,
        "prefill_s": prefill_s,
        "decode_s": decode_s,
    }))


if __name__ == "__main__":
    main()
