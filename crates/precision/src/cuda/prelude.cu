// Shared by every reprolm kernel source: 16-bit floats as raw words, converted exactly to f32
// and rounded to nearest-even back.
typedef unsigned short u16;
// NVRTC compiles without the C headers, so there is no INFINITY.
#define NEG_INF __int_as_float(0xff800000)

__device__ __forceinline__ float load_f32(const float* p, long i) { return p[i]; }
__device__ __forceinline__ float load_bf16(const u16* p, long i) { return __uint_as_float(((unsigned)p[i]) << 16); }
__device__ __forceinline__ float load_f16(const u16* p, long i) {
  float f; u16 h = p[i]; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f;
}
__device__ __forceinline__ u16 to_bf16(float f) {
  unsigned u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (u16)((u >> 16) | 0x40u);  // NaN stays NaN
  return (u16)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);                 // round to nearest even
}
__device__ __forceinline__ u16 to_f16(float f) { u16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
__device__ __forceinline__ float round_f32(float f) { return f; }
__device__ __forceinline__ float round_bf16(float f) { return __uint_as_float(((unsigned)to_bf16(f)) << 16); }
__device__ __forceinline__ float round_f16(float f) {
  float g; u16 h = to_f16(f); asm("cvt.f32.f16 %0, %1;" : "=f"(g) : "h"(h)); return g;
}
__device__ __forceinline__ void store_f32(float* p, long i, float v) { p[i] = v; }
__device__ __forceinline__ void store_bf16(u16* p, long i, float v) { p[i] = to_bf16(v); }
__device__ __forceinline__ void store_f16(u16* p, long i, float v) { p[i] = to_f16(v); }
