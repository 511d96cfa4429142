// Attention over the paged KV cache, in the order of `attention/mod.rs`: a query's keys in splits
// of KV_SPLIT positions, each split's (max, sum, weighted values) computed by one block, the
// splits folded in increasing order. Two entry points give the same bits:
//   paged_attention_*   one block per (query token, kv head, split); with `part_acc == 0` the
//                       block walks every split of its query itself and folds them as it goes
//                       (prefill), otherwise it writes its split's partial result for
//                       paged_fold_* (decode, many blocks per query).
//   paged_fold_*        one block per (query token, query head): folds the partial results.
// q and out are (heads, tokens, d); the pools (kv_heads, slots, d); tables (seqs, width).

#define KV_SPLIT 256
#define BLOCK 16
#define MAX_GROUP 16
#define MAX_D 256
#define THREADS 128
#define WARPS (THREADS / 32)

// The fold of step 3 (one expression for both entry points, so they agree bit for bit).
__device__ __forceinline__ void fold(float& big_m, float& big_l, float* o, int n, float m, float l,
                                     const float* acc) {
  float m2 = fmaxf(big_m, m);
  float a = expf(big_m - m2), b = expf(m - m2);
  // Spelled out so that no contraction choice of the compiler can differ between the callers.
  big_l = __fmaf_rn(big_l, a, __fmul_rn(l, b));
  for (int i = 0; i < n; i++) o[i] = __fmaf_rn(o[i], a, __fmul_rn(acc[i], b));
  big_m = m2;
}

