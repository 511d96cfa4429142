// The tensor-core linear of reprolm: y = x · Wᵀ (+ b) with W in a 16-bit type, on mma.sync
// (sm_80 and later). Two operand kinds:
//   - x in W's type (bf16 · bf16 or f16 · f16), one product per element;
//   - x in f32 against bf16 W (LayerCast): x = hi + mid + lo exactly, each part a bf16, so every
//     product of a part with a (bf16) weight is exact in f32 and the three tensor-core products
//     sum to x·W with f32 accumulation and no f32 copy of W.
//
// THE ORDER (the numerical contract; every kernel here follows it, whatever the row count, the
// tile a row falls in or the number of rows in the launch):
//   1. K is cut into stretches of STRETCH = 64 elements (the last one zero-padded).
//   2. A stretch's sum starts from an f32 accumulator of 0 and runs the stretch's four k16 steps in
//      order through the tensor cores; within a step the parts go hi, mid, lo. Inside a 32-element
//      chunk, lane t of a quad holds elements 8t..8t+7; step 0 takes 8t..8t+3 and step 1
//      8t+4..8t+7 (the same permutation of k for x and W, so the product is unchanged).
//   3. Stretches are folded in f32 (round to nearest) into `groups` contiguous groups of `spg`
//      stretches each (the last may be shorter): group = ((s0 + s1) + s2) + ...
//   4. The groups are folded in order into the total, starting from 0; then the bias (widened to
//      f32) is added and the total rounded once to the output type.
// Tensor-core accumulation inside a stretch is the hardware's; promoting every 64 elements into
// f32 registers bounds its error (the DeepSeek-V3 recipe). `spg` and `groups` are chosen by the
// host from (N, K) alone, so the order never depends on the number of rows.
//
// Kernels:
//   - *_split<NT>: rows <= 8·NT (NT = 1, 2, 4), decode. A block is 8 warps on 128 weight rows and
//     one group; each warp streams its 16 weight rows from global memory, two stretches ahead,
//     against x copied asynchronously into a shared ring; the last block of a column folds the
//     groups.
//   - *_tiled: any row count. A block is 8 warps on 128 weight rows x 64 rows of x, staged in
//     shared memory one stretch at a time; each warp owns 32 x 32 outputs and runs every group
//     itself.

#define STRETCH 64

