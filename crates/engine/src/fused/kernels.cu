// Fused CUDA kernels for the decoder's small ops, compiled at run time with NVRTC.
//
// Each kernel computes exactly what the composed candle ops of crates/engine/src/models compute,
// rounding at the same points (a 16-bit value is rounded wherever the composed path stores one),
// so that fusing changes the number of kernel launches and not the numbers. The one exception is
// RMSNorm's sum of squares, which a block reduces in its own order.
//

// The 16-bit conversions (load_*, round_*, store_*) come from reprolm-precision's prelude.cu.

// `sqrt(mean(x^2) + eps)` of a block's row from each thread's partial sum of squares `acc`: the
// partial sums added as a butterfly within each warp, then the warps' sums the same way by the
// first warp. The order depends on the block width alone; every thread gets the result.
__device__ __forceinline__ float rms_denominator(float acc, float inv_cols, float eps) {
  __shared__ float partial[32];
  for (int o = 16; o > 0; o >>= 1) acc = __fadd_rn(acc, __shfl_xor_sync(0xffffffffu, acc, o));
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = acc;
  __syncthreads();
  if (threadIdx.x < 32) {
    acc = threadIdx.x < (blockDim.x >> 5) ? partial[threadIdx.x] : 0.f;
    for (int o = 16; o > 0; o >>= 1) acc = __fadd_rn(acc, __shfl_xor_sync(0xffffffffu, acc, o));
    if (threadIdx.x == 0) partial[0] = acc;
  }
  __syncthreads();
  return __fsqrt_rn(__fadd_rn(__fmul_rn(partial[0], inv_cols), eps));
}

// RMSNorm as transformers' LlamaRMSNorm orders it: statistics in f32 (the mean as candle takes it,
// the sum times 1/cols), `x / sqrt(mean(x^2) + eps)`
// rounded to the input dtype, then multiplied by the weight in the input dtype. One block per row.
#define RMSNORM(NAME, T, LOAD, ROUND, STORE)                                                     \
  extern "C" __global__ void NAME(const T* x, const T* w, T* out, int cols, float inv_cols, float eps) { \
    const T* row = x + (long)blockIdx.x * cols;                                                  \
    T* dst = out + (long)blockIdx.x * cols;                                                      \
    float acc = 0.f;                                                                             \
    for (int i = threadIdx.x; i < cols; i += blockDim.x) {                                       \
      float v = LOAD(row, i);                                                                    \
      acc = __fadd_rn(acc, __fmul_rn(v, v));                                                     \
    }                                                                                            \
    const float denom = rms_denominator(acc, inv_cols, eps);                                     \
    for (int i = threadIdx.x; i < cols; i += blockDim.x) {                                       \
      float normed = ROUND(__fdiv_rn(LOAD(row, i), denom));                                      \
      STORE(dst, i, __fmul_rn(normed, LOAD(w, i)));                                              \
    }                                                                                            \
  }
RMSNORM(rmsnorm_f32, float, load_f32, round_f32, store_f32)
RMSNORM(rmsnorm_bf16, u16, load_bf16, round_bf16, store_bf16)
RMSNORM(rmsnorm_f16, u16, load_f16, round_f16, store_f16)

// The residual add and the next RMSNorm in one pass: `sum = x + a` rounded to the dtype (the
// correctly rounded sum: f32 holds the exact sum of two 16-bit values closely enough that rounding
// it again is exact), then RMSNORM's arithmetic on `sum` (the same rms_denominator). `out` holds
// the normed rows, then the sums.
#define ADD_RMSNORM(NAME, T, LOAD, ROUND, STORE)                                                 \
  extern "C" __global__ void NAME(const T* x, const T* a, const T* w, T* out, int rows, int cols, \
                                  float inv_cols, float eps) {                                   \
    const long off = (long)blockIdx.x * cols;                                                    \
    T* dst = out + off;                                                                          \
    T* sum = out + (long)rows * cols + off;                                                      \
    float acc = 0.f;                                                                             \
    for (int i = threadIdx.x; i < cols; i += blockDim.x) {                                       \
      float v = ROUND(__fadd_rn(LOAD(x, off + i), LOAD(a, off + i)));                            \
      STORE(sum, i, v);                                                                          \
      acc = __fadd_rn(acc, __fmul_rn(v, v));                                                     \
    }                                                                                            \
    const float denom = rms_denominator(acc, inv_cols, eps);                                     \
    for (int i = threadIdx.x; i < cols; i += blockDim.x) {                                       \
      float normed = ROUND(__fdiv_rn(LOAD(sum, i), denom));                                      \
      STORE(dst, i, __fmul_rn(normed, LOAD(w, i)));                                              \
    }                                                                                            \
  }
