//! Measuring the GEMM layer against candle's default matmul on a model's projection shapes: time
//! per call at several row counts, whether row 0 keeps its bits across all of them, and (for
//! f32 compute) the error against a float64 product. `reprolm bench gemm` prints these.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use reprolm_precision::{ComputeMode, Linear};

use super::{linear, GemmFamily};
use crate::models::DecoderSpec;
use crate::Result;

/// One projection shape of a model: `y = x Wᵀ (+ b)` with `W: (n, k)`.
#[derive(Debug, Clone, PartialEq)]
pub struct GemmShape {
    /// The projection, e.g. `q` or `down`.
    pub name: &'static str,
    /// Output features.
    pub n: usize,
    /// Input features.
    pub k: usize,
    /// Whether the projection has a bias.
    pub bias: bool,
}

/// The projection shapes a decoder runs: q, k and v stacked into one weight (`qkv`), o, gate and
/// up stacked (`gate_up`), down, and the LM head.
///
/// ```
/// # let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/qwen2");
/// let (_, spec) = reprolm_engine::models::spec_from_config_file(&dir.join("config.json"))?;
/// let shapes = reprolm_engine::kernels::gemm::bench::shapes(&spec);
/// assert_eq!(shapes[0].n, (spec.num_heads + 2 * spec.num_kv_heads) * spec.head_dim);
/// assert_eq!(shapes.last().unwrap().name, "lm_head");
/// # Ok::<(), reprolm_engine::Error>(())
/// ```
pub fn shapes(spec: &DecoderSpec) -> Vec<GemmShape> {
    let (h, q, kv) = (
        spec.hidden_size,
        spec.num_heads * spec.head_dim,
        spec.num_kv_heads * spec.head_dim,
    );
    let i = spec.intermediate_size;
    vec![
        GemmShape {
            name: "qkv",
            n: q + 2 * kv,
            k: h,
            bias: spec.qkv_bias,
        },
        GemmShape {
            name: "o",
            n: h,
            k: q,
            bias: spec.o_bias,
        },
        GemmShape {
            name: "gate_up",
            n: 2 * i,
            k: h,
            bias: spec.mlp_bias,
        },
        GemmShape {
            name: "down",
            n: h,
            k: i,
            bias: spec.mlp_bias,
        },
        GemmShape {
            name: "lm_head",
            n: spec.vocab_size,
            k: h,
            bias: false,
        },
    ]
}

/// The `(storage, compute)` dtypes `policy` gives `shape`'s weight: the LM head's for the LM head,
/// the projections' otherwise, as the decoder places them.
pub fn dtypes(policy: &reprolm_precision::PrecisionPolicy, shape: &GemmShape) -> (DType, DType) {
    use reprolm_precision::Component;
    if shape.name == "lm_head" {
        let d = policy.dtype(Component::LmHead);
        (d, d)
    } else {
        (
            policy.dtype(Component::LinearStorage),
            policy.dtype(Component::MatmulCompute),
        )
    }
}

/// One shape at one row count.
#[derive(Debug, Clone)]
pub struct RowTiming {
    /// Rows of x.
    pub rows: usize,
    /// Seconds per call of the GEMM layer.
    pub layer_seconds: f64,
    /// Seconds per call of candle's default matmul (for LayerCast: the weight cast to f32, then
    /// candle's f32 GEMM, as LayerCast ran before the tensor-core kernel).
    pub default_seconds: f64,
    /// Seconds per call of the other 16-bit family of the layer ([`GemmFamily`]),
    /// where there is one (16-bit compute on CUDA).
    pub other_seconds: Option<f64>,
    /// Seconds per call of the GEMM layer inside a CUDA graph ([`GRAPH_CALLS`] calls over weights
    /// that do not fit in L2 together, replayed as one launch), at decode row counts (up to
    /// [`GRAPH_ROWS`]) on CUDA: the GPU's time without the host's per-call work, which the
    /// plain timing includes and which a decode step's graph does not pay.
    pub graph_seconds: Option<f64>,
}

/// Calls of the layer one timed graph holds.
pub const GRAPH_CALLS: usize = 64;
/// The most rows timed in a graph (decode batches).
pub const GRAPH_ROWS: usize = super::DECODE_ROWS;
/// Bytes of weights a graph timing cycles through: more than an H100's or H200's L2 (50-60 MB),
/// so that each call reads its weight from memory, as a decode step does.
const GRAPH_WEIGHT_BYTES: usize = 256 << 20;

