#!/usr/bin/env python3
"""Turn the JSON files of scripts/gpu-check.sh into one markdown report (speed ratios against
transformers, the batch-1 decode roofline, GPU memory per policy, logit parity).

    python3 scripts/gpu/summarize.py RESULTS_DIR > RESULTS_DIR/gpu-check.md
"""
import glob
import json
import os
import sys

# Peak memory bandwidth by GPU name (bytes/s), for the roofline.
BANDWIDTH = {"H100 80GB HBM3": 3.35e12, "H100 PCIe": 2.0e12, "H200": 4.8e12, "H100 NVL": 3.9e12}


def bandwidth(name):
    for k, v in BANDWIDTH.items():
        if k in name:
            return v
    return None


def main():
    d = sys.argv[1]
    ours = []
    for p in sorted(glob.glob(os.path.join(d, "ours-speed-*.json"))):
        ours += json.load(open(p))
    tf = json.load(open(os.path.join(d, "tf-speed.json"))) if os.path.exists(os.path.join(d, "tf-speed.json")) else []
    cfg_path = os.path.join(d, "speed-model-config.json")
    cfg = json.load(open(cfg_path)) if os.path.exists(cfg_path) else {}
    mem = json.load(open(os.path.join(d, "memory.json"))) if os.path.exists(os.path.join(d, "memory.json")) else {}
    peer = {(r["dtype"], r["batch"]): r for r in tf}

    print("# GPU check\n")
    if ours:
        print(f"Device: {ours[0]['device_name']}. Model: {cfg['_name']} (random init, real config), "
              f"prompts of {ours[0]['prompt_tokens']} tokens, {ours[0]['new_tokens']} new tokens.\n")
        print("## Speed against transformers (same prompts, same call)\n")
        print("| policy | batch | prefill tok/s | decode tok/s | ms/step | transformers peer | peer prefill | peer decode | prefill ratio | decode ratio |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in ours:
            pd = "bf16" if r["policy"] == "bf16" else "fp32"
            t = peer.get((pd, r["batch"]))
            pr = f"{t['prefill_tokens_per_second']:.0f}" if t else "-"
            dr = f"{t['decode_tokens_per_second']:.1f}" if t else "-"
            rp = f"{r['prefill_tokens_per_second'] / t['prefill_tokens_per_second']:.2f}x" if t else "-"
            rd = f"{r['decode_tokens_per_second'] / t['decode_tokens_per_second']:.2f}x" if t else "-"
            print(f"| {r['policy']} | {r['batch']} | {r['prefill_tokens_per_second']:.0f} | {r['decode_tokens_per_second']:.1f} | "
                  f"{r['decode_step_ms']:.2f} | {pd} | {pr} | {dr} | {rp} | {rd} |")
        print()
        bw = bandwidth(ours[0]["device_name"])
        by = {(r["policy"], r["batch"]): r for r in ours}
        print("## Batch-1 decode against the memory-bandwidth roofline\n")
        print("Bytes per token = all weights read once per step, the embedding table excepted (one row is read).\n")
        print("| policy | weight bytes/token | roofline ms/token | measured ms/step | % of roofline |")
        print("|---|---|---|---|---|")
        for pol in ("bf16", "fp32", "layercast"):
            r = by.get((pol, 1))
            if not r or not bw:
                continue
            emb_bytes = cfg["vocab_size"] * cfg["hidden_size"] * (2 if pol == "bf16" else 4)
            per_token = r["weight_bytes"] - emb_bytes
            roof = 1e3 * per_token / bw
            print(f"| {pol} | {per_token / 1e9:.2f} GB | {roof:.3f} | {r['decode_step_ms']:.2f} | {100 * roof / r['decode_step_ms']:.0f}% |")
        if ("layercast", 1) in by and ("bf16", 1) in by:
            print(f"\nLayerCast / bf16 decode time at batch 1: {by[('layercast', 1)]['decode_step_ms'] / by[('bf16', 1)]['decode_step_ms']:.2f}x; "
                  f"at batch 32: {by.get(('layercast', 32), by[('layercast', 1)])['decode_step_ms'] / by.get(('bf16', 32), by[('bf16', 1)])['decode_step_ms']:.2f}x.")
        comp = os.path.join(d, "composed-speed-bf16.json")
        if os.path.exists(comp):
            print("\nFused kernels (RMSNorm, SwiGLU product, RoPE) against the composed candle ops, bf16:\n")
            for r in json.load(open(comp)):
                f = by.get(("bf16", r["batch"]))
                if f:
                    print(f"- batch {r['batch']}: {r['decode_step_ms']:.2f} ms/step composed, {f['decode_step_ms']:.2f} fused "
                          f"({r['decode_step_ms'] / f['decode_step_ms']:.2f}x); prefill {r['prefill_seconds']:.3f} s vs {f['prefill_seconds']:.3f} s")
        print()
    if mem:
        print("## GPU memory (nvidia-smi, peak while the process ran, minus the idle reading)\n")
        print("| process | peak MiB | weights (reprolm's count) |")
        print("|---|---|---|")
        wb = {r["policy"]: r["weight_bytes"] for r in ours}
        for k, v in mem.items():
            w = wb.get(k.replace("reprolm ", ""))
            print(f"| {k} | {v} | {f'{w / 2**20:.0f} MiB' if w else '-'} |")
        print()
    picks = sorted(glob.glob(os.path.join(d, "pick-*.json")))
    if picks:
        print("## Greedy choice on the device against the host's\n")
        print("`reprolm run` on 32 arith problems at batch 8, tokens chosen on the GPU (fused kernel) and on the host "
              "(`--pick host`): are the responses and the log-probability files byte for byte the same?\n")
        for p in picks:
            r = json.load(open(p))
            print(f"- {r['policy']}: {'identical' if r['identical'] else 'DIFFERENT'}")
        print()
    cg = os.path.join(d, "cpu-vs-gpu.json")
    if os.path.exists(cg):
        r = json.load(open(cg))
        print("## Deterministic fp32, CPU against GPU\n")
        print(f"`reprolm run --deterministic --policy fp32` on {r['samples']} arith problems with the embedded model: "
              f"{r['identical_tokens']}/{r['samples']} responses with the same tokens, log-probability files "
              f"{'bitwise equal' if r['logprobs_bitwise'] else 'not bitwise equal'}"
              + (f"; tokens first differ at positions {r['first_divergence']}" if r['first_divergence'] else "") + ".\n")
    graphs(d)
    inv = sorted(glob.glob(os.path.join(d, "invariance-*.json")))
    if inv:
        print("## Batch invariance (`reprolm bench invariance`): prompts whose greedy tokens and top-5 logprobs are bitwise those of batch 1\n")
        print("| model | policy | kernels | layout | identical | max abs logprob difference |")
        print("|---|---|---|---|---|---|")
        for p in inv:
            name = os.path.basename(p)[len("invariance-"):-len(".json")]
            for r in json.load(open(p)):
                print(f"| {name} | {r['policy']} | {r['kernels']} | {r['layout']} | {r['identical']}/{r['prompts']} | {r['max_top_logprob_difference']:.2e} |")
        print()
    det_p, fast_p = os.path.join(d, "det-speed.json"), os.path.join(d, "fast-speed-64.json")
    if os.path.exists(det_p):
        fast = {}
        for path in [fast_p] + sorted(glob.glob(os.path.join(d, "ours-speed-*.json"))):
            if os.path.exists(path):
                for r in json.load(open(path)):
                    fast.setdefault((r["policy"], r["batch"]), r)
        print("## Deterministic kernels against the fast ones (time ratios, > 1 is slower)\n")
        print("| policy | batch | det prefill s | det ms/step | fast prefill s | fast ms/step | prefill time ratio | decode time ratio |")
        print("|---|---|---|---|---|---|---|---|")
        for r in json.load(open(det_p)):
            f = fast.get((r["policy"], r["batch"]))
            if not f:
                continue
            print(f"| {r['policy']} | {r['batch']} | {r['prefill_seconds']:.3f} | {r['decode_step_ms']:.2f} | {f['prefill_seconds']:.3f} | "
                  f"{f['decode_step_ms']:.2f} | {r['prefill_seconds'] / f['prefill_seconds']:.2f}x | {r['decode_step_ms'] / f['decode_step_ms']:.2f}x |")
        print()
    for p in sorted(glob.glob(os.path.join(d, "parity-*.json"))):
        rep = json.load(open(p))
        print(f"## Parity: {os.path.basename(rep['model'].rstrip('/'))}\n")
        print(f"{rep['prompt_tokens']} prompt positions, {rep['greedy_tokens']} greedy tokens, logits compared in float64.\n")
        print("| reprolm policy | against | max abs logit error | mean abs error | top-1 agreement | greedy tokens | top-5 logprob max error |")
        print("|---|---|---|---|---|---|---|")
        for pol, r in rep["policies"].items():
            v = r["vs_peer"]
            g = "identical" if r["greedy_identical"] else f"differ from {r['greedy_first_difference']}"
            if "fused_vs_composed_max_abs" in r:
                print(f"| {pol} fused vs composed ops | reprolm | {r['fused_vs_composed_max_abs']:.3e} | | | | |")
            print(f"| {pol} | {r['peer']} | {v['max_abs_error']:.3e} | {v['mean_abs_error']:.3e} | {v['top1_agree']}/{v['positions']} | {g} | {r['greedy_top5_logprob_max_error']:.2e} |")
            if "vs_transformers_fp32" in r:
                w = r["vs_transformers_fp32"]
                print(f"| {pol} | transformers fp32 | {w['max_abs_error']:.3e} | {w['mean_abs_error']:.3e} | {w['top1_agree']}/{w['positions']} | | |")
        t = rep["transformers_bf16_vs_fp32"]
        print(f"| (transformers bf16) | transformers fp32 | {t['max_abs_error']:.3e} | {t['mean_abs_error']:.3e} | {t['top1_agree']}/{t['positions']} | | |")
        print()


def graphs(d):
    """Step `graphs`: decode with CUDA graphs on and off, the peer, and the floor (the bytes a decode
    step reads: weights without the embedding, plus the KV cache at the mean context, over the
    measured copy bandwidth)."""
    bw_path = os.path.join(d, "copy-bandwidth.json")
    if not os.path.exists(os.path.join(d, "graphs-on-1.5b.json")) or not os.path.exists(bw_path):
        return
    bw = json.load(open(bw_path))["copy_bytes_per_second"]
    run = os.path.join(d, "graphs-run.json")
    print(f"## Decode as CUDA graphs (copy bandwidth {bw / 1e12:.2f} TB/s)\n")
    if os.path.exists(run):
        print(f"A run of the embedded model (32 problems, batch 16, bf16), graphs on against off: "
              f"{'bitwise identical' if json.load(open(run))['identical'] else 'NOT identical'}.\n")
    print("| model | policy | batch | graphs on ms/step | off ms/step | on/off speed-up | peer ms/step | speed against the peer | floor ms | % of floor |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in ("1.5b", "7b"):
        on_p, off_p = os.path.join(d, f"graphs-on-{size}.json"), os.path.join(d, f"graphs-off-{size}.json")
        if not os.path.exists(on_p):
            continue
        off = {(r["policy"], r["batch"]): r for r in json.load(open(off_p))} if os.path.exists(off_p) else {}
        peer_p = os.path.join(d, f"tf-static-graphs-{size}.json")
        peer = {r["batch"]: r for r in json.load(open(peer_p))} if os.path.exists(peer_p) else {}
        cfg_path = (os.path.join(d, "speed-model-config.json") if size == "1.5b" else
                    os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "deepseek-r1-distill-qwen-7b.json"))
        c = json.load(open(cfg_path)) if os.path.exists(cfg_path) else {}
        for r in json.load(open(on_p)):
            wb = 2 if r["policy"] == "bf16" else 4
            emb = c.get("vocab_size", 0) * c.get("hidden_size", 0) * 2
            kv = 0
            if c:
                hd = c["hidden_size"] // c["num_attention_heads"]
                ctx = r["prompt_tokens"] + r["new_tokens"] / 2
                kv = c["num_hidden_layers"] * 2 * c["num_key_value_heads"] * hd * wb * ctx * r["batch"]
            floor = 1e3 * (r["weight_bytes"] - emb + kv) / bw if c else None
            o = off.get((r["policy"], r["batch"]))
            t = peer.get(r["batch"]) if r["policy"] == "bf16" else None
            ms = r["decode_step_ms"]
            print(f"| {size} | {r['policy']} | {r['batch']} | {ms:.2f} | {o['decode_step_ms']:.2f} | {o['decode_step_ms'] / ms:.2f}x | "
                  if o else f"| {size} | {r['policy']} | {r['batch']} | {ms:.2f} | - | - | ", end="")
            print((f"{t['decode_step_ms']:.2f} | {t['decode_step_ms'] / ms:.2f}x | " if t else "- | - | ")
                  + (f"{floor:.2f} | {100 * floor / ms:.0f}% |" if floor else "- | - |"))
    print()


if __name__ == "__main__":
    main()
