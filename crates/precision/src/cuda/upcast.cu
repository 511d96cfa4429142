// LayerCast's matmul for the few rows of a decode step: y = x · Wᵀ (+ b) with W stored in bf16 and
// widened in registers, x and y in f32, f32 accumulation, the (bf16) bias widened and added last.
// The composed path writes an f32 copy of every weight before an f32 GEMM; at a handful of rows
// the matmul only streams W once, so the copy triples the bytes moved and adds a launch per
// projection.
//
// One warp per output column: lane `j` takes 8 consecutive weights (one 16-byte load) at
// `8 * (j + 32 i)`, multiplies them with the R rows of x and accumulates each row in its own f32
// register; the lanes' sums meet in a butterfly. R is a compile-time row count (the rows are
// `rows <= R`), so the accumulators stay in registers.

template <int R>
__device__ __forceinline__ void upcast_gemv(const float* __restrict__ x, const u16* __restrict__ w,
                                            const u16* __restrict__ bias, float* __restrict__ y,
                                            int rows, int n, int k) {
  int col = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (col >= n) return;
  const uint4* wr = reinterpret_cast<const uint4*>(w + (long)col * k);
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; r++) acc[r] = 0.f;
  int chunks = k >> 3;
#pragma unroll 2
  for (int c = lane; c < chunks; c += 32) {
    uint4 p = wr[c];
    float wv[8];
    wv[0] = __uint_as_float(p.x << 16); wv[1] = __uint_as_float(p.x & 0xffff0000u);
    wv[2] = __uint_as_float(p.y << 16); wv[3] = __uint_as_float(p.y & 0xffff0000u);
    wv[4] = __uint_as_float(p.z << 16); wv[5] = __uint_as_float(p.z & 0xffff0000u);
    wv[6] = __uint_as_float(p.w << 16); wv[7] = __uint_as_float(p.w & 0xffff0000u);
#pragma unroll
    for (int r = 0; r < R; r++) {
      if (r < rows) {
        const float4* xr = reinterpret_cast<const float4*>(x + (long)r * k) + 2 * c;
        float4 a = xr[0], b = xr[1];
        float s = acc[r];
        s = fmaf(a.x, wv[0], s); s = fmaf(a.y, wv[1], s); s = fmaf(a.z, wv[2], s); s = fmaf(a.w, wv[3], s);
        s = fmaf(b.x, wv[4], s); s = fmaf(b.y, wv[5], s); s = fmaf(b.z, wv[6], s); s = fmaf(b.w, wv[7], s);
        acc[r] = s;
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; r++) {
    for (int o = 16; o > 0; o >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], o);
  }
  if (lane == 0) {
#pragma unroll
    for (int r = 0; r < R; r++) {
      if (r < rows) y[(long)r * n + col] = bias ? __fadd_rn(acc[r], load_bf16(bias, col)) : acc[r];
    }
  }
}

#define UPCAST_GEMV(R)                                                                           \
  extern "C" __global__ void upcast_gemv_bf16_r##R(const float* x, const u16* w, const u16* bias,   \
                                                    float* y, int rows, int n, int k) {          \
    upcast_gemv<R>(x, w, bias, y, rows, n, k);                                                   \
  }
UPCAST_GEMV(1)
UPCAST_GEMV(2)
UPCAST_GEMV(4)
UPCAST_GEMV(8)
