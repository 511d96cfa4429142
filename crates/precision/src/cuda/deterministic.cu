// Batch-invariant attention: every output element is reduced in one fixed order that depends only
// on its own row's keys, never on how many rows the call has, where the element's row sits, or
// how the grid is laid out. (The matmuls' invariant GEMM layer is the engine's kernels::gemm.)

// Causal attention of one query row per warp over its own row's keys, in slot order from the
// row's first real slot (a padding query sees only itself): the same sums for a sequence whatever
// its padding, its batch, or whether its keys arrived in a prefill or one by one.
// q: (B, H, L, D); k, v: (B, KVH, T, D); out: (B, H, L, D); all one dtype. For each visible slot j:
// s_j = round(round(q . k_j) * scale) (the dot product: lane l takes dims l, l+32, ..., fused
// multiply-adds, then an xor-butterfly); m = max s_j; z = sum exp(s_j - m) in slot order;
// p_j = round(exp(s_j - m) / z); out = round(sum p_j v_j) in slot order. `round` is to the dtype.
#define DET_ATTN(NAME, T, LOAD, ROUND, STORE)                                                      \
  extern "C" __global__ void NAME(const T* q, const T* k, const T* v, const int* starts, T* out,   \
                                  int B, int H, int KVH, int L, int TN, int D, int past,          \
                                  float scale) {                                                  \
    long row = (long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);                         \
    int lane = threadIdx.x & 31;                                                                  \
    if (row >= (long)B * H * L) return;                                                           \
    int i = row % L;                                                                              \
    long bh = row / L;                                                                            \
    int h = bh % H;                                                                               \
    int b = bh / H;                                                                               \
    int g = h / (H / KVH);                                                                        \
    int slot = past + i;                                                                          \
    int first = slot < starts[b] ? slot : starts[b];                                              \
    const T* kb = k + ((long)b * KVH + g) * TN * D;                                               \
    const T* vb = v + ((long)b * KVH + g) * TN * D;                                               \
    int per = (D + 31) / 32;                                                                      \
    float qv[8];                                                                                  \
    _Pragma("unroll") for (int e = 0; e < 8; ++e) {                                               \
      int dd = lane + 32 * e;                                                                     \
      qv[e] = (e < per && dd < D) ? LOAD(q, row * D + dd) : 0.f;                                  \
    }                                                                                             \
    auto score = [&](int j) {                                                                     \
      float s = 0.f;                                                                              \
      _Pragma("unroll") for (int e = 0; e < 8; ++e) {                                             \
        int dd = lane + 32 * e;                                                                   \
        if (e < per && dd < D) s = __fmaf_rn(qv[e], LOAD(kb, (long)j * D + dd), s);               \
      }                                                                                           \
      for (int o = 16; o > 0; o >>= 1) s = __fadd_rn(s, __shfl_xor_sync(0xffffffffu, s, o));     \
      return ROUND(__fmul_rn(ROUND(s), scale));                                                   \
    };                                                                                            \
    float m = __int_as_float(0xff800000);                                                                        \
    for (int j = first; j <= slot; ++j) m = fmaxf(m, score(j));                                   \
    float z = 0.f;                                                                                \
    for (int j = first; j <= slot; ++j) z = __fadd_rn(z, expf(__fsub_rn(score(j), m)));           \
    float acc[8];                                                                                 \
    _Pragma("unroll") for (int e = 0; e < 8; ++e) acc[e] = 0.f;                                   \
    for (int j = first; j <= slot; ++j) {                                                         \
      float p = ROUND(__fdiv_rn(expf(__fsub_rn(score(j), m)), z));                                \
      _Pragma("unroll") for (int e = 0; e < 8; ++e) {                                             \
        int dd = lane + 32 * e;                                                                   \
        if (e < per && dd < D) acc[e] = __fmaf_rn(p, LOAD(vb, (long)j * D + dd), acc[e]);         \
      }                                                                                           \
    }                                                                                             \
    _Pragma("unroll") for (int e = 0; e < 8; ++e) {                                               \
      int dd = lane + 32 * e;                                                                     \
      if (e < per && dd < D) STORE(out, row * D + dd, acc[e]);                                    \
    }                                                                                             \
  }
DET_ATTN(det_attention_f32, float, load_f32, round_f32, store_f32)
DET_ATTN(det_attention_bf16, u16, load_bf16, round_bf16, store_bf16)
DET_ATTN(det_attention_f16, u16, load_f16, round_f16, store_f16)
