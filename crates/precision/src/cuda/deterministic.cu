// Batch-invariant kernels: every output element is reduced in one fixed order that depends only
// on the reduction length, never on how many rows the call has, where the element's row sits, or
// how the grid is laid out.

#define MT 8      // rows of x per warp (a tile shares each weight load; the order per row is fixed)
#define MAXLV 8   // levels of the chunk tree: up to 128 chunks

// y[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]) with f32 accumulation.
//
// Order, for each output element: K is split into `chunks` equal chunks; within a chunk, lane l of
// the element's warp takes the groups of 8 consecutive k whose group index is l mod 32, in
// increasing k, accumulating with fused multiply-adds; the 32 lane sums are combined by an
// xor-butterfly; the chunk sums are added as the adjacent-pair binary tree (p[i] = p[2i] + p[2i+1],
// level by level), built left to right with a stack. The bias is added in f32 before the one
// rounding to the output dtype.
#define DET_LINEAR(NAME, TX, LOADX, STOREX, TW, LOADW)                                              \
  extern "C" __global__ void NAME(const TX* x, const TW* w, const TX* bias, TX* out, int M, int N, \
                                  int K, int chunks) {                                            \
    int lane = threadIdx.x & 31;                                                                  \
    int n = blockIdx.y * (blockDim.x >> 5) + (threadIdx.x >> 5);                                  \
    int m0 = blockIdx.x * MT;                                                                     \
    if (n >= N) return;                                                                           \
    int rows = M - m0 < MT ? M - m0 : MT;                                                                  \
    int len = K / chunks;                                                                         \
    float stack[MT][MAXLV];                                                                       \
    int level[MAXLV];                                                                             \
    int depth = 0;                                                                                \
    const TW* wr = w + (long)n * K;                                                               \
    for (int c = 0; c < chunks; ++c) {                                                            \
      float acc[MT];                                                                              \
      _Pragma("unroll") for (int r = 0; r < MT; ++r) acc[r] = 0.f;                                \
      int kc = c * len;                                                                           \
      for (int g = lane * 8; g < len; g += 256) {                                                 \
        for (int e = 0; e < 8 && g + e < len; ++e) {                                              \
          int k = kc + g + e;                                                                     \
          float wv = LOADW(wr, k);                                                                \
          _Pragma("unroll") for (int r = 0; r < MT; ++r) if (r < rows)                            \
            acc[r] = __fmaf_rn(LOADX(x, (long)(m0 + r) * K + k), wv, acc[r]);                     \
        }                                                                                         \
      }                                                                                           \
      _Pragma("unroll") for (int r = 0; r < MT; ++r)                                              \
        for (int o = 16; o > 0; o >>= 1)                                                          \
          acc[r] = __fadd_rn(acc[r], __shfl_xor_sync(0xffffffffu, acc[r], o));                    \
      int lv = 0;                                                                                 \
      while (depth > 0 && level[depth - 1] == lv) {                                               \
        _Pragma("unroll") for (int r = 0; r < MT; ++r)                                            \
          acc[r] = __fadd_rn(stack[r][depth - 1], acc[r]);                                       \
        --depth;                                                                                  \
        ++lv;                                                                                     \
      }                                                                                           \
      _Pragma("unroll") for (int r = 0; r < MT; ++r) stack[r][depth] = acc[r];                    \
      level[depth] = lv;                                                                          \
      ++depth;                                                                                    \
    }                                                                                             \
    if (lane == 0)                                                                                \
      for (int r = 0; r < rows; ++r) {                                                            \
        float v = stack[r][0];                                                                    \
        if (bias) v = __fadd_rn(v, LOADX(bias, n));                                               \
        STOREX(out, (long)(m0 + r) * N + n, v);                                                   \
      }                                                                                           \
  }
DET_LINEAR(det_linear_f32_f32, float, load_f32, store_f32, float, load_f32)
DET_LINEAR(det_linear_f32_bf16, float, load_f32, store_f32, u16, load_bf16)
DET_LINEAR(det_linear_f32_f16, float, load_f32, store_f32, u16, load_f16)
DET_LINEAR(det_linear_bf16_bf16, u16, load_bf16, store_bf16, u16, load_bf16)
DET_LINEAR(det_linear_f16_f16, u16, load_f16, store_f16, u16, load_f16)

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
