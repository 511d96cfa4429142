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

// reprolm_precision::portable's exp and ln (portable.rs), step by step: every operation rounded
// once (the _rn intrinsics, which NVRTC never fuses into an FMA), the constants by their bits, so
// that a GPU computes the CPU's bits: the portable tier's SiLU and attention call portable_exp.
#define PORTABLE_F(bits) __uint_as_float(bits##u)
__device__ __forceinline__ float portable_pow2(int k) { return __int_as_float((k + 127) << 23); }
__device__ float portable_exp(float x) {
  if (x != x) return x;
  if (x > PORTABLE_F(0x42b17218)) return __int_as_float(0x7f800000);  // exp overflows f32
  if (x < PORTABLE_F(0xc2cff1b4)) return 0.f;                         // under half the least subnormal
  const float n = rintf(__fmul_rn(x, PORTABLE_F(0x3fb8aa3b)));        // round(x log2 e), ties to even
  const float r = __fsub_rn(__fsub_rn(x, __fmul_rn(n, PORTABLE_F(0x3f317200))),
                            __fmul_rn(n, PORTABLE_F(0x35bfbe8e)));    // x - n ln2 (hi, lo)
  float t = PORTABLE_F(0x39500d01);                                   // 1/5040
  t = __fadd_rn(PORTABLE_F(0x3ab60b61), __fmul_rn(r, t));             // 1/720
  t = __fadd_rn(PORTABLE_F(0x3c088889), __fmul_rn(r, t));             // 1/120
  t = __fadd_rn(PORTABLE_F(0x3d2aaaab), __fmul_rn(r, t));             // 1/24
  t = __fadd_rn(PORTABLE_F(0x3e2aaaab), __fmul_rn(r, t));             // 1/6
  t = __fadd_rn(0.5f, __fmul_rn(r, t));
  t = __fadd_rn(1.f, __fmul_rn(r, t));
  const float p = __fadd_rn(1.f, __fmul_rn(r, t));
  const int k = (int)n;
  if (k > 127) return __fmul_rn(__fmul_rn(p, portable_pow2(127)), portable_pow2(k - 127));
  if (k < -126) return __fmul_rn(__fmul_rn(p, portable_pow2(k + 126)), portable_pow2(-126));
  return __fmul_rn(p, portable_pow2(k));
}
__device__ float portable_ln(float x) {
  if (x != x || x < 0.f) return __int_as_float(0x7fc00000);
  if (x == 0.f) return NEG_INF;
  if (x == __int_as_float(0x7f800000)) return x;
  unsigned bits = __float_as_uint(x);
  int e = 0;
  if (bits < 0x00800000u) {  // a subnormal: 2^23 x is normal, exactly
    bits = __float_as_uint(__fmul_rn(x, portable_pow2(23)));
    e = -23;
  }
  e += (int)(bits >> 23) - 127;
  float m = __uint_as_float((bits & 0x007fffffu) | 0x3f800000u);
  if (m > PORTABLE_F(0x3fb504f3)) {  // sqrt(2)
    m = __fmul_rn(m, 0.5f);
    e += 1;
  }
  const float f = __fsub_rn(m, 1.f);
  const float s = __fdiv_rn(f, __fadd_rn(2.f, f));
  const float z = __fmul_rn(s, s);
  float t = PORTABLE_F(0x3e638e39);                        // 2/9
  t = __fadd_rn(PORTABLE_F(0x3e924925), __fmul_rn(z, t));  // 2/7
  t = __fadd_rn(PORTABLE_F(0x3ecccccd), __fmul_rn(z, t));  // 2/5
  t = __fadd_rn(PORTABLE_F(0x3f2aaaab), __fmul_rn(z, t));  // 2/3
  const float tail = __fmul_rn(z, t);
  const float half_f2 = __fmul_rn(__fmul_rn(0.5f, f), f);
  const float ln_m = __fsub_rn(f, __fsub_rn(half_f2, __fmul_rn(s, __fadd_rn(half_f2, tail))));
  const float ef = (float)e;
  return __fadd_rn(__fmul_rn(ef, PORTABLE_F(0x3f317200)),
                   __fadd_rn(__fmul_rn(ef, PORTABLE_F(0x35bfbe8e)), ln_m));
}
