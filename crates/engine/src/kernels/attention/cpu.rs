//! The CPU body of [`super::paged_attention`]: one task per (query token, query head), each
//! reading its sequence's slots of the pools in place.

use super::{PagedQueries, KV_SPLIT};
use crate::{Error, Result};
use candle_core::{CpuStorage, DType, Storage, Tensor};
use half::{bf16, f16};
use rayon::prelude::*;
use std::ops::{Add, Div, Mul, Sub};

/// Partial sums of a dot product (the lane order of the module docs).
const LANES: usize = 8;

/// The accumulator: f32, or f64 for f64 attention.
trait Acc:
    Copy
    + Send
    + Sync
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
{
    const ZERO: Self;
    const NEG_INFINITY: Self;
    fn exp(self) -> Self;
    fn from_f64(v: f64) -> Self;
}

impl Acc for f32 {
    const ZERO: Self = 0.0;
    const NEG_INFINITY: Self = f32::NEG_INFINITY;
    /// The portable exponential, not libm's: the same bits on every CPU whatever its C library.
    fn exp(self) -> Self {
        reprolm_precision::portable::exp(self)
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl Acc for f64 {
    const ZERO: Self = 0.0;
    const NEG_INFINITY: Self = f64::NEG_INFINITY;
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn from_f64(v: f64) -> Self {
        v
    }
}

/// A stored element, widened exactly to the accumulator.
trait Elem<A>: Copy + Send + Sync {
    fn widen(self) -> A;
}

macro_rules! widen {
    ($($e:ty => $a:ty: $f:expr),* $(,)?) => {$(
        impl Elem<$a> for $e {
            #[inline(always)]
            fn widen(self) -> $a {
                $f(self)
            }
        }
    )*};
}

widen! {
    f32 => f32: |v| v,
    bf16 => f32: bf16::to_f32,
    f16 => f32: f16::to_f32,
    f64 => f64: |v| v,
    f32 => f64: f64::from,
    bf16 => f64: bf16::to_f64,
    f16 => f64: f16::to_f64,
}

pub(super) fn attention(
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    queries: &PagedQueries,
    scale: f64,
    dtype: DType,
) -> Result<Tensor> {
    let (t, h, d) = q.dims3()?;
    let (kvh, slots, _) = keys.dims3()?;
    let dims = Dims {
        h,
        t,
        d,
        group: h / kvh,
        slots,
    };
    // f64 sums when either side is f64 (a wider pool is never rounded to f32 on the way in).
    let out = if dtype == DType::F64 || keys.dtype() == DType::F64 {
        let q = q.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        let v = with_pools(keys, values, |pools| {
            run::<f64>(&q, pools, queries, dims, scale)
        })?;
        Tensor::from_vec(v, (t, h, d), q_device())?.to_dtype(dtype)?
    } else {
        let q = q.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let v = with_pools(keys, values, |pools| {
            run::<f32>(&q, pools, queries, dims, scale)
        })?;
        Tensor::from_vec(v, (t, h, d), q_device())?.to_dtype(dtype)?
    };
    Ok(out)
}

fn q_device() -> &'static candle_core::Device {
    &candle_core::Device::Cpu
}

#[derive(Clone, Copy)]
struct Dims {
    h: usize,
    t: usize,
    d: usize,
    group: usize,
    slots: usize,
}

/// The pools as typed slices.
enum Pools<'a> {
    BF16(&'a [bf16], &'a [bf16]),
    F16(&'a [f16], &'a [f16]),
    F32(&'a [f32], &'a [f32]),
    F64(&'a [f64], &'a [f64]),
}

