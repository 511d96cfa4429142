#!/usr/bin/env python3
"""Checks that Hugging Face transformers reads the embedded model folder unchanged and agrees with
the candle implementation used to train and evaluate it.

Usage (from the workspace root, after `train` or `eval` wrote eval_responses.jsonl):

    cargo run --release -p reprolm-train-arith -- dump-logits --problems 3 --responses /tmp/candle_logits.json
    python3 examples/train-arith/check_with_transformers.py models/arith-qwen2-3m /tmp/candle_logits.json

It checks, in fp32:
  1. the chat template renders the DeepSeek-R1 style generation prompt, and tokenization matches;
  2. transformers' logits equal candle's (teacher-forced prompt + reference solution) to 1e-4;
  3. transformers' greedy generate on 20 test problems gives the same answers (and text) as the
     candle greedy decode recorded in eval_responses.jsonl.
Exits non-zero when a check fails.
"""
import json
import re
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

TOL = 1e-4


def boxed(text):
    m = re.findall(r"\\boxed\{([^}]*)\}", text)
    try:
        return int(m[-1]) if m else None
    except ValueError:
        return None


def main():
    model_dir, logits_path = sys.argv[1], sys.argv[2]
    n_generate = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"loaded {type(model).__name__} with {n_params} parameters")
    failures = 0

    rows = json.load(open(logits_path))
    worst = 0.0
    for row in rows:
        chat = tok.apply_chat_template(
            [{"role": "user", "content": row["question"]}], add_generation_prompt=True, tokenize=False
        )
        expected = f"<｜begin▁of▁sentence｜><｜User｜>{row['question']}<｜Assistant｜><think>\n"
        if chat != expected:
            print(f"FAIL template: {chat!r} != {expected!r}")
            failures += 1
        ids = tok(row["text"], add_special_tokens=False)["input_ids"]
        if ids != row["ids"]:
            print(f"FAIL tokenization differs for {row['question']!r}")
            failures += 1
        with torch.no_grad():
            logits = model(torch.tensor([row["ids"]])).logits[0]
        diff = (logits - torch.tensor(row["logits"])).abs().max().item()
        worst = max(worst, diff)
        print(f"logits {len(row['ids'])} positions x {logits.shape[-1]}: max |transformers - candle| = {diff:.3e}")
    if worst > TOL:
        print(f"FAIL logits differ by {worst:.3e} > {TOL}")
        failures += 1

    responses = [json.loads(l) for l in open(f"{model_dir}/eval_responses.jsonl")][:n_generate]
    same_answer = same_text = 0
    eos = tok.convert_tokens_to_ids("<｜end▁of▁sentence｜>")
    for r in responses:
        prompt = tok.apply_chat_template(
            [{"role": "user", "content": r["question"]}], add_generation_prompt=True, return_tensors="pt",
            return_dict=True,
        )
        with torch.no_grad():
            out = model.generate(**prompt, max_new_tokens=1000, do_sample=False, eos_token_id=eos)
        text = tok.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
        same_answer += boxed(text) == boxed(r["response"])
        same_text += text == r["response"]
    print(f"greedy generate on {len(responses)} test problems: same answer {same_answer}/{len(responses)}, "
          f"same text {same_text}/{len(responses)}")
    if same_answer != len(responses):
        print("FAIL answers differ")
        failures += 1
    print("OK" if failures == 0 else f"{failures} check(s) failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
