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
//   - *_split<NT>: rows <= 8·NT (NT = 1, 2, 4), decode. About two blocks per SM, each taking
//     (128 weight rows, group) items in turn through one pipeline; each warp streams its 32
//     weight rows through its own shared-memory ring, x through one ring for all warps, both by
//     cp.async two or three stretches ahead; *_fold then folds the groups' sums in order.
//   - *_tiled: any row count. A block is 8 warps on 128 weight rows x 64 rows of x, copied into
//     a ring of shared memory three stretches ahead (dynamic shared memory: 176 KB for f32 x,
//     96 KB for 16-bit x); each warp owns 32 x 32 outputs and runs every group itself.

#define STRETCH 64

__device__ __forceinline__ void mma_bf16(float* d, unsigned a0, unsigned a1, unsigned a2,
                                         unsigned a3, unsigned b0, unsigned b1) {
  asm(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void mma_f16(float* d, unsigned a0, unsigned a1, unsigned a2,
                                        unsigned a3, unsigned b0, unsigned b1) {
  asm(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Two f32 values rounded to bf16 (to nearest even) and packed, `lo` in the low half: one
// hardware conversion, the same bits as to_bf16 on each for every input but NaN (a NaN stays a
// NaN, its payload may differ).
__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
  unsigned r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
__device__ __forceinline__ float low_bf16(unsigned packed) { return __uint_as_float(packed << 16); }
__device__ __forceinline__ float high_bf16(unsigned packed) {
  return __uint_as_float(packed & 0xffff0000u);
}

// The three bf16 parts of two f32 values a, b as packed operand words: s[0] = (hi(a), hi(b)),
// s[1] = mid, s[2] = lo, with hi = bf16(x), mid = bf16(x - hi), lo = bf16(x - hi - mid); both
// differences are exact in f32, and hi + mid + lo == x. Every kernel splits through this one
// function, so the parts (and with them the products) are the same bits in each.
__device__ __forceinline__ void split_pair(float a, float b, unsigned (&s)[3]) {
  s[0] = pack_bf16(a, b);
  float r0 = a - low_bf16(s[0]), r1 = b - high_bf16(s[0]);
  s[1] = pack_bf16(r0, r1);
  s[2] = pack_bf16(r0 - low_bf16(s[1]), r1 - high_bf16(s[1]));
}

// One 32-element chunk of a stretch for I x J output tiles of 16 x 8: aq[i][step] is the A
// operand of tile row i for k16 step `step` (weight rows gid and gid + 8, elements 8t..8t+3 of the
// chunk for step 0 and 8t+4..8t+7 for step 1, as wquad lays them out), xv[j][p] row gid of x's
// part p for tile column j, holding elements 8t..8t+7 of the chunk. Two k16 steps, the parts in
// order hi, mid, lo within each: every tile's accumulator receives that one mma sequence, in every
// kernel here. The tiles are interleaved (a step's part for every tile, then the next part), so
// consecutive mma.sync are independent.
template <int PARTS, bool F16, int I, int J>
__device__ __forceinline__ void chunk_mma(float (&part)[I][J][4], const uint4 (&aq)[I][2],
                                          const uint4 (&xv)[J][PARTS]) {
#pragma unroll
  for (int step = 0; step < 2; step++)
#pragma unroll
    for (int p = 0; p < PARTS; p++)
#pragma unroll
      for (int i = 0; i < I; i++) {
        const uint4 a = aq[i][step];
#pragma unroll
        for (int j = 0; j < J; j++) {
          unsigned b0 = step ? xv[j][p].z : xv[j][p].x, b1 = step ? xv[j][p].w : xv[j][p].y;
          if (F16) mma_f16(part[i][j], a.x, a.y, a.z, a.w, b0, b1);
          else mma_bf16(part[i][j], a.x, a.y, a.z, a.w, b0, b1);
        }
      }
}

// Weights in shared memory as the mma reads them, one 16-byte unit per A operand: for 16-row
// tile `tile`, row pair (gid, gid + 8), k16 step `step` and 8-element chunk c8 of a stretch, the
// words (row gid word 2 step, row gid + 8 word 2 step, row gid word 2 step + 1, row gid + 8 word
// 2 step + 1) of the chunk: a0..a3 of lane (gid, c8 % 4), loaded by one 16-byte read (rows
// apart in registers would cost four moves per mma). Chunks are swizzled by gid as x's rows
// are, so a quarter-warp's reads hit distinct banks. wquad_word: where word wi (0..3) of chunk
// c8 of tile row r (0..15) goes, in 4-byte words.
__device__ __forceinline__ int wquad(int tile, int gid, int step, int c8) {
  return ((tile * 8 + gid) * 2 + step) * 8 + (c8 ^ ((gid & 1) << 2));
}
__device__ __forceinline__ int wquad_word(int tile, int r, int c8, int wi) {
  return wquad(tile, r & 7, wi >> 1, c8) * 4 + ((wi & 1) << 1) + ((r >> 3) & 1);
}

// The shared-memory address of `p`, for the copies below (worked out once per buffer, then
// offset by constants).
__device__ __forceinline__ unsigned smem_addr(const void* p) {
  unsigned d;
  asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(d) : "l"(p));
  return d;
}

// Asynchronous 4-byte copy global -> shared address `dst` (zero-filled when !valid; `src` must
// still point into the buffer): how weight words reach their places in the quads.
__device__ __forceinline__ void cp_async4(unsigned dst, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(dst), "l"(src),
               "r"(valid ? 4 : 0));
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

// The decode kernel, for up to 8·NT rows of x (NT = 1, 2, 4). Its work items are (column of 128
// weight rows, group of stretches) pairs, numbered group by group (item = group · columns +
// column, so that the blocks running at one time read the same stretches of x). A launch has
// about two blocks per SM, and each block takes items blockIdx.x, blockIdx.x + gridDim.x, ...
// and streams all their stretches through ONE pipeline: the copies run ahead across the end of an
// item, so a block pays the memory latency once rather than once per item, and no wave of blocks
// is left short at the end of the launch. A block is 4 warps; each streams its own 32 weight rows
// (two tensor-core tiles) by cp.async into its part of a shared ring (no registers held by loads
// in flight); x arrives the same way into one ring for all 4 warps (f32 x is split into its parts
// once per stretch, one stretch ahead of its use, into one of two buffers, so a stretch costs one
// barrier). A warp applies each x fragment it reads from shared memory to both its weight tiles:
// with 16 rows a warp, reading x's three parts was most of the kernel's shared-memory traffic (on an
// H100, f32 x at 32 rows: 7B gate/up 100 -> 91 us, down 101 -> 96 us; 16-bit x 3-6% slower). With one
// group an item's sums go to y; else to `partial`, which linear_fold then folds in order
// (0, 1, ...) into y: the same additions, in the same order, as the tiled kernel's.
#define SPLIT_WARPS 4
#define SPLIT_THREADS (32 * SPLIT_WARPS)
#define WARP_ROWS 32
#define SPLIT_N (WARP_ROWS * SPLIT_WARPS)

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

// Slots of the decode kernel's shared rings: x (raw f32 stretches, or 16-bit operand rows) and
// W (each warp's 32 weight rows: 64 KB of dynamic shared memory per block).
#define XSTAGES 3
#define WSLOTS 4

// A place in a decode block's stream of stretches: stretch s of work item `item`, whose group
// ends before stretch `end`. Past the block's last item, item >= items.
struct Cursor {
  int item, s, end;
};

template <int NT, int PARTS, bool XF32, bool F16, int OUT>
__device__ __forceinline__ void linear_split(const void* x, const u16* w, const u16* bias, void* y,
                                             float* partial, int m, int n, int k, int spg,
                                             int groups) {
  constexpr int XROWS = 8 * NT;
  constexpr int XF4 = XROWS * (STRETCH / 4);  // float4 of f32 x per stretch
  constexpr int XQ = (XF4 + SPLIT_THREADS - 1) / SPLIT_THREADS;
  constexpr int HQ = (XROWS * 8 + SPLIT_THREADS - 1) / SPLIT_THREADS;  // 16-byte chunks of 16-bit x
  // f32 x: a ring of raw stretches, split once per stretch into `sx` for all warps. 16-bit x:
  // the ring holds the operand rows themselves.
  __shared__ float4 raw[XF32 ? XSTAGES : 1][XF32 ? XF4 : 1];
  __shared__ uint4 sx[XF32 ? 2 : XSTAGES][PARTS][XROWS * 8];
  // The weights: WSLOTS stretches of each warp's 32 rows, in dynamic shared memory.
  extern __shared__ uint4 wring[];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gid = lane >> 2, t = lane & 3;
  const int stretches = (k + STRETCH - 1) / STRETCH;
  const int columns = (n + SPLIT_N - 1) / SPLIT_N, items = columns * groups;

  auto first = [&](int item) {
    const int s0 = (item / columns) * spg;
    return Cursor{item, s0, s0 + spg < stretches ? s0 + spg : stretches};
  };
  auto next = [&](Cursor c) {
    if (++c.s == c.end) c = first(c.item + gridDim.x);
    return c;
  };
  // Starts the copy of stretch s of x into ring slot `slot`.
  auto copy_x = [&](int s, int slot) {
    if (XF32) {
#pragma unroll
      for (int q = 0; q < XQ; q++) {
        int id = tid + SPLIT_THREADS * q, row = id >> 4, col = s * STRETCH + (id & 15) * 4;
        if (id < XF4) {
          bool ok = row < m && col < k;
          cp_async16(&raw[slot][id], (const float*)x + (ok ? (long)row * k + col : 0), ok);
        }
      }
    } else {
#pragma unroll
      for (int q = 0; q < HQ; q++) {
        int id = tid + SPLIT_THREADS * q, row = id >> 3, col = s * STRETCH + (id & 7) * 8;
        if (id < XROWS * 8) {
          bool ok = row < m && col < k;
          cp_async16(&sx[slot][0][swz(row, id & 7)],
                     (const u16*)x + (ok ? (long)row * k + col : 0), ok);
        }
      }
    }
  };
  // f32 x: splits ring slot `slot` into the parts' operand rows in buffer `buf`.
  auto split_x = [&](int slot, int buf) {
#pragma unroll
    for (int q = 0; q < XQ; q++) {
      int id = tid + SPLIT_THREADS * q, row = id >> 4, f4 = id & 15;
      if (id >= XF4) continue;
      float4 v = raw[slot][id];
      unsigned parts[2][3];
      split_pair(v.x, v.y, parts[0]);
      split_pair(v.z, v.w, parts[1]);
#pragma unroll
      for (int p = 0; p < PARTS; p++) {
        unsigned* d = reinterpret_cast<unsigned*>(&sx[buf][p][swz(row, f4 >> 1)]) + 2 * (f4 & 1);
        d[0] = parts[0][p];
        d[1] = parts[1][p];
      }
    }
  };
  // This warp's 32 weight rows of the cursor's stretch into its own part of W ring slot `slot`,
  // as quads (wquad, tiles 0 and 1): lane l copies word l of each row, so a row's 128 bytes are
  // one coalesced read.
  const unsigned wbase = smem_addr(wring + warp * WARP_ROWS * 8);
  auto copy_w = [&](Cursor c, int slot) {
    const unsigned dst = wbase + slot * SPLIT_N * 8 * 16;
    const int n0 = (c.item % columns) * SPLIT_N + WARP_ROWS * warp, c0 = c.s * STRETCH + 2 * lane;
    const u16* src = w + (long)n0 * k + c0;
    if (c0 < k && n0 + WARP_ROWS - 1 < n) {  // the usual case: every row and word there
#pragma unroll
      for (int q = 0; q < WARP_ROWS; q++)
        cp_async4(dst + 4 * wquad_word(q >> 4, q & 15, lane >> 2, lane & 3), src + (long)q * k,
                  true);
    } else {
#pragma unroll
      for (int q = 0; q < WARP_ROWS; q++) {
        bool ok = c0 < k && n0 + q < n;
        cp_async4(dst + 4 * wquad_word(q >> 4, q & 15, lane >> 2, lane & 3),
                  ok ? src + (long)q * k : w, ok);
      }
    }
  };
  // Writes a finished item's sums: to y with one group, else to its group's plane of `partial`.
  // acc[i][j][e]: weight row n0 + 16i + gid + 8 (e >> 1), row of x 8j + 2t + (e & 1).
  auto finish = [&](int item, float (&acc)[2][NT][4]) {
    const int g = item / columns, n0 = (item % columns) * SPLIT_N + WARP_ROWS * warp;
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
      for (int j = 0; j < NT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int row = 8 * j + 2 * t + (e & 1), c = n0 + 16 * i + gid + 8 * (e >> 1);
          if (groups == 1)
            store_out<OUT, F16>(y, bias, m, n, row, c, __fadd_rn(0.f, acc[i][j][e]));
          else if (row < m && c < n)
            partial[((long)g * m + row) * n + c] = acc[i][j][e];
          acc[i][j][e] = 0.f;
        }
  };
  float acc[2][NT][4];
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) acc[i][j][e] = 0.f;
  // Stretches u .. u + AHEAD - 1 of the stream (W and x, one commit group each) are in flight
  // when stretch u is computed; f32 x is split one stretch ahead of its use, so the copies of
  // stretch u + 1 must have landed first, and its ring runs a stretch further ahead. A stretch
  // needs one barrier.
  constexpr int AHEAD = XF32 ? XSTAGES : XSTAGES - 1;
  Cursor fetch = first(blockIdx.x), cur = fetch;
#pragma unroll
  for (int i = 0; i < AHEAD; i++) {
    if (fetch.item < items) {
      copy_w(fetch, i);
      copy_x(fetch.s, i);
      fetch = next(fetch);
    }
    cp_async_commit();
  }
  if (XF32) {
    cp_async_wait<XSTAGES - 1>();
    __syncthreads();
    split_x(0, 0);
  }
  for (int u = 0; cur.item < items; u++) {
    // This stretch's weights (and, for 16-bit x, x) have landed: this thread's copies; the
    // barrier makes everyone's visible. f32 x: stretch u + 1's too, and the parts of stretch u
    // are visible. Either way every warp is done with the slots (and split buffer) the next
    // copies (and split) refill.
    cp_async_wait<XSTAGES - 2>();
    __syncthreads();
    if (fetch.item < items) {
      copy_w(fetch, (u + AHEAD) % WSLOTS);
      copy_x(fetch.s, (u + AHEAD) % XSTAGES);
      fetch = next(fetch);
    }
    cp_async_commit();
    const Cursor after = next(cur);
    if (XF32 && after.item < items) split_x((u + 1) % XSTAGES, (u + 1) & 1);
    const int b = XF32 ? u & 1 : u % XSTAGES;
    const uint4* ws = wring + (u % WSLOTS * SPLIT_WARPS + warp) * WARP_ROWS * 8;
    float part[2][NT][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
      for (int j = 0; j < NT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) part[i][j][e] = 0.f;
#pragma unroll
    for (int c = 0; c < STRETCH / 32; c++) {
      uint4 xv[NT][PARTS];
#pragma unroll
      for (int j = 0; j < NT; j++)
#pragma unroll
        for (int p = 0; p < PARTS; p++) xv[j][p] = sx[b][p][swz(8 * j + gid, 4 * c + t)];
      uint4 aq[2][2];
#pragma unroll
      for (int i = 0; i < 2; i++)
#pragma unroll
        for (int st = 0; st < 2; st++) aq[i][st] = ws[wquad(i, gid, st, 4 * c + t)];
      chunk_mma<PARTS, F16, 2, NT>(part, aq, xv);
    }
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
      for (int j = 0; j < NT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[i][j][e] = __fadd_rn(acc[i][j][e], part[i][j][e]);
    if (cur.s + 1 == cur.end) finish(cur.item, acc);
    cur = after;
  }
}

// Folds the decode kernel's group sums in order into y, one thread per output element (row-major
// over m x n, so a warp's loads of one group are contiguous): total = ((0 + g0) + g1) + ..., then
// the bias, rounded once. FOLD_AHEAD groups' loads are in flight at a time.
#define FOLD_AHEAD 8
template <int OUT, bool F16>
__device__ __forceinline__ void linear_fold(const float* partial, const u16* bias, void* y, int m,
                                            int n, int groups) {
  const long i = (long)blockIdx.x * blockDim.x + threadIdx.x, plane = (long)m * n;
  if (i >= plane) return;
  float total = 0.f;
  for (int g0 = 0; g0 < groups; g0 += FOLD_AHEAD) {
    float v[FOLD_AHEAD];
#pragma unroll
    for (int q = 0; q < FOLD_AHEAD; q++) v[q] = g0 + q < groups ? partial[(g0 + q) * plane + i] : 0.f;
#pragma unroll
    for (int q = 0; q < FOLD_AHEAD; q++)
      if (g0 + q < groups) total = __fadd_rn(total, v[q]);
  }
  store_out<OUT, F16>(y, bias, m, n, (int)(i / n), (int)(i % n), total);
}

// The tiled kernel for many rows: a block of 8 warps computes 128 weight rows x 64 rows of x.
// Each stretch of W and x is copied once per block into a ring of TSTAGES shared-memory slots by
// cp.async, TSTAGES - 1 stretches ahead of the tensor cores; f32 x is split into its parts one
// stretch ahead, into one of two buffers, so a stretch needs one barrier. Every weight and x
// element is read from global memory once per block instead of once per warp. Warp w owns weight
// rows 32 (w % 4) .. +32 and x rows 32 (w / 4) .. +32 of the block and runs every group itself,
// through chunk_mma, so its results are the decode kernel's bits.
#define TN 128
#define TM 64
#define TSTAGES 4

// Dynamic shared memory of the tiled kernel, in 16-byte words: the W ring, the x ring (raw f32
// stretches, or the 16-bit operand rows themselves), and for f32 x the two buffers of split parts.
// mma.rs sizes the launch by the same numbers.
template <int PARTS, bool XF32>
struct TiledSmem {
  static constexpr int W = TN * 8;                    // one stretch of 128 weight rows
  static constexpr int X = XF32 ? TM * 16 : TM * 8;   // one stretch of 64 rows of x
  static constexpr int SPLIT = XF32 ? PARTS * TM * 8 : 0;
  static constexpr int WORDS = TSTAGES * (W + X) + 2 * SPLIT;
};

template <int PARTS, bool XF32, bool F16, int OUT>
__device__ __forceinline__ void linear_tiled(const void* x, const u16* w, const u16* bias, void* y,
                                             int m, int n, int k, int spg, int groups) {
  typedef TiledSmem<PARTS, XF32> L;
  extern __shared__ uint4 smem[];
  uint4* const sw = smem;                      // [TSTAGES][L::W]
  uint4* const rx = smem + TSTAGES * L::W;     // [TSTAGES][L::X]
  uint4* const sp = rx + TSTAGES * L::X;       // [2][PARTS][TM * 8] (f32 x)
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gid = lane >> 2, t = lane & 3;
  const int n0 = blockIdx.x * TN, m0 = blockIdx.y * TM;
  const int wn = (warp & 3) * 32, wm = (warp >> 2) * 32;
  const int stretches = (k + STRETCH - 1) / STRETCH;

  // What this thread copies each stretch, fixed for the whole launch, with the bases and which
  // rows exist worked out once, so that a stretch's copies cost an add and a compare each:
  //   - W as quads (wquad): warp v copies word `lane` of rows v + 8q (q < 16), tile q / 2, row
  //     v + 8 (q % 2) of it; a row's 128 bytes are one coalesced read;
  //   - f32 x: rows xr + 16q (q < 4), float4 xf; 16-bit x: rows hr + 32q (q < 2), chunk hch.
  const int xr = tid >> 4, xf = tid & 15, hr = tid >> 3, hch = tid & 7;
  const long k8 = 8L * k, k16 = 16L * k, k32 = 32L * k;
  const u16* const qsrc = w + (long)(n0 + warp) * k + 2 * lane;
  // tile q / 2 is 512 words on
  const unsigned qbase = smem_addr(sw) + 4 * wquad_word(0, warp, lane >> 2, lane & 3);
  const float* const xsrc = (const float*)x + (long)(m0 + xr) * k + xf * 4;
  const u16* const hsrc = (const u16*)x + (long)(m0 + hr) * k + hch * 8;
  const int hdst = swz(hr, hch);  // row hr + 32q is 256q words further
  unsigned qrows = 0, xrows = 0, hrows = 0;
#pragma unroll
  for (int q = 0; q < 16; q++) qrows |= (unsigned)(n0 + warp + 8 * q < n) << q;
#pragma unroll
  for (int q = 0; q < 4; q++) {
    xrows |= (unsigned)(m0 + xr + 16 * q < m) << q;
    hrows |= (unsigned)(m0 + hr + 32 * q < m) << q;
  }
  // Starts the copies of stretch s into ring slot `slot` (one commit group, empty past the end).
  auto copy = [&](int s, int slot) {
    if (s < stretches) {
      const int c0 = s * STRETCH;
      const bool qcol = c0 + 2 * lane < k;
      const unsigned dst = qbase + slot * L::W * 16;
      const u16* src = qsrc + c0;
      if (qcol && qrows == 0xffffu) {  // the usual case: every row and word there
#pragma unroll
        for (int q = 0; q < 16; q++)
          cp_async4(dst + 4 * ((q >> 1) * 512 + (q & 1)), src + q * k8, true);
      } else {
#pragma unroll
        for (int q = 0; q < 16; q++) {
          bool ok = qcol && (qrows >> q & 1u);
          cp_async4(dst + 4 * ((q >> 1) * 512 + (q & 1)), ok ? src + q * k8 : w, ok);
        }
      }
      if (XF32) {
        const bool xcol = c0 + xf * 4 < k;
#pragma unroll
        for (int q = 0; q < 4; q++) {
          bool ok = xcol && (xrows >> q & 1u);
          cp_async16(&rx[slot * L::X + tid + 256 * q], ok ? xsrc + q * k16 + c0 : (const float*)x,
                     ok);
        }
      } else {
#pragma unroll
        for (int q = 0; q < 2; q++) {
          bool ok = c0 + hch * 8 < k && (hrows >> q & 1u);
          cp_async16(&rx[slot * L::X + hdst + 256 * q], ok ? hsrc + q * k32 + c0 : (const u16*)x,
                     ok);
        }
      }
    }
    cp_async_commit();
  };
  // f32 x: splits the raw stretch in ring slot `slot` into split buffer `buf`.
  auto split = [&](int slot, int buf) {
#pragma unroll
    for (int q = 0; q < 4; q++) {
      int id = tid + 256 * q, row = id >> 4, f4 = id & 15;
      float4 v = reinterpret_cast<const float4*>(rx + slot * L::X)[id];
      unsigned parts[2][3];
      split_pair(v.x, v.y, parts[0]);
      split_pair(v.z, v.w, parts[1]);
      // Half f4 & 1 of chunk f4 >> 1 of each part's row.
#pragma unroll
      for (int p = 0; p < PARTS; p++) {
        unsigned* d =
            reinterpret_cast<unsigned*>(&sp[(buf * PARTS + p) * TM * 8 + swz(row, f4 >> 1)]) +
            2 * (f4 & 1);
        d[0] = parts[0][p];
        d[1] = parts[1][p];
      }
    }
  };

  float total[2][4][4], acc[2][4][4];
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) total[i][j][e] = acc[i][j][e] = 0.f;
#pragma unroll
  for (int i = 0; i < TSTAGES - 1; i++) copy(i, i);
  if (XF32) {
    cp_async_wait<TSTAGES - 2>();
    __syncthreads();
    split(0, 0);
  }
  for (int s = 0; s < stretches; s++) {
    // Stretch s + 1 has landed (this thread's copies; the barrier makes everyone's visible, and
    // with it the parts of stretch s), and every warp is done with stretch s - 1: its ring slot
    // and its split buffer may be refilled.
    cp_async_wait<TSTAGES - 3>();
    __syncthreads();
    copy(s + TSTAGES - 1, (s + TSTAGES - 1) % TSTAGES);
    if (XF32 && s + 1 < stretches) split((s + 1) % TSTAGES, (s + 1) & 1);
    const uint4* ws = sw + (s % TSTAGES) * L::W;
    const uint4* xs = XF32 ? sp + (s & 1) * PARTS * TM * 8 : rx + (s % TSTAGES) * L::X;
    float part[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
      for (int j = 0; j < 4; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) part[i][j][e] = 0.f;
#pragma unroll
    for (int c = 0; c < STRETCH / 32; c++) {
      uint4 aq[2][2];
#pragma unroll
      for (int i = 0; i < 2; i++)
#pragma unroll
        for (int st = 0; st < 2; st++) aq[i][st] = ws[wquad((wn >> 4) + i, gid, st, 4 * c + t)];
      uint4 xv[4][PARTS];
#pragma unroll
      for (int j = 0; j < 4; j++)
#pragma unroll
        for (int p = 0; p < PARTS; p++) xv[j][p] = xs[p * TM * 8 + swz(wm + 8 * j + gid, 4 * c + t)];
      chunk_mma<PARTS, F16, 2, 4>(part, aq, xv);
    }
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
      for (int j = 0; j < 4; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[i][j][e] = __fadd_rn(acc[i][j][e], part[i][j][e]);
    // The end of a group (every spg stretches, and the last stretch): fold it into the total.
    if ((s + 1) % spg == 0 || s + 1 == stretches) {
#pragma unroll
      for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
          for (int e = 0; e < 4; e++) {
            total[i][j][e] = __fadd_rn(total[i][j][e], acc[i][j][e]);
            acc[i][j][e] = 0.f;
          }
    }
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
// in the same type). _split<NT>: the decode kernel for up to 8·NT rows, and _fold its groups'
// fold; _tiled: any row count.
#define MMA_SPLIT(NAME, NT, PARTS, XF32, F16, OUT)                                                 \
  extern "C" __global__ void __launch_bounds__(SPLIT_THREADS, 2)                                  \
      NAME##_split##NT(const void* x, const u16* w, const u16* b, void* y, float* partial, int m, \
                       int n, int k, int spg, int groups) {                                       \
    linear_split<NT, PARTS, XF32, F16, OUT>(x, w, b, y, partial, m, n, k, spg, groups);           \
  }
#define MMA_LINEAR(NAME, PARTS, XF32, F16, OUT)                                                    \
  MMA_SPLIT(NAME, 1, PARTS, XF32, F16, OUT)                                                        \
  MMA_SPLIT(NAME, 2, PARTS, XF32, F16, OUT)                                                        \
  MMA_SPLIT(NAME, 4, PARTS, XF32, F16, OUT)                                                        \
  extern "C" __global__ void NAME##_fold(const float* partial, const u16* b, void* y, int m,      \
                                         int n, int groups) {                                     \
    linear_fold<OUT, F16>(partial, b, y, m, n, groups);                                           \
  }                                                                                               \
  extern "C" __global__ void __launch_bounds__(256) NAME##_tiled(                                 \
      const void* x, const u16* w, const u16* b, void* y, int m, int n, int k, int spg,           \
      int groups) {                                                                               \
    linear_tiled<PARTS, XF32, F16, OUT>(x, w, b, y, m, n, k, spg, groups);                        \
  }

MMA_LINEAR(mma_linear_f32_bf16, 3, true, false, 0)
MMA_LINEAR(mma_linear_bf16_bf16, 1, false, false, 1)
MMA_LINEAR(mma_linear_f16_f16, 1, false, true, 2)
