// `x · wᵀ (+ bias)` in the CPU's fixed order (reprolm_precision::deterministic::linear with the
// sequential order): each output is reduced by 8 threads, thread l taking the elements
// i = l, l + 8, l + 16, ... of K in order as fused multiply-adds into an f32 accumulator (an FMA is
// exactly specified, so the CPU's and the GPU's agree), then the 8 sums combined by halving
// (l += l + 4, then + 2, then + 1), the bias added in f32 and the sum rounded once to the dtype.
// x, the bias and the output are of the compute dtype TX; the weight of its storage dtype TW
// (LayerCast's bf16 weights under f32 compute widen exactly, as the CPU widens them).
// Slow by design: the portable tier trades speed for the CPU's bits.
#define PORTABLE_LINEAR(NAME, TX, LOAD, STORE, TW, LOAD_W)                                      \
  extern "C" __global__ void NAME(const TX* x, const TW* w, const TX* bias, TX* out, int m, int n, \
                                  int k) {                                                       \
    const long g = ((long)blockIdx.x * blockDim.x + threadIdx.x) >> 3;                           \
    const int lane = threadIdx.x & 7;                                                            \
    const bool live = g < (long)m * n;                                                           \
    const long i = live ? g / n : 0, j = live ? g % n : 0;                                       \
    float acc = 0.f;                                                                             \
    if (live)                                                                                    \
      for (int e = lane; e < k; e += 8)                                                          \
        acc = __fmaf_rn(LOAD(x, i * k + e), LOAD_W(w, j * k + e), acc);                          \
    for (int o = 4; o > 0; o >>= 1) acc = __fadd_rn(acc, __shfl_down_sync(0xffffffffu, acc, o, 8)); \
    if (live && lane == 0) {                                                                     \
      if (bias) acc = __fadd_rn(acc, LOAD(bias, j));                                             \
      STORE(out, g, acc);                                                                        \
    }                                                                                            \
  }
PORTABLE_LINEAR(portable_linear_f32_f32, float, load_f32, store_f32, float, load_f32)
PORTABLE_LINEAR(portable_linear_bf16_bf16, u16, load_bf16, store_bf16, u16, load_bf16)
PORTABLE_LINEAR(portable_linear_f16_f16, u16, load_f16, store_f16, u16, load_f16)
PORTABLE_LINEAR(portable_linear_f32_bf16, float, load_f32, store_f32, u16, load_bf16)
PORTABLE_LINEAR(portable_linear_f32_f16, float, load_f32, store_f32, u16, load_f16)
