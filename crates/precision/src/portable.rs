//! Transcendental functions written out as one sequence of IEEE operations, so that every
//! machine that runs the sequence gets the same bits: the first piece of the portable kernel tier.
//!
//! `f32::exp`, `f32::ln` and `f64::sin` call the platform's libm (glibc, macOS's, musl's), and
//! GPUs have their own `expf`; each is accurate to an ulp or so, and they disagree in the last
//! bit often enough that a log-probability computed on two machines differs. Here every function
//! uses only `+`, `-`, `*`, `/`, rounding to an integer and moves of exponent bits. IEEE 754
//! rounds each of those correctly, so their results are the same everywhere, provided that:
//!
//! - nothing is fused: Rust never contracts `a * b + c` into a fused multiply-add (LLVM fuses
//!   only under fast-math flags, which Rust does not set), and a CUDA body must spell each step
//!   as `__fmul_rn` / `__fadd_rn` / `__fdiv_rn`, which nvcc and NVRTC never contract;
//! - subnormals are kept (no flush-to-zero, which CPUs do only when asked and CUDA only under
//!   `-ftz=true` or `--use_fast_math`);
//! - the f32 steps run in f32 (SSE2 and every ARM FPU do; x87's extended precision would not).
//!
//! The price is a little accuracy where libm is correctly rounded or nearly: measured against
//! `f64` (the tests in this file), [`exp`] is within 1.5 ulps of the exact value, [`ln`] within
//! 1 ulp (of 2^-24 near 1), and [`sin_cos`], computed in f64 and rounded once, within 0.51 ulps
//! for angles up to 2^20.
//!
//! [`exp_f64`] is the double-precision exponential of the token sampler, whose CPU and CUDA
//! bodies already compute the same bits; with [`ln_f64`] it makes [`pow_f64`], which gives RoPE's
//! frequencies.
//!
//! ```
//! use reprolm_precision::portable;
//! assert_eq!(portable::exp(0.0), 1.0);
//! assert_eq!(portable::ln(1.0), 0.0);
//! let (s, c) = portable::sin_cos(0.5);
//! assert!((s - 0.5f32.sin()).abs() <= f32::EPSILON && (c - 0.5f32.cos()).abs() <= f32::EPSILON);
//! ```

/// log2(e) rounded to f32.
const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln 2 in two parts: the high part has 16 significant bits, so `n * LN2_HI` is exact for every
/// exponent n an f32 can have (|n| < 2^8); `LN2_HI + LN2_LO` is ln 2 to about 2^-40.
const LN2_HI: f32 = f32::from_bits(0x3f31_7200); // 0.693145751953125
const LN2_LO: f32 = 1.428_606_8e-6;
/// ln 2 in two f64 parts (fdlibm's): the high part has 32 trailing zero bits, so `k * LN2_HI_F64`
/// is exact for |k| < 2^21; for [`exp_f64`] and [`ln_f64`].
const LN2_HI_F64: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000);
const LN2_LO_F64: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76);
/// Above this exp overflows f32 (exp(88.72284) > f32::MAX); below the other it is under half the
/// smallest subnormal.
const EXP_OVERFLOW: f32 = 88.722_84;
const EXP_UNDERFLOW: f32 = -103.972_08;

/// 2^k as an f32 for k in -126..=127 (a normal number: its bits are the biased exponent).
fn pow2(k: i32) -> f32 {
    debug_assert!((-126..=127).contains(&k));
    f32::from_bits(((k + 127) as u32) << 23)
}

/// e^x in f32, within 1.5 ulps, the same bits on every IEEE machine (see the module docs).
///
/// x = n ln 2 + r with n = round(x log2 e) and |r| <= ln 2 / 2 + a little; e^r by its Taylor
/// polynomial to r^7 in Horner form (the next term is under 2^-27 of the result), then times
/// 2^n, in two steps below 2^-126 so that a subnormal result is rounded once.
///
/// ```
/// use reprolm_precision::portable::exp;
/// assert_eq!(exp(f32::NEG_INFINITY), 0.0);
/// assert_eq!(exp(100.0), f32::INFINITY);
/// assert!((exp(1.0) - std::f32::consts::E).abs() <= 2.0 * f32::EPSILON * std::f32::consts::E);
/// ```
pub fn exp(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    if x > EXP_OVERFLOW {
        return f32::INFINITY;
    }
    if x < EXP_UNDERFLOW {
        return 0.0;
    }
    let n = (x * LOG2_E).round_ties_even();
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let n = n as i32;
    if n > 127 {
        p * pow2(127) * pow2(n - 127)
    } else if n < -126 {
        // p * 2^(n + 126) is normal and exact; the last product rounds once into the subnormals.
        p * pow2(n + 126) * pow2(-126)
    } else {
        p * pow2(n)
    }
}

