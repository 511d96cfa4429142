#!/usr/bin/env python3
"""transformers `generate` speed on the prompts reprolm's `bench speed` used, the peer of its numbers.

    python3 scripts/gpu/transformers_speed.py MODEL_DIR --prompts P.json --json OUT.json

Prefill: one forward of the whole batch with a cache (sdpa attention), timed between CUDA
synchronisations. Decode: `generate` of NEW tokens (stop tokens ignored), minus that prefill time,
over NEW - 1 tokens per row, the way reprolm counts.
"""
import argparse
import json
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("--dtypes", default="bf16,fp32")
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--new-tokens", type=int, default=256)
    args = ap.parse_args()

    import transformers

    prompts = json.load(open(args.prompts))
    rows = []
    for name in args.dtypes.split(","):
        dtype = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}[name]
        model = transformers.AutoModelForCausalLM.from_pretrained(
            args.model_dir, dtype=dtype, attn_implementation="sdpa").cuda().eval()
        model.generation_config.eos_token_id = None
        for b in map(int, args.batch_sizes.split(",")):
            ids = torch.tensor([prompts[i % len(prompts)] for i in range(b)], device="cuda")
            mask = torch.ones_like(ids)
            gen = dict(attention_mask=mask, do_sample=False, pad_token_id=0)
            with torch.no_grad():
                model.generate(ids, max_new_tokens=8, min_new_tokens=8, **gen)  # warm-up
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                t0 = time.perf_counter()
                out = model(ids, attention_mask=mask, use_cache=True)
                out.logits[:, -1].argmax(-1).tolist()
                torch.cuda.synchronize()
                prefill = time.perf_counter() - t0
                del out
                t0 = time.perf_counter()
                model.generate(ids, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, **gen)
                torch.cuda.synchronize()
                total = time.perf_counter() - t0
            decode = total - prefill
            row = {
                "implementation": f"transformers {transformers.__version__} (torch {torch.__version__}, sdpa)",
                "dtype": name, "batch": b, "prompt_tokens": ids.shape[1], "new_tokens": args.new_tokens,
                "prefill_seconds": prefill, "decode_seconds": decode,
                "prefill_tokens_per_second": b * ids.shape[1] / prefill,
                "decode_tokens_per_second": b * (args.new_tokens - 1) / decode,
                "decode_step_ms": 1e3 * decode / (args.new_tokens - 1),
                "max_memory_allocated_bytes": torch.cuda.max_memory_allocated(),
            }
            rows.append(row)
            print(f"transformers {name} batch {b:>3}: prefill {row['prefill_tokens_per_second']:>10.1f} tok/s, "
                  f"decode {row['decode_tokens_per_second']:>9.1f} tok/s ({row['decode_step_ms']:.2f} ms/step)", flush=True)
        del model
        torch.cuda.empty_cache()
    json.dump(rows, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