/// What [`measure`] found for one shape and one storage/compute pair.
#[derive(Debug, Clone)]
pub struct GemmReport {
    /// The shape.
    pub shape: GemmShape,
    /// Weight storage dtype.
    pub storage: DType,
    /// Compute dtype.
    pub compute: DType,
    /// Per row count.
    pub timings: Vec<RowTiming>,
    /// Row 0 of the GEMM layer's output is bitwise the same at every row count.
    pub layer_invariant: bool,
    /// The same for candle's default matmul.
    pub default_invariant: bool,
    /// The same for the other 16-bit family, where measured.
    pub other_invariant: Option<bool>,
    /// Max |error| of the layer over the first rows against a float64 product of the same
    /// (rounded) operands, for f32 compute; `None` for 16-bit compute.
    pub layer_error: Option<f64>,
    /// The same for the default matmul (true FP32 for LayerCast).
    pub default_error: Option<f64>,
    /// Root-mean-square error of the layer over the same outputs (a steadier figure than the max).
    pub layer_rms_error: Option<f64>,
    /// The same for the default matmul.
    pub default_rms_error: Option<f64>,
    /// Max |layer - default| over every output at the largest row count, relative to the largest
    /// |default|: a sanity bound (about the output type's rounding) for any dtype.
    pub relative_difference: f64,
    /// The cuBLASLt algorithm pinned for this shape, where the layer (or the other 16-bit
    /// family) runs one.
    pub pinned: Option<String>,
}

/// Rows of the float64 reference.
const CHECK_ROWS: usize = 16;

/// Times the GEMM layer and candle's default for `shape` with weights stored in `storage` and
/// computed in `compute`, at each of `rows` (ascending), on `device`; each timing is the median
/// of `repeats` batches of calls, a batch lasting at least `min_seconds`.
pub fn measure(
    shape: &GemmShape,
    storage: DType,
    compute: DType,
    rows: &[usize],
    device: &Device,
    min_seconds: f64,
    family: GemmFamily,
) -> Result<GemmReport> {
    let max_rows = *rows.iter().max().expect("at least one row count");
    let w = (Tensor::randn(0f32, 1.0, (shape.n, shape.k), device)? * 0.02)?;
    let b = shape
        .bias
        .then(|| Tensor::randn(0f32, 0.1, shape.n, device))
        .transpose()?;
    let lin = Linear::new(w, b, storage, compute)?;
    let x_all = Tensor::randn(0f32, 1.0, (max_rows, shape.k), device)?.to_dtype(compute)?;
    let default = |x: &Tensor| -> Result<Tensor> {
        let wc = lin.weight().to_dtype(compute)?;
        let y = x.matmul(&wc.t()?)?;
        Ok(match lin.bias() {
            Some(b) => y.broadcast_add(&b.to_dtype(compute)?)?,
            None => y,
        })
    };
    let layer = |x: &Tensor| linear(&lin, x, ComputeMode::Fast, family);
    let other = other_family(&lin, device, family);
    // New weights of the same shape and dtypes for the graph timing.
    let copies: Vec<Linear> = if device.is_cuda() {
        graph_weights(shape, storage, rows, device)?
            .into_iter()
            .map(|w| Ok(Linear::new(w, lin.bias().cloned(), storage, compute)?))
            .collect::<Result<_>>()?
    } else {
        Vec::new()
    };

    let mut other_rows0 = Vec::new();
    let mut timings = Vec::new();
    let mut relative_difference = 0.0;
    let (mut layer_rows0, mut default_rows0) = (Vec::new(), Vec::new());
    for &m in rows {
        let x = x_all.narrow(0, 0, m)?.contiguous()?;
        let yl = layer(&x)?;
        let yd = default(&x)?;
        if m == max_rows {
            let (a, b) = (yl.to_dtype(DType::F32)?, yd.to_dtype(DType::F32)?);
            let diff = (&a - &b)?.abs()?.max_all()?.to_scalar::<f32>()?;
            let scale = b
                .abs()?
                .max_all()?
                .to_scalar::<f32>()?
                .max(f32::MIN_POSITIVE);
            relative_difference = (diff / scale) as f64;
        }
        layer_rows0.push(bits(&yl.narrow(0, 0, 1)?)?);
        default_rows0.push(bits(&yd.narrow(0, 0, 1)?)?);
        let other_seconds = match &other {
            Some(f) => {
                other_rows0.push(bits(&f(&x)?.narrow(0, 0, 1)?)?);
                Some(time(device, min_seconds, || f(&x).map(drop))?)
            }
            None => None,
        };
        let graph_seconds = if m <= GRAPH_ROWS && !copies.is_empty() {
            let call = |i: usize| -> Result<()> {
                linear(&copies[i % copies.len()], &x, ComputeMode::Fast, family)?;
                Ok(())
            };
            Some(graph_time(device, call)?)
        } else {
            None
        };
        timings.push(RowTiming {
            rows: m,
            layer_seconds: time(device, min_seconds, || layer(&x).map(drop))?,
            default_seconds: time(device, min_seconds, || default(&x).map(drop))?,
            other_seconds,
            graph_seconds,
        });
    }
    let same = |v: &[Vec<u64>]| v.windows(2).all(|p| p[0] == p[1]);

    let (errors_layer, errors_default) = if compute == DType::F32 {
        let r = CHECK_ROWS.min(max_rows);
        let x = x_all.narrow(0, 0, r)?.contiguous()?;
        let exact = {
            let w64 = lin.weight().to_dtype(DType::F64)?.to_device(&Device::Cpu)?;
            let mut y = x
                .to_dtype(DType::F64)?
                .to_device(&Device::Cpu)?
                .matmul(&w64.t()?)?;
            if let Some(b) = lin.bias() {
                y = y.broadcast_add(&b.to_dtype(DType::F64)?.to_device(&Device::Cpu)?)?;
            }
            y
        };
        let err = |y: Tensor| -> Result<(f64, f64)> {
            let d = (y.to_dtype(DType::F64)?.to_device(&Device::Cpu)? - &exact)?;
            let max = d.abs()?.max_all()?.to_scalar::<f64>()?;
            let rms = d.sqr()?.mean_all()?.to_scalar::<f64>()?.sqrt();
            Ok((max, rms))
        };
        (Some(err(layer(&x)?)?), Some(err(default(&x)?)?))
    } else {
        (None, None)
    };
    Ok(GemmReport {
        shape: shape.clone(),
        storage,
        compute,
        timings,
        layer_invariant: same(&layer_rows0),
        default_invariant: same(&default_rows0),
        other_invariant: other.is_some().then(|| same(&other_rows0)),
        layer_error: errors_layer.map(|e| e.0),
        default_error: errors_default.map(|e| e.0),
        layer_rms_error: errors_layer.map(|e| e.1),
        default_rms_error: errors_default.map(|e| e.1),
        relative_difference,
        pinned: pinned_algorithm(&lin, device),
    })
}