/// The natural logarithm in f32, within 1 ulp, the same bits on every IEEE machine (see the
/// module docs). NaN below zero, -inf at zero.
///
/// x = m 2^e with m in [sqrt(1/2), sqrt(2)); ln m = 2 atanh(s) with s = (m - 1) / (m + 1),
/// |s| < 0.172, by its series to s^9 (the next term is under 2^-30 of ln m), arranged around
/// the exact m - 1; then ln x = e ln 2 + ln m with ln 2 in two parts.
///
/// ```
/// use reprolm_precision::portable::ln;
/// assert_eq!(ln(0.0), f32::NEG_INFINITY);
/// assert!(ln(-1.0).is_nan());
/// assert!((ln(10.0) - std::f32::consts::LN_10).abs() <= 2.0 * f32::EPSILON * 2.0);
/// ```
pub fn ln(x: f32) -> f32 {
    if x.is_nan() || x < 0.0 {
        return f32::NAN;
    }
    if x == 0.0 {
        return f32::NEG_INFINITY;
    }
    if x == f32::INFINITY {
        return x;
    }
    let (mut bits, mut e) = (x.to_bits(), 0i32);
    if bits < 0x0080_0000 {
        // A subnormal: 2^23 x is normal, exactly.
        bits = (x * pow2(23)).to_bits();
        e = -23;
    }
    e += (bits >> 23) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    if m > std::f32::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    // m - 1 is exact (Sterbenz: m is within a factor 2 of 1).
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let tail = z * (2.0 / 3.0 + z * (2.0 / 5.0 + z * (2.0 / 7.0 + z * (2.0 / 9.0))));
    // 2s + s·tail, written (as fdlibm does) around the exact f: 2s = f - s f and
    // s f = f²/2 (1 - s), so ln m = f - (f²/2 - s (f²/2 + tail)), whose rounding errors all sit
    // in the small correction.
    let half_f2 = 0.5 * f * f;
    let ln_m = f - (half_f2 - s * (half_f2 + tail));
    let e = e as f32;
    e * LN2_HI + (e * LN2_LO + ln_m)
}

/// e^x in f64 for x in [-708, 709] (where 2^k below is a normal double), from additions and
/// multiplications only, so that every device that rounds IEEE double operations computes the
/// same bits: the token sampler's weights (`floor(e^z · 2^32)`, z in [-22.2, 0]) come from it on
/// the CPU, and its CUDA body (`sampling/choose.cu` in the engine) spells the same steps with
/// `__dadd_rn`/`__dmul_rn`. Range reduction `x = k·ln 2 + r` (Cody–Waite: `k·LN2_HI_F64` is exact
/// for `|k| < 2^11`), then the Taylor series of `e^r` to degree 12 for `|r| <= ln(2)/2` (error
/// below 4e-16 relative).
///
/// ```
/// use reprolm_precision::portable::exp_f64;
/// assert_eq!(exp_f64(0.0), 1.0);
/// assert!((exp_f64(-1.0) - (-1f64).exp()).abs() < 1e-16);
/// ```
pub fn exp_f64(x: f64) -> f64 {
    debug_assert!(
        (-708.0..=709.0).contains(&x),
        "exp_f64({x}) is out of its range"
    );
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    const INV_FACT: [f64; 13] = [
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
    ];
    let k = (x * LOG2E + 0.5).floor();
    let r = (x - k * LN2_HI_F64) - k * LN2_LO_F64;
    let mut p = INV_FACT[12];
    for c in INV_FACT[..12].iter().rev() {
        p = p * r + c;
    }
    // 2^k, exactly (k is in [-1022, 1023] over the range).
    p * f64::from_bits(((1023 + k as i64) as u64) << 52)
}

