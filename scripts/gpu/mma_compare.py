#!/usr/bin/env python3
"""Compare builds of the tensor-core linear's decode kernels (crates/engine/src/kernels/gemm/mma.cu)
on a GPU without building reprolm: bitwise equality of their outputs and time per call (decode
kernel + group fold), on the projection shapes of the 1.5B and 7B DeepSeek-R1-Distill-Qwen configs
at 1, 8 and 32 rows, f32 x (LayerCast) and bf16 x, with weights rotated through enough copies to
miss the L2 cache; the copy bandwidth is printed as the floor's reference.

Build each variant's cubin where nvcc is (sm_90 for H100/H200):
    cat crates/precision/src/cuda/prelude.cu crates/engine/src/kernels/gemm/mma.cu > k.cu
    nvcc -arch=sm_90 -cubin -o new.cubin k.cu
then on the GPU machine (PyTorch for buffers and timing, the driver API through ctypes):
    python3 scripts/gpu/mma_compare.py old:old.cubin:256 new:new.cubin:128[:BLOCKS_PER_SM]
NAME:CUBIN:THREADS[:BLOCKS_PER_SM] per variant: threads per decode block and the blocks per SM a
launch has (2 by default, as mma.rs launches). The launch arguments follow mma.rs. Environment
filters: CFG (7b, 1.5b), ONLY (q/o, k/v, gate/up, down), XDT (f32, bf16), ROWS (1,8,32),
REPS (timed calls, 0 for a single call under a profiler).
Each call is two launches from Python (decode kernel and fold; about 60 us on an H100), so a call
that takes less than that measures the launches, not the kernels.
"""
import ctypes, sys, math, json, time, os
import torch

cuda = ctypes.CDLL("libcuda.so.1")
def ck(r, what):
    if r != 0:
        s = ctypes.c_char_p(); cuda.cuGetErrorString(r, ctypes.byref(s)); raise RuntimeError(f"{what}: {r} {s.value}")

torch.cuda.init(); torch.zeros(1, device="cuda")
SMS = torch.cuda.get_device_properties(0).multi_processor_count
stream = torch.cuda.current_stream().cuda_stream

def load(path):
    mod = ctypes.c_void_p(); ck(cuda.cuModuleLoad(ctypes.byref(mod), path.encode()), "load " + path)
    return mod
def func(mod, name, dyn):
    f = ctypes.c_void_p(); ck(cuda.cuModuleGetFunction(ctypes.byref(f), mod, name.encode()), name)
    if dyn: ck(cuda.cuFuncSetAttribute(f, 8, dyn), "attr")
    return f
def launch(f, grid, block, shm, args):
    holders = []
    for a in args:
        holders.append(ctypes.c_uint64(a) if isinstance(a, P) else ctypes.c_int32(a))
    arr = (ctypes.c_void_p * len(holders))(*[ctypes.cast(ctypes.byref(h), ctypes.c_void_p) for h in holders])
    ck(cuda.cuLaunchKernel(f, grid, 1, 1, block, 1, 1, shm, ctypes.c_void_p(stream), arr, None), "launch")
class P(int): pass