/// A call of the 16-bit family the layer does not use by default, where one exists.
#[allow(clippy::type_complexity)]
fn other_family<'a>(
    lin: &'a Linear,
    device: &Device,
    family: GemmFamily,
) -> Option<Box<dyn Fn(&Tensor) -> Result<Tensor> + 'a>> {
    #[cfg(feature = "cuda")]
    if device.is_cuda()
        && lin.weight().dtype() == lin.compute_dtype()
        && matches!(lin.compute_dtype(), DType::BF16 | DType::F16)
    {
        let other = match family {
            GemmFamily::Mma => GemmFamily::PinnedCublasLt,
            GemmFamily::PinnedCublasLt | GemmFamily::Heuristic => GemmFamily::Mma,
            GemmFamily::Portable => return None,
        };
        return Some(Box::new(move |x: &Tensor| {
            super::cuda_linear(lin, x, other)
        }));
    }
    let _ = (lin, device, family);
    None
}

/// The cuBLASLt algorithm pinned for `lin`'s shape on CUDA, if a cuBLASLt plan serves it.
fn pinned_algorithm(lin: &Linear, device: &Device) -> Option<String> {
    #[cfg(feature = "cuda")]
    if device.is_cuda() && lin.weight().dtype() == lin.compute_dtype() {
        let key = super::cublaslt::key_for(lin.weight(), lin.bias().is_some()).ok()?;
        let dev = super::cublaslt::cuda_device(lin.weight()).ok()?;
        return super::cublaslt::plan_on(dev, key)
            .ok()
            .map(|p| p.describe());
    }
    let _ = (lin, device);
    None
}

/// The bits of every value of a (small) tensor.
fn bits(t: &Tensor) -> Result<Vec<u64>> {
    Ok(reprolm_precision::deterministic::value_bits(t)?)
}