/// The natural logarithm of a positive, finite, normal f64, from additions, multiplications and
/// one division only, so that every IEEE machine computes the same bits (libm's `log` differs
/// between C libraries in the last bit now and then): within 3e-16 (about 1.4 ulps) relative of
/// libm's value away from 1, and 3e-16 absolute near it.
///
/// x = m 2^e with m in [sqrt(1/2), sqrt(2)); ln m = 2 atanh(s) with s = (m - 1) / (m + 1),
/// |s| < 0.172, by its series to s^23 (the next term is under 2^-60 of ln m), arranged around the
/// exact m - 1 as [`ln`] is; then e ln 2 + ln m with ln 2 in two parts.
///
/// ```
/// use reprolm_precision::portable::ln_f64;
/// assert_eq!(ln_f64(1.0), 0.0);
/// assert!((ln_f64(10_000.0) - 10_000f64.ln()).abs() <= 2.0 * f64::EPSILON * 10_000f64.ln());
/// ```
pub fn ln_f64(x: f64) -> f64 {
    debug_assert!(
        x.is_finite() && x >= f64::MIN_POSITIVE,
        "ln_f64({x}) is out of its range"
    );
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    // m - 1 is exact (Sterbenz).
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    // 2/3 z + 2/5 z² + ... + 2/23 z^11, by Horner from the last term.
    let mut tail = 2.0 / 23.0;
    for k in (1..=10).rev() {
        tail = 2.0 / (2 * k + 1) as f64 + z * tail;
    }
    let tail = z * tail;
    let half_f2 = 0.5 * f * f;
    let ln_m = f - (half_f2 - s * (half_f2 + tail));
    let e = e as f64;
    e * LN2_HI_F64 + (e * LN2_LO_F64 + ln_m)
}

/// `base^y` for a positive base and `|y ln base| <= 708`, as `exp_f64(y · ln_f64(base))`: the
/// same bits on every IEEE machine, within 1e-14 relative of libm's `powf` over the arguments
/// of RoPE's frequencies `theta^(-2i/d)`, which come from it.
///
/// ```
/// use reprolm_precision::portable::pow_f64;
/// assert!((pow_f64(10_000.0, 0.5) - 100.0).abs() < 1e-12);
/// ```
pub fn pow_f64(base: f64, y: f64) -> f64 {
    exp_f64(y * ln_f64(base))
}

/// π/2 in three parts of 33 bits each (fdlibm's split): for |k| < 2^20, `k * PIO2_1` and
/// `k * PIO2_2` are exact in f64, and the three together are π/2 to about 2^-150.
const PIO2_1: f64 = 1.570_796_326_734_125_6;
const PIO2_2: f64 = 6.077_100_506_303_966e-11;
const PIO2_3: f64 = 2.022_266_248_795_950_6e-21;