ADD_RMSNORM(add_rmsnorm_f32, float, load_f32, round_f32, store_f32)
ADD_RMSNORM(add_rmsnorm_bf16, u16, load_bf16, round_bf16, store_bf16)
ADD_RMSNORM(add_rmsnorm_f16, u16, load_f16, round_f16, store_f16)

// The SwiGLU product: SiLU of the gate in f32 (candle's formula x / (1 + exp(-x))), rounded to
// the dtype, times `up` in the dtype.
// `gate` and `up` are rows of `cols` elements, row r starting r * stride elements in (both halves
// of one stacked GEMM output, or contiguous tensors); `out` is contiguous.
// EXP is expf, or portable_exp for the portable tier (the CPU's exponential, step by step).
#define SILU_MUL(NAME, T, LOAD, ROUND, STORE, EXP)                                               \
  extern "C" __global__ void NAME(const T* gate, const T* up, T* out, long n, int cols,          \
                                  long gate_stride, long up_stride) {                            \
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) { \
      const long r = i / cols, c = i % cols;                                                     \
      float g = LOAD(gate, r * gate_stride + c);                                                 \
      float s = ROUND(__fdiv_rn(g, __fadd_rn(1.f, EXP(-g))));                                    \
      STORE(out, i, __fmul_rn(s, LOAD(up, r * up_stride + c)));                                  \
    }                                                                                            \
  }
SILU_MUL(silu_mul_f32, float, load_f32, round_f32, store_f32, expf)
SILU_MUL(silu_mul_bf16, u16, load_bf16, round_bf16, store_bf16, expf)
SILU_MUL(silu_mul_f16, u16, load_f16, round_f16, store_f16, expf)
SILU_MUL(silu_mul_portable_f32, float, load_f32, round_f32, store_f32, portable_exp)
SILU_MUL(silu_mul_portable_bf16, u16, load_bf16, round_bf16, store_bf16, portable_exp)
SILU_MUL(silu_mul_portable_f16, u16, load_f16, round_f16, store_f16, portable_exp)

// Rotary embedding (the rotate-half form) of `(b, l, heads, d)` input of dtype T into output of
// the same layout in the cos/sin dtype R, with per-row cos/sin `(b, l, d/2)`: the cast and the
// rotation of the composed path in one pass.
#define ROPE(NAME, T, R, LOADX, LOADR, ROUNDR, STORER)                                           \
  extern "C" __global__ void NAME(const T* x, const R* cos, const R* sin, R* out,                \
                                  int b, int l, int heads, int d) {                              \
    int half = d / 2;                                                                            \
    long n = (long)b * l * heads * half;                                                         \
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) { \
      int j = i % half; long r = i / half;                                                       \
      int h = r % heads; r /= heads;                                                             \
      int t = r % l; int bb = r / l;                                                             \
      long src = (((long)bb * l + t) * heads + h) * d;                                           \
      long cs = ((long)bb * l + t) * half + j;                                                   \
      float x1 = ROUNDR(LOADX(x, src + j)), x2 = ROUNDR(LOADX(x, src + j + half));               \
      float c = LOADR(cos, cs), s = LOADR(sin, cs);                                              \
      float r1 = __fsub_rn(ROUNDR(__fmul_rn(x1, c)), ROUNDR(__fmul_rn(x2, s)));                  \
      float r2 = __fadd_rn(ROUNDR(__fmul_rn(x2, c)), ROUNDR(__fmul_rn(x1, s)));                  \
      STORER(out, src + j, r1);                                                                  \
      STORER(out, src + j + half, r2);                                                           \
    }                                                                                            \
  }
