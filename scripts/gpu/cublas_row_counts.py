# How cuBLAS's own bf16 GEMM (torch.matmul, cuBLAS choosing per call) changes a row's bits with the
# number of rows: for each decoder shape, row 0 of x[:m] @ W^T against row 0 at 4096 rows (the share of
# outputs that differ, and the largest difference in bf16 ulps), and the share off the float64 product
# rounded to bf16 once. Differences of one ulp mean f32 accumulation in another order; several ulps mean
# partial sums that passed through bf16 (a reduced-precision split-K reduction). The evidence behind the
# CPU's `--kernels heuristic` model (kernels::gemm::heuristic_cpu_order).
#
#   usage: python3 scripts/gpu/cublas_row_counts.py      (a CUDA GPU, PyTorch)
import torch
torch.manual_seed(0)
dev = "cuda"
shapes = {"qkv 1.5B": (2048, 1536), "o 1.5B": (1536, 1536), "gate_up 1.5B": (17920, 1536), "down 1.5B": (1536, 8960),
          "o 7B": (3584, 3584), "down 7B": (3584, 18944), "arith qkv": (384, 256), "arith down": (256, 704)}
print(torch.cuda.get_device_name(), "torch", torch.__version__, "allow_bf16_reduced_precision_reduction",
      torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction)
for name, (n, k) in shapes.items():
    w = (torch.randn(n, k, device=dev) / k ** 0.5).bfloat16()
    x = torch.randn(4096, k, device=dev).bfloat16()
    ref = (x[:1].double() @ w.double().T)
    exact = ref.bfloat16()
    base = (x @ w.T)[0]
    out = []
    for m in (1, 2, 4, 8, 16, 32, 64, 128, 512):
        y = (x[:m] @ w.T)[0]
        diff = (y != base)
        ulp = (y.float().view(torch.int32) - base.float().view(torch.int32)).abs() >> 16
        off = (y != exact[0]).float().mean().item()
        out.append(f"m={m}: {diff.float().mean().item():.4f} differ (max {ulp.max().item()} ulp), {off:.3f} off f64")
    print(f"{name} N={n} K={k}: " + "; ".join(out))