/// sin and cos of an f32 angle (RoPE's `position * inv_freq`), the same bits on every IEEE
/// machine (see the module docs): within 0.51 ulps of the exact values for |a| < 2^20, computed in
/// f64 and rounded once. Beyond 2^20 (no model's positions reach it) the reduction is no longer
/// exact and the result, still the same on every machine, loses accuracy.
///
/// a = k π/2 + r with |r| <= π/4 + a little, r formed with π/2 in three parts; sin r and cos r by
/// their Taylor polynomials to r^15 and r^16 (the next terms are under 2^-60); then the quadrant
/// k mod 4 picks and signs them.
///
/// ```
/// use reprolm_precision::portable::sin_cos;
/// assert_eq!(sin_cos(0.0), (0.0, 1.0));
/// let (s, c) = sin_cos(1000.0);
/// assert!((s as f64 - 1000f64.sin()).abs() < 1e-7 && (c as f64 - 1000f64.cos()).abs() < 1e-7);
/// ```
pub fn sin_cos(a: f32) -> (f32, f32) {
    if !a.is_finite() {
        return (f32::NAN, f32::NAN);
    }
    let a = a as f64;
    let k = (a * std::f64::consts::FRAC_2_PI).round_ties_even();
    let r = ((a - k * PIO2_1) - k * PIO2_2) - k * PIO2_3;
    let z = r * r;
    // Coefficients 1/n! in f64 (each rounded once from its exact value; the same constants on
    // every machine).
    let sin_r = r + r
        * z
        * (-1.0 / 6.0
            + z * (1.0 / 120.0
                + z * (-1.0 / 5040.0
                    + z * (1.0 / 362_880.0
                        + z * (-1.0 / 39_916_800.0
                            + z * (1.0 / 6_227_020_800.0 + z * (-1.0 / 1_307_674_368_000.0)))))));
    let cos_r = 1.0
        + z * (-0.5
            + z * (1.0 / 24.0
                + z * (-1.0 / 720.0
                    + z * (1.0 / 40_320.0
                        + z * (-1.0 / 3_628_800.0
                            + z * (1.0 / 479_001_600.0
                                + z * (-1.0 / 87_178_291_200.0
                                    + z * (1.0 / 20_922_789_888_000.0))))))));
    let (s, c) = match (k as i64).rem_euclid(4) {
        0 => (sin_r, cos_r),
        1 => (cos_r, -sin_r),
        2 => (-sin_r, -cos_r),
        _ => (-cos_r, sin_r),
    };
    (s as f32, c as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f32 inputs spread over `lo..hi` by a fixed 64-bit generator (the same inputs on every
    /// machine, so a failure names a reproducible input).
    fn inputs(lo: f32, hi: f32, count: usize) -> Vec<f32> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..count)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let u = (state >> 40) as f32 / (1u64 << 24) as f32;
                lo + (hi - lo) * u
            })
            .collect()
    }

    /// The distance from `got` to the exact `want`, in ulps of the f32 nearest `want` (the
    /// spacing of f32 values at that magnitude; subnormals all have the smallest spacing).
    fn ulps(got: f32, want: f64) -> f64 {
        let near = want as f32;
        let spacing = if near.abs() < f32::MIN_POSITIVE {
            f32::from_bits(1) as f64
        } else {
            let next = f32::from_bits(near.abs().to_bits() + 1) as f64;
            next - near.abs() as f64
        };
        (got as f64 - want).abs() / spacing
    }

    /// [`ulps`], except where |want| < 2^-24: a function that crosses zero there (ln near 1, sin
    /// and cos near their zeros) is measured in ulps of 2^-24 (units of 2^-47), since the value's
    /// own ulps vanish with it.
    fn ulps_near_zero(got: f32, want: f64) -> f64 {
        if want.abs() < 1.0 / (1u32 << 24) as f64 {
            (got as f64 - want).abs() * (1u64 << 47) as f64
        } else {
            ulps(got, want)
        }
    }

    /// The largest error `err` gives over `xs`, and the first input that gives it.
    fn worst(xs: Vec<f32>, err: impl Fn(f32) -> f64) -> (f64, f32) {
        xs.into_iter().fold((0.0, 0.0), |w, x| {
            let e = err(x);
            if e > w.0 {
                (e, x)
            } else {
                w
            }
        })
    }

    #[test]
    fn exp_is_within_1_5_ulps_of_f64_over_its_whole_range() {
        let mut xs = inputs(-103.0, 88.7, 400_000);
        xs.extend(inputs(-1.0, 1.0, 200_000));
        xs.extend([0.0, -0.0, 1e-30, -1e-30, 88.72, -87.3, -100.0, -103.9]);
        let worst = worst(xs, |x| ulps(exp(x), (x as f64).exp()));
        eprintln!("exp: worst {} ulps at {}", worst.0, worst.1);
        assert!(worst.0 <= 1.5, "exp({}) is {} ulps off", worst.1, worst.0);
    }

    #[test]
    fn ln_is_within_an_ulp_of_f64_on_normals_and_subnormals() {
        let mut xs: Vec<f32> = inputs(-126.0, 127.9, 300_000)
            .into_iter()
            .map(|e| (e as f64).exp2() as f32)
            .collect();
        xs.extend(inputs(0.5, 2.0, 300_000));
        xs.extend([
            f32::from_bits(1),
            f32::MIN_POSITIVE,
            f32::MAX,
            1.0 + f32::EPSILON,
        ]);
        let worst = worst(xs, |x| ulps_near_zero(ln(x), (x as f64).ln()));
        eprintln!("ln: worst {} ulps at {:e}", worst.0, worst.1);
        assert!(worst.0 <= 1.0, "ln({:e}) is {} ulps off", worst.1, worst.0);
    }

    #[test]
    fn sin_cos_are_within_0_51_ulps_of_f64_up_to_2_pow_20() {
        let mut xs = inputs(-(1 << 20) as f32, (1 << 20) as f32, 200_000);
        xs.extend(inputs(-7.0, 7.0, 200_000));
        // RoPE's angles: positions times inverse frequencies of a 128-wide head.
        for p in [1u32, 17, 511, 4096, 32_767, 131_071] {
            for i in 0..64 {
                let inv = 1.0 / 1e6f64.powf(2.0 * i as f64 / 128.0);
                xs.push(p as f32 * inv as f32);
            }
        }
        let worst = worst(xs, |a| {
            let (s, c) = sin_cos(a);
            ulps_near_zero(s, (a as f64).sin()).max(ulps_near_zero(c, (a as f64).cos()))
        });
        eprintln!("sin_cos: worst {} ulps at {}", worst.0, worst.1);
        assert!(
            worst.0 <= 0.51,
            "sin_cos({}) is {} ulps off",
            worst.1,
            worst.0
        );
    }

    #[test]
    fn exp_f64_is_within_4e_16_of_libm_over_its_range() {
        let mut worst = (0f64, 0f64);
        for i in 0..=400_000 {
            let x = -708.0 + 1417.0 * f64::from(i) / 400_000.0;
            let rel = (exp_f64(x) - x.exp()).abs() / x.exp();
            if rel > worst.0 {
                worst = (rel, x);
            }
        }
        assert!(worst.0 < 4e-16, "exp_f64({}) is {:e} off", worst.1, worst.0);
    }

    #[test]
    fn ln_f64_is_within_3e_16_of_libm() {
        let mut worst = (0f64, 0f64);
        let mut x = f64::MIN_POSITIVE;
        // 2^-1022 to about 2^1000 in steps of a little over 0.07%, and around 1 densely.
        let xs = std::iter::from_fn(|| {
            x *= 1.000_7;
            (x < 1e300).then_some(x)
        })
        .chain((0..100_000).map(|i| 0.9 + 0.2 * f64::from(i) / 100_000.0));
        for x in xs {
            let want = x.ln();
            let err = (ln_f64(x) - want).abs() / want.abs().max(1.0);
            if err > worst.0 {
                worst = (err, x);
            }
        }
        assert!(worst.0 < 3e-16, "ln_f64({}) is {:e} off", worst.1, worst.0);
        assert_eq!(ln_f64(1.0), 0.0);
    }

    #[test]
    fn pow_f64_gives_ropes_frequencies_as_libm_does() {
        // theta^(2i/d) for the thetas and head widths models use: within 1e-14 of libm (the
        // error of ln theta grows by y ln theta, up to 16, in the exponential), and the same f32
        // after rounding (what a frequency is) in every case here.
        for theta in [10_000.0, 500_000.0, 1_000_000.0, 1e7] {
            for d in [32usize, 64, 80, 128, 256] {
                for i in 0..d / 2 {
                    let y = (2 * i) as f64 / d as f64;
                    let (got, want) = (pow_f64(theta, y), f64::powf(theta, y));
                    assert!((got - want).abs() <= 1e-14 * want, "{theta}^{y}");
                    assert_eq!((1.0 / got) as f32, (1.0 / want) as f32, "{theta}^{y}");
                }
            }
        }
    }

    #[test]
    fn specials() {
        assert!(exp(f32::NAN).is_nan() && ln(f32::NAN).is_nan());
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(ln(f32::INFINITY), f32::INFINITY);
        assert_eq!(ln(-0.0), f32::NEG_INFINITY);
        let (s, c) = sin_cos(f32::INFINITY);
        assert!(s.is_nan() && c.is_nan());
        // The smallest results: exp's last subnormals and zero.
        assert_eq!(exp(-103.28), f32::from_bits(1));
        assert_eq!(exp(-104.0), 0.0);
    }
}