/// Median seconds per call of `f` over 5 batches, each at least `min_seconds` long (after one
/// warm-up call), the device synchronised around each batch.
fn time(device: &Device, min_seconds: f64, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    device.synchronize()?;
    let t = Instant::now();
    f()?;
    device.synchronize()?;
    let once = t.elapsed().as_secs_f64().max(1e-7);
    let calls = ((min_seconds / once).ceil() as usize).clamp(1, 10_000);
    let mut per_call = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..calls {
            f()?;
        }
        device.synchronize()?;
        per_call.push(t.elapsed().as_secs_f64() / calls as f64);
    }
    per_call.sort_by(f64::total_cmp);
    Ok(per_call[2])
}

/// Random f32 weights of `shape`, enough that their `storage` copies overflow L2 together, for
/// [`graph_time`] to cycle through; none where no row count of `rows` is timed in a graph.
fn graph_weights(
    shape: &GemmShape,
    storage: DType,
    rows: &[usize],
    device: &Device,
) -> Result<Vec<Tensor>> {
    if rows.iter().all(|&m| m > GRAPH_ROWS) {
        return Ok(Vec::new());
    }
    let bytes = shape.n * shape.k * storage.size_in_bytes();
    let count = GRAPH_WEIGHT_BYTES.div_ceil(bytes.max(1)).clamp(2, 16);
    (0..count)
        .map(|_| Ok((Tensor::randn(0f32, 1.0, (shape.n, shape.k), device)? * 0.02)?))
        .collect()
}

/// Median seconds per call of `call(0)`, `call(1)`, ... `call(GRAPH_CALLS - 1)` (the caller
/// cycles through weights with the index) captured as one CUDA graph and replayed 5 times; each
/// call's choices are settled by an eager run first, as a decode step's are before its capture.
fn graph_time(device: &Device, call: impl Fn(usize) -> Result<()>) -> Result<f64> {
    use crate::decode_graph::{capture, with_param_cache};
    let calls = || -> Result<()> {
        for i in 0..GRAPH_CALLS {
            call(i)?;
        }
        Ok(())
    };
    with_param_cache(device, calls)?;
    device.synchronize()?;
    let graph = capture(device, calls)?;
    graph.launch()?;
    device.synchronize()?;
    let mut per_call = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        graph.launch()?;
        device.synchronize()?;
        per_call.push(t.elapsed().as_secs_f64() / GRAPH_CALLS as f64);
    }
    per_call.sort_by(f64::total_cmp);
    Ok(per_call[2])
}

/// The row counts the heuristic is asked at for tuning candidates.
#[cfg(feature = "cuda")]
const CANDIDATE_ROWS: &[usize] = &[1, 8, 32, 128, 512, 4096];

/// One tuning candidate and its time per call at each measured row count.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The algorithm.
    pub algo: super::pins::AlgoConfig,
    /// Seconds per call, one per row count.
    pub seconds: Vec<f64>,
    /// A hash of the output bits of the first [`DIGEST_ROWS`] rows: candidates with equal digests
    /// reduced those outputs in an order that gives the same bits (evidence that they could serve
    /// different row counts of one shape without changing a result).
    pub digest: u64,
}

/// Candidates that could serve one shape together: the same split-K parts and reduction scheme
/// (what `cublaslt::Plan::by_rows` requires of a pin's stand-ins) and the same output bits.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// `SPLITK_NUM` (1: K is not cut).
    pub splitk: i32,
    /// `REDUCTION_SCHEME` (0: none).
    pub reduction: i32,
    /// The members' [`Candidate::digest`].
    pub digest: u64,
    /// Indices of the members among the candidates.
    pub members: Vec<usize>,
    /// Seconds per call of the family's fastest member at each row count.
    pub seconds: Vec<f64>,
    /// The sum over row counts of [`seconds`](Self::seconds) over the fastest candidate's.
    pub score: f64,
}

/// The fastest candidate's seconds per call at each measured row count.
fn fastest_at(candidates: &[Candidate]) -> Vec<f64> {
    let rows = candidates.first().map_or(0, |c| c.seconds.len());
    (0..rows)
        .map(|i| {
            candidates
                .iter()
                .map(|c| c.seconds[i])
                .fold(f64::INFINITY, f64::min)
        })
        .collect()
}