#define PAGED(QN, QT, KN, KT)                                                                      \
  extern "C" __global__ void __launch_bounds__(THREADS)                                              \
      paged_attention_##QN##_##KN(const QT* q, const KT* keys, const KT* vals,                      \
                                  const unsigned* q_seq, const unsigned* q_pos,                     \
                                  const unsigned* tables, int width, int tokens, int heads,         \
                                  int kv_heads, int d, long slots, float scale, int splits_cap,     \
                                  float* part_acc, float* part_ml, QT* out) {                       \
    const int t = blockIdx.x, g = blockIdx.y;                                                       \
    const int n = (int)q_pos[t] + 1;                                                                \
    const int splits = (n + KV_SPLIT - 1) / KV_SPLIT;                                               \
    const bool partial = part_acc != 0;                                                             \
    /* With partial results, this block's one split; otherwise all of them in order. */             \
    const int s_first = partial ? (int)blockIdx.z : 0;                                              \
    const int s_last = partial ? (int)blockIdx.z + 1 : splits;                                      \
    if (s_first >= splits) return;                                                                  \
    const int rep = heads / kv_heads;                                                               \
    __shared__ float qs[MAX_GROUP * MAX_D];                                                         \
    __shared__ float sc[MAX_GROUP * KV_SPLIT];                                                      \
    __shared__ long slot_of[KV_SPLIT];                                                              \
    __shared__ float ml[MAX_GROUP * 2];                                                             \
    for (int i = threadIdx.x; i < rep * d; i += THREADS) {                                          \
      int r = i / d, e = i % d;                                                                     \
      qs[i] = load_##QN(q, ((long)(g * rep + r) * tokens + t) * d + e);                             \
    }                                                                                               \
    const unsigned* table = tables + (long)q_seq[t] * width;                                        \
    const long base = (long)g * slots * d;                                                          \
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;                                     \
    /* The running fold of this thread's output elements (e = tid, tid + THREADS, ...). */          \
    float big_m[MAX_GROUP], big_l[MAX_GROUP], o[MAX_GROUP][MAX_D / THREADS];                        \
    for (int s = s_first; s < s_last; s++) {                                                        \
      const int j0 = s * KV_SPLIT, nk = min(KV_SPLIT, n - j0);                                      \
      for (int jj = threadIdx.x; jj < nk; jj += THREADS) {                                          \
        int j = j0 + jj;                                                                            \
        slot_of[jj] = (long)table[j / BLOCK] * BLOCK + j % BLOCK;                                   \
      }                                                                                             \
      __syncthreads(); /* q (first split) and the slots are in shared memory */                     \
      /* 2a. Scores: warp w takes keys w, w + WARPS, ...; lane i the elements i, i + 32, ... */     \
      for (int jj = warp; jj < nk; jj += WARPS) {                                                   \
        const long krow = base + slot_of[jj] * d;                                                   \
        float kr[MAX_D / 32];                                                                       \
        _Pragma("unroll") for (int i = 0; i < MAX_D / 32; i++) {                                    \
          int e = lane + 32 * i;                                                                    \
          kr[i] = e < d ? load_##KN(keys, krow + e) : 0.f;                                          \
        }                                                                                           \
        for (int r = 0; r < rep; r++) {                                                             \
          float p = 0.f;                                                                            \
          _Pragma("unroll") for (int i = 0; i < MAX_D / 32; i++) {                                  \
            int e = lane + 32 * i;                                                                  \
            if (e < d) p = fmaf(qs[r * d + e], kr[i], p);                                           \
          }                                                                                         \
          _Pragma("unroll") for (int w = 16; w > 0; w >>= 1) p += __shfl_xor_sync(0xffffffffu, p, w); \
          if (lane == 0) sc[r * KV_SPLIT + jj] = p * scale;                                         \
        }                                                                                           \
      }                                                                                             \
      __syncthreads();                                                                              \
      /* 2b. Per head: the split's max (exact in any order), exp, and sum (lanes, butterfly). */     \
      for (int r = warp; r < rep; r += WARPS) {                                                     \
        float m = NEG_INF;                                                                          \
        for (int jj = lane; jj < nk; jj += 32) m = fmaxf(m, sc[r * KV_SPLIT + jj]);                 \
        _Pragma("unroll") for (int w = 16; w > 0; w >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, w)); \
        float l = 0.f;                                                                              \
        for (int jj = lane; jj < nk; jj += 32) {                                                    \
          float e = expf(sc[r * KV_SPLIT + jj] - m);                                                \
          sc[r * KV_SPLIT + jj] = e;                                                                \
          l += e;                                                                                   \
        }                                                                                           \
        _Pragma("unroll") for (int w = 16; w > 0; w >>= 1) l += __shfl_xor_sync(0xffffffffu, l, w); \
        if (lane == 0) {                                                                            \
          ml[2 * r] = m;                                                                            \
          ml[2 * r + 1] = l;                                                                        \
        }                                                                                           \
      }                                                                                             \
      __syncthreads();                                                                              \
      /* 2c. Weighted values, sequential over the split's keys, and the fold of step 3. */          \
      _Pragma("unroll") for (int c = 0; c < MAX_D / THREADS; c++) {                                 \
        const int e = threadIdx.x + c * THREADS;                                                    \
        if (e >= d) break;                                                                          \
        float acc[MAX_GROUP];                                                                       \
        _Pragma("unroll") for (int r = 0; r < MAX_GROUP; r++) acc[r] = 0.f;                         \
        _Pragma("unroll 8") for (int jj = 0; jj < nk; jj++) {                                       \
          const float v = load_##KN(vals, base + slot_of[jj] * d + e);                              \
          _Pragma("unroll") for (int r = 0; r < MAX_GROUP; r++) if (r < rep) acc[r] =               \
              fmaf(sc[r * KV_SPLIT + jj], v, acc[r]);                                               \
        }                                                                                           \
        _Pragma("unroll") for (int r = 0; r < MAX_GROUP; r++) {                                     \
          if (r >= rep) break;                                                                      \
          const int hh = g * rep + r;                                                               \
          if (partial) {                                                                            \
            part_acc[(((long)t * heads + hh) * splits_cap + s) * d + e] = acc[r];                   \
          } else if (s == 0) {                                                                      \
            o[r][c] = acc[r];                                                                       \
            if (c == 0) { big_m[r] = ml[2 * r]; big_l[r] = ml[2 * r + 1]; }                         \
          } else {                                                                                  \
            float bm = big_m[r], bl = big_l[r];                                                     \
            fold(bm, bl, &o[r][c], 1, ml[2 * r], ml[2 * r + 1], &acc[r]);                            \
            if (c == (d - 1 - threadIdx.x) / THREADS) { big_m[r] = bm; big_l[r] = bl; }             \
          }                                                                                         \
        }                                                                                           \
      }                                                                                             \
      if (partial && threadIdx.x < rep) {                                                           \
        const long at = ((long)t * heads + g * rep + threadIdx.x) * splits_cap + s;                 \
        part_ml[2 * at] = ml[2 * threadIdx.x];                                                      \
        part_ml[2 * at + 1] = ml[2 * threadIdx.x + 1];                                              \
      }                                                                                             \
      __syncthreads(); /* shared scores and slots are rewritten by the next split */                \
    }                                                                                               \
    if (partial) return;                                                                            \
    _Pragma("unroll") for (int c = 0; c < MAX_D / THREADS; c++) {                                   \
      const int e = threadIdx.x + c * THREADS;                                                      \
      if (e >= d) break;                                                                            \
      _Pragma("unroll") for (int r = 0; r < MAX_GROUP; r++) {                                       \
        if (r >= rep) break;                                                                        \
        store_##QN(out, ((long)(g * rep + r) * tokens + t) * d + e, o[r][c] / big_l[r]);            \
      }                                                                                             \
    }                                                                                               \
  }