__device__ __forceinline__ void mma_bf16(float* d, unsigned a0, unsigned a1, unsigned a2,
                                         unsigned a3, unsigned b0, unsigned b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void mma_f16(float* d, unsigned a0, unsigned a1, unsigned a2,
                                        unsigned a3, unsigned b0, unsigned b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Eight 16-bit values of a row, or zeros past the row's end (k % 8 == 0 is required, so a group
// of eight is either inside K or wholly past it) or past the last row.
__device__ __forceinline__ uint4 load8_u16(const u16* p, long row, int rows, int k, int col) {
  if (row >= rows || col >= k) {
    uint4 z;
    z.x = z.y = z.z = z.w = 0u;
    return z;
  }
  return *reinterpret_cast<const uint4*>(p + row * (long)k + col);
}

__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
  return (unsigned)to_bf16(lo) | ((unsigned)to_bf16(hi) << 16);
}

// The three bf16 parts of two f32 values a, b as packed operand words: s[0] = (hi(a), hi(b)),
// s[1] = mid, s[2] = lo, with hi = bf16(x), mid = bf16(x - hi), lo = bf16(x - hi - mid); both
// differences are exact in f32, and hi + mid + lo == x. Every kernel splits through this one
// function, so the parts (and with them the products) are the same bits in each.
__device__ __forceinline__ void split_pair(float a, float b, unsigned (&s)[3]) {
  float h0 = round_bf16(a), h1 = round_bf16(b);
  float r0 = a - h0, r1 = b - h1;
  float m0 = round_bf16(r0), m1 = round_bf16(r1);
  s[0] = pack_bf16(h0, h1);
  s[1] = pack_bf16(m0, m1);
  s[2] = pack_bf16(r0 - m0, r1 - m1);
}

// One row's eight values of x as the operand words of the parts: w[p][0..4] = pairs (0,1) (2,3)
// (4,5) (6,7) of part p (split_pair for f32 x).
template <int PARTS, bool XF32>
__device__ __forceinline__ void load_x8(const void* x, long row, int rows, int k, int col,
                                        unsigned (&w)[PARTS][4]) {
  if (!XF32) {
    uint4 v = load8_u16((const u16*)x, row, rows, k, col);
    w[0][0] = v.x; w[0][1] = v.y; w[0][2] = v.z; w[0][3] = v.w;
    return;
  }
  float f[8];
  if (row >= rows || col >= k) {
#pragma unroll
    for (int i = 0; i < 8; i++) f[i] = 0.f;
  } else {
    const float4* p = reinterpret_cast<const float4*>((const float*)x + row * (long)k + col);
    float4 a = p[0], b = p[1];
    f[0] = a.x; f[1] = a.y; f[2] = a.z; f[3] = a.w; f[4] = b.x; f[5] = b.y; f[6] = b.z; f[7] = b.w;
  }
#pragma unroll
  for (int i = 0; i < 4; i++) {
    unsigned parts[3];
    split_pair(f[2 * i], f[2 * i + 1], parts);
#pragma unroll
    for (int p = 0; p < PARTS; p++) w[p][i] = parts[p];
  }
}

// One 32-element chunk of a stretch for one 16 x 8 output tile: wa / wb are weight rows gid and
// gid + 8, xv[p] row gid of x's part p, each holding elements 8t..8t+7 of the chunk. Two k16
// steps, the parts in order hi, mid, lo within each: the one mma sequence of every kernel here.
template <int PARTS, bool F16>
__device__ __forceinline__ void chunk_mma(float (&part)[4], uint4 wa, uint4 wb,
                                          const uint4 (&xv)[PARTS]) {
#pragma unroll
  for (int step = 0; step < 2; step++) {
    unsigned a0 = step ? wa.z : wa.x, a1 = step ? wb.z : wb.x;
    unsigned a2 = step ? wa.w : wa.y, a3 = step ? wb.w : wb.y;
#pragma unroll
    for (int p = 0; p < PARTS; p++) {
      unsigned b0 = step ? xv[p].z : xv[p].x, b1 = step ? xv[p].w : xv[p].y;
      if (F16) mma_f16(part, a0, a1, a2, a3, b0, b1);
      else mma_bf16(part, a0, a1, a2, a3, b0, b1);
    }
  }
}

// Shared rows of x (and W in the tiled kernel) are 8 chunks of 16 bytes, chunk j of row r stored
// at j ^ 4 (r & 1), which makes the fragment reads (two rows of four chunks per quarter-warp)
// conflict-free.
__device__ __forceinline__ int swz(int row, int chunk) { return row * 8 + (chunk ^ ((row & 1) << 2)); }

// Writes one accumulator fragment: element e of tile (i, j) is weight row n0 + 16i + gid + 8(e/2),
// row of x m0 + 8j + 2t + (e%2). OUT: 0 f32, 1 bf16, 2 f16; the bias is in W's 16-bit type.
template <int OUT, bool F16>
__device__ __forceinline__ void store_out(void* y, const u16* bias, int m, int n, int row, int c,
                                          float v) {
  if (row >= m || c >= n) return;
  if (bias) v = __fadd_rn(v, F16 ? load_f16(bias, c) : load_bf16(bias, c));
  long at = (long)row * n + c;
  if (OUT == 0) ((float*)y)[at] = v;
  else if (OUT == 1) ((u16*)y)[at] = to_bf16(v);
  else ((u16*)y)[at] = to_f16(v);
}

// The decode kernel, for up to 8·NT rows of x (NT = 1, 2, 4). A block is 8 warps on 128 weight
// rows and ONE group of stretches (blockIdx.y), so that narrow weights still spread over every
// SM. Each warp streams its own 16 weight rows straight from global memory into registers, two
// stretches ahead of its tensor cores; x arrives XSTAGES - 1 stretches ahead by cp.async into a
// shared ring, once for all 8 warps (f32 x is split into its parts once per stretch). With one group the block writes y itself; else it
// writes its group sum to `partial` and the block that arrives last for its 128 weight rows
// folds the groups in order (0, 1, ...) into y: the same additions, in the same order, as the
// tiled kernel's.
#define SPLIT_WARPS 8
#define SPLIT_N (16 * SPLIT_WARPS)

// Asynchronous 16-byte copy global -> shared (zero-filled when !valid; `src` must still point
// into the buffer), and the waits of the copy groups.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  unsigned d;
  asm volatile("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(d) : "l"(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N)); }

// Stretches of x in flight in the decode kernel's shared ring.
#define XSTAGES 3

template <int NT, int PARTS, bool XF32, bool F16, int OUT>
__device__ __forceinline__ void linear_split(const void* x, const u16* w, const u16* bias, void* y,
                                             float* partial, unsigned* arrivals, int m, int n,
                                             int k, int spg, int groups) {
  constexpr int XROWS = 8 * NT;
  constexpr int XF4 = XROWS * (STRETCH / 4);  // float4 of f32 x per stretch
  constexpr int XQ = (XF4 + 255) / 256;
  // f32 x: a ring of raw stretches, split once per stretch into `sx` for all warps. 16-bit x:
  // the ring holds the operand rows themselves.
  __shared__ float4 raw[XF32 ? XSTAGES : 1][XF32 ? XF4 : 1];
  __shared__ uint4 sx[XF32 ? 1 : XSTAGES][PARTS][XROWS * 8];
  __shared__ bool last;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gid = lane >> 2, t = lane & 3;
  const int n0 = blockIdx.x * SPLIT_N + 16 * warp, g = blockIdx.y;
  const int stretches = (k + STRETCH - 1) / STRETCH;
  const int s0 = g * spg, s1 = s0 + spg < stretches ? s0 + spg : stretches;

  // Starts the copy of stretch s of x into ring slot `slot`.
  auto copy_x = [&](int s, int slot) {
    if (XF32) {
#pragma unroll
      for (int q = 0; q < XQ; q++) {
        int id = tid + 256 * q, row = id >> 4, col = s * STRETCH + (id & 15) * 4;
        if (id < XF4) {
          bool ok = row < m && col < k;
          cp_async16(&raw[slot][id], (const float*)x + (ok ? (long)row * k + col : 0), ok);
        }
      }
    } else if (tid < XROWS * 8) {
      int row = tid >> 3, col = s * STRETCH + (tid & 7) * 8;
      bool ok = row < m && col < k;
      cp_async16(&sx[slot][0][swz(row, tid & 7)], (const u16*)x + (ok ? (long)row * k + col : 0),
                 ok);
    }
  };
  // f32 x: splits ring slot `slot` into the parts' operand rows.
  auto split_x = [&](int slot) {
#pragma unroll
    for (int q = 0; q < XQ; q++) {
      int id = tid + 256 * q, row = id >> 4, f4 = id & 15;
      if (id >= XF4) continue;
      float4 v = raw[slot][id];
      unsigned parts[2][3];
      split_pair(v.x, v.y, parts[0]);
      split_pair(v.z, v.w, parts[1]);
#pragma unroll
      for (int p = 0; p < PARTS; p++) {
        unsigned* d = reinterpret_cast<unsigned*>(&sx[0][p][swz(row, f4 >> 1)]) + 2 * (f4 & 1);
        d[0] = parts[0][p];
        d[1] = parts[1][p];
      }
    }
  };
  // This warp's weight words of one stretch: [chunk][row gid, row gid + 8].
  auto fetch_w = [&](int s, uint4 (&r)[2][2]) {
#pragma unroll
    for (int c = 0; c < STRETCH / 32; c++) {
      int col = s * STRETCH + c * 32 + 8 * t;
      r[c][0] = load8_u16(w, n0 + gid, n, k, col);
      r[c][1] = load8_u16(w, n0 + gid + 8, n, k, col);
    }
  };

  float acc[NT][4];
#pragma unroll
  for (int j = 0; j < NT; j++)
#pragma unroll
    for (int e = 0; e < 4; e++) acc[j][e] = 0.f;
  uint4 w0[2][2], w1[2][2], w2[2][2];
  fetch_w(s0, w0);
  if (s0 + 1 < s1) fetch_w(s0 + 1, w1);
#pragma unroll
  for (int i = 0; i < XSTAGES - 1; i++) {
    if (s0 + i < s1) copy_x(s0 + i, i);
    cp_async_commit();
  }
  for (int s = s0; s < s1; s++) {
    const int slot = (s - s0) % XSTAGES;
    // Stretch s has landed (this thread's copies; the barrier makes everyone's visible), and
    // every warp is done with the slot the next copy refills.
    cp_async_wait<XSTAGES - 2>();
    __syncthreads();
    if (s + XSTAGES - 1 < s1) copy_x(s + XSTAGES - 1, (s - s0 + XSTAGES - 1) % XSTAGES);
    cp_async_commit();
    if (XF32) {
      split_x(slot);
      __syncthreads();
    }
    if (s + 2 < s1) fetch_w(s + 2, w2);
    const int b = XF32 ? 0 : slot;
    float part[NT][4];
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) part[j][e] = 0.f;
#pragma unroll
    for (int c = 0; c < STRETCH / 32; c++) {
#pragma unroll
      for (int j = 0; j < NT; j++) {
        uint4 xv[PARTS];
#pragma unroll
        for (int p = 0; p < PARTS; p++) xv[p] = sx[b][p][swz(8 * j + gid, 4 * c + t)];
        chunk_mma<PARTS, F16>(part[j], w0[c][0], w0[c][1], xv);
      }
    }
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) acc[j][e] = __fadd_rn(acc[j][e], part[j][e]);
#pragma unroll
    for (int c = 0; c < 2; c++)
#pragma unroll
      for (int h = 0; h < 2; h++) {
        w0[c][h] = w1[c][h];
        w1[c][h] = w2[c][h];
      }
  }

  // acc[j][e]: weight row n0 + gid + 8 (e >> 1), row of x 8j + 2t + (e & 1).
  if (groups == 1) {
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
      for (int e = 0; e < 4; e++)
        store_out<OUT, F16>(y, bias, m, n, 8 * j + 2 * t + (e & 1), n0 + gid + 8 * (e >> 1),
                            __fadd_rn(0.f, acc[j][e]));
    return;
  }
#pragma unroll
  for (int j = 0; j < NT; j++)
#pragma unroll
    for (int e = 0; e < 4; e++) {
      int row = 8 * j + 2 * t + (e & 1), c = n0 + gid + 8 * (e >> 1);
      if (row < m && c < n) partial[((long)g * m + row) * n + c] = acc[j][e];
    }
  // Publish this block's sums before counting its arrival; the last block to arrive sees all.
  __threadfence();
  __syncthreads();
  if (tid == 0) last = atomicAdd(&arrivals[blockIdx.x], 1u) == (unsigned)(groups - 1);
  __syncthreads();
  if (!last) return;
  __threadfence();
  // The groups' sums, FOLD_AHEAD groups' loads in flight at a time (one dependent load per
  // addition would leave this block, the last of its column, waiting on L2 latency `groups`
  // times), added in order from 0.
  constexpr int FOLD_AHEAD = 4;
  float total[NT][4];
#pragma unroll
  for (int j = 0; j < NT; j++)
#pragma unroll
    for (int e = 0; e < 4; e++) total[j][e] = 0.f;
  for (int g0 = 0; g0 < groups; g0 += FOLD_AHEAD) {
    float v[FOLD_AHEAD][NT][4];
#pragma unroll
    for (int q = 0; q < FOLD_AHEAD; q++)
#pragma unroll
      for (int j = 0; j < NT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          int row = 8 * j + 2 * t + (e & 1), c = n0 + gid + 8 * (e >> 1);
          bool ok = g0 + q < groups && row < m && c < n;
          v[q][j][e] = ok ? __ldcg(&partial[((long)(g0 + q) * m + row) * n + c]) : 0.f;
        }
#pragma unroll
    for (int q = 0; q < FOLD_AHEAD; q++) {
      if (g0 + q >= groups) break;
#pragma unroll
      for (int j = 0; j < NT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) total[j][e] = __fadd_rn(total[j][e], v[q][j][e]);
    }
  }
#pragma unroll
  for (int j = 0; j < NT; j++)
#pragma unroll
    for (int e = 0; e < 4; e++)
      store_out<OUT, F16>(y, bias, m, n, 8 * j + 2 * t + (e & 1), n0 + gid + 8 * (e >> 1),
                          total[j][e]);
  // Ready for the next launch on this stream.
  if (tid == 0) arrivals[blockIdx.x] = 0u;
}