ROPE(rope_f32_f32, float, float, load_f32, load_f32, round_f32, store_f32)
ROPE(rope_bf16_bf16, u16, u16, load_bf16, load_bf16, round_bf16, store_bf16)
ROPE(rope_f16_f16, u16, u16, load_f16, load_f16, round_f16, store_f16)
ROPE(rope_bf16_f32, u16, float, load_bf16, load_f32, round_f32, store_f32)
ROPE(rope_f16_f32, u16, float, load_f16, load_f32, round_f32, store_f32)

// ROPE (with T = R) of a layer's new queries and keys, and the cache write of its keys and values,
// in one pass: q `(tokens, heads, d)` is rotated into q_out (contiguous); k `(tokens, kv_heads,
// d)` is rotated, and v copied, into slot slots[t] of the pools `(kv_heads, pool_slots, d)`; a
// slot outside the pool (a padding row's) is written nowhere. One thread per pair of elements
// (j, j + d/2) of a row, the rows of a token being its query heads, then key heads, then value
// heads. Token t's rows of q, k and v start t * q_stride (k_stride, v_stride) elements in: the
// three may be parts of one stacked GEMM output.
#define ROPE_CACHE_WRITE(NAME, T, LOAD, ROUND, STORE)                                           \
  extern "C" __global__ void NAME(const T* q, const T* k, const T* v, const T* cos,              \
                                  const T* sin, const unsigned* slots, T* q_out, T* kpool,       \
                                  T* vpool, int tokens, int heads, int kv_heads, int d,          \
                                  long pool_slots, long q_stride, long k_stride,                 \
                                  long v_stride) {                                               \
    const int half = d / 2, per_token = heads + 2 * kv_heads;                                    \
    const long n = (long)tokens * per_token * half;                                              \
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) { \
      const int j = i % half;                                                                    \
      const long r = i / half;                                                                   \
      const int row = r % per_token, t = r / per_token;                                          \
      if (row >= heads + kv_heads) {                                                             \
        const int g = row - heads - kv_heads;                                                    \
        const unsigned slot = slots[t];                                                          \
        if (slot >= pool_slots) continue;                                                        \
        const long src = t * v_stride + (long)g * d, dst = ((long)g * pool_slots + slot) * d;    \
        vpool[dst + j] = v[src + j];                                                             \
        vpool[dst + j + half] = v[src + j + half];                                               \
        continue;                                                                                \
      }                                                                                          \
      const bool is_q = row < heads;                                                             \
      const T* x;                                                                                \
      T* out;                                                                                    \
      long src, dst;                                                                             \
      if (is_q) {                                                                                \
        x = q; out = q_out;                                                                      \
        src = t * q_stride + (long)row * d;                                                      \
        dst = ((long)t * heads + row) * d;                                                       \
      } else {                                                                                   \
        const int g = row - heads;                                                               \
        const unsigned slot = slots[t];                                                          \
        if (slot >= pool_slots) continue;                                                        \
        x = k; out = kpool;                                                                      \
        src = t * k_stride + (long)g * d;                                                        \
        dst = ((long)g * pool_slots + slot) * d;                                                 \
      }                                                                                          \
      const long cs = (long)t * half + j;                                                        \
      float x1 = LOAD(x, src + j), x2 = LOAD(x, src + j + half);                                 \
      float c = LOAD(cos, cs), s = LOAD(sin, cs);                                                \
      float r1 = __fsub_rn(ROUND(__fmul_rn(x1, c)), ROUND(__fmul_rn(x2, s)));                    \
      float r2 = __fadd_rn(ROUND(__fmul_rn(x2, c)), ROUND(__fmul_rn(x1, s)));                    \
      STORE(out, dst + j, r1);                                                                   \
      STORE(out, dst + j + half, r2);                                                            \
    }                                                                                            \
  }
