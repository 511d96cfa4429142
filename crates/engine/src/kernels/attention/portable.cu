// Paged attention in the CPU body's order (kernels/attention/cpu.rs), step for step, so that a GPU
// computes the CPU's bits: one block per (query token, query head); the query's positions in splits
// of PORTABLE_SPLIT (the CPU's KV_SPLIT); per split, each position's score q·k in the lane order
// (element i into lane i % 8, multiply then add, lanes halved pairwise) times the scale, the max
// and the sum of exponentials taken by one thread in position order, each column's weighted values
// summed in position order, the splits folded in order with portable_exp. Every operation is an
// _rn intrinsic, so nothing is fused. Slow by design: the portable tier is for the CPU's bits.
#define PORTABLE_SPLIT 256

#define PORTABLE_ATTENTION(NAME, T, LOAD)                                                        \
  extern "C" __global__ void __launch_bounds__(PORTABLE_SPLIT)                                   \
  NAME(const float* q, const T* keys, const T* vals, const unsigned* seq, const unsigned* pos,   \
       const unsigned* tables, int width, int tokens, int heads, int kv_heads, int d, long slots, \
       float scale, float* out, int block_size) {                                                \
    __shared__ float e[PORTABLE_SPLIT];                                                          \
    __shared__ float stat[2];                                                                    \
    const int ht = blockIdx.x, tok = ht / heads, head = ht % heads;                              \
    const long base = (long)(head / (heads / kv_heads)) * slots * d;                             \
    const float* qr = q + (long)ht * d;                                                          \
    const long table = (long)seq[tok] * width;                                                   \
    const int n = (int)pos[tok] + 1, c = threadIdx.x;                                            \
    float big_m = NEG_INF, big_l = 0.f, o = 0.f;                                                 \
    for (int s0 = 0; s0 < n; s0 += PORTABLE_SPLIT) {                                             \
      const int len = min(PORTABLE_SPLIT, n - s0);                                               \
      if (c < len) {                                                                             \
        const int p = s0 + c;                                                                    \
        const T* kr = keys + base + ((long)tables[table + p / block_size] * block_size + p % block_size) * d; \
        float lanes[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};                              \
        int i = 0;                                                                               \
        for (; i + 8 <= d; i += 8)                                                               \
          for (int l = 0; l < 8; ++l) lanes[l] = __fadd_rn(lanes[l], __fmul_rn(qr[i + l], LOAD(kr, i + l))); \
        for (int l = 0; i + l < d; ++l) lanes[l] = __fadd_rn(lanes[l], __fmul_rn(qr[i + l], LOAD(kr, i + l))); \
        for (int w = 4; w > 0; w >>= 1)                                                          \
          for (int l = 0; l < w; ++l) lanes[l] = __fadd_rn(lanes[l], lanes[l + w]);              \
        e[c] = __fmul_rn(lanes[0], scale);                                                       \
      }                                                                                          \
      __syncthreads();                                                                           \
      if (c == 0) {                                                                              \
        float m = NEG_INF;                                                                       \
        for (int j = 0; j < len; ++j) if (e[j] > m) m = e[j];                                    \
        stat[0] = m;                                                                             \
      }                                                                                          \
      __syncthreads();                                                                           \
      const float m = stat[0];                                                                   \
      if (c < len) e[c] = portable_exp(__fsub_rn(e[c], m));                                      \
      __syncthreads();                                                                           \
      if (c == 0) {                                                                              \
        float l = 0.f;                                                                           \
        for (int j = 0; j < len; ++j) l = __fadd_rn(l, e[j]);                                    \
        stat[1] = l;                                                                             \
      }                                                                                          \
      float acc = 0.f;                                                                           \
      if (c < d)                                                                                 \
        for (int j = 0; j < len; ++j) {                                                          \
          const int p = s0 + j;                                                                  \
          const long slot = (long)tables[table + p / block_size] * block_size + p % block_size;  \
          acc = __fadd_rn(acc, __fmul_rn(e[j], LOAD(vals, base + slot * d + c)));                \
        }                                                                                        \
      __syncthreads();                                                                           \
      const float l = stat[1];                                                                   \
      if (s0 == 0) {                                                                             \
        big_m = m; big_l = l; o = acc;                                                           \
      } else {                                                                                   \
        const float m2 = m > big_m ? m : big_m;                                                  \
        const float a = portable_exp(__fsub_rn(big_m, m2)), b = portable_exp(__fsub_rn(m, m2));  \
        big_l = __fadd_rn(__fmul_rn(big_l, a), __fmul_rn(l, b));                                 \
        o = __fadd_rn(__fmul_rn(o, a), __fmul_rn(acc, b));                                       \
        big_m = m2;                                                                              \
      }                                                                                          \
      __syncthreads();                                                                           \
    }                                                                                            \
    if (c < d) out[(long)ht * d + c] = __fdiv_rn(o, big_l);                                      \
  }
PORTABLE_ATTENTION(paged_portable_f32, float, load_f32)
PORTABLE_ATTENTION(paged_portable_bf16, u16, load_bf16)
PORTABLE_ATTENTION(paged_portable_f16, u16, load_f16)