/// The candidates grouped into [`Family`]s, best score first.
pub fn families(candidates: &[Candidate]) -> Vec<Family> {
    let best_at = fastest_at(candidates);
    let mut out: Vec<Family> = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        let (splitk, reduction) = (c.algo.splitk.max(1), c.algo.reduction.max(0));
        match out
            .iter_mut()
            .find(|f| (f.splitk, f.reduction, f.digest) == (splitk, reduction, c.digest))
        {
            Some(f) => {
                f.members.push(i);
                for (t, &s) in f.seconds.iter_mut().zip(&c.seconds) {
                    *t = t.min(s);
                }
            }
            None => out.push(Family {
                splitk,
                reduction,
                digest: c.digest,
                members: vec![i],
                seconds: c.seconds.clone(),
                score: 0.0,
            }),
        }
    }
    for f in &mut out {
        f.score = f.seconds.iter().zip(&best_at).map(|(s, b)| s / b).sum();
    }
    out.sort_by(|a, b| a.score.total_cmp(&b.score));
    out
}

/// The index of the candidate to pin.
///
/// A pin serves every row count, but at load `cublaslt::Plan::by_rows` may hand prefill row
/// counts to faster candidates that cut K as the pin does and give its bits. So the choice is of
/// a [`Family`]: the one with the best score wins, and from it the member fastest at the decode
/// row counts (up to [`GRAPH_ROWS`], which the pin serves itself; all row counts when none were
/// measured).
pub fn best_family_member(candidates: &[Candidate], rows: &[usize]) -> usize {
    let best = families(candidates)
        .into_iter()
        .next()
        .expect("at least one candidate");
    let best_at = fastest_at(candidates);
    let decode: Vec<usize> = (0..rows.len()).filter(|&i| rows[i] <= GRAPH_ROWS).collect();
    let judged: Vec<usize> = if decode.is_empty() {
        (0..rows.len()).collect()
    } else {
        decode
    };
    let member_score =
        |c: &Candidate| -> f64 { judged.iter().map(|&i| c.seconds[i] / best_at[i]).sum() };
    best.members
        .into_iter()
        .min_by(|&a, &b| member_score(&candidates[a]).total_cmp(&member_score(&candidates[b])))
        .expect("a family has a member")
}

/// Rows of x whose output bits [`Candidate::digest`] hashes.
pub const DIGEST_ROWS: usize = 64;

