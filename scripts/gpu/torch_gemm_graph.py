#!/usr/bin/env python3
"""GPU time of torch's own matmul (cuBLAS's per-call choice, split-K allowed) for a model's
decode-time projection shapes, each call replayed inside a CUDA graph so that no host launch
overhead is timed: what a decode step's GEMMs cost when nothing pins their order. Prints, per
shape and row count, microseconds per call and the bandwidth floor (weight bytes / copy bandwidth).

    python3 scripts/gpu/torch_gemm_graph.py CONFIG.json [--rows 1,8,32] [--json OUT]
"""
import argparse, json, sys
import torch

ap = argparse.ArgumentParser()
ap.add_argument("config")
ap.add_argument("--rows", default="1,8,32")
ap.add_argument("--calls", type=int, default=200)
ap.add_argument("--json")
a = ap.parse_args()
cfg = json.load(open(a.config))
h, inter, heads, kv = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
d = cfg.get("head_dim") or h // heads
shapes = {"qkv": (heads * d + 2 * kv * d, h), "o": (h, heads * d), "gate_up": (2 * inter, h),
          "down": (h, inter), "lm_head": (cfg["vocab_size"], h)}
dev = torch.device("cuda")
src = torch.empty(1 << 30, dtype=torch.uint8, device=dev); dst = torch.empty_like(src)
for _ in range(3): dst.copy_(src)
e0, e1 = torch.cuda.Event(True), torch.cuda.Event(True)
e0.record()
for _ in range(10): dst.copy_(src)
e1.record(); torch.cuda.synchronize()
bw = 2 * 10 * src.numel() / (e0.elapsed_time(e1) / 1e3)
del src, dst
print(f"{torch.cuda.get_device_name()}: copy bandwidth {bw / 1e12:.2f} TB/s")
rows = [int(r) for r in a.rows.split(",")]
out = []
for name, (n, k) in shapes.items():
    # Several weights in turn, so that a call does not find its weight in L2 (50 MB).
    copies = max(1, min(8, (256 << 20) // (n * k * 2)))
    ws = [torch.randn(n, k, device=dev, dtype=torch.bfloat16) for _ in range(copies)]
    for m in rows:
        x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
        for w in ws: torch.matmul(x, w.t())
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        s = torch.cuda.Stream()
        with torch.cuda.stream(s):
            torch.matmul(x, ws[0].t())
            with torch.cuda.graph(g):
                for i in range(a.calls):
                    torch.matmul(x, ws[i % copies].t())
        torch.cuda.synchronize()
        g.replay(); torch.cuda.synchronize()
        e0.record(); g.replay(); e1.record(); torch.cuda.synchronize()
        us = e0.elapsed_time(e1) * 1e3 / a.calls
        floor = n * k * 2 / bw * 1e6
        out.append({"shape": name, "n": n, "k": k, "rows": m, "us": us, "floor_us": floor})
        print(f"  {name:8} {n:7} {k:6} rows {m:3}: {us:7.2f} us in a graph (floor {floor:6.2f} us, {100 * floor / us:4.0f}%)")
if a.json:
    json.dump({"device": torch.cuda.get_device_name(), "copy_bytes_per_second": bw, "calls": out}, open(a.json, "w"), indent=1)
