//! Causal attention over a left-padded batch, each query reduced over its own row's valid keys
//! in one fixed order.
//!
//! A batched matmul over the padded key axis would group a row's terms by where they sit in the
//! padded tensor, so the same sequence would get other bits with other padding. Here the sum for
//! a query starts at its row's first real slot and runs key by key, so only the row's own keys,
//! in the row's own order, enter it: prefill, decode and any chunking of a prompt compute each
//! query's output the same way.

use super::{dot, require_cpu, tensor_from, values, Float};
use crate::{Error, Result};
use candle_core::{DType, Tensor};
use rayon::prelude::*;

/// Which cache slots of each batch row hold real keys.
///
/// ```
/// use reprolm_precision::deterministic::AttentionRows;
/// // Two rows; the second prompt was left-padded by 3 slots; 5 slots were cached before.
/// let rows = AttentionRows { starts: &[0, 3], past: 5 };
/// assert_eq!(rows.past, 5);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct AttentionRows<'a> {
    /// First real slot of each row (the row's left padding).
    pub starts: &'a [usize],
    /// Slots cached before this call; query `i` sits at slot `past + i`.
    pub past: usize,
}

/// `softmax(q·kᵀ · scale, causal) · v` for `q: (batch, heads, queries, head_dim)` and
/// `k, v: (batch, kv_heads, past + queries, head_dim)`, with query heads grouped over the key/value
/// heads (GQA, read in place), the result `(batch, heads, queries, head_dim)` in `dtype`.
///
/// Query `i` of row `b` sees slots `starts[b] ..= past + i` (a padding query, before `starts[b]`,
/// sees only itself, so no softmax is empty). With `dtype` the attention dtype and the
/// accumulator f32 (f64 for f64), each query computes, over its visible slots `j` in increasing
/// order:
/// 1. `s_j = round(round(q · k_j) · scale)`: the dot product in the lane order of the
///    [module docs](super), rounded to `dtype`, scaled in the accumulator and rounded again (as
///    a `dtype` matmul followed by a scale in f32);
/// 2. `m = max s_j`, `e_j = exp(s_j − m)`, `z = Σ e_j` (sequential), `p_j = round(e_j / z)`;
/// 3. `out = round(Σ p_j · v_j)`, the sum sequential over `j` (`acc = fma(p_j, v_j, acc)`),
///    element-wise over `head_dim`.
///
/// `round` is the rounding to `dtype`. Operands are taken as their values in `dtype`.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use reprolm_precision::deterministic::{attention, AttentionRows};
/// let dev = Device::Cpu;
/// let q = Tensor::randn(0f32, 1.0, (1, 2, 3, 4), &dev)?;
/// let k = Tensor::randn(0f32, 1.0, (1, 1, 3, 4), &dev)?;
/// let v = Tensor::randn(0f32, 1.0, (1, 1, 3, 4), &dev)?;
/// let out = attention(&q, &k, &v, AttentionRows { starts: &[0], past: 0 }, 0.5, DType::F32)?;
/// assert_eq!(out.dims(), &[1, 2, 3, 4]);
/// # Ok::<(), reprolm_precision::Error>(())
/// ```
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    rows: AttentionRows<'_>,
    scale: f64,
    dtype: DType,
) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if q.device().is_cuda() {
        return Ok(crate::cuda::deterministic::attention(
            q,
            k,
            v,
            rows.starts,
            rows.past,
            scale,
            dtype,
        )?);
    }
    let shape_err = |reason: String| Error::KernelShape {
        op: "deterministic attention",
        reason,
    };
    let (b, h, l, d) = q
        .dims4()
        .map_err(|_| shape_err(format!("q must be 4-D, got {:?}", q.dims())))?;
    let (kb, kvh, t, kd) = k
        .dims4()
        .map_err(|_| shape_err(format!("k must be 4-D, got {:?}", k.dims())))?;
    if (kb, kd) != (b, d) || v.dims() != k.dims() {
        return Err(shape_err(format!(
            "q {:?}, k {:?} and v {:?} do not fit together",
            q.dims(),
            k.dims(),
            v.dims()
        )));
    }
    if kvh == 0 || h % kvh != 0 {
        return Err(shape_err(format!(
            "{h} query heads cannot be grouped over {kvh} key/value heads"
        )));
    }
    if rows.starts.len() != b || t != rows.past + l {
        return Err(shape_err(format!(
            "{} row starts and {} past slots for q {:?} and k {:?}",
            rows.starts.len(),
            rows.past,
            q.dims(),
            k.dims()
        )));
    }
    for t in [q, k, v] {
        require_cpu("deterministic attention", t)?;
    }
    let shape = Shape {
        h,
        kvh,
        l,
        t,
        d,
        past: rows.past,
    };
    if dtype == DType::F64 {
        let out = run::<f64>(q, k, v, rows.starts, shape, scale, dtype)?;
        tensor_from(out, &[b, h, l, d])
    } else {
        let out = run::<f32>(q, k, v, rows.starts, shape, scale, dtype)?;
        Ok(tensor_from(out, &[b, h, l, d])?.to_dtype(dtype)?)
    }
}