// The tiled kernel for many rows: a block of 8 warps computes 128 weight rows x 64 rows of x;
// each stretch of W and x is staged once in shared memory (x already split into its parts), so
// every weight and x element is read from global memory once per block instead of once per warp.
// Warp w owns weight rows 32 (w % 4) .. +32 and x rows 32 (w / 4) .. +32 of the block and runs
// every group itself, through chunk_mma, so its results are the decode kernel's bits.
#define TN 128
#define TM 64

template <int PARTS, bool XF32, bool F16, int OUT>
__device__ __forceinline__ void linear_tiled(const void* x, const u16* w, const u16* bias, void* y,
                                             int m, int n, int k, int spg, int groups) {
  __shared__ uint4 sw[TN * 8];
  __shared__ uint4 sx[PARTS][TM * 8];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gid = lane >> 2, t = lane & 3;
  const int n0 = blockIdx.x * TN, m0 = blockIdx.y * TM;
  const int wn = (warp & 3) * 32, wm = (warp >> 2) * 32;
  const int stretches = (k + STRETCH - 1) / STRETCH;
  // What this thread carries from global memory to shared memory for one stretch.
  uint4 pw[4];
  float4 px[4];
  uint4 pxh[2];
  auto fetch = [&](int s) {
#pragma unroll
    for (int q = 0; q < 4; q++) {
      int id = tid + 256 * q, row = id >> 3, ch = id & 7;
      pw[q] = load8_u16(w, n0 + row, n, k, s * STRETCH + ch * 8);
    }
    if (XF32) {
#pragma unroll
      for (int q = 0; q < 4; q++) {
        int id = tid + 256 * q, row = id >> 4, f4 = id & 15, col = s * STRETCH + f4 * 4;
        if (m0 + row < m && col < k) {
          px[q] = *reinterpret_cast<const float4*>((const float*)x + (long)(m0 + row) * k + col);
        } else {
          px[q].x = px[q].y = px[q].z = px[q].w = 0.f;
        }
      }
    } else {
#pragma unroll
      for (int q = 0; q < 2; q++) {
        int id = tid + 256 * q, row = id >> 3, ch = id & 7;
        pxh[q] = load8_u16((const u16*)x, m0 + row, m, k, s * STRETCH + ch * 8);
      }
    }
  };
  auto stage = [&]() {
#pragma unroll
    for (int q = 0; q < 4; q++) {
      int id = tid + 256 * q, row = id >> 3, ch = id & 7;
      sw[swz(row, ch)] = pw[q];
    }
    if (XF32) {
#pragma unroll
      for (int q = 0; q < 4; q++) {
        int id = tid + 256 * q, row = id >> 4, f4 = id & 15;
        unsigned parts[2][3];
        split_pair(px[q].x, px[q].y, parts[0]);
        split_pair(px[q].z, px[q].w, parts[1]);
        // Half f4 & 1 of chunk f4 >> 1 of each part's row.
#pragma unroll
        for (int p = 0; p < PARTS; p++) {
          unsigned* d = reinterpret_cast<unsigned*>(&sx[p][swz(row, f4 >> 1)]) + 2 * (f4 & 1);
          d[0] = parts[0][p];
          d[1] = parts[1][p];
        }
      }
    } else {
#pragma unroll
      for (int q = 0; q < 2; q++) {
        int id = tid + 256 * q, row = id >> 3, ch = id & 7;
        sx[0][swz(row, ch)] = pxh[q];
      }
    }
  };
  float total[2][4][4];
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) total[i][j][e] = 0.f;
  fetch(0);
  for (int g = 0; g < groups; g++) {
    float acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
      for (int j = 0; j < 4; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[i][j][e] = 0.f;
    int s0 = g * spg, s1 = s0 + spg < stretches ? s0 + spg : stretches;
    for (int s = s0; s < s1; s++) {
      __syncthreads();
      stage();
      __syncthreads();
      if (s + 1 < stretches) fetch(s + 1);
      float part[2][4][4];
#pragma unroll
      for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
          for (int e = 0; e < 4; e++) part[i][j][e] = 0.f;
#pragma unroll
      for (int c = 0; c < STRETCH / 32; c++) {
        uint4 wa[2], wb[2];
#pragma unroll
        for (int i = 0; i < 2; i++) {
          wa[i] = sw[swz(wn + 16 * i + gid, 4 * c + t)];
          wb[i] = sw[swz(wn + 16 * i + gid + 8, 4 * c + t)];
        }
        uint4 xv[4][PARTS];
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
          for (int p = 0; p < PARTS; p++) xv[j][p] = sx[p][swz(wm + 8 * j + gid, 4 * c + t)];
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
          for (int j = 0; j < 4; j++) chunk_mma<PARTS, F16>(part[i][j], wa[i], wb[i], xv[j]);
      }
#pragma unroll
      for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
          for (int e = 0; e < 4; e++) acc[i][j][e] = __fadd_rn(acc[i][j][e], part[i][j][e]);
    }
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
      for (int j = 0; j < 4; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) total[i][j][e] = __fadd_rn(total[i][j][e], acc[i][j][e]);
  }
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int e = 0; e < 4; e++)
        store_out<OUT, F16>(y, bias, m, n, m0 + wm + 8 * j + 2 * t + (e & 1),
                            n0 + wn + 16 * i + gid + 8 * (e >> 1), total[i][j][e]);
}