ROPE_CACHE_WRITE(rope_cache_write_f32, float, load_f32, round_f32, store_f32)
ROPE_CACHE_WRITE(rope_cache_write_bf16, u16, load_bf16, round_bf16, store_bf16)
ROPE_CACHE_WRITE(rope_cache_write_f16, u16, load_f16, round_f16, store_f16)

// A greedy decode step's choice in one launch per batch: per row of `(rows, n)` f32 logits, the
// first index of the largest logit and its log-probability, and the K largest log-probabilities
// (descending, the lower index first on a tie), written as `2 + 2 * k_out` floats per row: token,
// its log-probability, then (index, value) pairs. Indices travel as f32, exact below 2^24. The
// selection is exact, so it is the host's (`sampling::argmax`, `sampling::top_k`) bit for bit.
// Two launches: blocks of TOPK_THREADS over parts of each row (each thread keeps its own sorted
// top K of a strided slice, then the lists are merged pairwise in shared memory), then one block
// per row merging its parts' lists the same way.
#define TOPK_THREADS 256

__device__ __forceinline__ bool topk_better(float a, int ia, float b, int ib) {
  return a > b || (a == b && ia < ib);
}

template <int K>
__device__ __forceinline__ void topk_insert(float* v, int* id, float x, int i) {
  if (!topk_better(x, i, v[K - 1], id[K - 1])) return;
  bool placed = false;
#pragma unroll
  for (int j = K - 1; j >= 0; j--) {
    if (!placed) {
      if (j > 0 && topk_better(x, i, v[j - 1], id[j - 1])) {
        v[j] = v[j - 1]; id[j] = id[j - 1];
      } else {
        v[j] = x; id[j] = i; placed = true;
      }
    }
  }
}

// Each thread's best (value, index) and sorted top K are merged pairwise in shared memory: the
// block's best and top K of whatever its threads were given.
template <int K>
__device__ void topk_block_merge(float (*sv)[K], int (*si)[K], float* bv, int* bi) {
  const int t = threadIdx.x;
  for (int stride = TOPK_THREADS / 2; stride > 0; stride >>= 1) {
    if (t < stride) {
      int o = t + stride;
      if (topk_better(bv[o], bi[o], bv[t], bi[t])) { bv[t] = bv[o]; bi[t] = bi[o]; }
      // Merge two sorted lists, keeping the best K.
      float mv[K]; int mi[K];
      int a = 0, b = 0;
#pragma unroll
      for (int j = 0; j < K; j++) {
        bool take_a = topk_better(sv[t][a], si[t][a], sv[o][b], si[o][b]);
        mv[j] = take_a ? sv[t][a] : sv[o][b];
        mi[j] = take_a ? si[t][a] : si[o][b];
        if (take_a) a++; else b++;
      }
#pragma unroll
      for (int j = 0; j < K; j++) { sv[t][j] = mv[j]; si[t][j] = mi[j]; }
    }
    __syncthreads();
  }
}

