// The sampled choice of `sampling::choose` on the GPU, bit for bit: one block per row of f32
// logits, no sort, every reduction over integers (order-free) or over maxima (exact). The steps
// and the double-precision arithmetic are those of the host body in `sampling/mod.rs`; every
// double operation is spelled with its round-to-nearest intrinsic so that NVRTC contracts none
// of them into a fused multiply-add.

#define CHOOSE_THREADS 1024
#define RADIX_BUCKETS 256

// Order-preserving map of a float onto an unsigned key: a > b  <=>  key(a) > key(b).
__device__ __forceinline__ unsigned int float_key(float v) {
  unsigned int u = __float_as_uint(v);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ float key_float(unsigned int k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

__device__ __forceinline__ bool is_finite_f32(float v) { return fabsf(v) <= 3.402823466e38f; }

// exp(x) from additions and multiplications only: reprolm_precision::portable::exp_f64, step by step.
__device__ double portable_exp_f64(double x) {
  const double LOG2E = 1.4426950408889634;
  const double LN2_HI = __longlong_as_double(0x3FE62E42FEE00000LL);
  const double LN2_LO = __longlong_as_double(0x3DEA39EF35793C76LL);
  const double INV_FACT[13] = {
      1.0,
      1.0,
      0.5,
      0.16666666666666666,
      0.041666666666666664,
      0.008333333333333333,
      0.001388888888888889,
      0.0001984126984126984,
      2.48015873015873e-05,
      2.7557319223985893e-06,
      2.755731922398589e-07,
      2.505210838544172e-08,
      2.08767569878681e-09,
  };
  double k = floor(__dadd_rn(__dmul_rn(x, LOG2E), 0.5));
  double r = __dsub_rn(__dsub_rn(x, __dmul_rn(k, LN2_HI)), __dmul_rn(k, LN2_LO));
  double p = INV_FACT[12];
  for (int i = 11; i >= 0; --i) p = __dadd_rn(__dmul_rn(p, r), INV_FACT[i]);
  long long e = 1023 + (long long)k;
  return __dmul_rn(p, __longlong_as_double(e << 52));
}

struct Cut {
  float max;           // largest finite logit
  float floor;         // top-k: smallest logit kept
  double temperature;
  double min_p;
};

// The scaled logit z = (l - max) / T.
__device__ __forceinline__ double scaled(float l, const Cut& c) {
  return __ddiv_rn(__dsub_rn((double)l, (double)c.max), c.temperature);
}

// The fixed-point weight of a token, 0 when it is out of the top-k or negligible; `cand` says
// whether min-p keeps it too.
__device__ __forceinline__ unsigned long long token_weight(float l, const Cut& c, bool* cand) {
  *cand = false;
  if (!is_finite_f32(l) || l < c.floor) return 0;
  double z = scaled(l, c);
  if (z < -22.2) return 0;
  double e = portable_exp_f64(z);
  unsigned long long w = (unsigned long long)floor(__dmul_rn(e, 4294967296.0));
  *cand = w > 0 && !(c.min_p > 0.0 && e < c.min_p);
  return w;
}

template <typename T, typename Op>
__device__ T block_reduce(T v, T* scratch, Op op, T identity) {
  // Warp shuffles, then one value per warp through shared memory. Only used for operations where
  // the order does not matter (max, integer sums).
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < (int)(blockDim.x >> 5) ? scratch[lane] : identity;
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (lane == 0) scratch[0] = v;
  }
  __syncthreads();
  T r = scratch[0];
  __syncthreads();
  return r;
}

struct MaxU { __device__ unsigned int operator()(unsigned int a, unsigned int b) const { return a > b ? a : b; } };
struct AddU { __device__ unsigned int operator()(unsigned int a, unsigned int b) const { return a + b; } };
struct AddULL { __device__ unsigned long long operator()(unsigned long long a, unsigned long long b) const { return a + b; } };
struct MaxULL { __device__ unsigned long long operator()(unsigned long long a, unsigned long long b) const { return a > b ? a : b; } };

// Adds one to `hist[b]` (and `w` to `hsum[b]` when given) for every lane of the warp, with one
// atomic per distinct bucket rather than one per lane: in the first radix passes nearly every
// token falls in the same bucket, and per-lane atomics on one shared address serialise the block
// (measured: 8 ms per row on a 151,936-token vocabulary). Every lane of the warp must call it;
// `b < 0` adds nothing. `slot` holds one value per thread of the block.
__device__ void warp_bucket_add(unsigned int* hist, unsigned long long* hsum, int b,
                                unsigned long long w, unsigned long long* slot) {
  unsigned int peers = __match_any_sync(0xffffffffu, b);
  int lane = threadIdx.x & 31, base = threadIdx.x & ~31;
  slot[threadIdx.x] = w;
  __syncwarp();
  if (b >= 0 && lane == __ffs(peers) - 1) {
    atomicAdd(&hist[b], (unsigned int)__popc(peers));
    if (hsum != 0) {
      unsigned long long sum = 0;
      for (unsigned int m = peers; m != 0; m &= m - 1) sum += slot[base + __ffs(m) - 1];
      atomicAdd(&hsum[b], sum);
    }
  }
  __syncwarp();
}

// A token's weight as stored in the scratch row: the weight (at most 2^32) in the low bits and
// whether min-p keeps it in the top bit.
#define CANDIDATE_BIT 0x8000000000000000ull

__device__ __forceinline__ unsigned long long stored_weight(unsigned long long s, bool* cand) {
  *cand = (s & CANDIDATE_BIT) != 0;
  return s & ~CANDIDATE_BIT;
}

// logits: (rows, n) f32; draws: (rows, 2) u32, the draw's low and high words; weights: (rows, n)
// u64 scratch, each token's weight computed once (a double division and exponential) and read by
// every later pass; out: (rows) u32.
extern "C" __global__ void sample_rows(const float* logits, const unsigned int* draws,
                                       unsigned long long* weights, unsigned int* out, int n,
                                       double temperature, int top_k, double top_p,
                                       double min_p) {
  __shared__ unsigned int u32_scratch[32];
  __shared__ unsigned long long u64_scratch[32];
  __shared__ unsigned int hist[RADIX_BUCKETS];
  __shared__ unsigned long long hsum[RADIX_BUCKETS];
  __shared__ unsigned long long chosen[2];
  __shared__ unsigned long long prefix_sums[CHOOSE_THREADS];
  const float* lg = logits + (long long)blockIdx.x * n;
  unsigned long long* ws = weights + (long long)blockIdx.x * n;
  const int tid = threadIdx.x, nt = blockDim.x;

  // 1. The largest finite logit, and how many are finite.
  unsigned int best = 0, count = 0;
  for (int i = tid; i < n; i += nt) {
    float v = lg[i];
    if (is_finite_f32(v)) {
      best = max(best, float_key(v));
      count += 1;
    }
  }
  best = block_reduce(best, u32_scratch, MaxU(), 0u);
  count = block_reduce(count, u32_scratch, AddU(), 0u);
  if (count == 0) {
    // No finite logit: the host's argmax (first index of the largest non-NaN value, else 0).
    unsigned long long packed = 0;
    for (int i = tid; i < n; i += nt) {
      float v = lg[i];
      unsigned long long key = (v != v) ? 0ull : (unsigned long long)float_key(v);
      unsigned long long p = (key << 32) | (unsigned long long)(0xffffffffu - (unsigned int)i);
      packed = packed > p ? packed : p;
    }
    packed = block_reduce(packed, u64_scratch, MaxULL(), 0ull);
    if (tid == 0) out[blockIdx.x] = (packed >> 32) == 0 ? 0u : 0xffffffffu - (unsigned int)packed;
    return;
  }
  Cut cut;
  cut.max = key_float(best);
  cut.temperature = temperature;
  cut.min_p = min_p;
  cut.floor = -__int_as_float(0x7f800000);

  // 2. Top-k: the k-th largest finite logit, by radix selection over the keys, 8 bits a pass.
  if (top_k > 0 && (unsigned int)top_k < count) {
    unsigned int prefix = 0, mask = 0, want = (unsigned int)top_k;
    for (int shift = 24; shift >= 0; shift -= 8) {
      for (int b = tid; b < RADIX_BUCKETS; b += nt) hist[b] = 0;
      __syncthreads();
      for (int base = 0; base < n; base += nt) {
        int i = base + tid, b = -1;
        if (i < n && is_finite_f32(lg[i])) {
          unsigned int k = float_key(lg[i]);
          if ((k & mask) == prefix) b = (int)((k >> shift) & 0xff);
        }
        warp_bucket_add(hist, 0, b, 0ull, prefix_sums);
      }
      __syncthreads();
      if (tid == 0) {
        unsigned int above = 0;
        int b = RADIX_BUCKETS - 1;
        for (; b > 0; --b) {
          if (above + hist[b] >= want) break;
          above += hist[b];
        }
        chosen[0] = (unsigned long long)b;
        chosen[1] = (unsigned long long)(want - above);
      }
      __syncthreads();
      prefix |= (unsigned int)chosen[0] << shift;
      mask |= 0xffu << shift;
      want = (unsigned int)chosen[1];
      __syncthreads();
    }
    cut.floor = key_float(prefix);
  }

  // 3. Every token's weight, kept in the scratch row, and the top-k set's total weight.
  unsigned long long total = 0;
  for (int i = tid; i < n; i += nt) {
    bool cand;
    unsigned long long w = token_weight(lg[i], cut, &cand);
    ws[i] = w | (cand ? CANDIDATE_BIT : 0ull);
    total += w;
  }
  total = block_reduce(total, u64_scratch, AddULL(), 0ull);

  // 4. Top-p: tau, the largest weight whose candidates at or above it reach the target mass
  // (0, keeping every candidate, when they never do). Radix search over the weights (at most
  // 2^32, so 40 bits in five passes of 8), with the count and the weight sum of each bucket.
  unsigned long long tau = 0;
  if (top_p < 1.0) {
    unsigned long long target = (unsigned long long)ceil(__dmul_rn(top_p, (double)total));
    unsigned long long prefix = 0, mask = 0, above = 0;
    bool reached = true;
    for (int shift = 32; shift >= 0 && reached; shift -= 8) {
      for (int b = tid; b < RADIX_BUCKETS; b += nt) {
        hist[b] = 0;
        hsum[b] = 0;
      }
      __syncthreads();
      for (int base = 0; base < n; base += nt) {
        int i = base + tid, b = -1;
        unsigned long long w = 0;
        if (i < n) {
          bool cand;
          w = stored_weight(ws[i], &cand);
          if (cand && (w & mask) == prefix) b = (int)((w >> shift) & 0xff);
        }
        warp_bucket_add(hist, hsum, b, w, prefix_sums);
      }
      __syncthreads();
      if (tid == 0) {
        unsigned long long acc = above;
        int b = RADIX_BUCKETS - 1;
        for (; b >= 0; --b) {
          if (acc + hsum[b] >= target) break;
          acc += hsum[b];
        }
        chosen[0] = (unsigned long long)(b < 0 ? RADIX_BUCKETS : b);
        chosen[1] = acc;
      }
      __syncthreads();
      if (chosen[0] == RADIX_BUCKETS) {
        reached = false;  // the candidates' mass stays below the target: keep them all
      } else {
        prefix |= chosen[0] << shift;
        mask |= 0xffull << shift;
        above = chosen[1];
      }
      __syncthreads();
    }
    tau = reached ? prefix : 0;
  }

  // 5. Each thread's share of the kept weight over its own contiguous run of token ids, the
  // shares' running sums in thread order, and the draw's target in the total.
  const int per = (n + nt - 1) / nt;
  const int lo = tid * per, hi = min(n, lo + per);
  unsigned long long mine = 0;
  for (int i = lo; i < hi; ++i) {
    bool cand;
    unsigned long long w = stored_weight(ws[i], &cand);
    if (cand && w >= tau) mine += w;
  }
  prefix_sums[tid] = mine;
  __syncthreads();
  if (tid == 0) {
    unsigned long long acc = 0;
    for (int t = 0; t < nt; ++t) {
      unsigned long long s = prefix_sums[t];
      prefix_sums[t] = acc;
      acc += s;
    }
    unsigned long long draw = ((unsigned long long)draws[2 * blockIdx.x + 1] << 32) |
                              (unsigned long long)draws[2 * blockIdx.x];
    chosen[0] = __umul64hi(draw, acc);
  }
  __syncthreads();

  // 6. The first kept token, in id order, whose running weight sum exceeds the target: in the
  // run of the one thread whose share straddles it.
  unsigned long long target = chosen[0], acc = prefix_sums[tid];
  if (mine > 0 && acc <= target && target < acc + mine) {
    for (int i = lo; i < hi; ++i) {
      bool cand;
      unsigned long long w = stored_weight(ws[i], &cand);
      if (!(cand && w >= tau)) continue;
      acc += w;
      if (acc > target) {
        out[blockIdx.x] = (unsigned int)i;
        break;
      }
    }
  }
}