#[derive(Clone, Copy)]
struct Shape {
    h: usize,
    kvh: usize,
    l: usize,
    t: usize,
    d: usize,
    past: usize,
}

fn run<T: Float>(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    starts: &[usize],
    s: Shape,
    scale: f64,
    dtype: DType,
) -> Result<Vec<T>> {
    let (q, k, v) = (
        values::<T>(q, dtype)?,
        values::<T>(k, dtype)?,
        values::<T>(v, dtype)?,
    );
    let scale = T::from_f64(scale);
    let group = s.h / s.kvh;
    let block = s.l * s.d;
    let mut out = vec![T::ZERO; starts.len() * s.h * block];
    out.par_chunks_mut(block).enumerate().for_each(|(bh, dst)| {
        let (b, head) = (bh / s.h, bh % s.h);
        let kv = (b * s.kvh + head / group) * s.t * s.d;
        let head = Head {
            q: &q[bh * block..(bh + 1) * block],
            keys: &k[kv..kv + s.t * s.d],
            vals: &v[kv..kv + s.t * s.d],
            start: starts[b],
        };
        head_best(&head, s, scale, dtype, dst);
    });
    Ok(out)
}

/// One (row, query head): its queries, and the keys and values of its key/value head.
struct Head<'a, T> {
    q: &'a [T],
    keys: &'a [T],
    vals: &'a [T],
    /// The row's first real slot.
    start: usize,
}

/// [`head`] compiled for the widest vector unit this CPU has; every path gives the same bits
/// (see `column_block_best` in the matmul module).
fn head_best<T: Float>(h: &Head<'_, T>, s: Shape, scale: T, dtype: DType, dst: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        return unsafe { head_avx2(h, s, scale, dtype, dst) };
    }
    head(h, s, scale, dtype, dst)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn head_avx2<T: Float>(h: &Head<'_, T>, s: Shape, scale: T, dtype: DType, dst: &mut [T]) {
    head(h, s, scale, dtype, dst)
}

