// Attention over the paged KV cache, in the order of `attention/mod.rs`: a query's keys in splits
// of KV_SPLIT positions, each split's (max, sum, weighted values), the splits folded in
// increasing order. Two routes give the same bits:
//   paged_attention_*   one block per (query token, kv head, split) writes the split's partial
//   + paged_fold_*      result; one block per (query token, query head) folds them (decode:
//                       few queries, many blocks per query).
//   paged_prefill_*     one block per (tile of consecutive query tokens, kv head) walks the
//                       splits in order and folds as it goes (prefill: many queries).
// q and out are (heads, tokens, d); the pools (kv_heads, slots, d); tables (seqs, width).

#define KV_SPLIT 256
#define BLOCK 16
#define MAX_GROUP 16
#define MAX_D 256
#define THREADS 128
#define WARPS (THREADS / 32)

// The fold of step 3 (one expression for every entry point, so they agree bit for bit): the
// running (big_m, big_l, o) of splits so far and a split's (m, l, acc) give the factors a and b
// by which each side is scaled.
__device__ __forceinline__ void fold_factors(float big_m, float m, float& m2, float& a, float& b) {
  m2 = fmaxf(big_m, m);
  a = expf(big_m - m2);
  b = expf(m - m2);
}

// Spelled out so that no contraction choice of the compiler can differ between the callers.
__device__ __forceinline__ float fold_value(float o, float a, float acc, float b) {
  return __fmaf_rn(o, a, __fmul_rn(acc, b));
}

__device__ __forceinline__ void fold(float& big_m, float& big_l, float* o, int n, float m, float l,
                                     const float* acc) {
  float m2, a, b;
  fold_factors(big_m, m, m2, a, b);
  big_l = fold_value(big_l, a, l, b);
  for (int i = 0; i < n; i++) o[i] = fold_value(o[i], a, acc[i], b);
  big_m = m2;
}

// Step 2a for one query row, `q` in shared memory: its dot product with the key row whose
// elements lane, lane + 32, ... this lane holds in `kr`, each lane's products summed in order and
// the lanes by a butterfly, so every lane returns the same value. One expression for every entry
// point, like the fold.
__device__ __forceinline__ float row_score(const float* q, const float* kr, int d, int lane) {
  float p = 0.f;
#pragma unroll
  for (int i = 0; i < MAX_D / 32; i++) {
    int e = lane + 32 * i;
    if (e < d) p = fmaf(q[e], kr[i], p);
  }
#pragma unroll
  for (int w = 16; w > 0; w >>= 1) p += __shfl_xor_sync(0xffffffffu, p, w);
  return p;
}

// Step 2b for one row's `nk` scores in shared memory, by one warp: their max (exact in any
// order), each score replaced by exp(score - max), and their sum (lanes in order, then a
// butterfly), the same on every lane.
__device__ __forceinline__ void split_softmax(float* sc, int nk, int lane, float& m, float& l) {
  m = NEG_INF;
  for (int jj = lane; jj < nk; jj += 32) m = fmaxf(m, sc[jj]);
#pragma unroll
  for (int w = 16; w > 0; w >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, w));
  l = 0.f;
  for (int jj = lane; jj < nk; jj += 32) {
    float e = expf(sc[jj] - m);
    sc[jj] = e;
    l += e;
  }
#pragma unroll
  for (int w = 16; w > 0; w >>= 1) l += __shfl_xor_sync(0xffffffffu, l, w);
}