def grouping(n, k):
    st = max(1, -(-k // 64)); tiles = max(1, -(-n // 16))
    want = min(max(-(-8192 // tiles), 1), 32); want = min(want, st)
    spg = -(-st // want); return spg, -(-st // spg)

def kname(m):
    return "split1" if m <= 8 else "split2" if m <= 16 else "split4"

VARIANTS = {}
for arg in sys.argv[1:]:
    name, path, threads, *per_sm = arg.split(":")
    VARIANTS[name] = (load(path), int(threads), int(per_sm[0]) if per_sm else 2)

def run(var, prefix, x, w, b, y, part, m, n, k):
    mod, threads, per_sm = VARIANTS[var]
    spg, groups = grouping(n, k)
    f = func(mod, f"{prefix}_{kname(m)}", 65536)
    items = -(-n // 128) * groups
    blocks = min(items, per_sm * SMS)
    launch(f, blocks, threads, 65536, [P(x.data_ptr()), P(w.data_ptr()), P(b.data_ptr() if b is not None else 0), P(y.data_ptr()), P(part.data_ptr() if groups > 1 else 0), m, n, k, spg, groups])
    if groups > 1:
        fo = func(mod, f"{prefix}_fold", 0)
        launch(fo, -(-(m * n) // 1024), 1024, 0, [P(part.data_ptr()), P(b.data_ptr() if b is not None else 0), P(y.data_ptr()), m, n, groups])

# copy bandwidth
big = torch.empty(2 << 30, dtype=torch.uint8, device="cuda"); big2 = torch.empty_like(big)
for _ in range(3): big2.copy_(big)
e0, e1 = torch.cuda.Event(True), torch.cuda.Event(True); e0.record()
for _ in range(10): big2.copy_(big)
e1.record(); torch.cuda.synchronize(); bw = 2 * 10 * big.numel() / (e0.elapsed_time(e1) / 1e3)
print(f"device {torch.cuda.get_device_name()} SMs {SMS} copy bandwidth {bw/1e12:.2f} TB/s", flush=True)
del big, big2

SHAPES = {"7b": [("q/o", 3584, 3584), ("k/v", 512, 3584), ("gate/up", 18944, 3584), ("down", 3584, 18944)],
          "1.5b": [("q/o", 1536, 1536), ("k/v", 256, 1536), ("gate/up", 8960, 1536), ("down", 1536, 8960)]}
ROWS = [int(r) for r in os.environ.get("ROWS", "1,8,32").split(",")]
ONLY, CFG, XDT = os.environ.get("ONLY"), os.environ.get("CFG"), os.environ.get("XDT")
REPS = int(os.environ.get("REPS", "40"))
g = torch.Generator(device="cuda").manual_seed(0)
mismatch = 0
for cfg, shapes in SHAPES.items():
    if CFG and cfg != CFG: continue
    for label, n, k in shapes:
        if ONLY and label != ONLY: continue
        wbytes = n * k * 2
        copies = max(1, math.ceil(300e6 / wbytes))
        ws = [(torch.randn(n, k, device="cuda", generator=g) * 0.02).to(torch.bfloat16) for _ in range(copies)]
        b = (torch.randn(n, device="cuda", generator=g) * 0.1).to(torch.bfloat16)
        for xdt, prefix in [(torch.float32, "mma_linear_f32_bf16"), (torch.bfloat16, "mma_linear_bf16_bf16")]:
            if XDT and XDT != ("f32" if xdt == torch.float32 else "bf16"): continue
            for m in ROWS:
                x = torch.randn(m, k, device="cuda", generator=g).to(xdt)
                spg, groups = grouping(n, k)
                part = torch.empty(groups * m * n, dtype=torch.float32, device="cuda")
                outs, times = {}, {}
                for var in VARIANTS:
                    y = torch.empty(m, n, dtype=torch.float32 if xdt == torch.float32 else xdt, device="cuda")
                    run(var, prefix, x, ws[0], b, y, part, m, n, k); torch.cuda.synchronize()
                    outs[var] = y.clone()
                    for i in range(3 if REPS else 0): run(var, prefix, x, ws[i % copies], b, y, part, m, n, k)
                    reps = REPS
                    e0.record()
                    for i in range(reps): run(var, prefix, x, ws[i % copies], b, y, part, m, n, k)
                    e1.record(); torch.cuda.synchronize()
                    times[var] = e0.elapsed_time(e1) * 1e3 / max(reps, 1)
                ref = next(iter(outs.values()))
                eq = all(torch.equal(o.view(torch.int32) if o.dtype == torch.float32 else o.view(torch.int16), ref.view(torch.int32) if ref.dtype == torch.float32 else ref.view(torch.int16)) for o in outs.values())
                mismatch += not eq
                desc = "  ".join(f"{v} {t:7.1f} us ({wbytes / (t * 1e-6) / 1e12:.2f} TB/s, floor {wbytes / bw * 1e6:.1f} us)" for v, t in times.items())
                print(f"{cfg:4} {label:8} {n}x{k} groups {groups:2} {'f32 ' if xdt == torch.float32 else 'bf16'} m={m:2}: {desc}  bitwise={'same' if eq else 'DIFFERENT'}", flush=True)
        del ws
print("mismatches", mismatch)