/// Every query of one (row, head), in the order documented on [`attention`].
#[inline(always)]
fn head<T: Float>(h: &Head<'_, T>, s: Shape, scale: T, dtype: DType, dst: &mut [T]) {
    let mut scores: Vec<T> = Vec::with_capacity(s.t);
    let mut acc = vec![T::ZERO; s.d];
    for i in 0..s.l {
        let slot = s.past + i;
        let first = if slot >= h.start { h.start } else { slot };
        let qi = &h.q[i * s.d..(i + 1) * s.d];
        scores.clear();
        let mut max = T::NEG_INFINITY;
        for j in first..=slot {
            let raw = dot(qi, &h.keys[j * s.d..(j + 1) * s.d]).round_to(dtype);
            let sj = (raw * scale).round_to(dtype);
            if sj > max {
                max = sj;
            }
            scores.push(sj);
        }
        let mut z = T::ZERO;
        for e in scores.iter_mut() {
            *e = (*e - max).exp();
            z = z + *e;
        }
        acc.iter_mut().for_each(|a| *a = T::ZERO);
        for (n, &e) in scores.iter().enumerate() {
            let p = (e / z).round_to(dtype);
            let vj = &h.vals[(first + n) * s.d..(first + n + 1) * s.d];
            for (a, &x) in acc.iter_mut().zip(vj) {
                *a = p.mul_add(x, *a);
            }
        }
        for (o, &a) in dst[i * s.d..(i + 1) * s.d].iter_mut().zip(&acc) {
            *o = a.round_to(dtype);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deterministic::bits;
    use candle_core::{Device, IndexOp};

    fn rand(dims: (usize, usize, usize, usize), seed: u64) -> Tensor {
        let n = dims.0 * dims.1 * dims.2 * dims.3;
        let mut s = seed;
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.0
            })
            .collect();
        Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
    }

    #[test]
    #[allow(clippy::needless_range_loop)] // indexes q, the probabilities and v alike
    fn matches_a_float64_causal_softmax() -> Result<()> {
        let (h, kvh, l, d) = (4, 2, 5, 8);
        let (q, k, v) = (
            rand((1, h, l, d), 1),
            rand((1, kvh, l, d), 2),
            rand((1, kvh, l, d), 3),
        );
        let got = attention(
            &q,
            &k,
            &v,
            AttentionRows {
                starts: &[0],
                past: 0,
            },
            0.35,
            DType::F32,
        )?;
        for head in 0..h {
            let (qh, kh, vh) = (
                q.i((0, head))?.to_dtype(DType::F64)?,
                k.i((0, head / 2))?.to_dtype(DType::F64)?,
                v.i((0, head / 2))?.to_dtype(DType::F64)?,
            );
            let s = (qh.matmul(&kh.t()?)? * 0.35)?.to_vec2::<f64>()?;
            let vh = vh.to_vec2::<f64>()?;
            for (i, row) in s.iter().enumerate() {
                let m = row[..=i].iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = row[..=i].iter().map(|x| (x - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for c in 0..d {
                    let want: f64 = (0..=i).map(|j| e[j] / z * vh[j][c]).sum();
                    let got = got.i((0, head, i, c))?.to_scalar::<f32>()? as f64;
                    assert!(
                        (got - want).abs() < 1e-5,
                        "head {head} query {i}: {got} vs {want}"
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn padding_chunking_and_batch_do_not_move_a_bit() -> Result<()> {
        let (h, kvh, l, d) = (2, 1, 6, 16);
        for dt in [DType::F32, DType::BF16] {
            let (q, k, v) = (
                rand((1, h, l, d), 4),
                rand((1, kvh, l, d), 5),
                rand((1, kvh, l, d), 6),
            );
            let rows = AttentionRows {
                starts: &[0],
                past: 0,
            };
            let alone = attention(&q, &k, &v, rows, 0.25, dt)?;
            // The same sequence left-padded by 3 slots next to another row.
            let pad = 3;
            let padded = |t: &Tensor, seed| -> Result<Tensor> {
                let other = rand((1, t.dim(1)?, l + pad, d), seed);
                Ok(Tensor::cat(&[&other, &t.pad_with_zeros(2, pad, 0)?], 0)?)
            };
            let (qb, kb, vb) = (padded(&q, 7)?, padded(&k, 8)?, padded(&v, 9)?);
            let batch = attention(
                &qb,
                &kb,
                &vb,
                AttentionRows {
                    starts: &[0, pad],
                    past: 0,
                },
                0.25,
                dt,
            )?;
            assert_eq!(
                bits(&batch.i(1)?.narrow(1, pad, l)?),
                bits(&alone.i(0)?),
                "{dt:?} padded"
            );
            // Prefill in chunks of 4 then 2 queries against the growing cache.
            let first = attention(
                &q.narrow(2, 0, 4)?,
                &k.narrow(2, 0, 4)?,
                &v.narrow(2, 0, 4)?,
                rows,
                0.25,
                dt,
            )?;
            let rest = attention(
                &q.narrow(2, 4, 2)?,
                &k,
                &v,
                AttentionRows {
                    starts: &[0],
                    past: 4,
                },
                0.25,
                dt,
            )?;
            assert_eq!(
                bits(&Tensor::cat(&[first, rest], 2)?),
                bits(&alone),
                "{dt:?} chunked"
            );
        }
        Ok(())
    }

    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        let (l, d) = (9, 20);
        let val = |seed| -> Vec<f32> {
            rand((1, 1, l, d), seed)
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        let (q, k, v) = (val(13), val(14), val(15));
        let h = Head {
            q: &q,
            keys: &k,
            vals: &v,
            start: 2,
        };
        let s = Shape {
            h: 1,
            kvh: 1,
            l,
            t: l,
            d,
            past: 0,
        };
        for dt in [DType::F32, DType::BF16] {
            let (mut a, mut b) = (vec![0f32; l * d], vec![0f32; l * d]);
            head(&h, s, 0.3, dt, &mut a);
            head_best(&h, s, 0.3, dt, &mut b);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b), "{dt:?}");
        }
    }

    #[test]
    fn grouped_heads_equal_repeated_heads() -> Result<()> {
        let (q, k, v) = (
            rand((2, 4, 3, 8), 10),
            rand((2, 2, 3, 8), 11),
            rand((2, 2, 3, 8), 12),
        );
        let rows = AttentionRows {
            starts: &[0, 1],
            past: 0,
        };
        let grouped = attention(&q, &k, &v, rows, 0.3, DType::BF16)?;
        let rep = |t: &Tensor| -> Result<Tensor> {
            Ok(t.unsqueeze(2)?
                .expand((2, 2, 2, 3, 8))?
                .reshape((2, 4, 3, 8))?)
        };
        let full = attention(&q, &rep(&k)?, &rep(&v)?, rows, 0.3, DType::BF16)?;
        assert_eq!(bits(&grouped), bits(&full));
        Ok(())
    }
}