fn with_pools<R>(keys: &Tensor, values: &Tensor, f: impl FnOnce(&Pools<'_>) -> R) -> Result<R> {
    let (kg, kl) = keys.storage_and_layout();
    let (vg, vl) = values.storage_and_layout();
    let (Some((k0, k1)), Some((v0, v1))) = (kl.contiguous_offsets(), vl.contiguous_offsets())
    else {
        return Err(Error::InvalidRequest(
            "paged attention: the KV pools must be contiguous".into(),
        ));
    };
    let pools = match (&*kg, &*vg) {
        (Storage::Cpu(CpuStorage::BF16(k)), Storage::Cpu(CpuStorage::BF16(v))) => {
            Pools::BF16(&k[k0..k1], &v[v0..v1])
        }
        (Storage::Cpu(CpuStorage::F16(k)), Storage::Cpu(CpuStorage::F16(v))) => {
            Pools::F16(&k[k0..k1], &v[v0..v1])
        }
        (Storage::Cpu(CpuStorage::F32(k)), Storage::Cpu(CpuStorage::F32(v))) => {
            Pools::F32(&k[k0..k1], &v[v0..v1])
        }
        (Storage::Cpu(CpuStorage::F64(k)), Storage::Cpu(CpuStorage::F64(v))) => {
            Pools::F64(&k[k0..k1], &v[v0..v1])
        }
        _ => {
            return Err(Error::InvalidRequest(format!(
                "paged attention: no CPU kernel for a {:?} KV cache",
                keys.dtype()
            )))
        }
    };
    Ok(f(&pools))
}

fn run<A: Acc>(q: &[A], pools: &Pools<'_>, queries: &PagedQueries, dims: Dims, scale: f64) -> Vec<A>
where
    bf16: Elem<A>,
    f16: Elem<A>,
    f32: Elem<A>,
    f64: Elem<A>,
{
    match *pools {
        Pools::BF16(k, v) => run_typed(q, k, v, queries, dims, scale),
        Pools::F16(k, v) => run_typed(q, k, v, queries, dims, scale),
        Pools::F32(k, v) => run_typed(q, k, v, queries, dims, scale),
        Pools::F64(k, v) => run_typed(q, k, v, queries, dims, scale),
    }
}

/// Only reached when the accumulator is f32 and the pool is not f64 (see [`attention`]).
impl Elem<f32> for f64 {
    fn widen(self) -> f32 {
        unreachable!("an f64 pool is summed in f64")
    }
}

fn run_typed<A: Acc, E: Elem<A>>(
    q: &[A],
    keys: &[E],
    vals: &[E],
    queries: &PagedQueries,
    s: Dims,
    scale: f64,
) -> Vec<A> {
    let scale = A::from_f64(scale);
    let mut out = vec![A::ZERO; s.h * s.t * s.d];
    out.par_chunks_mut(s.d).enumerate().for_each_init(
        || Scratch::<A>::new(s.d),
        |scratch, (ht, dst)| {
            let (tok, head) = (ht / s.h, ht % s.h);
            let base = (head / s.group) * s.slots * s.d;
            let one = OneQuery {
                q: &q[ht * s.d..(ht + 1) * s.d],
                keys: &keys[base..base + s.slots * s.d],
                vals: &vals[base..base + s.slots * s.d],
                queries,
                seq: queries.seq[tok] as usize,
                pos: queries.pos[tok] as usize,
                d: s.d,
                scale,
            };
            one.run(scratch, dst);
        },
    );
    out
}

struct Scratch<A> {
    scores: Vec<A>,
    acc: Vec<A>,
}

impl<A: Acc> Scratch<A> {
    fn new(d: usize) -> Self {
        Scratch {
            scores: Vec::with_capacity(KV_SPLIT),
            acc: vec![A::ZERO; d],
        }
    }
}

/// One query of one head, against its kv head's slice of the pools.
struct OneQuery<'a, A, E> {
    q: &'a [A],
    keys: &'a [E],
    vals: &'a [E],
    queries: &'a PagedQueries,
    seq: usize,
    pos: usize,
    d: usize,
    scale: A,
}

impl<A: Acc, E: Elem<A>> OneQuery<'_, A, E> {
    fn row<'b>(&self, pool: &'b [E], p: usize) -> &'b [E] {
        let slot = self.queries.slot(self.seq, p);
        &pool[slot * self.d..(slot + 1) * self.d]
    }

    /// Steps 1-4 of the module docs; the result goes to `dst` in the accumulator type.
    fn run(&self, scratch: &mut Scratch<A>, dst: &mut [A]) {
        let n = self.pos + 1;
        let (mut big_m, mut big_l) = (A::NEG_INFINITY, A::ZERO);
        for (s, s0) in (0..n).step_by(KV_SPLIT).enumerate() {
            let s1 = (s0 + KV_SPLIT).min(n);
            let scores = &mut scratch.scores;
            scores.clear();
            let mut m = A::NEG_INFINITY;
            for p in s0..s1 {
                let sc = dot(self.q, self.row(self.keys, p)) * self.scale;
                if sc > m {
                    m = sc;
                }
                scores.push(sc);
            }
            let acc = &mut scratch.acc;
            acc.iter_mut().for_each(|a| *a = A::ZERO);
            let mut l = A::ZERO;
            for (p, sc) in (s0..s1).zip(scores.iter()) {
                let e = (*sc - m).exp();
                l = l + e;
                for (a, &v) in acc.iter_mut().zip(self.row(self.vals, p)) {
                    *a = *a + e * v.widen();
                }
            }
            if s == 0 {
                (big_m, big_l) = (m, l);
                dst.copy_from_slice(acc);
            } else {
                let m2 = if m > big_m { m } else { big_m };
                let (a, b) = ((big_m - m2).exp(), (m - m2).exp());
                big_l = big_l * a + l * b;
                for (o, &x) in dst.iter_mut().zip(acc.iter()) {
                    *o = *o * a + x * b;
                }
                big_m = m2;
            }
        }
        dst.iter_mut().for_each(|o| *o = *o / big_l);
    }
}

/// `q · k` in the lane order: element `i` into lane `i % LANES`, lanes halved pairwise.
#[inline(always)]
fn dot<A: Acc, E: Elem<A>>(q: &[A], k: &[E]) -> A {
    let mut lanes = [A::ZERO; LANES];
    let mut qc = q.chunks_exact(LANES);
    let mut kc = k.chunks_exact(LANES);
    for (qa, ka) in (&mut qc).zip(&mut kc) {
        for i in 0..LANES {
            lanes[i] = lanes[i] + qa[i] * ka[i].widen();
        }
    }
    for (i, (&a, &b)) in qc.remainder().iter().zip(kc.remainder()).enumerate() {
        lanes[i] = lanes[i] + a * b.widen();
    }
    let mut w = LANES / 2;
    while w > 0 {
        for i in 0..w {
            lanes[i] = lanes[i] + lanes[i + w];
        }
        w /= 2;
    }
    lanes[0]
}