// Phase 1: block (row, part) takes elements [part * chunk, (part + 1) * chunk) of its row and
// writes their best logit (value, index) and top K log-probabilities to slot row * parts + part
// of the scratch arrays. Many blocks per row: one block over a 152k vocabulary took 0.5 ms.
template <int K>
__device__ void greedy_top_k_part(const float* logits, const float* logprobs, float* part_v,
                                  int* part_i, float* part_bv, int* part_bi, int n, int chunk) {
  __shared__ float sv[TOPK_THREADS][K];
  __shared__ int si[TOPK_THREADS][K];
  __shared__ float bv[TOPK_THREADS];
  __shared__ int bi[TOPK_THREADS];
  const int row = blockIdx.x, part = blockIdx.y, parts = gridDim.y, t = threadIdx.x;
  const float* lg = logits + (long)row * n;
  const float* lp = logprobs + (long)row * n;
  const int i0 = part * chunk, i1 = min(n, i0 + chunk);
  float v[K]; int id[K];
#pragma unroll
  for (int j = 0; j < K; j++) { v[j] = NEG_INF; id[j] = 0x7fffffff; }
  float best = NEG_INF; int best_i = 0x7fffffff;
  for (int i = i0 + t; i < i1; i += TOPK_THREADS) {
    float x = lg[i];
    if (topk_better(x, i, best, best_i)) { best = x; best_i = i; }
    topk_insert<K>(v, id, lp[i], i);
  }
  bv[t] = best; bi[t] = best_i;
#pragma unroll
  for (int j = 0; j < K; j++) { sv[t][j] = v[j]; si[t][j] = id[j]; }
  __syncthreads();
  topk_block_merge<K>(sv, si, bv, bi);
  if (t == 0) {
    const long slot = (long)row * parts + part;
    part_bv[slot] = bv[0]; part_bi[slot] = bi[0];
#pragma unroll
    for (int j = 0; j < K; j++) { part_v[slot * K + j] = sv[0][j]; part_i[slot * K + j] = si[0][j]; }
  }
}

// Phase 2: one block per row merges its parts' results (thread p takes part p) and writes the
// row: the token (the first index of the largest logit), its log-probability, and k_out
// (index, log-probability) pairs. The selection is exact under one total order (value, then the
// lower index), so how the row was cut into parts changes nothing.
template <int K>
__device__ void greedy_top_k_merge(const float* logprobs, const float* part_v, const int* part_i,
                                   const float* part_bv, const int* part_bi, float* out, int n,
                                   int k_out, int parts) {
  __shared__ float sv[TOPK_THREADS][K];
  __shared__ int si[TOPK_THREADS][K];
  __shared__ float bv[TOPK_THREADS];
  __shared__ int bi[TOPK_THREADS];
  const int row = blockIdx.x, t = threadIdx.x;
  const long slot = (long)row * parts + t;
  const bool has = t < parts;
  bv[t] = has ? part_bv[slot] : NEG_INF;
  bi[t] = has ? part_bi[slot] : 0x7fffffff;
#pragma unroll
  for (int j = 0; j < K; j++) {
    sv[t][j] = has ? part_v[slot * K + j] : NEG_INF;
    si[t][j] = has ? part_i[slot * K + j] : 0x7fffffff;
  }
  __syncthreads();
  topk_block_merge<K>(sv, si, bv, bi);
  if (t == 0) {
    const float* lp = logprobs + (long)row * n;
    // A row of NaNs has no largest value; index 0 keeps the result a valid token.
    int token = bi[0] < n ? bi[0] : 0;
    float* dst = out + (long)row * (2 + 2 * k_out);
    dst[0] = (float)token;
    dst[1] = lp[token];
    for (int j = 0; j < k_out; j++) {
      int i = si[0][j] < n ? si[0][j] : 0;
      dst[2 + 2 * j] = (float)i;
      dst[3 + 2 * j] = sv[0][j];
    }
  }
}

#define GREEDY_TOP_K(K)                                                                          \
  extern "C" __global__ void greedy_top_k_part_##K(const float* logits, const float* logprobs,   \
                                                   float* part_v, int* part_i, float* part_bv,   \
                                                   int* part_bi, int n, int chunk) {             \
    greedy_top_k_part<K>(logits, logprobs, part_v, part_i, part_bv, part_bi, n, chunk);          \
  }                                                                                              \
  extern "C" __global__ void greedy_top_k_merge_##K(const float* logprobs, const float* part_v,  \
                                                    const int* part_i, const float* part_bv,     \
                                                    const int* part_bi, float* out, int n,       \
                                                    int k_out, int parts) {                      \
    greedy_top_k_merge<K>(logprobs, part_v, part_i, part_bv, part_bi, out, n, k_out, parts);     \
  }
