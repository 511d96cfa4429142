// Attention over the paged KV cache, in the order of `attention/mod.rs`: a query's keys in splits
// of KV_SPLIT positions, each split's (max, sum, weighted values), the splits folded in
// increasing order. Two routes give the same bits:
//   paged_attention_*   one block per (query token, kv head, split) writes the split's partial
//   + paged_fold_*      result; one block per (query token, query head) folds them (decode:
//                       few queries, many blocks per query).
//   paged_prefill_*     one block per (tile of consecutive query tokens, kv head) walks the
//                       splits in order and folds as it goes (prefill: many queries).
// q and out are (tokens, heads, d); the pools (kv_heads, slots, d); tables (seqs, width).

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

// Step 2a for ROW_ILP query rows (rows r0.. of `q` in shared memory, `d` apart; rows past the
// caller's count are computed from whatever the buffer holds and ignored): each row's dot product
// with the key row whose elements lane, lane + 32, ... this lane holds in `kr`, each lane's
// products summed in order and the lanes by a butterfly, so every lane returns the same value.
// The rows' chains are independent, so their shuffles overlap; each row's operations and their
// order are those of a row alone. One expression for every entry point, like the fold.
#define ROW_ILP 8
__device__ __forceinline__ void row_scores(const float* q, const float* kr, int d, int lane,
                                           float (&p)[ROW_ILP]) {
#pragma unroll
  for (int r = 0; r < ROW_ILP; r++) p[r] = 0.f;
#pragma unroll
  for (int i = 0; i < MAX_D / 32; i++) {
    int e = lane + 32 * i;
    if (e < d) {
#pragma unroll
      for (int r = 0; r < ROW_ILP; r++) p[r] = fmaf(q[r * d + e], kr[i], p[r]);
    }
  }
#pragma unroll
  for (int w = 16; w > 0; w >>= 1)
#pragma unroll
    for (int r = 0; r < ROW_ILP; r++) p[r] += __shfl_xor_sync(0xffffffffu, p[r], w);
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

// Key rows a decode warp loads before scoring any of them (latency: one round trip per
// KEYS_AHEAD keys instead of one per key).
#define KEYS_AHEAD 4

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
      qs[i] = load_##QN(q, ((long)t * heads + g * rep + r) * d + e);                                 \
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
      /* 2a. Scores: warp w takes keys w, w + WARPS, ...; lane i the elements i, i + 32, ...    */ \
      /* KEYS_AHEAD keys' rows are loaded before any is scored, so their loads overlap.          */ \
      for (int jb = warp; jb < nk; jb += WARPS * KEYS_AHEAD) {                                      \
        float kr[KEYS_AHEAD][MAX_D / 32];                                                           \
        _Pragma("unroll") for (int a = 0; a < KEYS_AHEAD; a++) {                                    \
          const int jj = jb + a * WARPS;                                                            \
          const long krow = base + (jj < nk ? slot_of[jj] : 0) * d;                                 \
          _Pragma("unroll") for (int i = 0; i < MAX_D / 32; i++) {                                  \
            int e = lane + 32 * i;                                                                  \
            kr[a][i] = e < d && jj < nk ? load_##KN(keys, krow + e) : 0.f;                          \
          }                                                                                         \
        }                                                                                           \
        _Pragma("unroll") for (int a = 0; a < KEYS_AHEAD; a++) {                                    \
          const int jj = jb + a * WARPS;                                                            \
          if (jj >= nk) break;                                                                      \
          for (int r0 = 0; r0 < rep; r0 += ROW_ILP) {                                               \
            float p[ROW_ILP];                                                                       \
            row_scores(qs + r0 * d, kr[a], d, lane, p);                                             \
            _Pragma("unroll") for (int r = 0; r < ROW_ILP; r++) if (lane == 0 && r0 + r < rep)      \
                sc[(r0 + r) * KV_SPLIT + jj] = p[r] * scale;                                        \
          }                                                                                         \
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
        _Pragma("unroll 16") for (int jj = 0; jj < nk; jj++) {                                      \
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

// The fold reads every split's partial result before it needs it: the splits' statistics go to
// shared memory a window at a time, and each thread loads FOLD_AHEAD splits' values of its column
// at once, so a query's fold waits on memory a few times rather than once per split (at 8k
// positions a decode query has 128 chunks). The arithmetic is `fold`'s, in split order.
#define FOLD_WINDOW 128
#define FOLD_AHEAD 8
#define FOLD(QN, QT)                                                                               \
  extern "C" __global__ void __launch_bounds__(THREADS)                                              \
      paged_fold_##QN(const unsigned* q_pos, int tokens, int heads, int d, int splits_cap,          \
                      int span, const float* part_acc, const float* part_ml, QT* out) {             \
    const int t = blockIdx.x, hh = blockIdx.y;                                                      \
    const int splits = ((int)q_pos[t] + span) / span;                                               \
    const long row = ((long)t * heads + hh) * splits_cap;                                           \
    __shared__ float ml_s[2 * FOLD_WINDOW];                                                         \
    float big_m[MAX_D / THREADS], big_l[MAX_D / THREADS], o[MAX_D / THREADS];                       \
    for (int w0 = 0; w0 < splits; w0 += FOLD_WINDOW) {                                              \
      const int nw = min(FOLD_WINDOW, splits - w0);                                                 \
      __syncthreads(); /* the previous window's statistics are no longer read */                    \
      for (int i = threadIdx.x; i < 2 * nw; i += THREADS) ml_s[i] = part_ml[2 * (row + w0) + i];    \
      __syncthreads();                                                                              \
      _Pragma("unroll") for (int c = 0; c < MAX_D / THREADS; c++) {                                 \
        const int e = threadIdx.x + c * THREADS;                                                    \
        if (e >= d) break;                                                                          \
        for (int s0 = 0; s0 < nw; s0 += FOLD_AHEAD) {                                               \
          float acc[FOLD_AHEAD];                                                                    \
          _Pragma("unroll") for (int a = 0; a < FOLD_AHEAD; a++) acc[a] =                           \
              s0 + a < nw ? part_acc[(row + w0 + s0 + a) * d + e] : 0.f;                            \
          _Pragma("unroll") for (int a = 0; a < FOLD_AHEAD; a++) {                                  \
            const int sw = s0 + a;                                                                  \
            if (sw >= nw) break;                                                                    \
            if (w0 + sw == 0) {                                                                     \
              big_m[c] = ml_s[0];                                                                   \
              big_l[c] = ml_s[1];                                                                   \
              o[c] = acc[a];                                                                        \
            } else {                                                                                \
              fold(big_m[c], big_l[c], &o[c], 1, ml_s[2 * sw], ml_s[2 * sw + 1], &acc[a]);          \
            }                                                                                       \
          }                                                                                         \
        }                                                                                           \
      }                                                                                             \
    }                                                                                               \
    _Pragma("unroll") for (int c = 0; c < MAX_D / THREADS; c++) {                                   \
      const int e = threadIdx.x + c * THREADS;                                                      \
      if (e >= d) break;                                                                            \
      store_##QN(out, ((long)t * heads + hh) * d + e, o[c] / big_l[c]);                              \
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
      qs[i] = load_##QN(q, ((long)(t0 + r / rep) * heads + g * rep + r % rep) * d + e);              \
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
        for (int r0 = 0; r0 < rows; r0 += ROW_ILP) {                                                \
          float p[ROW_ILP];                                                                         \
          row_scores(qs + r0 * d, kr, d, lane, p);                                                  \
          _Pragma("unroll") for (int r = 0; r < ROW_ILP; r++) if (lane == 0 && r0 + r < rows &&     \
              jj < __float_as_int(st[(r0 + r) * ROW_STATS + 6]))                                    \
              sc[(r0 + r) * KV_SPLIT + jj] = p[r] * scale;                                          \
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
      store_##QN(out, ((long)(t0 + r / rep) * heads + g * rep + r % rep) * d + e,                    \
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

// ---------------------------------------------------------------------------------------------
// The tensor-core route: q and the cache in one 16-bit type (bf16 or f16), head_dim a multiple
// of 32 up to TC_MAX_D. Its own order (attention/mod.rs, "On tensor cores"), the same in both of
// its entry points:
//   - a query's keys are cut into chunks of TC_CHUNK positions; each chunk gives (m, l, acc):
//       s_j = mma(q, k_j) * scale (k16 steps over d in order, f32 accumulation), masked past the
//       query's position; m the max; e_j = exp(s_j - m); l the sum of e_j (each lane of a quad
//       its 16 keys in order, then the quad as a butterfly); acc = mma(e rounded to the cache's
//       type, v) over the chunk's four k16 steps of keys in order, from 0;
//   - the chunks are folded in order from chunk 0 with fold_factors / fold_value, and the result
//     divided by the folded l once.
// paged_tc_split_* computes one chunk per block and writes it as a partial result
// (paged_fold_* folds them, span TC_CHUNK); paged_tc_prefill_* gives a block 4 warps of 16 query
// rows that share each chunk's keys and values in shared memory, and folds in registers. A row's
// values depend only on its own q and keys: mma computes each output element from its own row
// and column, and the masked keys enter PV as exact zeros.
#define TC_CHUNK 64
#define TC_WARPS 4
#define TC_MAX_D 128
#define TC_PAD 8 /* shared rows 16 bytes apart in the banks: conflict-free ldmatrix */
#define TC_STRIDE (TC_MAX_D + TC_PAD)

template <bool F16>
__device__ __forceinline__ void tc_mma(float (&d)[4], const unsigned (&a)[4], unsigned b0,
                                       unsigned b1) {
  if (F16)
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ unsigned tc_smem(const void* p) {
  unsigned a;
  asm volatile("{ .reg .u64 x; cvta.to.shared.u64 x, %1; cvt.u32.u64 %0, x; }" : "=r"(a) : "l"(p));
  return a;
}

// Four 8x8 matrices of 16-bit values from shared memory (lane i gives the address of row i % 8
// of matrix i / 8); TRANS hands each lane a column pair instead of a row pair.
template <bool TRANS>
__device__ __forceinline__ void tc_ldsm4(unsigned (&r)[4], const u16* p) {
  if (TRANS)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(tc_smem(p)));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(tc_smem(p)));
}

// 16 bytes global -> shared, asynchronously; zeros when !valid (`src` must still be a valid
// address).
__device__ __forceinline__ void tc_cp16(u16* dst, const u16* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(tc_smem(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}

// Two f32 values rounded to the 16-bit type and packed low, high.
template <bool F16>
__device__ __forceinline__ unsigned tc_pack(float lo, float hi) {
  return F16 ? ((unsigned)to_f16(lo) | ((unsigned)to_f16(hi) << 16))
             : ((unsigned)to_bf16(lo) | ((unsigned)to_bf16(hi) << 16));
}

// Starts copying the keys and values of chunk positions [j0, j0 + TC_CHUNK) of one sequence
// (block table `table`) and kv head into `ks` / `vs` (TC_STRIDE elements a row), zeros at and past
// position `n`; `nthreads` threads with ids `id` share the work. The caller waits.
__device__ __forceinline__ void tc_stage(u16* ks, u16* vs, const u16* keys, const u16* vals,
                                         const unsigned* table, long base, int d, int j0, int n,
                                         int id, int nthreads) {
  const int pieces = d / 8;
  for (int i = id; i < TC_CHUNK * pieces; i += nthreads) {
    const int jj = i / pieces, c = (i % pieces) * 8, j = j0 + jj;
    const bool ok = j < n;
    const long at = ok ? base + ((long)table[j / BLOCK] * BLOCK + j % BLOCK) * d + c : 0;
    tc_cp16(ks + jj * TC_STRIDE + c, keys + at, ok);
    tc_cp16(vs + jj * TC_STRIDE + c, vals + at, ok);
  }
  asm volatile("cp.async.commit_group;");
}

// q's A fragments for the warp's rows: qf[s] is k16 step s of rows gid and gid + 8 (`row_lo`,
// `row_hi` point at the rows' first element, or are null for rows past the tile).
template <int NS>
__device__ __forceinline__ void tc_load_q(unsigned (&qf)[NS][4], const u16* row_lo,
                                          const u16* row_hi, int d, int lane) {
  const int t = lane & 3;
#pragma unroll
  for (int s = 0; s < NS; s++) {
    const int c = 16 * s + 2 * t;
    const bool in = c < d;
    qf[s][0] = row_lo && in ? *(const unsigned*)(row_lo + c) : 0u;
    qf[s][1] = row_hi && in ? *(const unsigned*)(row_hi + c) : 0u;
    qf[s][2] = row_lo && in ? *(const unsigned*)(row_lo + c + 8) : 0u;
    qf[s][3] = row_hi && in ? *(const unsigned*)(row_hi + c + 8) : 0u;
  }
}

// One chunk for the warp's 16 query rows (lane: rows gid and gid + 8, at positions p[0], p[1],
// -1 for no row): the chunk's (m, l, acc) of the order above, from the staged keys and values.
// acc[i] holds columns 8i + 2t, 8i + 2t + 1 of row gid (0, 1) and gid + 8 (2, 3), for the column
// tiles i in [i_lo, i_hi) (even bounds; the others are left at 0): each tile is its own sums, so
// warps that share a chunk's scores may take its columns in parts. A row with no key in the chunk
// gets m = -inf, l = 0, acc = 0.
template <int NS, bool F16>
__device__ __forceinline__ void tc_chunk(const unsigned (&qf)[NS][4], const u16* ks,
                                         const u16* vs, int d, int j0, const int (&p)[2],
                                         float scale, int lane, float (&m)[2], float (&l)[2],
                                         float (&acc)[2 * NS][4], int i_lo = 0,
                                         int i_hi = 2 * NS) {
  const int t = lane & 3, r8 = lane & 7, mat = lane >> 3;
  float s[TC_CHUNK / 8][4];
  // Scores: key tile kt (8 keys) x k16 steps in order; ldmatrix gives two steps' B fragments.
#pragma unroll
  for (int kt = 0; kt < TC_CHUNK / 8; kt++) {
    s[kt][0] = s[kt][1] = s[kt][2] = s[kt][3] = 0.f;
#pragma unroll
    for (int st = 0; st < NS; st += 2) {
      if (16 * st >= d) break;
      unsigned b[4];
      tc_ldsm4<false>(b, ks + (8 * kt + r8) * TC_STRIDE + 16 * st + 8 * mat);
      tc_mma<F16>(s[kt], qf[st], b[0], b[1]);
      tc_mma<F16>(s[kt], qf[st + 1], b[2], b[3]);
    }
  }
  // Scale, mask, and each row's max (a quad holds a row's 64 keys).
#pragma unroll
  for (int h = 0; h < 2; h++) {
    float mx = NEG_INF;
#pragma unroll
    for (int kt = 0; kt < TC_CHUNK / 8; kt++) {
#pragma unroll
      for (int e = 0; e < 2; e++) {
        const int j = j0 + 8 * kt + 2 * t + e;
        float v = s[kt][2 * h + e] * scale;
        if (j > p[h]) v = NEG_INF;
        s[kt][2 * h + e] = v;
        mx = fmaxf(mx, v);
      }
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    float sum = 0.f;
#pragma unroll
    for (int kt = 0; kt < TC_CHUNK / 8; kt++) {
#pragma unroll
      for (int e = 0; e < 2; e++) {
        const float x = s[kt][2 * h + e];
        const float ex = x == NEG_INF ? 0.f : expf(x - mx);
        s[kt][2 * h + e] = ex;
        sum += ex;
      }
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    m[h] = mx;
    l[h] = sum;
  }
  // Weighted values: k16 steps of keys in order; ldmatrix.trans gives two column tiles' B.
#pragma unroll
  for (int i = 0; i < 2 * NS; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
#pragma unroll
  for (int ks16 = 0; ks16 < TC_CHUNK / 16; ks16++) {
    const unsigned a[4] = {
        tc_pack<F16>(s[2 * ks16][0], s[2 * ks16][1]), tc_pack<F16>(s[2 * ks16][2], s[2 * ks16][3]),
        tc_pack<F16>(s[2 * ks16 + 1][0], s[2 * ks16 + 1][1]),
        tc_pack<F16>(s[2 * ks16 + 1][2], s[2 * ks16 + 1][3])};
#pragma unroll
    for (int i = 0; i < 2 * NS; i += 2) {
      if (8 * i >= d) break;
      if (i < i_lo || i >= i_hi) continue;
      unsigned b[4];
      tc_ldsm4<true>(b, vs + (16 * ks16 + r8 + 8 * (mat & 1)) * TC_STRIDE + 8 * i + 8 * (mat >> 1));
      tc_mma<F16>(acc[i], a, b[0], b[1]);
      tc_mma<F16>(acc[i + 1], a, b[2], b[3]);
    }
  }
}

// Decode: one block of TC_SPLIT_WARPS warps per (query token, kv head, chunk), the partial result
// of the chunk for the token's query heads of the kv head (rows 0..rep-1 of a warp's 16). The
// block stages the chunk together; every warp computes the chunk's scores and softmax (the same
// operations on the same values, so the same bits in each) and the weighted values of its share
// of the columns. One warp alone was bound by its own copy and mma issue: a decode step at batch
// 1 runs only (kv heads x chunks) of these blocks.
#define TC_SPLIT_WARPS 4
template <bool F16>
__device__ __forceinline__ void tc_split(const u16* q, const u16* keys, const u16* vals,
                                         const unsigned* q_seq, const unsigned* q_pos,
                                         const unsigned* tables, int width, int tokens, int heads,
                                         int kv_heads, int d, long slots, float scale,
                                         int chunks_cap, float* part_acc, float* part_ml) {
  constexpr int NS = TC_MAX_D / 16;
  constexpr int TILES = 2 * NS / TC_SPLIT_WARPS; /* column tiles of 8 per warp */
  const int t = blockIdx.x, g = blockIdx.y, c = blockIdx.z;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int n = (int)q_pos[t] + 1, j0 = c * TC_CHUNK;
  if (j0 >= n) return;
  const int rep = heads / kv_heads, gid = lane >> 2, tq = lane & 3;
  __shared__ __align__(16) u16 ks[TC_CHUNK * TC_STRIDE];
  __shared__ __align__(16) u16 vs[TC_CHUNK * TC_STRIDE];
  tc_stage(ks, vs, keys, vals, tables + (long)q_seq[t] * width, (long)g * slots * d, d, j0, n,
           threadIdx.x, 32 * TC_SPLIT_WARPS);
  unsigned qf[NS][4];
  const u16* lo = gid < rep ? q + ((long)t * heads + g * rep + gid) * d : nullptr;
  const u16* hi = gid + 8 < rep ? q + ((long)t * heads + g * rep + gid + 8) * d : nullptr;
  tc_load_q<NS>(qf, lo, hi, d, lane);
  const int p[2] = {lo ? n - 1 : -1, hi ? n - 1 : -1};
  asm volatile("cp.async.wait_group 0;");
  __syncthreads();
  float m[2], l[2], acc[2 * NS][4];
  const int i_lo = warp * TILES, i_hi = i_lo + TILES;
  tc_chunk<NS, F16>(qf, ks, vs, d, j0, p, scale, lane, m, l, acc, i_lo, i_hi);
#pragma unroll
  for (int h = 0; h < 2; h++) {
    const int r = gid + 8 * h;
    if (r >= rep) continue;
    const long at = ((long)t * heads + g * rep + r) * chunks_cap + c;
#pragma unroll
    for (int i = 0; i < 2 * NS; i++) {
      const int col = 8 * i + 2 * tq;
      if (col >= d) break;
      if (i < i_lo || i >= i_hi) continue;
      part_acc[at * d + col] = acc[i][2 * h];
      part_acc[at * d + col + 1] = acc[i][2 * h + 1];
    }
    if (warp == 0 && tq == 0) {
      part_ml[2 * at] = m[h];
      part_ml[2 * at + 1] = l[h];
    }
  }
}

// Prefill: one block per (tile, kv head); the tile's rows (up to TC_WARPS x 16: its tokens x the
// kv head's query heads, row r = token t0 + r / rep, head r % rep) share each chunk's keys and
// values, staged two chunks deep; warp w takes rows 16w..16w+15 and folds its rows' chunks as
// paged_fold_* does.
template <bool F16>
__device__ __forceinline__ void tc_prefill(const u16* q, const u16* keys, const u16* vals,
                                           const unsigned* q_seq, const unsigned* q_pos,
                                           const unsigned* tables, int width, int tokens,
                                           int heads, int kv_heads, int d, long slots, float scale,
                                           const unsigned* tiles, u16* out) {
  constexpr int NS = TC_MAX_D / 16;
  // Two buffers of (keys, values): the next chunk arrives while this one is computed.
  extern __shared__ __align__(16) u16 tc_smem_rows[];
  const int t0 = (int)tiles[2 * blockIdx.x], cnt = (int)tiles[2 * blockIdx.x + 1];
  const int g = blockIdx.y, rep = heads / kv_heads, rows = cnt * rep;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane >> 2, tq = lane & 3;
  int p[2];
  const u16* qrow[2];
#pragma unroll
  for (int h = 0; h < 2; h++) {
    const int r = 16 * warp + gid + 8 * h;
    if (r < rows) {
      const int tok = t0 + r / rep;
      p[h] = (int)q_pos[tok];
      qrow[h] = q + ((long)tok * heads + g * rep + r % rep) * d;
    } else {
      p[h] = -1;
      qrow[h] = nullptr;
    }
  }
  unsigned qf[NS][4];
  tc_load_q<NS>(qf, qrow[0], qrow[1], d, lane);
  int n_last = 0;
  for (int i = 0; i < cnt; i++) n_last = max(n_last, (int)q_pos[t0 + i] + 1);
  const int p_warp = max(__reduce_max_sync(0xffffffffu, max(p[0], p[1])), -1);
  const unsigned* table = tables + (long)q_seq[t0] * width;
  const long base = (long)g * slots * d;
  float big_m[2] = {NEG_INF, NEG_INF}, big_l[2] = {0.f, 0.f}, o[2 * NS][4];
#pragma unroll
  for (int i = 0; i < 2 * NS; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  const int buf = 2 * TC_CHUNK * TC_STRIDE;
  tc_stage(tc_smem_rows, tc_smem_rows + TC_CHUNK * TC_STRIDE, keys, vals, table, base, d, 0,
           n_last, threadIdx.x, 32 * TC_WARPS);
  for (int j0 = 0, ci = 0; j0 < n_last; j0 += TC_CHUNK, ci++) {
    __syncthreads(); /* the buffer the next chunk goes to is no longer read */
    if (j0 + TC_CHUNK < n_last) {
      u16* next = tc_smem_rows + ((ci + 1) & 1) * buf;
      tc_stage(next, next + TC_CHUNK * TC_STRIDE, keys, vals, table, base, d, j0 + TC_CHUNK,
               n_last, threadIdx.x, 32 * TC_WARPS);
      asm volatile("cp.async.wait_group 1;");
    } else {
      asm volatile("cp.async.wait_group 0;");
    }
    __syncthreads(); /* this chunk's keys and values are in shared memory */
    if (j0 > p_warp) continue; /* no row of this warp sees the chunk */
    const u16* ks = tc_smem_rows + (ci & 1) * buf;
    const u16* vs = ks + TC_CHUNK * TC_STRIDE;
    float m[2], l[2], acc[2 * NS][4];
    tc_chunk<NS, F16>(qf, ks, vs, d, j0, p, scale, lane, m, l, acc);
#pragma unroll
    for (int h = 0; h < 2; h++) {
      if (j0 > p[h]) continue;
      if (j0 == 0) {
        big_m[h] = m[h];
        big_l[h] = l[h];
#pragma unroll
        for (int i = 0; i < 2 * NS; i++) {
          o[i][2 * h] = acc[i][2 * h];
          o[i][2 * h + 1] = acc[i][2 * h + 1];
        }
      } else {
        float m2, a, b;
        fold_factors(big_m[h], m[h], m2, a, b);
        big_l[h] = fold_value(big_l[h], a, l[h], b);
#pragma unroll
        for (int i = 0; i < 2 * NS; i++) {
          o[i][2 * h] = fold_value(o[i][2 * h], a, acc[i][2 * h], b);
          o[i][2 * h + 1] = fold_value(o[i][2 * h + 1], a, acc[i][2 * h + 1], b);
        }
        big_m[h] = m2;
      }
    }
  }
#pragma unroll
  for (int h = 0; h < 2; h++) {
    if (!qrow[h]) continue;
    const int r = 16 * warp + gid + 8 * h;
    const long row = ((long)(t0 + r / rep) * heads + g * rep + r % rep) * d;
#pragma unroll
    for (int i = 0; i < 2 * NS; i++) {
      const int col = 8 * i + 2 * tq;
      if (col >= d) break;
      if (F16) {
        store_f16(out, row + col, o[i][2 * h] / big_l[h]);
        store_f16(out, row + col + 1, o[i][2 * h + 1] / big_l[h]);
      } else {
        store_bf16(out, row + col, o[i][2 * h] / big_l[h]);
        store_bf16(out, row + col + 1, o[i][2 * h + 1] / big_l[h]);
      }
    }
  }
}

#define TC(N, F16)                                                                                 \
  extern "C" __global__ void __launch_bounds__(32 * TC_SPLIT_WARPS) paged_tc_split_##N(                              \
      const u16* q, const u16* keys, const u16* vals, const unsigned* q_seq,                        \
      const unsigned* q_pos, const unsigned* tables, int width, int tokens, int heads,              \
      int kv_heads, int d, long slots, float scale, int chunks_cap, float* part_acc,                \
      float* part_ml) {                                                                             \
    tc_split<F16>(q, keys, vals, q_seq, q_pos, tables, width, tokens, heads, kv_heads, d, slots,    \
                  scale, chunks_cap, part_acc, part_ml);                                            \
  }                                                                                                 \
  extern "C" __global__ void __launch_bounds__(32 * TC_WARPS) paged_tc_prefill_##N(                 \
      const u16* q, const u16* keys, const u16* vals, const unsigned* q_seq,                        \
      const unsigned* q_pos, const unsigned* tables, int width, int tokens, int heads,              \
      int kv_heads, int d, long slots, float scale, const unsigned* tiles, u16* out) {              \
    tc_prefill<F16>(q, keys, vals, q_seq, q_pos, tables, width, tokens, heads, kv_heads, d,    \
                    slots, scale, tiles, out);                                                      \
  }

TC(bf16, false)
TC(f16, true)

// The cache write: row t of `src` (tokens, kv_heads, d) into slot slots[t] of `pool`
// (kv_heads, pool_slots, d). One block per (token, kv head).
#define WRITE(KN, KT)                                                                              \
  extern "C" __global__ void paged_write_##KN(const KT* src, const unsigned* slots, int tokens,   \
                                              int d, long pool_slots, KT* pool) {                  \
    const int t = blockIdx.x, g = blockIdx.y;                                                       \
    /* A padding row's slot (0xffffffff), like any slot outside the pool, is written nowhere. */    \
    if (slots[t] >= pool_slots) return;                                                             \
    const long to = ((long)g * pool_slots + slots[t]) * d, from = ((long)t * gridDim.y + g) * d;    \
    for (int e = threadIdx.x; e < d; e += blockDim.x) pool[to + e] = src[from + e];                 \
  }

WRITE(f32, float)
WRITE(bf16, u16)
WRITE(f16, u16)