#define PAGED(QN, QT, KN, KT)                                                                      \
  extern "C" __global__ void __launch_bounds__(THREADS)                                              \
      paged_attention_##QN##_##KN(const QT* q, const KT* keys, const KT* vals,                      \
                                  const unsigned* q_seq, const unsigned* q_pos,                     \
                                  const unsigned* tables, int width, int tokens, int heads,         \
                                  int kv_heads, int d, long slots, float scale, int splits_cap,     \
                                  float* part_acc, float* part_ml) {                                \
    const int t = blockIdx.x, g = blockIdx.y, s = blockIdx.z;                                       \
    const int n = (int)q_pos[t] + 1;                                                                \
    if (s * KV_SPLIT >= n) return;                                                                  \
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
    {                                                                                               \
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
          const float p = row_score(qs + r * d, kr, d, lane);                                       \
          if (lane == 0) sc[r * KV_SPLIT + jj] = p * scale;                                         \
        }                                                                                           \
      }                                                                                             \
      __syncthreads();                                                                              \
      /* 2b. Per head: the split's max, exp and sum. */                                             \
      for (int r = warp; r < rep; r += WARPS) {                                                     \
        float m, l;                                                                                 \
        split_softmax(sc + r * KV_SPLIT, nk, lane, m, l);                                           \
        if (lane == 0) {                                                                            \
          ml[2 * r] = m;                                                                            \
          ml[2 * r + 1] = l;                                                                        \
        }                                                                                           \
      }                                                                                             \
      __syncthreads();                                                                              \
      /* 2c. Weighted values, sequential over the split's keys: the partial result. */              \
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
          part_acc[(((long)t * heads + hh) * splits_cap + s) * d + e] = acc[r];                     \
        }                                                                                           \
      }                                                                                             \
      if (threadIdx.x < rep) {                                                                      \
        const long at = ((long)t * heads + g * rep + threadIdx.x) * splits_cap + s;                 \
        part_ml[2 * at] = ml[2 * threadIdx.x];                                                      \
        part_ml[2 * at + 1] = ml[2 * threadIdx.x + 1];                                              \
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

// Prefill: one block per (tile, kv head), a tile being up to a few consecutive positions of one
// sequence (`tiles` holds each tile's first query token and count). The tile's query rows (its
// tokens x the kv head's query heads) share each split's slots, key rows and value elements, read
// once for all of them; every row is reduced with the operations of paged_attention_* in the same
// order (a row simply skips the keys past its own position), so a query's bits do not depend on
// the tile it is in. Dynamic shared memory: slot_of[KV_SPLIT] (long), then per row its query, its
// scores, its running output, and its statistics.
#define PREFILL_THREADS 256
#define PREFILL_WARPS (PREFILL_THREADS / 32)
#define PREFILL_GROUP 8
#define ROW_STATS 7 /* split max, split sum, running max, running sum, factor a, factor b, keys */

#define PREFILL(QN, QT, KN, KT)                                                                    \
  extern "C" __global__ void __launch_bounds__(PREFILL_THREADS)                                      \
      paged_prefill_##QN##_##KN(const QT* q, const KT* keys, const KT* vals,                        \
                                const unsigned* q_seq, const unsigned* q_pos,                       \
                                const unsigned* tables, int width, int tokens, int heads,           \
                                int kv_heads, int d, long slots, float scale,                       \
                                const unsigned* tiles, QT* out) {                                   \
    extern __shared__ long long prefill_smem[];                                                     \
    const int t0 = (int)tiles[2 * blockIdx.x], cnt = (int)tiles[2 * blockIdx.x + 1];                \
    const int g = blockIdx.y, rep = heads / kv_heads, rows = cnt * rep;                             \
    long* slot_of = (long*)prefill_smem;                                                            \
    float* qs = (float*)(slot_of + KV_SPLIT);                                                       \
    float* sc = qs + rows * d;                                                                      \
    float* os = sc + rows * KV_SPLIT;                                                               \
    float* st = os + rows * d;                                                                      \
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;                                     \
    /* Row r is token t0 + r / rep, query head g * rep + r % rep. */                                \
    for (int i = threadIdx.x; i < rows * d; i += PREFILL_THREADS) {                                 \
      int r = i / d, e = i % d;                                                                     \
      qs[i] = load_##QN(q, ((long)(g * rep + r % rep) * tokens + t0 + r / rep) * d + e);            \
    }                                                                                               \
    int n_last = 0;                                                                                 \
    for (int i = 0; i < cnt; i++) n_last = max(n_last, (int)q_pos[t0 + i] + 1);                     \
    const unsigned* table = tables + (long)q_seq[t0] * width;                                       \
    const long base = (long)g * slots * d;                                                          \
    const int splits = (n_last + KV_SPLIT - 1) / KV_SPLIT;                                          \
    for (int s = 0; s < splits; s++) {                                                              \
      const int j0 = s * KV_SPLIT, nk_max = min(KV_SPLIT, n_last - j0);                             \
      for (int jj = threadIdx.x; jj < nk_max; jj += PREFILL_THREADS) {                              \
        int j = j0 + jj;                                                                            \
        slot_of[jj] = (long)table[j / BLOCK] * BLOCK + j % BLOCK;                                   \
      }                                                                                             \
      for (int r = threadIdx.x; r < rows; r += PREFILL_THREADS) {                                   \
        int n = (int)q_pos[t0 + r / rep] + 1;                                                       \
        st[r * ROW_STATS + 6] = __int_as_float(max(0, min(KV_SPLIT, n - j0)));                      \
      }                                                                                             \
      __syncthreads();                                                                              \
      /* Scores (step 2a), each key row read once for every query row. */                          \
      for (int jj = warp; jj < nk_max; jj += PREFILL_WARPS) {                                       \
        const long krow = base + slot_of[jj] * d;                                                   \
        float kr[MAX_D / 32];                                                                       \
        _Pragma("unroll") for (int i = 0; i < MAX_D / 32; i++) {                                    \
          int e = lane + 32 * i;                                                                    \
          kr[i] = e < d ? load_##KN(keys, krow + e) : 0.f;                                          \
        }                                                                                           \
        for (int r = 0; r < rows; r++) {                                                            \
          if (jj >= __float_as_int(st[r * ROW_STATS + 6])) continue;                                \
          const float p = row_score(qs + r * d, kr, d, lane);                                       \
          if (lane == 0) sc[r * KV_SPLIT + jj] = p * scale;                                         \
        }                                                                                           \
      }                                                                                             \
      __syncthreads();                                                                              \
      /* Per row: the split's max, exp and sum (step 2b), then the fold factors (step 3). */        \
      for (int r = warp; r < rows; r += PREFILL_WARPS) {                                            \
        const int nk = __float_as_int(st[r * ROW_STATS + 6]);                                       \
        if (nk == 0) continue;                                                                      \
        float m, l;                                                                                 \
        split_softmax(sc + r * KV_SPLIT, nk, lane, m, l);                                           \
        if (lane == 0) {                                                                            \
          float* x = st + r * ROW_STATS;                                                            \
          if (s == 0) {                                                                             \
            x[2] = m;                                                                               \
            x[3] = l;                                                                               \
          } else {                                                                                  \
            float m2;                                                                               \
            fold_factors(x[2], m, m2, x[4], x[5]);                                                  \
            x[3] = fold_value(x[3], x[4], l, x[5]);                                                 \
            x[2] = m2;                                                                              \
          }                                                                                         \
        }                                                                                           \
      }                                                                                             \
      __syncthreads();                                                                              \
      /* Weighted values (step 2c) for groups of rows per value element, folded in (step 3). */    \
      const int groups = (rows + PREFILL_GROUP - 1) / PREFILL_GROUP;                                \
      for (int item = threadIdx.x; item < d * groups; item += PREFILL_THREADS) {                    \
        const int e = item % d, r0 = (item / d) * PREFILL_GROUP;                                    \
        int nk[PREFILL_GROUP];                                                                      \
        float acc[PREFILL_GROUP];                                                                   \
        _Pragma("unroll") for (int k = 0; k < PREFILL_GROUP; k++) {                                 \
          nk[k] = r0 + k < rows ? __float_as_int(st[(r0 + k) * ROW_STATS + 6]) : 0;                 \
          acc[k] = 0.f;                                                                             \
        }                                                                                           \
        _Pragma("unroll 4") for (int jj = 0; jj < nk_max; jj++) {                                   \
          const float v = load_##KN(vals, base + slot_of[jj] * d + e);                              \
          _Pragma("unroll") for (int k = 0; k < PREFILL_GROUP; k++) if (jj < nk[k]) acc[k] =        \
              fmaf(sc[(r0 + k) * KV_SPLIT + jj], v, acc[k]);                                        \
        }                                                                                           \
        _Pragma("unroll") for (int k = 0; k < PREFILL_GROUP; k++) {                                 \
          if (nk[k] == 0) continue;                                                                 \
          const int r = r0 + k;                                                                     \
          const float* x = st + r * ROW_STATS;                                                      \
          os[r * d + e] = s == 0 ? acc[k] : fold_value(os[r * d + e], x[4], acc[k], x[5]);          \
        }                                                                                           \
      }                                                                                             \
      __syncthreads(); /* slots, scores and factors are rewritten by the next split */             \
    }                                                                                               \
    for (int i = threadIdx.x; i < rows * d; i += PREFILL_THREADS) {                                 \
      int r = i / d, e = i % d;                                                                     \
      store_##QN(out, ((long)(g * rep + r % rep) * tokens + t0 + r / rep) * d + e,                  \
                 os[i] / st[r * ROW_STATS + 3]);                                                    \
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
PREFILL(f32, float, f32, float)
PREFILL(f32, float, bf16, u16)
PREFILL(f32, float, f16, u16)
PREFILL(bf16, u16, f32, float)
PREFILL(bf16, u16, bf16, u16)
PREFILL(bf16, u16, f16, u16)
PREFILL(f16, u16, f32, float)
PREFILL(f16, u16, bf16, u16)
PREFILL(f16, u16, f16, u16)
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