GREEDY_TOP_K(1)
GREEDY_TOP_K(2)
GREEDY_TOP_K(4)
GREEDY_TOP_K(8)

// Log-softmax of each row of `(rows, n)` f32 logits in two launches of blocks over parts of
// LSM_CHUNK entries (a 152k vocabulary in one block per row took about 0.1 ms for each of the
// row's max and sum). Each row is reduced on its own, in an order fixed by n:
//   1. block (row, part): its part's max m_p and s_p = sum of expf(x - m_p) (each thread its
//      strided entries in order, then the warps as butterflies, then the warps' sums in order);
//   2. block (row, part), thread p reading part p: the row's max M (a max, exact in any order),
//      its sum S of s_p * expf(m_p - M) reduced as in 1 and lse = logf(S) (every block the same
//      values by the same operations), then its part's entries (x - M) - lse.
// So a row takes at most LSM_THREADS parts; the caller widens the parts of longer rows.
// A part of -inf entries adds nothing (s_p = 0); a row of -inf gives NaN, as the composed ops do.
#define LSM_THREADS 256
#define LSM_CHUNK 2048

// The block's values v combined by `op` in an order set by the block width alone; every thread
// gets the result.
template <bool MAX>
__device__ __forceinline__ float lsm_block(float v, float* scratch) {
  for (int o = 16; o > 0; o >>= 1) {
    const float w = __shfl_xor_sync(0xffffffffu, v, o);
    v = MAX ? fmaxf(v, w) : __fadd_rn(v, w);
  }
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  float r = scratch[0];
  for (int w = 1; w < LSM_THREADS / 32; w++) r = MAX ? fmaxf(r, scratch[w]) : __fadd_rn(r, scratch[w]);
  __syncthreads(); /* scratch may be written again */
  return r;
}

extern "C" __global__ void __launch_bounds__(LSM_THREADS)
    log_softmax_part(const float* x, float* part_m, float* part_s, int n, int chunk) {
  __shared__ float scratch[LSM_THREADS / 32];
  const int row = blockIdx.x, part = blockIdx.y;
  const float* xr = x + (long)row * n;
  const int i0 = part * chunk, i1 = min(n, i0 + chunk);
  float m = NEG_INF;
  for (int i = i0 + threadIdx.x; i < i1; i += LSM_THREADS) m = fmaxf(m, xr[i]);
  m = lsm_block<true>(m, scratch);
  float s = 0.f;
  if (m != NEG_INF)
    for (int i = i0 + threadIdx.x; i < i1; i += LSM_THREADS) s = __fadd_rn(s, expf(__fsub_rn(xr[i], m)));
  s = lsm_block<false>(s, scratch);
  if (threadIdx.x == 0) {
    part_m[(long)row * gridDim.y + part] = m;
    part_s[(long)row * gridDim.y + part] = s;
  }
}

extern "C" __global__ void __launch_bounds__(LSM_THREADS)
    log_softmax_write(const float* x, const float* part_m, const float* part_s, float* out, int n,
                      int chunk) {
  __shared__ float scratch[LSM_THREADS / 32];
  const int row = blockIdx.x, part = blockIdx.y, parts = gridDim.y, t = threadIdx.x;
  const float m_t = t < parts ? part_m[(long)row * parts + t] : NEG_INF;
  const float big_m = lsm_block<true>(m_t, scratch);
  const float term = t < parts && m_t != NEG_INF
                         ? __fmul_rn(part_s[(long)row * parts + t], expf(__fsub_rn(m_t, big_m)))
                         : 0.f;
  const float lse = logf(lsm_block<false>(term, scratch));
  const float* xr = x + (long)row * n;
  float* o = out + (long)row * n;
  const int i0 = part * chunk, i1 = min(n, i0 + chunk);
  for (int i = i0 + threadIdx.x; i < i1; i += LSM_THREADS) o[i] = __fsub_rn(__fsub_rn(xr[i], big_m), lse);
}