// name: mma_linear_<x>_<w>; x f32 means the LayerCast split (f32 out), x bf16/f16 one part (out
// in the same type). _split<NT>: the decode kernel for up to 8·NT rows; _tiled: any row count.
#define MMA_SPLIT(NAME, NT, PARTS, XF32, F16, OUT)                                                 \
  extern "C" __global__ void __launch_bounds__(256, 2)                                            \
      NAME##_split##NT(const void* x, const u16* w, const u16* b, void* y, float* partial,        \
                       unsigned* arrivals, int m, int n, int k, int spg, int groups) {            \
    linear_split<NT, PARTS, XF32, F16, OUT>(x, w, b, y, partial, arrivals, m, n, k, spg, groups); \
  }
#define MMA_LINEAR(NAME, PARTS, XF32, F16, OUT)                                                    \
  MMA_SPLIT(NAME, 1, PARTS, XF32, F16, OUT)                                                        \
  MMA_SPLIT(NAME, 2, PARTS, XF32, F16, OUT)                                                        \
  MMA_SPLIT(NAME, 4, PARTS, XF32, F16, OUT)                                                        \
  extern "C" __global__ void __launch_bounds__(256) NAME##_tiled(                                 \
      const void* x, const u16* w, const u16* b, void* y, int m, int n, int k, int spg,           \
      int groups) {                                                                               \
    linear_tiled<PARTS, XF32, F16, OUT>(x, w, b, y, m, n, k, spg, groups);                        \
  }

MMA_LINEAR(mma_linear_f32_bf16, 3, true, false, 0)
MMA_LINEAR(mma_linear_bf16_bf16, 1, false, false, 1)
MMA_LINEAR(mma_linear_f16_f16, 1, false, true, 2)