#define FOLD(QN, QT)                                                                               \
  extern "C" __global__ void __launch_bounds__(THREADS)                                              \
      paged_fold_##QN(const unsigned* q_pos, int tokens, int heads, int d, int splits_cap,          \
                      const float* part_acc, const float* part_ml, QT* out) {                       \
    const int t = blockIdx.x, hh = blockIdx.y;                                                      \
    const int splits = ((int)q_pos[t] + 1 + KV_SPLIT - 1) / KV_SPLIT;                               \
    const long row = ((long)t * heads + hh) * splits_cap;                                           \
    for (int e = threadIdx.x; e < d; e += THREADS) {                                                \
      float big_m = part_ml[2 * row], big_l = part_ml[2 * row + 1];                                 \
      float o = part_acc[row * d + e];                                                              \
      for (int s = 1; s < splits; s++) {                                                            \
        float acc = part_acc[(row + s) * d + e];                                                    \
        fold(big_m, big_l, &o, 1, part_ml[2 * (row + s)], part_ml[2 * (row + s) + 1], &acc);         \
      }                                                                                             \
      store_##QN(out, ((long)hh * tokens + t) * d + e, o / big_l);                                  \
    }                                                                                               \
  }

PAGED(f32, float, f32, float)
PAGED(f32, float, bf16, u16)
PAGED(f32, float, f16, u16)
PAGED(bf16, u16, f32, float)
PAGED(bf16, u16, bf16, u16)
PAGED(bf16, u16, f16, u16)
PAGED(f16, u16, f32, float)
PAGED(f16, u16, bf16, u16)
PAGED(f16, u16, f16, u16)
FOLD(f32, float)
FOLD(bf16, u16)
FOLD(f16, u16)

// The cache write: row t of `src` (kv_heads, tokens, d) into slot slots[t] of `pool`
// (kv_heads, pool_slots, d). One block per (token, kv head).
#define WRITE(KN, KT)                                                                              \
  extern "C" __global__ void paged_write_##KN(const KT* src, const unsigned* slots, int tokens,   \
                                              int d, long pool_slots, KT* pool) {                  \
    const int t = blockIdx.x, g = blockIdx.y;                                                       \
    const long to = ((long)g * pool_slots + slots[t]) * d, from = ((long)g * tokens + t) * d;       \
    for (int e = threadIdx.x; e < d; e += blockDim.x) pool[to + e] = src[from + e];                 \
  }

WRITE(f32, float)
WRITE(bf16, u16)
WRITE(f16, u16)
