#!/usr/bin/env python3
"""Compare reprolm's logits and greedy tokens (written by `reprolm bench logits`) with transformers'
on the same model directory and prompt, in float64.

    python3 scripts/gpu/parity.py MODEL_DIR --ours fp32=DIR bf16=DIR layercast=DIR --json OUT.json

transformers runs the model twice: in float32 (the reference for reprolm's fp32 and layercast, whose
bf16-stored weights upcast exactly) and in bfloat16 (the peer of reprolm's bf16), both with sdpa
attention. Reported per policy: max and mean absolute logit error over every position and the whole
vocabulary, top-1 agreement over the prompt's positions, and where the greedy continuations part.
"""
import argparse
import json
import os

import torch


def load_ours(d):
    from safetensors.torch import load_file

    logits = load_file(os.path.join(d, "logits.safetensors"))["logits"].double()
    with open(os.path.join(d, "greedy.json")) as f:
        greedy = json.load(f)
    return logits, greedy


def transformers_run(model_dir, dtype, prompt, new_tokens, device):
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=dtype, attn_implementation="sdpa"
    ).to(device)
    model.eval()
    ids = torch.tensor([prompt], device=device)
    with torch.no_grad():
        logits = model(ids).logits[0].double().cpu()
        model.generation_config.eos_token_id = None
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=0,
            output_logits=True,
            return_dict_in_generate=True,
        )
    tokens = out.sequences[0, len(prompt):].tolist()
    step_lp = [torch.log_softmax(l[0].float(), -1).double().cpu() for l in out.logits]
    del model
    torch.cuda.empty_cache()
    return logits, tokens, step_lp


def compare(ours, ref):
    diff = (ours - ref).abs()
    top_ours, top_ref = ours.argmax(-1), ref.argmax(-1)
    agree = (top_ours == top_ref)
    srt = ref.sort(-1, descending=True).values
    margin = (srt[:, 0] - srt[:, 1])
    return {
        "max_abs_error": diff.max().item(),
        "mean_abs_error": diff.mean().item(),
        "top1_agree": int(agree.sum().item()),
        "positions": int(agree.numel()),
        "min_reference_top1_margin": margin.min().item(),
        "disagreeing_positions_margins": [round(m, 8) for m in margin[~agree].tolist()][:10],
    }


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--ours", nargs="+", required=True, help="POLICY=DIR of `reprolm bench logits`")
    ap.add_argument("--json", required=True)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()

    ours = dict(kv.split("=", 1) for kv in args.ours)
    loaded = {p: load_ours(d) for p, d in ours.items()}
    prompt = next(iter(loaded.values()))[1]["prompt"]
    new_tokens = len(next(iter(loaded.values()))[1]["greedy_tokens"])
    assert all(g["prompt"] == prompt for _, g in loaded.values()), "runs used different prompts"

    refs = {
        "fp32": transformers_run(args.model_dir, torch.float32, prompt, new_tokens, args.device),
        "bf16": transformers_run(args.model_dir, torch.bfloat16, prompt, new_tokens, args.device),
    }
    report = {"model": args.model_dir, "prompt_tokens": len(prompt), "greedy_tokens": new_tokens,
              "transformers_bf16_vs_fp32": compare(refs["bf16"][0], refs["fp32"][0]), "policies": {}}
    for policy, (logits, greedy) in loaded.items():
        peer = "bf16" if policy.split("-")[0] in ("bf16", "fp16") else "fp32"
        ref_logits, ref_tokens, ref_lp = refs[peer]
        row = {"peer": f"transformers {peer}", "vs_peer": compare(logits, ref_logits)}
        if peer != "fp32":
            row["vs_transformers_fp32"] = compare(logits, refs["fp32"][0])
        fd = first_difference(greedy["greedy_tokens"], ref_tokens)
        row["greedy_identical"] = fd is None
        row["greedy_first_difference"] = fd
        # Top-5 logprob error along the common greedy prefix.
        upto = new_tokens if fd is None else fd
        err = 0.0
        for i in range(upto):
            for tid, lp in greedy["greedy_top"][i]:
                err = max(err, abs(lp - ref_lp[i][tid].item()))
        row["greedy_top5_logprob_max_error"] = err
        report["policies"][policy] = row
        v = row["vs_peer"]
        print(f"{os.path.basename(args.model_dir.rstrip('/'))} {policy:>9} vs transformers {peer}: "
              f"max|dlogit| {v['max_abs_error']:.3e} mean {v['mean_abs_error']:.3e} "
              f"top1 {v['top1_agree']}/{v['positions']} greedy {'identical' if fd is None else f'differs at {fd}'} "
              f"({new_tokens} tokens), top5 logprob err {err:.2e}")
    # A policy run twice, with the fused GPU kernels and with the composed ops (`NAME-composed`).
    for policy in list(loaded):
        if policy.endswith("-composed") and policy[: -len("-composed")] in loaded:
            fused = policy[: -len("-composed")]
            d = (loaded[fused][0] - loaded[policy][0]).abs()
            report["policies"][fused]["fused_vs_composed_max_abs"] = d.max().item()
            report["policies"][fused]["fused_vs_composed_identical"] = bool((d == 0).all().item())
            print(f"  {fused} fused kernels vs composed ops: max|dlogit| {d.max().item():.3e}")
    t = report["transformers_bf16_vs_fp32"]
    print(f"  (transformers bf16 vs its own fp32: max|dlogit| {t['max_abs_error']:.3e}, top1 {t['top1_agree']}/{t['positions']})")
    with open(args.json, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