/// Times every cuBLASLt candidate for `shape` in `dtype` (16-bit or f32 operands) at `rows` on a
/// CUDA `device` and returns them with the pin chosen by [`best_family_member`]. Row counts up
/// to [`GRAPH_ROWS`] are timed inside a CUDA graph, as a decode step runs them.
#[cfg(feature = "cuda")]
pub fn tune(
    shape: &GemmShape,
    dtype: DType,
    rows: &[usize],
    device: &Device,
    min_seconds: f64,
) -> Result<(super::pins::Pin, Vec<Candidate>)> {
    use super::cublaslt::{self, Plan, PlanKey};
    let dev = cublaslt::cuda_device(&Tensor::zeros(1, DType::F32, device)?)?.clone();
    let key = PlanKey {
        n: shape.n,
        k: shape.k,
        dtype,
        bias: shape.bias,
        strategy: cublaslt::PinStrategy::from_env(),
    };
    let w = (Tensor::randn(0f32, 1.0, (shape.n, shape.k), device)? * 0.02)?.to_dtype(dtype)?;
    let b = shape
        .bias
        .then(|| Tensor::randn(0f32, 0.1, shape.n, device).and_then(|b| b.to_dtype(dtype)))
        .transpose()?;
    let max_rows = *rows.iter().max().expect("at least one row count");
    let x_all = Tensor::randn(0f32, 1.0, (max_rows, shape.k), device)?.to_dtype(dtype)?;
    // Decode row counts are timed in a graph over weights that overflow L2 together: timed call
    // by call, a small GEMM measures the host, and every candidate looks the same.
    let copies: Vec<Tensor> = graph_weights(shape, dtype, rows, device)?
        .into_iter()
        .map(|w| Ok(w.to_dtype(dtype)?))
        .collect::<Result<_>>()?;
    let mut out = Vec::new();
    'candidates: for algo in Plan::candidates_for(key, CANDIDATE_ROWS)? {
        let Some(plan) = Plan::with_algo(key, &algo)? else {
            continue;
        };
        let plan = std::sync::Arc::new(plan);
        let digest = {
            use std::hash::{Hash, Hasher};
            let x = x_all
                .narrow(0, 0, DIGEST_ROWS.min(max_rows))?
                .contiguous()?;
            let y = cublaslt::linear_with(&plan, &x, &w, b.as_ref())?;
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bits(&y)?.hash(&mut h);
            h.finish()
        };
        let mut seconds = Vec::new();
        for &m in rows {
            let x = x_all.narrow(0, 0, m)?.contiguous()?;
            if m <= GRAPH_ROWS {
                let call = |i: usize| -> Result<()> {
                    cublaslt::linear_with(&plan, &x, &copies[i % copies.len()], b.as_ref())?;
                    Ok(())
                };
                match graph_time(device, call) {
                    Ok(t) => seconds.push(t),
                    // A candidate that cannot be captured cannot serve a decode graph either.
                    Err(e) => {
                        eprintln!("{algo:?}: not timed in a graph at {m} rows ({e}); left out");
                        continue 'candidates;
                    }
                }
                continue;
            }
            let run = || -> Result<()> {
                cublaslt::linear_with(&plan, &x, &w, b.as_ref())?;
                Ok(())
            };
            seconds.push(time(device, min_seconds, run)?);
        }
        out.push(Candidate {
            algo,
            seconds,
            digest,
        });
    }
    if out.is_empty() {
        return Err(crate::Error::InvalidRequest(format!(
            "no cuBLASLt candidate runs every row count for {shape:?} in {dtype:?}"
        )));
    }
    let best = best_family_member(&out, rows);
    let pin = super::pins::Pin {
        gpu: cublaslt::gpu_name(&dev),
        cublaslt: cublaslt::cublaslt_version(),
        dtype: reprolm_precision::dtype_name(dtype).to_string(),
        n: shape.n,
        k: shape.k,
        bias: shape.bias,
        algo: out[best].algo,
    };
    Ok((pin, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm::pins::AlgoConfig;

    fn candidate(tile: i32, splitk: i32, digest: u64, micros: &[f64]) -> Candidate {
        Candidate {
            algo: AlgoConfig {
                id: 66,
                tile,
                stages: 35,
                splitk,
                reduction: if splitk > 1 { 1 } else { 0 },
                swizzle: 0,
                custom: 0,
                inner: 0,
                cluster: 0,
            },
            seconds: micros.iter().map(|t| t * 1e-6).collect(),
            digest,
        }
    }

    #[test]
    fn the_pin_is_the_decode_fastest_member_of_the_best_family() {
        let rows = [1, 32, 4096];
        let candidates = [
            // Unsplit, one set of bits: good at 4096 rows, slow at decode.
            candidate(1, 1, 7, &[10.0, 11.0, 100.0]),
            // Split in 4: alone it loses at 4096 rows (score 0.5+0.5+1.5 vs 1+1+1)...
            candidate(2, 4, 9, &[5.0, 5.5, 150.0]),
            // ...but a member with its bits is fast there, which `by_rows` would use.
            candidate(3, 4, 9, &[6.0, 6.0, 101.0]),
            // Split in 4 with other bits: the fastest at decode, but its own family is slow.
            candidate(4, 4, 8, &[4.0, 5.0, 300.0]),
        ];
        // Families: {0}: 2.5 + 2.2 + 1.0 = 5.7; {1, 2}: 1.25 + 1.1 + 1.01 = 3.36;
        // {3}: 1 + 1 + 3 = 5. The member of {1, 2} fastest at 1 and 32 rows is 1.
        assert_eq!(best_family_member(&candidates, &rows), 1);
        let f = families(&candidates);
        assert_eq!(
            f.iter().map(|f| f.members.clone()).collect::<Vec<_>>(),
            [vec![1, 2], vec![3], vec![0]],
            "best score first"
        );
        assert_eq!((f[0].splitk, f[0].reduction, f[0].digest), (4, 1, 9));
        let micros: Vec<f64> = f[0]
            .seconds
            .iter()
            .map(|s| (s * 1e7).round() / 10.0)
            .collect();
        assert_eq!(micros, [5.0, 5.5, 101.0], "each row count's fastest member");
        assert!((f[0].score - 3.36).abs() < 1e-9, "{}", f[0].score);
        // Measured at prefill row counts only, the member is judged on them.
        let rows = [512, 4096];
        let candidates = [
            candidate(1, 1, 7, &[10.0, 100.0]),
            candidate(2, 1, 7, &[9.0, 120.0]),
            candidate(3, 2, 5, &[30.0, 300.0]),
        ];
        assert_eq!(best_family_member(&candidates, &rows), 0);
    }
}
